//! `swarmctl chaos kill --node N`: SIGKILL, as a crash or power loss.
//! `scripts/cluster-up.sh` starts it again.

use anyhow::Result;
use clap::Args;
use rustix::process::Signal;

use super::pid::{NodeArgs, signal_node};

#[derive(Debug, Args)]
pub struct Kill {
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Kill) -> Result<()> {
    signal_node(
        &args.node,
        Signal::KILL,
        "SIGKILLed; restart it with scripts/cluster-up.sh",
    )
}
