//! The Raft network over gRPC, client side: the channels to peers
//! ([`PeerChannels`]) and what openraft calls to reach a peer ([`Network`]).
//! The server side that peers call is in `service`. A snapshot goes to a
//! lagging follower as a stream of chunks read from its file.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use futures::{FutureExt, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::entry::RaftEntry;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkV2};
use swarm_proto::v1::raft_service_client::RaftServiceClient;
use swarm_proto::v1::{RaftMessage, SnapshotChunk};
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Response, Status};

use crate::codec::{decode, encode};
use crate::storage::SnapshotFile;
use crate::{Node, NodeId, Snapshot, TypeConfig, Vote};

/// Snapshot bytes per streamed chunk.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// How long a replication stream may go without an answer while requests
/// are outstanding before it is given up (and openraft opens a new one): a
/// peer stopped or cut off without the connection closing.
const STREAM_STALL: Duration = Duration::from_secs(1);

/// One lazily connected channel per peer address, shared by every Raft
/// stream, election, and forwarded proposal to that peer. openraft asks for a
/// new client per election and replication stream; reconnecting each time
/// would cost a TCP and HTTP/2 handshake on the hot path.
#[derive(Clone, Default)]
pub struct PeerChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// Peer address -> the address to dial instead (a proxy in front of
    /// that peer, so that fault injection can cut or slow one link).
    routes: Arc<HashMap<String, String>>,
    /// TLS for every peer connection: this node's certificate and the CA
    /// its peers' are checked against. `None`: plaintext.
    tls: Option<ClientTlsConfig>,
}

impl PeerChannels {
    /// Channels that dial `routes[addr]` instead of `addr` where a route is
    /// given (a proxy passes TLS through untouched: the peer's certificate
    /// still names the host dialled), over TLS when `tls` is given.
    pub fn new(routes: HashMap<String, String>, tls: Option<ClientTlsConfig>) -> PeerChannels {
        PeerChannels {
            channels: Arc::default(),
            routes: Arc::new(routes),
            tls,
        }
    }

    /// Plaintext channels with `routes` (see [`PeerChannels::new`]).
    pub fn with_routes(routes: HashMap<String, String>) -> PeerChannels {
        PeerChannels::new(routes, None)
    }

