//! `AdminService`: cluster status and membership. Membership changes must be
//! made by the leader; a follower passes them on to it.

use std::time::Duration;

use swarm_proto::v1 as pb;
use swarm_proto::v1::admin_service_client::AdminServiceClient;
use swarm_proto::v1::admin_service_server::AdminService;
use swarm_raft::ClusterError;
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
        let cluster = self.ctx.cluster.status();
        let leader = cluster.leader();
        let reachable_within = self.ctx.config.raft.election_max * 4;
        let members = cluster
            .members
            .iter()
            .map(|m| {
                let role = if Some(m.id) == leader {
                    pb::MemberRole::Leader
                } else if m.voter {
                    pb::MemberRole::Follower
                } else {
                    pb::MemberRole::Learner
                };
                let me = m.id == cluster.id;
                pb::Member {
                    id: m.id,
                    addr: m.addr.clone(),
                    peer_addr: m.peer_addr.clone(),
                    role: role as i32,
                    reachable: me
                        || m.last_heartbeat
                            .map(|age| age < reachable_within)
                            .unwrap_or(Some(m.id) == leader),
                    last_applied: if me {
                        cluster.last_applied
                    } else {
                        m.matched.unwrap_or(0)
                    },
                    lag: if me {
                        None
                    } else {
                        m.matched.map(|i| cluster.last_log_index.saturating_sub(i))
                    },
                }
            })
            .collect();
        let (items, live_claims, items_removed) = self
            .ctx
            .state
            .read(|s| (s.len() as u64, s.live_claims() as u64, s.removed()));
        pb::ClusterStatusResponse {
            leader_id: leader.unwrap_or(0),
            term: cluster.term,
            commit_index: cluster.commit_index,
            last_applied: cluster.last_applied,
            node_id: self.ctx.config.id,
            members,
            live_claims,
            items,
            items_removed,
        }
    }

    /// The leader's admin client, when this node is not the leader.
    fn leader_client(
        &self,
    ) -> Result<Option<AdminServiceClient<tonic::transport::Channel>>, Status> {
        let cluster = self.ctx.cluster.status();
        match cluster.current_leader {
            Some(id) if id == self.ctx.config.id => Ok(None),
            Some(id) => {
                let addr = cluster.member(id).map(|n| n.addr.clone()).ok_or_else(|| {
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
            .cluster
            .wait_for_leader(Duration::from_secs(5))
            .await
            .map_err(unavailable)
    }
}

/// The gRPC status for a membership change that did not go through.
fn membership_error(e: ClusterError) -> Status {
    match e {
        ClusterError::NotLeader { .. } => {
            Status::unavailable(format!("leadership moved while changing membership: {e}"))
        }
        ClusterError::Membership(_) => Status::failed_precondition(e.to_string()),
        other => Status::unavailable(other.to_string()),
    }
}

/// UNAVAILABLE with the cluster's own words (no "cluster unavailable"
/// prefix on a message that already says what is missing).
fn unavailable(e: ClusterError) -> Status {
    match e {
        ClusterError::Unavailable(msg) => Status::unavailable(msg),
        other => Status::unavailable(other.to_string()),
    }
}

/// How long adding a voter waits for it to catch up as a learner.
const CATCH_UP: Duration = Duration::from_secs(10);

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
        if !r.peer_addr.is_empty() {
            valid_addr(&r.peer_addr)?;
        }
        let peer_addr = if r.peer_addr.is_empty() {
            r.addr.clone()
        } else {
            r.peer_addr.clone()
        };
        self.wait_for_leader().await?;
        if let Some(mut leader) = self.leader_client()? {
            return leader.add_node(r).await;
        }
        let cluster = self.ctx.cluster.status();
        let since = match cluster.member(r.id) {
            Some(m) if m.addr != r.addr || m.peer_addr != peer_addr => {
                return Err(Status::already_exists(format!(
                    "node {} is already a member at {} (peers: {}); remove it first to change its addresses",
                    r.id, m.addr, m.peer_addr
                )));
            }
            Some(_) => cluster.commit_index,
            None => self
                .ctx
                .cluster
                .add_learner(r.id, &r.addr, &peer_addr)
                .await
                .map_err(membership_error)?,
        };
        // A voter only once it has caught up, so that it does not stall the
        // cluster. A node added before it runs stays a learner until it
        // starts and asks to join (`--join`), which promotes it.
        let promote = r.voter && !cluster.is_voter(r.id);
        if promote
            && self
                .ctx
                .cluster
                .wait_replicated(r.id, since, CATCH_UP)
                .await
        {
            self.ctx
                .cluster
                .promote(r.id)
                .await
                .map_err(membership_error)?;
        } else if promote {
            tracing::info!(
                node = r.id,
                "added node as a learner; it has not caught up within {CATCH_UP:?} (not running yet?) and becomes a voter when it joins"
            );
        }
        tracing::info!(node = r.id, addr = %r.addr, peer_addr = %peer_addr, voter = r.voter, "added node");
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
        if self.ctx.cluster.status().member(r.id).is_none() {
            return Err(Status::not_found(format!("node {} is not a member", r.id)));
        }
        self.ctx
            .cluster
            .remove(r.id)
            .await
            .map_err(membership_error)?;
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
            self.ctx.cluster.status().best_successor().ok_or_else(|| {
                Status::failed_precondition("no other voter to transfer leadership to")
            })?
        } else {
            r.to
        };
        let new_leader = self
            .ctx
            .cluster
            .transfer_leadership(to, Duration::from_secs(3))
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::TransferLeaderResponse {
            leader_id: new_leader,
        }))
    }
}
