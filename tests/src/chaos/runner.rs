//! Runs a workload under nemeses for a bounded time, heals the cluster and
//! checks the history.
//!
//! [`run`] starts a cluster of real `swarmd` processes with a proxy on every
//! directed peer link, a fenced resource served on 127.0.0.1 for workflow
//! steps, and then, for `duration`, the [`Workload`] and the [`Nemesis`]
//! together. Afterwards it heals everything, waits (bounded) until every
//! item has ended, reads every replica and runs the [`checker`], and builds
//! the [`ChaosReport`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use swarm_proto::v1::WorkStatus;

use super::checker::{self, CheckInput, CheckReport, Liveness};
use super::fenced::{FencedResource, install_write_script};
use super::history::{History, OpCounts, OpKind, Outcome};
use super::nemesis::{FaultKind, FaultRecord, Nemesis, NemesisConfig, heal_everything};
use super::proxy::LinkProxies;
use super::workload::{CHAOS_KEY, CHAOS_KEY_LIMIT, Workload, WorkloadConfig, workflow_spec};
use crate::{Cluster, ClusterOptions, NodeId, free_ports, within};

/// Lease the nodes ask for when they claim a workflow: short, so that a
/// paused agent loses its work within seconds.
const WORKFLOW_LEASE: Duration = Duration::from_secs(3);

/// One chaos run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub seed: u64,
    /// How long the workload and the nemeses run (healing, draining and
    /// checking come on top).
    pub duration: Duration,
    pub nemeses: Vec<FaultKind>,
    pub nodes: usize,
    pub workload: WorkloadConfig,
    /// Quiet time between faults, drawn from this range.
    pub fault_gap: (Duration, Duration),
    /// How long, after healing, every item has to reach a terminal state.
    pub liveness_timeout: Duration,
    /// Where to save the history as JSON (always, or only on anomalies when
    /// `save_history_on_anomaly_only`).
    pub history_path: Option<PathBuf>,
    pub save_history_on_anomaly_only: bool,
    /// The nodes' `--retention`: finished items are removed while the run
    /// goes on, and the checker must tell them from lost ones. `None`: the
    /// default (24h), nothing is removed.
    pub retention: Option<Duration>,
    /// `swarmctl cert` files for every node: the run goes over TLS and mutual
    /// TLS (the link proxies carry the TLS bytes untouched). `None`: plaintext.
    pub tls_dir: Option<PathBuf>,
}

impl ChaosConfig {
    /// A run of `duration` under every nemesis, seeded with `seed`.
    pub fn new(seed: u64, duration: Duration) -> ChaosConfig {
        ChaosConfig {
            seed,
            duration,
            nemeses: FaultKind::ALL.to_vec(),
            nodes: 3,
            workload: WorkloadConfig {
                seed,
                ..WorkloadConfig::default()
            },
            fault_gap: (Duration::from_secs(2), Duration::from_secs(5)),
            liveness_timeout: Duration::from_secs(90),
            history_path: None,
            save_history_on_anomaly_only: false,
            retention: None,
            tls_dir: None,
        }
    }
}

/// Count and total time of one kind of fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultSummary {
    pub count: u64,
    pub total: Duration,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    pub seed: u64,
    pub duration: Duration,
    /// The whole run, from start of the cluster to the checker's verdict.
    pub wall_time: Duration,
    pub faults: BTreeMap<&'static str, FaultSummary>,
    pub fault_log: Vec<FaultRecord>,
    pub ops: OpCounts,
    /// Counts per operation kind, of ops that were acknowledged.
    pub ok_by_kind: BTreeMap<String, u64>,
    pub check: CheckReport,
    pub elections: u64,
    /// SIGKILL of the leader to the first acknowledged write, per kill.
    pub recovery: Vec<Duration>,
    /// Why the cluster did not settle after healing, if it did not.
    pub liveness_error: Option<String>,
    pub history_saved: Option<PathBuf>,
    /// Workflow items by final status (from the first replica; those not
    /// yet removed after the retention period).
    pub workflows: BTreeMap<String, u64>,
    /// Fenced writes made by workflow steps: (accepted, rejected).
    pub workflow_writes: (u64, u64),
    /// Runs the workload paused, resumed and signalled.
    pub run_control: (u64, u64, u64),
    /// Finished items removed after the retention period (first replica).
    pub removed_by_retention: u64,
}

