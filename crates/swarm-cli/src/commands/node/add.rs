//! `swarmctl node add ID ADDR [--learner]`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::AddNodeRequest;

use crate::cli::parse_endpoint;
use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Add {
    /// Node id
    pub id: u64,
    /// The node's gRPC address (host:port)
    #[arg(value_parser = parse_endpoint)]
    pub addr: String,
    /// Join as a learner only, without a vote
    #[arg(long)]
    pub learner: bool,
}

pub async fn run(ctx: &Context, args: Add) -> Result<()> {
    let status = ctx
        .client
        .add_node(AddNodeRequest {
            id: args.id,
            addr: args.addr.clone(),
            voter: !args.learner,
        })
        .await
        .with_context(|| format!("add node {} at {}", args.id, args.addr))?;
    super::print_status(ctx, &status)
}
