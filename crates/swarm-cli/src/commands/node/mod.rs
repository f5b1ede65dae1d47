//! `swarmctl node ...`: membership changes. Each prints the resulting
//! cluster status as the answering node sees it.

pub mod add;
pub mod remove;

use anyhow::Result;
use clap::Subcommand;
use swarm_client::proto::ClusterStatusResponse;

use super::Context;
use crate::output::{OutputFormat, print_json, print_text};
use crate::views::cluster::{cluster_table, cluster_view};

#[derive(Debug, Subcommand)]
pub enum Node {
    /// Add a node as a voter (or a learner)
    Add(add::Add),
    /// Remove a node from the membership
    Remove(remove::Remove),
}

impl Node {
    pub async fn run(self, ctx: &Context) -> Result<()> {
        match self {
            Node::Add(args) => add::run(ctx, args).await,
            Node::Remove(args) => remove::run(ctx, args).await,
        }
    }
}

fn print_status(ctx: &Context, status: &ClusterStatusResponse) -> Result<()> {
    let view = cluster_view(status);
    match ctx.output {
        OutputFormat::Json => print_json(&view),
        OutputFormat::Table => print_text(&cluster_table(&view)),
    }
}
