//! `swarmctl work pause ID [--reason TEXT]` and `swarmctl work resume ID`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::{PauseWorkRequest, ResumeWorkRequest, WorkStatus};

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Pause {
    /// Work item id
    pub id: String,
    /// Why, kept in the item's events
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct Resume {
    /// Work item id
    pub id: String,
}

pub async fn pause(ctx: &Context, args: Pause) -> Result<()> {
    let item = ctx
        .client
        .pause_work(PauseWorkRequest {
            id: args.id.clone(),
            reason: args.reason.unwrap_or_default(),
        })
        .await
        .with_context(|| format!("pause work item {:?}", args.id))?;
    super::print_item(ctx, &item)?;
    if item.pause_requested.is_some() && item.status == WorkStatus::Claimed as i32 {
        eprintln!(
            "pause requested: the workflow stops at its next step boundary, undoing nothing (`swarmctl work watch {}` follows it)",
            item.id
        );
    }
    Ok(())
}

pub async fn resume(ctx: &Context, args: Resume) -> Result<()> {
    let item = ctx
        .client
        .resume_work(ResumeWorkRequest {
            id: args.id.clone(),
        })
        .await
        .with_context(|| format!("resume work item {:?}", args.id))?;
    super::print_item(ctx, &item)
}
