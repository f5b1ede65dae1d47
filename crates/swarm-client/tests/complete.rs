//! `complete` after an ambiguous first attempt: the retry is refused as
//! stale because the first attempt was applied after all, and the client
//! reads the item back to report the success it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use swarm_client::proto::work_service_server::{WorkService, WorkServiceServer};
use swarm_client::proto::*;
use swarm_client::{ClientConfig, RetryPolicy, SwarmClient};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// `slow`: answers `complete` too late (but "applies" it); otherwise
/// refuses it as stale. `completed_with`: the token the item's history says
/// completed it.
struct FakeNode {
    slow: bool,
    completed_with: u64,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(""))
}

#[tonic::async_trait]
impl WorkService for FakeNode {
    type WatchWorkStream = tonic::codec::Streaming<swarm_proto::v1::WorkEvent>;

    async fn watch_work(
        &self,
        _: Request<swarm_proto::v1::WatchWorkRequest>,
    ) -> Result<Response<Self::WatchWorkStream>, Status> {
        Err(Status::unimplemented("watch is not faked"))
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
        r: Request<CompleteRequest>,
    ) -> Result<Response<WorkResponse>, Status> {
        if self.slow {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let r = r.into_inner();
        Err(Status::failed_precondition(format!(
            "stale token {} for work item {:?}: current token is none (the item is not claimed)",
            r.token, r.id
        )))
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
    async fn get_work(&self, r: Request<GetWorkRequest>) -> Result<Response<WorkResponse>, Status> {
        Ok(Response::new(WorkResponse {
            item: Some(WorkItem {
                id: r.into_inner().id,
                status: WorkStatus::Completed as i32,
                history: vec![HolderRecord {
                    agent: "a1".into(),
                    token: self.completed_with,
                    granted_at_ms: 1,
                    ended: "completed".into(),
                }],
                ..Default::default()
            }),
        }))
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

fn client(endpoints: [&str; 2]) -> SwarmClient {
    let config = ClientConfig {
        request_timeout: Duration::from_millis(300),
        retry: RetryPolicy {
            rounds: 1,
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    };
    SwarmClient::connect_with(endpoints.map(String::from).to_vec(), config).unwrap()
}

fn complete(token: u64) -> CompleteRequest {
    CompleteRequest {
        id: "w1".into(),
        token,
        result_json: "1".into(),
    }
}

#[tokio::test]
async fn a_stale_retry_of_an_applied_complete_is_a_success() {
    let slow = spawn(FakeNode {
        slow: true,
        completed_with: 5,
    })
    .await;
    let fast = spawn(FakeNode {
        slow: false,
        completed_with: 5,
    })
    .await;
    let item = client([&slow, &fast]).complete(complete(5)).await.unwrap();
    assert_eq!(item.status, WorkStatus::Completed as i32);
}

#[tokio::test]
async fn a_stale_retry_stays_stale_when_someone_else_completed_it() {
    let slow = spawn(FakeNode {
        slow: true,
        completed_with: 8,
    })
    .await;
    let fast = spawn(FakeNode {
        slow: false,
        completed_with: 8,
    })
    .await;
    let err = client([&slow, &fast])
        .complete(complete(5))
        .await
        .unwrap_err();
    assert!(err.is_stale_token(), "{err}");
}

#[tokio::test]
async fn a_stale_first_answer_is_never_second_guessed() {
    // No ambiguous attempt: the item was completed under this token by an
    // earlier call, and this call is told so.
    let fast = spawn(FakeNode {
        slow: false,
        completed_with: 5,
    })
    .await;
    let other = spawn(FakeNode {
        slow: false,
        completed_with: 5,
    })
    .await;
    let err = client([&fast, &other])
        .complete(complete(5))
        .await
        .unwrap_err();
    assert!(err.is_stale_token(), "{err}");
    assert!(err.to_string().starts_with("stale token 5"), "{err}");
}
