//! Swarm's consensus layer: openraft configured for Swarm's commands, the sled
//! log and state-machine stores, the gRPC network between nodes, and the
//! group-commit proposer that turns many client commands into few entries.
//!
//! openraft is an alpha release on the line upstream develops; everything that
//! names its types stays inside this crate, so an upgrade touches one place.
//!
//! # Layout
//! - `types`: [`TypeConfig`] and the aliases of openraft's generic types.
//! - [`storage`]: [`SledStore`], the one sled database of a node, with
//!   [`LogStore`] (the Raft log, vote and committed index) and
//!   [`StateMachineStore`] (the in-memory [`swarm_claims::State`] with its
//!   snapshots persisted in sled). Writes are durable only after sled's flush
//!   *and* an fdatasync of its files.
//! - [`network`]: [`Network`], the openraft network over gRPC with one cached
//!   channel per peer, and [`RaftGrpcService`], the server side.
//! - [`proposer`]: [`Proposer`], group commit and forwarding to the leader.
//! - `codec`: how openraft messages travel inside `RaftMessage.data`.

mod codec;
pub mod network;
pub mod proposer;
pub mod storage;
mod types;

pub use network::{Network, RaftGrpcService};
pub use proposer::{ProposeError, Proposer, ProposerConfig};
pub use storage::{LogStore, SledStore, StateMachineStore, StorageOpenError};
pub use types::*;

/// Re-exported so the node can build configs and read metrics without
/// depending on openraft itself.
pub use openraft;
