//! End-to-end scenarios of queue control against real `swarmd` processes:
//! a cron schedule fires each fire time exactly once across a leader
//! SIGKILL and a SIGKILL of the whole cluster; delayed items wait for their
//! time (and wake a long-polling claim); a concurrency key's limit holds
//! while other work flows past it; an item out of attempts becomes a dead
//! letter and `RetryWork` brings it back.
//!
//! Every test bounds its whole body with [`within`] and owns its [`Cluster`],
//! whose drop SIGKILLs and reaps every process it started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use swarm_proto::v1::limit_service_client::LimitServiceClient;
use swarm_proto::v1::schedule_service_client::ScheduleServiceClient;
use swarm_proto::v1::{
    ClaimRequest, CreateScheduleRequest, FailRequest, ListWorkRequest, Overlap, RetryWorkRequest,
    Schedule, ScheduleName, SetLimitRequest, SubmitRequest, WorkItem, WorkStatsRequest, WorkStatus,
};
use swarm_tests::{Cluster, NodeId, poll_until, within};

const SCENARIO: Duration = Duration::from_secs(150);
/// Types no node's agent claims: only the scenarios touch these items.
const CRON_KIND: &str = "cron-e2e";
const KIND: &str = "queue-e2e";
/// Every two seconds, on the second.
const EVERY_2S: &str = "*/2 * * * * *";

async fn schedule(cluster: &Cluster, node: NodeId, name: &str) -> Result<Schedule> {
    let mut client = ScheduleServiceClient::new(cluster.channel(node)?);
    let response = client
        .get_schedule(ScheduleName { name: name.into() })
        .await
        .with_context(|| format!("get schedule {name} from node {node}"))?;
    response.into_inner().schedule.context("no schedule")
}

