//! Listing and counting against a fake node on a real socket: the page
//! stream follows `next_page_token` to the end, `list_work` collects every
//! page, a node that answers the token it was given ends the stream with an
//! error instead of a loop, and `work_stats` passes its answer through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;

use futures::{Stream, StreamExt as _, TryStreamExt as _};
use swarm_client::proto::work_service_server::{WorkService, WorkServiceServer};
use swarm_client::proto::*;
use swarm_client::{ClientError, SwarmClient};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Lists ten items `i0`..`i9` three at a time, the token after item N being
/// `N`; for type `stuck`, answers every page with the token it was given.
struct FakeNode;

type Events = Pin<Box<dyn Stream<Item = Result<WorkEvent, Status>> + Send>>;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(""))
}

#[tonic::async_trait]
impl WorkService for FakeNode {
    type WatchWorkStream = Events;

    async fn list_work(
        &self,
        r: Request<ListWorkRequest>,
    ) -> Result<Response<ListWorkResponse>, Status> {
        let r = r.into_inner();
        let start = match r.page_token.as_str() {
            "" => 0,
            token => {
                token
                    .parse::<usize>()
                    .map_err(|_| Status::invalid_argument("token"))?
                    + 1
            }
        };
        let end = (start + 3).min(10);
        let items = (start..end)
            .map(|n| WorkItem {
                id: format!("i{n}"),
                ..Default::default()
            })
            .collect();
        let next_page_token = if r.r#type == "stuck" {
            "1".to_string()
        } else if end < 10 {
            (end - 1).to_string()
        } else {
            String::new()
        };
        Ok(Response::new(ListWorkResponse {
            items,
            next_page_token,
        }))
    }
    async fn work_stats(
        &self,
        r: Request<WorkStatsRequest>,
    ) -> Result<Response<WorkStatsResponse>, Status> {
        let local = r.into_inner().consistency == ReadConsistency::Local as i32;
        Ok(Response::new(WorkStatsResponse {
            by_status: Some(StatusCounts {
                pending: 2,
                ..Default::default()
            }),
            total: if local { 1 } else { 2 },
            ..Default::default()
        }))
    }

    async fn watch_work(&self, _: Request<WatchWorkRequest>) -> Result<Response<Events>, Status> {
        unimplemented()
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

async fn client() -> SwarmClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(WorkServiceServer::new(FakeNode))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    SwarmClient::connect(vec![addr]).unwrap()
}

fn ids(items: &[WorkItem]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

#[tokio::test]
async fn pages_are_followed_to_the_last_one() {
    let client = client().await;
    let pages: Vec<ListWorkResponse> = client
        .list_work_pages(ListWorkRequest::default())
        .try_collect()
        .await
        .unwrap();
    let sizes: Vec<usize> = pages.iter().map(|p| p.items.len()).collect();
    assert_eq!(sizes, [3, 3, 3, 1]);
    assert_eq!(pages[3].next_page_token, "");

    let all = client.list_work(ListWorkRequest::default()).await.unwrap();
    assert_eq!(
        ids(&all),
        ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9"]
    );
    let rest = client
        .list_work(ListWorkRequest {
            page_token: "6".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&rest), ["i7", "i8", "i9"]);
}

#[tokio::test]
async fn a_node_that_answers_the_same_token_ends_the_stream_with_an_error() {
    let client = client().await;
    let mut pages = client.list_work_pages(ListWorkRequest {
        r#type: "stuck".into(),
        ..Default::default()
    });
    assert!(pages.next().await.unwrap().is_ok());
    let err = pages.next().await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::MalformedResponse(_)), "{err}");
    assert!(pages.next().await.is_none());
}

#[tokio::test]
async fn work_stats_asks_with_the_consistency_given() {
    let client = client().await;
    let linearizable = client
        .work_stats(WorkStatsRequest::default())
        .await
        .unwrap();
    assert_eq!(
        (linearizable.total, linearizable.by_status.unwrap().pending),
        (2, 2)
    );
    let local = client
        .work_stats(WorkStatsRequest {
            consistency: ReadConsistency::Local as i32,
        })
        .await
        .unwrap();
    assert_eq!(local.total, 1);
}