impl ChaosReport {
    /// Anomalies by kind (every kind present, most 0).
    pub fn anomalies(&self) -> BTreeMap<String, usize> {
        self.check.counts()
    }

    /// No anomaly of any kind.
    pub fn passed(&self) -> bool {
        self.check.is_clean()
    }

    pub fn recovery_p50(&self) -> Option<Duration> {
        percentile(&self.recovery, 50)
    }

    pub fn recovery_max(&self) -> Option<Duration> {
        self.recovery.iter().max().copied()
    }

    /// The machine-readable report (`--json`).
    pub fn to_json(&self) -> Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        json!({
            "seed": self.seed,
            "passed": self.passed(),
            "duration_ms": self.duration.as_millis() as u64,
            "wall_time_ms": self.wall_time.as_millis() as u64,
            "faults": self.faults.iter().map(|(k, s)| (k.to_string(), json!(s.count))).collect::<serde_json::Map<_, _>>(),
            "fault_time_ms": self.faults.iter().map(|(k, s)| (k.to_string(), json!(s.total.as_millis() as u64))).collect::<serde_json::Map<_, _>>(),
            "ops": {
                "invoked": self.ops.invoked,
                "ok": self.ops.ok,
                "failed": self.ops.failed,
                "unknown": self.ops.unknown,
            },
            "ok_by_kind": self.ok_by_kind,
            "ops_checked": self.check.ops_checked,
            "anomalies": self.anomalies(),
            "anomaly_examples": self.check.anomalies.iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), json!(v.iter().take(20).collect::<Vec<_>>())))
                .collect::<serde_json::Map<_, _>>(),
            "stale_rejected": self.check.stale_rejected,
            "key_claims_checked": self.check.key_claims_checked,
            "run_control": {
                "paused": self.run_control.0,
                "resumed": self.run_control.1,
                "signalled": self.run_control.2,
            },
            "delayed_checked": self.check.delayed_checked,
            "elections": self.elections,
            "recovery_ms": {
                "p50": ms(self.recovery_p50()),
                "max": ms(self.recovery_max()),
                "samples": self.recovery.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
            },
            "replica_hashes": self.check.replica_hashes,
            "workflows": self.workflows,
            "workflow_writes": { "accepted": self.workflow_writes.0, "rejected": self.workflow_writes.1 },
            "removed_by_retention": self.removed_by_retention,
            "fault_log": self.fault_log.iter().map(|f| json!({
                "kind": f.kind.name(),
                "node": f.node,
                "duration_ms": f.duration.as_millis() as u64,
                "detail": f.detail,
            })).collect::<Vec<_>>(),
            "liveness_error": self.liveness_error,
            "history": self.history_saved.as_ref().map(|p| p.display().to_string()),
        })
    }
}

