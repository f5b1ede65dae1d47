//! `swarmctl schedule get NAME`

use anyhow::{Context as _, Result};
use clap::Args;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Get {
    /// Schedule name
    pub name: String,
}

pub async fn run(ctx: &Context, args: Get) -> Result<()> {
    let schedule = ctx
        .client
        .get_schedule(&args.name)
        .await
        .with_context(|| format!("get schedule {:?}", args.name))?;
    super::print_schedule(ctx, &schedule)
}
