//! `swarmctl` as a process against a fake node on a real socket: exit
//! codes, stdout/stderr, and the JSON shapes scripts rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use serde_json::{Value, json};
use swarm_proto::v1::admin_service_server::{AdminService, AdminServiceServer};
use swarm_proto::v1::work_service_server::{WorkService, WorkServiceServer};
use swarm_proto::v1::*;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Serves one work item, `w1`, claimed by `a1` under token 5.
struct FakeNode {
    addr: String,
    dead_peer: String,
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
    type WatchWorkStream = tonic::codec::Streaming<swarm_proto::v1::WorkEvent>;

    async fn watch_work(
        &self,
        _: Request<swarm_proto::v1::WatchWorkRequest>,
    ) -> Result<Response<Self::WatchWorkStream>, Status> {
        Err(Status::unimplemented("watch is not faked"))
    }

    async fn submit(&self, r: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let r = r.into_inner();
        if r.idempotency_key.is_empty() {
            return Err(Status::invalid_argument("the cli always sends a key"));
        }
        Ok(Response::new(SubmitResponse {
            item: Some(WorkItem {
                id: "w9".into(),
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
    async fn cancel(&self, _: Request<CancelRequest>) -> Result<Response<WorkResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn get_work(&self, r: Request<GetWorkRequest>) -> Result<Response<WorkResponse>, Status> {
        let r = r.into_inner();
        if r.id == "missing" {
            return Err(Status::not_found(format!("work item {:?} not found", r.id)));
        }
        assert_eq!(r.consistency, ReadConsistency::Local as i32);
        item(claimed(&r.id))
    }
    async fn list_work(
        &self,
        _: Request<ListWorkRequest>,
    ) -> Result<Response<ListWorkResponse>, Status> {
        Ok(Response::new(ListWorkResponse {
            items: vec![claimed("w1"), claimed("w2")],
        }))
    }
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
                },
                Member {
                    id: 2,
                    addr: self.dead_peer.clone(),
                    role: MemberRole::Follower as i32,
                    reachable: false,
                    last_applied: 7,
                    lag: Some(5),
                },
            ],
            live_claims: 1,
            items: 2,
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
    };
    let admin = FakeNode {
        addr: addr.clone(),
        dead_peer,
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
