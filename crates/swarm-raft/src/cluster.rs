//! [`Cluster`], the one door to consensus: a node writes commands, waits for
//! linearizable reads, changes membership, hands leadership over and reads
//! the cluster's status through it, and gets a [`ClusterError`] that says
//! what it can do when a call does not succeed. Nothing of openraft shows
//! through it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{ClientWriteError, RaftError};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, Instant as _, ServerState, SnapshotPolicy};
use swarm_claims::{Limits, Request, Response};

use crate::error::{ClusterError, StartError};
use crate::network::{Network, PeerChannels};
use crate::peer_auth::PeerAuth;
use crate::proposer::{Proposer, ProposerConfig};
use crate::service::{PeerServer, RaftGrpcService};
use crate::{Node, NodeId, OpenraftMetrics, Raft, SledStore, StateMachineStore, TypeConfig};

/// How long a linearizable read waits for this replica to catch up with the
/// leader's read index.
const READ_CATCH_UP: Duration = Duration::from_secs(5);

/// What a node needs to take part in the Raft group.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub id: NodeId,
    /// Where the sled database lives.
    pub sled_dir: PathBuf,
    pub sled_cache_bytes: u64,
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// Build a snapshot (and purge the log behind it) every this many entries.
    pub snapshot_every: u64,
    /// Peer address -> address to dial instead (a fault-injection proxy).
    pub peer_routes: HashMap<String, String>,
    /// TLS for every connection to a peer (this node's certificate, the CA
    /// that signs its peers'). Set, this node also admits a peer call only
    /// from a certificate that names a current member (see [`crate::peer_auth`]).
    pub peer_tls: Option<tonic::transport::ClientTlsConfig>,
    /// Traces proposals: a span per entry proposed, and the caller's trace
    /// context added by this function to each proposal forwarded to the
    /// leader (so the leader's entry joins the trace). `None`: no spans.
    pub trace_proposals: Option<fn(&mut tonic::metadata::MetadataMap)>,
}

/// This node's role in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Candidate,
    Follower,
    Learner,
    Shutdown,
}

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: NodeId,
    /// Where clients reach it.
    pub addr: String,
    /// Where its peers reach it: `addr` for a node that serves both on one
    /// port.
    pub peer_addr: String,
    pub voter: bool,
    /// The highest log index known replicated to it; only the leader
    /// tracks this (`None` elsewhere, `Some(0)` before the first match).
    pub matched: Option<u64>,
    /// How long ago it last acknowledged a heartbeat; only the leader
    /// tracks this (`None` elsewhere or when never heard from).
    pub last_heartbeat: Option<Duration>,
}

/// A snapshot of this node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub id: NodeId,
    pub role: Role,
    /// The leader this node believes in. A restarted former leader may still
    /// name itself at its old term until it hears the current one: use
    /// [`ClusterStatus::leader`] to report a leader.
    pub current_leader: Option<NodeId>,
    pub term: u64,
    /// The index committed by a quorum, as far as this node knows.
    pub commit_index: u64,
    pub last_applied: u64,
    pub last_log_index: u64,
    /// The last index the log has dropped (it is in a snapshot); the log
    /// holds the entries after it.
    pub purged_index: u64,
    /// Every member, voters and learners, by id.
    pub members: Vec<MemberStatus>,
}

impl ClusterStatus {
    /// The leader to report: only a node in the leader role may name itself.
    pub fn leader(&self) -> Option<NodeId> {
        self.current_leader
            .filter(|l| *l != self.id || self.role == Role::Leader)
    }

    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    pub fn member(&self, id: NodeId) -> Option<&MemberStatus> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.member(id).is_some_and(|m| m.voter)
    }

    /// The voter that has replicated the most of the log, other than this
    /// node: the best one to hand leadership to.
    pub fn best_successor(&self) -> Option<NodeId> {
        self.members
            .iter()
            .filter(|m| m.voter && m.id != self.id)
            .max_by_key(|m| m.matched.unwrap_or(0))
            .map(|m| m.id)
    }
}

