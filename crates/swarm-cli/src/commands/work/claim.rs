//! `swarmctl work claim --agent A [--type T ...] [--max N] [--lease 30s] [--wait 20s]`

use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::ClaimRequest;

use crate::cli::parse_name;
use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Claim {
    /// The claiming agent
    #[arg(long, value_parser = parse_name)]
    pub agent: String,
    /// Only these types (repeat or comma-separate; default: any)
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
    /// The agent's capabilities, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "CAP,..")]
    pub capabilities: Vec<String>,
    /// At most this many items
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max: u32,
    /// Lease length (humantime: 500ms, 10s, 2m)
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// When nothing matches, wait this long for matching work to appear,
    /// then claim it (long poll; the node caps it at its max_claim_wait)
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

pub async fn run(ctx: &Context, args: Claim) -> Result<()> {
    let lease_ms = u64::try_from(args.lease.as_millis()).unwrap_or(u64::MAX);
    let items = ctx
        .client
        .claim(ClaimRequest {
            agent: args.agent.clone(),
            types: args.types,
            capabilities: args.capabilities,
            max: args.max,
            lease_ms,
            wait_ms: u32::try_from(args.wait.as_millis()).unwrap_or(u32::MAX),
        })
        .await
        .with_context(|| format!("claim work for agent {:?}", args.agent))?;
    super::print_items(ctx, &items, "no claimable work")
}
