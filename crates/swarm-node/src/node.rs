//! A running node: storage, Raft, the proposer, the gRPC server, and the
//! background duties (joining the cluster, the leader's lease clock, a clean
//! hand-over of leadership on shutdown).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use swarm_claims::Limits;
use swarm_claims::command::Compact;
use swarm_claims::request::{LeaderTookOffice, Tick};
use swarm_proto::v1 as pb;
use swarm_proto::v1::admin_service_client::AdminServiceClient;
use swarm_proto::v1::admin_service_server::AdminServiceServer;
use swarm_proto::v1::handoff_service_server::HandoffServiceServer;
use swarm_proto::v1::limit_service_server::LimitServiceServer;
use swarm_proto::v1::schedule_service_server::ScheduleServiceServer;
use swarm_proto::v1::work_service_server::WorkServiceServer;

use crate::queue_service::QueueApi;
use swarm_raft::{
    Cluster, ClusterConfig, ClusterError, PeerChannels, PeerServer, StateMachineStore, now_millis,
};
use tokio::sync::oneshot;

use crate::admin_service::AdminApi;
use crate::agent::{Agent, HandoffApi};
use crate::config::Config;
use crate::gate::GateLayer;
use crate::metrics::{GrpcMetricsLayer, NodeMetrics};
use crate::ports::{Port, PortLayer};
use crate::work_service::WorkApi;

/// What every service of a node shares.
#[derive(Clone)]
pub struct NodeContext {
    pub config: Arc<Config>,
    /// The one door to consensus: writes, read barriers, membership.
    pub cluster: Cluster,
    /// The local replica of the claims state, for reads.
    pub state: StateMachineStore,
    pub peers: PeerChannels,
    /// The edge limits (configurable payload size); `apply()` re-checks with
    /// fixed, larger ones.
    pub limits: Limits,
    /// Every metric `/metrics` serves.
    pub metrics: Arc<NodeMetrics>,
}

impl NodeContext {
    /// This node's agent id: the holder name of the work it claims.
    pub fn agent(&self) -> String {
        format!("node-{}", self.config.id)
    }

    /// Checks `request` against the edge limits, commits it and answers
    /// the state machine's typed answer; a refusal as its gRPC status (a
    /// missing work item says it may have been removed after the retention).
    pub async fn write<R: swarm_claims::Request>(
        &self,
        request: R,
    ) -> Result<R::Answer, tonic::Status> {
        self.cluster
            .request_within(request, &self.limits)
            .await
            .map_err(|e| crate::convert::work_call_status(&e, self.config.retention))
    }

    /// Waits until a read from this replica is linearizable, unless the
    /// caller asked for the local view (`ReadConsistency`).
    pub async fn read_barrier(&self, consistency: i32) -> Result<(), tonic::Status> {
        if consistency == swarm_proto::v1::ReadConsistency::Local as i32 {
            return Ok(());
        }
        self.cluster
            .read_barrier()
            .await
            .map_err(|e| crate::convert::cluster_error_status(&e))
    }
}

