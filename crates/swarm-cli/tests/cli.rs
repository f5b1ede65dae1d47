//! `swarmctl` as a process against a fake node on a real socket: exit
//! codes, stdout/stderr, and the JSON shapes scripts rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use swarm_proto::v1::admin_service_server::{AdminService, AdminServiceServer};
use swarm_proto::v1::work_service_server::{WorkService, WorkServiceServer};
use swarm_proto::v1::*;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Serves one work item, `w1`, claimed by `a1` under token 5, and a
/// workflow item, `w9` (`w8` when submitted with key `fail`), whose events it
/// streams, breaking the first stream midway as a dying node would.
struct FakeNode {
    addr: String,
    dead_peer: String,
    /// How many watches were opened.
    watches: Arc<AtomicUsize>,
}

type Events = Pin<Box<dyn futures::Stream<Item = Result<WorkEvent, Status>> + Send>>;

/// The `outcome_json` of a step event of `run`.
fn recorded(run: &str, entry: Value) -> String {
    json!({"run": run, "entry": entry}).to_string()
}

/// The events of a two-step workflow item: claimed by node-1, step `a`,
/// handed off to node-3, step `b` retried once, then `end` (`completed` or
/// `failed`).
fn workflow_events(id: &str, end: &str) -> Vec<WorkEvent> {
    let status = |s: WorkStatus| s as i32;
    let step = |seq: u64, entry: Value| WorkEvent {
        seq,
        at_ms: 1_700_000_000_000 + seq,
        kind: "step".into(),
        step: entry["step"].as_str().unwrap_or("run").into(),
        detail: (seq - 2).to_string(),
        outcome_json: recorded(id, entry),
        status: status(WorkStatus::Claimed),
        ..Default::default()
    };
    let holder = |seq: u64, kind: &str, agent: &str, token: u64| WorkEvent {
        seq,
        at_ms: 1_700_000_000_000 + seq,
        kind: kind.into(),
        agent: agent.into(),
        token,
        status: status(WorkStatus::Claimed),
        ..Default::default()
    };
    let last = if end == "completed" {
        WorkEvent {
            status: status(WorkStatus::Completed),
            ..holder(9, "completed", "node-3", 5)
        }
    } else {
        WorkEvent {
            detail: "step \"b\" failed: boom".into(),
            status: status(WorkStatus::Failed),
            ..holder(9, "failed", "node-3", 5)
        }
    };
    vec![
        WorkEvent {
            kind: "submitted".into(),
            status: status(WorkStatus::Pending),
            ..Default::default()
        },
        holder(1, "claimed", "node-1", 4),
        step(
            2,
            json!({"event": "step_started", "step": "a", "attempt": 1}),
        ),
        step(
            3,
            json!({"event": "step_succeeded", "step": "a", "attempt": 1, "arguments": {}, "result": 1}),
        ),
        holder(4, "handed_off", "node-3", 5),
        step(
            5,
            json!({"event": "step_started", "step": "b", "attempt": 1}),
        ),
        step(
            6,
            json!({"event": "step_failed", "step": "b", "attempt": 1, "error": "boom", "will_retry": true}),
        ),
        step(
            7,
            json!({"event": "step_started", "step": "b", "attempt": 2}),
        ),
        step(
            8,
            json!({"event": "step_succeeded", "step": "b", "attempt": 2, "arguments": {}, "result": 2}),
        ),
        last,
    ]
}

