//! `swarmctl chaos check`: a light version of the chaos suite's checker,
//! run against a live cluster. It reads every member's own replica
//! (ListWork, LOCAL) and reports:
//! - `replica_divergence`: members at the same applied index that disagree
//!   about an item (status, token, holder, attempt) or about which items exist;
//! - `double_holder`: an item with two live holder records, or with a live
//!   claim while not in the claimed state;
//! - `token_order`: an item whose holders' tokens do not strictly increase,
//!   or whose current claim does not carry its latest token.
//!
//! Replicas of a cluster under load are rarely at one index; the check
//! retries for a few seconds until they are, and otherwise compares only
//! what does not depend on it (double holders, token order) and says so.
//! Exits 1 when anything is found.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use swarm_client::proto::{ListWorkRequest, ReadConsistency, WorkItem, WorkStatus};
use swarm_client::{ClientConfig, RetryPolicy, SwarmClient};

use crate::cli::GlobalOpts;
use crate::output::{OutputFormat, Table, print_json, print_text};

#[derive(Debug, Args)]
pub struct Check {
    /// How long to wait for every replica to reach the same applied index
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
}

/// One member's replica as read.
struct Replica {
    node: u64,
    applied: u64,
    items: Vec<WorkItem>,
}

pub async fn run(global: GlobalOpts, args: Check) -> Result<()> {
    let client = SwarmClient::connect(global.endpoints.clone()).context("set up the client")?;
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
        let (replicas, unreachable) = read_replicas(&members).await;
        let indexes: BTreeSet<u64> = replicas.iter().map(|r| r.applied).collect();
        if indexes.len() <= 1 || Instant::now() >= deadline {
            break (replicas, unreachable);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if replicas.is_empty() {
        bail!("no member answered: {}", unreachable.join("; "));
    }

    let mut findings: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for kind in ["replica_divergence", "double_holder", "token_order"] {
        findings.insert(kind, Vec::new());
    }
    for r in &replicas {
        for item in &r.items {
            check_item(r.node, item, &mut findings);
        }
    }
    let indexes: BTreeSet<u64> = replicas.iter().map(|r| r.applied).collect();
    let compared = indexes.len() == 1;
    if compared {
        compare_replicas(&replicas, &mut findings);
    }

    let clean = findings.values().all(Vec::is_empty);
    let view = json!({
        "clean": clean,
        "replicas": replicas.iter().map(|r| json!({
            "node": r.node, "applied": r.applied, "items": r.items.len(),
        })).collect::<Vec<_>>(),
        "unreachable": unreachable,
        "replicas_compared": compared,
        "anomalies": findings.iter().map(|(k, v)| (k.to_string(), json!(v.len()))).collect::<serde_json::Map<_, _>>(),
        "examples": findings.iter().filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), json!(v.iter().take(20).collect::<Vec<_>>())))
            .collect::<serde_json::Map<_, _>>(),
    });
    match global.output {
        OutputFormat::Json => print_json(&view)?,
        OutputFormat::Table => print_text(&table(&replicas, &unreachable, compared, &findings))?,
    }
    if !clean {
        bail!("the replicas show anomalies");
    }
    Ok(())
}

async fn read_replicas(members: &[(u64, String)]) -> (Vec<Replica>, Vec<String>) {
    let mut replicas = Vec::new();
    let mut unreachable = Vec::new();
    for (node, addr) in members {
        match read_replica(*node, addr).await {
            Ok(r) => replicas.push(r),
            Err(e) => unreachable.push(format!("node {node} ({addr}): {e:#}")),
        }
    }
    (replicas, unreachable)
}

async fn read_replica(node: u64, addr: &str) -> Result<Replica> {
    let config = ClientConfig {
        retry: RetryPolicy::once(),
        ..ClientConfig::default()
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
    Ok(Replica {
        node,
        applied: before.last_applied,
        items,
    })
}

fn check_item(node: u64, item: &WorkItem, findings: &mut BTreeMap<&'static str, Vec<String>>) {
    let live: Vec<_> = item.history.iter().filter(|h| h.ended.is_empty()).collect();
    if live.len() > 1 {
        let holders: Vec<String> = live
            .iter()
            .map(|h| format!("{} (token {})", h.agent, h.token))
            .collect();
        push(
            findings,
            "double_holder",
            format!(
                "node {node}: item {} has live holders {}",
                item.id,
                holders.join(", ")
            ),
        );
    }
    if item.claim.is_some() && item.status != WorkStatus::Claimed as i32 {
        push(
            findings,
            "double_holder",
            format!(
                "node {node}: item {} has a live claim in status {}",
                item.id, item.status
            ),
        );
    }
    let tokens: Vec<u64> = item.history.iter().map(|h| h.token).collect();
    if tokens.windows(2).any(|w| w[0] >= w[1]) {
        push(
            findings,
            "token_order",
            format!(
                "node {node}: item {} holder tokens {tokens:?} do not increase",
                item.id
            ),
        );
    }
    if let Some(claim) = &item.claim
        && claim.token != item.token
    {
        push(
            findings,
            "token_order",
            format!(
                "node {node}: item {} claimed under token {} but its latest token is {}",
                item.id, claim.token, item.token
            ),
        );
    }
}

/// What must be equal on every replica at one applied index.
fn summary(item: &WorkItem) -> Value {
    json!({
        "status": item.status,
        "token": item.token,
        "attempt": item.attempt,
        "holder": item.claim.as_ref().map(|c| (&c.agent, c.token)),
        "holders": item.history.iter().map(|h| (&h.agent, h.token, &h.ended)).collect::<Vec<_>>(),
    })
}

fn compare_replicas(replicas: &[Replica], findings: &mut BTreeMap<&'static str, Vec<String>>) {
    let Some((first, rest)) = replicas.split_first() else {
        return;
    };
    let base: BTreeMap<&str, Value> = first
        .items
        .iter()
        .map(|i| (i.id.as_str(), summary(i)))
        .collect();
    for other in rest {
        let theirs: BTreeMap<&str, Value> = other
            .items
            .iter()
            .map(|i| (i.id.as_str(), summary(i)))
            .collect();
        let ids: BTreeSet<&str> = base.keys().chain(theirs.keys()).copied().collect();
        for id in ids {
            match (base.get(id), theirs.get(id)) {
                (Some(a), Some(b)) if a == b => {}
                (a, b) => push(
                    findings,
                    "replica_divergence",
                    format!(
                        "item {id}: node {} has {}, node {} has {}",
                        first.node,
                        a.map_or("nothing".to_string(), Value::to_string),
                        other.node,
                        b.map_or("nothing".to_string(), Value::to_string)
                    ),
                ),
            }
        }
    }
}

fn push(findings: &mut BTreeMap<&'static str, Vec<String>>, kind: &'static str, line: String) {
    findings.entry(kind).or_default().push(line);
}

fn table(
    replicas: &[Replica],
    unreachable: &[String],
    compared: bool,
    findings: &BTreeMap<&'static str, Vec<String>>,
) -> String {
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
    if !compared {
        out.push_str("replicas are at different applied indexes: contents not compared\n");
    }
    for (kind, found) in findings {
        out.push_str(&format!("{kind}: {}\n", found.len()));
        for line in found.iter().take(10) {
            out.push_str(&format!("  - {line}\n"));
        }
    }
    out
}
