//! The commands: one module per noun, one file per verb. Each verb file
//! holds its clap arguments and an async `run` that talks to the cluster
//! and prints the result.

pub mod cluster;
pub mod node;
pub mod work;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use swarm_client::SwarmClient;

use crate::Cli;
use crate::output::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster health and membership
    #[command(subcommand)]
    Cluster(cluster::Cluster),
    /// Add and remove nodes
    #[command(subcommand)]
    Node(node::Node),
    /// Submit, claim and finish work items
    #[command(subcommand)]
    Work(work::Work),
}

/// What every command runs with.
pub struct Context {
    pub client: SwarmClient,
    pub output: OutputFormat,
}

pub async fn run(cli: Cli) -> Result<()> {
    let client = SwarmClient::connect(cli.global.endpoints).context("set up the client")?;
    let ctx = Context {
        client,
        output: cli.global.output,
    };
    match cli.command {
        Command::Cluster(cmd) => cmd.run(&ctx).await,
        Command::Node(cmd) => cmd.run(&ctx).await,
        Command::Work(cmd) => cmd.run(&ctx).await,
    }
}
