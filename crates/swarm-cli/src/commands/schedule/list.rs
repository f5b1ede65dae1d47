//! `swarmctl schedule list [--local]`: every schedule in name order.

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::ListSchedulesRequest;

use crate::commands::Context;
use crate::output::{OutputFormat, print_json, print_text};
use crate::views::schedule::{schedules_json, schedules_table};

#[derive(Debug, Args)]
pub struct List {
    /// Read the answering node's replica (may be behind) instead of a linearizable read
    #[arg(long)]
    pub local: bool,
}

pub async fn run(ctx: &Context, args: List) -> Result<()> {
    let schedules = ctx
        .client
        .list_schedules(ListSchedulesRequest {
            consistency: crate::commands::work::consistency(args.local),
        })
        .await
        .context("list schedules")?;
    match ctx.output {
        OutputFormat::Json => print_json(&schedules_json(&schedules)),
        OutputFormat::Table if schedules.is_empty() => {
            eprintln!("no schedules");
            Ok(())
        }
        OutputFormat::Table => print_text(&schedules_table(&schedules).render()),
    }
}
