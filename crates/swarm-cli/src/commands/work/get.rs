//! `swarmctl work get ID [--local]`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::GetWorkRequest;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Get {
    /// Work item id
    pub id: String,
    /// Read the answering node's replica (may be behind) instead of a linearizable read
    #[arg(long)]
    pub local: bool,
}

pub async fn run(ctx: &Context, args: Get) -> Result<()> {
    let item = ctx
        .client
        .get_work(GetWorkRequest {
            id: args.id.clone(),
            consistency: super::consistency(args.local),
        })
        .await
        .with_context(|| format!("get work item {:?}", args.id))?;
    super::print_item(ctx, &item)
}
