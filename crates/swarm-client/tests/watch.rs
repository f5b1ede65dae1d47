//! `watch_work` against fake nodes on real sockets: opening the stream goes
//! round the endpoints, and a stream that breaks after it started ends with
//! `WatchInterrupted` instead of being retried.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use swarm_client::proto::work_service_server::{WorkService, WorkServiceServer};
use swarm_client::proto::*;
use swarm_client::{ClientConfig, ClientError, RetryPolicy, SwarmClient};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Streams `events` events of the item it is asked about, then breaks the
/// stream with UNAVAILABLE when `breaks`, or ends it with a `completed` event.
struct FakeNode {
    events: u64,
    breaks: bool,
}

type Events = Pin<Box<dyn Stream<Item = Result<WorkEvent, Status>> + Send>>;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(""))
}

#[tonic::async_trait]
impl WorkService for FakeNode {
    type WatchWorkStream = Events;

    async fn watch_work(&self, r: Request<WatchWorkRequest>) -> Result<Response<Events>, Status> {
        let r = r.into_inner();
        if r.id == "missing" {
            return Err(Status::not_found(format!("work item {:?} not found", r.id)));
        }
        assert!(r.from_start);
        let mut events: Vec<Result<WorkEvent, Status>> = (0..self.events)
            .map(|seq| {
                Ok(WorkEvent {
                    seq,
                    kind: if seq == 0 { "submitted" } else { "step" }.into(),
                    ..Default::default()
                })
            })
            .collect();
        if self.breaks {
            events.push(Err(Status::unavailable("node shutting down")));
        } else {
            events.push(Ok(WorkEvent {
                seq: self.events,
                kind: "completed".into(),
                status: WorkStatus::Completed as i32,
                ..Default::default()
            }));
        }
        // Slowly, so that the stream is live while the client reads it.
        let stream =
            tokio_stream::StreamExt::throttle(tokio_stream::iter(events), Duration::from_millis(5));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn submit(&self, _: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        unimplemented()
    }
    async fn claim(&self, _: Request<ClaimRequest>) -> Result<Response<ClaimResponse>, Status> {
        unimplemented()
    }
    async fn renew(&self, _: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        unimplemented()
    }
    async fn complete(
        &self,
        _: Request<CompleteRequest>,
    ) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
    async fn fail(&self, _: Request<FailRequest>) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
    async fn release(&self, _: Request<ReleaseRequest>) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
    async fn handoff(&self, _: Request<HandoffRequest>) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
    async fn cancel(&self, _: Request<CancelRequest>) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
    async fn get_work(&self, _: Request<GetWorkRequest>) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
    async fn list_work(
        &self,
        _: Request<ListWorkRequest>,
    ) -> Result<Response<ListWorkResponse>, Status> {
        unimplemented()
    }
    async fn work_stats(
        &self,
        _: Request<WorkStatsRequest>,
    ) -> Result<Response<WorkStatsResponse>, Status> {
        unimplemented()
    }
    async fn pause_work(
        &self,
        _: Request<swarm_proto::v1::PauseWorkRequest>,
    ) -> Result<Response<swarm_proto::v1::WorkResponse>, Status> {
        unimplemented()
    }

    async fn signal_work(
        &self,
        _: Request<swarm_proto::v1::SignalWorkRequest>,
    ) -> Result<Response<swarm_proto::v1::WorkResponse>, Status> {
        unimplemented()
    }

    async fn resume_work(
        &self,
        _: Request<swarm_proto::v1::ResumeWorkRequest>,
    ) -> Result<Response<swarm_proto::v1::WorkResponse>, Status> {
        unimplemented()
    }

    async fn retry_work(
        &self,
        _: Request<RetryWorkRequest>,
    ) -> Result<Response<RetryWorkResponse>, Status> {
        unimplemented()
    }
}

async fn spawn(node: FakeNode) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(WorkServiceServer::new(node))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    addr
}

/// An address nothing listens on.
fn dead_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn client(endpoints: &[&str]) -> SwarmClient {
    let config = ClientConfig {
        // Shorter than the stream lives: a deadline on the stream would cut it.
        request_timeout: Duration::from_millis(50),
        retry: RetryPolicy::once(),
        ..ClientConfig::default()
    };
    SwarmClient::connect_with(endpoints.iter().map(|s| s.to_string()).collect(), config).unwrap()
}

#[tokio::test]
async fn opening_moves_past_a_dead_node_and_the_stream_outlives_the_request_timeout() {
    let live = spawn(FakeNode {
        events: 20,
        breaks: false,
    })
    .await;
    let c = client(&[&dead_addr(), &live]);
    let events: Vec<_> = c.watch_work("w1", true).await.unwrap().collect().await;
    let seqs: Vec<u64> = events.iter().map(|e| e.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, (0..=20).collect::<Vec<_>>());
    let last = events.last().unwrap().as_ref().unwrap();
    assert_eq!(last.kind, "completed");
    assert_eq!(c.endpoints()[0].as_str(), live);
}

#[tokio::test]
async fn a_stream_that_breaks_ends_with_watch_interrupted() {
    let node = spawn(FakeNode {
        events: 3,
        breaks: true,
    })
    .await;
    let c = client(&[&node]);
    let events: Vec<_> = c.watch_work("w1", true).await.unwrap().collect().await;
    assert_eq!(events.len(), 4);
    assert!(events[..3].iter().all(Result::is_ok));
    let err = events[3].as_ref().unwrap_err();
    assert!(err.is_watch_interrupted(), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("watch interrupted at {node}")),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_item_is_not_found_when_opening() {
    let node = spawn(FakeNode {
        events: 0,
        breaks: false,
    })
    .await;
    let c = client(&[&node]);
    let err = c.watch_work("missing", true).await.err().unwrap();
    assert!(matches!(err, ClientError::NotFound(_)), "{err}");
}
