//! Bearer tokens and roles end to end: a three-node TLS cluster with a
//! tokens file, real processes, clients as users run them.
//!
//! - No token: `UNAUTHENTICATED`. An agent token running `node remove`:
//!   `PERMISSION_DENIED`, naming the role that would do.
//! - Agent "alice" cannot claim as "bob", nor complete, fail, release or hand
//!   off bob's item; she can do all that to her own.
//! - A reader lists but cannot submit; a submitter submits but cannot claim.
//! - A token added to the file works after SIGHUP, without a restart.
//! - The HTTP listener speaks HTTPS and wants a token for `/metrics` and
//!   `/api/*`, with the role the same gRPC read needs; health stays open.
//! - A node certificate naming a node that is not a member cannot add it;
//!   once an admin has added it (`node add`), the same certificate is a
//!   member's, and after `node remove` it is refused again.
//! - A client certificate the file names (`cert:NAME ROLE [AGENT]`) stands
//!   for a token of that role; one it does not name is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use swarm_client::{ClientConfig, ClientError, SwarmClient};
use swarm_proto::v1::{
    AddNodeRequest, ClaimRequest, CompleteRequest, FailRequest, HandoffRequest, ListWorkRequest,
    ReleaseRequest, RemoveNodeRequest, SubmitRequest,
};
use swarm_tests::{Cluster, ClusterOptions, within};

const SCENARIO: Duration = Duration::from_secs(90);

fn line(token: &str, role: &str, agent: Option<&str>) -> String {
    let mut line = format!("{} {role}", swarm_proto::token_hash(token));
    if let Some(agent) = agent {
        line = format!("{line} {agent}");
    }
    line + "\n"
}

async fn start(dir: &Path) -> Result<(Cluster, Vec<String>)> {
    swarm_cli::make_ca(dir)?;
    for id in 1..=3 {
        swarm_cli::make_node(dir, id, &["127.0.0.1".to_string()])?;
    }
    let tokens = [
        line("t-admin", "admin", None),
        line("t-alice", "agent", Some("alice")),
        line("t-bob", "agent", Some("bob")),
        line("t-reader", "reader", None),
        line("t-submitter", "submitter", None),
        "cert:carol agent carol\n".to_string(),
    ]
    .concat();
    for name in ["carol", "mallory"] {
        swarm_cli::make_client(dir, name)?;
    }
    // Never started: a node an admin has not added.
    swarm_cli::make_node(dir, 9, &["127.0.0.1".to_string()])?;
    let file = dir.join("tokens");
    std::fs::write(&file, tokens)?;
    let http = swarm_tests::free_ports(3)?;
    let cluster = Cluster::start_with(
        3,
        ClusterOptions {
            tls_dir: Some(dir.to_path_buf()),
            extra_args: vec!["--tokens-file".into(), file.display().to_string()],
            admin_token: Some("t-admin".into()),
            per_node_args: (1..=3)
                .map(|id: u64| {
                    let port = http[id as usize - 1];
                    (
                        id,
                        vec!["--http-listen".into(), format!("127.0.0.1:{port}")],
                    )
                })
                .collect(),
            ..ClusterOptions::default()
        },
    )
    .await?;
    std::fs::write(
        dir.join("http-ports"),
        http.iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )?;
    let endpoints = cluster
        .node_ids()
        .iter()
        .map(|id| cluster.addr(*id).map(|a| a.to_string()))
        .collect::<Result<_>>()?;
    Ok((cluster, endpoints))
}

fn client(dir: &Path, endpoints: &[String], token: Option<&str>) -> Result<SwarmClient> {
    client_as(dir, endpoints, token, None)
}

/// A client that presents the certificate `cert` (a file stem in `dir`:
/// `client-NAME`, `node-N`).
fn client_as(
    dir: &Path,
    endpoints: &[String],
    token: Option<&str>,
    cert: Option<&str>,
) -> Result<SwarmClient> {
    let ca = std::fs::read(dir.join("ca.pem"))?;
    let identity = match cert {
        Some(name) => Some((
            std::fs::read(dir.join(format!("{name}.pem")))?,
            std::fs::read(dir.join(format!("{name}.key")))?,
        )),
        None => None,
    };
    Ok(SwarmClient::connect_with(
        endpoints.to_vec(),
        ClientConfig {
            tls: Some(ClientConfig::tls_from_pem(&ca, identity)),
            token: token.map(str::to_string),
            retry: swarm_client::RetryPolicy::once(),
            ..ClientConfig::default()
        },
    )?)
}

