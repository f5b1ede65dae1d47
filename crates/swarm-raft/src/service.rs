//! The Raft network over gRPC, server side: `RaftService`, which hands
//! peers' Raft messages to the local Raft and runs the proposals and read
//! index requests that followers forward to this node. A snapshot from the
//! leader is streamed into a file beside the stored ones, checked, and
//! installed from there.

use futures::StreamExt;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use swarm_proto::v1::raft_service_server::{RaftService, RaftServiceServer};
use swarm_proto::v1::{RaftMessage, SnapshotChunk};
use tonic::{Request, Response, Status, Streaming};

use crate::codec::{decode, encode, to_wire};
use crate::peer_auth::PeerAuth;
use crate::proposer::Proposer;
use crate::{Raft, Snapshot, SnapshotMeta, StateMachineStore, TypeConfig, Vote};

/// The largest Raft message a peer may send or receive (a snapshot chunk,
/// a batch of entries).
const PEER_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// How many writes forwarded on one stream are proposed at once; the
/// stream reads no more until one finishes.
const FORWARDS_IN_FLIGHT: usize = 16 * 1024;

/// The gRPC server of `RaftService`, ready to add to a tonic router.
pub type PeerServer = RaftServiceServer<RaftGrpcService>;

/// The server side of `RaftService`: peers' Raft messages into the local
/// Raft, and proposals forwarded by followers into the local proposer.
#[derive(Clone)]
pub struct RaftGrpcService {
    raft: Raft,
    proposer: Proposer,
    /// Where a snapshot from the leader is written as it arrives.
    state: StateMachineStore,
    /// Checked before anything else in every call.
    auth: PeerAuth,
}

impl RaftGrpcService {
    pub(crate) fn server(
        raft: Raft,
        proposer: Proposer,
        state: StateMachineStore,
        auth: PeerAuth,
    ) -> PeerServer {
        RaftServiceServer::new(RaftGrpcService {
            raft,
            proposer,
            state,
            auth,
        })
        .max_decoding_message_size(PEER_MESSAGE_BYTES)
        .max_encoding_message_size(PEER_MESSAGE_BYTES)
    }
}

fn fatal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft stopped: {e}"))
}

