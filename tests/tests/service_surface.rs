//! What every node serves besides the Swarm API: gRPC health and reflection,
//! so that grpcurl and load balancers work out of the box; and which port
//! serves what: clients on `listen`, peers on `peer_listen`, each refusing
//! the other's calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use swarm_proto::v1::admin_service_client::AdminServiceClient;
use swarm_proto::v1::raft_service_client::RaftServiceClient;
use swarm_proto::v1::{ClusterStatusRequest, RaftMessage};
use swarm_tests::{Cluster, ClusterOptions, within};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_every_node_serves_health_and_reflection() {
    within(Duration::from_secs(90), "health and reflection", async {
        let cluster = Cluster::start(3).await?;
        for node in cluster.node_ids() {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addr(node)?))?
                    .connect()
                    .await?;
            let mut health = HealthClient::new(channel.clone());
            for service in [
                "",
                "swarm.v1.WorkService",
                "swarm.v1.AdminService",
                "swarm.v1.RaftService",
            ] {
                let status = health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await?
                    .into_inner()
                    .status;
                assert_eq!(
                    status,
                    ServingStatus::Serving as i32,
                    "node {node} {service:?}"
                );
            }
            let mut reflection = ServerReflectionClient::new(channel);
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers = reflection
                .server_reflection_info(futures::stream::iter([request]))
                .await?
                .into_inner();
            let answer = answers.next().await.expect("a reflection answer")?;
            let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
                panic!("node {node}: unexpected reflection answer");
            };
            let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            // The client port advertises what it serves, not the peer port's.
            for peer_service in ["swarm.v1.RaftService", "swarm.v1.HandoffService"] {
                assert!(
                    !names.iter().any(|n| n == peer_service),
                    "node {node}'s client port advertises {peer_service}: {names:?}"
                );
            }
            // The older v1alpha protocol too (older grpcurl, Python's
            // grpc_reflection).
            {
                use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
                use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
                use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
                let channel = tonic::transport::Endpoint::from_shared(format!(
                    "http://{}",
                    cluster.addr(node)?
                ))?
                .connect()
                .await?;
                let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(AlphaRequest::ListServices(String::new())),
                };
                let answer = AlphaClient::new(channel)
                    .server_reflection_info(futures::stream::iter([request]))
                    .await?
                    .into_inner()
                    .next()
                    .await
                    .expect("a v1alpha reflection answer")?;
                let Some(AlphaResponse::ListServicesResponse(alpha)) = answer.message_response
                else {
                    panic!("node {node}: unexpected v1alpha reflection answer");
                };
                let apis = |names: Vec<String>| -> Vec<String> {
                    names
                        .into_iter()
                        .filter(|n| !n.starts_with("grpc.reflection."))
                        .collect()
                };
                let alpha: Vec<String> = alpha.service.into_iter().map(|s| s.name).collect();
                assert_eq!(
                    apis(alpha),
                    apis(names.clone()),
                    "node {node}: v1alpha lists what v1 does"
                );
            }
            for wanted in [
                "swarm.v1.WorkService",
                "swarm.v1.AdminService",
                "grpc.health.v1.Health",
            ] {
                assert!(
                    names.iter().any(|n| n == wanted),
                    "node {node} lists {wanted}: {names:?}"
                );
            }
        }
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_reflection_follows_its_switch() {
    within(Duration::from_secs(90), "reflection off", async {
        let cluster = swarm_tests::Cluster::start_with(
            1,
            swarm_tests::ClusterOptions {
                extra_args: vec!["--reflection".into(), "false".into()],
                ..swarm_tests::ClusterOptions::default()
            },
        )
        .await?;
        let node = cluster.node_ids()[0];
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addr(node)?))?
                .connect()
                .await?;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let answer = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(futures::stream::iter([request]))
            .await;
        let code = match answer {
            Ok(mut stream) => match stream.get_mut().next().await {
                Some(Err(status)) => status.code(),
                other => panic!("reflection answered with it switched off: {other:?}"),
            },
            Err(status) => status.code(),
        };
        assert_eq!(code, tonic::Code::Unimplemented);
        // Health stays.
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);
        Ok(())
    })
    .await
    .unwrap();
}

