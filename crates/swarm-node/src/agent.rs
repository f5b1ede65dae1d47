//! The agent loop: how a node takes part in running workflows.
//!
//! - It proposes a `Claim` for `workflow` items only when its own replica
//!   shows claimable work that its capabilities satisfy, and never for more
//!   than its free capacity (an idle cluster sees no claim traffic).
//! - It runs each claimed workflow with swarm-reactor, recording every step
//!   outcome in the item's journal through Raft under its fencing token, so
//!   the next holder resumes where it stopped.
//! - It renews every lease it holds with one `Renew` per interval, and stops
//!   a run by itself (self-fencing) when its lease could expire before the
//!   next renewal could land.
//! - When the next ready step needs a capability it lacks, it hands the item
//!   to the least loaded live node that has it and tells that node through
//!   `HandoffService.Offer`; on shutdown it drains the same way.
//!
//! At-least-once for the step in flight: a step that was running when its
//! holder died runs again on the next holder. Its `SWARM_FENCING_TOKEN` is
//! higher than the dead holder's, so an external system that remembers the
//! highest token it saw can reject the older attempt.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use swarm_claims::command::{Claim, Complete, Fail, Handoff, Park, RegisterNode, Release, Renew};
use swarm_claims::request::Renewal;
use swarm_claims::{FencingToken, WORKFLOW_KIND, WorkItem};
use swarm_proto::v1 as pb;
use swarm_proto::v1::handoff_service_client::HandoffServiceClient;
use swarm_proto::v1::handoff_service_server::HandoffService;
use swarm_raft::{ClusterError, now_millis};
use swarm_reactor::{
    Reactor, RunOptions, RunReport, SuspendMode, SuspendReason, TracingMiddleware, WorkflowPayload,
};
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use crate::journal::RaftJournal;
use crate::metrics::RunMiddleware;
use crate::node::NodeContext;

/// How long a run whose step needs a capability no node has waits for a
/// node with it to register before the workflow fails: nodes register when
/// they start, and a run can reach the step before a new node has.
const CAPABILITY_GRACE: Duration = Duration::from_secs(3);

/// Signals and time for a run's waiting steps, from this node's replica.
struct ReplicaWaits {
    ctx: NodeContext,
}

impl swarm_reactor::Waits for ReplicaWaits {
    fn signal(&self, run_id: &str, name: &str) -> Option<Value> {
        // A run inside the item's (a sub-workflow's, a switch branch's) is
        // `<item>/<step>...`: the signals are the item's.
        fn item_of<'s>(s: &'s swarm_claims::State, run_id: &str) -> Option<&'s WorkItem> {
            let mut id = run_id;
            loop {
                if let Some(item) = s.get(id) {
                    return Some(item);
                }
                id = &id[..id.rfind('/')?];
            }
        }
        let payload = self.ctx.state.read(|s| {
            item_of(s, run_id)?
                .control()?
                .signals
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone())
        })?;
        Some(serde_json::from_str(&payload).unwrap_or(Value::String(payload)))
    }

    fn now_ms(&self) -> u64 {
        now_millis()
    }

    fn durable_sleep_after(&self) -> Duration {
        self.ctx.config.durable_sleep_after
    }
}

/// A run this node is executing, and the levers to stop it.
struct RunControl {
    token: FencingToken,
    cancel: watch::Sender<bool>,
    suspend: watch::Sender<Option<SuspendMode>>,
    /// The lease expiry the cluster last confirmed, leader clock (ms).
    lease_expires_at: u64,
}

/// The workflow-running side of a node.
pub struct Agent {
    ctx: NodeContext,
    agent: String,
    runs: Mutex<HashMap<String, RunControl>>,
    wake: Notify,
    draining: AtomicBool,
}

impl Agent {
    /// Starts the claim and renewal loops.
    pub fn start(ctx: NodeContext) -> Arc<Agent> {
        let agent = Arc::new(Agent {
            agent: ctx.agent(),
            ctx,
            runs: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            draining: AtomicBool::new(false),
        });
        tokio::spawn(agent.clone().register());
        tokio::spawn(agent.clone().claim_loop());
        tokio::spawn(agent.clone().renew_loop());
        agent
    }