/// The answers of a `StreamAppend` call.
type AppendAnswers =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<RaftMessage, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RaftService for RaftGrpcService {
    type StreamAppendStream = AppendAnswers;

    /// The leader's replication stream: each request goes to openraft as it
    /// arrives (openraft pipelines them), each answer back in order. A
    /// request that does not decode ends the stream with an error after the
    /// answers to the ones before it.
    async fn stream_append(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<AppendAnswers>, Status> {
        self.auth.admit(&request)?;
        let bad = std::sync::Arc::new(std::sync::Mutex::new(None::<Status>));
        let bad_in = bad.clone();
        let requests = request.into_inner().scan((), move |_, msg| {
            let next = match msg.and_then(|m| decode::<AppendEntriesRequest<TypeConfig>>(&m.data)) {
                Ok(req) => Some(req),
                Err(status) => {
                    // The caller hung up (or sent garbage): stop reading.
                    if status.code() != tonic::Code::Cancelled {
                        *bad_in.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
                    }
                    None
                }
            };
            futures::future::ready(next)
        });
        let answers = self
            .raft
            .stream_append(requests)
            .map(|answer| match answer {
                Ok(result) => encode(&result).map(|data| RaftMessage { data }),
                Err(e) => Err(fatal(e)),
            })
            .chain(
                futures::stream::once(async move {
                    bad.lock().unwrap_or_else(|p| p.into_inner()).take()
                })
                .filter_map(|bad| futures::future::ready(bad.map(Err))),
            );
        Ok(Response::new(Box::pin(answers)))
    }

    type ProposeStreamStream = AppendAnswers;

    /// Writes forwarded by a follower over one stream: each (id, command) is
    /// proposed as it arrives, each (id, outcome) sent when it is known. A
    /// request that does not decode ends the stream with an error.
    async fn propose_stream(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<AppendAnswers>, Status> {
        self.auth.admit(&request)?;
        let proposer = self.proposer.clone();
        let answers = request
            .into_inner()
            .take_while(|m| futures::future::ready(m.is_ok()))
            .filter_map(|m| futures::future::ready(m.ok()))
            .map(move |m| {
                let proposer = proposer.clone();
                async move {
                    let (id, cmd): (u64, swarm_claims::Command) = decode(&m.data)?;
                    let answer = to_wire(proposer.propose_local(cmd).await);
                    encode(&(id, answer)).map(|data| RaftMessage { data })
                }
            })
            .buffer_unordered(FORWARDS_IN_FLIGHT);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.auth.admit(&request)?;
        let req: AppendEntriesRequest<TypeConfig> = decode(&request.into_inner().data)?;
        let resp = self.raft.append_entries(req).await.map_err(fatal)?;
        Ok(Response::new(RaftMessage {
            data: encode(&resp)?,
        }))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.auth.admit(&request)?;
        let req: VoteRequest<TypeConfig> = decode(&request.into_inner().data)?;
        let resp = self.raft.vote(req).await.map_err(fatal)?;
        Ok(Response::new(RaftMessage {
            data: encode(&resp)?,
        }))
    }

    async fn pre_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.auth.admit(&request)?;
        let req: VoteRequest<TypeConfig> = decode(&request.into_inner().data)?;
        let resp = self.raft.pre_vote(req).await.map_err(fatal)?;
        Ok(Response::new(RaftMessage {
            data: encode(&resp)?,
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.auth.admit(&request)?;
        let mut stream = request.into_inner();
        let mut head: Option<(Vote, SnapshotMeta)> = None;
        let mut incoming = self.state.receive_snapshot().await.map_err(|e| {
            Status::internal(format!("create a file for the received snapshot: {e}"))
        })?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if head.is_none() {
                if chunk.meta.is_empty() {
                    return Err(Status::invalid_argument(
                        "snapshot stream must start with its metadata",
                    ));
                }
                head = Some(decode(&chunk.meta)?);
            }
            incoming
                .write(&chunk.data)
                .await
                .map_err(|e| Status::internal(format!("write the received snapshot: {e}")))?;
        }
        let (vote, meta) = head.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let bytes = incoming.bytes();
        let data = incoming
            .finish()
            .await
            .map_err(|e| Status::internal(format!("write the received snapshot: {e}")))?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes, "received snapshot");
        // Checked before openraft sees it: a storage error while installing
        // would stop the Raft core, a refusal here only makes the leader
        // send it again.
        let data = tokio::task::spawn_blocking(move || data.verify().map(|_| data))
            .await
            .map_err(|e| Status::internal(format!("check the received snapshot: {e}")))?
            .map_err(|e| Status::invalid_argument(format!("received snapshot is unusable: {e}")))?;
        let resp = self
            .raft
            .install_full_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: data,
                },
            )
            .await
            .map_err(fatal)?;
        Ok(Response::new(RaftMessage {
            data: encode(&resp)?,
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.auth.admit(&request)?;
        let req: TransferLeaderRequest<TypeConfig> = decode(&request.into_inner().data)?;
        let resp = self.raft.handle_transfer_leader(req).await.map_err(fatal)?;
        Ok(Response::new(RaftMessage {
            data: encode(&resp)?,
        }))
    }

    async fn propose(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.auth.admit(&request)?;
        let cmd: swarm_claims::Command = decode(&request.into_inner().data)?;
        let answer = to_wire(self.proposer.propose_local(cmd).await);
        Ok(Response::new(RaftMessage {
            data: encode(&answer)?,
        }))
    }

    async fn read_index(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.auth.admit(&request)?;
        let result = self.proposer.read_index_local().await;
        Ok(Response::new(RaftMessage {
            data: encode(&result)?,
        }))
    }
}