/// `max_streams_per_connection`: one connection holds at most that many
/// requests at once; the next waits for one to end, while another
/// connection is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_one_connection_holds_at_most_its_streams() {
    use swarm_proto::v1::work_service_client::WorkServiceClient;
    use swarm_proto::v1::{GetWorkRequest, SubmitRequest, WatchWorkRequest};
    within(Duration::from_secs(90), "streams per connection", async {
        let cluster = swarm_tests::Cluster::start_with(
            1,
            swarm_tests::ClusterOptions {
                extra_args: vec!["--max-streams-per-connection".into(), "2".into()],
                ..swarm_tests::ClusterOptions::default()
            },
        )
        .await?;
        let node = cluster.node_ids()[0];
        let connect = || async {
            tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addr(node)?))?
                .connect()
                .await
                .map_err(anyhow::Error::from)
        };
        let one = WorkServiceClient::new(connect().await?);
        let item = one
            .clone()
            .submit(SubmitRequest {
                r#type: "task".into(),
                payload_json: "{}".into(),
                ..SubmitRequest::default()
            })
            .await?
            .into_inner()
            .item
            .expect("an item");
        let get = |mut client: WorkServiceClient<tonic::transport::Channel>| {
            let id = item.id.clone();
            async move {
                client
                    .get_work(GetWorkRequest {
                        id,
                        ..GetWorkRequest::default()
                    })
                    .await
            }
        };
        // Two watches of a pending item: open until it ends.
        let mut watches = Vec::new();
        for _ in 0..2 {
            let stream = one
                .clone()
                .watch_work(WatchWorkRequest {
                    id: item.id.clone(),
                    from_start: true,
                })
                .await?
                .into_inner();
            watches.push(stream);
        }
        let waiting = tokio::spawn(get(one.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !waiting.is_finished(),
            "a third request ran beside two open streams"
        );
        // Another connection is served at once.
        let other = WorkServiceClient::new(connect().await?);
        tokio::time::timeout(Duration::from_secs(5), get(other)).await??;
        // One stream ends: the waiting request goes through.
        drop(watches.pop());
        tokio::time::timeout(Duration::from_secs(10), waiting).await???;
        Ok(())
    })
    .await
    .unwrap();
}

async fn plaintext(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?,
    )
}

/// A vote that is not one: refused by the port, or past it and refused as
/// malformed.
async fn vote(channel: Channel) -> tonic::Status {
    match RaftServiceClient::new(channel)
        .vote(RaftMessage {
            data: b"not a vote".to_vec(),
        })
        .await
    {
        Ok(_) => tonic::Status::ok("answered"),
        Err(status) => status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_clients_and_peers_each_have_their_port() {
    within(Duration::from_secs(90), "client and peer ports", async {
        let cluster = Cluster::start(3).await?;
        let status = cluster.status(1).await?;
        for node in cluster.node_ids() {
            let (addr, peer_addr) = (cluster.addr(node)?, cluster.peer_addr(node)?);
            assert_ne!(addr, peer_addr);
            // Membership records both addresses; peers dial the peer port.
            let member = status
                .members
                .iter()
                .find(|m| m.id == node)
                .expect("a member");
            assert_eq!(
                (member.addr.clone(), member.peer_addr.clone()),
                (addr.to_string(), peer_addr.to_string())
            );
            // A peer call on the client port is refused, naming the peer port.
            let refused = vote(plaintext(addr).await?).await;
            assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
            assert!(
                refused.message().contains(&peer_addr.to_string()),
                "{}",
                refused.message()
            );
            // On the peer port the same call gets past the port (a malformed
            // vote), and a client call is refused, naming the client port.
            let peers = plaintext(peer_addr).await?;
            assert_eq!(vote(peers.clone()).await.code(), Code::InvalidArgument);
            let refused = AdminServiceClient::new(peers.clone())
                .cluster_status(ClusterStatusRequest {})
                .await
                .expect_err("a client call on the peer port");
            assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
            assert!(
                refused.message().contains(&addr.to_string()),
                "{}",
                refused.message()
            );
            // Health answers on both.
            let health = HealthClient::new(peers)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?
                .into_inner()
                .status;
            assert_eq!(health, ServingStatus::Serving as i32);
        }
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_a_node_without_a_peer_port_serves_peers_on_its_one_port() {
    within(Duration::from_secs(90), "one port", async {
        let cluster = Cluster::start_with(
            2,
            ClusterOptions {
                one_port: true,
                ..ClusterOptions::default()
            },
        )
        .await?;
        let status = cluster.status(1).await?;
        for node in cluster.node_ids() {
            let addr = cluster.addr(node)?;
            let member = status
                .members
                .iter()
                .find(|m| m.id == node)
                .expect("a member");
            assert_eq!(member.peer_addr, addr.to_string());
            assert_eq!(
                vote(plaintext(addr).await?).await.code(),
                Code::InvalidArgument
            );
        }
        Ok(())
    })
    .await
    .unwrap();
}
