//! End-to-end harness for Swarm: it runs real `swarmd` processes on ephemeral
//! 127.0.0.1 ports, each with its own data dir in a temporary directory, and
//! talks to them over gRPC the way an agent or an operator would. Faults are
//! real too: SIGKILL, SIGTERM, SIGSTOP/SIGCONT, always sent to a PID the
//! harness recorded when it spawned the process, never by name.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use swarm_tests::{within, Cluster};
//!
//! let cluster = Cluster::start(3).await?;
//! within(Duration::from_secs(60), "scenario", async {
//!     let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
//!     cluster.kill(leader)?;
//!     cluster.wait_for_leader(Duration::from_secs(10)).await?;
//!     Ok(())
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`Cluster`]: spawns, kills, stops, restarts, pauses and resumes nodes;
//!   waits for a leader or a healthy cluster; hands out gRPC clients per node
//!   and lists every item of a node, page by page.
//!   Dropping it SIGKILLs and reaps every process it started; when dropped
//!   during a panic it prints the tail of every node's log and keeps the
//!   temporary directory for inspection.
//! - [`ClusterOptions`]: Raft timings and the other `swarmd` flags a test
//!   may turn (snapshot interval, payload limit).
//! - [`within`], [`wait_until`], [`poll_until`]: every wait is bounded.
//! - [`swarmd_binary`] (`binary`): the `swarmd` to spawn, `$SWARMD_BIN` or
//!   `target/<profile>/swarmd` next to the test executable; tests never build
//!   it, a missing or stale one is an error that says how to build it.
//! - [`chaos`]: the chaos suite (link proxies, nemeses, workload, history,
//!   fenced resource, checker, runner); `src/bin/swarm-chaos.rs` drives it
//!   for `scripts/chaos.sh`.

mod binary;
pub mod chaos;
pub mod http;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use rustix::process::{Pid, Signal, kill_process};
use swarm_proto::v1::admin_service_client::AdminServiceClient;
use swarm_proto::v1::work_service_client::WorkServiceClient;
use swarm_proto::v1::{
    ClusterStatusRequest, ClusterStatusResponse, ListWorkRequest, MemberRole, WorkItem,
};
use tonic::transport::{Channel, Endpoint};

pub use binary::{swarmctl_binary, swarmd_binary};

/// A node's Raft id, as given to `swarmd --id`.
pub type NodeId = u64;

/// How long one status probe may take before the node counts as unresponsive.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a node may take to exit after SIGTERM before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two attempts of a polled condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// Runs `fut`, failing with a message naming `what` if it takes longer than
/// `limit`.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.with_context(|| format!("{what} failed")),
        Err(_) => bail!("{what} did not finish within {limit:?}"),
    }
}

/// Polls `condition` until it is true, for at most `timeout`. Each attempt is
/// itself cut off at the deadline, so a hung RPC cannot stretch the wait.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(timeout, what, || {
        let attempt = condition();
        async move { Ok(attempt.await.then_some(())) }
    })
    .await
}

/// Polls `attempt` until it answers `Ok(Some(value))`, for at most `timeout`.
/// `Ok(None)` and `Err(_)` both mean "not yet"; the last error is reported if
/// time runs out.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error: Option<anyhow::Error> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(match last_error {
                Some(e) => e.context(format!("{what}: not reached within {timeout:?}")),
                None => anyhow!("{what}: not reached within {timeout:?}"),
            });
        }
        match tokio::time::timeout(left, attempt()).await {
            Ok(Ok(Some(value))) => return Ok(value),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => last_error = Some(e),
            Err(_) => {}
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
}

