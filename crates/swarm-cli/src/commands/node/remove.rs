//! `swarmctl node remove ID`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::RemoveNodeRequest;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Remove {
    /// Node id
    pub id: u64,
}

pub async fn run(ctx: &Context, args: Remove) -> Result<()> {
    let status = ctx
        .client
        .remove_node(RemoveNodeRequest { id: args.id })
        .await
        .with_context(|| format!("remove node {}", args.id))?;
    super::print_status(ctx, &status)
}