/// Waits until the schedule has fired `fires` times, asking any live node.
async fn wait_fires(cluster: &Cluster, name: &str, fires: u64) -> Result<Schedule> {
    poll_until(Duration::from_secs(40), "schedule fires", || async {
        for node in cluster.running() {
            if let Ok(s) = schedule(cluster, node, name).await
                && s.fires >= fires
            {
                return Ok(Some(s));
            }
        }
        Ok(None)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_schedule_fires_each_time_once_across_a_leader_kill_and_a_full_restart() {
    let mut cluster = Cluster::start(3).await.unwrap();
    let result = within(SCENARIO, "cron scenario", async {
        let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
        let mut client = ScheduleServiceClient::new(cluster.channel(leader)?);
        client
            .create_schedule(CreateScheduleRequest {
                name: "tick".into(),
                cron: EVERY_2S.into(),
                timezone: "UTC".into(),
                r#type: CRON_KIND.into(),
                payload_json: r#"{"report":"daily"}"#.into(),
                overlap: Overlap::Allow as i32,
                ..CreateScheduleRequest::default()
            })
            .await
            .context("create schedule")?;
        let before = wait_fires(&cluster, "tick", 2).await?;

        // The leader dies: the next leader fires from where it stopped.
        cluster.kill(leader)?;
        cluster.wait_for_leader(Duration::from_secs(20)).await?;
        wait_fires(&cluster, "tick", before.fires + 2).await?;
        cluster.restart(leader)?;
        cluster.wait_healthy(3, Duration::from_secs(30)).await?;

        // The whole cluster dies and stays down across fire times.
        let up = wait_fires(&cluster, "tick", before.fires + 3).await?;
        for node in cluster.node_ids() {
            cluster.kill(node)?;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        for node in cluster.node_ids() {
            cluster.restart(node)?;
        }
        let leader = cluster.wait_healthy(3, Duration::from_secs(40)).await?;
        let after = wait_fires(&cluster, "tick", up.fires + 3).await?;
        ensure!(
            after.missed > up.missed,
            "the fire times while the cluster was down were not counted missed: {after:?}"
        );

        // Every fire time from the first to the last either submitted one
        // item or was counted missed (folded into the fire after the
        // outage): none twice, none lost.
        let mut client = ScheduleServiceClient::new(cluster.channel(leader)?);
        client
            .pause_schedule(ScheduleName {
                name: "tick".into(),
            })
            .await
            .context("pause")?;
        let last = schedule(&cluster, leader, "tick").await?;
        let items = cluster
            .list_all(
                leader,
                ListWorkRequest {
                    r#type: CRON_KIND.into(),
                    ..ListWorkRequest::default()
                },
                Duration::from_secs(10),
            )
            .await?;
        let times: Vec<u64> = items
            .iter()
            .map(|i| fire_time(i, "tick"))
            .collect::<Result<_>>()?;
        let distinct: BTreeSet<u64> = times.iter().copied().collect();
        ensure!(
            distinct.len() == times.len(),
            "a fire time submitted twice: {times:?}"
        );
        ensure!(
            times.len() as u64 == last.fires,
            "{} items, {last:?}",
            times.len()
        );
        let (first, latest) = (
            *distinct.first().context("no fires")?,
            *distinct.last().context("no fires")?,
        );
        ensure!(
            distinct.iter().all(|t| t % 2_000 == 0),
            "fire times off the cron: {times:?}"
        );
        let occurrences = (latest - first) / 2_000 + 1;
        ensure!(
            occurrences == last.fires + last.missed + last.skipped,
            "{occurrences} fire times from {first} to {latest}, but {last:?}"
        );
        ensure!(
            items.iter().all(|i| i.payload_json.contains("daily")),
            "the items carry the schedule's payload"
        );
        Ok(())
    })
    .await;
    if result.is_err() {
        cluster.print_log_tails();
        cluster.keep_dir();
    }
    result.unwrap();
}

/// The fire time in a scheduled item's idempotency key.
fn fire_time(item: &WorkItem, schedule: &str) -> Result<u64> {
    let prefix = format!("schedule:{schedule}:");
    item.idempotency_key
        .strip_prefix(&prefix)
        .and_then(|t| t.parse().ok())
        .with_context(|| format!("item {} has key {:?}", item.id, item.idempotency_key))
}

async fn submit(cluster: &Cluster, node: NodeId, request: SubmitRequest) -> Result<WorkItem> {
    cluster
        .work(node)?
        .submit(SubmitRequest {
            r#type: if request.r#type.is_empty() {
                KIND.into()
            } else {
                request.r#type.clone()
            },
            payload_json: "{}".into(),
            ..request
        })
        .await
        .context("submit")?
        .into_inner()
        .item
        .context("no item")
}

async fn claim(cluster: &Cluster, node: NodeId, max: u32, wait_ms: u32) -> Result<Vec<WorkItem>> {
    Ok(cluster
        .work(node)?
        .claim(ClaimRequest {
            agent: "e2e-agent".into(),
            types: vec![KIND.into()],
            max,
            lease_ms: 60_000,
            wait_ms,
            ..ClaimRequest::default()
        })
        .await
        .context("claim")?
        .into_inner()
        .items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_limits_and_dead_letters_work_through_any_node() {
    let mut cluster = Cluster::start(3).await.unwrap();
    let result = within(SCENARIO, "queue control scenario", async {
        let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
        let follower = *cluster.followers().await?.first().context("no follower")?;

        // A delayed item is not granted before its time; a long-polling
        // claim is woken when it comes due.
        let delayed = submit(
            &cluster,
            follower,
            SubmitRequest {
                delay_ms: 1_500,
                ..SubmitRequest::default()
            },
        )
        .await?;
        ensure!(
            delayed.not_before_ms >= delayed.submitted_at_ms + 1_500,
            "{delayed:?}"
        );
        ensure!(
            claim(&cluster, follower, 1, 0).await?.is_empty(),
            "granted early"
        );
        let stats = cluster
            .work(leader)?
            .work_stats(WorkStatsRequest::default())
            .await?
            .into_inner();
        ensure!(stats.scheduled == 1, "{stats:?}");
        let woken = claim(&cluster, follower, 1, 10_000).await?;
        let granted = woken.first().context("the long poll got nothing")?;
        let grant = granted.claim.as_ref().context("no claim")?;
        ensure!(granted.id == delayed.id, "{woken:?}");
        ensure!(
            grant.granted_at_ms >= delayed.not_before_ms,
            "granted at {} before its time {}",
            grant.granted_at_ms,
            delayed.not_before_ms
        );

        // A key capped at one running item: the others wait, free work
        // passes them.
        let mut limits = LimitServiceClient::new(cluster.channel(follower)?);
        limits
            .set_limit(SetLimitRequest {
                key: "payments-api".into(),
                max_running: 1,
                ..SetLimitRequest::default()
            })
            .await
            .context("set limit")?;
        let bad = limits
            .set_limit(SetLimitRequest {
                key: "payments-api".into(),
                rate: "10".into(),
                ..SetLimitRequest::default()
            })
            .await
            .expect_err("a rate without a unit");
        ensure!(
            bad.message().starts_with("invalid rate"),
            "{}",
            bad.message()
        );
        for _ in 0..3 {
            submit(
                &cluster,
                leader,
                SubmitRequest {
                    concurrency_key: "payments-api".into(),
                    ..SubmitRequest::default()
                },
            )
            .await?;
        }
        let free = submit(&cluster, leader, SubmitRequest::default()).await?;
        let got = claim(&cluster, follower, 10, 0).await?;
        let keyed: Vec<&WorkItem> = got
            .iter()
            .filter(|i| i.concurrency_key == "payments-api")
            .collect();
        ensure!(keyed.len() == 1, "{got:?}");
        ensure!(
            got.iter().any(|i| i.id == free.id),
            "free work held up: {got:?}"
        );
        ensure!(
            claim(&cluster, follower, 10, 0).await?.is_empty(),
            "over the limit"
        );
        let stats = cluster
            .work(follower)?
            .work_stats(WorkStatsRequest::default())
            .await?
            .into_inner();
        let key = stats
            .by_concurrency_key
            .get("payments-api")
            .context("no key stats")?;
        ensure!(
            (key.running, key.pending, key.max_running) == (1, 2, 1),
            "{key:?}"
        );

        // Out of attempts: a dead letter, then back by RetryWork.
        let doomed = submit(
            &cluster,
            leader,
            SubmitRequest {
                r#type: "dead-e2e".into(),
                max_attempts: 2,
                ..SubmitRequest::default()
            },
        )
        .await?;
        for attempt in 1..=2 {
            let items = cluster
                .work(follower)?
                .claim(ClaimRequest {
                    agent: "e2e-agent".into(),
                    types: vec!["dead-e2e".into()],
                    max: 1,
                    lease_ms: 60_000,
                    ..ClaimRequest::default()
                })
                .await?
                .into_inner()
                .items;
            let item = items.first().context("nothing to fail")?;
            cluster
                .work(follower)?
                .fail(FailRequest {
                    id: item.id.clone(),
                    token: item.token,
                    error: format!("upstream 503 on attempt {attempt}"),
                    retry: true,
                })
                .await?;
        }
        let dead = cluster
            .list_all(
                follower,
                ListWorkRequest {
                    dead_letter: true,
                    ..ListWorkRequest::default()
                },
                Duration::from_secs(5),
            )
            .await?;
        ensure!(dead.len() == 1 && dead[0].id == doomed.id, "{dead:?}");
        ensure!(dead[0].status == WorkStatus::Failed as i32 && dead[0].dead_letter);
        ensure!(dead[0].error.as_deref() == Some("upstream 503 on attempt 2"));
        let back = cluster
            .work(follower)?
            .retry_work(RetryWorkRequest {
                all: true,
                r#type: "dead-e2e".into(),
                reset_attempts: true,
                ..RetryWorkRequest::default()
            })
            .await?
            .into_inner()
            .items;
        ensure!(back.len() == 1, "{back:?}");
        let item = &back[0];
        ensure!(
            item.status == WorkStatus::Pending as i32 && !item.dead_letter && item.attempt == 0,
            "{item:?}"
        );
        ensure!(item.history.len() == 2, "history kept: {item:?}");
        ensure!(
            item.events.last().is_some_and(|e| e.kind == "requeued"),
            "{item:?}"
        );
        Ok(())
    })
    .await;
    if result.is_err() {
        cluster.print_log_tails();
        cluster.keep_dir();
    }
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarmctl_drives_schedules_limits_delays_and_retries() {
    let mut cluster = Cluster::start(3).await.unwrap();
    let result = within(SCENARIO, "swarmctl scenario", async {
        cluster.wait_for_leader(Duration::from_secs(20)).await?;

        // Bad input is refused with the field named, and nothing is made.
        for (args, field) in [
            (
                &[
                    "schedule", "create", "bad", "--cron", "*/5 * *", "--type", "t",
                ][..],
                "cron",
            ),
            (
                &[
                    "schedule",
                    "create",
                    "bad",
                    "--cron",
                    "* * * * *",
                    "--timezone",
                    "Mars/Olympus",
                    "--type",
                    "t",
                ][..],
                "timezone",
            ),
            (&["limit", "set", "k", "--rate", "10"][..], "rate"),
            (&["limit", "set", "k", "--max-running", "0"][..], "limit"),
        ] {
            let (ok, _, err) = cluster.swarmctl(args).await?;
            ensure!(!ok, "{args:?} was accepted");
            ensure!(err.contains(&format!("invalid {field}")), "{args:?}: {err}");
        }
        let (_, listed, _) = cluster
            .swarmctl(&["schedule", "list", "-o", "json"])
            .await?;
        ensure!(
            listed.trim() == "[]",
            "a refused schedule was made: {listed}"
        );

        // A schedule fires, is listed, triggered by hand, paused.
        let (ok, out, err) = cluster
            .swarmctl(&[
                "schedule",
                "create",
                "beat",
                "--cron",
                "* * * * * *",
                "--type",
                "cli-e2e",
                "--payload",
                r#"{"n":1}"#,
                "--overlap",
                "allow",
            ])
            .await?;
        ensure!(ok, "create: {out}{err}");
        poll_until(Duration::from_secs(20), "the schedule fires", || async {
            let (_, out, _) = cluster
                .swarmctl(&["schedule", "get", "beat", "-o", "json"])
                .await?;
            let fires = serde_json::from_str::<serde_json::Value>(&out)
                .ok()
                .and_then(|v| v["fires"].as_u64())
                .unwrap_or(0);
            Ok((fires >= 2).then_some(()))
        })
        .await?;
        let (ok, out, err) = cluster
            .swarmctl(&["schedule", "trigger", "beat", "-o", "json"])
            .await?;
        ensure!(
            ok && out.contains("schedule:beat:manual:"),
            "trigger: {out}{err}"
        );
        let (ok, out, _) = cluster.swarmctl(&["schedule", "pause", "beat"]).await?;
        ensure!(ok, "pause: {out}");
        let (_, table, _) = cluster.swarmctl(&["schedule", "list"]).await?;
        ensure!(
            table.contains("beat") && table.contains("paused"),
            "{table}"
        );

        // A delayed submit shows as scheduled, then is claimable.
        let (ok, out, err) = cluster
            .swarmctl(&[
                "work",
                "submit",
                "--type",
                "cli-later",
                "--delay",
                "2s",
                "-o",
                "json",
            ])
            .await?;
        ensure!(ok, "submit: {err}");
        let item: serde_json::Value = serde_json::from_str(&out)?;
        ensure!(
            item["not_before"].is_string() || item["not_before"].is_number(),
            "{item}"
        );
        let (_, table, _) = cluster
            .swarmctl(&["work", "list", "--type", "cli-later"])
            .await?;
        ensure!(table.contains("scheduled"), "{table}");

        // A pending item paused by hand is not granted until resumed.
        let (ok, out, err) = cluster
            .swarmctl(&["work", "submit", "--type", "cli-pause", "-o", "json"])
            .await?;
        ensure!(ok, "submit: {err}");
        let paused_id = serde_json::from_str::<serde_json::Value>(&out)?["id"]
            .as_str()
            .context("no id")?
            .to_string();
        let (ok, _, err) = cluster
            .swarmctl(&["work", "pause", &paused_id, "--reason", "vendor outage"])
            .await?;
        ensure!(ok, "pause: {err}");
        let (_, table, _) = cluster
            .swarmctl(&["work", "list", "--type", "cli-pause"])
            .await?;
        ensure!(table.contains("paused"), "{table}");
        ensure!(
            claim_kind(&cluster, "cli-pause").await.is_err(),
            "a paused item was granted"
        );
        let (ok, _, err) = cluster.swarmctl(&["work", "resume", &paused_id]).await?;
        ensure!(ok, "resume: {err}");
        let (ok, _, err) = cluster.swarmctl(&["work", "resume", &paused_id]).await?;
        ensure!(!ok && err.contains("not paused"), "a second resume: {err}");
        ensure!(claim_kind(&cluster, "cli-pause").await?.id == paused_id);

        // A limit is set and listed.
        let (ok, _, err) = cluster
            .swarmctl(&[
                "limit",
                "set",
                "openai",
                "--max-running",
                "4",
                "--rate",
                "10/s",
                "--burst",
                "20",
            ])
            .await?;
        ensure!(ok, "limit set: {err}");
        let (_, table, _) = cluster.swarmctl(&["limit", "list"]).await?;
        ensure!(
            table.contains("openai") && table.contains("10/s"),
            "{table}"
        );

        // A dead letter, listed and retried.
        let (ok, out, err) = cluster
            .swarmctl(&[
                "work",
                "submit",
                "--type",
                "cli-dead",
                "--max-attempts",
                "1",
                "-o",
                "json",
            ])
            .await?;
        ensure!(ok, "submit: {err}");
        let id = serde_json::from_str::<serde_json::Value>(&out)?["id"]
            .as_str()
            .context("no id")?
            .to_string();
        let claimed = claim_kind(&cluster, "cli-dead").await?;
        cluster
            .work(cluster.node_ids()[0])?
            .fail(FailRequest {
                id: id.clone(),
                token: claimed.token,
                error: "quota exceeded".into(),
                retry: true,
            })
            .await?;
        let (_, dead, _) = cluster
            .swarmctl(&["work", "list", "--dead-letter", "-o", "json"])
            .await?;
        ensure!(dead.contains(&id), "{dead}");
        let (_, got, _) = cluster
            .swarmctl(&["work", "get", &id, "-o", "json"])
            .await?;
        let got: serde_json::Value = serde_json::from_str(&got)?;
        ensure!(
            got["dead_letter"] == true && got["last_error"] == "quota exceeded",
            "{got}"
        );
        ensure!(
            got["attempts"].as_array().is_some_and(|a| a.len() == 1),
            "{got}"
        );
        let (ok, out, err) = cluster
            .swarmctl(&["work", "retry", &id, "-o", "json"])
            .await?;
        ensure!(ok && out.contains("pending"), "retry: {out}{err}");
        Ok(())
    })
    .await;
    if result.is_err() {
        cluster.print_log_tails();
        cluster.keep_dir();
    }
    result.unwrap();
}

async fn claim_kind(cluster: &Cluster, kind: &str) -> Result<WorkItem> {
    let items = cluster
        .work(cluster.node_ids()[0])?
        .claim(ClaimRequest {
            agent: "e2e-agent".into(),
            types: vec![kind.into()],
            max: 1,
            lease_ms: 60_000,
            ..ClaimRequest::default()
        })
        .await?
        .into_inner()
        .items;
    items.into_iter().next().context("nothing granted")
}
