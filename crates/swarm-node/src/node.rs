//! A running node: storage, Raft, the proposer, the gRPC server, and the
//! background duties (joining the cluster, the leader's lease clock, a clean
//! hand-over of leadership on shutdown).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use swarm_claims::{Command, Limits};
use swarm_proto::v1 as pb;
use swarm_proto::v1::admin_service_client::AdminServiceClient;
use swarm_proto::v1::admin_service_server::AdminServiceServer;
use swarm_proto::v1::handoff_service_server::HandoffServiceServer;
use swarm_proto::v1::raft_service_server::RaftServiceServer;
use swarm_proto::v1::work_service_server::WorkServiceServer;
use swarm_raft::network::PeerChannels;
use swarm_raft::proposer::now_millis;
use swarm_raft::{
    Network, Proposer, ProposerConfig, Raft, RaftGrpcService, SledStore, StateMachineStore,
};
use tokio::sync::oneshot;

use crate::admin_service::AdminApi;
use crate::agent::{Agent, HandoffApi};
use crate::config::Config;
use crate::work_service::WorkApi;

/// What every service of a node shares.
#[derive(Clone)]
pub struct NodeContext {
    pub config: Arc<Config>,
    pub raft: Raft,
    pub proposer: Proposer,
    /// The local replica of the claims state, for reads.
    pub state: StateMachineStore,
    pub peers: PeerChannels,
    /// The edge limits (configurable payload size); `apply()` re-checks with
    /// fixed, larger ones.
    pub limits: Limits,
}

/// How long a linearizable read waits for this replica to catch up with the
/// leader's read index.
const READ_CATCH_UP: Duration = Duration::from_secs(5);

/// Why a linearizable read could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Propose(#[from] swarm_raft::ProposeError),
    #[error("{0}")]
    CatchUp(String),
}

impl NodeContext {
    /// Waits until this replica has applied everything the cluster had
    /// committed when the call began (ReadIndex): a read after it is
    /// linearizable.
    pub async fn read_barrier(&self) -> Result<(), ReadError> {
        let index = self.proposer.read_index().await?;
        let mut applied = self.state.applied_index();
        tokio::time::timeout(READ_CATCH_UP, applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| {
                ReadError::CatchUp(format!(
                    "replica did not apply index {index} within {READ_CATCH_UP:?}"
                ))
            })?
            .map_err(|_| ReadError::CatchUp("state machine stopped".into()))?;
        Ok(())
    }

    /// This node's agent id: the holder name of the work it claims.
    pub fn agent(&self) -> String {
        format!("node-{}", self.config.id)
    }
}

