//! `swarmctl chaos resume --node N`: SIGCONT for a paused node.

use anyhow::Result;
use clap::Args;
use rustix::process::Signal;

use super::pid::{NodeArgs, signal_node};

#[derive(Debug, Args)]
pub struct Resume {
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Resume) -> Result<()> {
    signal_node(&args.node, Signal::CONT, "resumed (SIGCONT)")
}
