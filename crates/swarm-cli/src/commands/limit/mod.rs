//! `swarmctl limit ...`: limits on concurrency keys (at most N items with
//! the key claimed at once, granted at most at a rate): set, list, get,
//! delete. Items name their key with `work submit --concurrency-key K`.

pub mod delete;
pub mod get;
pub mod list;
pub mod set;

use anyhow::Result;
use clap::Subcommand;
use swarm_client::proto;

use super::Context;
use crate::output::{OutputFormat, print_json, print_text};
use crate::views::limit::{limit_json, limits_json, limits_table};

#[derive(Debug, Subcommand)]
pub enum Limit {
    /// Set (replace) the limit on a concurrency key
    Set(set::Set),
    /// List every limit with its key's running and pending items
    List(list::List),
    /// Show the limit on one key
    Get(get::Get),
    /// Delete the limit on a key: its items are claimed without one
    Delete(delete::Delete),
}

impl Limit {
    pub async fn run(self, ctx: &Context) -> Result<()> {
        match self {
            Limit::Set(args) => set::run(ctx, args).await,
            Limit::List(args) => list::run(ctx, args).await,
            Limit::Get(args) => get::run(ctx, args).await,
            Limit::Delete(args) => delete::run(ctx, args).await,
        }
    }
}

/// One limit: its JSON object, or a table of one row.
pub(crate) fn print_limit(ctx: &Context, limit: &proto::Limit) -> Result<()> {
    match ctx.output {
        OutputFormat::Json => print_json(&limit_json(limit)),
        OutputFormat::Table => print_text(&limits_table(std::slice::from_ref(limit)).render()),
    }
}

/// Every limit: a JSON array, or a table (an empty list prints nothing on
/// stdout and says so on stderr).
pub(crate) fn print_limits(ctx: &Context, limits: &[proto::Limit]) -> Result<()> {
    match ctx.output {
        OutputFormat::Json => print_json(&limits_json(limits)),
        OutputFormat::Table if limits.is_empty() => {
            eprintln!("no limits");
            Ok(())
        }
        OutputFormat::Table => print_text(&limits_table(limits).render()),
    }
}
