//! `swarmctl` as a process against a fake node on a real socket, for queue
//! control: delayed and keyed submits, dead letters and retry, schedules and
//! limits. The fake keeps the last submit and schedule create it was sent,
//! so that tests check the requests the flags make as well as the output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::process::Output;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use swarm_proto::v1::limit_service_server::{LimitService, LimitServiceServer};
use swarm_proto::v1::schedule_service_server::{ScheduleService, ScheduleServiceServer};
use swarm_proto::v1::work_service_server::{WorkService, WorkServiceServer};
use swarm_proto::v1::*;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// "Now" on the fake node's clock: 2026-12-24T09:00:00Z.
const NOW_MS: u64 = 1_798_102_800_000;

#[derive(Clone, Default)]
struct FakeNode {
    submitted: Arc<Mutex<Option<SubmitRequest>>>,
    created: Arc<Mutex<Option<CreateScheduleRequest>>>,
}

type Events = Pin<Box<dyn futures::Stream<Item = Result<WorkEvent, Status>> + Send>>;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not faked"))
}

/// A build item that failed for good: two attempts, the second's error.
fn dead_letter(id: &str) -> WorkItem {
    let holder = |agent: &str, token: u64| HolderRecord {
        agent: agent.into(),
        token,
        granted_at_ms: NOW_MS - 60_000 + token,
        ended: "failed".into(),
    };
    let event = |seq: u64, kind: &str, token: u64, detail: &str| WorkEvent {
        seq,
        at_ms: NOW_MS - 60_000 + seq,
        kind: kind.into(),
        token,
        detail: detail.into(),
        ..Default::default()
    };
    WorkItem {
        id: id.into(),
        r#type: "build".into(),
        status: WorkStatus::Failed as i32,
        attempt: 2,
        max_attempts: 2,
        error: Some("out of memory".into()),
        dead_letter: true,
        history: vec![holder("a1", 1), holder("a2", 2)],
        events: vec![
            event(0, "submitted", 0, ""),
            event(1, "claimed", 1, ""),
            event(2, "retrying", 1, "disk full"),
            event(3, "claimed", 2, ""),
            event(4, "failed", 2, "out of memory"),
        ],
        ..Default::default()
    }
}