    /// The cached channel to `addr` ("host:port"), created on first use.
    pub fn get(&self, addr: &str) -> Result<Channel, Status> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        let dial = self.routes.get(addr).map_or(addr, String::as_str);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{dial}"))
            .map_err(|e| Status::invalid_argument(format!("peer address {addr:?}: {e}")))?;
        if let Some(tls) = &self.tls {
            // The name checked is the peer's own host, not a proxy's.
            let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
            endpoint = endpoint
                .tls_config(tls.clone().domain_name(host.trim_matches(['[', ']'])))
                .map_err(|e| Status::internal(format!("TLS for peer {addr:?}: {e}")))?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let ch = endpoint.connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// A Raft client for `addr` with Swarm's message size limits.
    pub fn raft_client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, Status> {
        Ok(RaftServiceClient::new(self.get(addr)?)
            .max_decoding_message_size(swarm_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(swarm_proto::MAX_MESSAGE_BYTES))
    }
}

/// openraft's network factory: hands out a [`PeerClient`] per target.
#[derive(Clone, Default)]
pub(crate) struct Network {
    peers: PeerChannels,
}

impl Network {
    pub fn new(peers: PeerChannels) -> Network {
        Network { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            addr: node.peer().to_string(),
            peers: self.peers.clone(),
        }
    }
}

/// The client side of one peer.
pub(crate) struct PeerClient {
    target: NodeId,
    addr: String,
    peers: PeerChannels,
}

/// Maps a failed call to openraft's error kinds. Only a refused connection
/// is `Unreachable` (openraft backs off); everything else is a network
/// error that openraft retries at once, so followers do not fall behind.
fn rpc_error(target: NodeId, status: &Status) -> RPCError<TypeConfig> {
    let msg = format!("node {target}: {status}");
    if never_connected(status) {
        RPCError::Unreachable(Unreachable::from_string(msg))
    } else {
        RPCError::Network(NetworkError::from_string(msg))
    }
}

/// Whether a call failed before its request left this process: the
/// transport could not open a connection to the peer.
pub(crate) fn never_connected(status: &Status) -> bool {
    let mut next = std::error::Error::source(status);
    while let Some(err) = next {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        next = err.source();
    }
    false
}

impl PeerClient {
    async fn call<Req, Resp, F, Fut>(
        &self,
        req: &Req,
        option: &RPCOption,
        f: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(RaftServiceClient<Channel>, RaftMessage) -> Fut,
        Fut: Future<Output = Result<Response<RaftMessage>, Status>>,
    {
        let client = self
            .peers
            .raft_client(&self.addr)
            .map_err(|s| rpc_error(self.target, &s))?;
        let data = encode(req).map_err(|s| rpc_error(self.target, &s))?;
        let reply = tokio::time::timeout(option.hard_ttl(), f(client, RaftMessage { data }))
            .await
            .map_err(|_| {
                RPCError::Network(NetworkError::from_string(format!(
                    "node {}: no answer within {:?}",
                    self.target,
                    option.hard_ttl()
                )))
            })?
            .map_err(|s| rpc_error(self.target, &s))?;
        decode(&reply.into_inner().data).map_err(|s| rpc_error(self.target, &s))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, |mut c, m| async move {
            c.append_entries(m).await
        })
        .await
    }

    /// Replication to this peer. A stream of one request (a heartbeat, a
    /// probe) is one `AppendEntries` call. Otherwise the requests go out on
    /// one `StreamAppend` call as openraft produces them, without waiting
    /// for the answers to the ones before (pipelining: the follower can
    /// sync several in one fdatasync), and each answer comes back in order.
    fn stream_append<'s, S>(
        &'s mut self,
        mut input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        Box::pin(async move {
            let Some(first) = input.next().await else {
                return Ok(futures::stream::empty().boxed());
            };
            let second = match input.next().now_or_never() {
                Some(None) => {
                    let prev = first.prev_log_id;
                    let last = first.entries.last().map(|e| e.log_id()).or(prev);
                    let resp = self.append_entries(first, option).await?;
                    let result = resp.into_stream_result(prev, last);
                    return Ok(futures::stream::once(async move { Ok(result) }).boxed());
                }
                Some(Some(req)) => Some(req),
                None => None,
            };
            let target = self.target;
            let mut client = self
                .peers
                .raft_client(&self.addr)
                .map_err(|s| rpc_error(target, &s))?;
            let sent = Arc::new(AtomicU64::new(0));
            let counted = sent.clone();
            let requests = futures::stream::iter(std::iter::once(first).chain(second))
                .chain(input)
                .scan((), move |_, req| {
                    let msg = match encode(&req) {
                        Ok(data) => {
                            counted.fetch_add(1, Ordering::Relaxed);
                            Some(RaftMessage { data })
                        }
                        Err(status) => {
                            tracing::error!(target, %status, "encode AppendEntries; ending the replication stream");
                            None
                        }
                    };
                    futures::future::ready(msg)
                });
            let answers = tokio::time::timeout(option.hard_ttl(), client.stream_append(requests))
                .await
                .map_err(|_| {
                    RPCError::Network(NetworkError::from_string(format!(
                        "node {target}: replication stream not opened within {:?}",
                        option.hard_ttl()
                    )))
                })?
                .map_err(|s| rpc_error(target, &s))?
                .into_inner();
            let answers = futures::stream::unfold(Some((answers, 0u64)), move |state| {
                let sent = sent.clone();
                async move {
                    let (mut answers, mut received) = state?;
                    let next = loop {
                        match tokio::time::timeout(STREAM_STALL, answers.next()).await {
                            Ok(next) => break next,
                            Err(_) if sent.load(Ordering::Relaxed) > received => {
                                break Some(Err(Status::deadline_exceeded(format!(
                                    "no answer within {STREAM_STALL:?}"
                                ))));
                            }
                            Err(_) => continue,
                        }
                    };
                    let item = match next? {
                        Ok(msg) => decode::<StreamAppendResult<TypeConfig>>(&msg.data),
                        Err(status) => Err(status),
                    };
                    received += 1;
                    match item {
                        Ok(result) => Some((Ok(result), Some((answers, received)))),
                        Err(status) => Some((Err(rpc_error(target, &status)), None)),
                    }
                }
            });
            Ok(answers.boxed())
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, |mut c, m| async move { c.vote(m).await })
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, |mut c, m| async move { c.pre_vote(m).await })
            .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&req, &option, |mut c, m| async move {
            c.transfer_leader(m).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let to_streaming = |e: RPCError<TypeConfig>| match e {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Network(NetworkError::from_string(other.to_string())),
        };
        let local = |what: &str, e: std::io::Error| {
            StreamingError::Network(NetworkError::from_string(format!(
                "{what} {}: {e}",
                snapshot.snapshot.path().display()
            )))
        };
        let mut client = self
            .peers
            .raft_client(&self.addr)
            .map_err(|s| to_streaming(rpc_error(self.target, &s)))?;
        let meta = encode(&(vote, snapshot.meta.clone()))
            .map_err(|s| to_streaming(rpc_error(self.target, &s)))?;
        let bytes = snapshot
            .snapshot
            .len()
            .map_err(|e| local("size of snapshot", e))?;
        let file = snapshot
            .snapshot
            .reader()
            .map_err(|e| local("open snapshot", e))?;
        tracing::info!(
            target = self.target,
            bytes,
            chunks = bytes.div_ceil(SNAPSHOT_CHUNK_BYTES as u64),
            "sending snapshot"
        );
        let send = client.install_snapshot(snapshot_chunks(tokio::fs::File::from_std(file), meta));
        let target = self.target;
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            reply = tokio::time::timeout(option.hard_ttl().max(Duration::from_secs(30)), send) => {
                let reply = reply
                    .map_err(|_| StreamingError::Network(NetworkError::from_string(format!("node {target}: snapshot not acknowledged in time"))))?
                    .map_err(|s| to_streaming(rpc_error(target, &s)))?;
                decode(&reply.into_inner().data).map_err(|s| to_streaming(rpc_error(target, &s)))
            }
        }
    }
}

/// The chunks of a snapshot file, read one at a time as the transport asks
/// for them; the first carries `meta`. A read error ends the stream early:
/// the receiver then finds the file truncated and refuses it.
fn snapshot_chunks(
    file: tokio::fs::File,
    meta: Vec<u8>,
) -> impl futures::Stream<Item = SnapshotChunk> {
    futures::stream::unfold(
        (file, Some(meta), false),
        |(mut file, meta, done)| async move {
            if done {
                return None;
            }
            let mut data = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES);
            if let Err(e) = (&mut file)
                .take(SNAPSHOT_CHUNK_BYTES as u64)
                .read_to_end(&mut data)
                .await
            {
                tracing::error!(error = %e, "read snapshot to send; ending the transfer");
                return None;
            }
            let last = data.len() < SNAPSHOT_CHUNK_BYTES;
            if data.is_empty() && meta.is_none() {
                return None;
            }
            let chunk = SnapshotChunk {
                meta: meta.unwrap_or_default(),
                data,
            };
            Some((chunk, (file, None, last)))
        },
    )
}
