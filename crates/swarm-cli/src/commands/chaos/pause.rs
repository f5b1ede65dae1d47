//! `swarmctl chaos pause --node N`: SIGSTOP. Held longer than the election
//! timeout, a paused leader comes back stale; longer than a lease, a paused
//! agent comes back believing it still holds its work.

use anyhow::Result;
use clap::Args;
use rustix::process::Signal;

use super::pid::{NodeArgs, signal_node};

#[derive(Debug, Args)]
pub struct Pause {
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Pause) -> Result<()> {
    signal_node(
        &args.node,
        Signal::STOP,
        "paused (SIGSTOP); `swarmctl chaos resume` continues it",
    )
}
