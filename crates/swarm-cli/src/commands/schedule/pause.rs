//! `swarmctl schedule pause NAME`: no fires until `schedule resume NAME`.

use anyhow::{Context as _, Result};
use clap::Args;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Pause {
    /// Schedule name
    pub name: String,
}

pub async fn run(ctx: &Context, args: Pause) -> Result<()> {
    let schedule = ctx
        .client
        .pause_schedule(&args.name)
        .await
        .with_context(|| format!("pause schedule {:?}", args.name))?;
    super::print_schedule(ctx, &schedule)
}
