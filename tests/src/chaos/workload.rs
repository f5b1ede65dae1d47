//! The workload: concurrent clients that drive a cluster the way agents do,
//! every operation recorded through the [`Recorder`].
//!
//! - **Task clients** loop: submit a plain task (with an idempotency key),
//!   claim, sometimes renew, write to the fenced resource with the token, then
//!   complete, or fail, release or abandon it. Some iterations are *slow
//!   holders*: they claim with a short lease and sleep past it before they
//!   write, so another client may hold the item by then and the stale write
//!   must be rejected. Slow holders submit at a higher priority, so the next
//!   claim anywhere picks their item up once its lease has expired.
//! - **The workflow submitter** submits workflows whose `exec` steps write
//!   the step's `SWARM_FENCING_TOKEN` to the fenced resource over HTTP.
//! - **The leader observer** polls every node's cluster status.
//! - **The drainer** (after the faults are healed) claims and completes every
//!   task still open, so that nothing is left pending at the end.
//!
//! An outcome is `Failed` only when the operation certainly did not happen:
//! a definite refusal by the state machine, an `Unavailable` that carries
//! `swarm-leader-addr` (swarmd's "nothing was proposed"), or a connection
//! that was never opened. Anything else that is not an answer is `Unknown`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::future::join_all;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use swarm_proto::v1::{
    ClaimRequest, CompleteRequest, FailRequest, ListWorkRequest, PauseWorkRequest, ReadConsistency,
    ReleaseRequest, RenewRequest, ResumeWorkRequest, SignalWorkRequest, SubmitRequest, WorkItem,
    WorkStatus,
};
use tonic::{Code, Status};

use super::fenced::FencedResource;
use super::history::{Grant, OpFields, OpHandle, OpKind, OpResult, Recorder};
use crate::{Cluster, NodeId};

/// The type of every plain task the workload submits.
pub const TASK_TYPE: &str = "chaos-task";
/// Priority of a slow holder's task: above every other task, so an expired
/// one is claimed again first.
const SLOW_PRIORITY: i32 = 9;
/// Client number of the workflow submitter and of the drainer (task clients
/// are numbered from 0; the drainer's concurrent completions take the
/// numbers after its own).
pub const WORKFLOW_CLIENT: u32 = 1000;
pub const DRAIN_CLIENT: u32 = 1001;
/// Tasks the drainer claims at once.
const DRAIN_BATCH: u32 = 64;
/// The concurrency key some tasks carry, and its limit: at most this many
/// of them claimed at once (the runner sets it before the workload starts;
/// the checker verifies it held, `limit_exceeded`).
pub const CHAOS_KEY: &str = "chaos-key";
pub const CHAOS_KEY_LIMIT: u32 = 2;

/// How the workload behaves.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub seed: u64,
    /// Concurrent task clients.
    pub clients: u32,
    /// Lease asked for by an ordinary claim.
    pub lease: Duration,
    /// Lease asked for by a slow holder, and how long it then sleeps.
    pub slow_lease: Duration,
    pub slow_sleep: Duration,
    /// One iteration in this many is a slow holder.
    pub slow_one_in: u32,
    /// The least time between two operations of one client: the rate bound.
    pub min_op_interval: Duration,
    /// How long a client waits for an answer before it records `Unknown`.
    pub op_timeout: Duration,
    /// Time between two workflow submissions; `None`: no workflows.
    pub workflow_every: Option<Duration>,
    /// How often the leader observer polls.
    pub observe_every: Duration,
    /// One task in this many carries [`CHAOS_KEY`] (0: none).
    pub keyed_one_in: u32,
    /// One task in this many is delayed by up to `max_delay` (0: none); the
    /// checker verifies none was granted before its time (`granted_early`).
    pub delayed_one_in: u32,
    pub max_delay: Duration,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            seed: 1,
            clients: 8,
            lease: Duration::from_secs(3),
            slow_lease: Duration::from_millis(400),
            slow_sleep: Duration::from_millis(1500),
            slow_one_in: 12,
            min_op_interval: Duration::from_millis(2),
            op_timeout: Duration::from_secs(3),
            workflow_every: Some(Duration::from_secs(2)),
            observe_every: Duration::from_millis(250),
            keyed_one_in: 4,
            delayed_one_in: 6,
            max_delay: Duration::from_millis(800),
        }
    }
}

