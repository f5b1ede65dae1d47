//! `swarmctl schedule ...`: cron schedules the cluster keeps and fires,
//! each fire submitting one work item (or workflow run): create, list, get,
//! pause, resume, delete, and trigger one now.

pub mod create;
pub mod delete;
pub mod get;
pub mod list;
pub mod pause;
pub mod resume;
pub mod trigger;

use anyhow::Result;
use clap::Subcommand;
use swarm_client::proto;

use super::Context;
use crate::output::{OutputFormat, now_ms, print_json, print_text};
use crate::views::schedule::{schedule_detail, schedule_json};

#[derive(Debug, Subcommand)]
pub enum Schedule {
    /// Create a schedule: a cron expression and what each fire submits
    // Boxed: its flags outweigh every other verb's many times over.
    Create(Box<create::Create>),
    /// List every schedule with its next and last fire
    List(list::List),
    /// Show one schedule
    Get(get::Get),
    /// Stop a schedule firing until it is resumed
    Pause(pause::Pause),
    /// Let a paused schedule fire again, from its next fire time after now
    Resume(resume::Resume),
    /// Delete a schedule (the items it submitted stay)
    Delete(delete::Delete),
    /// Fire a schedule once now, without moving its next fire time
    Trigger(trigger::Trigger),
}

impl Schedule {
    pub async fn run(self, ctx: &Context) -> Result<()> {
        match self {
            Schedule::Create(args) => create::run(ctx, *args).await,
            Schedule::List(args) => list::run(ctx, args).await,
            Schedule::Get(args) => get::run(ctx, args).await,
            Schedule::Pause(args) => pause::run(ctx, args).await,
            Schedule::Resume(args) => resume::run(ctx, args).await,
            Schedule::Delete(args) => delete::run(ctx, args).await,
            Schedule::Trigger(args) => trigger::run(ctx, args).await,
        }
    }
}

pub(crate) fn print_schedule(ctx: &Context, schedule: &proto::Schedule) -> Result<()> {
    match ctx.output {
        OutputFormat::Json => print_json(&schedule_json(schedule)),
        OutputFormat::Table => print_text(&schedule_detail(schedule, now_ms())),
    }
}
