//! `swarm-load`: load against a running Swarm cluster, reporting figures.
//!
//! - `write-latency`: one client, sequential submits: the latency of one
//!   acknowledged write.
//! - `claims`: N clients, each looping claim-one then complete, for a
//!   duration: claims/s and claim latency percentiles.
//! - `workflows`: submit N five-step no-op workflows at once and wait for all
//!   to complete: workflows/s and end-to-end latency percentiles.
//! - `long-poll`: an agent already waiting in a long-poll claim on one node,
//!   an item submitted through another: submit → claimed latency
//!   percentiles; then many agents waiting idle for a while, and how many
//!   Raft entries the cluster wrote meanwhile (its commit index before and
//!   after).
//!
//! Example: `swarm-load --endpoints 127.0.0.1:7101 claims --clients 64 --duration 10s`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use swarm_proto::v1::admin_service_client::AdminServiceClient;
use swarm_proto::v1::work_service_client::WorkServiceClient;
use swarm_proto::v1::{ClaimRequest, ClusterStatusRequest, CompleteRequest, SubmitRequest};
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
#[command(name = "swarm-load", about = "load a Swarm cluster and report figures")]
struct Args {
    /// Node addresses, comma separated; clients spread over them.
    #[arg(
        long,
        env = "SWARM_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
    )]
    endpoints: Vec<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sequential submits from one client.
    WriteLatency {
        #[arg(long, default_value_t = 200)]
        count: usize,
    },
    /// Clients looping claim-one then complete.
    Claims {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Five-step no-op workflows, all submitted at once.
    Workflows {
        #[arg(long, default_value_t = 200)]
        count: usize,
    },
    /// Long-poll claims: submit → claimed with an agent already waiting,
    /// then idle waiters and the Raft entries written meanwhile.
    LongPoll {
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        #[arg(long, default_value_t = 100)]
        idle_agents: usize,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        idle_for: Duration,
    },
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn report(what: &str, mut lat: Vec<Duration>, elapsed: Duration, ops: usize) {
    lat.sort();
    println!(
        "{what}: {ops} ops in {:.2}s = {:.0}/s; latency ms p50 {:.2} p99 {:.2} max {:.2}",
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
}

fn clients(endpoints: &[String]) -> Result<Vec<WorkServiceClient<Channel>>> {
    endpoints
        .iter()
        .map(|e| {
            let ch = Endpoint::from_shared(format!("http://{e}"))
                .with_context(|| format!("endpoint {e}"))?
                .tcp_nodelay(true)
                .connect_lazy();
            Ok(WorkServiceClient::new(ch))
        })
        .collect()
}

async fn submit(c: &mut WorkServiceClient<Channel>, kind: &str, payload: String) -> Result<String> {
    let item = c
        .submit(SubmitRequest {
            r#type: kind.into(),
            payload_json: payload,
            ..Default::default()
        })
        .await?
        .into_inner()
        .item
        .context("submit returned no item")?;
    Ok(item.id)
}

async fn write_latency(endpoints: &[String], count: usize) -> Result<()> {
    let mut c = clients(endpoints)?.remove(0);
    let mut lat = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        submit(&mut c, "latency", "null".into()).await?;
        lat.push(t.elapsed());
    }
    report("write-latency (submit)", lat, start.elapsed(), count);
    Ok(())
}

async fn claims(endpoints: &[String], n: usize, duration: Duration) -> Result<()> {
    let conns = clients(endpoints)?;
    // Enough work for everyone for the whole run, submitted up front.
    let backlog = 20_000usize;
    let mut seed = conns[0].clone();
    let feeders = (0..16).map(|_| {
        let mut c = seed.clone();
        async move {
            for _ in 0..backlog / 16 {
                submit(&mut c, "bench", "{}".into()).await?;
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(feeders).await?;
    let _ = &mut seed;
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let tasks = (0..n).map(|i| {
        let mut c = conns[i % conns.len()].clone();
        tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let items = c
                    .claim(ClaimRequest {
                        agent: format!("bench-{i}"),
                        types: vec!["bench".into()],
                        max: 1,
                        lease_ms: 30_000,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .items;
                lat.push(t.elapsed());
                for item in items {
                    let token = item.claim.map(|c| c.token).unwrap_or(0);
                    c.complete(CompleteRequest {
                        id: item.id,
                        token,
                        result_json: String::new(),
                    })
                    .await?;
                }
            }
            anyhow::Ok(lat)
        })
    });
    let mut all = Vec::new();
    for t in futures::future::join_all(tasks).await {
        all.extend(t??);
    }
    let ops = all.len();
    report(
        &format!("claims ({n} clients, claim+complete)"),
        all,
        start.elapsed(),
        ops,
    );
    Ok(())
}

async fn workflows(endpoints: &[String], count: usize) -> Result<()> {
    let conns = clients(endpoints)?;
    let payload =
        serde_json::json!({ "spec": swarm_bench::workload::FIVE_NOOP_STEPS, "inputs": {} })
            .to_string();
    let start = Instant::now();
    let tasks = (0..count).map(|i| {
        let mut c = conns[i % conns.len()].clone();
        let payload = payload.clone();
        tokio::spawn(
            async move { swarm_bench::client::workflow_to_completion(&mut c, payload).await },
        )
    });
    let mut lat = Vec::new();
    for t in futures::future::join_all(tasks).await {
        lat.push(t??);
    }
    report(
        "workflows (5 no-op steps, submit to completed)",
        lat,
        start.elapsed(),
        count,
    );
    Ok(())
}

/// A long-poll claim of one item of `kind`: the claimed ids.
async fn wait_claim(
    c: &mut WorkServiceClient<Channel>,
    agent: &str,
    kind: &str,
    wait: Duration,
) -> Result<Vec<(String, u64)>> {
    let mut request = tonic::Request::new(ClaimRequest {
        agent: agent.into(),
        types: vec![kind.into()],
        max: 1,
        lease_ms: 60_000,
        wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        ..Default::default()
    });
    request.set_timeout(wait + Duration::from_secs(10));
    let items = c.claim(request).await?.into_inner().items;
    Ok(items.into_iter().map(|i| (i.id, i.token)).collect())
}

/// The cluster's commit index as the node at `endpoint` knows it.
async fn commit_index(endpoint: &str) -> Result<u64> {
    let ch = Endpoint::from_shared(format!("http://{endpoint}"))?.connect_lazy();
    let status = AdminServiceClient::new(ch)
        .cluster_status(ClusterStatusRequest {})
        .await?
        .into_inner();
    Ok(status.commit_index)
}

async fn long_poll(
    endpoints: &[String],
    rounds: usize,
    idle_agents: usize,
    idle_for: Duration,
) -> Result<()> {
    let conns = clients(endpoints)?;
    let kind = format!("long-poll-{}", std::process::id());
    // The waiter on one node, the submitter on another.
    let mut waiter = conns[0].clone();
    let mut submitter = conns[1 % conns.len()].clone();
    let mut lat = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let claim = tokio::spawn({
            let (mut c, kind) = (waiter.clone(), kind.clone());
            async move {
                let got = wait_claim(&mut c, "waiter", &kind, Duration::from_secs(20)).await;
                (got, Instant::now())
            }
        });
        // Let the claim reach the node and start waiting.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let submitted = Instant::now();
        submit(&mut submitter, &kind, "{}".into()).await?;
        let (got, claimed_at) = claim.await?;
        let got = got?;
        let (id, token) = got.into_iter().next().context("the waiter got nothing")?;
        lat.push(claimed_at.duration_since(submitted));
        waiter
            .complete(CompleteRequest {
                id,
                token,
                result_json: "{}".into(),
            })
            .await?;
    }
    report(
        "long-poll (submit -> claimed, an agent already waiting)",
        lat,
        start.elapsed(),
        rounds,
    );

    let before = commit_index(&endpoints[0]).await?;
    let idle_kind = format!("{kind}-idle");
    let until = Instant::now() + idle_for;
    let waiters = (0..idle_agents).map(|i| {
        let (mut c, kind) = (conns[i % conns.len()].clone(), idle_kind.clone());
        tokio::spawn(async move {
            let mut calls = 0usize;
            while Instant::now() < until {
                let wait = until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_secs(25));
                if wait.is_zero() {
                    break;
                }
                wait_claim(&mut c, &format!("idle-{i}"), &kind, wait).await?;
                calls += 1;
            }
            anyhow::Ok(calls)
        })
    });
    let mut calls = 0;
    for w in futures::future::join_all(waiters).await {
        calls += w??;
    }
    let after = commit_index(&endpoints[0]).await?;
    println!(
        "long-poll idle: {idle_agents} agents waiting {:.0}s ({calls} claim calls) wrote {} Raft entries (commit index {before} -> {after})",
        idle_for.as_secs_f64(),
        after.saturating_sub(before),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let endpoints = Arc::new(args.endpoints);
    match args.command {
        Cmd::WriteLatency { count } => write_latency(&endpoints, count).await,
        Cmd::Claims { clients, duration } => claims(&endpoints, clients, duration).await,
        Cmd::Workflows { count } => workflows(&endpoints, count).await,
        Cmd::LongPoll {
            rounds,
            idle_agents,
            idle_for,
        } => long_poll(&endpoints, rounds, idle_agents, idle_for).await,
    }
}
