//! End-to-end: every node's HTTP listener against real `swarmd` processes.
//! t10 scrapes `/metrics` on each node, does a known amount of work and
//! checks the counters and gauges moved by exactly that on every replica;
//! t20 health and readiness; t30 bad input (unknown routes, bad query
//! parameters) answers 404/400 with a message and the node keeps serving.
//!
//! Every test bounds its whole body with [`within`] and owns its [`Cluster`],
//! whose drop SIGKILLs and reaps every process it started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use swarm_proto::v1::{ClaimRequest, CompleteRequest, FailRequest, SubmitRequest};
use swarm_tests::http::{get, samples};
use swarm_tests::{Cluster, ClusterOptions, free_ports, within};

const SCENARIO: Duration = Duration::from_secs(120);

/// A three-node cluster whose nodes serve HTTP; their HTTP addresses by
/// node id.
async fn cluster_with_http() -> Result<(Cluster, BTreeMap<u64, SocketAddr>)> {
    let ports = free_ports(3)?;
    let mut options = ClusterOptions::default();
    let mut http = BTreeMap::new();
    for (i, port) in ports.into_iter().enumerate() {
        let id = i as u64 + 1;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        options
            .per_node_args
            .insert(id, vec!["--http-listen".into(), addr.to_string()]);
        http.insert(id, addr);
    }
    let cluster = Cluster::start_with(3, options).await?;
    Ok((cluster, http))
}

