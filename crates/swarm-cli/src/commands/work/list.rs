//! `swarmctl work list [--status S] [--type T] [--holder A] [--limit N] [--local]`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::{ListWorkRequest, WorkStatus};

use super::StatusFilter;
use crate::commands::Context;

#[derive(Debug, Args)]
pub struct List {
    /// Only items in this status
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Only items of this type
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Only items this agent holds
    #[arg(long)]
    pub holder: Option<String>,
    /// At most this many items (0: no limit)
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
    /// Read the answering node's replica (may be behind) instead of a linearizable read
    #[arg(long)]
    pub local: bool,
}

pub async fn run(ctx: &Context, args: List) -> Result<()> {
    let status = args
        .status
        .map_or(WorkStatus::Unspecified, WorkStatus::from);
    let items = ctx
        .client
        .list_work(ListWorkRequest {
            status: status as i32,
            r#type: args.kind.unwrap_or_default(),
            holder: args.holder.unwrap_or_default(),
            limit: args.limit,
            consistency: super::consistency(args.local),
        })
        .await
        .context("list work items")?;
    super::print_items(ctx, &items, "no work items")
}