/// Runs a node until `shutdown` resolves, then hands leadership to a peer
/// (if this node leads), stops serving and stops Raft.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    let tls = crate::tls::Tls::load(&config)?;
    let tokens = if config.tokens_file.as_os_str().is_empty() {
        None
    } else {
        let store = crate::auth::TokenStore::open(&config.tokens_file)?;
        tokio::spawn(reload_tokens_on_sighup(store.clone()));
        Some(store)
    };
    let (cluster, state, peers) = Cluster::start(ClusterConfig {
        id: config.id,
        sled_dir: config.data_dir.join("sled"),
        sled_cache_bytes: config.sled_cache_mb * 1024 * 1024,
        heartbeat: config.raft.heartbeat,
        election_min: config.raft.election_min,
        election_max: config.raft.election_max,
        snapshot_every: config.snapshot_every,
        peer_routes: config.peer_routes.iter().cloned().collect(),
        peer_tls: tls.as_ref().map(crate::tls::Tls::peer_client),
        trace_proposals: crate::telemetry::proposal_tracing(),
    })
    .await?;
    let limits = Limits {
        max_payload_bytes: config.max_payload_bytes,
        ..Limits::default()
    };
    let metrics = Arc::new(NodeMetrics::new(cluster.metrics()));
    let ctx = NodeContext {
        config: config.clone(),
        cluster: cluster.clone(),
        state,
        peers,
        limits,
        metrics,
    };
    let (http_stop_tx, http_stop_rx) = oneshot::channel::<()>();
    let http_server = match config.http_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen for HTTP on {addr} (http_listen)"))?;
            let router = crate::http::router(ctx.clone(), ctx.metrics.clone(), tokens.clone());
            let https = tls
                .as_ref()
                .map(crate::tls::Tls::http_acceptor)
                .transpose()?;
            let scheme = if https.is_some() { "https" } else { "http" };
            tracing::info!(node = config.id, http = %addr, "serving metrics and the dashboard on {scheme}://{addr}/");
            Some(tokio::spawn(crate::http::serve(
                listener,
                https,
                router,
                async {
                    let _ = http_stop_rx.await;
                },
            )))
        }
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {} (listen)", config.listen))?;
    let peer_listener = match config.peer_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen for peers on {addr} (peer_listen)"))?,
        ),
        None => None,
    };
    let agent = Agent::start(ctx.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let auth = tokens.map(|t| crate::auth::AuthLayer::new(t, ctx.cluster.peer_auth().clone()));
    let peer_auth = tls.as_ref().map(|_| ctx.cluster.peer_auth().clone());
    let mut servers = Vec::new();
    let client_port = match config.peer_listen {
        Some(peers_at) => Port::Clients { peers_at },
        None => Port::Both,
    };
    servers.push(tokio::spawn(serve(
        Listener {
            port: client_port,
            socket: listener,
            tls: tls.as_ref().map(crate::tls::Tls::server),
            auth,
            peer_auth: peer_auth.clone(),
        },
        ctx.clone(),
        agent.clone(),
        stop_rx.clone(),
    )));
    if let Some(socket) = peer_listener {
        servers.push(tokio::spawn(serve(
            Listener {
                port: Port::Peers {
                    clients_at: config.listen,
                },
                socket,
                tls: tls.as_ref().map(crate::tls::Tls::peer_server),
                auth: None,
                peer_auth,
            },
            ctx.clone(),
            agent.clone(),
            stop_rx,
        )));
    }
    tracing::info!(
        node = config.id,
        listen = %config.listen,
        peer_listen = %config.peer_listen.map_or_else(|| "(listen)".to_string(), |a| a.to_string()),
        tls = config.tls_enabled(),
        data_dir = %config.data_dir.display(),
        "swarmd serving"
    );

    join_or_bootstrap(&ctx).await?;
    let duties = tokio::spawn(leader_duties(ctx.clone()));

    shutdown.await;
    tracing::info!(node = config.id, "shutting down");
    agent.drain(config.drain_timeout).await;
    let status = cluster.status();
    if status.is_leader() {
        match status.best_successor() {
            Some(to) => match cluster
                .transfer_leadership(to, Duration::from_secs(2))
                .await
            {
                Ok(new) => tracing::info!(to = new, "handed leadership over"),
                Err(e) => tracing::warn!(error = %e, "could not hand leadership over"),
            },
            None => tracing::info!("no other voter to hand leadership to"),
        }
    }
    duties.abort();
    let _ = stop_tx.send(true);
    let _ = http_stop_tx.send(());
    if let Some(http) = http_server {
        match tokio::time::timeout(Duration::from_secs(2), http).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "http server ended with an error"),
            Err(_) => tracing::warn!("http server did not stop within 2s"),
            _ => {}
        }
    }
    for server in servers {
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "grpc server ended with an error"),
            Err(_) => tracing::warn!("grpc server did not stop within 5s"),
            _ => {}
        }
    }
    cluster.shutdown().await?;
    tracing::info!(node = config.id, "stopped");
    Ok(())
}

