//! `swarmctl work stats [--local]`: how many items there are, by status and
//! by type, and how long the oldest pending item has waited.

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::WorkStatsRequest;

use crate::commands::Context;
use crate::output::{OutputFormat, print_json, print_text};
use crate::views::work_stats::{stats_json, stats_text};

#[derive(Debug, Args)]
pub struct Stats {
    /// Read the answering node's replica (may be behind) instead of a linearizable read
    #[arg(long)]
    pub local: bool,
}

pub async fn run(ctx: &Context, args: Stats) -> Result<()> {
    let stats = ctx
        .client
        .work_stats(WorkStatsRequest {
            consistency: super::consistency(args.local),
        })
        .await
        .context("read work stats")?;
    match ctx.output {
        OutputFormat::Json => print_json(&stats_json(&stats)),
        OutputFormat::Table => print_text(&stats_text(&stats)),
    }
}
