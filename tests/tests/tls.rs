//! TLS end to end, with real processes and certificates made as
//! `swarmctl cert` makes them: a three-node cluster where every listener
//! speaks TLS and nodes reach each other over mutual TLS.
//!
//! - The cluster forms, replicates and serves work over TLS; a client with
//!   the CA works, a plaintext client gets an error that names TLS.
//! - Peer calls (`RaftService`) are admitted only from a node certificate
//!   naming a current member: no certificate, a client's, a non-member's,
//!   another CA's, and (after `node remove`) a removed member's are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use swarm_client::{ClientConfig, SwarmClient};
use swarm_proto::v1::raft_service_client::RaftServiceClient;
use swarm_proto::v1::{GetWorkRequest, RaftMessage, RemoveNodeRequest, SubmitRequest};
use swarm_tests::{Cluster, ClusterOptions, within};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const SCENARIO: Duration = Duration::from_secs(90);

/// A CA, certificates for nodes 1-3 and 9 (never a member), and a client
/// certificate, in `dir`.
fn make_certs(dir: &Path) -> Result<()> {
    swarm_cli::make_ca(dir)?;
    let hosts = ["127.0.0.1".to_string()];
    for id in [1, 2, 3, 9] {
        swarm_cli::make_node(dir, id, &hosts)?;
    }
    swarm_cli::make_client(dir, "alice")?;
    Ok(())
}

async fn tls_cluster(dir: &Path) -> Result<Cluster> {
    make_certs(dir)?;
    Cluster::start_with(
        3,
        ClusterOptions {
            tls_dir: Some(dir.to_path_buf()),
            ..ClusterOptions::default()
        },
    )
    .await
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    std::fs::read(dir.join(name)).with_context(|| format!("read {name}"))
}

/// One vote request to `node`'s peer port over TLS checked against `ca_dir`'s CA,
/// presenting `identity` (a `stem` of `dir`, as `node-1`) if given: the code
/// it is refused with, or `Ok` for a call past the peer check (refused later
/// as a malformed vote).
async fn peer_call(
    cluster: &Cluster,
    node: u64,
    ca_dir: &Path,
    identity: Option<(&Path, &str)>,
) -> Result<Code> {
    let addr = cluster.peer_addr(node)?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca_dir, "ca.pem")?))
        .domain_name("127.0.0.1");
    if let Some((dir, stem)) = identity {
        tls = tls.identity(Identity::from_pem(
            read(dir, &format!("{stem}.pem"))?,
            read(dir, &format!("{stem}.key"))?,
        ));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .context("connect")?;
    let answer = RaftServiceClient::new(channel)
        .vote(RaftMessage {
            data: b"not a vote".to_vec(),
        })
        .await;
    Ok(match answer {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_tls_cluster_serves_clients_with_the_ca_and_tells_plaintext_ones_why_not() {
    let certs = tempfile::tempdir().unwrap();
    let cluster = tls_cluster(certs.path()).await.unwrap();
    within(SCENARIO, "tls client scenario", async {
        // The harness itself talks TLS: the cluster formed over mutual TLS.
        let leader = cluster.wait_healthy(3, Duration::from_secs(30)).await?;
        let endpoints: Vec<String> = cluster
            .node_ids()
            .iter()
            .map(|id| cluster.addr(*id).map(|a| a.to_string()))
            .collect::<Result<_>>()?;
        let ca = read(certs.path(), "ca.pem")?;
        let client = SwarmClient::connect_with(
            endpoints.clone(),
            ClientConfig {
                tls: Some(ClientConfig::tls_from_pem(&ca, None)),
                ..ClientConfig::default()
            },
        )?;
        let submitted = client
            .submit(SubmitRequest {
                r#type: "task".into(),
                payload_json: "{}".into(),
                ..SubmitRequest::default()
            })
            .await
            .context("submit over TLS")?;
        let item = submitted.item.context("no item")?;
        // Replicated to every node over mutual TLS.
        let applied = cluster.applied(leader).await?;
        cluster
            .wait_applied(applied, Duration::from_secs(10))
            .await?;
        for id in cluster.node_ids() {
            let status = cluster.status(id).await?;
            ensure!(status.last_applied >= applied, "node {id} behind");
        }
        let got = client
            .get_work(GetWorkRequest {
                id: item.id.clone(),
                ..GetWorkRequest::default()
            })
            .await
            .context("get over TLS")?;
        ensure!(got.id == item.id);

        let plaintext = SwarmClient::connect_with(
            vec![endpoints[0].clone()],
            ClientConfig {
                retry: swarm_client::RetryPolicy::once(),
                ..ClientConfig::default()
            },
        )?;
        match plaintext.cluster_status().await {
            Ok(_) => bail!("a plaintext client was served by a TLS node"),
            Err(e) => {
                let text = e.to_string();
                ensure!(
                    text.contains("serves TLS") && text.contains("--ca"),
                    "the error does not say TLS: {text}"
                );
            }
        }
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_peer_calls_need_a_current_members_node_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let cluster = tls_cluster(certs.path()).await.unwrap();
    let other_ca = tempfile::tempdir().unwrap();
    make_certs(other_ca.path()).unwrap();
    within(SCENARIO, "peer certificate scenario", async {
        let leader = cluster.wait_healthy(3, Duration::from_secs(30)).await?;
        let dir = certs.path();
        // Past the check: a member's certificate (the vote is then refused
        // as malformed, which only a call past the check can be).
        let member = peer_call(&cluster, 2, dir, Some((dir, "node-1"))).await?;
        ensure!(member == Code::InvalidArgument, "member: {member:?}");
        for (who, identity, want) in [
            (
                "a client certificate",
                Some("client-alice"),
                Code::PermissionDenied,
            ),
            (
                "node 9, not a member",
                Some("node-9"),
                Code::PermissionDenied,
            ),
        ] {
            let got = peer_call(&cluster, 2, dir, identity.map(|s| (dir, s))).await?;
            ensure!(got == want, "{who}: {got:?}, expected {want:?}");
        }
        // No certificate, or another CA's node certificate: the peer port's
        // handshake itself refuses the connection.
        let none = peer_call(&cluster, 2, dir, None).await;
        ensure!(
            !matches!(none, Ok(Code::Ok | Code::InvalidArgument)),
            "a connection without a certificate got through: {none:?}"
        );
        let foreign = peer_call(&cluster, 2, dir, Some((other_ca.path(), "node-1"))).await;
        ensure!(
            !matches!(foreign, Ok(Code::Ok | Code::InvalidArgument)),
            "another CA's certificate got through: {foreign:?}"
        );

        // A removed member's certificate is refused from then on.
        let victim = cluster
            .node_ids()
            .into_iter()
            .find(|id| *id != leader && *id != 2)
            .context("a third node")?;
        let removed = cluster
            .admin(leader)?
            .remove_node(RemoveNodeRequest { id: victim })
            .await
            .context("remove a node")?;
        ensure!(removed.into_inner().status.is_some());
        swarm_tests::wait_until(
            Duration::from_secs(10),
            "node 2 sees the removal",
            || async {
                matches!(
                    peer_call(&cluster, 2, dir, Some((dir, &format!("node-{victim}")))).await,
                    Ok(Code::PermissionDenied)
                )
            },
        )
        .await?;
        Ok(())
    })
    .await
    .unwrap();
}
