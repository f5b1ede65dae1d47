//! `AdminService`: cluster status and membership. Membership changes must be
//! made by the leader; a follower passes them on to it.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::Instant as _;
use swarm_proto::v1 as pb;
use swarm_proto::v1::admin_service_client::AdminServiceClient;
use swarm_proto::v1::admin_service_server::AdminService;
use swarm_raft::TypeConfig;
use swarm_raft::openraft::errors::{ClientWriteError, RaftError};
use swarm_raft::openraft::{BasicNode, ChangeMembers};
use tonic::{Request, Response, Status};

use crate::node::NodeContext;

#[derive(Clone)]
pub struct AdminApi {
    ctx: NodeContext,
}

impl AdminApi {
    pub fn new(ctx: NodeContext) -> AdminApi {
        AdminApi { ctx }
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> pb::ClusterStatusResponse {
        let m = crate::node::metrics(&self.ctx.raft);
        // A restarted former leader still names itself at its old term until
        // it hears the current one: only a node in the Leader state may name
        // itself.
        let leader = m
            .current_leader
            .filter(|l| *l != self.ctx.config.id || m.state == openraft::ServerState::Leader);
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let last_log = m.last_log_index.unwrap_or(0);
        let heartbeat_ok = |id: u64| -> Option<bool> {
            let beats = m.heartbeat.as_ref()?;
            let last = (*beats.get(&id)?)?;
            Some(last.into_inner().elapsed() < self.ctx.config.raft.election_max * 4)
        };
        let matched = |id: u64| -> Option<u64> {
            let repl = m.replication.as_ref()?;
            Some(repl.get(&id)?.as_ref().map(|l| l.index()).unwrap_or(0))
        };
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let id = *id;
                let role = if Some(id) == leader {
                    pb::MemberRole::Leader
                } else if voters.contains(&id) {
                    pb::MemberRole::Follower
                } else {
                    pb::MemberRole::Learner
                };
                let me = id == self.ctx.config.id;
                pb::Member {
                    id,
                    addr: node.addr.clone(),
                    role: role as i32,
                    reachable: me || heartbeat_ok(id).unwrap_or(Some(id) == leader),
                    last_applied: if me {
                        m.last_applied.as_ref().map(|l| l.index()).unwrap_or(0)
                    } else {
                        matched(id).unwrap_or(0)
                    },
                    lag: if me {
                        None
                    } else {
                        matched(id).map(|i| last_log.saturating_sub(i))
                    },
                }
            })
            .collect();
        let (items, live_claims) = self
            .ctx
            .state
            .read(|s| (s.len() as u64, s.live_claims() as u64));
        pb::ClusterStatusResponse {
            leader_id: leader.unwrap_or(0),
            term: m.current_term,
            commit_index: m.cluster_committed.as_ref().map(|l| l.index()).unwrap_or(0),
            last_applied: m.last_applied.as_ref().map(|l| l.index()).unwrap_or(0),
            node_id: self.ctx.config.id,
            members,
            live_claims,
            items,
        }
    }

    /// The leader's admin client, when this node is not the leader.
    fn leader_client(
        &self,
    ) -> Result<Option<AdminServiceClient<tonic::transport::Channel>>, Status> {
        let m = crate::node::metrics(&self.ctx.raft);
        match m.current_leader {
            Some(id) if id == self.ctx.config.id => Ok(None),
            Some(id) => {
                let addr = m
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
                    .ok_or_else(|| {
                        Status::unavailable(format!("leader node {id} has no known address"))
                    })?;
                Ok(Some(AdminServiceClient::new(self.ctx.peers.get(&addr)?)))
            }
            None => Err(Status::unavailable(
                "no leader elected yet; try again shortly",
            )),
        }
    }

    async fn wait_for_leader(&self) -> Result<(), Status> {
        self.ctx
            .raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|e| Status::unavailable(format!("no leader elected: {e}")))?;
        Ok(())
    }
}

fn membership_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Status::unavailable(format!("leadership moved while changing membership: {f}"))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Status::failed_precondition(format!("change membership: {c}"))
        }
        other => Status::unavailable(other.to_string()),
    }
}

fn valid_addr(addr: &str) -> Result<(), Status> {
    if crate::config::is_host_port(addr) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "invalid addr: {addr:?} is not host:port"
        )))
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(self.status()))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeResponse>, Status> {
        let r = request.into_inner();
        if r.id == 0 {
            return Err(Status::invalid_argument(
                "invalid id: must be a positive integer",
            ));
        }
        valid_addr(&r.addr)?;
        self.wait_for_leader().await?;
        if let Some(mut leader) = self.leader_client()? {
            return leader.add_node(r).await;
        }
        let raft = &self.ctx.raft;
        let membership = crate::node::metrics(raft)
            .membership_config
            .membership()
            .clone();
        let known = membership.get_node(&r.id).map(|n| n.addr.clone());
        match known {
            Some(addr) if addr != r.addr => {
                return Err(Status::already_exists(format!(
                    "node {} is already a member at {addr}; remove it first to change its address",
                    r.id
                )));
            }
            Some(_) => {}
            None => {
                // Blocking: returns once the learner has caught up, so the
                // promotion below does not stall the cluster.
                raft.add_learner(
                    r.id,
                    BasicNode {
                        addr: r.addr.clone(),
                    },
                    true,
                )
                .await
                .map_err(membership_error)?;
            }
        }
        let is_voter = membership.voter_ids().any(|v| v == r.id);
        if r.voter && !is_voter {
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([r.id])), true)
                .await
                .map_err(membership_error)?;
        }
        tracing::info!(node = r.id, addr = %r.addr, voter = r.voter, "added node");
        Ok(Response::new(pb::AddNodeResponse {
            status: Some(self.status()),
        }))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let r = request.into_inner();
        self.wait_for_leader().await?;
        if let Some(mut leader) = self.leader_client()? {
            return leader.remove_node(r).await;
        }
        let raft = &self.ctx.raft;
        let membership = crate::node::metrics(raft)
            .membership_config
            .membership()
            .clone();
        if membership.get_node(&r.id).is_none() {
            return Err(Status::not_found(format!("node {} is not a member", r.id)));
        }
        let ids = BTreeSet::from([r.id]);
        if membership.voter_ids().any(|v| v == r.id) {
            raft.change_membership(ChangeMembers::RemoveVoters(ids.clone()), false)
                .await
                .map_err(membership_error)?;
        }
        let still_there = crate::node::metrics(raft)
            .membership_config
            .membership()
            .get_node(&r.id)
            .is_some();
        if still_there {
            raft.change_membership(ChangeMembers::RemoveNodes(ids), false)
                .await
                .map_err(membership_error)?;
        }
        tracing::info!(node = r.id, "removed node");
        Ok(Response::new(pb::RemoveNodeResponse {
            status: Some(self.status()),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let r = request.into_inner();
        self.wait_for_leader().await?;
        if let Some(mut leader) = self.leader_client()? {
            return leader.transfer_leader(r).await;
        }
        let to = if r.to == 0 {
            crate::node::best_successor(&self.ctx.raft).ok_or_else(|| {
                Status::failed_precondition("no other voter to transfer leadership to")
            })?
        } else {
            r.to
        };
        let new_leader =
            crate::node::transfer_leadership(&self.ctx.raft, to, Duration::from_secs(3))
                .await
                .map_err(Status::unavailable)?;
        Ok(Response::new(pb::TransferLeaderResponse {
            leader_id: new_leader,
        }))
    }
}
