//! `swarmctl work cancel ID [--reason TEXT]`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::CancelRequest;

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Cancel {
    /// Work item id
    pub id: String,
    /// Why, kept with the item
    #[arg(long)]
    pub reason: Option<String>,
}

pub async fn run(ctx: &Context, args: Cancel) -> Result<()> {
    let item = ctx
        .client
        .cancel(CancelRequest {
            id: args.id.clone(),
            reason: args.reason.unwrap_or_default(),
        })
        .await
        .with_context(|| format!("cancel work item {:?}", args.id))?;
    super::print_item(ctx, &item)
}
