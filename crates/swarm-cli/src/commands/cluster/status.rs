//! `swarmctl cluster status`: membership, leader and term from any node,
//! then each member asked itself for its `last_applied`, so that a member
//! that does not answer shows as unreachable.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use clap::Args;
use tokio::task::JoinSet;

use crate::commands::Context;
use crate::output::{OutputFormat, print_json, print_text};
use crate::views::cluster::{cluster_table, probed_cluster_view};

#[derive(Debug, Args)]
pub struct Status {}

pub async fn run(ctx: &Context, _args: Status) -> Result<()> {
    let status = ctx
        .client
        .cluster_status()
        .await
        .context("get cluster status")?;

    // Members are asked concurrently, so a dead one costs one probe timeout
    // in total, not one per member.
    let mut probes = JoinSet::new();
    for member in &status.members {
        let client = ctx.client.clone();
        let (id, addr) = (member.id, member.addr.clone());
        probes.spawn(async move { (id, client.cluster_status_of(&addr).await) });
    }
    let mut answers = HashMap::new();
    while let Some(joined) = probes.join_next().await {
        if let Ok((id, Ok(own))) = joined {
            answers.insert(id, own);
        }
    }

    let view = probed_cluster_view(&status, &answers);
    match ctx.output {
        OutputFormat::Json => print_json(&view),
        OutputFormat::Table => print_text(&cluster_table(&view)),
    }
}
