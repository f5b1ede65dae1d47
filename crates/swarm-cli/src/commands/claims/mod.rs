//! `swarmctl claims ...`: the live claims, across every item.

pub mod list;

use anyhow::Result;
use clap::Subcommand;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum Claims {
    /// List every live claim: agent, item, token, lease left, progress
    List(list::List),
}

impl Claims {
    pub async fn run(self, ctx: &Context) -> Result<()> {
        match self {
            Claims::List(args) => list::run(ctx, args).await,
        }
    }
}