/// The error's text, which must say `want` (a code's wording or a role).
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>, want: &str) -> Result<()> {
    match result {
        Ok(v) => bail!("expected a refusal saying {want:?}, got {v:?}"),
        Err(e) => {
            let text = e.to_string();
            ensure!(text.contains(want), "refusal does not say {want:?}: {text}");
            Ok(())
        }
    }
}

fn claim(agent: &str) -> ClaimRequest {
    ClaimRequest {
        agent: agent.into(),
        types: vec!["task".into()],
        max: 1,
        lease_ms: 30_000,
        ..ClaimRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_roles_and_agent_identities_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, endpoints) = start(dir.path()).await.unwrap();
    let d = dir.path();
    within(SCENARIO, "tokens scenario", async {
        cluster.wait_healthy(3, Duration::from_secs(30)).await?;
        refused(
            client(d, &endpoints, None)?.cluster_status().await,
            "needs a token",
        )?;
        refused(
            client(d, &endpoints, Some("t-wrong"))?
                .cluster_status()
                .await,
            "unknown token",
        )?;
        let alice = client(d, &endpoints, Some("t-alice"))?;
        let bob = client(d, &endpoints, Some("t-bob"))?;
        let victim = cluster.node_ids()[2];
        refused(
            alice.remove_node(RemoveNodeRequest { id: victim }).await,
            "needs role admin",
        )?;

        let submitter = client(d, &endpoints, Some("t-submitter"))?;
        for _ in 0..3 {
            submitter
                .submit(SubmitRequest {
                    r#type: "task".into(),
                    payload_json: "{}".into(),
                    ..SubmitRequest::default()
                })
                .await
                .context("submit")?;
        }
        refused(submitter.claim(claim("alice")).await, "needs role")?;
        let reader = client(d, &endpoints, Some("t-reader"))?;
        ensure!(reader.list_work(ListWorkRequest::default()).await?.len() == 3);
        refused(
            reader
                .submit(SubmitRequest {
                    r#type: "task".into(),
                    ..SubmitRequest::default()
                })
                .await,
            "needs role admin or submitter",
        )?;

        refused(alice.claim(claim("bob")).await, "acts as agent \"alice\"")?;
        let mine = alice
            .claim(claim("alice"))
            .await?
            .pop()
            .context("alice's item")?;
        let bobs = bob.claim(claim("bob")).await?.pop().context("bob's item")?;
        let bobs_token = bobs.token;
        let held_by_bob = "held by agent \"bob\"";
        refused(
            alice
                .complete(CompleteRequest {
                    id: bobs.id.clone(),
                    token: bobs_token,
                    result_json: "{}".into(),
                })
                .await,
            held_by_bob,
        )?;
        refused(
            alice
                .fail(FailRequest {
                    id: bobs.id.clone(),
                    token: bobs_token,
                    ..FailRequest::default()
                })
                .await,
            held_by_bob,
        )?;
        refused(
            alice
                .release(ReleaseRequest {
                    id: bobs.id.clone(),
                    token: bobs_token,
                })
                .await,
            held_by_bob,
        )?;
        refused(
            alice
                .handoff(HandoffRequest {
                    id: bobs.id.clone(),
                    token: bobs_token,
                    to_agent: "alice".into(),
                })
                .await,
            held_by_bob,
        )?;
        let done = alice
            .complete(CompleteRequest {
                id: mine.id.clone(),
                token: mine.token,
                result_json: "{}".into(),
            })
            .await?;
        ensure!(done.status == swarm_proto::v1::WorkStatus::Completed as i32);
        bob.complete(CompleteRequest {
            id: bobs.id.clone(),
            token: bobs_token,
            result_json: "{}".into(),
        })
        .await
        .context("bob completes his own")?;
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_a_token_added_to_the_file_works_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, endpoints) = start(dir.path()).await.unwrap();
    let d = dir.path();
    within(SCENARIO, "reload scenario", async {
        cluster.wait_healthy(3, Duration::from_secs(30)).await?;
        let carol = client(d, &endpoints, Some("t-carol"))?;
        refused(carol.cluster_status().await, "unknown token")?;
        let file = d.join("tokens");
        let mut text = std::fs::read_to_string(&file)?;
        text.push_str(&line("t-carol", "reader", None));
        std::fs::write(&file, text)?;
        for id in cluster.node_ids() {
            let pid = cluster.pid(id)?;
            let status = std::process::Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()?;
            ensure!(status.success(), "kill -HUP {pid}");
        }
        swarm_tests::wait_until(Duration::from_secs(10), "carol's token works", || async {
            carol.cluster_status().await.is_ok()
        })
        .await?;
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_a_client_certificate_the_file_names_has_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, endpoints) = start(dir.path()).await.unwrap();
    let d = dir.path();
    within(SCENARIO, "client certificate scenario", async {
        cluster.wait_healthy(3, Duration::from_secs(30)).await?;
        let carol = client_as(d, &endpoints, None, Some("client-carol"))?;
        let mallory = client_as(d, &endpoints, None, Some("client-mallory"))?;
        refused(mallory.cluster_status().await, "needs a token")?;
        refused(
            carol.remove_node(RemoveNodeRequest { id: 3 }).await,
            "needs role admin",
        )?;
        refused(carol.claim(claim("bob")).await, "acts as agent \"carol\"")?;
        client(d, &endpoints, Some("t-submitter"))?
            .submit(SubmitRequest {
                r#type: "task".into(),
                payload_json: "{}".into(),
                ..SubmitRequest::default()
            })
            .await?;
        let held = carol
            .claim(claim("carol"))
            .await?
            .pop()
            .context("carol's item")?;
        carol
            .complete(CompleteRequest {
                id: held.id.clone(),
                token: held.token,
                result_json: "{}".into(),
            })
            .await
            .context("carol completes her own")?;
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_the_http_listener_speaks_https_and_wants_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _) = start(dir.path()).await.unwrap();
    let d = dir.path();
    within(SCENARIO, "https scenario", async {
        cluster.wait_healthy(3, Duration::from_secs(30)).await?;
        let ca = std::fs::read(d.join("ca.pem"))?;
        let port: u16 = std::fs::read_to_string(d.join("http-ports"))?
            .split(',')
            .next()
            .context("a port")?
            .parse()?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let get = |path: &'static str, token: Option<&'static str>| {
            let ca = ca.clone();
            async move { swarm_tests::http::get_https(addr, path, &ca, token).await }
        };
        let (status, _) = get("/healthz", None).await?;
        ensure!(status == 200, "healthz: {status}");
        let (status, body) = get("/metrics", None).await?;
        ensure!(
            status == 401 && body.contains("needs a token"),
            "{status} {body}"
        );
        let (status, _) = get("/api/cluster", Some("t-wrong")).await?;
        ensure!(status == 401, "a wrong token: {status}");
        let (status, body) = get("/metrics", Some("t-reader")).await?;
        ensure!(
            status == 200 && body.contains("swarm_"),
            "reader /metrics: {status}"
        );
        let (status, _) = get("/api/work", Some("t-reader")).await?;
        ensure!(status == 200, "reader /api/work: {status}");
        // An agent lists nothing over gRPC, and nothing here either.
        let (status, body) = get("/api/work", Some("t-alice")).await?;
        ensure!(
            status == 403 && body.contains("ListWork"),
            "{status} {body}"
        );
        // Plain HTTP gets no answer from an HTTPS listener.
        let plain = swarm_tests::http::get(addr, "/healthz").await;
        ensure!(
            !matches!(plain, Ok((200, _))),
            "plain HTTP was served: {plain:?}"
        );
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_a_node_joins_only_once_an_admin_added_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, endpoints) = start(dir.path()).await.unwrap();
    let d = dir.path();
    within(SCENARIO, "member add scenario", async {
        cluster.wait_healthy(3, Duration::from_secs(30)).await?;
        let ports = swarm_tests::free_ports(2)?;
        let add = AddNodeRequest {
            id: 9,
            addr: format!("127.0.0.1:{}", ports[0]),
            voter: true,
            peer_addr: format!("127.0.0.1:{}", ports[1]),
        };
        let node9 = client_as(d, &endpoints, None, Some("node-9"))?;
        refused(node9.add_node(add.clone()).await, "swarmctl node add 9")?;
        refused(node9.cluster_status().await, "not a member")?;
        // The admin adds it before it runs: a learner until it joins.
        let admin = client(d, &endpoints, Some("t-admin"))?;
        let status = admin
            .add_node(AddNodeRequest {
                voter: false,
                ..add.clone()
            })
            .await?;
        let member = status
            .members
            .iter()
            .find(|m| m.id == 9)
            .context("node 9 in the membership")?;
        ensure!(member.peer_addr == add.peer_addr, "{member:?}");
        ensure!(!swarm_tests::is_voter(member.role), "{member:?}");
        // Its certificate is now a member's.
        swarm_tests::wait_until(Duration::from_secs(10), "node 9 is known", || async {
            node9.cluster_status().await.is_ok()
        })
        .await?;
        admin
            .remove_node(RemoveNodeRequest { id: 9 })
            .await
            .context("remove node 9")?;
        swarm_tests::wait_until(
            Duration::from_secs(10),
            "node 9 is refused again",
            || async { node9.cluster_status().await.is_err() },
        )
        .await?;
        // The three members are as healthy as before.
        cluster.wait_healthy(3, Duration::from_secs(10)).await?;
        Ok(())
    })
    .await
    .unwrap();
}
