//! openraft's type configuration for Swarm. The public aliases are for code
//! that drives the stores directly (the storage conformance suite, the
//! log-append benchmark, `inspect_store`); the rest of Swarm goes through
//! [`crate::Cluster`] and names none of them.

use openraft::alias;

openraft::declare_raft_types!(
    /// Swarm's Raft types: log entries carry [`swarm_claims::Command`]s and
    /// applying one answers an [`ApplyResult`].
    pub TypeConfig:
        D = swarm_claims::Command,
        R = ApplyResult,
        NodeId = u64,
        Node = Node,
);

/// What applying one entry answers: the state machine's own result.
pub type ApplyResult = Result<swarm_claims::Response, swarm_claims::ClaimError>;

pub type NodeId = u64;

/// A member as membership records it: where clients reach it, and where its
/// peers do (Raft, forwarded writes, hand-offs). `peer_addr` is empty for a
/// node that serves both on one port.
///
/// Stored as openraft's `BasicNode` was, one string field `addr`: the client
/// address, then ` peer=` and the peer address when that differs. Logs and
/// snapshots written before the peer port existed load unchanged (their
/// members serve both on one address), and bincode, which names no fields,
/// reads the same shape in both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub addr: String,
    pub peer_addr: String,
}

/// What separates the two addresses in a stored [`Node`].
const PEER_MARK: &str = " peer=";

impl Node {
    pub fn new(addr: impl Into<String>, peer_addr: impl Into<String>) -> Node {
        let (addr, peer_addr) = (addr.into(), peer_addr.into());
        let peer_addr = if peer_addr == addr {
            String::new()
        } else {
            peer_addr
        };
        Node { addr, peer_addr }
    }

    /// The address peers dial.
    pub fn peer(&self) -> &str {
        if self.peer_addr.is_empty() {
            &self.addr
        } else {
            &self.peer_addr
        }
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.peer_addr.as_str() {
            "" => f.write_str(&self.addr),
            peer => write!(f, "{}{PEER_MARK}{peer}", self.addr),
        }
    }
}

/// A [`Node`] as stored: `BasicNode`'s shape.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename = "BasicNode")]
struct StoredNode {
    addr: String,
}

impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoredNode {
            addr: self.to_string(),
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let stored = StoredNode::deserialize(d)?;
        Ok(match stored.addr.split_once(PEER_MARK) {
            Some((addr, peer)) => Node::new(addr, peer),
            None => Node::new(stored.addr, String::new()),
        })
    }
}
pub(crate) type Raft = openraft::Raft<TypeConfig, crate::StateMachineStore>;
pub type LogId = alias::LogIdOf<TypeConfig>;
pub type Vote = alias::VoteOf<TypeConfig>;
pub type Entry = alias::EntryOf<TypeConfig>;
pub type SnapshotMeta = alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: its metadata, and its body as an open file.
pub type Snapshot = alias::SnapshotOf<TypeConfig, crate::storage::SnapshotFile>;
pub type StoredMembership = alias::StoredMembershipOf<TypeConfig>;
pub(crate) type OpenraftMetrics = openraft::RaftMetrics<TypeConfig>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_node_is_stored_as_a_basic_node_was_and_reads_back() {
        let config = bincode::config::standard();
        // What membership stored before the peer port: one address.
        let old = openraft::BasicNode::new("127.0.0.1:7101");
        let json = serde_json::to_string(&old).unwrap();
        let bin = bincode::serde::encode_to_vec(&old, config).unwrap();
        let from_json: Node = serde_json::from_str(&json).unwrap();
        let (from_bin, _): (Node, usize) = bincode::serde::decode_from_slice(&bin, config).unwrap();
        for node in [&from_json, &from_bin] {
            assert_eq!(node.addr, "127.0.0.1:7101");
            assert_eq!(node.peer(), "127.0.0.1:7101");
        }
        assert_eq!(serde_json::to_string(&from_json).unwrap(), json);
        assert_eq!(
            bincode::serde::encode_to_vec(&from_bin, config).unwrap(),
            bin
        );

        let both = Node::new("127.0.0.1:7101", "127.0.0.1:7201");
        assert_eq!(both.peer(), "127.0.0.1:7201");
        let bin = bincode::serde::encode_to_vec(&both, config).unwrap();
        let (back, _): (Node, usize) = bincode::serde::decode_from_slice(&bin, config).unwrap();
        assert_eq!(back, both);
        let json = serde_json::to_string(&both).unwrap();
        assert_eq!(serde_json::from_str::<Node>(&json).unwrap(), both);
        // The same address twice is one port.
        assert_eq!(Node::new("a:1", "a:1").peer_addr, "");
    }
}
