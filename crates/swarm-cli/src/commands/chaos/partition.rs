//! `swarmctl chaos partition|heal --node N`: a partition needs a TCP proxy
//! on every peer link (`swarmd --peer-routes`), which `scripts/cluster-up.sh`
//! does not run. Rather than fake one (say, by pausing the node, which is a
//! different fault), these commands say so and fail. Partitions are
//! exercised by the chaos suite, whose harness starts the proxies:
//! `scripts/chaos.sh --nemesis partition`.

use anyhow::{Result, bail};
use clap::Args;

use super::pid::NodeArgs;

#[derive(Debug, Args)]
pub struct Partition {
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct Heal {
    /// The node to heal (every node when omitted)
    #[arg(long)]
    pub node: Option<u64>,
}

const NO_PROXIES: &str = "the cluster of scripts/cluster-up.sh runs no link proxies, so it cannot be partitioned; run `scripts/chaos.sh --nemesis partition` (the chaos harness puts a proxy on every peer link)";

pub fn run_partition(args: Partition) -> Result<()> {
    bail!("cannot partition node {}: {NO_PROXIES}", args.node.node)
}

pub fn run_heal(_args: Heal) -> Result<()> {
    bail!("nothing to heal: {NO_PROXIES}")
}