/// Shared by every client of one run.
pub struct Workload<'a> {
    cluster: &'a Cluster,
    recorder: Recorder,
    fenced: FencedResource,
    config: WorkloadConfig,
    /// The spec of the workflows to submit (exec steps that write to the
    /// fenced resource), or `None` for no workflows.
    workflow_spec: Option<String>,
    /// Counts workflow submissions, for their idempotency keys.
    workflows: AtomicU64,
    /// Run control the workload exercised: runs paused, resumed, signalled.
    pub run_control: RunControlCounts,
}

impl std::fmt::Debug for Workload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("config", &self.config)
            .finish()
    }
}

/// A workflow of three steps: a fenced write, a pause that gives the
/// nemeses time to catch the holder mid-run, another fenced write.
pub fn workflow_spec(write_script: &Path) -> String {
    let cmd = write_script.display();
    format!(
        "name: chaos-fenced\nsteps:\n  \
         - {{ name: first, run: exec, with: {{ command: [\"{cmd}\"] }}, max_retries: 2, backoff: {{ initial: 100ms, max: 500ms }} }}\n  \
         - {{ name: hold, run: sleep, with: {{ duration: 1500ms }}, wait_for: [first] }}\n  \
         - {{ name: second, run: exec, with: {{ command: [\"{cmd}\"] }}, wait_for: [hold], max_retries: 2, backoff: {{ initial: 100ms, max: 500ms }} }}\n\
         return: second\n"
    )
}

/// How many runs the workload paused, resumed and signalled.
#[derive(Debug, Default)]
pub struct RunControlCounts {
    pub paused: AtomicU64,
    pub resumed: AtomicU64,
    pub signalled: AtomicU64,
}

/// The chaos workflow with a `signal` step between its hold and its second
/// write: the run parks until the workload approves it.
fn with_signal_step(spec: &str) -> String {
    spec.replace(
        "wait_for: [hold], max_retries",
        "wait_for: [approve], max_retries",
    )
    .replace(
        "\nreturn: second",
        "\n  - { name: approve, run: signal, with: { name: approve }, wait_for: [hold] }\nreturn: second",
    )
}

/// A stable hash of an id: which runs the workload pauses.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// What one submit asks for.
#[derive(Debug, Clone, Copy, Default)]
struct Task<'a> {
    kind: &'a str,
    priority: i32,
    /// The idempotency key.
    key: &'a str,
    payload: &'a str,
    delay_ms: u64,
    /// Empty: none.
    concurrency_key: &'a str,
}

/// What a call's failure means for the history.
enum CallError {
    /// Certainly did not happen.
    Definite(String),
    /// May have happened.
    Unknown(String),
}

impl<'a> Workload<'a> {
    pub fn new(
        cluster: &'a Cluster,
        recorder: Recorder,
        fenced: FencedResource,
        config: WorkloadConfig,
        workflow_spec: Option<String>,
    ) -> Self {
        Workload {
            cluster,
            recorder,
            fenced,
            config,
            workflow_spec,
            workflows: AtomicU64::new(0),
            run_control: RunControlCounts::default(),
        }
    }

    /// Runs every client, the workflow submitter and the leader observer
    /// until `until`. In-flight operations finish (bounded by the op
    /// timeout); a slow holder mid-sleep finishes its iteration.
    pub async fn run(&self, until: Instant) {
        let clients = (0..self.config.clients).map(|c| self.task_client(c, until));
        futures::join!(
            join_all(clients),
            self.workflow_submitter(until),
            self.leader_observer(until),
            self.run_controller(until),
        );
    }

    /// Polls leadership until `until`.
    pub async fn leader_observer(&self, until: Instant) {
        while Instant::now() < until {
            self.recorder.observe_cluster(self.cluster).await;
            tokio::time::sleep(self.config.observe_every).await;
        }
    }

