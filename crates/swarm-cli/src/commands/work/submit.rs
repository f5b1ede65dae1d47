//! `swarmctl work submit --type T [--payload JSON] ...`

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::Value;
use swarm_client::proto::{SubmitRequest, WorkItem};

use crate::cli::{parse_json, parse_name};
use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Submit {
    /// Work type (agents claim by type)
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_name)]
    pub kind: String,
    /// Payload, a JSON document
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub payload: Option<Value>,
    #[command(flatten)]
    pub options: SubmitOptions,
    /// Attempts before the item fails for good (0: the cluster default)
    #[arg(long, default_value_t = 0)]
    pub max_attempts: u32,
}

/// How an item queues, who may claim it, and its idempotency key: the
/// options `work submit` and `workflow run` share.
#[derive(Debug, Args)]
pub struct SubmitOptions {
    /// Higher is claimed first
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Capabilities an agent needs to claim it, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "CAP,..")]
    pub requires: Vec<String>,
    /// Idempotency key: submitting the same key again returns the same item
    /// (default: a random one, so that retries never create a second item)
    #[arg(long, value_parser = parse_name)]
    pub key: Option<String>,
}

/// Submits an item of type `kind` and returns it; says on stderr when the
/// key matched an item submitted before.
pub(crate) async fn submit(
    ctx: &Context,
    kind: &str,
    payload_json: String,
    options: SubmitOptions,
    max_attempts: u32,
) -> Result<WorkItem> {
    let key = options
        .key
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let resp = ctx
        .client
        .submit(SubmitRequest {
            r#type: kind.to_string(),
            priority: options.priority,
            requires: options.requires,
            payload_json,
            idempotency_key: key.clone(),
            max_attempts,
        })
        .await
        .with_context(|| format!("submit work of type {kind:?}"))?;
    let item = resp.item.context("submit response has no work item")?;
    if !resp.created {
        eprintln!(
            "note: idempotency key {key:?} matched existing work item {:?}",
            item.id
        );
    }
    Ok(item)
}

pub async fn run(ctx: &Context, args: Submit) -> Result<()> {
    let payload = args.payload.map(|p| p.to_string()).unwrap_or_default();
    let item = submit(ctx, &args.kind, payload, args.options, args.max_attempts).await?;
    super::print_item(ctx, &item)
}