impl std::fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        writeln!(
            f,
            "chaos run {verdict}: seed {} for {:?} ({:.1}s wall)",
            self.seed,
            self.duration,
            self.wall_time.as_secs_f64()
        )?;
        writeln!(f, "faults injected (in order):")?;
        for r in &self.fault_log {
            let node = r.node.map_or("-".to_string(), |n| format!("node {n}"));
            writeln!(
                f,
                "  {:<18} {node:<7} {:>6} ms  {}",
                r.kind.name(),
                r.duration.as_millis(),
                r.detail
            )?;
        }
        writeln!(f, "faults by kind:")?;
        for (kind, s) in &self.faults {
            writeln!(
                f,
                "  {kind:<18} {:>4} x, {:>7.1}s total",
                s.count,
                s.total.as_secs_f64()
            )?;
        }
        writeln!(
            f,
            "operations: {} invoked, {} ok, {} failed, {} unknown; {} checked",
            self.ops.invoked,
            self.ops.ok,
            self.ops.failed,
            self.ops.unknown,
            self.check.ops_checked
        )?;
        let ok: Vec<String> = self
            .ok_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(f, "acknowledged by kind: {}", ok.join(", "))?;
        writeln!(f, "anomalies:")?;
        for (kind, n) in self.anomalies() {
            writeln!(f, "  {kind:<22} {n}")?;
            for example in self.check.of(&kind).iter().take(5) {
                writeln!(f, "    - {example}")?;
            }
        }
        writeln!(f, "stale writes rejected: {}", self.check.stale_rejected)?;
        writeln!(
            f,
            "queue control checked: {} claims of limited keys, {} delayed items",
            self.check.key_claims_checked, self.check.delayed_checked
        )?;
        writeln!(
            f,
            "run control: {} runs paused, {} resumed, {} signalled",
            self.run_control.0, self.run_control.1, self.run_control.2
        )?;
        let wf: Vec<String> = self
            .workflows
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            f,
            "workflows: {}; their fenced writes: {} accepted, {} rejected",
            wf.join(", "),
            self.workflow_writes.0,
            self.workflow_writes.1
        )?;
        writeln!(
            f,
            "finished items removed after the retention period: {}",
            self.removed_by_retention
        )?;
        writeln!(f, "elections: {}", self.elections)?;
        match (self.recovery_p50(), self.recovery_max()) {
            (Some(p50), Some(max)) => writeln!(
                f,
                "recovery after leader kill (SIGKILL to first acknowledged write): p50 {} ms, max {} ms over {} kills",
                p50.as_millis(),
                max.as_millis(),
                self.recovery.len()
            )?,
            _ => writeln!(f, "recovery after leader kill: no leader was killed")?,
        }
        if let Some(e) = &self.liveness_error {
            writeln!(f, "liveness: {e}")?;
        }
        if let Some(p) = &self.history_saved {
            writeln!(f, "history saved to {}", p.display())?;
        }
        Ok(())
    }
}

/// Runs one chaos run; see the module doc. An error means the harness could
/// not do its job (a cluster that never started, replicas that could not be
/// read); anomalies are in the report.
pub async fn run(config: ChaosConfig) -> Result<ChaosReport> {
    // Every phase is bounded on its own; this is the backstop.
    let limit = config.duration + config.liveness_timeout + Duration::from_secs(300);
    within(limit, "chaos run", run_unbounded(config)).await
}

