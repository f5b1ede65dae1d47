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
        Node = openraft::BasicNode,
);

/// What applying one entry answers: the state machine's own result.
pub type ApplyResult = Result<swarm_claims::Response, swarm_claims::ClaimError>;

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub(crate) type Raft = openraft::Raft<TypeConfig, crate::StateMachineStore>;
pub type LogId = alias::LogIdOf<TypeConfig>;
pub type Vote = alias::VoteOf<TypeConfig>;
pub type Entry = alias::EntryOf<TypeConfig>;
pub type SnapshotMeta = alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: its metadata, and its body as an open file.
pub type Snapshot = alias::SnapshotOf<TypeConfig, crate::storage::SnapshotFile>;
pub type StoredMembership = alias::StoredMembershipOf<TypeConfig>;
pub(crate) type OpenraftMetrics = openraft::RaftMetrics<TypeConfig>;