/// The consensus handle of one node. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    id: NodeId,
    raft: Raft,
    proposer: Proposer,
    state: StateMachineStore,
    peer_auth: PeerAuth,
}

impl Cluster {
    /// Opens the node's store, starts Raft and the group-commit proposer.
    /// Returns the handle, the local replica of the claims state (for
    /// reads), and the channels to peers (shared with other peer clients).
    pub async fn start(
        config: ClusterConfig,
    ) -> Result<(Cluster, StateMachineStore, PeerChannels), StartError> {
        let store = SledStore::open(&config.sled_dir, config.sled_cache_bytes)?;
        let (log_store, state) = store.stores()?;
        let raft_config = openraft::Config {
            cluster_name: "swarm".into(),
            heartbeat_interval: millis(config.heartbeat),
            election_timeout_min: millis(config.election_min),
            election_timeout_max: millis(config.election_max),
            enable_pre_vote: Some(true),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.snapshot_every.min(1000),
            install_snapshot_timeout: 10_000,
            // A restarted leader must win a new term before it writes.
            // openraft replicates entries before the leader's own flush, so
            // a follower can hold entries the leader lost in a crash; a
            // leader restored in its old term would write different entries
            // under the same (term, index), which followers take as matching
            // and never replace: their state machines diverge. (Found by the
            // chaos suite after a whole-cluster SIGKILL; see
            // tests/tests/cluster.rs t90.)
            enable_leader_restore: Some(false),
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;
        let check_peers = config.peer_tls.is_some();
        let peers = PeerChannels::new(config.peer_routes, config.peer_tls);
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            Network::new(peers.clone()),
            log_store,
            state.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let proposer = Proposer::start(
            raft.clone(),
            peers.clone(),
            ProposerConfig {
                trace: config.trace_proposals,
                ..ProposerConfig::default()
            },
            state.metrics().clone(),
        );
        tokio::spawn(count_elections(raft.clone(), state.metrics().clone()));
        let cluster = Cluster {
            id: config.id,
            peer_auth: PeerAuth::new(&raft, check_peers),
            raft,
            proposer,
            state: state.clone(),
        };
        Ok((cluster, state, peers))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The gRPC service peers call: Raft messages, forwarded writes and
    /// read-index requests.
    pub fn peer_service(&self) -> PeerServer {
        RaftGrpcService::server(
            self.raft.clone(),
            self.proposer.clone(),
            self.state.clone(),
            self.peer_auth.clone(),
        )
    }

    /// Who may make peer calls (see [`crate::peer_auth`]): for the node's
    /// other peer services, such as hand-offs.
    pub fn peer_auth(&self) -> &PeerAuth {
        &self.peer_auth
    }

    /// Commits `request` through the leader (forwarding from a follower)
    /// and answers what the state machine answered, typed.
    pub async fn request<R: Request>(&self, request: R) -> Result<R::Answer, ClusterError> {
        typed::<R>(self.proposer.propose(request.into_command()).await)
    }

    /// [`Cluster::request`], after checking the command against the edge
    /// `limits` (a refusal names the field and the limit).
    pub async fn request_within<R: Request>(
        &self,
        request: R,
        limits: &Limits,
    ) -> Result<R::Answer, ClusterError> {
        let cmd = request.into_command();
        limits.check(&cmd)?;
        typed::<R>(self.proposer.propose(cmd).await)
    }

    /// Commits `request` only if this node leads: `NotLeader` otherwise. For
    /// the leader's own duties, which must not run through another leader.
    pub async fn request_if_leader<R: Request>(
        &self,
        request: R,
    ) -> Result<R::Answer, ClusterError> {
        typed::<R>(self.proposer.propose_local(request.into_command()).await)
    }

    /// Waits until this replica has applied everything the cluster had
    /// committed when the call began (ReadIndex): a read of the local
    /// replica after it is linearizable.
    pub async fn read_barrier(&self) -> Result<(), ClusterError> {
        let index = self.proposer.read_index().await?;
        let mut applied = self.state.applied_index();
        tokio::time::timeout(READ_CATCH_UP, applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| {
                ClusterError::Unavailable(format!(
                    "replica did not apply index {index} within {READ_CATCH_UP:?}"
                ))
            })?
            .map_err(|_| ClusterError::Unavailable("state machine stopped".into()))?;
        Ok(())
    }

    /// This node's current view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        status_of(&self.raft_metrics())
    }

    /// What this node's proposer, snapshots and state machine count.
    pub fn metrics(&self) -> &crate::metrics::RaftMetrics {
        self.state.metrics()
    }

    fn raft_metrics(&self) -> OpenraftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Waits up to `timeout` for some node to be known as leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(), ClusterError> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|e| ClusterError::Unavailable(format!("no leader elected: {e}")))?;
        Ok(())
    }

    /// Whether this node's store already belongs to a cluster.
    pub async fn is_initialized(&self) -> Result<bool, ClusterError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Unavailable(format!("raft: {e}")))
    }

    /// Makes this node a one-member cluster that clients reach at `addr`
    /// and peers at `peer_addr`.
    pub async fn bootstrap(&self, addr: &str, peer_addr: &str) -> Result<(), ClusterError> {
        let members = BTreeMap::from([(self.id, Node::new(addr, peer_addr))]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| ClusterError::Membership(format!("initialize cluster: {e}")))
    }

    /// Adds `id` (clients reach it at `addr`, peers at `peer_addr`) as a
    /// learner and returns at once, with the index of the membership entry
    /// that added it: a node an admin adds before it runs is a member the
    /// moment it starts. Leader only.
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: &str,
        peer_addr: &str,
    ) -> Result<u64, ClusterError> {
        let node = Node::new(addr, peer_addr);
        let added = self
            .raft
            .add_learner(id, node, false)
            .await
            .map_err(membership_error)?;
        Ok(added.log_id.index())
    }

    /// Waits until this leader has replicated its log up to `index` to `id`
    /// (the learner caught up, so promoting it will not stall the cluster);
    /// false when `timeout` passes first.
    pub async fn wait_replicated(&self, id: NodeId, index: u64, timeout: Duration) -> bool {
        let caught_up = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id))
                        .and_then(|l| l.as_ref())
                        .is_some_and(|l| l.index() >= index)
                },
                "the learner caught up",
            )
            .await;
        caught_up.is_ok()
    }

    /// Makes the learner `id` a voter. Leader only.
    pub async fn promote(&self, id: NodeId) -> Result<(), ClusterError> {
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await
    }

    /// Removes `id` from the cluster: first as a voter, then as a node.
    /// Leader only.
    pub async fn remove(&self, id: NodeId) -> Result<(), ClusterError> {
        let ids = BTreeSet::from([id]);
        if self.status().is_voter(id) {
            self.change(ChangeMembers::RemoveVoters(ids.clone()), false)
                .await?;
        }
        if self.status().member(id).is_some() {
            self.change(ChangeMembers::RemoveNodes(ids), false).await?;
        }
        Ok(())
    }

    async fn change(
        &self,
        change: ChangeMembers<NodeId, crate::Node>,
        retain: bool,
    ) -> Result<(), ClusterError> {
        self.raft
            .change_membership(change, retain)
            .await
            .map_err(membership_error)?;
        Ok(())
    }

    /// Asks `to` to take over leadership and waits until some other node
    /// leads; answers the new leader.
    pub async fn transfer_leadership(
        &self,
        to: NodeId,
        timeout: Duration,
    ) -> Result<NodeId, ClusterError> {
        let me = self.id;
        self.raft.trigger().transfer_leader(to).await.map_err(|e| {
            ClusterError::Unavailable(format!("transfer leadership to node {to}: {e}"))
        })?;
        let waited = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "another leader",
            )
            .await;
        match waited {
            Ok(m) => m
                .current_leader
                .ok_or_else(|| ClusterError::Unavailable("no leader after transfer".into())),
            Err(e) => Err(ClusterError::Unavailable(format!(
                "node {to} did not take over within {timeout:?}: {e}"
            ))),
        }
    }

    /// Stops Raft. Calls after this answer `Unavailable`.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| ClusterError::Unavailable(format!("stop raft: {e}")))
    }
}

