//! `swarmctl limit get KEY`

use anyhow::{Context as _, Result};
use clap::Args;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Get {
    /// Concurrency key
    pub key: String,
}

pub async fn run(ctx: &Context, args: Get) -> Result<()> {
    let limit = ctx
        .client
        .get_limit(&args.key)
        .await
        .with_context(|| format!("get the limit on {:?}", args.key))?;
    super::print_limit(ctx, &limit)
}
