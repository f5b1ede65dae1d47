//! `swarmctl claims list [--agent A] [--local]`: every live claim, from the
//! claimed items.

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::{ListWorkRequest, WorkStatus};

use crate::commands::Context;
use crate::output::{OutputFormat, now_ms, print_json, print_text};
use crate::views::claim::{claimed, claims_json, claims_table};

#[derive(Debug, Args)]
pub struct List {
    /// Only this agent's claims
    #[arg(long)]
    pub agent: Option<String>,
    /// Read the answering node's replica (may be behind) instead of a linearizable read
    #[arg(long)]
    pub local: bool,
}

pub async fn run(ctx: &Context, args: List) -> Result<()> {
    let items = ctx
        .client
        .list_work(ListWorkRequest {
            status: WorkStatus::Claimed as i32,
            holder: args.agent.clone().unwrap_or_default(),
            consistency: crate::commands::work::consistency(args.local),
            ..Default::default()
        })
        .await
        .context("list claimed work items")?;
    // The filter is applied here too, in case a node ignores `holder`.
    let claims = || claimed(&items, args.agent.as_deref());
    let now = now_ms();
    match ctx.output {
        OutputFormat::Json => print_json(&claims_json(claims(), now)),
        OutputFormat::Table if claims().next().is_none() => {
            eprintln!("no live claims");
            Ok(())
        }
        OutputFormat::Table => print_text(&claims_table(claims(), now).render()),
    }
}
