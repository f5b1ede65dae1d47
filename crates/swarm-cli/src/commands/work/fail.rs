//! `swarmctl work fail ID --token N --error TEXT [--retry]`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::FailRequest;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Fail {
    /// Work item id
    pub id: String,
    /// The fencing token of your claim
    #[arg(long)]
    pub token: u64,
    /// What went wrong
    #[arg(long)]
    pub error: String,
    /// Put the item back to pending (bounded by its max attempts) instead of failing it for good
    #[arg(long)]
    pub retry: bool,
}

pub async fn run(ctx: &Context, args: Fail) -> Result<()> {
    let item = ctx
        .client
        .fail(FailRequest {
            id: args.id.clone(),
            token: args.token,
            error: args.error,
            retry: args.retry,
        })
        .await
        .with_context(|| format!("fail work item {:?}", args.id))?;
    super::print_item(ctx, &item)
}
