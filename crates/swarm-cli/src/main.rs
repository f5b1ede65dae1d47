//! `swarmctl`: parses the command line and hands it to [`swarm_cli::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    swarm_cli::run(swarm_cli::Cli::parse())
}
