//! `swarmctl node add ID ADDR [--peer-addr PEER] [--learner]`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::AddNodeRequest;

use crate::cli::parse_endpoint;
use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Add {
    /// Node id
    pub id: u64,
    /// The node's gRPC address for clients (host:port)
    #[arg(value_parser = parse_endpoint)]
    pub addr: String,
    /// The node's peer address (its peer_listen, host:port); default: ADDR,
    /// for a node that serves peers on its client port
    #[arg(long, value_parser = parse_endpoint)]
    pub peer_addr: Option<String>,
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
            peer_addr: args.peer_addr.clone().unwrap_or_default(),
        })
        .await
        .with_context(|| format!("add node {} at {}", args.id, args.addr))?;
    super::print_status(ctx, &status)
}