/// Pending until an hour after [`NOW_MS`].
fn scheduled(id: &str) -> WorkItem {
    WorkItem {
        id: id.into(),
        r#type: "report".into(),
        status: WorkStatus::Pending as i32,
        not_before_ms: NOW_MS + 3_600_000,
        concurrency_key: "db".into(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl WorkService for FakeNode {
    type WatchWorkStream = Events;

    async fn submit(&self, r: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let r = r.into_inner();
        *self.submitted.lock().unwrap() = Some(r.clone());
        Ok(Response::new(SubmitResponse {
            item: Some(WorkItem {
                id: "w1".into(),
                r#type: r.r#type,
                status: WorkStatus::Pending as i32,
                not_before_ms: r.not_before_ms.max(NOW_MS + r.delay_ms),
                concurrency_key: r.concurrency_key,
                idempotency_key: r.idempotency_key,
                ..Default::default()
            }),
            created: true,
        }))
    }
    async fn get_work(&self, r: Request<GetWorkRequest>) -> Result<Response<WorkResponse>, Status> {
        let id = r.into_inner().id;
        let item = match id.as_str() {
            "dead" => dead_letter(&id),
            "later" => scheduled(&id),
            _ => return Err(Status::not_found(format!("work item {id:?} not found"))),
        };
        Ok(Response::new(WorkResponse { item: Some(item) }))
    }
    async fn list_work(
        &self,
        r: Request<ListWorkRequest>,
    ) -> Result<Response<ListWorkResponse>, Status> {
        let r = r.into_inner();
        let items = if r.dead_letter {
            vec![dead_letter("d1"), dead_letter("d2")]
        } else {
            vec![dead_letter("d1"), scheduled("later")]
        };
        Ok(Response::new(ListWorkResponse {
            items,
            next_page_token: String::new(),
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
        r: Request<RetryWorkRequest>,
    ) -> Result<Response<RetryWorkResponse>, Status> {
        let r = r.into_inner();
        let ids: Vec<&str> = match (r.id.as_str(), r.all, r.r#type.as_str()) {
            ("", true, "build") => vec!["d1", "d2"],
            ("", true, _) => Vec::new(),
            ("d1", false, "") => vec!["d1"],
            (id, false, "") => {
                return Err(Status::failed_precondition(format!(
                    "work item {id:?} is pending: cannot retry (only a failed item goes back to pending)"
                )));
            }
            _ => return Err(Status::invalid_argument("id and all together")),
        };
        let items = ids
            .into_iter()
            .map(|id| WorkItem {
                status: WorkStatus::Pending as i32,
                dead_letter: false,
                retries: 1,
                attempt: if r.reset_attempts { 0 } else { 2 },
                max_attempts: if r.reset_attempts { 2 } else { 3 },
                ..dead_letter(id)
            })
            .collect();
        Ok(Response::new(RetryWorkResponse { items }))
    }
    async fn work_stats(
        &self,
        _: Request<WorkStatsRequest>,
    ) -> Result<Response<WorkStatsResponse>, Status> {
        Ok(Response::new(WorkStatsResponse {
            by_status: Some(StatusCounts {
                pending: 4,
                claimed: 2,
                failed: 2,
                ..Default::default()
            }),
            total: 8,
            scheduled: 1,
            dead_letters: 2,
            by_concurrency_key: [(
                "db".to_string(),
                KeyStats {
                    running: 2,
                    pending: 3,
                    max_running: 2,
                    rate: "10/s burst 20".into(),
                },
            )]
            .into(),
            ..Default::default()
        }))
    }

    async fn watch_work(&self, _: Request<WatchWorkRequest>) -> Result<Response<Events>, Status> {
        unimplemented()
    }
    async fn claim(&self, _: Request<ClaimRequest>) -> Result<Response<ClaimResponse>, Status> {
        unimplemented()
    }
    async fn renew(&self, _: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        unimplemented()
    }
    async fn complete(
        &self,
        _: Request<CompleteRequest>,
    ) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
    async fn fail(&self, _: Request<FailRequest>) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
    async fn release(&self, _: Request<ReleaseRequest>) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
    async fn handoff(&self, _: Request<HandoffRequest>) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
    async fn cancel(&self, _: Request<CancelRequest>) -> Result<Response<WorkResponse>, Status> {
        unimplemented()
    }
}

/// `nightly` (backup at 03:00 Berlin time, fired twice) and `hourly`
/// (paused, never fired).
fn schedule(name: &str) -> Result<Schedule, Status> {
    let nightly = Schedule {
        name: "nightly".into(),
        cron: "0 3 * * *".into(),
        timezone: "Europe/Berlin".into(),
        r#type: "backup".into(),
        payload_json: "null".into(),
        next_fire_ms: NOW_MS + 61_200_000,
        created_at_ms: NOW_MS - 86_400_000,
        last_fire_ms: NOW_MS - 25_200_000,
        last_item_id: "w7".into(),
        fires: 2,
        ..Default::default()
    };
    match name {
        "nightly" => Ok(nightly),
        "hourly" => Ok(Schedule {
            name: "hourly".into(),
            cron: "@hourly".into(),
            timezone: String::new(),
            paused: true,
            last_fire_ms: 0,
            last_item_id: String::new(),
            fires: 0,
            ..nightly
        }),
        _ => Err(Status::not_found(format!("schedule {name:?} not found"))),
    }
}

fn schedule_answer(s: Schedule) -> Result<Response<ScheduleResponse>, Status> {
    Ok(Response::new(ScheduleResponse { schedule: Some(s) }))
}

#[tonic::async_trait]
impl ScheduleService for FakeNode {
    async fn create_schedule(
        &self,
        r: Request<CreateScheduleRequest>,
    ) -> Result<Response<ScheduleResponse>, Status> {
        let r = r.into_inner();
        *self.created.lock().unwrap() = Some(r.clone());
        schedule_answer(Schedule {
            name: r.name,
            cron: r.cron,
            timezone: r.timezone,
            r#type: r.r#type,
            payload_json: r.payload_json,
            priority: r.priority,
            requires: r.requires,
            max_attempts: r.max_attempts,
            concurrency_key: r.concurrency_key,
            overlap: r.overlap,
            next_fire_ms: NOW_MS + 3_600_000,
            created_at_ms: NOW_MS,
            ..Default::default()
        })
    }
    async fn get_schedule(
        &self,
        r: Request<ScheduleName>,
    ) -> Result<Response<ScheduleResponse>, Status> {
        schedule_answer(schedule(&r.into_inner().name)?)
    }
    async fn list_schedules(
        &self,
        _: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        Ok(Response::new(ListSchedulesResponse {
            schedules: vec![schedule("hourly")?, schedule("nightly")?],
        }))
    }
    async fn pause_schedule(
        &self,
        r: Request<ScheduleName>,
    ) -> Result<Response<ScheduleResponse>, Status> {
        let s = schedule(&r.into_inner().name)?;
        schedule_answer(Schedule { paused: true, ..s })
    }
    async fn resume_schedule(
        &self,
        r: Request<ScheduleName>,
    ) -> Result<Response<ScheduleResponse>, Status> {
        let s = schedule(&r.into_inner().name)?;
        schedule_answer(Schedule { paused: false, ..s })
    }
    async fn delete_schedule(
        &self,
        r: Request<ScheduleName>,
    ) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(DeleteResponse {
            deleted: schedule(&r.into_inner().name).is_ok(),
        }))
    }
    /// `nightly` submits w8; `hourly` is skipped (its last item still runs).
    async fn trigger_schedule(
        &self,
        r: Request<ScheduleName>,
    ) -> Result<Response<TriggerScheduleResponse>, Status> {
        let s = schedule(&r.into_inner().name)?;
        let item = (s.name == "nightly").then(|| WorkItem {
            id: "w8".into(),
            r#type: s.r#type.clone(),
            status: WorkStatus::Pending as i32,
            ..Default::default()
        });
        let s = Schedule {
            last_item_id: "w6".into(),
            ..s
        };
        Ok(Response::new(TriggerScheduleResponse {
            schedule: Some(s),
            item,
        }))
    }
}

#[tonic::async_trait]
impl LimitService for FakeNode {
    async fn set_limit(
        &self,
        r: Request<SetLimitRequest>,
    ) -> Result<Response<LimitResponse>, Status> {
        let r = r.into_inner();
        if !r.rate.is_empty() && !r.rate.contains('/') {
            return Err(Status::invalid_argument(format!(
                "invalid rate: {:?} has no /: write COUNT/PERIOD, such as 10/s, 600/m or 5/90s",
                r.rate
            )));
        }
        let burst = match (r.rate.is_empty(), r.burst) {
            (true, _) => 0,
            (false, 0) => 10,
            (false, burst) => burst,
        };
        Ok(Response::new(LimitResponse {
            limit: Some(Limit {
                key: r.key,
                max_running: r.max_running,
                tokens: burst.into(),
                rate: r.rate,
                burst,
                running: 1,
                pending: 4,
            }),
        }))
    }
    async fn get_limit(&self, r: Request<LimitKey>) -> Result<Response<LimitResponse>, Status> {
        let key = r.into_inner().key;
        Err(Status::not_found(format!("limit {key:?} not found")))
    }
    async fn list_limits(
        &self,
        _: Request<ListLimitsRequest>,
    ) -> Result<Response<ListLimitsResponse>, Status> {
        Ok(Response::new(ListLimitsResponse {
            limits: vec![Limit {
                key: "db".into(),
                max_running: 2,
                running: 2,
                pending: 3,
                ..Default::default()
            }],
        }))
    }
    async fn delete_limit(&self, r: Request<LimitKey>) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(DeleteResponse {
            deleted: r.into_inner().key == "db",
        }))
    }
}

/// Starts a fake node on 127.0.0.1:0; returns its address and the node, to
/// read back what it was sent.
async fn spawn_node() -> (String, FakeNode) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node = FakeNode::default();
    let served = node.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(WorkServiceServer::new(served.clone()))
            .add_service(ScheduleServiceServer::new(served.clone()))
            .add_service(LimitServiceServer::new(served))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    (addr, node)
}

async fn swarmctl(addr: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(args)
        .env("SWARM_ENDPOINTS", addr)
        .output()
        .await
        .unwrap()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not json ({e}): {}\nstderr: {}",
            stdout(out),
            stderr(out)
        )
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_with_a_delay_or_a_time_and_a_concurrency_key() {
    let (addr, node) = spawn_node().await;
    let out = swarmctl(
        &addr,
        &[
            "work",
            "submit",
            "--type",
            "report",
            "--delay",
            "10m",
            "--concurrency-key",
            "db",
            "-o",
            "json",
        ],
    )
    .await;
    ok(&out);
    let sent = node.submitted.lock().unwrap().take().unwrap();
    assert_eq!((sent.delay_ms, sent.not_before_ms), (600_000, 0));
    assert_eq!(sent.concurrency_key, "db");
    let v = stdout_json(&out);
    assert_eq!(v["status"], "pending");
    assert_eq!(v["not_before"], NOW_MS + 600_000);
    assert_eq!(v["concurrency_key"], "db");

    let at = "2026-12-24T10:00:00+01:00";
    let out = swarmctl(&addr, &["work", "submit", "--type", "report", "--at", at]).await;
    ok(&out);
    let sent = node.submitted.lock().unwrap().take().unwrap();
    assert_eq!((sent.not_before_ms, sent.delay_ms), (NOW_MS, 0));
    assert!(sent.concurrency_key.is_empty());

    // Bad or conflicting times are usage errors, and nothing is sent.
    for flags in [
        &["--at", "24.12.2026 09:00"][..],
        &["--delay", "soon"][..],
        &["--delay", "1m", "--at", at][..],
    ] {
        let args: Vec<&str> = ["work", "submit", "--type", "report"]
            .iter()
            .chain(flags)
            .copied()
            .collect();
        let out = swarmctl(&addr, &args).await;
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert!(
            stderr(&out).contains(flags[0]),
            "{flags:?}: {}",
            stderr(&out)
        );
    }
    assert!(node.submitted.lock().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn get_and_list_show_scheduled_items_and_dead_letters() {
    let (addr, _node) = spawn_node().await;
    let out = swarmctl(&addr, &["work", "get", "later"]).await;
    ok(&out);
    let text = stdout(&out);
    assert!(text.contains("status           scheduled\n"), "{text}");
    assert!(text.contains("not before       20"), "{text}");
    assert!(text.contains("concurrency key  db\n"), "{text}");

    let out = swarmctl(&addr, &["work", "get", "dead", "-o", "json"]).await;
    ok(&out);
    let v = stdout_json(&out);
    assert_eq!(v["dead_letter"], true);
    assert_eq!(v["last_error"], "out of memory");
    assert_eq!(
        v["attempts"],
        json!([
            {"attempt": 1, "agent": "a1", "token": 1, "granted_at": NOW_MS - 59_999, "ended": "failed", "error": "disk full"},
            {"attempt": 2, "agent": "a2", "token": 2, "granted_at": NOW_MS - 59_998, "ended": "failed", "error": "out of memory"},
        ])
    );

    let out = swarmctl(&addr, &["work", "list"]).await;
    ok(&out);
    let text = stdout(&out);
    let statuses: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "scheduled"], "{text}");

    let out = swarmctl(&addr, &["work", "list", "--dead-letter", "-o", "json"]).await;
    ok(&out);
    let v = stdout_json(&out);
    assert_eq!(
        (v[0]["id"].as_str(), v[1]["id"].as_str()),
        (Some("d1"), Some("d2"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_puts_items_back_and_prints_them() {
    let (addr, _node) = spawn_node().await;
    let out = swarmctl(&addr, &["work", "retry", "--all", "--type", "build"]).await;
    ok(&out);
    let text = stdout(&out);
    assert!(text.starts_with("ID  TYPE   STATUS   HOLDER"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        stderr(&out).contains("put 2 items back to pending"),
        "{}",
        stderr(&out)
    );

    let out = swarmctl(
        &addr,
        &["work", "retry", "d1", "--reset-attempts", "-o", "json"],
    )
    .await;
    ok(&out);
    let v = stdout_json(&out);
    assert_eq!(
        (v[0]["id"].as_str(), v[0]["attempt"].as_u64()),
        (Some("d1"), Some(0))
    );
    assert_eq!(
        (v[0]["status"].as_str(), v[0]["retries"].as_u64()),
        (Some("pending"), Some(1))
    );

    let out = swarmctl(&addr, &["work", "retry", "--all", "--type", "lint"]).await;
    ok(&out);
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("no dead letters to retry"));

    let out = swarmctl(&addr, &["work", "retry", "w2"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(r#"error: retry work item "w2": work item "w2" is pending"#),
        "{}",
        stderr(&out)
    );

    for args in [
        &["work", "retry"][..],
        &["work", "retry", "d1", "--all"][..],
    ] {
        assert_eq!(
            swarmctl(&addr, args).await.status.code(),
            Some(2),
            "{args:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_show_scheduled_dead_letters_and_keys() {
    let (addr, _node) = spawn_node().await;
    let out = swarmctl(&addr, &["work", "stats"]).await;
    ok(&out);
    let text = stdout(&out);
    assert!(text.contains("scheduled       1\n"), "{text}");
    assert!(text.contains("dead letters    2\n"), "{text}");
    assert!(
        text.ends_with(
            "CONCURRENCY_KEY  RUNNING  PENDING  MAX_RUNNING  RATE\n\
             db               2        3        2            10/s burst 20\n"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_create_sends_the_flags_and_prints_the_schedule() {
    let (addr, node) = spawn_node().await;
    let out = swarmctl(
        &addr,
        &[
            "schedule",
            "create",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Europe/Berlin",
            "--type",
            "backup",
            "--payload",
            r#"{"db":"main"}"#,
            "--requires",
            "disk",
            "--concurrency-key",
            "db",
            "--overlap",
            "allow",
            "-o",
            "json",
        ],
    )
    .await;
    ok(&out);
    let sent = node.created.lock().unwrap().take().unwrap();
    assert_eq!(
        (sent.timezone.as_str(), sent.overlap),
        ("Europe/Berlin", Overlap::Allow as i32)
    );
    let v = stdout_json(&out);
    assert_eq!(v["name"], "nightly");
    assert_eq!(v["payload"], json!({"db": "main"}));
    assert_eq!(v["requires"], json!(["disk"]));
    assert_eq!(v["overlap"], "allow");
    assert_eq!(v["next_fire"], NOW_MS + 3_600_000);

    // A workflow schedule carries the payload `workflow run` would submit.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sum.yaml");
    std::fs::write(
        &file,
        "name: sum\ninputs: [x]\nsteps:\n  - name: a\n    run: echo\n    arguments: { v: input(x) }\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let args = [
        "schedule",
        "create",
        "sums",
        "--cron",
        "@daily",
        "--workflow",
        file,
        "--input",
        "x=3",
    ];
    let out = swarmctl(&addr, &args).await;
    ok(&out);
    let sent = node.created.lock().unwrap().take().unwrap();
    assert_eq!(sent.r#type, "workflow");
    let payload: Value = serde_json::from_str(&sent.payload_json).unwrap();
    assert_eq!(payload["inputs"], json!({"x": 3}));
    assert_eq!(payload["base_dir"], dir.path().to_str().unwrap());
    assert!(payload["spec"].as_str().unwrap().starts_with("name: sum"));
    assert!(
        stdout(&out).contains("payload          workflow spec of 6 lines, inputs {\"x\":3}\n"),
        "{}",
        stdout(&out)
    );

    // An input the spec does not take is refused before anything is sent.
    let args = [
        "schedule",
        "create",
        "sums",
        "--cron",
        "@daily",
        "--workflow",
        file,
        "--input",
        "y=3",
    ];
    let out = swarmctl(&addr, &args).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(node.created.lock().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_list_get_trigger_and_delete() {
    let (addr, _node) = spawn_node().await;
    let out = swarmctl(&addr, &["schedule", "list"]).await;
    ok(&out);
    assert_eq!(
        stdout(&out),
        "NAME     CRON       TIMEZONE       TYPE    NEXT_FIRE             LAST_FIRE             FIRES  SKIPPED  MISSED\n\
         hourly   @hourly    UTC            backup  paused                -                     0      0        0\n\
         nightly  0 3 * * *  Europe/Berlin  backup  2026-12-25T02:00:00Z  2026-12-24T02:00:00Z  2      0        0\n"
    );

    let out = swarmctl(&addr, &["schedule", "get", "weekly"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: get schedule \"weekly\": schedule \"weekly\" not found\n"
    );

    let out = swarmctl(&addr, &["schedule", "pause", "nightly", "-o", "json"]).await;
    ok(&out);
    assert_eq!(stdout_json(&out)["paused"], true);

    let out = swarmctl(&addr, &["schedule", "trigger", "nightly", "-o", "json"]).await;
    ok(&out);
    let v = stdout_json(&out);
    assert_eq!(
        (v["schedule"]["name"].as_str(), v["item"]["id"].as_str()),
        (Some("nightly"), Some("w8"))
    );
    assert!(
        stderr(&out).contains("submitted work item w8"),
        "{}",
        stderr(&out)
    );

    let out = swarmctl(&addr, &["schedule", "trigger", "hourly"]).await;
    ok(&out);
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out)
            .contains("skipped this fire: its previous item (w6) is still pending or claimed"),
        "{}",
        stderr(&out)
    );

    let out = swarmctl(&addr, &["schedule", "delete", "nightly", "-o", "json"]).await;
    ok(&out);
    assert_eq!(
        stdout_json(&out),
        json!({"name": "nightly", "deleted": true})
    );
    let out = swarmctl(&addr, &["schedule", "delete", "weekly"]).await;
    ok(&out);
    assert!(stderr(&out).contains("nothing deleted"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_set_list_get_and_delete() {
    let (addr, _node) = spawn_node().await;
    let out = swarmctl(
        &addr,
        &[
            "limit",
            "set",
            "api",
            "--max-running",
            "4",
            "--rate",
            "10/s",
        ],
    )
    .await;
    ok(&out);
    assert_eq!(
        stdout(&out),
        "KEY  MAX_RUNNING  RATE  BURST  RUNNING  PENDING  TOKENS\n\
         api  4            10/s  10     1        4        10\n"
    );

    let out = swarmctl(&addr, &["limit", "set", "api", "--rate", "10"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(
            r#"error: set the limit on "api": invalid argument: invalid rate: "10" has no /"#
        ),
        "{}",
        stderr(&out)
    );
    let out = swarmctl(&addr, &["limit", "set", "api"]).await;
    assert_eq!(out.status.code(), Some(2));

    let out = swarmctl(&addr, &["limit", "list", "-o", "json"]).await;
    ok(&out);
    assert_eq!(
        stdout_json(&out),
        json!([{"key": "db", "max_running": 2, "rate": null, "burst": null, "running": 2, "pending": 3, "tokens": null}])
    );

    let out = swarmctl(&addr, &["limit", "get", "queue"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(r#"limit "queue" not found"#),
        "{}",
        stderr(&out)
    );

    let out = swarmctl(&addr, &["limit", "delete", "db", "-o", "json"]).await;
    ok(&out);
    assert_eq!(stdout_json(&out), json!({"key": "db", "deleted": true}));
}
