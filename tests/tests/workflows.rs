//! Distributed execution with real `swarmd` processes: nodes claim workflow
//! items, run them, checkpoint every step through Raft, hand them off, resume
//! them after a crash, drain them on shutdown, undo them on cancel, and fence
//! a stale holder.
//!
//! Nodes get capabilities `exec,nodeN`, so a step that `requires: [node3]`
//! can only run on node 3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use swarm_proto::v1::{
    CancelRequest, GetWorkRequest, ReadConsistency, SubmitRequest, WorkItem, WorkStatus,
};
use swarm_tests::{Cluster, ClusterOptions, poll_until, wait_until, within};

/// Short leases so that a dead holder's work moves on within seconds.
fn fast_lease_options() -> ClusterOptions {
    ClusterOptions {
        extra_args: vec![
            "--workflow-lease".into(),
            "3s".into(),
            "--renew-interval".into(),
            "1s".into(),
        ],
        ..ClusterOptions::default()
    }
}

/// A script that appends `<tag> <step> <token>` to `log` and prints a JSON
/// result; with `sleep_secs`, it sleeps first.
fn step_script(dir: &Path, name: &str, log: &Path, tag: &str, sleep_secs: u32) -> PathBuf {
    let path = dir.join(name);
    let body = format!(
        "#!/bin/sh\ncat > /dev/null\nsleep {sleep_secs}\necho \"{tag} $SWARM_STEP $SWARM_FENCING_TOKEN\" >> '{}'\necho '{{\"ok\": true}}'\n",
        log.display()
    );
    std::fs::write(&path, body).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

fn exec_step(name: &str, script: &Path, after: Option<&str>, extra: &str) -> String {
    let wait = after.map_or(String::new(), |a| format!("\n    wait_for: [{a}]"));
    format!(
        "  - name: {name}\n    run: exec\n    with: {{ command: [\"{}\"] }}{wait}{extra}\n",
        script.display()
    )
}

async fn submit_workflow(cluster: &Cluster, node: u64, spec: &str) -> Result<String> {
    submit_with_inputs(cluster, node, spec, json!({})).await
}

async fn submit_with_inputs(
    cluster: &Cluster,
    node: u64,
    spec: &str,
    inputs: Value,
) -> Result<String> {
    let payload = json!({ "spec": spec, "inputs": inputs }).to_string();
    let resp = cluster
        .work(node)?
        .submit(SubmitRequest {
            r#type: "workflow".into(),
            payload_json: payload,
            idempotency_key: uuid_like(),
            ..Default::default()
        })
        .await
        .context("submit workflow")?
        .into_inner();
    Ok(resp
        .item
        .ok_or_else(|| anyhow!("submit returned no item"))?
        .id)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "k-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

async fn get(cluster: &Cluster, id: &str) -> Result<WorkItem> {
    for node in cluster.running() {
        let Ok(mut client) = cluster.work(node) else {
            continue;
        };
        let req = GetWorkRequest {
            id: id.to_string(),
            consistency: ReadConsistency::Linearizable as i32,
        };
        if let Ok(resp) = client.get_work(req).await
            && let Some(item) = resp.into_inner().item
        {
            return Ok(item);
        }
    }
    bail!("no node answered for item {id}")
}

async fn wait_status(
    cluster: &Cluster,
    id: &str,
    status: WorkStatus,
    timeout: Duration,
) -> Result<WorkItem> {
    poll_until(timeout, &format!("item {id} {status:?}"), || async {
        let item = get(cluster, id).await?;
        if item.status == status as i32 {
            Ok(Some(item))
        } else if item.status == WorkStatus::Failed as i32 {
            Err(anyhow!("item failed: {:?}", item.error))
        } else {
            Ok(None)
        }
    })
    .await
}

/// Waits (up to 60 s) until the item completes: the item and its result.
async fn completed(cluster: &Cluster, id: &str) -> Result<(WorkItem, Value)> {
    let done = wait_status(cluster, id, WorkStatus::Completed, Duration::from_secs(60)).await?;
    let result = serde_json::from_str(done.result_json.as_deref().unwrap_or("null"))
        .context("the item's result is not JSON")?;
    Ok((done, result))
}

/// The reactor journal entries of the item's top-level run, with the token
/// each was recorded under.
fn journal(item: &WorkItem) -> Vec<(u64, Value)> {
    item.journal
        .iter()
        .filter_map(|j| {
            let v: Value = serde_json::from_str(&j.outcome_json).ok()?;
            (v["run"] == json!(item.id)).then(|| (j.token, v["entry"].clone()))
        })
        .collect()
}

fn succeeded_steps(item: &WorkItem) -> Vec<String> {
    journal(item)
        .into_iter()
        .filter(|(_, e)| e["event"] == "step_succeeded")
        .filter_map(|(_, e)| e["step"].as_str().map(String::from))
        .collect()
}

/// Waits until the item is held (pending, parked) with a hold that starts
/// with `prefix` ("paused", "waiting for signal ...", "sleeping until").
async fn wait_hold(cluster: &Cluster, id: &str, prefix: &str) -> Result<WorkItem> {
    poll_until(
        Duration::from_secs(30),
        &format!("item {id} {prefix}"),
        || async {
            let item = get(cluster, id).await?;
            Ok(
                (item.status == WorkStatus::Pending as i32 && item.hold.starts_with(prefix))
                    .then_some(item),
            )
        },
    )
    .await
}

fn holder_of_token(item: &WorkItem, token: u64) -> Option<String> {
    item.history
        .iter()
        .find(|h| h.token == token)
        .map(|h| h.agent.clone())
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t10_hundred_workflows_all_complete_spread_over_all_nodes() {
    within(Duration::from_secs(240), "t10_hundred_workflows_all_complete_spread_over_all_nodes", async {
        let cluster = Cluster::start(3).await?;
        let spec = "name: small\nsteps:\n  - { name: a, run: echo, arguments: { v: value(1) } }\n  - { name: b, run: sleep, with: { duration: 100ms }, wait_for: [a] }\n  - { name: c, run: echo, arguments: { v: result(a.v) } }\nreturn: c.v\n";
        let submits = (0..100).map(|i| {
            let node = (i % 3) + 1;
            let cluster = &cluster;
            async move { submit_workflow(cluster, node, spec).await }
        });
        let ids: Vec<String> = futures::future::try_join_all(submits).await?;
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 100);
        let mut agents = BTreeSet::new();
        for id in &ids {
            let item = wait_status(&cluster, id, WorkStatus::Completed, Duration::from_secs(120))
                .await?;
            assert_eq!(item.result_json.as_deref(), Some("1"));
            let completions = item.history.iter().filter(|h| h.ended == "completed").count();
            assert_eq!(completions, 1, "item {id} completed once");
            agents.extend(item.history.iter().map(|h| h.agent.clone()));
        }
        assert_eq!(
            agents,
            BTreeSet::from(["node-1".to_string(), "node-2".into(), "node-3".into()]),
            "every node ran workflows"
        );
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t20_step_needing_node3_capability_is_handed_off_to_node3() {
    within(Duration::from_secs(120), "t20_step_needing_node3_capability_is_handed_off_to_node3", async {
        let cluster = Cluster::start(3).await?;
        let spec = "name: handoff\nsteps:\n  - { name: first, run: echo, requires: [node1], arguments: { v: value(7) } }\n  - { name: middle, run: echo, requires: [node3], arguments: { v: result(first.v) } }\n  - { name: last, run: echo, arguments: { v: result(middle.v) } }\nreturn: last.v\n";
        let id = submit_workflow(&cluster, 2, spec).await?;
        let item = wait_status(&cluster, &id, WorkStatus::Completed, Duration::from_secs(60)).await?;
        assert_eq!(item.result_json.as_deref(), Some("7"));
        let entries = journal(&item);
        let ran_on = |step: &str| {
            entries
                .iter()
                .filter(|(_, e)| e["event"] == "step_succeeded" && e["step"] == step)
                .map(|(t, _)| holder_of_token(&item, *t).unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(ran_on("first"), ["node-1"]);
        assert_eq!(ran_on("middle"), ["node-3"]);
        assert!(
            item.history.iter().any(|h| h.ended == "handed_off"),
            "history shows a hand-off: {:?}",
            item.history
        );
        let handed_to_3 = item
            .events
            .iter()
            .any(|e| e.kind == "handed_off" && e.agent == "node-3");
        assert!(handed_to_3, "events show the hand-off to node 3: {:?}", item.events);
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t21_a_step_needing_a_capability_no_node_has_fails_the_workflow_naming_it() {
    within(Duration::from_secs(120), "t21_a_step_needing_a_capability_no_node_has_fails_the_workflow_naming_it", async {
        let cluster = Cluster::start(3).await?;
        let spec = "name: nowhere\nsteps:\n  - { name: first, run: echo, arguments: { v: value(1) } }\n  - { name: gpu, run: echo, requires: [gpu-nobody-has], arguments: { v: result(first.v) } }\n";
        let id = submit_workflow(&cluster, 1, spec).await?;
        // Failed, once no node has shown the capability for the grace period.
        let failed = poll_until(Duration::from_secs(60), "the workflow fails", || async {
            let item = get(&cluster, &id).await?;
            Ok((item.status == WorkStatus::Failed as i32).then_some(item))
        })
        .await?;
        let error = failed.error.unwrap_or_default();
        assert!(
            error.contains("\"gpu\" requires capability \"gpu-nobody-has\", which no node has"),
            "{error}"
        );
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t30_sigkill_of_the_holder_mid_run_resumes_elsewhere_without_rerunning_done_steps() {
    within(
        Duration::from_secs(150),
        "t30_sigkill_of_the_holder_mid_run_resumes_elsewhere_without_rerunning_done_steps",
        async {
            let cluster = Cluster::start_with(3, fast_lease_options()).await?;
            let dir = tempfile::tempdir()?;
            let log = dir.path().join("effects.log");
            let quick = step_script(dir.path(), "quick.sh", &log, "ran", 0);
            let slow = step_script(dir.path(), "slow.sh", &log, "ran", 4);
            let spec = format!(
                "name: five\nsteps:\n{}{}{}{}{}",
                exec_step("s1", &quick, None, ""),
                exec_step("s2", &quick, Some("s1"), ""),
                exec_step("s3", &slow, Some("s2"), ""),
                exec_step("s4", &quick, Some("s3"), ""),
                exec_step("s5", &quick, Some("s4"), ""),
            );
            let id = submit_workflow(&cluster, 1, &spec).await?;
            // Wait until steps 1 and 2 are checkpointed, then kill the holder.
            let holder = poll_until(
                Duration::from_secs(60),
                "s1 and s2 checkpointed",
                || async {
                    let item = get(&cluster, &id).await?;
                    let done = succeeded_steps(&item);
                    if done.contains(&"s2".to_string()) {
                        Ok(item.claim.map(|c| c.agent))
                    } else {
                        Ok(None)
                    }
                },
            )
            .await?;
            let node: u64 = holder.trim_start_matches("node-").parse()?;
            cluster.kill(node)?;
            let item = wait_status(
                &cluster,
                &id,
                WorkStatus::Completed,
                Duration::from_secs(90),
            )
            .await?;
            let effects = lines(&log);
            let count = |step: &str| {
                effects
                    .iter()
                    .filter(|l| l.split(' ').nth(1) == Some(step))
                    .count()
            };
            assert_eq!(count("s1"), 1, "s1 ran exactly once: {effects:?}");
            assert_eq!(count("s2"), 1, "s2 ran exactly once: {effects:?}");
            assert!(
                count("s3") >= 1 && count("s4") == 1 && count("s5") == 1,
                "{effects:?}"
            );
            let finisher = item
                .history
                .last()
                .map(|h| h.agent.clone())
                .unwrap_or_default();
            assert_ne!(finisher, holder, "another node finished it");
            Ok(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t40_sigterm_drains_held_work_to_peers_with_nothing_lost() {
    within(Duration::from_secs(150), "t40_sigterm_drains_held_work_to_peers_with_nothing_lost", async {
        let cluster = Cluster::start(3).await?;
        let spec = "name: drained\nsteps:\n  - { name: a, run: sleep, with: { duration: 3s } }\n  - { name: b, run: sleep, with: { duration: 3s }, wait_for: [a] }\n  - { name: c, run: echo, arguments: { v: value(3) }, wait_for: [b] }\nreturn: c.v\n";
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(submit_workflow(&cluster, (i % 3) + 1, spec).await?);
        }
        // Pick a node that holds at least one of them, then stop it.
        let holder = poll_until(Duration::from_secs(30), "a node holds work", || async {
            for id in &ids {
                let item = get(&cluster, id).await?;
                // Any holder will do: one node may well have claimed them all.
                if let Some(c) = item.claim {
                    return Ok(Some(c.agent));
                }
            }
            Ok(None)
        })
        .await?;
        let node: u64 = holder.trim_start_matches("node-").parse()?;
        let status = cluster.stop(node).await?;
        assert!(status.success(), "node {node} exited cleanly: {status:?}");
        for id in &ids {
            let item = wait_status(&cluster, id, WorkStatus::Completed, Duration::from_secs(90)).await?;
            assert_eq!(item.result_json.as_deref(), Some("3"));
        }
        let log = cluster.log(node)?;
        assert!(
            log.contains("draining") && (log.contains("handed off") || log.contains("released")),
            "node {node} drained its work"
        );
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t50_cancel_stops_a_running_workflow_and_undoes_in_reverse_order() {
    within(Duration::from_secs(120), "t50_cancel_stops_a_running_workflow_and_undoes_in_reverse_order", async {
        let cluster = Cluster::start(3).await?;
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("effects.log");
        let doit = step_script(dir.path(), "do.sh", &log, "do", 0);
        let undo = step_script(dir.path(), "undo.sh", &log, "undo", 0);
        let undo_clause = format!(
            "\n    undo: {{ run: exec, with: {{ command: [\"{}\"] }} }}",
            undo.display()
        );
        let spec = format!(
            "name: cancellable\nsteps:\n{}{}  - {{ name: wait, run: sleep, with: {{ duration: 60s }}, wait_for: [two] }}\n",
            exec_step("one", &doit, None, &undo_clause),
            exec_step("two", &doit, Some("one"), &undo_clause),
        );
        let id = submit_workflow(&cluster, 1, &spec).await?;
        wait_until(Duration::from_secs(60), "steps one and two done", || async {
            get(&cluster, &id).await.map(|i| succeeded_steps(&i).len() >= 2).unwrap_or(false)
        })
        .await?;
        let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
        cluster
            .work(leader)?
            .cancel(CancelRequest {
                id: id.clone(),
                reason: "test cancel".into(),
            })
            .await?;
        let item = wait_status(&cluster, &id, WorkStatus::Cancelled, Duration::from_secs(60)).await?;
        let effects: Vec<String> = lines(&log)
            .iter()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(effects, ["do one", "do two", "undo two.undo", "undo one.undo"]);
        assert!(item.events.iter().any(|e| e.kind == "cancel_requested"));
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t60_a_paused_stale_holder_cannot_record_a_step_or_complete() {
    within(
        Duration::from_secs(150),
        "t60_a_paused_stale_holder_cannot_record_a_step_or_complete",
        async {
            let cluster = Cluster::start_with(3, fast_lease_options()).await?;
            let dir = tempfile::tempdir()?;
            let log = dir.path().join("effects.log");
            let quick = step_script(dir.path(), "quick.sh", &log, "ran", 0);
            let slow = step_script(dir.path(), "slow.sh", &log, "ran", 3);
            let spec = format!(
                "name: stale\nsteps:\n{}{}{}",
                exec_step("s1", &quick, None, ""),
                exec_step("s2", &slow, Some("s1"), ""),
                exec_step("s3", &quick, Some("s2"), ""),
            );
            let id = submit_workflow(&cluster, 1, &spec).await?;
            let (holder, old_token) =
                poll_until(Duration::from_secs(60), "s1 checkpointed", || async {
                    let item = get(&cluster, &id).await?;
                    if succeeded_steps(&item).contains(&"s1".to_string()) {
                        Ok(item.claim.map(|c| (c.agent, c.token)))
                    } else {
                        Ok(None)
                    }
                })
                .await?;
            let node: u64 = holder.trim_start_matches("node-").parse()?;
            // Paused well past its 3 s lease: the others expire it and take over.
            cluster.pause(node)?;
            let taken_over = wait_status(
                &cluster,
                &id,
                WorkStatus::Completed,
                Duration::from_secs(60),
            )
            .await;
            cluster.resume(node)?;
            let item = taken_over?;
            // Give the stale holder time to try its writes, then look again.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let after = get(&cluster, &id).await?;
            assert_eq!(after.status, WorkStatus::Completed as i32);
            assert_eq!(
                after.journal.len(),
                item.journal.len(),
                "nothing recorded after completion"
            );
            let completions: Vec<_> = after
                .history
                .iter()
                .filter(|h| h.ended == "completed")
                .collect();
            assert_eq!(completions.len(), 1);
            assert_ne!(
                completions[0].token, old_token,
                "the stale holder did not complete"
            );
            // Every entry under the old token precedes every entry under later ones.
            let tokens: Vec<u64> = after.journal.iter().map(|j| j.token).collect();
            let first_new = tokens
                .iter()
                .position(|t| *t != old_token)
                .unwrap_or(tokens.len());
            assert!(
                tokens[first_new..].iter().all(|t| *t != old_token),
                "a stale entry was recorded after the takeover: {tokens:?}"
            );
            Ok(())
        },
    )
    .await
    .unwrap();
}

/// A step that finishes within the journal's linger costs one Raft entry:
/// its "started" record rides with its outcome. Nothing is lost by that:
/// every step still has its start recorded, before its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_a_quick_step_shares_one_raft_entry_with_its_start_record() {
    within(
        Duration::from_secs(120),
        "t70_a_quick_step_shares_one_raft_entry_with_its_start_record",
        async {
            let cluster = Cluster::start(3).await?;
            let steps: String = (1..=5)
                .map(|i| {
                    let arg = if i == 1 {
                        "value(1)".to_string()
                    } else {
                        format!("result(s{}.v)", i - 1)
                    };
                    format!("  - {{ name: s{i}, run: echo, arguments: {{ v: {arg} }} }}\n")
                })
                .collect();
            let spec = format!("name: quick5\nsteps:\n{steps}return: s5.v\n");
            let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
            // A first run, so that every node has registered as a runner
            // and nothing but this workflow writes while it is measured.
            let warm_up = submit_workflow(&cluster, leader, &spec).await?;
            wait_status(
                &cluster,
                &warm_up,
                WorkStatus::Completed,
                Duration::from_secs(60),
            )
            .await?;
            let before = cluster.status(leader).await?.commit_index;
            let id = submit_workflow(&cluster, leader, &spec).await?;
            let item = wait_status(
                &cluster,
                &id,
                WorkStatus::Completed,
                Duration::from_secs(60),
            )
            .await?;
            let after = cluster.status(leader).await?.commit_index;

            let entries = journal(&item);
            for i in 1..=5 {
                let step = format!("s{i}");
                let at = |event: &str| {
                    entries
                        .iter()
                        .position(|(_, e)| e["event"] == event && e["step"] == step.as_str())
                };
                let started =
                    at("step_started").with_context(|| format!("{step}: no start recorded"))?;
                let succeeded =
                    at("step_succeeded").with_context(|| format!("{step}: no outcome recorded"))?;
                assert!(
                    started < succeeded,
                    "{step}: start recorded after its outcome: {entries:?}"
                );
            }
            // submit, claim, one entry per step (the run's start rides with
            // the first), the run's end, complete: 9. Three more allowed for a
            // lease renewal, a tick or a start that missed its step's outcome
            // on a loaded machine; every start written on its own makes 15.
            let used = after - before;
            assert!(
                used <= 12,
                "a five-step quick workflow used {used} Raft entries"
            );

            // The holder does not start the finished run again while its
            // replica has yet to apply the completion.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut starts = 0;
            for node in cluster.running() {
                let log = std::fs::read_to_string(cluster.log_path(node)?)?;
                starts += log
                    .lines()
                    .filter(|l| l.contains("running workflow") && l.contains(id.as_str()))
                    .count();
            }
            assert_eq!(starts, 1, "the workflow was started {starts} times");
            Ok(())
        },
    )
    .await
    .unwrap();
}

/// Pause of a running workflow: its holder stops at the next step boundary
/// without undoing and parks it (no lease, paused, its journal kept); the
/// node that held it is SIGKILLed; resumed, another node continues from the
/// journal without running a finished step again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t80_a_paused_workflow_resumes_from_its_journal_after_its_node_dies() {
    within(
        Duration::from_secs(150),
        "t80_a_paused_workflow_resumes_from_its_journal_after_its_node_dies",
        async {
            let dir = tempfile::tempdir()?;
            let log = dir.path().join("steps.log");
            let script = step_script(dir.path(), "step.sh", &log, "ran", 1);
            let spec = format!(
                "name: pausable\nsteps:\n{}{}{}return: c\n",
                exec_step("a", &script, None, ""),
                exec_step("b", &script, Some("a"), ""),
                exec_step("c", &script, Some("b"), ""),
            );
            let cluster = Cluster::start(3).await?;
            let id = submit_workflow(&cluster, 1, &spec).await?;
            // Once step a is done, pause: b (running or about to) finishes, c
            // does not start.
            poll_until(Duration::from_secs(30), "step a done", || async {
                let item = get(&cluster, &id).await?;
                Ok(succeeded_steps(&item)
                    .contains(&"a".to_string())
                    .then_some(()))
            })
            .await?;
            let paused = cluster
                .work(2)?
                .pause_work(swarm_proto::v1::PauseWorkRequest {
                    id: id.clone(),
                    reason: "upstream maintenance".into(),
                })
                .await?
                .into_inner()
                .item
                .context("no item")?;
            assert!(
                paused.pause_requested.is_some() || paused.hold.starts_with("paused"),
                "{paused:?}"
            );
            let parked = wait_hold(&cluster, &id, "paused").await?;
            assert!(parked.claim.is_none(), "a parked run holds no lease");
            assert!(
                parked.hold.contains("upstream maintenance"),
                "{}",
                parked.hold
            );
            let done_before = succeeded_steps(&parked);
            assert!(
                !done_before.contains(&"c".to_string()),
                "c ran while pausing: {done_before:?}"
            );
            assert!(
                parked.events.iter().any(|e| e.kind == "waiting"),
                "{:?}",
                parked.events
            );
            // It stays put while paused.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let still = get(&cluster, &id).await?;
            assert!(still.claim.is_none() && still.hold.starts_with("paused"));

            // The node that held it dies; the run resumes elsewhere.
            let holder = parked
                .history
                .last()
                .map(|h| h.agent.clone())
                .context("no holder")?;
            let node: u64 = holder.trim_start_matches("node-").parse()?;
            cluster.kill(node)?;
            let alive = *cluster.running().first().context("no node left")?;
            cluster
                .work(alive)?
                .resume_work(swarm_proto::v1::ResumeWorkRequest { id: id.clone() })
                .await?;
            let done = wait_status(
                &cluster,
                &id,
                WorkStatus::Completed,
                Duration::from_secs(60),
            )
            .await?;
            let steps = succeeded_steps(&done);
            for step in ["a", "b", "c"] {
                assert_eq!(
                    steps.iter().filter(|s| *s == step).count(),
                    1,
                    "{step} recorded once: {steps:?}"
                );
            }
            // Every step ran once: the resumed run did not run a or b again.
            let ran = lines(&log);
            for step in ["a", "b", "c"] {
                let runs = ran
                    .iter()
                    .filter(|l| l.split(' ').nth(1) == Some(step))
                    .count();
                assert_eq!(runs, 1, "{step} ran {runs} times: {ran:?}");
            }
            let finisher = done
                .history
                .last()
                .map(|h| h.agent.clone())
                .unwrap_or_default();
            assert_ne!(finisher, holder, "resumed on another node");
            assert_eq!(
                done.attempt, 1,
                "a pause does not count as an attempt: {done:?}"
            );
            Ok(())
        },
    )
    .await
    .unwrap();
}

/// Human approval: a run parked at a signal step survives a SIGKILL of the
/// whole cluster, a signal it does not wait for is refused, and the signal
/// it waits for makes it go on with the payload as the step's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t90_a_run_waiting_for_approval_survives_a_full_restart_and_goes_on_when_signalled() {
    within(
        Duration::from_secs(150),
        "t90_a_run_waiting_for_approval_survives_a_full_restart_and_goes_on_when_signalled",
        async {
            let spec = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../cluster/workflows/human-approval.yaml"),
            )?;
            let cluster = Cluster::start(3).await?;
            let id =
                submit_with_inputs(&cluster, 1, &spec, json!({ "change": "raise-limits" })).await?;
            let waiting = wait_hold(&cluster, &id, "waiting for signal \"approve\"").await?;
            assert!(waiting.claim.is_none(), "a waiting run holds no lease");
            assert_eq!(succeeded_steps(&waiting), ["draft"]);

            for node in cluster.node_ids() {
                cluster.kill(node)?;
            }
            for node in cluster.node_ids() {
                cluster.restart(node)?;
            }
            let leader = cluster.wait_healthy(3, Duration::from_secs(40)).await?;
            let still = get(&cluster, &id).await?;
            assert!(still.hold.starts_with("waiting for signal"), "{still:?}");

            let wrong = cluster
                .work(leader)?
                .signal_work(swarm_proto::v1::SignalWorkRequest {
                    id: id.clone(),
                    name: "deploy".into(),
                    payload_json: "true".into(),
                })
                .await
                .expect_err("a signal the run does not wait for");
            assert!(
                wrong
                    .message()
                    .contains("waits for no signal named \"deploy\""),
                "{}",
                wrong.message()
            );
            cluster
                .work(leader)?
                .signal_work(swarm_proto::v1::SignalWorkRequest {
                    id: id.clone(),
                    name: "approve".into(),
                    payload_json: r#"{"by": "alice", "ok": true}"#.into(),
                })
                .await?;
            let (done, result) = completed(&cluster, &id).await?;
            assert_eq!(
                result,
                json!({ "change": "raise-limits", "approved_by": "alice" })
            );
            assert_eq!(
                succeeded_steps(&done),
                ["draft", "approve", "apply"],
                "draft ran once"
            );
            let late = cluster
                .work(leader)?
                .signal_work(swarm_proto::v1::SignalWorkRequest {
                    id: id.clone(),
                    name: "approve".into(),
                    payload_json: "true".into(),
                })
                .await
                .expect_err("a signal to a finished item");
            assert_eq!(
                late.code(),
                tonic::Code::FailedPrecondition,
                "{}",
                late.message()
            );
            Ok(())
        },
    )
    .await
    .unwrap();
}

/// A durable sleep: a run sleeping longer than `durable_sleep_after` parks
/// (no lease), survives the death of the node that started it, and goes on
/// when due on another node, its finished steps not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t91_a_durable_sleep_survives_the_death_of_the_node_that_started_it() {
    within(Duration::from_secs(120), "t91_a_durable_sleep_survives_the_death_of_the_node_that_started_it", async {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("steps.log");
        let script = step_script(dir.path(), "step.sh", &log, "ran", 0);
        let spec = format!(
            "name: napper\nsteps:\n{}  - {{ name: nap, run: sleep, with: {{ duration: 4s }}, wait_for: [a] }}\n{}return: b\n",
            exec_step("a", &script, None, ""),
            exec_step("b", &script, Some("nap"), ""),
        );
        let options = ClusterOptions {
            extra_args: vec!["--durable-sleep-after".into(), "1s".into()],
            ..ClusterOptions::default()
        };
        let cluster = Cluster::start_with(3, options).await?;
        let id = submit_workflow(&cluster, 1, &spec).await?;
        let sleeping = wait_hold(&cluster, &id, "sleeping until").await?;
        assert!(sleeping.claim.is_none(), "a sleeping run holds no lease");
        let holder = sleeping.history.last().map(|h| h.agent.clone()).context("no holder")?;
        cluster.kill(holder.trim_start_matches("node-").parse()?)?;
        let done = wait_status(&cluster, &id, WorkStatus::Completed, Duration::from_secs(60)).await?;
        assert_eq!(succeeded_steps(&done), ["a", "nap", "b"]);
        let ran = lines(&log);
        assert_eq!(ran.len(), 2, "a and b ran once each: {ran:?}");
        let woke = done.history.last().map(|h| h.agent.clone()).unwrap_or_default();
        assert_ne!(woke, holder, "woken on another node");
        assert!(done.events.iter().any(|e| e.kind == "resumed" && e.detail == "woke up"), "{:?}", done.events);
        Ok(())
    })
    .await
    .unwrap();
}

/// `on_exhausted: pause`: a step that fails for good parks its run, paused
/// with the error, nothing undone; once the cause is fixed, `resume` runs
/// the step again and the run finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t92_on_exhausted_pause_parks_a_run_that_resume_finishes_once_fixed() {
    within(Duration::from_secs(120), "t92_on_exhausted_pause_parks_a_run_that_resume_finishes_once_fixed", async {
        let dir = tempfile::tempdir()?;
        let fixed = dir.path().join("fixed");
        let script = dir.path().join("flaky.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat > /dev/null\nif [ -e '{}' ]; then echo '{{\"ok\": true}}'; else echo 'upstream 503' >&2; exit 1; fi\n",
                fixed.display()
            ),
        )?;
        let mut perms = std::fs::metadata(&script)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms)?;
        let spec = format!(
            "name: fragile\nsteps:\n  - {{ name: first, run: echo, with: {{ value: 1 }} }}\n{}return: call\n",
            exec_step(
                "call",
                &script,
                Some("first"),
                "\n    max_retries: 1\n    backoff: { initial: 10ms }\n    on_exhausted: pause",
            ),
        );
        let cluster = Cluster::start(3).await?;
        let id = submit_workflow(&cluster, 1, &spec).await?;
        let paused = wait_hold(&cluster, &id, "paused").await?;
        assert!(paused.hold.contains("call") && paused.hold.contains("on_exhausted"), "{}", paused.hold);
        assert!(paused.claim.is_none());
        assert_eq!(succeeded_steps(&paused), ["first"], "nothing undone, nothing more run");
        std::fs::write(&fixed, "")?;
        cluster
            .work(2)?
            .resume_work(swarm_proto::v1::ResumeWorkRequest { id: id.clone() })
            .await?;
        let done = wait_status(&cluster, &id, WorkStatus::Completed, Duration::from_secs(60)).await?;
        assert_eq!(succeeded_steps(&done), ["first", "call"]);
        Ok(())
    })
    .await
    .unwrap();
}

/// A `switch` in a real cluster: the high-risk branch parks its run at a
/// signal step inside the branch, the signal reaches it, and `swarmctl work
/// get` shows the branch's steps as they went and the low-risk branch's as
/// skipped; a low-risk run takes the other branch without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t93_a_switch_takes_the_branch_its_value_names_and_shows_the_others_skipped() {
    within(
        Duration::from_secs(120),
        "t93_a_switch_takes_the_branch_its_value_names_and_shows_the_others_skipped",
        async {
            let cluster = Cluster::start(3).await?;
            let spec = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../cluster/workflows/review-by-risk.yaml"),
            )?;
            let submit = |risk: &'static str| {
                let inputs = json!({ "change": "raise-limits", "risk": risk });
                submit_with_inputs(&cluster, 1, &spec, inputs)
            };
            let steps_of = |out: &str| -> Result<Vec<(String, String)>> {
                let item: Value = serde_json::from_str(out).context("work get -o json")?;
                Ok(item["steps"]
                    .as_array()
                    .context("no steps")?
                    .iter()
                    .map(|s| {
                        (
                            s["name"].as_str().unwrap_or_default().to_string(),
                            s["status"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect())
            };

            let high = submit("high").await?;
            let waiting = wait_hold(&cluster, &high, "waiting for signal \"approve\"").await?;
            assert!(waiting.claim.is_none(), "a waiting run holds no lease");
            let (ok, out, err) = cluster
                .swarmctl(&["work", "get", &high, "-o", "json"])
                .await?;
            assert!(ok, "{err}");
            let rows = steps_of(&out)?;
            assert!(
                rows.contains(&("route/low/apply".into(), "skipped".into())),
                "{rows:?}"
            );
            assert!(
                !rows.iter().any(|(name, _)| name == "route/high/apply"),
                "apply has not started: {rows:?}"
            );
            let (ok, _, err) = cluster
                .swarmctl(&[
                    "work",
                    "signal",
                    &high,
                    "approve",
                    "--payload",
                    r#"{"by": "alice"}"#,
                ])
                .await?;
            assert!(ok, "a signal to a step inside a branch: {err}");
            // Each run completes with its branch's result, its steps as they went.
            let finished =
                |id: String, by: &'static str, expected: Vec<(&'static str, &'static str)>| {
                    let cluster = &cluster;
                    async move {
                        let (_, result) = completed(cluster, &id).await?;
                        assert_eq!(
                            result,
                            json!({ "change": "raise-limits", "approved_by": by })
                        );
                        let (_, out, _) = cluster
                            .swarmctl(&["work", "get", &id, "-o", "json"])
                            .await?;
                        let rows = steps_of(&out)?;
                        for (step, status) in expected {
                            assert!(
                                rows.contains(&(step.into(), status.into())),
                                "{step} {status}: {rows:?}"
                            );
                        }
                        anyhow::Ok(())
                    }
                };
            finished(
                high.clone(),
                "alice",
                vec![
                    ("draft", "succeeded"),
                    ("route", "succeeded"),
                    ("route/low/apply", "skipped"),
                    ("route/high/approve", "succeeded"),
                    ("route/high/apply", "succeeded"),
                    ("record", "succeeded"),
                ],
            )
            .await?;
            let (_, text, _) = cluster.swarmctl(&["work", "get", &high]).await?;
            assert!(
                text.contains("route/low/apply") && text.contains("skipped"),
                "{text}"
            );

            let low = submit("low").await?;
            finished(
                low,
                "policy",
                vec![
                    ("route/low/apply", "succeeded"),
                    ("route/high/approve", "skipped"),
                    ("route/high/apply", "skipped"),
                ],
            )
            .await?;
            Ok(())
        },
    )
    .await
    .unwrap();
}