/// The typed answer of `R`. A response of another shape is a state machine
/// bug; the caller cannot know what it did, so it is `Unknown`.
fn typed<R: Request>(response: Result<Response, ClusterError>) -> Result<R::Answer, ClusterError> {
    R::answer(response?).map_err(|other| {
        let mut shown = format!("{other:?}");
        if let Some((cut, _)) = shown.char_indices().nth(200) {
            shown.truncate(cut);
            shown.push_str("...");
        }
        ClusterError::Unknown(format!(
            "the state machine answered a {} with {shown}",
            R::NAME
        ))
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn status_of(m: &OpenraftMetrics) -> ClusterStatus {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let last_heartbeat = |id: NodeId| -> Option<Duration> {
        let last = (*m.heartbeat.as_ref()?.get(&id)?)?;
        Some(last.into_inner().elapsed())
    };
    let matched = |id: NodeId| -> Option<u64> {
        let repl = m.replication.as_ref()?;
        Some(repl.get(&id)?.as_ref().map(|l| l.index()).unwrap_or(0))
    };
    let members = membership
        .nodes()
        .map(|(id, node)| MemberStatus {
            id: *id,
            addr: node.addr.clone(),
            peer_addr: node.peer().to_string(),
            voter: voters.contains(id),
            matched: matched(*id),
            last_heartbeat: last_heartbeat(*id),
        })
        .collect();
    ClusterStatus {
        id: m.id,
        role: match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Candidate => Role::Candidate,
            ServerState::Follower => Role::Follower,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        },
        current_leader: m.current_leader,
        term: m.current_term,
        commit_index: m.cluster_committed.as_ref().map(|l| l.index()).unwrap_or(0),
        last_applied: m.last_applied.as_ref().map(|l| l.index()).unwrap_or(0),
        last_log_index: m.last_log_index.unwrap_or(0),
        purged_index: m.purged.as_ref().map(|l| l.index()).unwrap_or(0),
        members,
    }
}

/// Counts the terms and leaders this node sees come and go, for as long as
/// Raft runs.
async fn count_elections(raft: Raft, metrics: crate::metrics::RaftMetrics) {
    let mut watch = raft.metrics();
    let (mut term, mut leader) = {
        let m = watch.borrow_watched();
        (m.current_term, m.current_leader)
    };
    while watch.changed().await.is_ok() {
        let (now_term, now_leader) = {
            let m = watch.borrow_watched();
            (m.current_term, m.current_leader)
        };
        if now_term > term {
            metrics.elections.inc_by(now_term - term);
        }
        if now_leader != leader && now_leader.is_some() {
            metrics.leader_changes.inc();
        }
        (term, leader) = (now_term, now_leader);
    }
}

fn membership_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            ClusterError::Membership(c.to_string())
        }
        other => ClusterError::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId, voter: bool, matched: Option<u64>) -> MemberStatus {
        MemberStatus {
            id,
            addr: format!("127.0.0.1:710{id}"),
            peer_addr: format!("127.0.0.1:720{id}"),
            voter,
            matched,
            last_heartbeat: None,
        }
    }

    fn status(id: NodeId, role: Role, leader: Option<NodeId>) -> ClusterStatus {
        ClusterStatus {
            id,
            role,
            current_leader: leader,
            term: 3,
            commit_index: 10,
            last_applied: 10,
            last_log_index: 10,
            purged_index: 0,
            members: vec![
                member(1, true, Some(10)),
                member(2, true, Some(7)),
                member(3, true, Some(9)),
                member(4, false, Some(10)),
            ],
        }
    }

    #[test]
    fn a_node_names_itself_leader_only_in_the_leader_role() {
        assert_eq!(status(1, Role::Leader, Some(1)).leader(), Some(1));
        assert_eq!(status(1, Role::Follower, Some(1)).leader(), None);
        assert_eq!(status(2, Role::Follower, Some(1)).leader(), Some(1));
    }

    #[test]
    fn the_successor_is_the_most_caught_up_other_voter() {
        // Node 4 is further along but a learner; node 1 is this node.
        assert_eq!(status(1, Role::Leader, Some(1)).best_successor(), Some(3));
    }
}
