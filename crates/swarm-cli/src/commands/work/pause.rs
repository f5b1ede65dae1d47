//! `swarmctl work pause ID [--reason TEXT]`, `swarmctl work resume ID` and
//! `swarmctl work signal ID NAME [--payload JSON]`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::{PauseWorkRequest, ResumeWorkRequest, SignalWorkRequest, WorkStatus};

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Pause {
    /// Work item id
    pub id: String,
    /// Why, kept in the item's events (default: who paused it, as
    /// "paused by $USER with swarmctl")
    #[arg(long)]
    pub reason: Option<String>,
}

/// The reason a pause gives when none was: who asked.
fn default_reason(user: Option<&str>) -> String {
    match user.filter(|u| !u.is_empty()) {
        Some(user) => format!("paused by {user} with swarmctl"),
        None => "paused with swarmctl".to_string(),
    }
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
            reason: args
                .reason
                .unwrap_or_else(|| default_reason(std::env::var("USER").ok().as_deref())),
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

#[derive(Debug, Args)]
pub struct Signal {
    /// Work item id (a workflow run)
    pub id: String,
    /// The signal's name, as the run's `signal` step waits for it
    pub name: String,
    /// JSON payload: the signal step's result
    #[arg(long, value_name = "JSON", value_parser = crate::cli::parse_json)]
    pub payload: Option<serde_json::Value>,
}

pub async fn signal(ctx: &Context, args: Signal) -> Result<()> {
    let item = ctx
        .client
        .signal_work(SignalWorkRequest {
            id: args.id.clone(),
            name: args.name.clone(),
            payload_json: args
                .payload
                .map_or_else(|| "null".to_string(), |v| v.to_string()),
        })
        .await
        .with_context(|| format!("signal {:?} to work item {:?}", args.name, args.id))?;
    super::print_item(ctx, &item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_without_a_reason_says_who_asked() {
        assert_eq!(
            default_reason(Some("alice")),
            "paused by alice with swarmctl"
        );
        assert_eq!(default_reason(Some("")), "paused with swarmctl");
        assert_eq!(default_reason(None), "paused with swarmctl");
    }
}