/// The `swarmd` flags a test may turn. Raft timings are a little slower than
/// `swarmd`'s defaults: debug builds of several clusters share two cores, and
/// a heartbeat that misses its slot should not depose a healthy leader.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// `--snapshot-every`: build a snapshot after this many applied entries.
    pub snapshot_every: Option<u64>,
    /// `--max-payload-bytes`.
    pub max_payload_bytes: Option<u64>,
    /// How long [`Cluster::start_with`] waits for a leader and every voter.
    pub start_timeout: Duration,
    /// Any further flags, passed to every node.
    pub extra_args: Vec<String>,
    /// Flags for one node only, after `extra_args` (the chaos suite's
    /// `--peer-routes` through its link proxies).
    pub per_node_args: BTreeMap<NodeId, Vec<String>>,
    /// Environment variables set for every node, beside the flags: for
    /// what only the environment configures (`OTEL_BSP_SCHEDULE_DELAY`).
    pub env: Vec<(String, String)>,
    /// The nodes' ports, reserved by the caller (with [`free_ports`]) when
    /// something must know the addresses before launch; `None` picks them.
    pub ports: Option<Vec<u16>>,
    /// The nodes' peer ports (`--peer-listen`), likewise; `None` picks them.
    pub peer_ports: Option<Vec<u16>>,
    /// Serve peers on the client port (no `--peer-listen`), as a node
    /// configured without a peer port does.
    pub one_port: bool,
    /// An admin token of the nodes' tokens file: with tokens, a node's
    /// certificate alone does not make it a member, so the harness adds
    /// nodes 2..n through node 1 with this token (as an operator runs
    /// `swarmctl node add`) and their own `--join` then promotes them.
    pub admin_token: Option<String>,
    /// A directory made by `swarmctl cert` (`ca.pem`, `node-N.pem`/`.key`
    /// for every node): TLS on every node, mutual TLS between them, and the
    /// harness's own clients over TLS checked against `ca.pem`.
    pub tls_dir: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(250),
            election_max: Duration::from_millis(500),
            snapshot_every: None,
            max_payload_bytes: None,
            start_timeout: Duration::from_secs(60),
            extra_args: Vec::new(),
            per_node_args: BTreeMap::new(),
            env: Vec::new(),
            ports: None,
            peer_ports: None,
            one_port: false,
            admin_token: None,
            tls_dir: None,
        }
    }
}

/// One `swarmd` the harness manages.
struct Node {
    id: NodeId,
    addr: SocketAddr,
    /// Where peers reach it; `addr` when the cluster serves one port.
    peer_addr: SocketAddr,
    data_dir: PathBuf,
    /// stdout and stderr of every run of this node, appended across restarts.
    log_path: PathBuf,
    /// `--bootstrap` or `--join ...`: kept so that a restart launches the node
    /// exactly as it was first launched (both are no-ops once it is a member).
    membership_args: Vec<String>,
    /// The running process, if any. Behind a mutex so that `&Cluster` can be
    /// shared by concurrent tasks of a test while nodes are killed.
    process: Mutex<Option<Child>>,
    /// Whether the process is stopped by SIGSTOP: it cannot answer probes.
    paused: Mutex<bool>,
    /// One lazily connected channel for the node's lifetime; tonic reconnects
    /// it after a restart on the same port.
    channel: Channel,
}

impl Node {
    fn process(&self) -> MutexGuard<'_, Option<Child>> {
        // A poisoned lock only means another test thread panicked while
        // holding it; the `Child` inside is still valid.
        self.process
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn paused(&self) -> MutexGuard<'_, bool> {
        self.paused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pid(&self) -> Result<Pid> {
        let guard = self.process();
        let child = guard
            .as_ref()
            .ok_or_else(|| anyhow!("node {} is not running", self.id))?;
        Ok(Pid::from_child(child))
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.pid()?;
        kill_process(pid, signal)
            .with_context(|| format!("send {signal:?} to node {} (pid {pid:?})", self.id))
    }
}

