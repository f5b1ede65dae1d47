//! What the consensus layer answers when a write, a read barrier or a
//! membership change does not produce the answer the caller asked for. Each
//! variant says what the caller can do next.

use serde::{Deserialize, Serialize};
use swarm_claims::ClaimError;

use crate::NodeId;

/// Why a call through the [`crate::Cluster`] handle did not succeed.
///
/// | variant | was the command applied? | what the caller can do |
/// |---|---|---|
/// | [`Refused`](ClusterError::Refused) | committed, and the state machine said no | nothing: the answer is final |
/// | [`NotLeader`](ClusterError::NotLeader) | no | ask the leader named in the hint |
/// | [`Unavailable`](ClusterError::Unavailable) | no | retry later: always safe |
/// | [`Unknown`](ClusterError::Unknown) | maybe | must not assume either way; read back before acting |
/// | [`Membership`](ClusterError::Membership) | no | fix the request (a membership change Raft refused) |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClusterError {
    /// The command was committed and the state machine refused it: a stale
    /// token, an unknown item, a claim in the wrong state, ...
    #[error(transparent)]
    Refused(ClaimError),
    /// This node is not the leader; the leader is named when known.
    #[error("not the leader{}", leader_hint(.leader_id, .leader_addr))]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// Nothing was proposed: no leader could be reached in time, no quorum
    /// answered, or the node is stopping. Retrying is always safe.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The entry may or may not have committed (the leader changed while it
    /// was in flight, or the forwarded call broke after it was sent).
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// Raft refused a membership change (for example, another change is
    /// still in progress, or the change would leave no voter).
    #[error("change membership: {0}")]
    Membership(String),
}

impl From<ClaimError> for ClusterError {
    fn from(e: ClaimError) -> Self {
        ClusterError::Refused(e)
    }
}

fn leader_hint(id: &Option<NodeId>, addr: &Option<String>) -> String {
    match (id, addr) {
        (Some(id), Some(addr)) => format!(" (leader is node {id} at {addr})"),
        (Some(id), None) => format!(" (leader is node {id})"),
        _ => " (no leader known)".to_string(),
    }
}

/// Why a node's consensus layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] crate::StorageOpenError),
    #[error("raft configuration: {0}")]
    Config(String),
    #[error("start raft: {0}")]
    Raft(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_as_the_state_machine_said_it() {
        let e = ClusterError::from(ClaimError::NotFound { id: "w1".into() });
        assert_eq!(e.to_string(), r#"work item "w1" not found"#);
    }

    #[test]
    fn not_leader_names_the_leader_when_known() {
        let e = ClusterError::NotLeader {
            leader_id: Some(2),
            leader_addr: Some("127.0.0.1:7102".into()),
        };
        assert_eq!(
            e.to_string(),
            "not the leader (leader is node 2 at 127.0.0.1:7102)"
        );
    }
}
