//! `swarmctl mcp --agent NAME [--type T ...] [--capabilities C,..] [--lease 60s]`
//!
//! A Model Context Protocol server on stdin/stdout (the official Rust SDK,
//! `rmcp`): an LLM agent (Claude Code, or any MCP client) coordinates through
//! Swarm with tools to submit, claim, heartbeat, complete, fail and release
//! work, and to read it. The agent's name is this server's flag, never the
//! model's choice; the fencing token of every item it claims stays here, so
//! the model names items by id and cannot present a stale token by mistake.
//! A refusal by the cluster (a lost lease, an unknown item) is a tool result
//! marked as an error, which the model reads; a malformed argument is an MCP
//! error. Nothing but the protocol goes to stdout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use swarm_client::proto::{
    ClaimRequest, CompleteRequest, FailRequest, GetWorkRequest, ListWorkRequest, ReleaseRequest,
    RenewRequest, SignalWorkRequest, SubmitRequest, WorkItem, WorkStatsRequest, WorkStatus,
};
use swarm_client::{ClientError, SwarmClient};

use crate::cli::parse_name;
use crate::commands::Context;
use crate::commands::work::StatusFilter;
use crate::views::work_item::{json_text, status_name};

#[derive(Debug, Args)]
pub struct Mcp {
    /// The agent this server claims as (the model cannot choose another)
    #[arg(long, value_parser = parse_name)]
    pub agent: String,
    /// Only these types are claimed (repeat or comma-separate; default: any)
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
    /// The agent's capabilities, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "CAP,..")]
    pub capabilities: Vec<String>,
    /// Lease of each claim; the model heartbeats within it (humantime)
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
}

/// Most items one claim_work takes, and one list_work shows.
const MAX_CLAIM: u32 = 20;
const MAX_LIST: u32 = 200;
/// Longest wait a claim_work may ask for (the node caps it too).
const MAX_WAIT_SECONDS: u32 = 25;