/// Runs a node until `shutdown` resolves, then hands leadership to a peer
/// (if this node leads), stops serving and stops Raft.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    let store = SledStore::open(
        &config.data_dir.join("sled"),
        config.sled_cache_mb * 1024 * 1024,
    )?;
    let (log_store, state) = store.stores()?;

    let raft_config = openraft::Config {
        cluster_name: "swarm".into(),
        heartbeat_interval: config.raft.heartbeat.as_millis() as u64,
        election_timeout_min: config.raft.election_min.as_millis() as u64,
        election_timeout_max: config.raft.election_max.as_millis() as u64,
        enable_pre_vote: Some(true),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.snapshot_every.min(1000),
        install_snapshot_timeout: 10_000,
        // A restarted leader must win a new term before it writes. openraft
        // replicates entries before the leader's own flush, so a follower can
        // hold entries the leader lost in a crash; a leader restored in its
        // old term would write different entries under the same (term,
        // index), which followers take as matching and never replace: their
        // state machines diverge. (Found by the chaos suite after a
        // whole-cluster SIGKILL; see tests/tests/cluster.rs t90.)
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
    .context("raft configuration")?;

    let peers = PeerChannels::with_routes(config.peer_routes.iter().cloned().collect());
    let raft = Raft::new(
        config.id,
        Arc::new(raft_config),
        Network::new(peers.clone()),
        log_store,
        state.clone(),
    )
    .await
    .context("start raft")?;
    let proposer = Proposer::start(raft.clone(), peers.clone(), ProposerConfig::default());
    let limits = Limits {
        max_payload_bytes: config.max_payload_bytes,
        ..Limits::default()
    };
    let ctx = NodeContext {
        config: config.clone(),
        raft: raft.clone(),
        proposer: proposer.clone(),
        state,
        peers,
        limits,
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    let agent = Agent::start(ctx.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(ctx.clone(), agent.clone(), listener, stop_rx));
    tracing::info!(node = config.id, listen = %config.listen, data_dir = %config.data_dir.display(), "swarmd serving");

    join_or_bootstrap(&ctx).await?;
    let duties = tokio::spawn(leader_duties(ctx.clone()));

    shutdown.await;
    tracing::info!(node = config.id, "shutting down");
    agent.drain(config.drain_timeout).await;
    if is_leader(&raft) {
        match best_successor(&raft) {
            Some(to) => match transfer_leadership(&raft, to, Duration::from_secs(2)).await {
                Ok(new) => tracing::info!(to = new, "handed leadership over"),
                Err(e) => tracing::warn!(error = %e, "could not hand leadership over"),
            },
            None => tracing::info!("no other voter to hand leadership to"),
        }
    }
    duties.abort();
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "grpc server ended with an error"),
        Err(_) => tracing::warn!("grpc server did not stop within 5s"),
        _ => {}
    }
    raft.shutdown()
        .await
        .map_err(|e| anyhow::anyhow!("stop raft: {e}"))?;
    tracing::info!(node = config.id, "stopped");
    Ok(())
}

