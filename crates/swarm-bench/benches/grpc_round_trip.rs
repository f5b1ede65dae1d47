//! One unary gRPC call over loopback with the stack every Swarm request
//! rides on (tonic, HTTP/2, TCP_NODELAY on both ends): a health check, so
//! the figure is the transport's cost alone, sequential and 64 in flight on
//! one connection.
//!
//! Run: `cargo bench -p swarm-bench --bench grpc_round_trip`

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Starts a health service on 127.0.0.1 and connects one channel to it.
async fn serve_and_connect() -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(async move {
        let _ = Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming)
            .await;
    });
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect("connect")
}

async fn check(client: &mut HealthClient<Channel>) {
    client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check");
}

fn bench_round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let channel = rt.block_on(serve_and_connect());
    let mut group = c.benchmark_group("grpc_round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("unary_sequential", |b| {
        let mut client = HealthClient::new(channel.clone());
        b.iter(|| rt.block_on(check(&mut client)))
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("unary_64_in_flight", |b| {
        b.iter(|| {
            rt.block_on(join_all((0..64).map(|_| {
                let mut client = HealthClient::new(channel.clone());
                async move { check(&mut client).await }
            })))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_round_trip);
criterion_main!(benches);
