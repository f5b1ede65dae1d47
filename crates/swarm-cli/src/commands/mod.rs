//! The commands: one module per noun, one file per verb. Each verb file
//! holds its clap arguments and a `run` that does the work (talks to the
//! cluster, or for `workflow`, runs the reactor in-process) and prints the
//! result.

pub mod cert;
pub mod chaos;
pub mod claims;
pub mod cluster;
pub mod limit;
pub mod mcp;
pub mod node;
pub mod schedule;
pub mod token;
pub mod top;
pub mod work;
pub mod workflow;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use swarm_client::SwarmClient;

use crate::Cli;
use crate::cli::GlobalOpts;
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
    /// Cron schedules the cluster fires, each fire submitting a work item
    #[command(subcommand)]
    Schedule(schedule::Schedule),
    /// Limits on concurrency keys: how many items run at once, how fast they start
    #[command(subcommand)]
    Limit(limit::Limit),
    /// Live claims: who holds what, and for how long
    #[command(subcommand)]
    Claims(claims::Claims),
    /// Validate, plan and run workflows, locally or on the cluster
    #[command(subcommand)]
    Workflow(workflow::Workflow),
    /// Kill, pause and resume nodes of a local cluster; check its replicas
    #[command(subcommand)]
    Chaos(chaos::Chaos),
    /// A live view of the cluster, the queues and the claims, refreshed in place (q quits)
    Top(top::Top),
    /// Make the certificates of a secure cluster: a CA, node and client certificates
    #[command(subcommand)]
    Cert(cert::Cert),
    /// Make bearer tokens for a cluster with a tokens file
    #[command(subcommand)]
    Token(token::Token),
    /// Serve the Model Context Protocol on stdin/stdout: an LLM agent claims,
    /// heartbeats and completes work through Swarm as one named agent
    Mcp(mcp::Mcp),
}

/// What every command runs with.
pub struct Context {
    pub client: SwarmClient,
    pub output: OutputFormat,
}

pub async fn run(cli: Cli) -> Result<()> {
    let Cli { global, command } = cli;
    match command {
        Command::Cluster(cmd) => cmd.run(&connect(global)?).await,
        Command::Node(cmd) => cmd.run(&connect(global)?).await,
        Command::Work(cmd) => cmd.run(&connect(global)?).await,
        Command::Schedule(cmd) => cmd.run(&connect(global)?).await,
        Command::Limit(cmd) => cmd.run(&connect(global)?).await,
        Command::Claims(cmd) => cmd.run(&connect(global)?).await,
        // Connects only for `workflow run`: the others run in this process.
        Command::Workflow(cmd) => cmd.run(global).await,
        // Signals need no connection; `chaos check` makes its own, per node.
        Command::Chaos(cmd) => cmd.run(global).await,
        Command::Top(args) => top::run(&connect(global)?, args).await,
        // Files only: no connection.
        Command::Cert(cmd) => cmd.run(),
        Command::Token(cmd) => cmd.run(global.output),
        Command::Mcp(args) => mcp::run(connect(global)?, args).await,
    }
}

fn connect(global: GlobalOpts) -> Result<Context> {
    let config = global.client_config()?;
    let client =
        SwarmClient::connect_with(global.endpoints, config).context("set up the client")?;
    Ok(Context {
        client,
        output: global.output,
    })
}