async fn serve(
    ctx: NodeContext,
    agent: Arc<Agent>,
    listener: tokio::net::TcpListener,
    stop: oneshot::Receiver<()>,
) -> Result<(), tonic::transport::Error> {
    let max = swarm_proto::MAX_MESSAGE_BYTES;
    let raft_max = 256 * 1024 * 1024;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<WorkServiceServer<WorkApi>>()
        .await;
    health_reporter
        .set_serving::<AdminServiceServer<AdminApi>>()
        .await;
    health_reporter
        .set_serving::<RaftServiceServer<RaftGrpcService>>()
        .await;
    health_reporter
        .set_serving::<HandoffServiceServer<HandoffApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(swarm_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection = match reflection {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "grpc reflection disabled");
            None
        }
    };
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health)
        .add_optional_service(reflection)
        .add_service(
            WorkServiceServer::new(WorkApi::new(ctx.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            AdminServiceServer::new(AdminApi::new(ctx.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(HandoffServiceServer::new(HandoffApi::new(agent)))
        .add_service(
            RaftServiceServer::new(RaftGrpcService::new(ctx.raft.clone(), ctx.proposer.clone()))
                .max_decoding_message_size(raft_max)
                .max_encoding_message_size(raft_max),
        )
        // Accepted sockets need TCP_NODELAY set here: the builder's
        // `tcp_nodelay` applies only to listeners tonic binds itself, and
        // Nagle plus delayed ACKs add ~40 ms to every forwarded write.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                let _ = stop.await;
            },
        )
        .await
}

/// Bootstraps a one-node cluster, or asks the `join` nodes for membership,
/// unless this data dir already belongs to a cluster.
async fn join_or_bootstrap(ctx: &NodeContext) -> anyhow::Result<()> {
    let raft = &ctx.raft;
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| anyhow::anyhow!("raft: {e}"))?;
    if initialized {
        return Ok(());
    }
    if ctx.config.bootstrap {
        let members = BTreeMap::from([(
            ctx.config.id,
            BasicNode {
                addr: ctx.config.advertise.clone(),
            },
        )]);
        raft.initialize(members)
            .await
            .map_err(|e| anyhow::anyhow!("initialize cluster: {e}"))?;
        tracing::info!(node = ctx.config.id, "bootstrapped a new cluster");
        return Ok(());
    }
    if ctx.config.join.is_empty() {
        tracing::warn!(
            "not part of a cluster: start with --bootstrap, --join, or add this node with `swarmctl node add`"
        );
        return Ok(());
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let request = pb::AddNodeRequest {
            id: ctx.config.id,
            addr: ctx.config.advertise.clone(),
            voter: true,
        };
        let mut attempt = 0u32;
        loop {
            for addr in &ctx.config.join {
                if is_member(&ctx.raft, ctx.config.id) {
                    return;
                }
                let Ok(channel) = ctx.peers.get(addr) else {
                    continue;
                };
                let mut client = AdminServiceClient::new(channel);
                let mut req = tonic::Request::new(request.clone());
                req.set_timeout(Duration::from_secs(30));
                match client.add_node(req).await {
                    Ok(_) => {
                        tracing::info!(via = %addr, "joined the cluster");
                        return;
                    }
                    Err(e) => {
                        if attempt.is_multiple_of(10) {
                            tracing::warn!(via = %addr, error = %e.message(), "join failed; retrying");
                        }
                    }
                }
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    Ok(())
}

fn is_member(raft: &Raft, id: u64) -> bool {
    metrics(raft)
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == id)
}

fn is_leader(raft: &Raft) -> bool {
    crate::node::metrics(raft).state == ServerState::Leader
}

/// The leader's duties for the lease clock: on taking office, extend every
/// live lease to at least now + its length (a change of leader never
/// shortens a lease); then expire leases as they run out.
async fn leader_duties(ctx: NodeContext) {
    let mut ticker = tokio::time::interval(ctx.config.tick_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut office_term = None;
    loop {
        ticker.tick().await;
        let (state, term) = {
            let m = metrics(&ctx.raft);
            (m.state, m.current_term)
        };
        if state != ServerState::Leader {
            office_term = None;
            continue;
        }
        if office_term != Some(term) {
            match ctx
                .proposer
                .propose_local(Command::LeaderTookOffice { now: 0 })
                .await
            {
                Ok(Ok(swarm_claims::Response::Extended(n))) => {
                    tracing::info!(term, extended = n, "took office: leases extended");
                    office_term = Some(term);
                }
                Ok(other) => {
                    tracing::warn!(?other, "unexpected answer to lease extension");
                    office_term = Some(term);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "lease extension not committed yet");
                    continue;
                }
            }
        }
        let due = ctx
            .state
            .read(|s| s.next_expiry())
            .is_some_and(|at| at <= now_millis());
        if due {
            match ctx.proposer.propose_local(Command::Tick { now: 0 }).await {
                Ok(Ok(swarm_claims::Response::Expired(ids))) if !ids.is_empty() => {
                    tracing::info!(count = ids.len(), "leases expired");
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "tick not committed"),
            }
        }
    }
}

/// A copy of the node's current Raft metrics.
pub fn metrics(raft: &Raft) -> swarm_raft::RaftMetrics {
    use openraft::type_config::async_runtime::WatchReceiver;
    raft.metrics().borrow_watched().clone()
}

/// The voter that has replicated the most of the log, other than this node.
pub fn best_successor(raft: &Raft) -> Option<u64> {
    let m = crate::node::metrics(raft);
    let me = m.id;
    let repl = m.replication.clone().unwrap_or_default();
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != me)
        .max_by_key(|id| {
            repl.get(id)
                .cloned()
                .flatten()
                .map(|l| l.index())
                .unwrap_or(0)
        })
}

/// Asks `to` to take over leadership and waits until some other node leads.
pub async fn transfer_leadership(raft: &Raft, to: u64, timeout: Duration) -> Result<u64, String> {
    let me = *raft.node_id();
    raft.trigger()
        .transfer_leader(to)
        .await
        .map_err(|e| format!("transfer leadership to node {to}: {e}"))?;
    let waited = raft
        .wait(Some(timeout))
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != me),
            "another leader",
        )
        .await;
    match waited {
        Ok(m) => m
            .current_leader
            .ok_or_else(|| "no leader after transfer".to_string()),
        Err(e) => Err(format!(
            "node {to} did not take over within {timeout:?}: {e}"
        )),
    }
}