    async fn workflow_submitter(&self, until: Instant) {
        let (Some(every), Some(spec)) = (self.config.workflow_every, &self.workflow_spec) else {
            return;
        };
        let mut rng = StdRng::seed_from_u64(self.config.seed ^ 0x77_6f72_6b66);
        while Instant::now() + every < until {
            tokio::time::sleep(every).await;
            let n = self.workflows.fetch_add(1, Ordering::Relaxed);
            let key = format!("chaos-{}-wf-{n}", self.config.seed);
            // Every other run waits for a signal between its two writes.
            let spec = match n % 2 {
                0 => spec.clone(),
                _ => with_signal_step(spec),
            };
            let payload = json!({ "spec": spec, "inputs": {} }).to_string();
            let task = Task {
                kind: "workflow",
                priority: 0,
                key: &key,
                payload: &payload,
                ..Task::default()
            };
            self.submit(&mut rng, WORKFLOW_CLIENT, task).await;
        }
    }

    async fn task_client(&self, client: u32, until: Instant) {
        let mut rng = StdRng::seed_from_u64(
            self.config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(u64::from(client)),
        );
        let agent = format!("client-{client}");
        let mut n = 0u64;
        while Instant::now() < until {
            n += 1;
            let slow = rng.random_ratio(1, self.config.slow_one_in.max(1));
            let key = format!("chaos-{}-c{client}-{n}", self.config.seed);
            let priority = if slow {
                SLOW_PRIORITY
            } else {
                rng.random_range(0..3)
            };
            let keyed =
                self.config.keyed_one_in > 0 && rng.random_ratio(1, self.config.keyed_one_in);
            let max_delay = u64::try_from(self.config.max_delay.as_millis()).unwrap_or(0);
            let delay_ms = match self.config.delayed_one_in {
                n if n > 0 && max_delay > 0 && rng.random_ratio(1, n) => {
                    rng.random_range(1..=max_delay)
                }
                _ => 0,
            };
            let task = Task {
                kind: TASK_TYPE,
                priority,
                key: &key,
                payload: "{}",
                delay_ms,
                concurrency_key: if keyed { CHAOS_KEY } else { "" },
            };
            self.submit(&mut rng, client, task).await;
            self.pace().await;

            let lease = if slow {
                self.config.slow_lease
            } else {
                self.config.lease
            };
            let Some(item) = self.claim(&mut rng, client, &agent, lease).await else {
                self.pace().await;
                continue;
            };
            let Some(token) = item.claim.as_ref().map(|c| c.token) else {
                continue;
            };
            self.pace().await;

            if slow {
                // Past the lease: the item may be someone else's by now.
                tokio::time::sleep(self.config.slow_sleep).await;
            } else if rng.random_ratio(1, 4) {
                self.renew(&mut rng, client, &agent, token).await;
                self.pace().await;
            }

            match rng.random_range(0..100) {
                0..75 => {
                    let accepted = self.fenced_write(client, &item.id, token, &agent);
                    // A holder that learns it is stale still tries to
                    // complete now and then: the cluster must refuse it too.
                    if accepted || rng.random_ratio(1, 2) {
                        self.complete(&mut rng, client, &item.id, token).await;
                    }
                }
                75..85 => {
                    let retry = rng.random_ratio(2, 3);
                    self.fail(&mut rng, client, &item.id, token, retry).await;
                }
                85..95 => self.release(&mut rng, client, &item.id, token).await,
                // Abandoned, as by a crashed agent: the lease expires.
                _ => {}
            }
            self.pace().await;
        }
    }

    async fn pace(&self) {
        if !self.config.min_op_interval.is_zero() {
            tokio::time::sleep(self.config.min_op_interval).await;
        }
    }

