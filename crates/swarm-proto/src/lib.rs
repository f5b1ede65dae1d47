//! Swarm's wire protocol: the prost messages and tonic services generated from
//! `proto/swarm/v1/*.proto`, and the encoded descriptor set that nodes serve
//! through gRPC reflection.
//!
//! # Layout
//! - [`v1`]: every message and service of package `swarm.v1`
//!   (`WorkService`, `AdminService`, `RaftService`, `HandoffService`).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded `FileDescriptorSet` for reflection.
//! - The conventions of the wire that are not messages: [`LEADER_ADDR_KEY`]
//!   (response metadata) and [`WORKFLOW_ITEM_TYPE`] (the item type the nodes
//!   run as workflows).

/// Package `swarm.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("swarm.v1");
}

/// The encoded `FileDescriptorSet` of every Swarm proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/swarm_descriptor.bin"));

/// Largest gRPC message a Swarm node or client decodes or encodes: payloads
/// are limited to 1 MiB by default, snapshots travel in chunks well below this.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Metadata key in which a node that cannot serve a request names the
/// leader's `host:port`. Its presence on an UNAVAILABLE status also says the
/// node did not act on the request (empty value: leader unknown).
pub const LEADER_ADDR_KEY: &str = "swarm-leader-addr";

/// The work item type whose payload is a workflow (spec, inputs, base
/// directory) that the nodes' agents claim and run.
pub const WORKFLOW_ITEM_TYPE: &str = "workflow";
