//! `swarmctl limit list [--local]`: every limit in key order.

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::ListLimitsRequest;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct List {
    /// Read the answering node's replica (may be behind) instead of a linearizable read
    #[arg(long)]
    pub local: bool,
}

pub async fn run(ctx: &Context, args: List) -> Result<()> {
    let limits = ctx
        .client
        .list_limits(ListLimitsRequest {
            consistency: crate::commands::work::consistency(args.local),
        })
        .await
        .context("list limits")?;
    super::print_limits(ctx, &limits)
}