/// One gRPC listener and what guards it.
struct Listener {
    port: Port,
    socket: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    /// Tokens and roles, on a port that serves clients.
    auth: Option<crate::auth::AuthLayer>,
    /// Under TLS: who may offer a hand-off.
    peer_auth: Option<swarm_raft::PeerAuth>,
}

/// Serves `listener` until `stop` turns true: the client services, the
/// peer services, or both, as its [`Port`] says.
async fn serve(
    listener: Listener,
    ctx: NodeContext,
    agent: Arc<Agent>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let Listener {
        port,
        socket,
        tls,
        auth,
        peer_auth,
    } = listener;
    let clients = !matches!(port, Port::Peers { .. });
    let peers = !matches!(port, Port::Clients { .. });
    let max = swarm_proto::MAX_MESSAGE_BYTES;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<WorkServiceServer<WorkApi>>()
        .await;
    health_reporter
        .set_serving::<AdminServiceServer<AdminApi>>()
        .await;
    health_reporter
        .set_serving::<ScheduleServiceServer<QueueApi>>()
        .await;
    health_reporter
        .set_serving::<LimitServiceServer<QueueApi>>()
        .await;
    health_reporter.set_serving::<PeerServer>().await;
    health_reporter
        .set_serving::<HandoffServiceServer<HandoffApi>>()
        .await;
    // Reflection v1, and v1alpha for older grpcurl and Python's
    // grpc_reflection.
    // A client port advertises only what it serves.
    let reflection = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(swarm_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        match port {
            Port::Clients { .. } => [
                "swarm.v1.WorkService",
                "swarm.v1.AdminService",
                "swarm.v1.ScheduleService",
                "swarm.v1.LimitService",
                "grpc.health.v1.Health",
            ]
            .into_iter()
            .fold(builder, |b, name| b.with_service_name(name)),
            _ => builder,
        }
    };
    let (reflection, reflection_alpha) =
        match (reflection().build_v1(), reflection().build_v1alpha()) {
            _ if !ctx.config.reflection || !clients => (None, None),
            (Ok(v1), Ok(alpha)) => (Some(v1), Some(alpha)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "grpc reflection disabled");
                (None, None)
            }
        };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let work = clients.then(|| {
        WorkServiceServer::new(WorkApi::new(ctx.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    });
    let admin = clients.then(|| {
        AdminServiceServer::new(AdminApi::new(ctx.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    });
    let schedules = clients.then(|| ScheduleServiceServer::new(QueueApi::new(ctx.clone())));
    let limits = clients.then(|| LimitServiceServer::new(QueueApi::new(ctx.clone())));
    let handoff = peers.then(|| HandoffServiceServer::new(HandoffApi::new(agent)));
    let raft = peers.then(|| ctx.cluster.peer_service());
    builder
        .tcp_nodelay(true)
        // One connection cannot hold more than its share; a request cannot
        // run forever; a peer or client that vanished is noticed.
        .max_concurrent_streams(ctx.config.max_streams_per_connection)
        .timeout(ctx.config.request_timeout)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // A span per request, joining the caller's trace (`traceparent`).
        .trace_fn(crate::telemetry::grpc_request_span)
        .layer(GrpcMetricsLayer::new(&ctx.metrics))
        .layer(GateLayer(PortLayer::new(port, peer_auth)))
        .layer(tower::util::option_layer(auth.map(GateLayer)))
        .add_service(health)
        .add_optional_service(reflection)
        .add_optional_service(reflection_alpha)
        .add_optional_service(work)
        .add_optional_service(admin)
        .add_optional_service(schedules)
        .add_optional_service(limits)
        .add_optional_service(handoff)
        .add_optional_service(raft)
        // Accepted sockets need TCP_NODELAY set here: the builder's
        // `tcp_nodelay` applies only to listeners tonic binds itself, and
        // Nagle plus delayed ACKs add ~40 ms to every forwarded write.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(socket).with_nodelay(Some(true)),
            async move {
                let _ = stop.wait_for(|stop| *stop).await;
            },
        )
        .await
}

/// Reads the tokens file again at every SIGHUP; a file that does not parse
/// leaves the tokens in force as they were.
async fn reload_tokens_on_sighup(tokens: crate::auth::TokenStore) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: the tokens file is read only at start");
        return;
    };
    while hangups.recv().await.is_some() {
        match tokens.reload() {
            Ok(n) => tracing::info!(tokens = n, "reloaded the tokens file"),
            Err(e) => {
                tracing::error!(error = %e, "tokens file not reloaded; the previous tokens stay")
            }
        }
    }
}

