//! `swarmctl cluster status`: membership, leader and term from any node,
//! then each member asked itself for its `last_applied`, so that a member
//! that does not answer shows as unreachable.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::SwarmClient;
use swarm_client::proto::ClusterStatusResponse;
use tokio::task::JoinSet;

use crate::commands::Context;
use crate::output::{OutputFormat, print_json, print_text};
use crate::views::cluster::{ClusterView, cluster_table, probed_cluster_view};

#[derive(Debug, Args)]
pub struct Status {}

pub async fn run(ctx: &Context, _args: Status) -> Result<()> {
    let (_, view) = probed_status(&ctx.client).await?;
    match ctx.output {
        OutputFormat::Json => print_json(&view),
        OutputFormat::Table => print_text(&cluster_table(&view)),
    }
}

/// The status of whichever node answers, and the cluster as it sees it with
/// each member's reachability and `last_applied` from the member itself
/// (`swarmctl top` shows the same).
pub async fn probed_status(client: &SwarmClient) -> Result<(ClusterStatusResponse, ClusterView)> {
    let status = client
        .cluster_status()
        .await
        .context("get cluster status")?;

    // Members are asked concurrently, so a dead one costs one probe timeout
    // in total, not one per member.
    let mut probes = JoinSet::new();
    for member in &status.members {
        let client = client.clone();
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
    Ok((status, view))
}
