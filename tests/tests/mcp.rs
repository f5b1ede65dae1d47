//! `swarmctl mcp`, the Model Context Protocol server, spoken to as an MCP
//! client speaks to it: JSON-RPC lines over the real binary's stdin and
//! stdout, against a real cluster.
//!
//! - initialize, then tools/list names every tool;
//! - two servers for two agents claim from one queue and never get the same
//!   item; each completes what it claimed, with the token it holds;
//! - a bad argument is an MCP error, and the server goes on serving; an item
//!   the agent does not hold cannot be completed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use swarm_tests::{Cluster, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const SCENARIO: Duration = Duration::from_secs(90);

/// One `swarmctl mcp` process and its JSON-RPC session.
struct McpSession {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl McpSession {
    async fn start(endpoints: &str, agent: &str) -> Result<McpSession> {
        let mut child = tokio::process::Command::new(swarm_tests::swarmctl_binary()?)
            .args([
                "--endpoints",
                endpoints,
                "mcp",
                "--agent",
                agent,
                "--type",
                "mcp-task",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn swarmctl mcp")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut session = McpSession {
            child,
            stdin,
            stdout,
            next_id: 1,
        };
        let init = session
            .request(
                "initialize",
                json!({
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "swarm-tests", "version": "0"},
                }),
            )
            .await?;
        ensure!(
            init["result"]["serverInfo"]["name"] == "swarm",
            "initialize: {init}"
        );
        session
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(session)
    }

    async fn send(&mut self, message: &Value) -> Result<()> {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Sends a request and returns its response (notifications skipped).
    async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.stdout.next_line())
                .await
                .with_context(|| format!("no answer to {method} within 30s"))??
                .with_context(|| format!("the server closed stdout before answering {method}"))?;
            let message: Value = serde_json::from_str(&line)
                .with_context(|| format!("not JSON-RPC on stdout: {line}"))?;
            if message["id"] == json!(id) {
                return Ok(message);
            }
        }
    }

    /// Calls a tool: its result (`isError` included) or the JSON-RPC error.
    async fn call(&mut self, tool: &str, arguments: Value) -> Result<Value> {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    }

    /// A tool's successful answer, parsed from its text.
    async fn ok(&mut self, tool: &str, arguments: Value) -> Result<Value> {
        let answer = self.call(tool, arguments).await?;
        let result = &answer["result"];
        if answer.get("error").is_some() || result["isError"] == json!(true) {
            bail!("{tool} failed: {answer}");
        }
        let text = result["content"][0]["text"]
            .as_str()
            .with_context(|| format!("{tool} answered no text: {answer}"))?;
        Ok(serde_json::from_str(text)?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_two_agents_claim_through_mcp_and_never_share_an_item() {
    let cluster = Cluster::start(3).await.unwrap();
    within(SCENARIO, "mcp scenario", async {
        cluster.wait_healthy(3, Duration::from_secs(30)).await?;
        let endpoints = cluster
            .node_ids()
            .iter()
            .map(|id| cluster.addr(*id).map(|a| a.to_string()))
            .collect::<Result<Vec<_>>>()?
            .join(",");
        let mut alice = McpSession::start(&endpoints, "alice").await?;
        let mut bob = McpSession::start(&endpoints, "bob").await?;

        let tools = alice.request("tools/list", json!({})).await?;
        let names: BTreeSet<&str> = tools["result"]["tools"]
            .as_array()
            .context("a tool list")?
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        for wanted in [
            "submit_work",
            "claim_work",
            "heartbeat",
            "complete_work",
            "fail_work",
            "release_work",
            "get_work",
            "list_work",
            "work_stats",
            "signal_work",
        ] {
            ensure!(names.contains(wanted), "{wanted} missing from {names:?}");
        }

        let mut submitted = BTreeSet::new();
        for n in 0..12 {
            let item = alice
                .ok(
                    "submit_work",
                    json!({"type": "mcp-task", "payload": {"n": n}}),
                )
                .await?;
            submitted.insert(item["id"].as_str().context("an id")?.to_string());
        }
        // Both claim in turns until the queue is empty.
        let mut claimed: Vec<BTreeSet<String>> = vec![BTreeSet::new(), BTreeSet::new()];
        loop {
            let mut got_any = false;
            for (i, session) in [&mut alice, &mut bob].into_iter().enumerate() {
                let answer = session.ok("claim_work", json!({"max": 3})).await?;
                for item in answer["items"].as_array().context("items")? {
                    let id = item["id"].as_str().context("an id")?.to_string();
                    ensure!(item.get("token").is_none(), "the model saw a token: {item}");
                    ensure!(claimed[i].insert(id), "claimed twice by one agent");
                    got_any = true;
                }
            }
            if !got_any {
                break;
            }
        }
        ensure!(
            claimed[0].is_disjoint(&claimed[1]),
            "both agents got {:?}",
            claimed[0].intersection(&claimed[1]).collect::<Vec<_>>()
        );
        let all: BTreeSet<String> = claimed[0].union(&claimed[1]).cloned().collect();
        ensure!(all == submitted, "claimed {all:?}, submitted {submitted:?}");
        ensure!(!claimed[0].is_empty() && !claimed[1].is_empty());

        // Heartbeat keeps them; bob cannot complete alice's item.
        let beat = alice
            .ok("heartbeat", json!({"progress": "halfway"}))
            .await?;
        ensure!(
            beat["kept"].as_array().map(Vec::len) == Some(claimed[0].len()),
            "{beat}"
        );
        let alices = claimed[0].iter().next().context("an item")?.clone();
        let refused = bob
            .call("complete_work", json!({"id": alices, "result": "mine now"}))
            .await?;
        ensure!(refused["result"]["isError"] == json!(true), "{refused}");
        // A malformed argument is an MCP error; the server serves on.
        let bad = alice.call("claim_work", json!({"max": "lots"})).await?;
        ensure!(
            bad.get("error").is_some() || bad["result"]["isError"] == json!(true),
            "a bad argument was not an error: {bad}"
        );
        let bad = alice.call("claim_work", json!({"max": 0})).await?;
        ensure!(bad["error"]["code"] == json!(-32602), "{bad}");

        for (i, session) in [&mut alice, &mut bob].into_iter().enumerate() {
            for id in &claimed[i] {
                let done = session
                    .ok("complete_work", json!({"id": id, "result": {"by": i}}))
                    .await?;
                ensure!(done["status"] == "completed", "{done}");
            }
        }
        // A delayed submit is not claimable yet, and says so.
        let later = alice
            .ok(
                "submit_work",
                json!({"type": "mcp-later", "payload": {}, "delay_seconds": 600, "concurrency_key": "llm"}),
            )
            .await?;
        ensure!(later["not_before_ms"].as_u64().is_some(), "{later}");
        // A signal to an item that waits for none is a tool error the model reads.
        let signal = alice
            .call("signal_work", json!({"id": later["id"], "name": "approve", "payload": true}))
            .await?;
        ensure!(signal["result"]["isError"] == json!(true), "{signal}");
        let stats = bob.ok("work_stats", json!({})).await?;
        ensure!(
            stats["by_type"]["mcp-task"]["completed"] == json!(12),
            "{stats}"
        );
        for mut session in [alice, bob] {
            drop(session.stdin);
            let _ = tokio::time::timeout(Duration::from_secs(5), session.child.wait()).await;
            let _ = session.child.kill().await;
        }
        Ok(())
    })
    .await
    .unwrap();
}