async fn run_unbounded(config: ChaosConfig) -> Result<ChaosReport> {
    let started = Instant::now();
    // Client and peer ports; the link proxies sit on the peer links.
    let mut ports = free_ports(2 * config.nodes)?;
    let peer_ports = ports.split_off(config.nodes);
    let addrs: BTreeMap<NodeId, std::net::SocketAddr> = peer_ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                i as NodeId + 1,
                std::net::SocketAddr::from(([127, 0, 0, 1], *p)),
            )
        })
        .collect();
    let proxies = LinkProxies::start(&addrs).await?;

    let fenced = FencedResource::new();
    let server = fenced.serve().await.context("serve the fenced resource")?;
    let scripts = tempfile::Builder::new()
        .prefix("swarm-chaos-")
        .tempdir()
        .context("create a directory for the step scripts")?;
    let script = install_write_script(scripts.path(), "fenced-write.sh", &server.write_url(), "wf")
        .context("install the fenced write script")?;

    let mut extra_args = vec![
        "--workflow-lease".into(),
        format!("{}ms", WORKFLOW_LEASE.as_millis()),
        "--renew-interval".into(),
        "1s".into(),
    ];
    if let Some(retention) = config.retention {
        extra_args.extend(["--retention".into(), format!("{}ms", retention.as_millis())]);
    }
    let options = ClusterOptions {
        ports: Some(ports),
        peer_ports: Some(peer_ports),
        per_node_args: addrs
            .keys()
            .map(|&n| (n, proxies.peer_route_args(n)))
            .collect(),
        extra_args,
        tls_dir: config.tls_dir.clone(),
        ..ClusterOptions::default()
    };
    let election_max = options.election_max;
    let mut cluster = Cluster::start_with(config.nodes, options).await?;

    set_key_limit(&cluster).await?;
    let recorder = super::history::Recorder::new();
    let epoch = Instant::now();
    let epoch_ms = recorder.now_ms();
    let workload = Workload::new(
        &cluster,
        recorder.clone(),
        fenced.clone(),
        config.workload.clone(),
        Some(workflow_spec(&script)),
    );
    let nemesis = Nemesis::new(
        &cluster,
        &proxies,
        NemesisConfig {
            kinds: config.nemeses.clone(),
            seed: config.seed,
            election_max,
            workflow_lease: WORKFLOW_LEASE,
            gap: config.fault_gap,
            hold_scale: 1.0,
        },
    );

    let until = Instant::now() + config.duration;
    let ((), faults) = tokio::join!(workload.run(until), nemesis.run(until));
    let faults = faults.context("inject faults")?;

    // Heal, then give the cluster a bounded time to settle and finish work.
    heal_everything(&cluster, &proxies)?;
    let mut liveness_error = None;
    if let Err(e) = cluster
        .wait_healthy(config.nodes, Duration::from_secs(60))
        .await
    {
        liveness_error = Some(format!("{e:#}"));
    }
    if liveness_error.is_none()
        && let Err(e) = workload.drain(config.liveness_timeout).await
    {
        liveness_error = Some(format!("{e:#}"));
    }
    recorder.observe_cluster(&cluster).await;

    let replicas = match checker::collect_replicas(&cluster).await {
        Ok(replicas) => replicas,
        Err(e) => {
            // As much a finding as an anomaly: keep what explains it.
            cluster.print_log_tails();
            cluster.keep_dir();
            return Err(e.context("read every replica after healing"));
        }
    };
    let history = recorder.history();
    let counts = &workload.run_control;
    let run_control = (
        counts.paused.load(std::sync::atomic::Ordering::Relaxed),
        counts.resumed.load(std::sync::atomic::Ordering::Relaxed),
        counts.signalled.load(std::sync::atomic::Ordering::Relaxed),
    );
    let removed_by_retention = replicas.first().map_or(0, |r| r.removed);
    let workflows = replicas.first().map_or_else(BTreeMap::new, |r| {
        let mut by_status = BTreeMap::new();
        for item in r.items.iter().filter(|i| i.r#type == "workflow") {
            let status = WorkStatus::try_from(item.status).map_or_else(
                |_| item.status.to_string(),
                |s| format!("{s:?}").to_lowercase(),
            );
            *by_status.entry(status).or_insert(0) += 1;
        }
        by_status
    });
    let fenced_log = fenced.log();
    let workflow_writes = fenced_log
        .iter()
        .filter(|w| w.writer.starts_with("wf/"))
        .fold(
            (0, 0),
            |(a, r), w| if w.accepted { (a + 1, r) } else { (a, r + 1) },
        );
    let input = CheckInput {
        history: history.clone(),
        fenced: fenced_log,
        replicas,
        liveness: Liveness {
            deadline_passed: true,
            exempt_claimed: false,
            exempt_items: Default::default(),
        },
        key_limits: [(CHAOS_KEY.to_string(), CHAOS_KEY_LIMIT)].into(),
    };
    let check = checker::check(&input);

    let history_saved = match &config.history_path {
        Some(path) if !config.save_history_on_anomaly_only || !check.is_clean() => {
            history.save(path)?;
            Some(path.clone())
        }
        _ => None,
    };
    if !check.is_clean() {
        cluster.print_log_tails();
        cluster.keep_dir();
    }

    let kill_ms: Vec<u64> = faults
        .iter()
        .filter(|f| f.kind == FaultKind::KillLeader)
        .map(|f| epoch_ms + f.start.saturating_duration_since(epoch).as_millis() as u64)
        .collect();
    let report = ChaosReport {
        seed: config.seed,
        duration: config.duration,
        wall_time: started.elapsed(),
        faults: summarize(&faults),
        fault_log: faults,
        ops: history.counts(),
        ok_by_kind: ok_by_kind(&history),
        elections: elections(&history),
        recovery: recovery_times(&history, &kill_ms),
        check,
        liveness_error,
        history_saved,
        workflows,
        workflow_writes,
        run_control,
        removed_by_retention,
    };
    drop(server);
    Ok(report)
}