    /// Submits, retrying with the same key while the outcome is unknown
    /// (at most three times): the key makes the retry safe.
    async fn submit(&self, rng: &mut StdRng, client: u32, task: Task<'_>) -> Option<String> {
        let Task {
            kind,
            priority,
            key,
            payload,
            delay_ms,
            concurrency_key,
        } = task;
        for _ in 0..3 {
            let node = self.pick_node(rng)?;
            let op = self
                .recorder
                .invoke(client, OpKind::Submit, OpFields::submit(key));
            let request = SubmitRequest {
                r#type: kind.to_string(),
                priority,
                payload_json: payload.to_string(),
                idempotency_key: key.to_string(),
                delay_ms,
                concurrency_key: concurrency_key.to_string(),
                ..Default::default()
            };
            let result = match self.cluster.work(node) {
                Ok(mut work) => self.call(work.submit(self.timed(request))).await,
                Err(e) => Err(CallError::Definite(e.to_string())),
            };
            match result {
                Ok(resp) => {
                    let Some(item) = resp.item else {
                        op.unknown("submit answered without an item");
                        continue;
                    };
                    op.ok(OpResult::submitted(item.id.clone(), resp.created));
                    return Some(item.id);
                }
                Err(CallError::Definite(why)) => op.failed(why),
                Err(CallError::Unknown(why)) => op.unknown(why),
            }
        }
        None
    }

    async fn claim(
        &self,
        rng: &mut StdRng,
        client: u32,
        agent: &str,
        lease: Duration,
    ) -> Option<WorkItem> {
        self.claim_up_to(rng, client, agent, lease, 1)
            .await
            .into_iter()
            .next()
    }

    async fn claim_up_to(
        &self,
        rng: &mut StdRng,
        client: u32,
        agent: &str,
        lease: Duration,
        max: u32,
    ) -> Vec<WorkItem> {
        let Some(node) = self.pick_node(rng) else {
            return Vec::new();
        };
        let op = self
            .recorder
            .invoke(client, OpKind::Claim, OpFields::agent(agent));
        let request = ClaimRequest {
            agent: agent.to_string(),
            types: vec![TASK_TYPE.to_string()],
            max,
            lease_ms: lease.as_millis() as u64,
            ..Default::default()
        };
        let result = match self.cluster.work(node) {
            Ok(mut work) => self.call(work.claim(self.timed(request))).await,
            Err(e) => Err(CallError::Definite(e.to_string())),
        };
        match result {
            Ok(resp) => {
                op.ok(OpResult::granted(Grant::from_items(&resp.items)));
                resp.items
            }
            Err(e) => {
                record_error(op, e);
                Vec::new()
            }
        }
    }

    async fn renew(&self, rng: &mut StdRng, client: u32, agent: &str, token: u64) {
        let mut fields = OpFields::agent(agent);
        fields.tokens = vec![token];
        let op = self.recorder.invoke(client, OpKind::Renew, fields);
        let Some(node) = self.pick_node(rng) else {
            op.failed("no running node");
            return;
        };
        let request = RenewRequest {
            agent: agent.to_string(),
            tokens: vec![token],
            progress: None,
        };
        let result = match self.cluster.work(node) {
            Ok(mut work) => self.call(work.renew(self.timed(request))).await,
            Err(e) => Err(CallError::Definite(e.to_string())),
        };
        match result {
            Ok(resp) => op.ok(OpResult::granted(Grant::from_items(&resp.renewed))),
            Err(e) => record_error(op, e),
        }
    }

    async fn complete(&self, rng: &mut StdRng, client: u32, item: &str, token: u64) {
        let op = self
            .recorder
            .invoke(client, OpKind::Complete, OpFields::held(item, token));
        let Some(node) = self.pick_node(rng) else {
            op.failed("no running node");
            return;
        };
        let request = CompleteRequest {
            id: item.to_string(),
            token,
            result_json: json!({ "by": client, "token": token }).to_string(),
        };
        let result = match self.cluster.work(node) {
            Ok(mut work) => self.call(work.complete(self.timed(request))).await,
            Err(e) => Err(CallError::Definite(e.to_string())),
        };
        record_plain(op, result);
    }

    async fn fail(&self, rng: &mut StdRng, client: u32, item: &str, token: u64, retry: bool) {
        let mut fields = OpFields::held(item, token);
        fields.retry = Some(retry);
        let op = self.recorder.invoke(client, OpKind::Fail, fields);
        let Some(node) = self.pick_node(rng) else {
            op.failed("no running node");
            return;
        };
        let request = FailRequest {
            id: item.to_string(),
            token,
            error: format!("chaos client {client} gave up"),
            retry,
        };
        let result = match self.cluster.work(node) {
            Ok(mut work) => self.call(work.fail(self.timed(request))).await,
            Err(e) => Err(CallError::Definite(e.to_string())),
        };
        record_plain(op, result);
    }

