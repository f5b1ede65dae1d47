//! `swarmctl work ...`: the life of a work item, from submit through claim,
//! renew and complete (or fail, release, cancel), putting failed items back
//! (retry), reading it back, listing and counting items, and watching its
//! events.

pub mod cancel;
pub mod claim;
pub mod complete;
pub mod fail;
pub mod get;
pub mod list;
pub mod pause;
pub mod release;
pub mod renew;
pub mod retry;
pub mod stats;
pub mod submit;
pub mod watch;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use swarm_client::proto::{ReadConsistency, WorkItem, WorkStatus};

use super::Context;
use crate::output::{OutputFormat, now_ms, print_json, print_text};
use crate::views::work_item::{item_detail, item_json, items_json, items_table};

#[derive(Debug, Subcommand)]
pub enum Work {
    /// Submit a work item
    Submit(submit::Submit),
    /// Claim claimable items under a lease
    Claim(claim::Claim),
    /// Renew an agent's leases
    Renew(renew::Renew),
    /// Complete a claimed item
    Complete(complete::Complete),
    /// Fail a claimed item, for good or to be retried
    Fail(fail::Fail),
    /// Give a claimed item back
    Release(release::Release),
    /// Cancel an item, whoever holds it
    Cancel(cancel::Cancel),
    /// Put a failed item, or every dead letter, back to pending
    Retry(retry::Retry),
    /// Pause an item: a pending one waits; a running workflow stops at its next step
    Pause(pause::Pause),
    /// Make a paused item claimable again
    Resume(pause::Resume),
    /// Send a named signal (with a JSON payload) to a workflow run waiting for it
    Signal(pause::Signal),
    /// Show one item
    Get(get::Get),
    /// List items, a page at a time or all of them
    List(list::List),
    /// Count items by status and type
    Stats(stats::Stats),
    /// Print an item's events as they happen, until it ends
    Watch(watch::Watch),
}

impl Work {
    pub async fn run(self, ctx: &Context) -> Result<()> {
        match self {
            Work::Submit(args) => submit::run(ctx, args).await,
            Work::Claim(args) => claim::run(ctx, args).await,
            Work::Renew(args) => renew::run(ctx, args).await,
            Work::Complete(args) => complete::run(ctx, args).await,
            Work::Fail(args) => fail::run(ctx, args).await,
            Work::Release(args) => release::run(ctx, args).await,
            Work::Cancel(args) => cancel::run(ctx, args).await,
            Work::Retry(args) => retry::run(ctx, args).await,
            Work::Pause(args) => pause::pause(ctx, args).await,
            Work::Resume(args) => pause::resume(ctx, args).await,
            Work::Signal(args) => pause::signal(ctx, args).await,
            Work::Get(args) => get::run(ctx, args).await,
            Work::List(args) => list::run(ctx, args).await,
            Work::Stats(args) => stats::run(ctx, args).await,
            Work::Watch(args) => watch::run(ctx, args).await,
        }
    }
}

/// A status as `--status` (and the MCP server's `list_work`) takes it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, rmcp::schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[schemars(crate = "rmcp::schemars")]
pub enum StatusFilter {
    Pending,
    Claimed,
    Completed,
    Failed,
    Cancelled,
}

impl From<StatusFilter> for WorkStatus {
    fn from(s: StatusFilter) -> WorkStatus {
        match s {
            StatusFilter::Pending => WorkStatus::Pending,
            StatusFilter::Claimed => WorkStatus::Claimed,
            StatusFilter::Completed => WorkStatus::Completed,
            StatusFilter::Failed => WorkStatus::Failed,
            StatusFilter::Cancelled => WorkStatus::Cancelled,
        }
    }
}

/// `--local`: the answering node's replica instead of a linearizable read.
pub(crate) fn consistency(local: bool) -> i32 {
    if local {
        ReadConsistency::Local as i32
    } else {
        ReadConsistency::Linearizable as i32
    }
}

pub(crate) fn print_item(ctx: &Context, item: &WorkItem) -> Result<()> {
    match ctx.output {
        OutputFormat::Json => print_json(&item_json(item)),
        OutputFormat::Table => print_text(&item_detail(item, now_ms())),
    }
}

/// Prints a list of items; in a table, an empty list prints nothing on
/// stdout and says so on stderr.
fn print_items(ctx: &Context, items: &[WorkItem], none: &str) -> Result<()> {
    match ctx.output {
        OutputFormat::Json => print_json(&items_json(items)),
        OutputFormat::Table if items.is_empty() => {
            eprintln!("{none}");
            Ok(())
        }
        OutputFormat::Table => print_text(&items_table(items, now_ms()).render()),
    }
}
