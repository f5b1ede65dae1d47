//! End-to-end: listing and counting against real `swarmd` processes. t1x
//! pages (limits, tokens, filters, the message limit), t2x stats.
//!
//! Every test bounds its whole body with [`within`] and owns its [`Cluster`],
//! whose drop SIGKILLs and reaps every process it started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::{StreamExt, TryStreamExt, stream};
use swarm_client::proto::{
    CancelRequest, ClaimRequest, CompleteRequest, FailRequest, ListWorkRequest, ReadConsistency,
    StatusCounts, SubmitRequest, WorkItem, WorkStatsRequest, WorkStatus,
};
use swarm_client::{ClientError, SwarmClient};
use swarm_tests::{Cluster, ClusterOptions, within};
use tonic::Code;

/// Upper bound of one scenario, start-up excluded.
const SCENARIO: Duration = Duration::from_secs(120);

fn client_of(cluster: &Cluster) -> Result<SwarmClient> {
    let endpoints = cluster
        .node_ids()
        .into_iter()
        .map(|n| cluster.addr(n).map(|a| a.to_string()))
        .collect::<Result<Vec<_>>>()?;
    Ok(SwarmClient::connect(endpoints)?)
}

/// Submits `count` items of type `kind`, `parallel` at a time; their ids
/// in the order of the calls (the order they were applied in when
/// `parallel` is 1).
async fn submit_many(
    client: &SwarmClient,
    kind: &str,
    count: usize,
    payload: &str,
    parallel: usize,
) -> Result<Vec<String>> {
    let submitted: Vec<String> = stream::iter(0..count)
        .map(|i| {
            let request = SubmitRequest {
                r#type: kind.to_string(),
                payload_json: payload.to_string(),
                idempotency_key: format!("{kind}-{i}"),
                ..SubmitRequest::default()
            };
            async move {
                let item = client.submit(request).await?.item.context("no item")?;
                Ok::<_, anyhow::Error>(item.id)
            }
        })
        .buffered(parallel)
        .try_collect()
        .await?;
    Ok(submitted)
}

/// Every page of `request`, as the ids each held.
async fn pages(client: &SwarmClient, request: ListWorkRequest) -> Result<Vec<Vec<String>>> {
    let pages: Vec<_> = client.list_work_pages(request).try_collect().await?;
    Ok(pages
        .into_iter()
        .map(|p| p.items.into_iter().map(|i| i.id).collect())
        .collect())
}

fn linearizable() -> i32 {
    ReadConsistency::Linearizable as i32
}

/// The ids of `ids`, each exactly once, or an error naming a repeat.
fn once_each(ids: &[String]) -> Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for id in ids {
        ensure!(seen.insert(id.clone()), "item {id} listed twice");
    }
    Ok(seen)
}

/// Counts by status, as a full listing sees them.
fn count(items: &[&WorkItem]) -> StatusCounts {
    let mut c = StatusCounts::default();
    for item in items {
        match WorkStatus::try_from(item.status) {
            Ok(WorkStatus::Pending) => c.pending += 1,
            Ok(WorkStatus::Claimed) => c.claimed += 1,
            Ok(WorkStatus::Completed) => c.completed += 1,
            Ok(WorkStatus::Failed) => c.failed += 1,
            Ok(WorkStatus::Cancelled) => c.cancelled += 1,
            _ => {}
        }
    }
    c
}

// ---------------------------------------------------------------- t1x pages