fn summarize(faults: &[FaultRecord]) -> BTreeMap<&'static str, FaultSummary> {
    let mut by_kind: BTreeMap<&'static str, FaultSummary> = BTreeMap::new();
    for f in faults {
        let s = by_kind.entry(f.kind.name()).or_default();
        s.count += 1;
        s.total += f.duration;
    }
    by_kind
}

fn ok_by_kind(history: &History) -> BTreeMap<String, u64> {
    let mut by_kind = BTreeMap::new();
    for op in history.ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let name = serde_json::to_value(op.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{:?}", op.kind));
        *by_kind.entry(name).or_insert(0) += 1;
    }
    by_kind
}

/// Terms in which some node named a leader, beyond the first: each is an
/// election won.
fn elections(history: &History) -> u64 {
    let terms: std::collections::BTreeSet<u64> = history
        .leaders
        .iter()
        .filter(|o| o.leader != 0)
        .map(|o| o.term)
        .collect();
    terms.len().saturating_sub(1) as u64
}

/// For each leader kill (ms on the history's clock), the time to the first
/// write invoked after it and acknowledged.
fn recovery_times(history: &History, kills: &[u64]) -> Vec<Duration> {
    let writes: Vec<(u64, u64)> = history
        .ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter(|o| match o.kind {
            OpKind::Submit | OpKind::Complete | OpKind::Fail | OpKind::Release => true,
            OpKind::Claim => !o.result.grants.is_empty(),
            _ => false,
        })
        .filter_map(|o| Some((o.invoked_at_ms, o.completed_at_ms?)))
        .collect();
    kills
        .iter()
        .filter_map(|&kill| {
            writes
                .iter()
                .filter(|(invoked, _)| *invoked >= kill)
                .map(|(_, done)| *done)
                .min()
                .map(|done| Duration::from_millis(done.saturating_sub(kill)))
        })
        .collect()
}

fn percentile(samples: &[Duration], p: usize) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (p * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// Sets the limit on the workload's concurrency key, through any node,
/// before the workload starts.
async fn set_key_limit(cluster: &Cluster) -> Result<()> {
    use swarm_proto::v1::SetLimitRequest;
    use swarm_proto::v1::limit_service_client::LimitServiceClient;
    crate::poll_until(
        Duration::from_secs(30),
        "set the chaos key's limit",
        || async {
            for node in cluster.running() {
                let mut limits = LimitServiceClient::new(cluster.channel(node)?);
                let request = SetLimitRequest {
                    key: CHAOS_KEY.into(),
                    max_running: CHAOS_KEY_LIMIT,
                    ..SetLimitRequest::default()
                };
                if limits.set_limit(request).await.is_ok() {
                    return Ok(Some(()));
                }
            }
            Ok(None)
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn percentiles_pick_a_sample() {
        let d = |ms| Duration::from_millis(ms);
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[d(5)], 50), Some(d(5)));
        assert_eq!(percentile(&[d(9), d(1), d(5), d(7)], 50), Some(d(5)));
        assert_eq!(percentile(&[d(9), d(1), d(5), d(7)], 100), Some(d(9)));
    }
}
