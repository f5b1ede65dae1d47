//! `swarmctl chaos check`: the chaos suite's replica checks
//! ([`swarm_check`]), run against a live cluster. It reads every member's
//! own replica (ListWork, LOCAL) and reports, under the suite's names:
//! - `double_grant`: an item whose holder records or claim let two holders
//!   overlap (two live holder records, a claim unlike its holder record or
//!   on an item not in the claimed state, a grant while a claim was live);
//! - `token_not_increasing`: an item whose holder or grant tokens do not
//!   strictly increase, whose claim does not carry its latest token, or a
//!   token granted for two items;
//! - `duplicate_completion`: an item completed more than once;
//! - `unknown_applied_twice`: one idempotency key on two items;
//! - `replica_divergence`: members at the same applied index that disagree
//!   about an item or about which items exist.
//!
//! Replicas of a cluster under load are rarely at one index; the check
//! retries for a few seconds until they are, and otherwise checks each
//! replica on its own without comparing them, and says so.
//! Exits 1 when anything is found.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::json;
use swarm_check::{ReplicaReport, ReplicaState, check_replicas};
use swarm_client::proto::{ListWorkRequest, ReadConsistency};
use swarm_client::{ClientConfig, RetryPolicy, SwarmClient};

use crate::cli::GlobalOpts;
use crate::output::{OutputFormat, Table, print_json, print_text};

#[derive(Debug, Args)]
pub struct Check {
    /// How long to wait for every replica to reach the same applied index
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
}

pub async fn run(global: GlobalOpts, args: Check) -> Result<()> {
    let config = global.client_config()?;
    let client = SwarmClient::connect_with(global.endpoints.clone(), config.clone())
        .context("set up the client")?;
    let status = client
        .cluster_status()
        .await
        .context("get cluster status")?;
    let members: Vec<(u64, String)> = status
        .members
        .iter()
        .map(|m| (m.id, m.addr.clone()))
        .collect();

    let deadline = Instant::now() + args.settle;
    let (replicas, unreachable) = loop {
        let (replicas, unreachable) = read_replicas(&members, &config).await;
        let indexes: BTreeSet<u64> = replicas.iter().map(|r| r.applied).collect();
        if indexes.len() <= 1 || Instant::now() >= deadline {
            break (replicas, unreachable);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if replicas.is_empty() {
        bail!("no member answered: {}", unreachable.join("; "));
    }

    let report = check_replicas(&replicas);
    let clean = report.is_clean();
    let findings = &report.anomalies;
    let view = json!({
        "clean": clean,
        "replicas": replicas.iter().map(|r| json!({
            "node": r.node, "applied": r.applied, "items": r.items.len(),
        })).collect::<Vec<_>>(),
        "unreachable": unreachable,
        "replicas_compared": report.compared,
        "anomalies": findings.iter().map(|(k, v)| (k.to_string(), json!(v.len()))).collect::<serde_json::Map<_, _>>(),
        "examples": findings.iter().filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), json!(v.iter().take(20).collect::<Vec<_>>())))
            .collect::<serde_json::Map<_, _>>(),
    });
    match global.output {
        OutputFormat::Json => print_json(&view)?,
        OutputFormat::Table => print_text(&table(&replicas, &unreachable, &report))?,
    }
    if !clean {
        bail!("the replicas show anomalies");
    }
    Ok(())
}

async fn read_replicas(
    members: &[(u64, String)],
    config: &ClientConfig,
) -> (Vec<ReplicaState>, Vec<String>) {
    let mut replicas = Vec::new();
    let mut unreachable = Vec::new();
    for (node, addr) in members {
        match read_replica(*node, addr, config).await {
            Ok(r) => replicas.push(r),
            Err(e) => unreachable.push(format!("node {node} ({addr}): {e:#}")),
        }
    }
    (replicas, unreachable)
}

async fn read_replica(node: u64, addr: &str, base: &ClientConfig) -> Result<ReplicaState> {
    let config = ClientConfig {
        retry: RetryPolicy::once(),
        ..base.clone()
    };
    let client = SwarmClient::connect_with(vec![addr.to_string()], config)
        .with_context(|| format!("set up a client for {addr}"))?;
    let before = client.cluster_status_of(addr).await.context("status")?;
    let items = client
        .list_work(ListWorkRequest {
            consistency: ReadConsistency::Local as i32,
            ..ListWorkRequest::default()
        })
        .await
        .context("list work (local)")?;
    let after = client.cluster_status_of(addr).await.context("status")?;
    if after.last_applied != before.last_applied {
        bail!(
            "applied entries while being read ({} then {})",
            before.last_applied,
            after.last_applied
        );
    }
    Ok(ReplicaState {
        node,
        applied: before.last_applied,
        items,
        removed: before.items_removed,
    })
}

fn table(replicas: &[ReplicaState], unreachable: &[String], report: &ReplicaReport) -> String {
    let mut t = Table::new(&["NODE", "APPLIED", "ITEMS"]);
    for r in replicas {
        t.push(vec![
            r.node.to_string(),
            r.applied.to_string(),
            r.items.len().to_string(),
        ]);
    }
    let mut out = t.render();
    for u in unreachable {
        out.push_str(&format!("unreachable: {u}\n"));
    }
    if !report.compared {
        out.push_str("replicas are at different applied indexes: contents not compared\n");
    }
    for (kind, found) in &report.anomalies {
        out.push_str(&format!("{kind}: {}\n", found.len()));
        for line in found.iter().take(10) {
            out.push_str(&format!("  - {line}\n"));
        }
    }
    out
}
