//! End-to-end scenarios of the Raft-backed claim cluster, run against real
//! `swarmd` processes. Numbered by topic: t1x forming and forwarding, t2x
//! claims, t3x leases and fencing, t4x failures of one node, t5x the whole
//! cluster, t6x snapshots, t7x limits, t8x local safety checks.
//!
//! Every test bounds its whole body with [`within`] and owns its [`Cluster`],
//! whose drop SIGKILLs and reaps every process it started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt, stream};
use swarm_proto::v1::work_service_client::WorkServiceClient;
use swarm_proto::v1::{
    ClaimRequest, CompleteRequest, GetWorkRequest, ListWorkRequest, ReadConsistency, SubmitRequest,
    WorkItem, WorkStatus,
};
use swarm_tests::{Cluster, ClusterOptions, NodeId, poll_until, within};
use tonic::Code;
use tonic::transport::Channel;

/// Upper bound of one scenario, start-up excluded.
const SCENARIO: Duration = Duration::from_secs(120);
/// How long a cluster may take to elect a leader or heal.
const ELECTION: Duration = Duration::from_secs(20);
/// How long a restarted node may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- helpers

fn submit_request(kind: &str, key: &str, payload: serde_json::Value) -> SubmitRequest {
    // Defaults for the rest, so that a field added to the API later does not
    // break the scenarios.
    SubmitRequest {
        r#type: kind.to_string(),
        payload_json: payload.to_string(),
        idempotency_key: key.to_string(),
        ..SubmitRequest::default()
    }
}

/// Submits one item through `node` and returns it as acknowledged.
async fn submit(cluster: &Cluster, node: NodeId, request: SubmitRequest) -> Result<WorkItem> {
    let response = cluster
        .work(node)?
        .submit(request)
        .await
        .with_context(|| format!("submit through node {node}"))?
        .into_inner();
    response.item.context("submit answered without an item")
}

/// Submits `count` items of type `kind`, `parallel` at a time, spread over
/// `nodes`. Returns the acknowledged ids in submission order.
async fn submit_many(
    cluster: &Cluster,
    nodes: &[NodeId],
    kind: &str,
    count: usize,
    parallel: usize,
) -> Result<Vec<String>> {
    ensure!(!nodes.is_empty(), "no node to submit through");
    // Idempotency keys unique to this call: a second call submits new items.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    stream::iter(0..count)
        .map(|i| {
            let node = nodes[i % nodes.len()];
            let key = format!("{kind}-{call}-{i}");
            let request = submit_request(kind, &key, serde_json::json!({"n": i}));
            async move { Ok::<_, anyhow::Error>(submit(cluster, node, request).await?.id) }
        })
        .buffered(parallel)
        .try_collect()
        .await
}

async fn get(cluster: &Cluster, node: NodeId, id: &str, local: bool) -> Result<WorkItem> {
    let consistency = if local {
        ReadConsistency::Local
    } else {
        ReadConsistency::Linearizable
    };
    cluster
        .work(node)?
        .get_work(GetWorkRequest {
            id: id.to_string(),
            consistency: consistency as i32,
        })
        .await
        .with_context(|| format!("get {id} from node {node}"))?
        .into_inner()
        .item
        .with_context(|| format!("get {id} answered without an item"))
}

async fn list(cluster: &Cluster, node: NodeId, kind: &str, local: bool) -> Result<Vec<WorkItem>> {
    let consistency = if local {
        ReadConsistency::Local
    } else {
        ReadConsistency::Linearizable
    };
    let request = ListWorkRequest {
        r#type: kind.to_string(),
        consistency: consistency as i32,
        ..ListWorkRequest::default()
    };
    cluster
        .list_all(node, request, Duration::from_secs(10))
        .await
        .with_context(|| format!("list {kind} on node {node}"))
}

async fn claim(
    cluster: &Cluster,
    node: NodeId,
    agent: &str,
    kind: &str,
    max: u32,
    lease: Duration,
) -> Result<Vec<WorkItem>> {
    Ok(cluster
        .work(node)?
        .claim(ClaimRequest {
            agent: agent.to_string(),
            types: vec![kind.to_string()],
            max,
            lease_ms: lease.as_millis() as u64,
            ..ClaimRequest::default()
        })
        .await
        .with_context(|| format!("claim {kind} for {agent} through node {node}"))?
        .into_inner()
        .items)
}