/// 50 items through pages of 7: eight pages, every item exactly once, in id
/// order; a filter holds across pages; bad limits and tokens are refused.
#[tokio::test(flavor = "multi_thread")]
async fn t10_pages_list_every_item_once() -> Result<()> {
    let cluster = Cluster::start(3).await?;
    within(SCENARIO, "t10", async {
        let client = client_of(&cluster)?;
        let mut submitted = submit_many(&client, "even", 25, "{}", 4).await?;
        submitted.extend(submit_many(&client, "odd", 25, "{}", 4).await?);

        let request = ListWorkRequest {
            limit: 7,
            consistency: linearizable(),
            ..ListWorkRequest::default()
        };
        let paged = pages(&client, request.clone()).await?;
        let sizes: Vec<usize> = paged.iter().map(Vec::len).collect();
        ensure!(sizes == [7, 7, 7, 7, 7, 7, 7, 1], "page sizes {sizes:?}");
        let ids = paged.concat();
        ensure!(ids.windows(2).all(|w| w[0] < w[1]), "not in id order");
        let listed = once_each(&ids)?;
        ensure!(listed == submitted.iter().cloned().collect::<BTreeSet<_>>());

        let odd = ListWorkRequest {
            r#type: "odd".into(),
            limit: 4,
            ..request.clone()
        };
        let odd_items = client.list_work(odd).await?;
        ensure!(odd_items.len() == 25, "{} odd items", odd_items.len());
        ensure!(odd_items.iter().all(|i| i.r#type == "odd"));

        let too_many = ListWorkRequest {
            limit: 10_001,
            ..request.clone()
        };
        let err = client.list_work_page(too_many).await.unwrap_err();
        ensure!(err.code() == Some(Code::InvalidArgument), "{err}");
        ensure!(err.to_string().contains("maximum of 10000"), "{err}");
        let bad_token = ListWorkRequest {
            page_token: "not-a-token".into(),
            ..request
        };
        let err = client.list_work_page(bad_token).await.unwrap_err();
        ensure!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
        Ok(())
    })
    .await
}

/// Twenty items of about 1 MB each are more than one 16 MiB message: the
/// first page stops short of the limit, the next one carries on.
#[tokio::test(flavor = "multi_thread")]
async fn t11_a_page_stops_at_the_message_limit() -> Result<()> {
    let cluster = Cluster::start(3).await?;
    within(SCENARIO, "t11", async {
        let client = client_of(&cluster)?;
        let payload = format!("\"{}\"", "x".repeat(1_000_000));
        let submitted = submit_many(&client, "big", 20, &payload, 2).await?;
        let request = ListWorkRequest {
            consistency: linearizable(),
            ..ListWorkRequest::default()
        };
        let paged = pages(&client, request).await?;
        ensure!(paged.len() >= 2, "one page held all 20 items");
        ensure!(paged[0].len() >= 15, "first page only {}", paged[0].len());
        let listed = once_each(&paged.concat())?;
        ensure!(listed == submitted.into_iter().collect::<BTreeSet<_>>());
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------- t2x stats

/// Items in every status, of two types: stats agree with a full listing,
/// per status and per type, and name the oldest pending item.
#[tokio::test(flavor = "multi_thread")]
async fn t20_stats_agree_with_a_full_listing() -> Result<()> {
    let cluster = Cluster::start_with(3, ClusterOptions::default()).await?;
    within(SCENARIO, "t20", async {
        let client = client_of(&cluster)?;
        let builds = submit_many(&client, "build", 12, "{}", 1).await?;
        let tests = submit_many(&client, "test", 8, "{}", 1).await?;
        let claimed = client
            .claim(ClaimRequest {
                agent: "a1".into(),
                types: vec!["build".into()],
                max: 5,
                lease_ms: 60_000,
                ..ClaimRequest::default()
            })
            .await?;
        ensure!(claimed.len() == 5, "claimed {}", claimed.len());
        for (n, item) in claimed.iter().enumerate().take(3) {
            let token = item.claim.as_ref().map_or(0, |c| c.token);
            if n < 2 {
                let done = CompleteRequest {
                    id: item.id.clone(),
                    token,
                    result_json: "1".into(),
                };
                client.complete(done).await?;
            } else {
                let failed = FailRequest {
                    id: item.id.clone(),
                    token,
                    error: "broken".into(),
                    retry: false,
                };
                client.fail(failed).await?;
            }
        }
        for id in &tests[..2] {
            client
                .cancel(CancelRequest {
                    id: id.clone(),
                    reason: "not needed".into(),
                })
                .await?;
        }

        let stats = client
            .work_stats(WorkStatsRequest {
                consistency: linearizable(),
            })
            .await?;
        let all = client
            .list_work(ListWorkRequest {
                limit: 6,
                consistency: linearizable(),
                ..ListWorkRequest::default()
            })
            .await?;
        let everything: Vec<&WorkItem> = all.iter().collect();
        ensure!(stats.total == 20 && all.len() == 20, "{stats:?}");
        ensure!(stats.by_status == Some(count(&everything)), "{stats:?}");
        let expected = StatusCounts {
            pending: 7 + 6,
            claimed: 2,
            completed: 2,
            failed: 1,
            cancelled: 2,
        };
        ensure!(stats.by_status == Some(expected), "{stats:?}");
        let mut by_type: BTreeMap<&str, Vec<&WorkItem>> = BTreeMap::new();
        for item in &all {
            by_type.entry(item.r#type.as_str()).or_default().push(item);
        }
        ensure!(stats.by_type.len() == by_type.len(), "{stats:?}");
        for (kind, items) in &by_type {
            ensure!(
                stats.by_type.get(*kind) == Some(&count(items)),
                "type {kind}: {stats:?}"
            );
        }

        // Claims take the oldest build first; the oldest pending item is
        // the first build no claim took.
        let pending: BTreeSet<&str> = all
            .iter()
            .filter(|i| i.status == WorkStatus::Pending as i32)
            .map(|i| i.id.as_str())
            .collect();
        let first_pending = builds
            .iter()
            .chain(&tests)
            .find(|id| pending.contains(id.as_str()))
            .context("nothing pending")?;
        ensure!(stats.oldest_pending_id == *first_pending, "{stats:?}");
        ensure!(stats.oldest_pending_age_ms.is_some(), "{stats:?}");
        // Each type with pending items has its queue's age, the overall
        // oldest one's type the overall age (the two reads are one state).
        let types_pending: BTreeSet<&str> = all
            .iter()
            .filter(|i| i.status == WorkStatus::Pending as i32)
            .map(|i| i.r#type.as_str())
            .collect();
        let aged: BTreeSet<&str> = stats
            .oldest_pending_age_ms_by_type
            .keys()
            .map(String::as_str)
            .collect();
        ensure!(aged == types_pending, "{stats:?}");
        let first_type = all
            .iter()
            .find(|i| i.id == *first_pending)
            .map(|i| i.r#type.as_str())
            .context("the oldest pending item is not listed")?;
        ensure!(
            stats.oldest_pending_age_ms_by_type.get(first_type)
                == stats.oldest_pending_age_ms.as_ref(),
            "{stats:?}"
        );
        Ok(())
    })
    .await
}
