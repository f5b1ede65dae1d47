//! `swarmctl schedule resume NAME`: fires again from the next fire time
//! after now; the fire times it was paused for are not made up.

use anyhow::{Context as _, Result};
use clap::Args;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Resume {
    /// Schedule name
    pub name: String,
}

pub async fn run(ctx: &Context, args: Resume) -> Result<()> {
    let schedule = ctx
        .client
        .resume_schedule(&args.name)
        .await
        .with_context(|| format!("resume schedule {:?}", args.name))?;
    super::print_schedule(ctx, &schedule)
}
