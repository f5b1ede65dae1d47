//! The checker against real `swarmd` processes, without faults: a correct
//! cluster's history and replicas must check clean, a workflow's `exec` step
//! must reach the fenced resource through the ready-made script, and a
//! stale token must be rejected there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::json;
use swarm_proto::v1::{
    ClaimRequest, CompleteRequest, GetWorkRequest, ReadConsistency, ReleaseRequest, SubmitRequest,
    WorkItem, WorkStatus,
};
use swarm_tests::chaos::checker::{CheckInput, Liveness, check, collect_replicas};
use swarm_tests::chaos::fenced::{FencedResource, install_write_script};
use swarm_tests::chaos::history::{Grant, OpFields, OpKind, OpResult, Recorder};
use swarm_tests::{Cluster, poll_until, within};

async fn get(cluster: &Cluster, id: &str) -> Result<WorkItem> {
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    cluster
        .work(leader)?
        .get_work(GetWorkRequest {
            id: id.to_string(),
            consistency: ReadConsistency::Linearizable as i32,
        })
        .await?
        .into_inner()
        .item
        .ok_or_else(|| anyhow!("no item {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_cluster_checks_clean() {
    within(Duration::from_secs(180), "a healthy cluster checks clean", async {
        let cluster = Cluster::start(3).await?;
        let recorder = Recorder::new();
        let fenced = FencedResource::new();
        let server = fenced.serve().await?;
        let dir = tempfile::tempdir()?;
        let script = install_write_script(dir.path(), "write.sh", &server.write_url(), "wf")?;
        recorder.observe_cluster(&cluster).await;

        // Plain tasks: submit, claim, write, release, claim again, complete.
        let mut ids = Vec::new();
        for n in 0..6u32 {
            let node = u64::from(n % 3) + 1;
            let key = format!("chaos-replicas-{n}");
            let op = recorder.invoke(n, OpKind::Submit, OpFields::submit(key.as_str()));
            let item = cluster
                .work(node)?
                .submit(SubmitRequest {
                    r#type: "task".into(),
                    idempotency_key: key,
                    ..SubmitRequest::default()
                })
                .await?
                .into_inner();
            let id = item.item.context("submit returned no item")?.id;
            op.ok(OpResult::submitted(id.as_str(), item.created));
            ids.push(id);
        }
        let mut round = 0;
        while round < 2 {
            round += 1;
            for (n, agent) in ["a", "b", "c"].into_iter().enumerate() {
                let client = 100 + n as u32;
                let op = recorder.invoke(client, OpKind::Claim, OpFields::agent(agent));
                let items = cluster
                    .work(n as u64 + 1)?
                    .claim(ClaimRequest {
                        agent: agent.into(),
                        types: vec!["task".into()],
                        max: 1,
                        lease_ms: 30_000,
                        ..ClaimRequest::default()
                    })
                    .await?
                    .into_inner()
                    .items;
                let grants = Grant::from_items(&items);
                op.ok(OpResult::granted(grants.clone()));
                for g in grants {
                    let op = recorder.invoke(
                        client,
                        OpKind::FencedWrite,
                        OpFields {
                            writer: Some(agent.into()),
                            ..OpFields::held(g.item.as_str(), g.token)
                        },
                    );
                    match fenced.write(&g.item, g.token, agent) {
                        Ok(()) => op.ok(OpResult::none()),
                        Err(e) => op.failed(e.to_string()),
                    }
                    let (kind, request) = if round == 1 {
                        (OpKind::Release, "release")
                    } else {
                        (OpKind::Complete, "complete")
                    };
                    let op = recorder.invoke(client, kind, OpFields::held(g.item.as_str(), g.token));
                    let mut work = cluster.work(n as u64 + 1)?;
                    let answer = if request == "release" {
                        work.release(ReleaseRequest {
                            id: g.item.clone(),
                            token: g.token,
                        })
                        .await
                    } else {
                        work.complete(CompleteRequest {
                            id: g.item.clone(),
                            token: g.token,
                            result_json: "true".into(),
                        })
                        .await
                    };
                    match answer {
                        Ok(_) => op.ok(OpResult::none()),
                        Err(status) => op.unknown(status.to_string()),
                    }
                    // The released holder comes back with its old token.
                    if round == 1 {
                        assert!(fenced.write(&g.item, g.token, "stale").is_ok());
                    }
                }
            }
        }

        // A workflow whose exec step writes to the fenced resource.
        let spec = format!(
            "name: fenced\nsteps:\n  - name: write\n    run: exec\n    with: {{ command: [\"{}\"] }}\nreturn: write.written\n",
            script.display()
        );
        let wf = cluster
            .work(1)?
            .submit(SubmitRequest {
                r#type: "workflow".into(),
                payload_json: json!({ "spec": spec, "inputs": {} }).to_string(),
                idempotency_key: "chaos-replicas-wf".into(),
                ..SubmitRequest::default()
            })
            .await?
            .into_inner()
            .item
            .context("submit returned no item")?;
        let done = poll_until(Duration::from_secs(60), "the workflow completes", || async {
            let item = get(&cluster, &wf.id).await?;
            Ok((item.status == WorkStatus::Completed as i32).then_some(item))
        })
        .await?;
        assert_eq!(done.result_json.as_deref(), Some(done.token.to_string().as_str()));
        assert_eq!(fenced.highest(&wf.id), Some(done.token));
        // A stale holder of the workflow's item is fenced off.
        assert!(fenced.write(&wf.id, done.token - 1, "stale").is_err());

        // Half the plain tasks were never claimed in round 2: exempt from
        // the liveness check below.
        recorder.observe_cluster(&cluster).await;
        let replicas = collect_replicas(&cluster).await?;
        assert_eq!(replicas.len(), 3);
        let input = CheckInput {
            history: recorder.history(),
            fenced: fenced.log(),
            replicas,
            liveness: Liveness {
                deadline_passed: true,
                exempt_items: ids.iter().cloned().collect(),
                ..Liveness::default()
            },
            key_limits: Default::default(),
        };
        let report = check(&input);
        assert!(report.is_clean(), "{report}");
        assert!(report.stale_rejected >= 1);
        let hashes: std::collections::BTreeSet<_> = report.replica_hashes.values().collect();
        assert_eq!(hashes.len(), 1, "{report}");
        assert!(input.history.counts().ok >= 6 + 6);
        Ok(())
    })
    .await
    .unwrap();
}