/// The workflow item as it is after its events.
fn workflow_item(id: &str) -> WorkItem {
    let ok = id == "w9";
    let journal = |step: &str, token: u64, entry: Value| JournalEntry {
        step: step.into(),
        token,
        outcome_json: recorded(id, entry),
    };
    WorkItem {
        id: id.into(),
        r#type: "workflow".into(),
        status: if ok {
            WorkStatus::Completed
        } else {
            WorkStatus::Failed
        } as i32,
        result_json: ok.then(|| r#"{"sum":3}"#.into()),
        error: (!ok).then(|| "step \"b\" failed: boom".into()),
        history: vec![
            HolderRecord {
                agent: "node-1".into(),
                token: 4,
                granted_at_ms: 1,
                ended: "handed_off".into(),
            },
            HolderRecord {
                agent: "node-3".into(),
                token: 5,
                granted_at_ms: 2,
                ended: if ok { "completed" } else { "failed" }.into(),
            },
        ],
        journal: vec![
            journal(
                "a",
                4,
                json!({"event": "step_succeeded", "step": "a", "attempt": 1, "arguments": {}, "result": 1}),
            ),
            journal(
                "b",
                5,
                json!({"event": "step_failed", "step": "b", "attempt": 1, "error": "boom", "will_retry": true}),
            ),
            if ok {
                journal(
                    "b",
                    5,
                    json!({"event": "step_succeeded", "step": "b", "attempt": 2, "arguments": {}, "result": 2}),
                )
            } else {
                journal(
                    "b",
                    5,
                    json!({"event": "step_failed", "step": "b", "attempt": 2, "error": "boom", "will_retry": false}),
                )
            },
        ],
        ..Default::default()
    }
}

fn claimed(id: &str) -> WorkItem {
    WorkItem {
        id: id.into(),
        r#type: "build".into(),
        payload_json: r#"{"n":1}"#.into(),
        status: WorkStatus::Claimed as i32,
        attempt: 1,
        claim: Some(Claim {
            agent: "a1".into(),
            token: 5,
            lease_expires_at_ms: 1_700_000_030_000,
            lease_ms: 30_000,
            granted_at_ms: 1_700_000_000_000,
            progress: None,
        }),
        token: 5,
        history: vec![HolderRecord {
            agent: "a1".into(),
            token: 5,
            granted_at_ms: 1_700_000_000_000,
            ended: String::new(),
        }],
        ..Default::default()
    }
}

fn item(item: WorkItem) -> Result<Response<WorkResponse>, Status> {
    Ok(Response::new(WorkResponse { item: Some(item) }))
}

#[tonic::async_trait]
impl WorkService for FakeNode {
    type WatchWorkStream = Events;

    async fn watch_work(&self, r: Request<WatchWorkRequest>) -> Result<Response<Events>, Status> {
        let r = r.into_inner();
        let end = match r.id.as_str() {
            "w9" => "completed",
            "w8" => "failed",
            _ => return Err(Status::not_found(format!("work item {:?} not found", r.id))),
        };
        let first = self.watches.fetch_add(1, Ordering::SeqCst) == 0;
        let final_status = if end == "completed" {
            WorkStatus::Completed
        } else {
            WorkStatus::Failed
        };
        let mut events: Vec<Result<WorkEvent, Status>> = workflow_events(&r.id, end)
            .into_iter()
            .map(|mut e| {
                // As a real node does: every event carries the item's status
                // when it is sent, and the second watch comes after the end.
                if !first {
                    e.status = final_status as i32;
                }
                Ok(e)
            })
            .collect();
        if !r.from_start {
            // Live only: what happens from the handoff on.
            events.drain(..4);
        }
        if first {
            // The node dies after the first few events.
            events.truncate(if r.from_start { 4 } else { 2 });
            events.push(Err(Status::unavailable("node shutting down")));
        }
        let stream = tokio_stream::StreamExt::throttle(
            tokio_stream::iter(events),
            std::time::Duration::from_millis(2),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn submit(&self, r: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let r = r.into_inner();
        if r.idempotency_key.is_empty() {
            return Err(Status::invalid_argument("the cli always sends a key"));
        }
        let id = if r.idempotency_key == "fail" {
            "w8"
        } else {
            "w9"
        };
        Ok(Response::new(SubmitResponse {
            item: Some(WorkItem {
                id: id.into(),
                r#type: r.r#type,
                priority: r.priority,
                requires: r.requires,
                payload_json: r.payload_json,
                status: WorkStatus::Pending as i32,
                idempotency_key: r.idempotency_key,
                ..Default::default()
            }),
            created: true,
        }))
    }
    async fn claim(&self, r: Request<ClaimRequest>) -> Result<Response<ClaimResponse>, Status> {
        let r = r.into_inner();
        let items = if r.agent == "idle" {
            vec![]
        } else {
            assert_eq!(r.lease_ms, 10_000);
            vec![claimed("w1")]
        };
        Ok(Response::new(ClaimResponse { items }))
    }
    async fn renew(&self, r: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let r = r.into_inner();
        let rejected = r
            .tokens
            .iter()
            .filter(|t| **t != 5)
            .map(|t| RenewFailure {
                token: *t,
                error: format!("agent \"a1\" holds no live claim with token {t}"),
            })
            .collect();
        Ok(Response::new(RenewResponse {
            renewed: vec![claimed("w1")],
            rejected,
        }))
    }
    async fn complete(
        &self,
        r: Request<CompleteRequest>,
    ) -> Result<Response<WorkResponse>, Status> {
        let r = r.into_inner();
        if r.token != 5 {
            return Err(Status::failed_precondition(format!(
                "stale token {} for work item {:?}: current token is 5",
                r.token, r.id
            )));
        }
        item(WorkItem {
            status: WorkStatus::Completed as i32,
            claim: None,
            result_json: Some(r.result_json),
            ..claimed(&r.id)
        })
    }
    async fn fail(&self, _: Request<FailRequest>) -> Result<Response<WorkResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn release(&self, _: Request<ReleaseRequest>) -> Result<Response<WorkResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn handoff(&self, _: Request<HandoffRequest>) -> Result<Response<WorkResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn cancel(&self, r: Request<CancelRequest>) -> Result<Response<WorkResponse>, Status> {
        let r = r.into_inner();
        item(WorkItem {
            r#type: "workflow".into(),
            cancel_requested: Some(r.reason),
            ..claimed(&r.id)
        })
    }
    async fn get_work(&self, r: Request<GetWorkRequest>) -> Result<Response<WorkResponse>, Status> {
        let r = r.into_inner();
        if r.id == "missing" {
            return Err(Status::not_found(format!("work item {:?} not found", r.id)));
        }
        if r.id == "w9" || r.id == "w8" {
            return item(workflow_item(&r.id));
        }
        assert_eq!(r.consistency, ReadConsistency::Local as i32);
        item(claimed(&r.id))
    }
    async fn list_work(
        &self,
        r: Request<ListWorkRequest>,
    ) -> Result<Response<ListWorkResponse>, Status> {
        let r = r.into_inner();
        if r.r#type == "many" {
            return many_page(&r);
        }
        let mut second = claimed("w2");
        if let Some(c) = second.claim.as_mut() {
            c.agent = "node-2".into();
            c.token = 6;
            c.progress = Some("step 2/3".into());
        }
        let items = vec![claimed("w1"), second]
            .into_iter()
            .filter(|i| {
                r.holder.is_empty() || i.claim.as_ref().is_some_and(|c| c.agent == r.holder)
            })
            .collect();
        Ok(Response::new(ListWorkResponse {
            items,
            next_page_token: String::new(),
        }))
    }
    async fn work_stats(
        &self,
        _: Request<WorkStatsRequest>,
    ) -> Result<Response<WorkStatsResponse>, Status> {
        let counts = |pending, claimed, completed, cancelled| StatusCounts {
            pending,
            claimed,
            completed,
            failed: 0,
            cancelled,
        };
        Ok(Response::new(WorkStatsResponse {
            by_status: Some(counts(2, 1, 4, 1)),
            by_type: [
                ("workflow".to_string(), counts(1, 0, 0, 1)),
                ("build".to_string(), counts(1, 1, 4, 0)),
            ]
            .into(),
            oldest_pending_age_ms: Some(90_500),
            oldest_pending_id: "w3".into(),
            total: 8,
            oldest_pending_age_ms_by_type: [
                ("build".to_string(), 90_500),
                ("workflow".to_string(), 1_200),
            ]
            .into(),
            scheduled: 1,
            ..Default::default()
        }))
    }
    async fn pause_work(
        &self,
        _: Request<swarm_proto::v1::PauseWorkRequest>,
    ) -> Result<Response<swarm_proto::v1::WorkResponse>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    async fn signal_work(
        &self,
        _: Request<swarm_proto::v1::SignalWorkRequest>,
    ) -> Result<Response<swarm_proto::v1::WorkResponse>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    async fn resume_work(
        &self,
        _: Request<swarm_proto::v1::ResumeWorkRequest>,
    ) -> Result<Response<swarm_proto::v1::WorkResponse>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    async fn retry_work(
        &self,
        _: Request<RetryWorkRequest>,
    ) -> Result<Response<RetryWorkResponse>, Status> {
        Err(Status::unimplemented("tests/queue_control.rs fakes retry"))
    }
}

/// `work list --type many`: 25 pending items `m00`..`m24` in answers of at
/// most 4 whatever the limit (as a node at its message limit answers), the
/// token after item N being `after-N`; limits and tokens checked as a node
/// checks them.
fn many_page(r: &ListWorkRequest) -> Result<Response<ListWorkResponse>, Status> {
    if r.limit > 10_000 {
        return Err(Status::invalid_argument(format!(
            "invalid limit: {} is over the maximum of 10000",
            r.limit
        )));
    }
    let start = match r.page_token.as_str() {
        "" => 0,
        token => token
            .strip_prefix("after-")
            .and_then(|n| n.parse::<usize>().ok())
            .map(|n| n + 1)
            .ok_or_else(|| {
                Status::invalid_argument("invalid page_token: not one this cluster issued")
            })?,
    };
    let limit = if r.limit == 0 { 1000 } else { r.limit as usize };
    let end = (start + limit.min(4)).min(25);
    let items = (start..end)
        .map(|n| WorkItem {
            id: format!("m{n:02}"),
            r#type: "many".into(),
            status: WorkStatus::Pending as i32,
            ..Default::default()
        })
        .collect();
    let next_page_token = if end < 25 {
        format!("after-{}", end - 1)
    } else {
        String::new()
    };
    Ok(Response::new(ListWorkResponse {
        items,
        next_page_token,
    }))
}

#[tonic::async_trait]
impl AdminService for FakeNode {
    async fn cluster_status(
        &self,
        _: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        Ok(Response::new(ClusterStatusResponse {
            leader_id: 1,
            term: 3,
            commit_index: 12,
            last_applied: 12,
            node_id: 1,
            members: vec![
                Member {
                    id: 1,
                    addr: self.addr.clone(),
                    role: MemberRole::Leader as i32,
                    reachable: true,
                    last_applied: 12,
                    lag: Some(0),
                    peer_addr: self.addr.clone(),
                },
                Member {
                    id: 2,
                    addr: self.dead_peer.clone(),
                    role: MemberRole::Follower as i32,
                    reachable: false,
                    last_applied: 7,
                    lag: Some(5),
                    peer_addr: self.dead_peer.clone(),
                },
            ],
            live_claims: 1,
            items: 2,
            items_removed: 0,
        }))
    }
    async fn add_node(
        &self,
        _: Request<AddNodeRequest>,
    ) -> Result<Response<AddNodeResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn remove_node(
        &self,
        _: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn transfer_leader(
        &self,
        _: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        Err(Status::unimplemented(""))
    }
}

/// Starts a fake node on 127.0.0.1:0 and returns its address.
async fn spawn_node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dead_peer = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let work = FakeNode {
        addr: addr.clone(),
        dead_peer: dead_peer.clone(),
        watches: Arc::default(),
    };
    let admin = FakeNode {
        addr: addr.clone(),
        dead_peer,
        watches: Arc::default(),
    };
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(WorkServiceServer::new(work))
            .add_service(AdminServiceServer::new(admin))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    addr
}

async fn swarmctl(addr: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(args)
        .env("SWARM_ENDPOINTS", addr)
        .env_remove("NO_COLOR")
        .output()
        .await
        .unwrap()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not json ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_prints_the_item_with_a_generated_key() {
    let addr = spawn_node().await;
    let out = swarmctl(
        &addr,
        &[
            "work",
            "submit",
            "--type",
            "build",
            "--payload",
            r#"{"a":[1]}"#,
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(v["id"], "w9");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["payload"], json!({"a": [1]}));
    assert_eq!(v["idempotency_key"].as_str().unwrap().len(), 36, "a uuid");
}

#[tokio::test(flavor = "multi_thread")]
async fn claim_prints_items_or_an_empty_array() {
    let addr = spawn_node().await;
    let out = swarmctl(
        &addr,
        &[
            "work", "claim", "--agent", "a1", "--lease", "10s", "-o", "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(v[0]["id"], "w1");
    assert_eq!(v[0]["token"], 5);
    assert_eq!(v[0]["lease_expires_at"], 1_700_000_030_000u64);
    assert_eq!(v[0]["payload"], json!({"n": 1}));

    let out = swarmctl(&addr, &["work", "claim", "--agent", "idle", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out), json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_token_exits_1_and_says_stale() {
    let addr = spawn_node().await;
    let out = swarmctl(&addr, &["work", "complete", "w1", "--token", "3"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(r#"stale token 3 for work item "w1": current token is 5"#),
        "{err}"
    );

    let out = swarmctl(
        &addr,
        &[
            "work",
            "complete",
            "w1",
            "--token",
            "5",
            "--result",
            "{\"ok\":true}",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(
        (v["status"].as_str(), v["result"].clone()),
        (Some("completed"), json!({"ok": true}))
    );
    assert_eq!(v["token"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn renew_shows_partial_results_and_fails_on_rejection() {
    let addr = spawn_node().await;
    let out = swarmctl(
        &addr,
        &[
            "work", "renew", "--agent", "a1", "--token", "5,4", "-o", "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(v["renewed"][0]["id"], "w1");
    assert_eq!(v["rejected"][0]["token"], 4);
    assert!(
        v["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("token 4")
    );
    assert!(
        stderr(&out).contains("1 of 2 token(s) rejected"),
        "{}",
        stderr(&out)
    );

    let out = swarmctl(
        &addr,
        &[
            "work", "renew", "--agent", "a1", "--token", "5", "-o", "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn get_and_list() {
    let addr = spawn_node().await;
    let out = swarmctl(&addr, &["work", "get", "w1", "--local", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(
        (v["holder"].as_str(), v["token"].as_u64()),
        (Some("a1"), Some(5))
    );
    assert_eq!(
        v["history"][0],
        json!({"agent": "a1", "token": 5, "granted_at": 1_700_000_000_000u64, "ended": null})
    );

    let out = swarmctl(&addr, &["work", "get", "missing", "--local"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(r#"work item "missing" not found"#),
        "{}",
        stderr(&out)
    );

    let out = swarmctl(&addr, &["work", "list", "-o", "json"]).await;
    let v = stdout_json(&out);
    assert_eq!(v.as_array().unwrap().len(), 2);

    let out = swarmctl(&addr, &["work", "list"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.starts_with("ID  TYPE   STATUS   HOLDER  TOKEN  ATTEMPT  PRIORITY  LEASE\n"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 3, "{table}");
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn many(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("m{n:02}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_takes_a_limit_and_a_page_token() {
    let addr = spawn_node().await;
    let out = swarmctl(
        &addr,
        &[
            "work", "list", "--type", "many", "--limit", "10", "-o", "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Short answers are followed up to the limit; the array keeps its shape.
    assert_eq!(ids(&stdout_json(&out)), many(0..10));
    assert_eq!(stderr(&out), "next page token: after-9\n");

    let out = swarmctl(
        &addr,
        &[
            "work",
            "list",
            "--type",
            "many",
            "--limit",
            "10",
            "--page-token",
            "after-9",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().count(), 11, "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("m10 "), "{table}");
    assert_eq!(stderr(&out), "next page token: after-19\n");

    let out = swarmctl(
        &addr,
        &[
            "work",
            "list",
            "--type",
            "many",
            "--page-token",
            "after-19",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ids(&stdout_json(&out)), many(20..25));
    assert_eq!(stderr(&out), "", "the last page has no next token");

    let out = swarmctl(
        &addr,
        &["work", "list", "--type", "many", "--limit", "20000"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("maximum of 10000"),
        "{}",
        stderr(&out)
    );
    let out = swarmctl(
        &addr,
        &["work", "list", "--type", "many", "--page-token", "x"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid page_token"),
        "{}",
        stderr(&out)
    );
    let out = swarmctl(&addr, &["work", "list", "--limit", "0"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_all_prints_every_page_as_one_list() {
    let addr = spawn_node().await;
    let out = swarmctl(
        &addr,
        &[
            "work", "list", "--type", "many", "--all", "--limit", "3", "-o", "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ids(&stdout_json(&out)), many(0..25));
    assert_eq!(stderr(&out), "");

    let out = swarmctl(&addr, &["work", "list", "--type", "many", "--all"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.lines().count(), 26, "one header, 25 rows: {table}");
    assert_eq!(table.lines().filter(|l| l.starts_with("ID ")).count(), 1);

    let out = swarmctl(
        &addr,
        &[
            "work",
            "list",
            "--type",
            "many",
            "--all",
            "--page-token",
            "after-19",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ids(&stdout_json(&out)), many(20..25));

    let out = swarmctl(
        &addr,
        &["work", "list", "--all", "--holder", "nobody", "-o", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out), json!([]));
    let out = swarmctl(&addr, &["work", "list", "--all", "--holder", "nobody"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("no work items"));
}

#[tokio::test(flavor = "multi_thread")]
async fn work_stats_shapes() {
    let addr = spawn_node().await;
    let out = swarmctl(&addr, &["work", "stats", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout_json(&out),
        json!({
            "by_status": {"pending": 2, "claimed": 1, "completed": 4, "failed": 0, "cancelled": 1},
            "by_type": {
                "build": {"pending": 1, "claimed": 1, "completed": 4, "failed": 0, "cancelled": 0},
                "workflow": {"pending": 1, "claimed": 0, "completed": 0, "failed": 0, "cancelled": 1},
            },
            "oldest_pending_age_ms": 90_500,
            "oldest_pending_id": "w3",
            "oldest_pending_age_ms_by_type": {"build": 90_500, "workflow": 1_200},
            "total": 8,
            "scheduled": 1,
            "dead_letters": 0,
            "by_concurrency_key": {},
        })
    );

    let out = swarmctl(&addr, &["work", "stats"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "TYPE      PENDING  CLAIMED  COMPLETED  FAILED  CANCELLED\n\
         build     1        1        4          0       0\n\
         workflow  1        0        0          0       1\n\
         (all)     2        1        4          0       1\n\
         \n\
         total           8\n\
         scheduled       1\n\
         dead letters    0\n\
         oldest pending  1m 30s (w3)\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_status_probes_each_member() {
    let addr = spawn_node().await;
    let out = swarmctl(&addr, &["cluster", "status", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(
        (v["leader_id"].as_u64(), v["term"].as_u64()),
        (Some(1), Some(3))
    );
    let members = v["members"].as_array().unwrap();
    assert_eq!(members[0]["role"], "leader");
    assert_eq!(members[0]["reachable"], true);
    assert_eq!(members[0]["last_applied"], 12);
    assert_eq!(members[1]["role"], "follower");
    assert_eq!(members[1]["reachable"], false);
    assert_eq!(members[1]["last_applied"], 7, "the leader's view");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2_without_contacting_anyone() {
    let out = swarmctl("127.0.0.1:1", &["work", "complete", "w1"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let out = swarmctl(
        "127.0.0.1:1",
        &["work", "submit", "--type", "t", "--payload", "nope"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
}

/// A two-step workflow spec in a temp dir that lives as long as the guard.
fn workflow_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sum.yaml");
    std::fs::write(
        &path,
        "name: sum\ninputs: [x]\nsteps:\n  - name: a\n    run: echo\n    arguments: { v: input(x) }\n  - name: b\n    run: echo\n    arguments: { v: result(a) }\n",
    )
    .unwrap();
    (dir, path.display().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_run_submits_the_spec_inputs_and_base_dir() {
    let addr = spawn_node().await;
    let (dir, file) = workflow_file();
    let out = swarmctl(
        &addr,
        &[
            "workflow",
            "run",
            &file,
            "--input",
            "x=3",
            "--priority",
            "2",
            "--requires",
            "gpu,linux",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(v["id"], "w9");
    assert_eq!(v["type"], "workflow");
    assert_eq!(v["priority"], 2);
    assert_eq!(v["requires"], json!(["gpu", "linux"]));
    assert_eq!(v["idempotency_key"].as_str().unwrap().len(), 36, "a uuid");
    let payload = &v["payload"];
    assert_eq!(
        payload["spec"].as_str().unwrap(),
        std::fs::read_to_string(&file).unwrap()
    );
    assert_eq!(payload["inputs"], json!({"x": 3}));
    assert_eq!(
        payload["base_dir"].as_str().unwrap(),
        dir.path().display().to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_run_checks_inputs_before_submitting() {
    let (_dir, file) = workflow_file();
    let out = swarmctl("127.0.0.1:1", &["workflow", "run", &file]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("workflow \"sum\" cannot start"),
        "{}",
        stderr(&out)
    );
    let out = swarmctl(
        "127.0.0.1:1",
        &["workflow", "run", &file, "--timeout", "5m"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "--timeout needs --wait");
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_run_wait_follows_the_run_through_a_broken_stream() {
    let addr = spawn_node().await;
    let (_dir, file) = workflow_file();
    let out = swarmctl(
        &addr,
        &[
            "workflow",
            "run",
            &file,
            "--input",
            "x=3",
            "--wait",
            "--timeout",
            "30s",
            "-o",
            "json",
        ],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        stdout_json(&out),
        json!({
            "id": "w9",
            "status": "completed",
            "result": {"sum": 3},
            "error": null,
            "steps": [
                {"name": "a", "status": "succeeded", "attempts": 1, "node": "node-1"},
                {"name": "b", "status": "succeeded", "attempts": 2, "node": "node-3"},
            ],
        })
    );
    // stderr is not a terminal here: plain lines, each event once.
    assert!(!err.contains('\r'), "{err}");
    for line in [
        "claimed by node-1 with token 4",
        "step a succeeded (attempt 1)",
        "handed off to node-3 with token 5",
        "step b failed on attempt 1, retrying: boom",
        "[##########..........] 1/2 steps  running: b on node-3",
        "[####################] 2/2 steps",
        "completed",
    ] {
        assert_eq!(
            err.lines().filter(|l| *l == line).count(),
            1,
            "{line:?} once in:\n{err}"
        );
    }
    assert!(err.contains("watch interrupted at"), "{err}");
    assert!(err.contains("watching again"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_run_wait_exits_1_when_the_run_failed() {
    let addr = spawn_node().await;
    let (_dir, file) = workflow_file();
    let out = swarmctl(
        &addr,
        &[
            "workflow", "run", &file, "--input", "x=3", "--key", "fail", "--wait",
        ],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.contains("status  failed\n"), "{table}");
    assert!(
        table.contains("b     failed     2         node-3"),
        "{table}"
    );
    assert!(err.contains("failed: step \"b\" failed: boom"), "{err}");
    assert!(
        err.contains("error: workflow \"sum\" failed: step \"b\" failed: boom"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn work_watch_prints_each_event_once_until_the_item_ends() {
    let addr = spawn_node().await;
    let out = swarmctl(
        &addr,
        &["work", "watch", "w9", "--from-start", "-o", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    assert_eq!(
        lines[4],
        json!({"seq": 4, "at": 1_700_000_000_004u64, "kind": "handed_off", "agent": "node-3",
               "token": 5, "step": null, "detail": null, "status": "completed", "outcome": null})
    );
    assert_eq!(lines[3]["outcome"]["entry"]["event"], "step_succeeded");
    assert_eq!(lines[9]["kind"], "completed");

    // A live-only watch, in a table.
    let addr = spawn_node().await;
    let out = swarmctl(&addr, &["work", "watch", "w9"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("TIME "), "{table}");
    assert!(
        rows[0].ends_with("STEP                      DETAIL"),
        "{table}"
    );
    assert!(
        rows[1].contains("handed_off        node-3        5"),
        "{table}"
    );
    assert!(
        rows.iter()
            .any(|r| r.ends_with("b                         failed on attempt 1, retrying: boom")),
        "{table}"
    );
    assert_eq!(rows.len(), 7, "header + seq 4..=9, none twice:\n{table}");

    let out = swarmctl(&addr, &["work", "watch", "missing"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_list_shapes() {
    let addr = spawn_node().await;
    let out = swarmctl(&addr, &["claims", "list", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(
        v[1],
        json!({"agent": "node-2", "id": "w2", "type": "build", "token": 6,
               "lease_expires_at": 1_700_000_030_000u64, "lease_remaining_ms": 0,
               "progress": "step 2/3"})
    );
    assert_eq!(v[0]["progress"], Value::Null);

    let out = swarmctl(&addr, &["claims", "list", "--agent", "node-2"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "AGENT   ID  TYPE   TOKEN  LEASE    PROGRESS\nnode-2  w2  build  6      expired  step 2/3\n"
    );

    let out = swarmctl(&addr, &["claims", "list", "--agent", "nobody"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("no live claims"));
}

#[tokio::test(flavor = "multi_thread")]
async fn get_shows_workflow_steps_and_cancel_says_it_is_a_request() {
    let addr = spawn_node().await;
    let out = swarmctl(&addr, &["work", "get", "w9", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(
        v["steps"],
        json!([
            {"name": "a", "status": "succeeded", "attempts": 1, "node": "node-1"},
            {"name": "b", "status": "succeeded", "attempts": 2, "node": "node-3"},
        ])
    );
    assert_eq!(v["history"][1]["agent"], "node-3");
    assert_eq!(v["cancel_requested"], Value::Null);
    assert_eq!(v["events"], json!([]));

    let out = swarmctl(&addr, &["work", "get", "w9"]).await;
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table.contains("STEP  STATUS     ATTEMPTS  NODE\na     succeeded  1         node-1\n"),
        "{table}"
    );

    let out = swarmctl(
        &addr,
        &["work", "cancel", "w1", "--reason", "user", "-o", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["cancel_requested"], "user");
    assert!(
        stderr(&out).contains("cancel requested: the holder is undoing completed steps"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_check_reports_under_the_chaos_suites_names_and_exits_1() {
    // The fake's w2 is claimed under token 6 while its holder record and
    // item token say 5, a token w1 holds too; node 2 does not answer.
    let addr = spawn_node().await;
    let out = swarmctl(&addr, &["chaos", "check", "--settle", "1s", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("the replicas show anomalies"));
    let v = stdout_json(&out);
    assert_eq!(v["clean"], false);
    assert_eq!(
        v["replicas"],
        json!([{"node": 1, "applied": 12, "items": 2}])
    );
    assert_eq!(v["replicas_compared"], true);
    assert!(
        v["unreachable"][0].as_str().unwrap().starts_with("node 2 "),
        "{v}"
    );
    assert_eq!(
        v["anomalies"],
        json!({
            "double_grant": 1,
            "token_not_increasing": 2,
            "duplicate_completion": 0,
            "unknown_applied_twice": 0,
            "replica_divergence": 0,
        })
    );
    let examples = v["examples"].as_object().unwrap();
    assert_eq!(
        examples.keys().collect::<Vec<_>>(),
        ["double_grant", "token_not_increasing"]
    );
    assert!(
        v["examples"]["double_grant"][0]
            .as_str()
            .unwrap()
            .contains("node 1, item w2: the claim has token 6"),
        "{v}"
    );

    let out = swarmctl(&addr, &["chaos", "check", "--settle", "1s"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.contains("double_grant: 1\n"), "{table}");
    assert!(table.contains("token_not_increasing: 2\n"), "{table}");
}

/// The words of the line of `text` whose first word is `first`.
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.first() == Some(&first))
        .unwrap_or_else(|| panic!("no line starts with {first:?} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn top_prints_one_frame_of_members_leader_queues_and_claims() {
    let addr = spawn_node().await;
    let out = swarmctl(&addr, &["top", "--once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(!text.contains('\x1b'), "plain text, no escapes: {text:?}");
    assert!(
        text.starts_with(&format!(
            "node: 1 ({addr})  leader: 1  term: 3  commit: 12  applied: 12\n"
        )),
        "{text}"
    );
    // Members: each asked itself; the dead one is unreachable, with the leader's view.
    assert_eq!(
        row(&text, "ID"),
        ["ID", "ADDR", "ROLE", "APPLIED", "LAG", "REACHABLE"]
    );
    assert_eq!(row(&text, "1"), ["1", &addr, "leader", "12", "0", "yes"]);
    assert_eq!(row(&text, "2")[2..], ["follower", "7", "5", "no"]);
    // Queues per type, each with its own queue's age: the oldest pending
    // item (w3, a build) is a minute and a half old.
    assert_eq!(
        row(&text, "build"),
        ["build", "1", "1", "4", "0", "0", "1m", "30s"]
    );
    assert_eq!(
        row(&text, "workflow"),
        ["workflow", "1", "0", "0", "0", "1", "1s"]
    );
    assert_eq!(
        row(&text, "(all)"),
        ["(all)", "2", "1", "4", "0", "1", "1m", "30s", "(w3)"]
    );
    // Live claims: holder, item, type, token, lease left.
    assert_eq!(row(&text, "a1")[..5], ["a1", "w1", "build", "5", "expired"]);
    assert_eq!(row(&text, "node-2")[..4], ["node-2", "w2", "build", "6"]);

    // A pipe gets the same single frame without --once.
    let piped = swarmctl(&addr, &["top", "--interval", "2s"]).await;
    assert_eq!(piped.status.code(), Some(0), "{}", stderr(&piped));
    assert_eq!(String::from_utf8(piped.stdout).unwrap(), text);
}

#[tokio::test(flavor = "multi_thread")]
async fn top_json_has_each_part_in_its_commands_shape() {
    let addr = spawn_node().await;
    let out = swarmctl(&addr, &["top", "-o", "json", "--claims", "1"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(v["cluster"]["leader_id"], 1);
    assert_eq!(v["cluster"]["term"], 3);
    assert_eq!(v["cluster"]["members"][1]["reachable"], false);
    assert_eq!(v["stats"]["by_type"]["build"]["completed"], 4);
    assert_eq!(v["stats"]["total"], 8);
    assert_eq!(v["claims"][0]["agent"], "a1");
    assert_eq!(v["errors"], json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn top_shows_what_it_could_not_read_and_exits_1() {
    let out = swarmctl("127.0.0.1:1", &["top", "--once"]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.starts_with("cluster: error: get cluster status"),
        "{text}"
    );
    assert!(text.contains("\nqueues: error: read work stats"), "{text}");
    assert!(
        text.contains("\nlive claims: error: list claimed work items"),
        "{text}"
    );
    assert!(
        stderr(&out).starts_with("error: could not read cluster: "),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn top_refuses_a_bad_interval_or_claims_count() {
    for (args, says) in [
        (
            &["top", "--interval", "soon"][..],
            "not a duration like 500ms",
        ),
        (&["top", "--interval", "10ms"][..], "at least 100ms"),
        (&["top", "--interval", "0s"][..], "at least 100ms"),
        (&["top", "--claims", "0"][..], "--claims"),
    ] {
        let out = swarmctl("127.0.0.1:1", args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn top_on_a_terminal_redraws_in_place_until_q() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let addr = spawn_node().await;
    // util-linux `script` runs swarmctl on a pseudo-terminal and passes our
    // stdin to it as keys.
    let command = format!("{} top --interval 100ms", env!("CARGO_BIN_EXE_swarmctl"));
    let child = tokio::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("SWARM_ENDPOINTS", &addr)
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: util-linux `script` is not installed");
            return;
        }
        Err(e) => panic!("start script: {e}"),
    };
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let header = format!("node: 1 ({addr})  leader: 1  term: 3");
    let mut seen = Vec::new();
    // A bound so that a broken build fails instead of hanging, not a timing check.
    let drawn_twice = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        while String::from_utf8_lossy(&seen).matches(&header).count() < 2 {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "swarmctl top ended: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        drawn_twice.is_ok(),
        "no second frame: {}",
        String::from_utf8_lossy(&seen)
    );
    stdin.write_all(b"q").await.unwrap();
    stdin.flush().await.unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        stdout.read_to_end(&mut seen).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .expect("q quits");
    assert!(out.success(), "exit: {out:?}");
    let screen = String::from_utf8_lossy(&seen);
    let entered = screen
        .find("\x1b[?1049h")
        .expect("enters the alternate screen");
    let left = screen
        .rfind("\x1b[?1049l")
        .expect("leaves the alternate screen");
    assert!(entered < screen.find(&header).unwrap() && screen.rfind(&header).unwrap() < left);
    assert!(screen.contains("q to quit"), "{screen}");
    assert!(screen.contains("live claims: 2"), "{screen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cert_makes_a_ca_node_and_client_certificates_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let unused = "127.0.0.1:1";
    // Without a CA, a node certificate says what to do first.
    let out = swarmctl(unused, &["cert", "node", "--id", "1", "--dir", d]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("swarmctl cert ca"),
        "{}",
        stderr(&out)
    );
    for args in [
        vec!["cert", "ca", "--dir", d],
        vec![
            "cert",
            "node",
            "--id",
            "2",
            "--host",
            "10.0.0.2,node2.example",
            "--dir",
            d,
        ],
        vec!["cert", "client", "--name", "alice", "--dir", d],
    ] {
        let out = swarmctl(unused, &args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    for file in ["ca", "node-2", "client-alice"] {
        let pem = std::fs::read_to_string(dir.path().join(format!("{file}.pem"))).unwrap();
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE-----"),
            "{file}: {pem}"
        );
        let key = dir.path().join(format!("{file}.key"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{file}.key is readable by others");
    }
    // The node's certificate names it for its peers, and its hosts.
    let der = pem_der(&dir.path().join("node-2.pem"));
    for name in [&b"swarm-node-2"[..], b"node2.example"] {
        assert!(
            der.windows(name.len()).any(|w| w == name),
            "node-2.pem lacks {:?}",
            String::from_utf8_lossy(name)
        );
    }
    let out = swarmctl(unused, &["cert", "ca", "--dir", d]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not replacing"), "{}", stderr(&out));
}

/// The DER bytes of a one-certificate PEM file.
fn pem_der(path: &std::path::Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_flags_are_checked_before_anything_is_sent() {
    let out = swarmctl("127.0.0.1:1", &["--cert", "/x.pem", "cluster", "status"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = swarmctl(
        "127.0.0.1:1",
        &["--ca", "/no/such/ca.pem", "cluster", "status"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/no/such/ca.pem"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn token_create_prints_a_token_and_its_tokens_file_line() {
    let out = swarmctl(
        "127.0.0.1:1",
        &[
            "token", "create", "--role", "agent", "--agent", "alice", "-o", "json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v = stdout_json(&out);
    let token = v["token"].as_str().unwrap();
    assert!(token.starts_with("swt_") && token.len() == 68, "{token}");
    assert_eq!(
        v["line"].as_str().unwrap(),
        format!("{} agent alice", swarm_proto::token_hash(token))
    );
    for (args, says) in [
        (vec!["token", "create", "--role", "root"], "unknown role"),
        (vec!["token", "create", "--role", "agent"], "--agent"),
        (
            vec!["token", "create", "--role", "reader", "--agent", "bob"],
            "only agent tokens",
        ),
    ] {
        let out = swarmctl("127.0.0.1:1", &args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}