fn claim_token(item: &WorkItem) -> Result<u64> {
    Ok(item
        .claim
        .as_ref()
        .with_context(|| format!("granted item {} carries no claim", item.id))?
        .token)
}

/// Waits until every running node has applied what the leader has applied
/// now, and returns that index.
async fn converge(cluster: &Cluster) -> Result<u64> {
    let leader = cluster.wait_for_leader(ELECTION).await?;
    let target = cluster.applied(leader).await?;
    cluster.wait_applied(target, CATCH_UP).await?;
    Ok(target)
}

// ------------------------------------------------------- t1x forming

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_three_nodes_form_a_cluster() {
    let cluster = Cluster::start(3).await.unwrap();
    within(SCENARIO, "t10", async {
        let leader = cluster.wait_healthy(3, ELECTION).await?;
        for id in cluster.node_ids() {
            let status = cluster.status(id).await?;
            ensure!(
                status.node_id == id,
                "node {id} answers as {}",
                status.node_id
            );
            ensure!(
                status.leader_id == leader,
                "node {id} names leader {}",
                status.leader_id
            );
            let mut members: Vec<(u64, String)> = status
                .members
                .iter()
                .map(|m| (m.id, m.addr.clone()))
                .collect();
            members.sort();
            let expected: Vec<(u64, String)> = cluster
                .node_ids()
                .into_iter()
                .map(|n| Ok((n, cluster.addr(n)?.to_string())))
                .collect::<Result<_>>()?;
            ensure!(
                members == expected,
                "node {id} lists members {members:?}, expected {expected:?}"
            );
        }
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_submit_to_a_follower_succeeds() {
    let cluster = Cluster::start(3).await.unwrap();
    within(SCENARIO, "t11", async {
        let leader = cluster.wait_for_leader(ELECTION).await?;
        let followers = cluster.followers().await?;
        ensure!(
            followers.len() == 2,
            "expected two followers, got {followers:?}"
        );
        for (i, follower) in followers.iter().enumerate() {
            let payload = serde_json::json!({"via": follower, "i": i});
            let item = submit(
                &cluster,
                *follower,
                submit_request("t11", "", payload.clone()),
            )
            .await?;
            ensure!(!item.id.is_empty(), "submit answered an empty id");
            let on_leader = get(&cluster, leader, &item.id, false).await?;
            ensure!(
                on_leader.r#type == "t11",
                "leader has type {:?}",
                on_leader.r#type
            );
            let stored: serde_json::Value = serde_json::from_str(&on_leader.payload_json)?;
            ensure!(
                stored == payload,
                "leader has payload {stored}, submitted {payload}"
            );
            ensure!(
                on_leader.status == WorkStatus::Pending as i32,
                "a new item is {:?}",
                on_leader.status
            );
        }
        // The same idempotency key through another follower is the same item.
        let first = submit(
            &cluster,
            followers[0],
            submit_request("t11", "k-1", serde_json::json!(1)),
        )
        .await?;
        let again = cluster
            .work(followers[1])?
            .submit(submit_request("t11", "k-1", serde_json::json!(1)))
            .await?
            .into_inner();
        let again_item = again.item.context("no item")?;
        ensure!(
            again_item.id == first.id,
            "same key gave {} and {}",
            first.id,
            again_item.id
        );
        ensure!(!again.created, "a repeated key reported created = true");
        Ok(())
    })
    .await
    .unwrap();
}

// ------------------------------------------------------- t2x claims

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_fifty_agents_claim_two_hundred_items_exactly_once() {
    const ITEMS: usize = 200;
    const AGENTS: usize = 50;
    let cluster = Cluster::start(3).await.unwrap();
    within(SCENARIO, "t20", async {
        let nodes = cluster.node_ids();
        let submitted: BTreeSet<String> = submit_many(&cluster, &nodes, "t20", ITEMS, 16)
            .await?
            .into_iter()
            .collect();
        ensure!(
            submitted.len() == ITEMS,
            "{} distinct ids for {ITEMS} submits",
            submitted.len()
        );
        // Claims are proposed only when the receiving node's replica shows
        // claimable work: let every replica see all submits first.
        converge(&cluster).await?;

        let agents = (0..AGENTS).map(|a| {
            let cluster = &cluster;
            let node = nodes[a % nodes.len()];
            async move {
                let agent = format!("agent-{a}");
                let max = (a % 4 + 1) as u32;
                let mut grants = Vec::new();
                loop {
                    let items =
                        claim(cluster, node, &agent, "t20", max, Duration::from_secs(120)).await?;
                    if items.is_empty() {
                        return Ok::<_, anyhow::Error>(grants);
                    }
                    ensure!(
                        items.len() <= max as usize,
                        "asked for {max}, granted {}",
                        items.len()
                    );
                    for item in items {
                        let token = claim_token(&item)?;
                        grants.push((item.id, token, agent.clone()));
                    }
                }
            }
        });
        let grants: Vec<(String, u64, String)> = futures::future::try_join_all(agents)
            .await?
            .into_iter()
            .flatten()
            .collect();

        let mut by_id: BTreeMap<&str, Vec<&(String, u64, String)>> = BTreeMap::new();
        for grant in &grants {
            by_id.entry(grant.0.as_str()).or_default().push(grant);
        }
        let doubles: Vec<_> = by_id.iter().filter(|(_, g)| g.len() > 1).collect();
        ensure!(
            doubles.is_empty(),
            "items granted more than once: {doubles:?}"
        );
        let granted: BTreeSet<String> = by_id.keys().map(|k| k.to_string()).collect();
        let missing: Vec<_> = submitted.difference(&granted).collect();
        ensure!(
            missing.is_empty(),
            "{} items never granted: {missing:?}",
            missing.len()
        );
        ensure!(
            granted == submitted,
            "granted ids that were never submitted"
        );
        let tokens: HashSet<u64> = grants.iter().map(|g| g.1).collect();
        ensure!(
            tokens.len() == grants.len(),
            "fencing tokens repeat among {} grants",
            grants.len()
        );

        // The replicated state agrees with what the agents were told.
        let leader = cluster.wait_for_leader(ELECTION).await?;
        let items = list(&cluster, leader, "t20", false).await?;
        ensure!(items.len() == ITEMS, "leader lists {} items", items.len());
        for item in &items {
            let (_, token, agent) = by_id
                .get(item.id.as_str())
                .and_then(|g| g.first().copied())
                .with_context(|| format!("listed item {} was not granted", item.id))?;
            let live = item
                .claim
                .as_ref()
                .with_context(|| format!("{} has no live claim", item.id))?;
            ensure!(
                live.token == *token && live.agent == *agent,
                "{} is held by {}#{}, granted to {agent}#{token}",
                item.id,
                live.agent,
                live.token
            );
        }
        Ok(())
    })
    .await
    .unwrap();
}

// ------------------------------------------------------- t3x leases

/// A long-poll claim of one item of `kind` for `agent` through `work`,
/// waiting up to `wait`: the items it got. Owns what it uses, so that a
/// scenario can spawn it.
async fn wait_claim(
    mut work: WorkServiceClient<Channel>,
    agent: String,
    kind: &'static str,
    wait: Duration,
) -> Result<Vec<WorkItem>> {
    let mut request = tonic::Request::new(ClaimRequest {
        agent,
        types: vec![kind.into()],
        max: 1,
        lease_ms: 30_000,
        wait_ms: u32::try_from(wait.as_millis())?,
        ..ClaimRequest::default()
    });
    request.set_timeout(wait + Duration::from_secs(5));
    Ok(work.claim(request).await?.into_inner().items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_a_waiting_claim_takes_work_submitted_later_first_come_first_served() {
    let cluster = Cluster::start(3).await.unwrap();
    within(SCENARIO, "t22", async {
        let leader = cluster.wait_healthy(3, ELECTION).await?;
        let node = cluster
            .followers()
            .await?
            .first()
            .copied()
            .unwrap_or(leader);
        // Idle waiters write nothing: twenty claims wait for a type nobody
        // submits, and the log does not move.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = cluster.status(leader).await?.commit_index;
        let idle: Vec<_> = (0..20)
            .map(|i| {
                let node = cluster.node_ids()[i % 3];
                let wait = Duration::from_secs(2);
                Ok(wait_claim(
                    cluster.work(node)?,
                    format!("idle-{i}"),
                    "nobody",
                    wait,
                ))
            })
            .collect::<Result<_>>()?;
        for got in futures::future::join_all(idle).await {
            ensure!(got?.is_empty(), "an idle waiter got work");
        }
        let after = cluster.status(leader).await?.commit_index;
        ensure!(
            after == before,
            "idle waiters wrote entries: {before} -> {after}"
        );
        // Bad input is refused at once, not answered empty after the wait.
        let bad = wait_claim(
            cluster.work(node)?,
            String::new(),
            "nobody",
            Duration::from_secs(20),
        )
        .await;
        let code = bad
            .err()
            .and_then(|e| e.downcast_ref::<tonic::Status>().map(tonic::Status::code));
        ensure!(
            code == Some(Code::InvalidArgument),
            "a waiting claim with an empty agent name: {code:?}"
        );

        // Two waiters in line on one node: the first comes first.
        let wait = Duration::from_secs(20);
        let first = tokio::spawn(wait_claim(cluster.work(node)?, "first".into(), "lp", wait));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = tokio::spawn(wait_claim(cluster.work(node)?, "second".into(), "lp", wait));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let one = submit(
            &cluster,
            leader,
            submit_request("lp", "", serde_json::json!({})),
        )
        .await?;
        let got = first.await??;
        ensure!(
            got.len() == 1
                && got[0].id == one.id
                && got[0].claim.as_ref().is_some_and(|c| c.agent == "first"),
            "the first waiter did not get the first item: {got:?}"
        );
        ensure!(
            !second.is_finished(),
            "the second waiter answered before its item existed"
        );
        let two = submit(
            &cluster,
            leader,
            submit_request("lp", "", serde_json::json!({})),
        )
        .await?;
        let got = second.await??;
        ensure!(
            got.len() == 1 && got[0].id == two.id,
            "the second waiter did not get the second item: {got:?}"
        );

        // A waiter whose client goes away leaves the line: the next one in
        // it is served at once, not after the gone one's wait.
        let gone = tokio::spawn(wait_claim(
            cluster.work(node)?,
            "gone".into(),
            "lp",
            Duration::from_secs(25),
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        gone.abort();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waiting = wait_claim(
            cluster.work(node)?,
            "next".into(),
            "lp",
            Duration::from_secs(8),
        );
        let submitting = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            submit(
                &cluster,
                leader,
                submit_request("lp", "", serde_json::json!({})),
            )
            .await
        };
        let (got, three) = tokio::join!(waiting, submitting);
        let (got, three) = (got?, three?);
        ensure!(
            got.len() == 1 && got[0].id == three.id,
            "the waiter after a gone one got {got:?}"
        );
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_expired_lease_is_reclaimed_with_a_higher_token_and_the_old_holder_is_fenced() {
    let cluster = Cluster::start(3).await.unwrap();
    within(SCENARIO, "t30", async {
        let leader = cluster.wait_for_leader(ELECTION).await?;
        let follower = cluster.followers().await?[0];
        let item = submit(
            &cluster,
            leader,
            submit_request("t30", "", serde_json::json!({})),
        )
        .await?;

        let first = claim(
            &cluster,
            leader,
            "agent-a",
            "t30",
            1,
            Duration::from_millis(300),
        )
        .await?;
        ensure!(
            first.len() == 1 && first[0].id == item.id,
            "agent-a got {first:?}"
        );
        let old_token = claim_token(&first[0])?;

        // Once the lease has expired (the leader's tick returns the item to
        // the queue), another agent gets it under a higher token.
        let second = poll_until(
            Duration::from_secs(15),
            "agent-b re-claims the expired item",
            || async {
                let items = claim(
                    &cluster,
                    follower,
                    "agent-b",
                    "t30",
                    1,
                    Duration::from_secs(60),
                )
                .await?;
                Ok(items.into_iter().next())
            },
        )
        .await?;
        ensure!(
            second.id == item.id,
            "agent-b got {} instead of {}",
            second.id,
            item.id
        );
        let new_token = claim_token(&second)?;
        ensure!(
            new_token > old_token,
            "re-claim token {new_token} is not above {old_token}"
        );
        ensure!(
            second.attempt >= 2,
            "attempt after one expiry is {}",
            second.attempt
        );

        // The old holder is fenced off, through the leader and a follower.
        for node in [leader, follower] {
            let stale = cluster
                .work(node)?
                .complete(CompleteRequest {
                    id: item.id.clone(),
                    token: old_token,
                    result_json: "\"late\"".into(),
                })
                .await;
            match stale {
                Ok(r) => bail!(
                    "stale complete through node {node} was accepted: {:?}",
                    r.into_inner()
                ),
                Err(status) => {
                    ensure!(
                        status.code() == Code::FailedPrecondition,
                        "stale complete answered {:?}: {}",
                        status.code(),
                        status.message()
                    );
                    ensure!(
                        status.message().contains("stale"),
                        "stale complete message does not say stale: {}",
                        status.message()
                    );
                }
            }
        }

        // The current holder completes it; the stale attempt changed nothing.
        let done = cluster
            .work(follower)?
            .complete(CompleteRequest {
                id: item.id.clone(),
                token: new_token,
                result_json: "\"ok\"".into(),
            })
            .await?
            .into_inner()
            .item
            .context("complete answered without an item")?;
        ensure!(
            done.status == WorkStatus::Completed as i32,
            "status after complete {:?}",
            done.status
        );
        let read = get(&cluster, leader, &item.id, false).await?;
        ensure!(
            read.result_json.as_deref() == Some("\"ok\""),
            "result is {:?}",
            read.result_json
        );
        ensure!(
            read.history
                .iter()
                .any(|h| h.token == old_token && h.ended == "expired"),
            "history does not record the expiry of token {old_token}: {:?}",
            read.history
        );
        Ok(())
    })
    .await
    .unwrap();
}

// ------------------------------------------------------- t4x one node fails

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_leader_sigkill_elects_a_new_leader_and_keeps_acknowledged_items() {
    let cluster = Arc::new(Cluster::start(3).await.unwrap());
    within(SCENARIO, "t40", async {
        let old_leader = cluster.wait_for_leader(ELECTION).await?;
        let survivors = cluster.followers().await?;
        let mut acked: Vec<String> = submit_many(&cluster, &survivors, "t40", 100, 8).await?;

        // A writer keeps submitting through the survivors across the kill;
        // whatever it got acknowledged must survive.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (cluster, stop, survivors) = (cluster.clone(), stop.clone(), survivors.clone());
            tokio::spawn(async move {
                let mut acks: Vec<(String, Instant)> = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let node = survivors[i % survivors.len()];
                    let request =
                        submit_request("t40", &format!("t40-live-{i}"), serde_json::json!({"live": i}));
                    let mut work = match cluster.work(node) {
                        Ok(w) => w,
                        Err(_) => break,
                    };
                    let mut request = tonic::Request::new(request);
                    request.set_timeout(Duration::from_secs(5));
                    if let Ok(Ok(r)) =
                        tokio::time::timeout(Duration::from_secs(6), work.submit(request)).await
                    {
                        if let Some(item) = r.into_inner().item {
                            acks.push((item.id, Instant::now()));
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    i += 1;
                }
                acks
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;

        let killed_at = Instant::now();
        cluster.kill(old_leader)?;
        // Time from SIGKILL to the first acknowledged write, as a client that
        // keeps trying the surviving nodes sees it.
        let mut attempt = 0usize;
        let first_ack = poll_until(ELECTION, "a write acknowledged after the kill", || {
            attempt += 1;
            let node = survivors[attempt % survivors.len()];
            let cluster = &cluster;
            async move {
                let request = submit_request("t40", "", serde_json::json!("after"));
                let item = submit(cluster, node, request).await?;
                Ok(Some((item.id, killed_at.elapsed())))
            }
        })
        .await?;
        acked.push(first_ack.0.clone());
        let new_leader = cluster.wait_for_leader(ELECTION).await?;
        ensure!(new_leader != old_leader, "the killed node is still the leader");
        // Let the writer get some writes through the new leader too.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let live = writer.await.context("the writer task panicked")?;
        let after_kill = live.iter().filter(|(_, at)| *at > killed_at).count();
        eprintln!(
            "t40: leader {old_leader} SIGKILLed; node {new_leader} leads; \
             first acknowledged write {:?} after the kill; writer: {} acks, {after_kill} after the kill",
            first_ack.1,
            live.len()
        );
        acked.extend(live.into_iter().map(|(id, _)| id));

        let listed: HashSet<String> = list(&cluster, new_leader, "t40", false)
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        let lost: Vec<&String> = acked.iter().filter(|id| !listed.contains(*id)).collect();
        ensure!(lost.is_empty(), "{} acknowledged items lost: {lost:?}", lost.len());
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_killed_follower_restarted_catches_up_to_the_same_applied_index() {
    let cluster = Cluster::start(3).await.unwrap();
    within(SCENARIO, "t41", async {
        let leader = cluster.wait_for_leader(ELECTION).await?;
        let followers = cluster.followers().await?;
        let (victim, other) = (followers[0], followers[1]);
        submit_many(&cluster, &[leader], "t41", 20, 4).await?;
        converge(&cluster).await?;

        cluster.kill(victim)?;
        let ids = submit_many(&cluster, &[leader, other], "t41", 150, 8).await?;
        let target = cluster.applied(leader).await?;
        cluster.restart(victim)?;
        cluster.wait_healthy(3, ELECTION).await?;
        cluster.wait_applied(target, CATCH_UP).await?;

        // Same index everywhere once writes stop (ticks may still append, so
        // compare against the leader's index after the victim reached it).
        let final_index = converge(&cluster).await?;
        ensure!(
            final_index >= target,
            "leader went back from {target} to {final_index}"
        );
        let local: HashSet<String> = list(&cluster, victim, "t41", true)
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        let missing: Vec<&String> = ids.iter().filter(|id| !local.contains(*id)).collect();
        ensure!(
            missing.is_empty(),
            "restarted node {victim} lacks {} items: {missing:?}",
            missing.len()
        );
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_paused_leader_is_replaced_and_grants_nothing_twice_after_resuming() {
    let cluster = Cluster::start(3).await.unwrap();
    within(SCENARIO, "t42", async {
        let old_leader = cluster.wait_for_leader(ELECTION).await?;
        let before = submit_many(&cluster, &[old_leader], "t42", 20, 4).await?;
        converge(&cluster).await?;

        cluster.pause(old_leader)?;
        let new_leader = cluster.wait_for_leader(ELECTION).await?;
        ensure!(
            new_leader != old_leader,
            "the paused node is still the leader"
        );
        let after = submit_many(&cluster, &[new_leader], "t42", 20, 4).await?;
        let held = claim(
            &cluster,
            new_leader,
            "agent-a",
            "t42",
            10,
            Duration::from_secs(120),
        )
        .await?;
        ensure!(held.len() == 10, "agent-a got {} of 10", held.len());

        // The old leader wakes up believing it leads; it must learn otherwise
        // and catch up before it hands anything out.
        cluster.resume(old_leader)?;
        cluster.wait_healthy(3, ELECTION).await?;
        let target = converge(&cluster).await?;
        ensure!(
            cluster.applied(old_leader).await? >= target,
            "node {old_leader} did not catch up"
        );
        let rest = claim(
            &cluster,
            old_leader,
            "agent-b",
            "t42",
            100,
            Duration::from_secs(120),
        )
        .await?;
        let held_ids: HashSet<&str> = held.iter().map(|i| i.id.as_str()).collect();
        let twice: Vec<&str> = rest
            .iter()
            .map(|i| i.id.as_str())
            .filter(|id| held_ids.contains(id))
            .collect();
        ensure!(twice.is_empty(), "granted to both agents: {twice:?}");
        ensure!(
            rest.len() == 30,
            "agent-b got {} of the 30 unclaimed items",
            rest.len()
        );

        let local: HashSet<String> = list(&cluster, old_leader, "t42", true)
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        let missing: Vec<&String> = before
            .iter()
            .chain(&after)
            .filter(|id| !local.contains(*id))
            .collect();
        ensure!(missing.is_empty(), "node {old_leader} lacks {missing:?}");
        Ok(())
    })
    .await
    .unwrap();
}

// ------------------------------------------------------- t5x whole cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_whole_cluster_stopped_and_started_keeps_all_data() {
    let cluster = Cluster::start(3).await.unwrap();
    within(SCENARIO, "t50", async {
        let leader = cluster.wait_for_leader(ELECTION).await?;
        let ids = submit_many(&cluster, &cluster.node_ids(), "t50", 60, 8).await?;
        let claimed = claim(
            &cluster,
            leader,
            "agent-t50",
            "t50",
            10,
            Duration::from_secs(300),
        )
        .await?;
        ensure!(claimed.len() == 10, "claimed {} of 10", claimed.len());
        let mut max_token = 0;
        for item in &claimed[..5] {
            let token = claim_token(item)?;
            max_token = max_token.max(token);
            cluster
                .work(leader)?
                .complete(CompleteRequest {
                    id: item.id.clone(),
                    token,
                    result_json: serde_json::json!({"done": item.id}).to_string(),
                })
                .await?;
        }
        for item in &claimed[5..] {
            max_token = max_token.max(claim_token(item)?);
        }
        let before: BTreeMap<String, (i32, u64)> = list(&cluster, leader, "t50", false)
            .await?
            .into_iter()
            .map(|i| (i.id, (i.status, i.token)))
            .collect();
        ensure!(
            before.len() == ids.len(),
            "listed {} of {} items",
            before.len(),
            ids.len()
        );
        converge(&cluster).await?;

        for id in cluster.node_ids() {
            let status = cluster.stop(id).await?;
            ensure!(
                status.success(),
                "node {id} exited with {status} after SIGTERM"
            );
        }
        for id in cluster.node_ids() {
            cluster.restart(id)?;
        }
        let leader = cluster.wait_healthy(3, ELECTION).await?;

        let after: BTreeMap<String, (i32, u64)> = list(&cluster, leader, "t50", false)
            .await?
            .into_iter()
            .map(|i| (i.id, (i.status, i.token)))
            .collect();
        ensure!(
            after == before,
            "state changed across a full restart:\nbefore {before:?}\nafter {after:?}"
        );
        let done = after
            .values()
            .filter(|(s, _)| *s == WorkStatus::Completed as i32)
            .count();
        ensure!(
            done == 5,
            "{done} completed items after restart, expected 5"
        );

        // The fencing counter survived too: new grants are above every old one.
        let fresh = claim(
            &cluster,
            leader,
            "agent-t50b",
            "t50",
            1,
            Duration::from_secs(60),
        )
        .await?;
        let token = claim_token(fresh.first().context("nothing claimable after restart")?)?;
        ensure!(
            token > max_token,
            "token {token} after restart is not above {max_token}"
        );
        Ok(())
    })
    .await
    .unwrap();
}

// ------------------------------------------------------- t6x snapshots

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_node_down_while_many_entries_commit_catches_up_by_snapshot() {
    const ITEMS: usize = 2000;
    const SNAPSHOT_EVERY: u64 = 100;
    // Enough entries that several snapshots are built and the log behind them
    // is purged while the node is down (swarmd keeps about one snapshot
    // interval of log), so the leader can only catch it up with a snapshot.
    // The node's log must then say it installed one.
    const MIN_ENTRIES: u64 = 6 * SNAPSHOT_EVERY;
    let options = ClusterOptions {
        snapshot_every: Some(SNAPSHOT_EVERY),
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start_with(3, options).await.unwrap();
    within(Duration::from_secs(240), "t60", async {
        let leader = cluster.wait_for_leader(ELECTION).await?;
        let followers = cluster.followers().await?;
        let (victim, other) = (followers[0], followers[1]);
        cluster.kill(victim)?;
        let start_index = cluster.applied(leader).await?;

        // Few writes in flight, so that group commit does not fold them all
        // into a handful of entries.
        let mut ids = Vec::new();
        let mut round = 0;
        while ids.len() < ITEMS || cluster.applied(leader).await? < start_index + MIN_ENTRIES {
            ensure!(round < 20, "the log did not grow by {MIN_ENTRIES} entries");
            let kind = "t60";
            let batch = stream::iter(0..200)
                .map(|i| {
                    let node = if i % 2 == 0 { leader } else { other };
                    let request =
                        submit_request(kind, &format!("t60-{round}-{i}"), serde_json::json!(i));
                    let cluster = &cluster;
                    async move { Ok::<_, anyhow::Error>(submit(cluster, node, request).await?.id) }
                })
                .buffered(8)
                .try_collect::<Vec<String>>()
                .await?;
            ids.extend(batch);
            round += 1;
        }
        let target = cluster.applied(leader).await?;
        eprintln!(
            "t60: {} items in entries {start_index}..{target} while node {victim} was down",
            ids.len()
        );

        cluster.restart(victim)?;
        cluster.wait_healthy(3, ELECTION).await?;
        cluster.wait_applied(target, CATCH_UP).await?;
        let local: HashSet<String> = list(&cluster, victim, "t60", true)
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        let missing = ids.iter().filter(|id| !local.contains(*id)).count();
        ensure!(
            missing == 0,
            "restarted node {victim} lacks {missing} of {} items",
            ids.len()
        );

        // Secondary evidence that it came by snapshot: the node says so.
        let log = cluster.log(victim)?.to_lowercase();
        let installed = log
            .lines()
            .filter(|l| !l.starts_with("---- harness"))
            .any(|l| l.contains("install") && l.contains("snapshot"));
        ensure!(
            installed,
            "node {victim}'s log never mentions installing a snapshot"
        );
        Ok(())
    })
    .await
    .unwrap();
}

// ------------------------------------------------------- t7x limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_max_payload_bytes_is_enforced_with_invalid_argument_naming_the_limit() {
    const LIMIT: u64 = 1024;
    let options = ClusterOptions {
        max_payload_bytes: Some(LIMIT),
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start_with(3, options).await.unwrap();
    within(SCENARIO, "t70", async {
        let leader = cluster.wait_for_leader(ELECTION).await?;
        let follower = cluster.followers().await?[0];
        let small = serde_json::json!("x".repeat(LIMIT as usize - 100));
        submit(&cluster, leader, submit_request("t70", "", small)).await?;

        let big = serde_json::json!("x".repeat(LIMIT as usize + 1));
        for node in [leader, follower] {
            match cluster
                .work(node)?
                .submit(submit_request("t70", "", big.clone()))
                .await
            {
                Ok(r) => bail!(
                    "oversized payload through node {node} accepted: {:?}",
                    r.into_inner().item
                ),
                Err(status) => {
                    ensure!(
                        status.code() == Code::InvalidArgument,
                        "oversized payload answered {:?}: {}",
                        status.code(),
                        status.message()
                    );
                    ensure!(
                        status.message().contains(&LIMIT.to_string()),
                        "message does not name the limit {LIMIT}: {}",
                        status.message()
                    );
                }
            }
        }

        let bad_name = cluster
            .work(follower)?
            .submit(submit_request(
                "no spaces allowed",
                "",
                serde_json::json!(1),
            ))
            .await;
        match bad_name {
            Ok(_) => bail!("a type with spaces was accepted"),
            Err(status) => ensure!(
                status.code() == Code::InvalidArgument,
                "bad type answered {:?}: {}",
                status.code(),
                status.message()
            ),
        }
        let items = list(&cluster, leader, "t70", false).await?;
        ensure!(
            items.len() == 1,
            "{} t70 items stored, expected only the small one",
            items.len()
        );
        Ok(())
    })
    .await
    .unwrap();
}

// ------------------------------------------------------- t8x local safety

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_second_swarmd_on_the_same_data_dir_exits_with_in_use() {
    let cluster = Cluster::start(1).await.unwrap();
    within(SCENARIO, "t80", async {
        let port = swarm_tests::free_ports(1)?[0];
        let args: Vec<String> = vec![
            "--id".into(),
            "1".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            cluster.data_dir(1)?.display().to_string(),
            "--bootstrap".into(),
        ];
        let (status, output) = cluster
            .run_swarmd_to_exit(&args, Duration::from_secs(30))
            .await?;
        ensure!(
            !status.success(),
            "second swarmd exited with {status}; output:\n{output}"
        );
        ensure!(
            output.contains("in use"),
            "second swarmd did not say \"in use\":\n{output}"
        );
        // The first one is unharmed.
        cluster.check_alive()?;
        submit(
            &cluster,
            1,
            submit_request("t80", "", serde_json::json!(null)),
        )
        .await?;
        Ok(())
    })
    .await
    .unwrap();
}

/// Regression for a replica divergence the chaos suite found after a
/// whole-cluster SIGKILL: openraft restored the restarted leader in its old
/// term. A leader replicates entries before its own flush, so followers
/// held entries the leader had lost in the crash; the leader then wrote
/// different entries under the same (term, index), the followers took them
/// as matching and never replaced theirs, and their state machines went
/// apart. A restarted leader must win a new term before it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_a_restarted_leader_must_win_a_new_term_before_it_writes() {
    let cluster = Cluster::start(3).await.unwrap();
    within(Duration::from_secs(120), "t90", async {
        let leader = cluster.wait_for_leader(ELECTION).await?;
        submit(&cluster, leader, submit_request("t90", "before", serde_json::json!({}))).await?;
        let term = cluster.status(leader).await?.term;
        for node in [1, 2, 3] {
            cluster.kill(node)?;
        }
        // The old leader comes back first, so nothing but the restore
        // setting keeps it from resuming its term before anyone campaigns.
        cluster.restart(leader)?;
        for node in [1, 2, 3].into_iter().filter(|n| *n != leader) {
            cluster.restart(node)?;
        }
        let new_leader = cluster.wait_for_leader(ELECTION).await?;
        let new_term = cluster.status(new_leader).await?.term;
        assert!(
            new_term > term,
            "node {new_leader} leads after the restart in term {new_term}, the term node {leader} led in before it"
        );
        submit(&cluster, new_leader, submit_request("t90", "after", serde_json::json!({}))).await?;
        Ok(())
    })
    .await
    .unwrap();
}
