//! `swarmctl work complete ID --token N [--result JSON]`

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::Value;
use swarm_client::proto::CompleteRequest;

use crate::cli::parse_json;
use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Complete {
    /// Work item id
    pub id: String,
    /// The fencing token of your claim
    #[arg(long)]
    pub token: u64,
    /// Result, a JSON document
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub result: Option<Value>,
}

pub async fn run(ctx: &Context, args: Complete) -> Result<()> {
    let item = ctx
        .client
        .complete(CompleteRequest {
            id: args.id.clone(),
            token: args.token,
            result_json: args.result.map(|r| r.to_string()).unwrap_or_default(),
        })
        .await
        .with_context(|| format!("complete work item {:?}", args.id))?;
    super::print_item(ctx, &item)
}