    async fn release(&self, rng: &mut StdRng, client: u32, item: &str, token: u64) {
        let op = self
            .recorder
            .invoke(client, OpKind::Release, OpFields::held(item, token));
        let Some(node) = self.pick_node(rng) else {
            op.failed("no running node");
            return;
        };
        let request = ReleaseRequest {
            id: item.to_string(),
            token,
        };
        let result = match self.cluster.work(node) {
            Ok(mut work) => self.call(work.release(self.timed(request))).await,
            Err(e) => Err(CallError::Definite(e.to_string())),
        };
        record_plain(op, result);
    }

    /// Writes to the fenced resource (in process: it cannot time out).
    /// Returns whether the write was accepted.
    fn fenced_write(&self, client: u32, item: &str, token: u64, writer: &str) -> bool {
        let mut fields = OpFields::held(item, token);
        fields.writer = Some(writer.to_string());
        let op = self.recorder.invoke(client, OpKind::FencedWrite, fields);
        match self.fenced.write(item, token, writer) {
            Ok(()) => {
                op.ok(OpResult::none());
                true
            }
            Err(rejected) => {
                op.failed(rejected.to_string());
                false
            }
        }
    }

    /// After the faults: claims and completes every task still open until
    /// none is left and every workflow has ended, for at most `timeout`.
    /// Fails naming what is still open when time runs out.
    pub async fn drain(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut rng = StdRng::seed_from_u64(self.config.seed ^ 0x64_7261_696e);
        let agent = "drainer".to_string();
        loop {
            let open = self.open_items().await;
            if let Ok(open) = &open
                && open.is_empty()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                match open {
                    Ok(open) => bail!(
                        "{} items still open after {timeout:?}: {:?}",
                        open.len(),
                        open.iter()
                            .take(10)
                            .map(|i| (&i.id, &i.r#type, i.status))
                            .collect::<Vec<_>>()
                    ),
                    Err(e) => return Err(e.context(format!("list open items after {timeout:?}"))),
                }
            }
            let tasks_open = open
                .as_ref()
                .map(|o| o.iter().any(|i| i.r#type == TASK_TYPE))
                .unwrap_or(true);
            if !tasks_open {
                // Only workflows left: the nodes run those, once every
                // paused one is resumed and every waiting one signalled.
                if let Ok(open) = &open {
                    self.unblock(open, false).await;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            let items = self
                .claim_up_to(
                    &mut rng,
                    DRAIN_CLIENT,
                    &agent,
                    self.config.lease,
                    DRAIN_BATCH,
                )
                .await;
            if items.is_empty() {
                // Open tasks held by others: their leases will expire.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            // Completed concurrently: the nodes batch them into few entries.
            let seed = rng.random::<u64>();
            let completions = items.iter().enumerate().filter_map(|(i, item)| {
                let token = item.claim.as_ref()?.token;
                let agent = &agent;
                // One operation at a time per client number, as the
                // history expects.
                let client = DRAIN_CLIENT + 1 + i as u32;
                Some(async move {
                    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64));
                    self.fenced_write(client, &item.id, token, agent);
                    self.complete(&mut rng, client, &item.id, token).await;
                })
            });
            join_all(completions).await;
        }
    }

    /// Until `until`: pauses running workflows now and then, resumes paused
    /// ones, and signals the ones waiting for approval, through any node.
    async fn run_controller(&self, until: Instant) {
        if self.workflow_spec.is_none() {
            return;
        }
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(700)).await;
            if let Ok(open) = self.open_items().await {
                self.unblock(&open, true).await;
            }
        }
    }

    /// Signals the open workflows that wait for approval and resumes the
    /// paused ones; with `pause`, first pauses one running workflow in
    /// three. Every call's failure is ignored: the next round tries again.
    async fn unblock(&self, open: &[WorkItem], pause: bool) {
        let Some(node) = self.cluster.running().first().copied() else {
            return;
        };
        let Ok(mut work) = self.cluster.work(node) else {
            return;
        };
        let counts = &self.run_control;
        for item in open.iter().filter(|i| i.r#type == "workflow") {
            let id = item.id.clone();
            if item.hold.starts_with("waiting for signal") {
                let signal = SignalWorkRequest {
                    id,
                    name: "approve".into(),
                    payload_json: r#"{"by":"chaos"}"#.into(),
                };
                if work.signal_work(self.timed(signal)).await.is_ok() {
                    counts.signalled.fetch_add(1, Ordering::Relaxed);
                }
            } else if item.hold.starts_with("paused") {
                let resume = ResumeWorkRequest { id };
                if work.resume_work(self.timed(resume)).await.is_ok() {
                    counts.resumed.fetch_add(1, Ordering::Relaxed);
                }
            } else if pause
                && item.status == WorkStatus::Claimed as i32
                && item.pause_requested.is_none()
                && fnv(&item.id).is_multiple_of(3)
            {
                let request = PauseWorkRequest {
                    id,
                    reason: "chaos".into(),
                };
                if work.pause_work(self.timed(request)).await.is_ok() {
                    counts.paused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Items not yet in a terminal state, as a linearizable read sees them.
    async fn open_items(&self) -> Result<Vec<WorkItem>> {
        let mut last = None;
        for node in self.cluster.running() {
            match self.open_items_of(node).await {
                Ok(open) => return Ok(open),
                Err(CallError::Definite(e) | CallError::Unknown(e)) => last = Some(e),
            }
        }
        bail!(
            "no node listed the items: {}",
            last.unwrap_or_else(|| "no running node".into())
        )
    }

    /// The open items `node` lists, page by page.
    async fn open_items_of(&self, node: NodeId) -> Result<Vec<WorkItem>, CallError> {
        let mut work = self
            .cluster
            .work(node)
            .map_err(|e| CallError::Definite(e.to_string()))?;
        let mut request = ListWorkRequest {
            consistency: ReadConsistency::Linearizable as i32,
            ..Default::default()
        };
        let mut open = Vec::new();
        loop {
            let page = self
                .call(work.list_work(self.timed(request.clone())))
                .await?;
            open.extend(page.items.into_iter().filter(|i| {
                i.status == WorkStatus::Pending as i32 || i.status == WorkStatus::Claimed as i32
            }));
            if page.next_page_token.is_empty() {
                return Ok(open);
            }
            request.page_token = page.next_page_token;
        }
    }

    fn pick_node(&self, rng: &mut StdRng) -> Option<NodeId> {
        self.cluster.running().choose(rng).copied()
    }

    fn timed<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.config.op_timeout);
        request
    }

    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, CallError> {
        // A little longer than the gRPC deadline, which the server sees too.
        let limit = self.config.op_timeout + Duration::from_millis(500);
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(classify(&status)),
            Err(_) => Err(CallError::Unknown(format!("no answer within {limit:?}"))),
        }
    }
}

fn record_plain<T>(op: OpHandle, result: Result<T, CallError>) {
    match result {
        Ok(_) => op.ok(OpResult::none()),
        Err(e) => record_error(op, e),
    }
}

fn record_error(op: OpHandle, e: CallError) {
    match e {
        CallError::Definite(why) => op.failed(why),
        CallError::Unknown(why) => op.unknown(why),
    }
}

/// Whether a refusal is definite (nothing happened) or leaves the outcome
/// open.
fn classify(status: &Status) -> CallError {
    let text = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        // Refusals by the state machine or by validation: nothing applied.
        Code::FailedPrecondition
        | Code::NotFound
        | Code::InvalidArgument
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::PermissionDenied
        | Code::Unauthenticated => CallError::Definite(text),
        // swarmd marks "nothing was proposed" with this key.
        Code::Unavailable if status.metadata().get("swarm-leader-addr").is_some() => {
            CallError::Definite(text)
        }
        // The connection was never opened, so nothing was sent.
        Code::Unavailable if connect_refused(status) => CallError::Definite(text),
        _ => CallError::Unknown(text),
    }
}

fn connect_refused(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = e.source();
    }
    false
}