/// A set of real `swarmd` processes on 127.0.0.1 forming (or meant to form)
/// one Raft group. Node ids run from 1; node 1 bootstraps, the others join it.
pub struct Cluster {
    /// `None` only while dropping.
    dir: Option<tempfile::TempDir>,
    options: ClusterOptions,
    binary: PathBuf,
    nodes: BTreeMap<NodeId, Node>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir_path())
            .field(
                "nodes",
                &self
                    .nodes
                    .values()
                    .map(|n| (n.id, n.addr))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Cluster {
    /// Starts `n` nodes with [`ClusterOptions::default`] and waits until they
    /// form a healthy cluster: a leader and `n` voters.
    pub async fn start(n: usize) -> Result<Cluster> {
        Cluster::start_with(n, ClusterOptions::default()).await
    }

    /// Starts `n` nodes with `options` and waits until they form a healthy
    /// cluster. On failure the nodes' log tails are printed and every process
    /// is killed.
    pub async fn start_with(n: usize, options: ClusterOptions) -> Result<Cluster> {
        let cluster = Cluster::launch(n, options)?;
        let timeout = cluster.options.start_timeout;
        let started = async {
            if let Some(token) = cluster.options.admin_token.clone() {
                cluster.add_members(&token, timeout).await?;
            }
            cluster.wait_healthy(n, timeout).await
        };
        if let Err(e) = started.await {
            cluster.print_log_tails();
            return Err(e.context(format!("start a {n}-node cluster")));
        }
        Ok(cluster)
    }

    /// Spawns `n` nodes without waiting for anything.
    pub fn launch(n: usize, options: ClusterOptions) -> Result<Cluster> {
        if n == 0 {
            bail!("a cluster needs at least one node");
        }
        let binary = swarmd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("swarm-e2e-")
            .tempdir()
            .context("create the cluster's temporary directory")?;
        // Client and peer ports in one call, so that none is picked twice.
        let mut picked = free_ports(2 * n)?;
        let mut pick = |given: &Option<Vec<u16>>, what: &str| -> Result<Vec<u16>> {
            match given {
                Some(ports) if ports.len() == n => Ok(ports.clone()),
                Some(ports) => bail!("{} {what} given for {n} nodes", ports.len()),
                None => Ok(picked.drain(..n).collect()),
            }
        };
        let ports = pick(&options.ports, "ports")?;
        let peer_ports = pick(&options.peer_ports, "peer ports")?;
        let first = SocketAddr::from(([127, 0, 0, 1], ports[0]));
        let mut nodes = BTreeMap::new();
        for (i, (port, peer_port)) in ports.into_iter().zip(peer_ports).enumerate() {
            let id = i as NodeId + 1;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let peer_addr = match options.one_port {
                true => addr,
                false => SocketAddr::from(([127, 0, 0, 1], peer_port)),
            };
            let membership_args = if id == 1 {
                vec!["--bootstrap".to_string()]
            } else {
                vec!["--join".to_string(), first.to_string()]
            };
            let node = Node {
                id,
                addr,
                peer_addr,
                data_dir: dir.path().join(format!("node{id}")),
                log_path: dir.path().join(format!("node{id}.log")),
                membership_args,
                process: Mutex::new(None),
                paused: Mutex::new(false),
                channel: channel_to(addr, id, options.tls_dir.as_deref())?,
            };
            nodes.insert(id, node);
        }
        let cluster = Cluster {
            dir: Some(dir),
            options,
            binary,
            nodes,
        };
        for id in cluster.node_ids() {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    /// Adds every node but node 1 through node 1 as a learner, with an
    /// admin `token`, retrying until node 1 leads.
    async fn add_members(&self, token: &str, timeout: Duration) -> Result<()> {
        let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}")
            .parse()
            .context("the admin token as a header")?;
        for id in self.node_ids().into_iter().filter(|id| *id != 1) {
            let node = self.node(id)?;
            let request = swarm_proto::v1::AddNodeRequest {
                id,
                addr: node.addr.to_string(),
                voter: false,
                peer_addr: node.peer_addr.to_string(),
            };
            poll_until(timeout, &format!("node 1 adds node {id}"), || async {
                let mut call = tonic::Request::new(request.clone());
                call.metadata_mut().insert("authorization", bearer.clone());
                self.admin(1)?
                    .add_node(call)
                    .await
                    .map(|_| Some(()))
                    .map_err(|s| anyhow!("add node {id}: {s}"))
            })
            .await?;
        }
        Ok(())
    }

    /// Every node id, running or not.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Nodes whose process is alive and not paused.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.process().is_some() && !*n.paused())
            .map(|n| n.id)
            .collect()
    }

    /// The node's gRPC address for clients (and peers, with
    /// [`ClusterOptions::one_port`]).
    /// Runs `swarmctl` against every node of the cluster: its exit success,
    /// stdout and stderr.
    pub async fn swarmctl(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let endpoints: Vec<String> = self
            .node_ids()
            .into_iter()
            .map(|n| self.addr(n).map(|a| a.to_string()))
            .collect::<Result<_>>()?;
        let out = tokio::process::Command::new(swarmctl_binary()?)
            .arg("--endpoints")
            .arg(endpoints.join(","))
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .context("run swarmctl")?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    pub fn addr(&self, node: NodeId) -> Result<SocketAddr> {
        Ok(self.node(node)?.addr)
    }

    /// The node's gRPC address for peers.
    pub fn peer_addr(&self, node: NodeId) -> Result<SocketAddr> {
        Ok(self.node(node)?.peer_addr)
    }

    /// The node's data directory.
    pub fn data_dir(&self, node: NodeId) -> Result<PathBuf> {
        Ok(self.node(node)?.data_dir.clone())
    }

    /// The file collecting the node's stdout and stderr.
    pub fn log_path(&self, node: NodeId) -> Result<PathBuf> {
        Ok(self.node(node)?.log_path.clone())
    }

    /// Everything the node has logged so far, across restarts.
    pub fn log(&self, node: NodeId) -> Result<String> {
        let path = self.log_path(node)?;
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
    }

    /// The process id of a running node.
    pub fn pid(&self, node: NodeId) -> Result<i32> {
        Ok(self.node(node)?.pid()?.as_raw_nonzero().get())
    }

    /// A WorkService client for one node.
    pub fn work(&self, node: NodeId) -> Result<WorkServiceClient<Channel>> {
        let channel = self.node(node)?.channel.clone();
        Ok(WorkServiceClient::new(channel)
            .max_decoding_message_size(swarm_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(swarm_proto::MAX_MESSAGE_BYTES))
    }

    /// The gRPC channel to one node's client port (for the services
    /// without a helper here: schedules, limits).
    pub fn channel(&self, node: NodeId) -> Result<Channel> {
        Ok(self.node(node)?.channel.clone())
    }

    /// Every item matching `request` as `node` lists them, following the
    /// pages from `request.page_token`; each page is one call cut off after
    /// `timeout`. A node lists at most 10,000 items per answer, so anything
    /// that reads a whole replica reads it this way.
    pub async fn list_all(
        &self,
        node: NodeId,
        mut request: ListWorkRequest,
        timeout: Duration,
    ) -> Result<Vec<WorkItem>> {
        let mut work = self.work(node)?;
        let mut items = Vec::new();
        loop {
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(timeout);
            let page = tokio::time::timeout(timeout, work.list_work(call))
                .await
                .map_err(|_| anyhow!("list work on node {node}: no answer within {timeout:?}"))?
                .with_context(|| format!("list work on node {node}"))?
                .into_inner();
            items.extend(page.items);
            if page.next_page_token.is_empty() {
                return Ok(items);
            }
            request.page_token = page.next_page_token;
        }
    }

    /// An AdminService client for one node.
    pub fn admin(&self, node: NodeId) -> Result<AdminServiceClient<Channel>> {
        let channel = self.node(node)?.channel.clone();
        Ok(AdminServiceClient::new(channel)
            .max_decoding_message_size(swarm_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(swarm_proto::MAX_MESSAGE_BYTES))
    }

    /// SIGKILLs a node and reaps it.
    pub fn kill(&self, node: NodeId) -> Result<ExitStatus> {
        let n = self.node(node)?;
        let mut guard = n.process();
        let mut child = guard
            .take()
            .ok_or_else(|| anyhow!("node {node} is not running"))?;
        // Child::kill sends SIGKILL to the recorded pid; a stopped process
        // dies too, so no SIGCONT is needed first.
        child
            .kill()
            .with_context(|| format!("SIGKILL node {node}"))?;
        let status = child.wait().with_context(|| format!("reap node {node}"))?;
        *n.paused() = false;
        drop(guard);
        self.note(node, &format!("SIGKILLed ({status})"));
        Ok(status)
    }

    /// SIGTERMs a node and waits for it to exit (SIGKILL after a bound).
    /// Returns its exit status; a node that had to be SIGKILLed is an error.
    pub async fn stop(&self, node: NodeId) -> Result<ExitStatus> {
        let n = self.node(node)?;
        if *n.paused() {
            n.signal(Signal::CONT)?;
            *n.paused() = false;
        }
        n.signal(Signal::TERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            {
                let mut guard = n.process();
                let child = guard
                    .as_mut()
                    .ok_or_else(|| anyhow!("node {node} is not running"))?;
                if let Some(status) = child
                    .try_wait()
                    .with_context(|| format!("wait for node {node}"))?
                {
                    *guard = None;
                    drop(guard);
                    self.note(node, &format!("stopped by SIGTERM ({status})"));
                    return Ok(status);
                }
                if Instant::now() >= deadline {
                    // Child::kill is SIGKILL to the recorded pid.
                    let _ = child.kill();
                    let status = child.wait();
                    *guard = None;
                    drop(guard);
                    self.note(node, "did not exit after SIGTERM: SIGKILLed");
                    bail!(
                        "node {node} did not exit within {STOP_TIMEOUT:?} of SIGTERM (then SIGKILLed: {status:?})"
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts a node that is not running again, on the same port with the
    /// same data dir and flags. Does not wait for it to rejoin.
    pub fn restart(&self, node: NodeId) -> Result<()> {
        self.spawn(node)
    }

    /// Stops a node with SIGSTOP: it keeps its sockets but answers nothing.
    pub fn pause(&self, node: NodeId) -> Result<()> {
        let n = self.node(node)?;
        n.signal(Signal::STOP)?;
        *n.paused() = true;
        self.note(node, "paused (SIGSTOP)");
        Ok(())
    }

    /// Resumes a paused node with SIGCONT.
    pub fn resume(&self, node: NodeId) -> Result<()> {
        let n = self.node(node)?;
        n.signal(Signal::CONT)?;
        *n.paused() = false;
        self.note(node, "resumed (SIGCONT)");
        Ok(())
    }

    /// Whether the node is stopped by SIGSTOP.
    pub fn is_paused(&self, node: NodeId) -> bool {
        self.node(node).is_ok_and(|n| *n.paused())
    }

    /// Appends a line about a fault injected from outside the harness (a
    /// link proxy) to the node's log, so the log tells what was done.
    pub fn note_fault(&self, node: NodeId, what: &str) {
        self.note(node, what);
    }

    /// The exit status of a node's process if it has exited on its own
    /// (the harness did not stop it), without waiting.
    pub fn exited(&self, node: NodeId) -> Result<Option<ExitStatus>> {
        let n = self.node(node)?;
        let mut guard = n.process();
        match guard.as_mut() {
            Some(child) => child
                .try_wait()
                .with_context(|| format!("check whether node {node} exited")),
            None => Ok(None),
        }
    }

    /// Fails if any node the harness believes running has exited: a crash
    /// should stop a wait at once, naming the node, not after its timeout.
    pub fn check_alive(&self) -> Result<()> {
        for id in self.node_ids() {
            if let Some(status) = self.exited(id)? {
                bail!(
                    "node {id} exited unexpectedly ({status}); log tail:\n{}",
                    self.log_tail(id, 30)
                );
            }
        }
        Ok(())
    }

    /// AdminService.ClusterStatus as seen by one node, bounded by a short
    /// timeout.
    pub async fn status(&self, node: NodeId) -> Result<ClusterStatusResponse> {
        let mut admin = self.admin(node)?;
        let mut request = tonic::Request::new(ClusterStatusRequest {});
        request.set_timeout(PROBE_TIMEOUT);
        match tokio::time::timeout(PROBE_TIMEOUT, admin.cluster_status(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(anyhow!("cluster status from node {node}: {status}")),
            Err(_) => bail!("cluster status from node {node}: no answer within {PROBE_TIMEOUT:?}"),
        }
    }

    /// The node that, among the running ones, says it is the leader (the one
    /// with the highest term if several do). `None` when none does.
    pub async fn leader_id(&self) -> Result<Option<NodeId>> {
        let mut best: Option<(u64, NodeId)> = None;
        for id in self.running() {
            if let Ok(s) = self.status(id).await
                && s.leader_id != 0
                && s.leader_id == s.node_id
                && s.node_id == id
                && best.is_none_or(|(term, _)| s.term > term)
            {
                best = Some((s.term, id));
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    /// Waits until a running node says it is the leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        poll_until(timeout, "a leader among the running nodes", || async {
            self.check_alive()?;
            self.leader_id().await
        })
        .await
    }

    /// Waits until a running node is the leader and reaches every member,
    /// and every running node names that leader and sees `voters` voters (a
    /// node that just joined learns of its own promotion a moment after the
    /// leader). Returns the leader's id.
    pub async fn wait_healthy(&self, voters: usize, timeout: Duration) -> Result<NodeId> {
        let what = format!("a leader with {voters} voters, known to every running node");
        poll_until(timeout, &what, || async {
            self.check_alive()?;
            let Some(leader) = self.leader_id().await? else {
                bail!("no running node says it is the leader");
            };
            let status = self.status(leader).await?;
            let seen = status.members.iter().filter(|m| is_voter(m.role)).count();
            if seen != voters {
                bail!("leader {leader} sees {seen} voters: {:?}", status.members);
            }
            for id in self.running() {
                let s = self.status(id).await?;
                if s.leader_id != leader {
                    bail!("node {id} names leader {} instead of {leader}", s.leader_id);
                }
                let seen = s.members.iter().filter(|m| is_voter(m.role)).count();
                if seen != voters {
                    bail!("node {id} sees {seen} voters: {:?}", s.members);
                }
            }
            Ok(Some(leader))
        })
        .await
    }

    /// The running nodes that are not the current leader.
    pub async fn followers(&self) -> Result<Vec<NodeId>> {
        let leader = self.wait_for_leader(Duration::from_secs(10)).await?;
        Ok(self
            .running()
            .into_iter()
            .filter(|id| *id != leader)
            .collect())
    }

    /// The last applied log index of one node's own replica.
    pub async fn applied(&self, node: NodeId) -> Result<u64> {
        Ok(self.status(node).await?.last_applied)
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        let what = format!("every running node applied index {index}");
        poll_until(timeout, &what, || async {
            self.check_alive()?;
            for id in self.running() {
                let applied = self.applied(id).await?;
                if applied < index {
                    bail!("node {id} has applied {applied} of {index}");
                }
            }
            Ok(Some(()))
        })
        .await
    }

    /// Runs one more `swarmd` with `args` (nothing else is added) until it
    /// exits, SIGKILLing it if it is still running after `timeout`. Returns its
    /// exit status and everything it wrote. For tests of startup failures.
    pub async fn run_swarmd_to_exit(
        &self,
        args: &[String],
        timeout: Duration,
    ) -> Result<(ExitStatus, String)> {
        let dir = self.dir_path();
        let log_path = dir.join(format!("extra-{}.log", unique_suffix()));
        let log =
            File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let mut command = self.swarmd_command(args);
        command
            .stdout(log.try_clone().context("clone a log file handle")?)
            .stderr(log);
        let mut child = command
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().context("wait for the extra swarmd")? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!(
                    "swarmd {args:?} was still running after {timeout:?} (SIGKILLed); output:\n{output}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let output = std::fs::read_to_string(&log_path)
            .with_context(|| format!("read {}", log_path.display()))?;
        Ok((status, output))
    }

    /// The last `lines` lines of a node's log.
    pub fn log_tail(&self, node: NodeId, lines: usize) -> String {
        match self.log_path(node) {
            Ok(path) => tail(&path, lines),
            Err(e) => format!("<{e}>"),
        }
    }

    /// Keeps the cluster's directory (data dirs and full node logs) after
    /// the cluster is dropped, and says where it is: for a run that found an
    /// anomaly.
    pub fn keep_dir(&mut self) {
        if let Some(dir) = self.dir.as_mut() {
            dir.disable_cleanup(true);
            eprintln!("==== kept {} for inspection", dir.path().display());
        }
    }

    /// Prints the tail of every node's log to stderr.
    pub fn print_log_tails(&self) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "==== swarm cluster in {}", self.dir_path().display());
        for id in self.node_ids() {
            let _ = writeln!(
                err,
                "==== node {id} ({}) last {LOG_TAIL_LINES} log lines:\n{}",
                self.nodes
                    .get(&id)
                    .map(|n| n.addr.to_string())
                    .unwrap_or_default(),
                self.log_tail(id, LOG_TAIL_LINES)
            );
        }
    }

    fn dir_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    }

    fn node(&self, node: NodeId) -> Result<&Node> {
        self.nodes
            .get(&node)
            .ok_or_else(|| anyhow!("no node {node} in this cluster"))
    }

    fn swarmd_command(&self, args: &[String]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(args).stdin(Stdio::null());
        // The test's own environment must not configure the nodes; only the
        // log filter passes through, to debug a failing test with
        // `SWARM_LOG=debug`. Log files are read by tests: no colour codes.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SWARM_") && key != "SWARM_LOG" {
                command.env_remove(key);
            }
        }
        command.env("NO_COLOR", "1");
        command
    }

    fn spawn(&self, node: NodeId) -> Result<()> {
        let n = self.node(node)?;
        let mut guard = n.process();
        if guard.is_some() {
            bail!("node {node} is already running");
        }
        let o = &self.options;
        let mut args: Vec<String> = vec![
            "--id".into(),
            node.to_string(),
            "--listen".into(),
            n.addr.to_string(),
            "--data-dir".into(),
            n.data_dir.display().to_string(),
            "--capabilities".into(),
            format!("exec,node{node}"),
            "--heartbeat".into(),
            humantime_ms(o.heartbeat),
            "--election-min".into(),
            humantime_ms(o.election_min),
            "--election-max".into(),
            humantime_ms(o.election_max),
            "--log-format".into(),
            "text".into(),
        ];
        if let Some(every) = o.snapshot_every {
            args.extend(["--snapshot-every".into(), every.to_string()]);
        }
        if let Some(limit) = o.max_payload_bytes {
            args.extend(["--max-payload-bytes".into(), limit.to_string()]);
        }
        if n.peer_addr != n.addr {
            args.extend(["--peer-listen".into(), n.peer_addr.to_string()]);
        }
        args.extend(n.membership_args.iter().cloned());
        if let Some(dir) = &o.tls_dir {
            for (flag, file) in [
                ("--tls-cert", format!("node-{node}.pem")),
                ("--tls-key", format!("node-{node}.key")),
                ("--tls-ca", "ca.pem".to_string()),
            ] {
                args.extend([flag.to_string(), dir.join(file).display().to_string()]);
            }
        }
        args.extend(o.extra_args.iter().cloned());
        if let Some(own) = o.per_node_args.get(&node) {
            args.extend(own.iter().cloned());
        }

        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log_path)
            .with_context(|| format!("open {}", n.log_path.display()))?;
        let _ = writeln!(
            log,
            "---- harness: starting node {node}: {} {}",
            self.binary.display(),
            args.join(" ")
        );
        let mut command = self.swarmd_command(&args);
        command
            .envs(o.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().context("clone a log file handle")?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("spawn {} for node {node}", self.binary.display()))?;
        *guard = Some(child);
        *n.paused() = false;
        Ok(())
    }

    /// Appends a harness line to a node's log, so that the log tells what was
    /// done to the node and when.
    fn note(&self, node: NodeId, what: &str) {
        if let Ok(path) = self.log_path(node)
            && let Ok(mut log) = OpenOptions::new().append(true).open(path)
        {
            let _ = writeln!(log, "---- harness: node {node} {what}");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values() {
            let mut guard = node.process();
            if let Some(mut child) = guard.take() {
                // SIGKILL to the recorded pid, then reap: no zombies.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            self.print_log_tails();
            if let Some(dir) = self.dir.as_mut() {
                dir.disable_cleanup(true);
                eprintln!("==== kept {} for inspection", dir.path().display());
            }
        }
        self.dir.take();
    }
}

/// Whether a member takes part in votes.
pub fn is_voter(role: i32) -> bool {
    role == MemberRole::Leader as i32 || role == MemberRole::Follower as i32
}

/// `n` distinct free TCP ports on 127.0.0.1, chosen below the kernel's
/// ephemeral range. A port from `bind(:0)` is one the kernel may hand out
/// again the moment it is released: to the next `bind(:0)` (a link proxy
/// once took a node's port that way, and the node could not start) or as
/// the local port of an outgoing connection while a killed node waits to be
/// restarted. Ports below the range are never handed out like that. All
/// listeners are held until every port is chosen, so the ports differ;
/// another test picking the same random port before `swarmd` binds it is
/// rare enough to accept.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    use rand::Rng;
    const FLOOR: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral_start <= FLOOR + 1_000 {
        bail!(
            "the ephemeral port range starts at {ephemeral_start}: no room below it for test ports"
        );
    }
    let mut rng = rand::rng();
    let mut held = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..10_000 {
        if ports.len() == n {
            break;
        }
        let port = rng.random_range(FLOOR..ephemeral_start);
        if ports.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
            ports.push(port);
        }
    }
    if ports.len() < n {
        bail!(
            "found only {} free ports of {n} in {FLOOR}..{ephemeral_start}",
            ports.len()
        );
    }
    Ok(ports)
}

/// A channel to node `id` at `addr`: plaintext, or TLS checked against
/// `tls_dir`'s CA, presenting that node's own certificate: a member's, which
/// a cluster with a tokens file takes as an administrator's (the harness
/// watches and steers the cluster; tests of tokens make their own clients).
fn channel_to(addr: SocketAddr, id: NodeId, tls_dir: Option<&Path>) -> Result<Channel> {
    let endpoint = match tls_dir {
        None => Endpoint::from_shared(format!("http://{addr}")).context("build an endpoint")?,
        Some(dir) => {
            let ca = std::fs::read(dir.join("ca.pem"))
                .with_context(|| format!("read {}", dir.join("ca.pem").display()))?;
            Endpoint::from_shared(format!("https://{addr}"))
                .context("build an endpoint")?
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                        .identity(tonic::transport::Identity::from_pem(
                            std::fs::read(dir.join(format!("node-{id}.pem")))
                                .context("read the node's certificate")?,
                            std::fs::read(dir.join(format!("node-{id}.key")))
                                .context("read the node's key")?,
                        ))
                        .domain_name(addr.ip().to_string()),
                )
                .context("TLS for the harness's channel")?
        }
    };
    Ok(endpoint
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(15))
        .tcp_nodelay(true)
        .connect_lazy())
}

fn humantime_ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn unique_suffix() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The last `lines` lines of a file, reading at most its last 256 KiB.
fn tail(path: &Path, lines: usize) -> String {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("<cannot open {}: {e}>", path.display()),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return format!("<cannot seek {}>", path.display());
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.read_to_end(&mut bytes) {
        return format!("<cannot read {}: {e}>", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn poll_until_returns_the_first_value() {
        let mut calls = 0;
        let got = poll_until(Duration::from_secs(5), "third call", || {
            calls += 1;
            let n = calls;
            async move { Ok((n >= 3).then_some(n)) }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn poll_until_reports_the_last_error_when_time_runs_out() {
        let err = poll_until::<(), _, _>(Duration::from_millis(200), "never", || async {
            bail!("still broken")
        })
        .await
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("never: not reached within"), "{text}");
        assert!(text.contains("still broken"), "{text}");
    }

    #[tokio::test]
    async fn within_cuts_off_a_hung_future() {
        let err = within(Duration::from_millis(50), "hang", async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("did not finish within"), "{err}");
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(5).unwrap();
        let unique: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), 5);
    }

    /// Regression: a chaos run's link proxy, binding 127.0.0.1:0, was given
    /// the port just chosen for node 1, and node 1 could not start.
    #[test]
    fn free_ports_are_never_ones_the_kernel_hands_out_to_bind_zero() {
        let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(32_768);
        for port in free_ports(50).unwrap() {
            assert!(port < start, "port {port} is in the ephemeral range");
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd");
    }
}
