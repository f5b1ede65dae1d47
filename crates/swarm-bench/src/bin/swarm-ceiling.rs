//! The "no consensus" side of `scripts/bench.sh`: Swarm's `WorkService`
//! for the bench's three calls (submit, claim, complete) served by one
//! process from memory. The same gRPC stack as `swarmd` (tonic, HTTP/2,
//! TCP_NODELAY, the same message conversion) and the same state machine
//! (`swarm_claims::apply`), with no Raft, no replication and no disk.
//!
//! Swarm's claims/s as a fraction of this server's is the ceiling ratio:
//! what is left of the gap once consensus and fsync are taken out is the
//! cost of everything else.
//!
//!   swarm-ceiling --listen 127.0.0.1:7401
//!
//! Every other call of the service answers UNIMPLEMENTED: this is a
//! measuring instrument, not a node. It keeps what it holds until it exits.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use swarm_claims::command::{Claim, Complete, Submit};
use swarm_claims::request::Request as Write;
use swarm_claims::{ClaimError, State, apply};
use swarm_node::{claim_error_status, item_to_pb, json_or_null};
use swarm_proto::v1 as pb;
use swarm_proto::v1::work_service_server::{WorkService, WorkServiceServer};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

#[derive(Parser)]
#[command(about = "Swarm's submit/claim/complete from memory: no Raft, no disk (bench ceiling)")]
struct Args {
    /// Where to serve gRPC (a 127.0.0.x address for the bench).
    #[arg(long, default_value = "127.0.0.1:7401")]
    listen: SocketAddr,
}

/// The state machine, applied to directly under one lock (a node applies
/// from one task too).
#[derive(Clone, Default)]
struct Ceiling {
    state: Arc<Mutex<State>>,
}

impl Ceiling {
    /// Applies `request` at the current time, as a leader stamps it.
    fn write<R: Write>(&self, request: R) -> Result<R::Answer, Status> {
        let mut cmd = request.into_command();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        cmd.stamp(now);
        let response = {
            let mut state = self
                .state
                .lock()
                .map_err(|_| Status::internal("state lock poisoned"))?;
            apply(&mut state, cmd).map_err(|e: ClaimError| claim_error_status(&e))?
        };
        R::answer(response).map_err(|r| {
            Status::internal(format!("{} got an answer of another shape: {r:?}", R::NAME))
        })
    }
}

fn not_served(call: &str) -> Status {
    Status::unimplemented(format!(
        "swarm-ceiling serves only Submit, Claim and Complete (the bench's loop), not {call}"
    ))
}

type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::WorkEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl WorkService for Ceiling {
    type WatchWorkStream = EventStream;

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let r = request.into_inner();
        let submitted = self.write(Submit {
            id: uuid::Uuid::new_v4().to_string(),
            idempotency_key: r.idempotency_key,
            kind: r.r#type,
            priority: r.priority,
            requires: r.requires,
            payload: json_or_null(r.payload_json),
            max_attempts: r.max_attempts,
            now: 0,
        })?;
        Ok(Response::new(pb::SubmitResponse {
            item: Some(item_to_pb(&submitted.item)),
            created: submitted.created,
        }))
    }

    async fn claim(
        &self,
        request: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        let r = request.into_inner();
        let granted = self.write(Claim {
            agent: r.agent,
            kinds: r.types,
            capabilities: r.capabilities,
            max: r.max.max(1),
            lease_ms: if r.lease_ms == 0 { 30_000 } else { r.lease_ms },
            now: 0,
        })?;
        Ok(Response::new(pb::ClaimResponse {
            items: granted.iter().map(item_to_pb).collect(),
        }))
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        let r = request.into_inner();
        let item = self.write(Complete {
            id: r.id,
            token: r.token,
            result: json_or_null(r.result_json),
            now: 0,
        })?;
        Ok(Response::new(pb::WorkResponse {
            item: Some(item_to_pb(&item)),
        }))
    }

    async fn renew(
        &self,
        _: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        Err(not_served("renew"))
    }

    async fn fail(
        &self,
        _: Request<pb::FailRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        Err(not_served("fail"))
    }

    async fn release(
        &self,
        _: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        Err(not_served("release"))
    }

    async fn handoff(
        &self,
        _: Request<pb::HandoffRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        Err(not_served("handoff"))
    }

    async fn cancel(
        &self,
        _: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        Err(not_served("cancel"))
    }

    async fn get_work(
        &self,
        _: Request<pb::GetWorkRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        Err(not_served("get_work"))
    }

    async fn list_work(
        &self,
        _: Request<pb::ListWorkRequest>,
    ) -> Result<Response<pb::ListWorkResponse>, Status> {
        Err(not_served("list_work"))
    }

    async fn work_stats(
        &self,
        _: Request<pb::WorkStatsRequest>,
    ) -> Result<Response<pb::WorkStatsResponse>, Status> {
        Err(not_served("work_stats"))
    }

    async fn watch_work(
        &self,
        _: Request<pb::WatchWorkRequest>,
    ) -> Result<Response<EventStream>, Status> {
        Err(not_served("watch_work"))
    }

    async fn retry_work(
        &self,
        _: Request<pb::RetryWorkRequest>,
    ) -> Result<Response<pb::RetryWorkResponse>, Status> {
        Err(not_served("retry_work"))
    }

    async fn pause_work(
        &self,
        _: Request<pb::PauseWorkRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        Err(not_served("pause_work"))
    }

    async fn resume_work(
        &self,
        _: Request<pb::ResumeWorkRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        Err(not_served("resume_work"))
    }

    async fn signal_work(
        &self,
        _: Request<pb::SignalWorkRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        Err(not_served("signal_work"))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    eprintln!("swarm-ceiling: serving on {}", args.listen);
    let max = swarm_proto::MAX_MESSAGE_BYTES;
    // The server settings swarmd uses for its clients.
    Server::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(
            WorkServiceServer::new(Ceiling::default())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serve gRPC")
}
