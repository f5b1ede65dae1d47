//! `swarmctl cluster ...`

pub mod status;

use anyhow::Result;
use clap::Subcommand;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum Cluster {
    /// Show members, leader, term, and each member's reachability and applied index
    Status(status::Status),
}

impl Cluster {
    pub async fn run(self, ctx: &Context) -> Result<()> {
        match self {
            Cluster::Status(args) => status::run(ctx, args).await,
        }
    }
}
