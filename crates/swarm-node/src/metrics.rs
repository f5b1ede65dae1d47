//! The node's Prometheus metrics, served at `/metrics`: one registry,
//! prefix `swarm_`, holding
//! - Raft: term, role, leader, commit/applied/last-log index, log entries,
//!   replication lag per peer (leader only), elections, snapshots (from
//!   swarm-raft's [`RaftMetrics`]);
//! - the proposer: batch size, commit latency, queue depth, forwards;
//! - work: items by type and status and the oldest pending age per type,
//!   read from the state's indexes at scrape time; claims granted,
//!   renewals, lease expiries, stale tokens, completions and failures,
//!   counted as entries apply;
//! - runs on this node: active runs, runs and steps by workflow, step and
//!   outcome, step durations, hand-offs, self-fencing ([`RunMetrics`]);
//! - gRPC: requests by service, method and code, and their latency
//!   ([`GrpcMetricsLayer`]).
//!
//! Labels never carry an item id or an agent name. Step names drop a map
//! element's `[n]`, and gRPC methods outside the services this node serves
//! count as `other`, so a client cannot grow the label space.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use swarm_raft::{Role, now_millis};

use crate::node::NodeContext;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TypeStatusLabel {
    r#type: String,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RunLabel {
    workflow: String,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StepLabel {
    workflow: String,
    step: String,
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StepDurationLabel {
    workflow: String,
    step: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GrpcLabel {
    service: String,
    method: String,
    code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GrpcMethodLabel {
    service: String,
    method: String,
}

fn seconds_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Workflow runs on this node.
#[derive(Debug, Clone)]
pub struct RunMetrics {
    pub active: Gauge,
    runs: Family<RunLabel, Counter>,
    steps: Family<StepLabel, Counter>,
    step_seconds: Family<StepDurationLabel, Histogram>,
    pub handoffs_sent: Counter,
    pub handoffs_received: Counter,
    pub self_fenced: Counter,
}

impl Default for RunMetrics {
    fn default() -> Self {
        RunMetrics {
            active: Gauge::default(),
            runs: Family::default(),
            steps: Family::default(),
            step_seconds: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            handoffs_sent: Counter::default(),
            handoffs_received: Counter::default(),
            self_fenced: Counter::default(),
        }
    }
}

/// A step's name as a label: a map element `name[3]` counts under `name`.
fn step_label(step: &str) -> String {
    match step.find('[') {
        Some(i) => step[..i].to_string(),
        None => step.to_string(),
    }
}

impl RunMetrics {
    /// A run of `workflow` ended (or suspended) with `status`.
    pub fn run_ended(&self, workflow: &str, status: &str) {
        self.runs
            .get_or_create(&RunLabel {
                workflow: workflow.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// A step attempt of `workflow` reached `outcome` (started, succeeded,
    /// failed, retried, undone, undo_failed).
    pub fn step(&self, workflow: &str, step: &str, outcome: &str) {
        self.steps
            .get_or_create(&StepLabel {
                workflow: workflow.to_string(),
                step: step_label(step),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// How long a step attempt took.
    pub fn step_took(&self, workflow: &str, step: &str, took: Duration) {
        self.step_seconds
            .get_or_create(&StepDurationLabel {
                workflow: workflow.to_string(),
                step: step_label(step),
            })
            .observe(took.as_secs_f64());
    }
}

/// gRPC requests this node served.
#[derive(Debug, Clone)]
pub struct GrpcMetrics {
    requests: Family<GrpcLabel, Counter>,
    seconds: Family<GrpcMethodLabel, Histogram>,
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        GrpcMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
        }
    }
}

/// The services this node serves: only their methods become labels.
const SERVICES: [&str; 8] = [
    "swarm.v1.WorkService",
    "swarm.v1.AdminService",
    "swarm.v1.ScheduleService",
    "swarm.v1.LimitService",
    "swarm.v1.RaftService",
    "swarm.v1.HandoffService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
];

/// `/pkg.Service/Method` as bounded labels.
fn grpc_labels(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some(service), Some(method))
            if SERVICES.contains(&service)
                && !method.is_empty()
                && method.len() <= 64
                && method.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            (service.to_string(), method.to_string())
        }
        _ => ("other".to_string(), "other".to_string()),
    }
}

/// The gRPC status code name of a numeric code.
fn code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "CANCELLED",
        "2" => "UNKNOWN",
        "3" => "INVALID_ARGUMENT",
        "4" => "DEADLINE_EXCEEDED",
        "5" => "NOT_FOUND",
        "6" => "ALREADY_EXISTS",
        "7" => "PERMISSION_DENIED",
        "8" => "RESOURCE_EXHAUSTED",
        "9" => "FAILED_PRECONDITION",
        "10" => "ABORTED",
        "11" => "OUT_OF_RANGE",
        "12" => "UNIMPLEMENTED",
        "13" => "INTERNAL",
        "14" => "UNAVAILABLE",
        "15" => "DATA_LOSS",
        "16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

impl GrpcMetrics {
    fn record(&self, service: String, method: String, code: &str, took: Duration) {
        self.seconds
            .get_or_create(&GrpcMethodLabel {
                service: service.clone(),
                method: method.clone(),
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&GrpcLabel {
                service,
                method,
                code: code.to_string(),
            })
            .inc();
    }
}

/// Every metric of the node, and the registry `/metrics` encodes.
pub struct NodeMetrics {
    registry: Registry,
    pub runs: RunMetrics,
    pub grpc: GrpcMetrics,
    term: Gauge,
    is_leader: Gauge,
    leader_id: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    last_log_index: Gauge,
    log_entries: Gauge,
    replication_lag: Family<PeerLabel, Gauge>,
    items: Family<TypeStatusLabel, Gauge>,
    oldest_pending: Family<TypeLabel, Gauge<f64, AtomicU64>>,
    live_claims: Gauge,
    items_removed: Gauge,
    memory: MemoryGauges,
}

/// What the allocator holds (see [`crate::allocator::MemoryStats`]).
#[derive(Default)]
struct MemoryGauges {
    allocated: Gauge,
    active: Gauge,
    resident: Gauge,
    retained: Gauge,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// The registry with every metric of this node, the consensus layer's
    /// included.
    pub fn new(raft: &swarm_raft::RaftMetrics) -> NodeMetrics {
        let mut registry = Registry::with_prefix("swarm");
        raft.register(&mut registry);
        let m = NodeMetrics {
            registry: Registry::default(),
            runs: RunMetrics::default(),
            grpc: GrpcMetrics::default(),
            term: Gauge::default(),
            is_leader: Gauge::default(),
            leader_id: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            last_log_index: Gauge::default(),
            log_entries: Gauge::default(),
            replication_lag: Family::default(),
            items: Family::default(),
            oldest_pending: Family::default(),
            live_claims: Gauge::default(),
            items_removed: Gauge::default(),
            memory: MemoryGauges::default(),
        };
        {
            let r = registry.sub_registry_with_prefix("raft");
            r.register("term", "The Raft term this node is in", m.term.clone());
            r.register(
                "is_leader",
                "1 if this node leads the cluster",
                m.is_leader.clone(),
            );
            r.register(
                "leader_id",
                "The leader this node knows of (0: none)",
                m.leader_id.clone(),
            );
            r.register(
                "commit_index",
                "The log index committed by a quorum, as this node knows it",
                m.commit_index.clone(),
            );
            r.register(
                "applied_index",
                "The last log index this node's state machine applied",
                m.applied_index.clone(),
            );
            r.register(
                "last_log_index",
                "The last index in this node's log",
                m.last_log_index.clone(),
            );
            r.register(
                "log_entries",
                "Entries in this node's log (after the last snapshot's purge)",
                m.log_entries.clone(),
            );
            r.register(
                "replication_lag",
                "Entries a peer is behind the leader's log (leader only)",
                m.replication_lag.clone(),
            );
        }
        {
            let w = registry.sub_registry_with_prefix("work");
            w.register(
                "items",
                "Items in the state by type and status",
                m.items.clone(),
            );
            w.register_with_unit(
                "oldest_pending_age",
                "Age of the oldest pending item per type: how long work waits",
                Unit::Seconds,
                m.oldest_pending.clone(),
            );
            w.register("live_claims", "Live claims", m.live_claims.clone());
            w.register(
                "items_removed",
                "Finished items retention has removed from this replica, ever",
                m.items_removed.clone(),
            );
        }
        {
            let r = registry.sub_registry_with_prefix("runs");
            r.register(
                "active",
                "Workflow runs on this node now",
                m.runs.active.clone(),
            );
            r.register(
                "ended",
                "Workflow runs on this node by workflow and how they ended",
                m.runs.runs.clone(),
            );
            r.register(
                "steps",
                "Step attempts on this node by workflow, step and outcome",
                m.runs.steps.clone(),
            );
            r.register_with_unit(
                "step_duration",
                "Step attempt durations by workflow and step",
                Unit::Seconds,
                m.runs.step_seconds.clone(),
            );
            r.register(
                "handoffs_sent",
                "Workflows this node handed to a peer",
                m.runs.handoffs_sent.clone(),
            );
            r.register(
                "handoffs_received",
                "Workflows peers handed to this node",
                m.runs.handoffs_received.clone(),
            );
            r.register(
                "self_fenced",
                "Runs this node stopped because it could not renew their lease in time",
                m.runs.self_fenced.clone(),
            );
        }
        {
            let g = registry.sub_registry_with_prefix("grpc");
            g.register(
                "requests",
                "gRPC requests served by service, method and status code",
                m.grpc.requests.clone(),
            );
            g.register_with_unit(
                "request_duration",
                "gRPC request latency (to the response headers) by service and method",
                Unit::Seconds,
                m.grpc.seconds.clone(),
            );
        }
        {
            let r = registry.sub_registry_with_prefix("memory");
            for (name, help, gauge) in [
                (
                    "allocated",
                    "Bytes in live allocations (jemalloc stats.allocated)",
                    &m.memory.allocated,
                ),
                (
                    "active",
                    "Bytes in pages holding live allocations (jemalloc stats.active)",
                    &m.memory.active,
                ),
                (
                    "resident",
                    "Bytes of physical memory the allocator maps (jemalloc stats.resident)",
                    &m.memory.resident,
                ),
                (
                    "retained",
                    "Bytes mapped but returned to the OS (jemalloc stats.retained)",
                    &m.memory.retained,
                ),
            ] {
                r.register_with_unit(name, help, Unit::Bytes, gauge.clone());
            }
        }
        NodeMetrics { registry, ..m }
    }

    /// Reads the gauges that describe the present (Raft, the state's
    /// indexes) and encodes every metric in the Prometheus text format.
    pub fn render(&self, ctx: &NodeContext) -> Result<String, std::fmt::Error> {
        self.refresh(ctx);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    fn refresh(&self, ctx: &NodeContext) {
        let status = ctx.cluster.status();
        let set = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.term, status.term);
        set(&self.is_leader, u64::from(status.role == Role::Leader));
        let memory = crate::allocator::stats();
        set(&self.memory.allocated, memory.allocated);
        set(&self.memory.active, memory.active);
        set(&self.memory.resident, memory.resident);
        set(&self.memory.retained, memory.retained);
        set(&self.leader_id, status.leader().unwrap_or(0));
        set(&self.commit_index, status.commit_index);
        set(&self.applied_index, status.last_applied);
        set(&self.last_log_index, status.last_log_index);
        set(
            &self.log_entries,
            status.last_log_index.saturating_sub(status.purged_index),
        );
        self.replication_lag.clear();
        if status.is_leader() {
            for m in status.members.iter().filter(|m| m.id != status.id) {
                if let Some(matched) = m.matched {
                    set(
                        &self.replication_lag.get_or_create(&PeerLabel {
                            peer: m.id.to_string(),
                        }),
                        status.last_log_index.saturating_sub(matched),
                    );
                }
            }
        }
        let now = now_millis();
        ctx.state.read(|s| {
            self.items.clear();
            for (kind, counts) in s.counts().by_kind() {
                for status in [
                    swarm_claims::Status::Pending,
                    swarm_claims::Status::Claimed,
                    swarm_claims::Status::Completed,
                    swarm_claims::Status::Failed,
                    swarm_claims::Status::Cancelled,
                ] {
                    set(
                        &self.items.get_or_create(&TypeStatusLabel {
                            r#type: kind.to_string(),
                            status: status.as_str().to_string(),
                        }),
                        counts.get(status),
                    );
                }
            }
            self.oldest_pending.clear();
            for (kind, item) in s.oldest_pending_by_kind() {
                let age = now.saturating_sub(item.submitted_at) as f64 / 1000.0;
                self.oldest_pending
                    .get_or_create(&TypeLabel {
                        r#type: kind.to_string(),
                    })
                    .set(age);
            }
            set(&self.live_claims, s.live_claims() as u64);
            set(&self.items_removed, s.removed());
        });
    }
}

/// Counts and times every gRPC request by service, method and status code.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: GrpcMetrics,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: &Arc<NodeMetrics>) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: metrics.grpc.clone(),
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// [`GrpcMetricsLayer`]'s service.
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: GrpcMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (service, method) = grpc_labels(request.uri().path());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            // A failed call answers "trailers-only": its status is in the
            // headers. A call that streams its answer reports its status in
            // trailers, after the headers this sees: it counts as OK here.
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map_or("OK", code_name),
                Err(_) => "UNAVAILABLE",
            };
            let (service, method) = if code == "UNIMPLEMENTED" {
                (service, "other".to_string())
            } else {
                (service, method)
            };
            metrics.record(service, method, code, started.elapsed());
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_labels_are_bounded() {
        assert_eq!(
            grpc_labels("/swarm.v1.WorkService/Claim"),
            ("swarm.v1.WorkService".to_string(), "Claim".to_string())
        );
        for path in [
            "/evil.Service/Claim",
            "/",
            "",
            "/swarm.v1.WorkService/",
            "/swarm.v1.WorkService/a-b",
        ] {
            assert_eq!(
                grpc_labels(path),
                ("other".to_string(), "other".to_string()),
                "{path}"
            );
        }
    }

    #[test]
    fn map_elements_count_under_their_step() {
        assert_eq!(step_label("fetch[12]"), "fetch");
        assert_eq!(step_label("parent/child"), "parent/child");
    }

    #[test]
    fn status_codes_have_names() {
        assert_eq!(code_name("0"), "OK");
        assert_eq!(code_name("5"), "NOT_FOUND");
        assert_eq!(code_name("99"), "UNKNOWN");
    }
}

/// Counts one run's steps into [`RunMetrics`], labelled with its workflow.
#[derive(Debug, Clone)]
pub struct RunMiddleware {
    workflow: String,
    metrics: RunMetrics,
}

impl RunMiddleware {
    pub fn new(workflow: &str, metrics: &RunMetrics) -> RunMiddleware {
        RunMiddleware {
            workflow: workflow.to_string(),
            metrics: metrics.clone(),
        }
    }
}

#[async_trait::async_trait]
impl swarm_reactor::Middleware for RunMiddleware {
    async fn run_started(&self, _run: &mut swarm_reactor::RunContext) {
        self.metrics.active.inc();
    }

    async fn run_finished(
        &self,
        _run: &swarm_reactor::RunContext,
        report: &swarm_reactor::RunReport,
    ) {
        self.metrics.active.dec();
        self.metrics
            .run_ended(&self.workflow, &report.status.to_string());
    }

    async fn step_started(&self, step: &mut swarm_reactor::StepContext) {
        self.metrics.step(&self.workflow, &step.step, "started");
    }

    async fn step_succeeded(
        &self,
        step: &swarm_reactor::StepContext,
        _result: &serde_json::Value,
        elapsed: Duration,
    ) {
        self.metrics.step(&self.workflow, &step.step, "succeeded");
        self.metrics.step_took(&self.workflow, &step.step, elapsed);
    }

    async fn step_failed(
        &self,
        step: &swarm_reactor::StepContext,
        _error: &swarm_reactor::StepError,
        elapsed: Duration,
    ) {
        self.metrics.step(&self.workflow, &step.step, "failed");
        self.metrics.step_took(&self.workflow, &step.step, elapsed);
    }

    async fn step_retrying(
        &self,
        step: &swarm_reactor::StepContext,
        _error: &swarm_reactor::StepError,
        _delay: Duration,
    ) {
        self.metrics.step(&self.workflow, &step.step, "retried");
    }

    async fn step_undone(
        &self,
        step: &swarm_reactor::StepContext,
        outcome: Result<(), &swarm_reactor::StepError>,
    ) {
        let what = if outcome.is_ok() {
            "undone"
        } else {
            "undo_failed"
        };
        self.metrics.step(&self.workflow, &step.step, what);
    }
}
