//! End-to-end scenarios of retention, against real `swarmd` processes:
//! finished items leave every replica after the cluster's `--retention`,
//! live ones stay, and a watcher still sees the end of an item removed as
//! soon as it ends.
//!
//! Every test bounds its whole body with [`within`] and owns its [`Cluster`],
//! whose drop SIGKILLs and reaps every process it started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use swarm_proto::v1::{
    CancelRequest, ClaimRequest, CompleteRequest, FailRequest, GetWorkRequest, ReadConsistency,
    SubmitRequest, WatchWorkRequest, WorkItem, WorkStatus,
};
use swarm_tests::{Cluster, ClusterOptions, NodeId, poll_until, within};
use tonic::Code;

/// Upper bound of one scenario, start-up excluded.
const SCENARIO: Duration = Duration::from_secs(120);
/// A type no node's agent claims: only the scenario touches these items.
const KIND: &str = "retention-e2e";

fn cluster_with_retention(retention: &str) -> ClusterOptions {
    ClusterOptions {
        extra_args: vec!["--retention".into(), retention.into()],
        ..ClusterOptions::default()
    }
}

async fn submit(cluster: &Cluster, node: NodeId, key: &str) -> Result<(WorkItem, bool)> {
    let response = cluster
        .work(node)?
        .submit(SubmitRequest {
            r#type: KIND.into(),
            idempotency_key: key.into(),
            payload_json: "{}".into(),
            ..SubmitRequest::default()
        })
        .await
        .with_context(|| format!("submit {key}"))?
        .into_inner();
    Ok((response.item.context("no item")?, response.created))
}

/// Claims one item for `agent`: its id and token.
async fn claim(cluster: &Cluster, node: NodeId, agent: &str) -> Result<(String, u64)> {
    let items = cluster
        .work(node)?
        .claim(ClaimRequest {
            agent: agent.into(),
            types: vec![KIND.into()],
            max: 1,
            lease_ms: 60_000,
            ..ClaimRequest::default()
        })
        .await
        .context("claim")?
        .into_inner()
        .items;
    let item = items.first().context("nothing granted")?;
    Ok((
        item.id.clone(),
        item.claim.as_ref().context("no claim")?.token,
    ))
}

async fn complete(cluster: &Cluster, node: NodeId, id: &str, token: u64) -> Result<()> {
    cluster
        .work(node)?
        .complete(CompleteRequest {
            id: id.into(),
            token,
            result_json: "{}".into(),
        })
        .await
        .context("complete")?;
    Ok(())
}

/// The item as `node`'s own replica holds it, or the NOT_FOUND message.
async fn get_local(
    cluster: &Cluster,
    node: NodeId,
    id: &str,
) -> Result<std::result::Result<WorkItem, String>> {
    let answer = cluster
        .work(node)?
        .get_work(GetWorkRequest {
            id: id.into(),
            consistency: ReadConsistency::Local as i32,
        })
        .await;
    match answer {
        Ok(r) => Ok(Ok(r.into_inner().item.context("no item")?)),
        Err(s) if s.code() == Code::NotFound => Ok(Err(s.message().to_string())),
        Err(s) => bail!("get {id} on node {node}: {s}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_finished_items_leave_every_replica_after_the_retention_live_ones_stay() {
    let cluster = Cluster::start_with(3, cluster_with_retention("2s"))
        .await
        .unwrap();
    within(SCENARIO, "retention scenario", async {
        let nodes = cluster.node_ids();
        let n = nodes[0];
        let mut ids = Vec::new();
        for key in ["done", "failed", "held", "cancelled", "waiting"] {
            ids.push(submit(&cluster, n, key).await?.0.id);
        }
        // Claims come in submission order (same priority).
        let (done, t1) = claim(&cluster, n, "e2e").await?;
        complete(&cluster, n, &done, t1).await?;
        let (failed, t2) = claim(&cluster, n, "e2e").await?;
        cluster
            .work(n)?
            .fail(FailRequest {
                id: failed.clone(),
                token: t2,
                error: "no".into(),
                retry: false,
            })
            .await?;
        let (held, _) = claim(&cluster, n, "e2e").await?;
        cluster
            .work(n)?
            .cancel(CancelRequest {
                id: ids[3].clone(),
                reason: "not needed".into(),
            })
            .await?;
        ensure!(
            [&done, &failed, &held] == [&ids[0], &ids[1], &ids[2]],
            "claims out of order"
        );
        let finished = [done.clone(), failed, ids[3].clone()];
        let live = [
            (held, WorkStatus::Claimed),
            (ids[4].clone(), WorkStatus::Pending),
        ];
        // Still there right after they ended.
        ensure!(get_local(&cluster, n, &done).await?.is_ok());

        poll_until(
            Duration::from_secs(30),
            "finished items removed",
            || async {
                for &node in &nodes {
                    for id in &finished {
                        if get_local(&cluster, node, id).await?.is_ok() {
                            return Ok(None);
                        }
                    }
                }
                Ok(Some(()))
            },
        )
        .await?;
        for &node in &nodes {
            for id in &finished {
                let message = get_local(&cluster, node, id).await?.unwrap_err();
                ensure!(
                    message.contains(id) && message.contains("retention period, 2s"),
                    "node {node}: {message}"
                );
            }
            for (id, status) in &live {
                let item = get_local(&cluster, node, id)
                    .await?
                    .map_err(anyhow::Error::msg)?;
                ensure!(item.status == *status as i32, "node {node}: {item:?}");
            }
            let status = cluster.status(node).await?;
            ensure!(status.items_removed >= 3, "node {node}: {status:?}");
        }
        // A key whose item was removed makes a new item.
        let (again, created) = submit(&cluster, n, "done").await?;
        ensure!(created && again.id != done, "{again:?}");
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_a_watcher_sees_the_end_of_an_item_removed_as_soon_as_it_ends() {
    let cluster = Cluster::start_with(3, cluster_with_retention("0s"))
        .await
        .unwrap();
    within(SCENARIO, "retention 0s watch scenario", async {
        let nodes = cluster.node_ids();
        let (item, _) = submit(&cluster, nodes[0], "watched").await?;
        let mut stream = cluster
            .work(nodes[1])?
            .watch_work(WatchWorkRequest {
                id: item.id.clone(),
                from_start: true,
            })
            .await
            .context("watch")?
            .into_inner();
        let (id, token) = claim(&cluster, nodes[0], "e2e").await?;
        complete(&cluster, nodes[2], &id, token).await?;
        let mut kinds = Vec::new();
        while let Some(event) = stream.message().await.context("watch stream")? {
            kinds.push(event.kind);
        }
        ensure!(
            kinds == ["submitted", "claimed", "completed"],
            "events: {kinds:?}"
        );
        poll_until(Duration::from_secs(15), "the item removed", || async {
            Ok(get_local(&cluster, nodes[1], &id).await?.err())
        })
        .await?;
        Ok(())
    })
    .await
    .unwrap();
}
