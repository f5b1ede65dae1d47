//! Swarm's consensus layer: openraft configured for Swarm's commands, the log
//! and state-machine stores, the gRPC network between nodes, and the
//! group-commit proposer that turns many client commands into few entries.
//!
//! The rest of Swarm reaches consensus through one door, [`Cluster`]: typed
//! writes, a linearizable read barrier, membership, leader transfer and a
//! status snapshot, with one error type, [`ClusterError`], that says whether
//! the state machine refused a command, this node is not the leader, the
//! cluster is unavailable, or the outcome is unknown. openraft is an alpha
//! release on the line upstream develops; nothing outside this crate names
//! its types, so an upgrade touches one place.
//!
//! # Layout
//! - [`cluster`]: [`Cluster`], [`ClusterConfig`], [`ClusterStatus`].
//! - [`error`]: [`ClusterError`] and [`StartError`].
//! - `types`: [`TypeConfig`] and the aliases of openraft's generic types.
//! - [`storage`]: [`SledStore`], the one sled database of a node and the
//!   Raft log's segment files beside it, with [`LogStore`] (the Raft log in
//!   the segment files; vote and committed index in sled) and
//!   [`StateMachineStore`] (the in-memory [`swarm_claims::State`]; snapshot
//!   bodies live in binary files beside the database, [`SnapshotFile`],
//!   their record in sled). Log appends are durable only after an fdatasync
//!   of their segment; sled writes only after sled's flush *and* an
//!   fdatasync of its files.
//! - [`network`]: the client side of the network between nodes:
//!   [`PeerChannels`] (one cached gRPC channel per peer) and `Network`,
//!   what openraft calls to reach a peer.
//! - [`service`]: the server side, `RaftService`: peers' Raft messages, and
//!   the writes and read-index requests followers forward to the leader.
//! - `proposer`: group commit and forwarding to the leader.
//! - [`metrics`]: [`RaftMetrics`], what the proposer, snapshots and the
//!   state machine count, as Prometheus metrics.
//! - `codec`: the tagged binary encoding (bincode) of openraft messages
//!   inside `RaftMessage.data` and of log entries; legacy JSON
//!   still reads.

pub mod cluster;
mod codec;
pub mod error;
pub mod metrics;
pub mod network;
pub mod peer_auth;
mod proposer;
pub mod service;
pub mod storage;
mod types;

pub use cluster::{Cluster, ClusterConfig, ClusterStatus, MemberStatus, Role};
pub use error::{ClusterError, StartError};
pub use metrics::RaftMetrics;
pub use network::PeerChannels;
pub use peer_auth::PeerAuth;
pub use proposer::now_millis;
pub use service::{PeerServer, RaftGrpcService};
pub use storage::{
    ItemChanges, LogStore, SledStore, SnapshotFile, StateMachineStore, StorageOpenError,
};
pub use types::*;