/// Bootstraps a one-node cluster, or asks the `join` nodes for membership,
/// unless this data dir already belongs to a cluster.
async fn join_or_bootstrap(ctx: &NodeContext) -> anyhow::Result<()> {
    if ctx.cluster.is_initialized().await? {
        return Ok(());
    }
    if ctx.config.bootstrap {
        ctx.cluster
            .bootstrap(&ctx.config.advertise, &ctx.config.peer_advertise)
            .await?;
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
            peer_addr: ctx.config.peer_advertise.clone(),
        };
        let mut attempt = 0u32;
        loop {
            for addr in &ctx.config.join {
                if ctx.cluster.status().is_voter(ctx.config.id) {
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

/// Items one compaction entry removes at most: applying it takes about a
/// millisecond, so it never stalls the log.
const COMPACT_BATCH: u32 = 1_000;

/// Full compaction batches proposed per tick at most, so that a backlog of
/// finished items (a retention just shortened) never holds up lease expiry.
const COMPACT_BATCHES_PER_TICK: usize = 10;

/// However short the retention, a finished item stays at least this long:
/// a watcher following it on an up-to-date replica reads its end before it
/// goes (one that still misses it is told the item finished and was
/// removed).
const WATCH_GRACE: Duration = Duration::from_secs(1);

/// The leader's duties for the lease clock: on taking office, extend every
/// live lease to at least now + its length (a change of leader never
/// shortens a lease); then expire leases as they run out, and remove
/// finished items once the retention has passed.
async fn leader_duties(ctx: NodeContext) {
    let mut ticker = tokio::time::interval(ctx.config.tick_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut office_term = None;
    loop {
        ticker.tick().await;
        let status = ctx.cluster.status();
        let term = status.term;
        if !status.is_leader() {
            office_term = None;
            continue;
        }
        if office_term != Some(term) {
            match ctx.cluster.request_if_leader(LeaderTookOffice).await {
                Ok(n) => {
                    tracing::info!(term, extended = n, "took office: leases extended");
                    office_term = Some(term);
                }
                Err(e @ ClusterError::Refused(_)) => {
                    tracing::warn!(error = %e, "lease extension refused");
                    office_term = Some(term);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "lease extension not committed yet");
                    continue;
                }
            }
        }
        // Leases to expire, or delayed items (and rate-limited keys) come
        // due: a tick makes them so in the state.
        let due = ctx.state.read(|s| {
            let now = now_millis();
            s.next_expiry().is_some_and(|at| at <= now) || s.next_due().is_some_and(|at| at <= now)
        });
        if due {
            match ctx.cluster.request_if_leader(Tick).await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(count = ids.len(), "leases expired");
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "tick not committed"),
            }
        }
        crate::queue_service::fire_due_schedules(&ctx).await;
        compact_finished(&ctx).await;
    }
}

/// Retention: removes the items that finished at least `retention` (and
/// [`WATCH_GRACE`]) ago, oldest first, one bounded batch per entry, again
/// while batches come back full.
async fn compact_finished(ctx: &NodeContext) {
    let keep = ctx.config.retention.max(WATCH_GRACE);
    let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
    for _ in 0..COMPACT_BATCHES_PER_TICK {
        let before = now_millis().saturating_sub(keep_ms);
        let due = ctx
            .state
            .read(|s| s.oldest_ended())
            .is_some_and(|at| at <= before);
        if !due {
            return;
        }
        let batch = Compact {
            before,
            max: COMPACT_BATCH,
            now: 0,
        };
        match ctx.cluster.request_if_leader(batch).await {
            Ok(removed) => {
                tracing::debug!(removed, "finished items removed after the retention period");
                if removed < COMPACT_BATCH as usize {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "compaction not committed");
                return;
            }
        }
    }
}