async fn scrape(addr: SocketAddr) -> Result<BTreeMap<String, f64>> {
    let (status, body) = get(addr, "/metrics").await?;
    ensure!(
        status == 200,
        "/metrics on {addr} answered {status}: {body}"
    );
    ensure!(
        body.ends_with("# EOF\n"),
        "not an OpenMetrics exposition: {body}"
    );
    Ok(samples(&body))
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_counters_and_gauges_move_by_exactly_the_work_done_on_every_node() {
    let (cluster, http) = cluster_with_http().await.unwrap();
    within(SCENARIO, "metrics scenario", async {
        let before: BTreeMap<u64, _> = {
            let mut m = BTreeMap::new();
            for (id, addr) in &http {
                m.insert(*id, scrape(*addr).await?);
            }
            m
        };
        let entry = cluster.node_ids()[0];
        let mut work = cluster.work(entry)?;
        const KIND: &str = "metered";
        for i in 0..10 {
            work.submit(SubmitRequest {
                r#type: KIND.into(),
                payload_json: "{}".into(),
                idempotency_key: format!("metered-{i}"),
                ..SubmitRequest::default()
            })
            .await
            .context("submit")?;
        }
        let granted = work
            .claim(ClaimRequest {
                agent: "meter-reader".into(),
                types: vec![KIND.into()],
                max: 10,
                lease_ms: 60_000,
                ..ClaimRequest::default()
            })
            .await
            .context("claim")?
            .into_inner()
            .items;
        ensure!(granted.len() == 10, "granted {} of 10", granted.len());
        for item in &granted[..6] {
            work.complete(CompleteRequest {
                id: item.id.clone(),
                token: item.token,
                result_json: "{\"ok\":true}".into(),
            })
            .await
            .context("complete")?;
        }
        for item in &granted[6..8] {
            work.fail(FailRequest {
                id: item.id.clone(),
                token: item.token,
                error: "measured failure".into(),
                retry: false,
            })
            .await
            .context("fail")?;
        }
        // A stale token: refused, and counted as such.
        let stale = work
            .complete(CompleteRequest {
                id: granted[8].id.clone(),
                token: granted[8].token + 1_000,
                result_json: "{}".into(),
            })
            .await;
        ensure!(stale.is_err(), "a stale token was accepted");
        let last = cluster.applied(entry).await?;
        cluster.wait_applied(last, Duration::from_secs(30)).await?;

        for (id, addr) in &http {
            let after = scrape(*addr).await?;
            let b = &before[id];
            let delta = |key: &str| value(&after, key) - value(b, key);
            ensure!(
                delta("swarm_work_claims_granted_total") == 10.0,
                "node {id}: claims granted moved by {}",
                delta("swarm_work_claims_granted_total")
            );
            ensure!(
                value(&after, &format!("swarm_work_completions_total{{type=\"{KIND}\"}}")) == 6.0,
                "node {id}: completions: {after:?}"
            );
            ensure!(
                value(&after, &format!("swarm_work_failures_total{{type=\"{KIND}\"}}")) == 2.0,
                "node {id}: failures: {after:?}"
            );
            ensure!(
                delta("swarm_work_stale_tokens_rejected_total") == 1.0,
                "node {id}: stale tokens moved by {}",
                delta("swarm_work_stale_tokens_rejected_total")
            );
            for (status, n) in [
                ("pending", 0.0),
                ("claimed", 2.0),
                ("completed", 6.0),
                ("failed", 2.0),
                ("cancelled", 0.0),
            ] {
                let key = format!("swarm_work_items{{type=\"{KIND}\",status=\"{status}\"}}");
                ensure!(
                    value(&after, &key) == n,
                    "node {id}: {key} is {} not {n}",
                    value(&after, &key)
                );
            }
            ensure!(
                value(&after, "swarm_raft_applied_index") >= last as f64,
                "node {id}: applied index gauge behind {last}"
            );
            ensure!(
                after.contains_key("swarm_raft_term"),
                "node {id}: no raft term"
            );
        }
        // The node that served the calls counted them by method and code.
        let served = scrape(http[&entry]).await?;
        let key = |method: &str, code: &str| {
            format!(
                "swarm_grpc_requests_total{{service=\"swarm.v1.WorkService\",method=\"{method}\",code=\"{code}\"}}"
            )
        };
        ensure!(
            value(&served, &key("Submit", "OK")) - value(&before[&entry], &key("Submit", "OK"))
                == 10.0,
            "submits counted: {served:?}"
        );
        ensure!(
            value(&served, &key("Complete", "FAILED_PRECONDITION"))
                + value(&served, &key("Complete", "ABORTED"))
                >= 1.0,
            "the refused complete was not counted with its code: {served:?}"
        );
        // The two items left claimed are the live claims, on every node.
        for addr in http.values() {
            let (status, body) = get(*addr, &format!("/api/claims?type={KIND}")).await?;
            ensure!(status == 200, "/api/claims: {status} {body}");
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let claims = v["claims"].as_array().context("no claims array")?;
            let mut ids: Vec<&str> = claims.iter().filter_map(|c| c["id"].as_str()).collect();
            ids.sort_unstable();
            let mut expected: Vec<&str> = granted[8..].iter().map(|i| i.id.as_str()).collect();
            expected.sort_unstable();
            ensure!(ids == expected, "{addr}: claims {ids:?}, expected {expected:?}");
            ensure!(
                claims.iter().all(|c| c["agent"] == "meter-reader"),
                "{body}"
            );
        }
        // Exactly one leader says it leads.
        let mut leaders = 0.0;
        for addr in http.values() {
            leaders += value(&scrape(*addr).await?, "swarm_raft_is_leader");
        }
        ensure!(leaders == 1.0, "{leaders} nodes report being the leader");
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_health_readiness_and_the_allocators_account() {
    // Held to the end: its drop stops the nodes.
    let (_cluster, http) = cluster_with_http().await.unwrap();
    within(SCENARIO, "health scenario", async {
        for addr in http.values() {
            let (status, body) = get(*addr, "/healthz").await?;
            ensure!(status == 200, "healthz {status}: {body}");
            swarm_tests::wait_until(Duration::from_secs(20), "ready", || async {
                matches!(get(*addr, "/readyz").await, Ok((200, _)))
            })
            .await?;
            // The allocator's own account of what the node holds: jemalloc
            // is swarmd's allocator, and pages hold at least what lives in
            // them.
            let m = scrape(*addr).await?;
            let [allocated, active, resident] = ["allocated", "active", "resident"]
                .map(|what| value(&m, &format!("swarm_memory_{what}_bytes")));
            ensure!(
                allocated > 1_000_000.0 && active >= allocated && resident >= active,
                "memory gauges: allocated {allocated}, active {active}, resident {resident}"
            );
        }
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_bad_input_gets_a_clear_error_and_the_node_keeps_serving() {
    let (cluster, http) = cluster_with_http().await.unwrap();
    within(SCENARIO, "bad input scenario", async {
        let addr = http[&cluster.node_ids()[0]];
        for (path, code, says) in [
            ("/no/such/route", 404, "no such route"),
            ("/api/work?limit=0", 400, "limit"),
            ("/api/work?status=done", 400, "status \\\"done\\\""),
            ("/api/work?page_token=%21%21", 400, "page_token"),
            ("/api/work?colour=red", 400, "unknown parameter"),
            ("/api/work/no-such-item", 404, "not found"),
            ("/assets/nothing.js", 404, "no asset"),
        ] {
            let (status, body) = get(addr, path).await?;
            ensure!(status == code, "{path}: {status} {body}");
            ensure!(body.contains(says), "{path}: {body} does not say {says:?}");
        }
        let (status, body) = get(addr, "/api/cluster").await?;
        ensure!(status == 200, "after bad input: {status} {body}");
        let cluster_json: serde_json::Value = serde_json::from_str(&body)?;
        ensure!(
            cluster_json["members"].as_array().map(Vec::len) == Some(3),
            "{cluster_json}"
        );
        // Every node, follower or leader, shows each member's lag (a
        // follower takes it from the leader's own answer).
        for node_addr in http.values() {
            swarm_tests::wait_until(Duration::from_secs(20), "lag known", || async {
                let Ok((200, body)) = get(*node_addr, "/api/cluster").await else {
                    return false;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
                    return false;
                };
                v["members"]
                    .as_array()
                    .is_some_and(|ms| ms.len() == 3 && ms.iter().all(|m| m["lag"].is_u64()))
            })
            .await?;
        }
        let (status, body) = get(addr, "/").await?;
        ensure!(
            status == 200 && body.contains("<html"),
            "dashboard: {status}"
        );
        cluster.check_alive()?;
        Ok(())
    })
    .await
    .unwrap();
}