/// The server: one agent, the claims it holds (id -> fencing token).
#[derive(Clone)]
pub struct SwarmMcp {
    client: SwarmClient,
    agent: String,
    types: Vec<String>,
    capabilities: Vec<String>,
    lease: Duration,
    held: Arc<Mutex<BTreeMap<String, u64>>>,
    tool_router: ToolRouter<SwarmMcp>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SubmitArgs {
    /// The item's type: what agents claim by.
    #[serde(rename = "type")]
    pub kind: String,
    /// What the work is about: any JSON value (an object, a string, ...).
    #[serde(default)]
    pub payload: Value,
    /// Higher is claimed first (default 0).
    #[serde(default)]
    pub priority: i32,
    /// An idempotency key: submitting again with the same key answers the
    /// first item instead of making a second.
    #[serde(default)]
    pub key: Option<String>,
    /// Capabilities an agent needs to claim it.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Attempts before it fails for good (0: the cluster's default).
    #[serde(default)]
    pub max_attempts: u32,
    /// Not claimable for this many seconds (default: at once).
    #[serde(default)]
    pub delay_seconds: Option<u64>,
    /// A concurrency key: the cluster's limit on it caps how many items with
    /// this key run at once, and how fast they start (an API's rate limit).
    #[serde(default)]
    pub concurrency_key: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SignalArgs {
    /// The workflow run's item id.
    pub id: String,
    /// The signal's name, as the run's signal step waits for it (e.g.
    /// "approve").
    pub name: String,
    /// What the waiting step gets as its result: any JSON value.
    #[serde(default)]
    pub payload: Value,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ClaimArgs {
    /// Most items to take (1 to 20; default 1).
    #[serde(default)]
    pub max: Option<u32>,
    /// When nothing is there, wait up to this many seconds for work to
    /// appear (0 to 25; default 0: answer at once).
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct HeartbeatArgs {
    /// The item to keep; default: every item this agent holds.
    #[serde(default)]
    pub id: Option<String>,
    /// A short note on how far the work is, shown to operators.
    #[serde(default)]
    pub progress: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CompleteArgs {
    /// The claimed item's id.
    pub id: String,
    /// The outcome: any JSON value.
    #[serde(default)]
    pub result: Value,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FailArgs {
    /// The claimed item's id.
    pub id: String,
    /// Why it failed.
    pub error: String,
    /// True (default): back to the queue for another attempt; false: failed
    /// for good.
    #[serde(default)]
    pub retry: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct IdArgs {
    /// The item's id.
    pub id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListArgs {
    /// Only items in this status.
    #[serde(default)]
    pub status: Option<StatusFilter>,
    /// Only items of this type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Most items to show (1 to 200; default 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A tool answer: `value` as JSON text.
fn answer(value: &Value) -> Result<CallToolResult, ErrorData> {
    Ok(CallToolResult::success(vec![ContentBlock::text(
        value.to_string(),
    )]))
}

/// A refusal the model should read (a tool error, not a protocol error).
fn refused(message: impl Into<String>) -> Result<CallToolResult, ErrorData> {
    Ok(CallToolResult::error(vec![ContentBlock::text(
        message.into(),
    )]))
}

/// What the model sees of an item: enough to do the work, no token.
fn item_view(item: &WorkItem) -> Value {
    let mut view = json!({
        "id": item.id,
        "type": item.r#type,
        "status": status_name(item.status),
        "payload": json_text(&item.payload_json),
        "attempt": item.attempt,
    });
    if let Some(claim) = &item.claim {
        view["holder"] = json!(claim.agent);
    }
    if let Some(result) = &item.result_json {
        view["result"] = json_text(result);
    }
    if let Some(error) = item.error.as_deref().filter(|e| !e.is_empty()) {
        view["error"] = json!(error);
    }
    // Why a pending item is not claimable: paused, or waiting for a signal
    // or a time.
    if !item.hold.is_empty() {
        view["waiting"] = json!(item.hold);
    }
    if item.not_before_ms != 0 && item.status == WorkStatus::Pending as i32 {
        view["not_before_ms"] = json!(item.not_before_ms);
    }
    if item.dead_letter {
        view["dead_letter"] = json!(true);
    }
    view
}

/// `value` as JSON text for the API (`null` stays empty).
fn json_arg(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl SwarmMcp {
    pub fn new(client: SwarmClient, args: Mcp) -> SwarmMcp {
        SwarmMcp {
            client,
            agent: args.agent,
            types: args.types,
            capabilities: args.capabilities,
            lease: args.lease,
            held: Arc::default(),
            tool_router: Self::tool_router(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token this agent holds `id` under, or the refusal to show.
    fn token_of(&self, id: &str) -> Result<u64, String> {
        self.held().get(id).copied().ok_or_else(|| {
            format!(
                "agent {} holds no claim on {id:?}: claim work with claim_work first, and only complete, fail or release what it returned",
                self.agent
            )
        })
    }

    /// A refusal for a call on a held item; a lost claim is forgotten.
    fn item_refused(&self, id: &str, e: &ClientError) -> Result<CallToolResult, ErrorData> {
        if matches!(e, ClientError::StaleToken(_) | ClientError::NotFound(_)) {
            self.held().remove(id);
            return refused(format!(
                "{e}. This agent no longer holds {id:?}: stop working on it and claim other work."
            ));
        }
        refused(e.to_string())
    }

    fn heartbeat_within(&self) -> u64 {
        (self.lease.as_secs() / 3).max(1)
    }
}

#[tool_router]
impl SwarmMcp {
    #[tool(
        description = "Add a work item to the shared queue for some agent to do. Returns the item (its id and status). Give a key to make a retry of the same submit safe."
    )]
    async fn submit_work(
        &self,
        Parameters(args): Parameters<SubmitArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let request = SubmitRequest {
            r#type: args.kind,
            payload_json: json_arg(&args.payload),
            priority: args.priority,
            idempotency_key: args.key.unwrap_or_default(),
            requires: args.requires,
            max_attempts: args.max_attempts,
            delay_ms: args.delay_seconds.unwrap_or(0).saturating_mul(1000),
            concurrency_key: args.concurrency_key.unwrap_or_default(),
            ..SubmitRequest::default()
        };
        match self.client.submit(request).await {
            Ok(response) => match response.item {
                Some(item) => answer(&item_view(&item)),
                None => refused("the cluster answered the submit without the item"),
            },
            Err(e) => refused(e.to_string()),
        }
    }

    #[tool(
        description = "Claim work for this agent: no other agent gets these items while this agent holds them. Returns a list of items (id, type, payload, attempt); empty when there is none (give wait_seconds to wait for some). While working on an item, call heartbeat regularly (see the server's instructions) or the claim lapses and another agent may take the item; then call complete_work with the result, or fail_work, or release_work. Never work on an item this tool did not return."
    )]
    async fn claim_work(
        &self,
        Parameters(args): Parameters<ClaimArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let max = args.max.unwrap_or(1);
        if !(1..=MAX_CLAIM).contains(&max) {
            return Err(ErrorData::invalid_params(
                format!("max must be between 1 and {MAX_CLAIM}, not {max}"),
                None,
            ));
        }
        let wait = args.wait_seconds.unwrap_or(0);
        if wait > MAX_WAIT_SECONDS {
            return Err(ErrorData::invalid_params(
                format!("wait_seconds must be at most {MAX_WAIT_SECONDS}, not {wait}"),
                None,
            ));
        }
        let request = ClaimRequest {
            agent: self.agent.clone(),
            types: self.types.clone(),
            capabilities: self.capabilities.clone(),
            max,
            lease_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
            wait_ms: wait * 1000,
        };
        match self.client.claim(request).await {
            Ok(items) => {
                let mut held = self.held();
                for item in &items {
                    held.insert(item.id.clone(), item.token);
                }
                drop(held);
                answer(&json!({
                    "items": items.iter().map(item_view).collect::<Vec<_>>(),
                    "heartbeat_every_seconds": self.heartbeat_within(),
                }))
            }
            Err(e) => refused(e.to_string()),
        }
    }

    #[tool(
        description = "Tell the cluster this agent is still working: extends the claim on one item (id) or on every item it holds, with an optional progress note. Returns which items are kept and which are lost; stop working on a lost item at once (another agent may have it)."
    )]
    async fn heartbeat(
        &self,
        Parameters(args): Parameters<HeartbeatArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let tokens: Vec<(String, u64)> = match &args.id {
            Some(id) => match self.token_of(id) {
                Ok(token) => vec![(id.clone(), token)],
                Err(message) => return refused(message),
            },
            None => self.held().iter().map(|(i, t)| (i.clone(), *t)).collect(),
        };
        if tokens.is_empty() {
            return answer(&json!({"kept": [], "lost": [], "note": "this agent holds no work"}));
        }
        let request = RenewRequest {
            agent: self.agent.clone(),
            tokens: tokens.iter().map(|(_, t)| *t).collect(),
            progress: args.progress,
        };
        match self.client.renew(request).await {
            Ok(renewal) => {
                let rejected: BTreeMap<u64, String> = renewal
                    .rejected
                    .into_iter()
                    .map(|r| (r.token, r.error))
                    .collect();
                let mut held = self.held();
                let mut lost = Vec::new();
                let mut kept = Vec::new();
                for (id, token) in tokens {
                    match rejected.get(&token) {
                        Some(why) => {
                            held.remove(&id);
                            lost.push(json!({"id": id, "why": why}));
                        }
                        None => kept.push(id),
                    }
                }
                answer(&json!({"kept": kept, "lost": lost}))
            }
            Err(e) => refused(e.to_string()),
        }
    }

    #[tool(
        description = "Finish a claimed item with its result (any JSON value). The item is then completed for good; this agent no longer holds it."
    )]
    async fn complete_work(
        &self,
        Parameters(args): Parameters<CompleteArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let token = match self.token_of(&args.id) {
            Ok(token) => token,
            Err(message) => return refused(message),
        };
        let request = CompleteRequest {
            id: args.id.clone(),
            token,
            result_json: json_arg(&args.result),
        };
        match self.client.complete(request).await {
            Ok(item) => {
                self.held().remove(&args.id);
                answer(&item_view(&item))
            }
            Err(e) => self.item_refused(&args.id, &e),
        }
    }

    #[tool(
        description = "Give up a claimed item because it failed, saying why. With retry (the default) it goes back to the queue for another attempt, while attempts remain; without, it fails for good."
    )]
    async fn fail_work(
        &self,
        Parameters(args): Parameters<FailArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let token = match self.token_of(&args.id) {
            Ok(token) => token,
            Err(message) => return refused(message),
        };
        let request = FailRequest {
            id: args.id.clone(),
            token,
            error: args.error,
            retry: args.retry.unwrap_or(true),
        };
        match self.client.fail(request).await {
            Ok(item) => {
                self.held().remove(&args.id);
                answer(&item_view(&item))
            }
            Err(e) => self.item_refused(&args.id, &e),
        }
    }

    #[tool(
        description = "Hand a claimed item back to the queue untouched, for another agent (it does not count as a failed attempt)."
    )]
    async fn release_work(
        &self,
        Parameters(args): Parameters<IdArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let token = match self.token_of(&args.id) {
            Ok(token) => token,
            Err(message) => return refused(message),
        };
        let request = ReleaseRequest {
            id: args.id.clone(),
            token,
        };
        match self.client.release(request).await {
            Ok(item) => {
                self.held().remove(&args.id);
                answer(&item_view(&item))
            }
            Err(e) => self.item_refused(&args.id, &e),
        }
    }

    #[tool(
        description = "Send a named signal to a workflow run that waits for it (for example an approval: name \"approve\", payload {\"ok\": true}). The payload becomes the waiting step's result. A run that has no signal step of that name, or has finished, refuses it."
    )]
    async fn signal_work(
        &self,
        Parameters(args): Parameters<SignalArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let request = SignalWorkRequest {
            id: args.id,
            name: args.name,
            payload_json: json_arg(&args.payload),
        };
        match self.client.signal_work(request).await {
            Ok(item) => answer(&item_view(&item)),
            Err(e) => refused(e.to_string()),
        }
    }

    #[tool(description = "Read one work item: its status, payload, result or error.")]
    async fn get_work(
        &self,
        Parameters(args): Parameters<IdArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let request = GetWorkRequest {
            id: args.id,
            ..GetWorkRequest::default()
        };
        match self.client.get_work(request).await {
            Ok(item) => answer(&item_view(&item)),
            Err(e) => refused(e.to_string()),
        }
    }

    #[tool(
        description = "List work items, optionally only one status (pending, claimed, completed, failed, cancelled) or type."
    )]
    async fn list_work(
        &self,
        Parameters(args): Parameters<ListArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let limit = args.limit.unwrap_or(50);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(ErrorData::invalid_params(
                format!("limit must be between 1 and {MAX_LIST}, not {limit}"),
                None,
            ));
        }
        let status = args
            .status
            .map_or(WorkStatus::Unspecified, WorkStatus::from) as i32;
        let request = ListWorkRequest {
            status,
            r#type: args.kind.unwrap_or_default(),
            limit,
            ..ListWorkRequest::default()
        };
        match self.client.list_work_page(request).await {
            Ok(page) => answer(&json!({
                "items": page.items.iter().map(item_view).collect::<Vec<_>>(),
                "more": !page.next_page_token.is_empty(),
            })),
            Err(e) => refused(e.to_string()),
        }
    }

    #[tool(description = "How many work items there are, by status and by type.")]
    async fn work_stats(&self) -> Result<CallToolResult, ErrorData> {
        match self.client.work_stats(WorkStatsRequest::default()).await {
            Ok(stats) => {
                let counts = |c: &swarm_client::proto::StatusCounts| {
                    json!({"pending": c.pending, "claimed": c.claimed, "completed": c.completed,
                           "failed": c.failed, "cancelled": c.cancelled})
                };
                answer(&json!({
                    "total": stats.total,
                    "by_status": stats.by_status.as_ref().map(counts),
                    "by_type": stats.by_type.iter().map(|(k, c)| (k.clone(), counts(c))).collect::<BTreeMap<_, _>>(),
                }))
            }
            Err(e) => refused(e.to_string()),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SwarmMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("swarm", env!("CARGO_PKG_VERSION")))
            .with_instructions(
            format!(
                "Swarm coordinates work among many agents so that no two ever do the same item. You are agent {:?}. \
                 To work: call claim_work (with wait_seconds to wait for work), do the work of each item it returns, \
                 call heartbeat at least every {} seconds while you work on it (a claim lapses after {} seconds without one, \
                 and another agent then takes the item), then complete_work with the result (or fail_work, or release_work). \
                 If heartbeat or complete_work says an item is lost, stop working on it. Use submit_work to add work for others.",
                self.agent,
                self.heartbeat_within(),
                self.lease.as_secs(),
            ),
        )
    }
}

pub async fn run(ctx: Context, args: Mcp) -> Result<()> {
    let server = SwarmMcp::new(ctx.client, args);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .context("start the MCP session on stdin/stdout")?;
    running
        .waiting()
        .await
        .context("the MCP session ended with an error")?;
    Ok(())
}
