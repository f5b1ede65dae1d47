//! The call loop against fake nodes on real sockets: leader hints, the
//! memory of the last good node, and which calls survive which failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use swarm_client::proto::admin_service_server::{AdminService, AdminServiceServer};
use swarm_client::proto::{
    AddNodeRequest, AddNodeResponse, ClusterStatusRequest, ClusterStatusResponse,
    RemoveNodeRequest, RemoveNodeResponse, TransferLeaderRequest, TransferLeaderResponse,
};
use swarm_client::{ClientConfig, ClientError, LEADER_ADDR_KEY, RetryPolicy, SwarmClient};
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

#[derive(Clone)]
enum Behaviour {
    /// Answers as node `id`.
    Serve(u64),
    /// Refuses every call, naming `leader`.
    Redirect(String),
    /// Never answers in time.
    Hang,
}

struct FakeNode {
    behaviour: Behaviour,
    calls: Arc<AtomicUsize>,
}

impl FakeNode {
    async fn answer(&self) -> Result<ClusterStatusResponse, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.behaviour {
            Behaviour::Serve(id) => Ok(ClusterStatusResponse {
                leader_id: *id,
                node_id: *id,
                term: 7,
                ..Default::default()
            }),
            Behaviour::Redirect(leader) => {
                let mut status = Status::unavailable("not leader");
                status.metadata_mut().insert(
                    LEADER_ADDR_KEY,
                    MetadataValue::try_from(leader.as_str()).unwrap(),
                );
                Err(status)
            }
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err(Status::internal("too late"))
            }
        }
    }
}

#[tonic::async_trait]
impl AdminService for FakeNode {
    async fn cluster_status(
        &self,
        _: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        self.answer().await.map(Response::new)
    }
    async fn add_node(
        &self,
        _: Request<AddNodeRequest>,
    ) -> Result<Response<AddNodeResponse>, Status> {
        let status = self.answer().await?;
        Ok(Response::new(AddNodeResponse {
            status: Some(status),
        }))
    }
    async fn remove_node(
        &self,
        _: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        Err(Status::not_found("node 9 not found"))
    }
    async fn transfer_leader(
        &self,
        _: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        Err(Status::unimplemented(""))
    }
}

/// A fake node on 127.0.0.1:0; returns its address and call counter.
async fn spawn(behaviour: Behaviour) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let calls = Arc::new(AtomicUsize::new(0));
    let node = FakeNode {
        behaviour,
        calls: calls.clone(),
    };
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AdminServiceServer::new(node))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    (addr, calls)
}

/// An address nothing listens on.
fn dead_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn fast_config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_millis(300),
        probe_timeout: Duration::from_millis(300),
        retry: RetryPolicy {
            rounds: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            total_timeout: Duration::from_secs(5),
        },
        ..ClientConfig::default()
    }
}

fn client(endpoints: &[&str]) -> SwarmClient {
    SwarmClient::connect_with(
        endpoints.iter().map(|s| s.to_string()).collect(),
        fast_config(),
    )
    .unwrap()
}

#[tokio::test]
async fn follows_the_leader_hint_and_remembers_the_leader() {
    let (leader, leader_calls) = spawn(Behaviour::Serve(2)).await;
    let (follower, follower_calls) = spawn(Behaviour::Redirect(leader.clone())).await;
    let (other, other_calls) = spawn(Behaviour::Serve(3)).await;

    // The leader is not in the list: the client learns it from the hint.
    let c = client(&[&follower, &other]);
    let status = c.cluster_status().await.unwrap();
    assert_eq!(status.node_id, 2);
    assert_eq!(follower_calls.load(Ordering::SeqCst), 1);
    assert_eq!(leader_calls.load(Ordering::SeqCst), 1);
    assert_eq!(other_calls.load(Ordering::SeqCst), 0);

    // The next call starts at the leader.
    let status = c.add_node(AddNodeRequest::default()).await.unwrap();
    assert_eq!(status.node_id, 2);
    assert_eq!(follower_calls.load(Ordering::SeqCst), 1);
    assert_eq!(c.endpoints()[0].as_str(), leader);
}

#[tokio::test]
async fn a_call_that_is_not_repeatable_moves_on_when_connecting_fails() {
    let (live, live_calls) = spawn(Behaviour::Serve(1)).await;
    let c = client(&[&dead_addr(), &live]);
    let status = c.add_node(AddNodeRequest::default()).await.unwrap();
    assert_eq!(status.node_id, 1);
    assert_eq!(live_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_repeatable_call_moves_on_after_a_timeout() {
    let (hung, hung_calls) = spawn(Behaviour::Hang).await;
    let (live, live_calls) = spawn(Behaviour::Serve(1)).await;
    let c = client(&[&hung, &live]);
    let status = c.cluster_status().await.unwrap();
    assert_eq!(status.node_id, 1);
    assert_eq!(hung_calls.load(Ordering::SeqCst), 1);
    assert_eq!(live_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_call_that_is_not_repeatable_stops_after_a_timeout() {
    let (hung, hung_calls) = spawn(Behaviour::Hang).await;
    let (live, live_calls) = spawn(Behaviour::Serve(1)).await;
    let c = client(&[&hung, &live]);
    let err = c.add_node(AddNodeRequest::default()).await.unwrap_err();
    assert!(matches!(err, ClientError::OutcomeUnknown { .. }), "{err}");
    assert!(err.to_string().starts_with("outcome unknown"), "{err}");
    assert_eq!(hung_calls.load(Ordering::SeqCst), 1);
    assert_eq!(live_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_definite_answer_is_not_retried() {
    let (a, a_calls) = spawn(Behaviour::Serve(1)).await;
    let c = client(&[&a]);
    let err = c
        .remove_node(RemoveNodeRequest { id: 9 })
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.to_string(), "node 9 not found");
    assert_eq!(
        a_calls.load(Ordering::SeqCst),
        0,
        "remove_node does not count"
    );
}

#[tokio::test]
async fn every_node_down_is_unavailable_after_all_rounds() {
    let c = client(&[&dead_addr(), &dead_addr()]);
    let err = c.cluster_status().await.unwrap_err();
    match &err {
        ClientError::Unavailable { attempts, .. } => assert_eq!(*attempts, 4),
        other => panic!("expected unavailable, got {other}"),
    }
    assert_eq!(err.code(), Some(tonic::Code::Unavailable));
}

#[tokio::test]
async fn cluster_status_of_asks_exactly_one_node() {
    let (a, a_calls) = spawn(Behaviour::Serve(1)).await;
    let (b, b_calls) = spawn(Behaviour::Serve(2)).await;
    let c = client(&[&a]);
    assert_eq!(c.cluster_status_of(&b).await.unwrap().node_id, 2);
    assert_eq!(a_calls.load(Ordering::SeqCst), 0);
    assert_eq!(b_calls.load(Ordering::SeqCst), 1);

    let (hung, _) = spawn(Behaviour::Hang).await;
    assert!(c.cluster_status_of(&hung).await.is_err());
    assert!(c.cluster_status_of(&dead_addr()).await.is_err());
    // Probing other nodes does not change where calls go.
    assert_eq!(c.endpoints().len(), 1);
}