    /// Looks at the replica again now (an offer arrived).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunControl>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops claiming, lets running steps finish (bounded by `timeout`, then
    /// stops them), and hands every held item to a peer or releases it.
    pub async fn drain(&self, timeout: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let held = {
            let runs = self.runs();
            for ctl in runs.values() {
                let _ = ctl.suspend.send(Some(SuspendMode::Drain));
            }
            runs.len()
        };
        if held == 0 {
            return;
        }
        tracing::info!(runs = held, "draining workflows to peers");
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.runs().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for ctl in self.runs().values() {
            let _ = ctl.suspend.send(Some(SuspendMode::Now));
        }
        let hard = tokio::time::Instant::now() + Duration::from_secs(3);
        while !self.runs().is_empty() && tokio::time::Instant::now() < hard {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Announces this node as a workflow runner (retried until it lands).
    async fn register(self: Arc<Self>) {
        let cfg = &self.ctx.config;
        let registration = RegisterNode {
            agent: self.agent.clone(),
            node_id: cfg.id,
            // Hand-offs are peer calls: peers offer work at the peer port.
            addr: cfg.peer_advertise.clone(),
            capabilities: cfg.capabilities.clone(),
            capacity: cfg.capacity,
            now: 0,
        };
        loop {
            match self.ctx.cluster.request(registration.clone()).await {
                Ok(()) => {
                    tracing::info!(agent = %self.agent, capabilities = ?cfg.capabilities, "registered as a workflow runner");
                    return;
                }
                Err(e @ ClusterError::Refused(_)) => {
                    tracing::error!(error = %e, "node registration refused");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "node registration not committed yet"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn claim_loop(self: Arc<Self>) {
        let mut applied = self.ctx.state.applied_index();
        loop {
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            self.police_runs();
            if self.draining.load(Ordering::SeqCst) {
                continue;
            }
            self.adopt_held();
            let free = (self.ctx.config.capacity as usize).saturating_sub(self.runs().len());
            let kinds = [WORKFLOW_KIND.to_string()];
            let caps = &self.ctx.config.capabilities;
            if free == 0 || !self.ctx.state.read(|s| s.has_claimable(&kinds, caps)) {
                continue;
            }
            let claim = Claim {
                agent: self.agent.clone(),
                kinds: kinds.to_vec(),
                capabilities: caps.clone(),
                max: free as u32,
                lease_ms: self.ctx.config.workflow_lease.as_millis() as u64,
                now: 0,
            };
            match self.ctx.cluster.request(claim).await {
                Ok(items) => {
                    for item in items {
                        self.clone().start_run(item, true);
                    }
                }
                Err(e @ ClusterError::Refused(_)) => tracing::debug!(error = %e, "claim refused"),
                Err(e) => {
                    tracing::debug!(error = %e, "claim not committed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Starts runs for items this node holds but is not running: work handed
    /// to it, or held from before a restart.
    fn adopt_held(self: &Arc<Self>) {
        // Runs on every applied entry: clone only items not running yet
        // (normally none), not every held item with its journal.
        let new: Vec<WorkItem> = {
            let runs = self.runs();
            self.ctx.state.read(|s| {
                s.claims_of(&self.agent)
                    .into_iter()
                    .filter(|i| *i.kind == *WORKFLOW_KIND && !runs.contains_key(&*i.id))
                    .cloned()
                    .collect()
            })
        };
        for item in new {
            self.clone().start_run(item, false);
        }
    }

    /// Stops runs whose claim moved on (stale token, item ended), and passes
    /// a cancel or a pause request on to the run (a pause: start no more
    /// steps, let the running ones finish, then park it).
    fn police_runs(&self) {
        let runs = self.runs();
        for (id, ctl) in runs.iter() {
            let (current, cancel, pause) = self.ctx.state.read(|s| {
                s.get(id)
                    .map(|i| {
                        (
                            i.current_token(),
                            i.cancel_requested().is_some(),
                            i.control().is_some_and(|c| c.pause_requested.is_some()),
                        )
                    })
                    .unwrap_or((None, false, false))
            });
            if current != Some(ctl.token) {
                tracing::warn!(work_id = %id, token = ctl.token, ?current, "claim moved on: stopping the run");
                let _ = ctl.suspend.send(Some(SuspendMode::Now));
            } else if cancel && !*ctl.cancel.borrow() {
                tracing::info!(work_id = %id, "cancel requested: stopping the run and undoing its steps");
                let _ = ctl.cancel.send(true);
            } else if pause && ctl.suspend.borrow().is_none() {
                tracing::info!(work_id = %id, "pause requested: stopping the run at its next step boundary");
                let _ = ctl.suspend.send(Some(SuspendMode::Drain));
            }
        }
    }

    /// The pause asked of a run this node holds, if any (as the replica
    /// shows it).
    fn pause_requested(&self, id: &str) -> Option<String> {
        self.ctx.state.read(|s| {
            s.get(id)
                .and_then(|i| i.control())
                .and_then(|c| c.pause_requested.clone())
        })
    }

    /// Parks a run that stopped for a pause: the claim ends without counting
    /// as an attempt, and the item waits, paused, with its journal.
    /// (Parked with nothing to wait for: the state machine holds it paused
    /// while the pause is still asked, and lets it go on if a resume came
    /// first.)
    async fn park_paused(&self, id: &str, token: FencingToken) {
        let hold = swarm_claims::Hold::Sleep {
            until: 0,
            since: now_millis(),
        };
        self.park(id, token, hold).await;
    }

    /// Parks a run that waits (paused, for a signal, or in a durable
    /// sleep): the claim ends without counting as an attempt, and the item
    /// waits with its journal, holding no lease, until a holder runs it on.
    async fn park(&self, id: &str, token: FencingToken, hold: swarm_claims::Hold) {
        let what = hold.describe();
        let park = Park {
            id: id.to_string(),
            token,
            hold,
            now: 0,
        };
        match self.ctx.cluster.request(park).await {
            Ok(_) => tracing::info!(work_id = %id, wait = %what, "run parked"),
            Err(e) => {
                tracing::warn!(work_id = %id, error = %e, "park refused or not recorded: releasing");
                self.release(id, token).await;
            }
        }
    }

    async fn renew_loop(self: Arc<Self>) {
        let interval = self.ctx.config.renew_interval;
        loop {
            tokio::time::sleep(interval).await;
            let tokens: Vec<FencingToken> = self.runs().values().map(|c| c.token).collect();
            if !tokens.is_empty() {
                let renew = Renew {
                    agent: self.agent.clone(),
                    tokens,
                    progress: None,
                    now: 0,
                };
                match self.ctx.cluster.request(renew).await {
                    Ok(Renewal { renewed, rejected }) => {
                        let mut runs = self.runs();
                        for item in renewed {
                            if let (Some(ctl), Some(lease)) =
                                (runs.get_mut(&*item.id), item.lease.as_ref())
                            {
                                ctl.lease_expires_at = lease.expires_at;
                            }
                        }
                        for (token, e) in rejected {
                            if let Some(ctl) = runs.values().find(|c| c.token == token) {
                                tracing::warn!(token, error = %e, "lease not renewed: stopping the run");
                                let _ = ctl.suspend.send(Some(SuspendMode::Now));
                            }
                        }
                    }
                    Err(e @ ClusterError::Refused(_)) => {
                        tracing::warn!(error = %e, "renew refused")
                    }
                    Err(e) => tracing::warn!(error = %e, "renew not committed"),
                }
            }
            self.self_fence(interval);
        }
    }

    /// Stops every run whose lease could run out before another renewal
    /// lands: past that point another node may hold the item.
    fn self_fence(&self, margin: Duration) {
        let now = now_millis();
        let margin = margin.as_millis() as u64;
        for (id, ctl) in self.runs().iter() {
            if now.saturating_add(margin) >= ctl.lease_expires_at {
                tracing::warn!(work_id = %id, token = ctl.token, "lease about to expire unrenewed: self-fencing");
                self.ctx.metrics.runs.self_fenced.inc();
                let _ = ctl.suspend.send(Some(SuspendMode::Now));
            }
        }
    }

    /// Runs `item`, which this node holds: `granted` when `item` is the
    /// answer to this node's own claim (its journal is then read from it),
    /// not a replica's view of an item it came to hold.
    fn start_run(self: Arc<Self>, item: WorkItem, granted: bool) {
        let Some(lease) = item.lease.clone() else {
            return;
        };
        let handed_over = item
            .holders()
            .rev()
            .nth(1)
            .is_some_and(|h| h.ended == Some(swarm_claims::ClaimEnd::HandedOff));
        let (cancel_tx, cancel_rx) = watch::channel(item.cancel_requested().is_some());
        let (suspend_tx, suspend_rx) = watch::channel(None);
        {
            let mut runs = self.runs();
            if runs.contains_key(&*item.id) {
                return;
            }
            runs.insert(
                item.id.to_string(),
                RunControl {
                    token: lease.token,
                    cancel: cancel_tx,
                    suspend: suspend_tx,
                    lease_expires_at: lease.expires_at,
                },
            );
        }
        if handed_over {
            self.ctx.metrics.runs.handoffs_received.inc();
        }
        tokio::spawn(async move {
            let id = item.id.to_string();
            let token = lease.token;
            let span =
                tracing::info_span!("workflow", node = self.ctx.config.id, work_id = %id, token);
            match WorkflowPayload::load(&item.payload) {
                Ok((payload, workflow)) => {
                    // Before anything is logged in it: the span starts then.
                    crate::telemetry::set_parent(&span, payload.trace.as_ref());
                    tracing::info!(parent: &span, workflow = workflow.name(), attempt = item.attempt, "running workflow");
                    let journal = RaftJournal::new(self.ctx.clone(), id.clone(), token);
                    let journal = if granted {
                        journal.granted(&item)
                    } else {
                        journal
                    };
                    let reactor = Reactor::new()
                        .with_journal(Arc::new(journal))
                        .with_capabilities(self.ctx.config.capabilities.clone())
                        .with_waits(Arc::new(ReplicaWaits {
                            ctx: self.ctx.clone(),
                        }))
                        .suspend_on_missing_capability(true)
                        .with_middleware(TracingMiddleware)
                        .with_middleware(RunMiddleware::new(
                            workflow.name(),
                            &self.ctx.metrics.runs,
                        ));
                    let options = RunOptions {
                        run_id: Some(id.clone()),
                        fencing_token: Some(token),
                        cancel: Some(cancel_rx),
                        suspend: Some(suspend_rx),
                        ..RunOptions::default()
                    };
                    let report = reactor
                        .run(workflow, payload.inputs, options)
                        .instrument(span.clone())
                        .await;
                    self.finish(&item, token, report)
                        .instrument(span.clone())
                        .await;
                }
                Err(e) => {
                    tracing::warn!(parent: &span, error = %e, "workflow payload cannot run");
                    self.end(&id, token, Err(e)).await;
                }
            }
            // Leave the run in the table until this replica has applied
            // what the run's end proposed (complete, fail, release, hand
            // off): until then the replica still shows the claim as ours,
            // and the next applied entry would start the run again.
            if let Err(e) = self.ctx.cluster.read_barrier().await {
                tracing::debug!(work_id = %id, error = %e, "replica may lag behind the run's end");
            }
            self.runs().remove(&id);
            self.wake();
        });
    }

    /// Records how a run ended: complete, fail, hand off or release.
    async fn finish(&self, item: &WorkItem, token: FencingToken, report: RunReport) {
        let id = &item.id;
        if report.succeeded() {
            tracing::info!(work_id = %id, "workflow succeeded");
            self.end(id, token, Ok(report.result.clone())).await;
            return;
        }
        let Some(suspension) = report.suspended.clone() else {
            let error = report
                .error
                .as_ref()
                .map_or_else(|| "workflow failed".to_string(), |e| e.to_string());
            tracing::info!(work_id = %id, %error, undone = ?report.undone, "workflow failed");
            self.end(id, token, Err(error)).await;
            return;
        };
        match suspension.reason {
            SuspendReason::Fenced { error } => self.refused(id, token, &error).await,
            SuspendReason::JournalUnavailable { error } => {
                // The claim is still ours: once this run leaves the table,
                // the claim loop adopts the item again and resumes it from
                // the journal (or the lease runs out and another node does).
                tracing::warn!(work_id = %id, token, %error, "journal unavailable: run suspended, nothing undone; it resumes from the journal");
            }
            SuspendReason::MissingCapability { capability } => {
                tracing::info!(work_id = %id, %capability, step = ?suspension.step, "handing off: step needs a capability this node lacks");
                let mut need = item.requires().to_vec();
                need.push(capability.clone());
                // A node that has it may not have registered yet (a cluster
                // that just started): it fails only once none has shown up
                // for CAPABILITY_GRACE.
                let deadline = tokio::time::Instant::now() + CAPABILITY_GRACE;
                loop {
                    if self.hand_off(id, token, &need).await {
                        break;
                    }
                    let anyone = self
                        .ctx
                        .state
                        .read(|s| s.nodes().any(|n| n.capabilities.contains(&capability)));
                    if anyone {
                        self.release(id, token).await;
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        let reason = format!(
                            "step {:?} requires capability {capability:?}, which no node has",
                            suspension.step.clone().unwrap_or_default()
                        );
                        self.end(id, token, Err(reason)).await;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            SuspendReason::Exhausted { error } => {
                let step = suspension.step.clone().unwrap_or_default();
                let hold = swarm_claims::Hold::Paused {
                    reason: format!("step {step:?} failed for good (on_exhausted: pause): {error}"),
                    since: now_millis(),
                };
                self.park(id, token, hold).await;
            }
            SuspendReason::Wait {
                signal,
                until,
                since,
            } => {
                let hold = match signal {
                    Some(name) => swarm_claims::Hold::Signal {
                        name,
                        since,
                        timeout_at: until.unwrap_or(0),
                    },
                    None => swarm_claims::Hold::Sleep {
                        until: until.unwrap_or(0),
                        since,
                    },
                };
                self.park(id, token, hold).await;
            }
            SuspendReason::Requested => {
                if !self.holds(id, token) {
                    return;
                }
                if self.pause_requested(id).is_some() {
                    self.park_paused(id, token).await;
                    return;
                }
                if !self.hand_off(id, token, item.requires()).await {
                    self.release(id, token).await;
                }
            }
        }
    }

    /// Whether this replica shows `token` as the item's current claim.
    fn holds(&self, id: &str, token: FencingToken) -> bool {
        self.ctx
            .state
            .read(|s| s.get(id).and_then(|i| i.current_token()))
            == Some(token)
    }

    /// The journal refused an entry of the run. Usually a newer holder owns
    /// the work (a stale token) and there is nothing to do; but when the
    /// cluster still shows the claim as ours, the entry itself was refused
    /// (too large, invalid), a resumed run would be refused the same way,
    /// and the workflow fails with the reason.
    async fn refused(&self, id: &str, token: FencingToken, error: &str) {
        if let Err(e) = self.ctx.cluster.read_barrier().await {
            tracing::warn!(work_id = %id, token, %error, read_error = %e, "journal refused an entry; who holds the work now could not be confirmed");
            return;
        }
        if !self.holds(id, token) {
            tracing::warn!(work_id = %id, token, %error, "fenced: another holder owns the work now");
            return;
        }
        tracing::warn!(work_id = %id, token, %error, "journal refused an entry while the claim is still ours: failing the workflow");
        self.end(
            id,
            token,
            Err(format!("journal refused a checkpoint: {error}")),
        )
        .await;
    }

    async fn end(&self, id: &str, token: FencingToken, outcome: Result<Value, String>) {
        let recorded = match outcome {
            Ok(result) => {
                let complete = Complete {
                    id: id.to_string(),
                    token,
                    result: result.to_string(),
                    now: 0,
                };
                self.ctx.cluster.request(complete).await
            }
            Err(error) => {
                let fail = Fail {
                    id: id.to_string(),
                    token,
                    error,
                    retry: false,
                    now: 0,
                };
                self.ctx.cluster.request(fail).await
            }
        };
        match recorded {
            Ok(_) => {}
            Err(e @ ClusterError::Refused(_)) => {
                tracing::warn!(work_id = %id, error = %e, "outcome refused")
            }
            Err(e) => tracing::warn!(work_id = %id, error = %e, "outcome not recorded"),
        }
    }

    async fn release(&self, id: &str, token: FencingToken) {
        let release = Release {
            id: id.to_string(),
            token,
            now: 0,
        };
        match self.ctx.cluster.request(release).await {
            Ok(_) => tracing::info!(work_id = %id, "released"),
            Err(e @ ClusterError::Refused(_)) => {
                tracing::warn!(work_id = %id, error = %e, "release refused")
            }
            Err(e) => tracing::warn!(work_id = %id, error = %e, "release not recorded"),
        }
    }

    /// Hands the item to the least loaded live node whose capabilities cover
    /// `need`, then offers it there. False when no such node took it.
    async fn hand_off(&self, id: &str, token: FencingToken, need: &[String]) -> bool {
        let mut candidates: Vec<(f64, String, String)> = self.ctx.state.read(|s| {
            s.nodes()
                .filter(|n| n.agent != self.agent)
                .filter(|n| need.iter().all(|c| n.capabilities.contains(c)))
                .map(|n| {
                    let load = s.claims_of(&n.agent).len() as f64 / f64::from(n.capacity.max(1));
                    (load, n.agent.clone(), n.addr.clone())
                })
                .collect()
        });
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (_, agent, addr) in candidates {
            if !self.is_live(&addr).await {
                continue;
            }
            let handoff = Handoff {
                id: id.to_string(),
                token,
                to_agent: agent.clone(),
                now: 0,
            };
            let new_token = match self.ctx.cluster.request(handoff).await {
                Ok(item) => item.token,
                Err(e @ ClusterError::Refused(_)) => {
                    tracing::warn!(work_id = %id, error = %e, "handoff refused");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(work_id = %id, error = %e, "handoff not recorded");
                    return false;
                }
            };
            tracing::info!(work_id = %id, to = %agent, token = new_token, "handed off");
            self.ctx.metrics.runs.handoffs_sent.inc();
            if let Ok(channel) = self.ctx.peers.get(&addr) {
                let mut client = HandoffServiceClient::new(channel);
                let mut req = crate::telemetry::traced_request(pb::OfferRequest {
                    id: id.to_string(),
                    token: new_token,
                });
                req.set_timeout(Duration::from_secs(2));
                if let Err(e) = client.offer(req).await {
                    // It will find the item in its replica anyway.
                    tracing::debug!(to = %agent, error = %e.message(), "offer not delivered");
                }
            }
            return true;
        }
        false
    }

    async fn is_live(&self, addr: &str) -> bool {
        let Ok(channel) = self.ctx.peers.get(addr) else {
            return false;
        };
        // Health is served on the peer port too.
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let mut req = crate::telemetry::traced_request(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        });
        req.set_timeout(Duration::from_millis(500));
        client.check(req).await.is_ok()
    }
}

/// `HandoffService`: a peer tells this node it was handed an item.
#[derive(Clone)]
pub struct HandoffApi {
    agent: Arc<Agent>,
}

impl HandoffApi {
    pub fn new(agent: Arc<Agent>) -> HandoffApi {
        HandoffApi { agent }
    }
}

#[tonic::async_trait]
impl HandoffService for HandoffApi {
    async fn offer(
        &self,
        request: tonic::Request<pb::OfferRequest>,
    ) -> Result<tonic::Response<pb::OfferResponse>, tonic::Status> {
        // A peer call: only a member's node certificate (with TLS on).
        self.agent.ctx.cluster.peer_auth().admit(&request)?;
        let r = request.into_inner();
        tracing::info!(work_id = %r.id, token = r.token, "offered a handed-off item");
        self.agent.wake();
        Ok(tonic::Response::new(pb::OfferResponse { accepted: true }))
    }
}
