//! What every node serves besides the Swarm API: gRPC health and reflection,
//! so that grpcurl and load balancers work out of the box.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use swarm_tests::{Cluster, within};
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
