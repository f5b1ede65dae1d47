//! `swarmctl work release ID --token N`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::ReleaseRequest;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Release {
    /// Work item id
    pub id: String,
    /// The fencing token of your claim
    #[arg(long)]
    pub token: u64,
}

pub async fn run(ctx: &Context, args: Release) -> Result<()> {
    let item = ctx
        .client
        .release(ReleaseRequest {
            id: args.id.clone(),
            token: args.token,
        })
        .await
        .with_context(|| format!("release work item {:?}", args.id))?;
    super::print_item(ctx, &item)
}
