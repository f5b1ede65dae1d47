//! Swarm's wire protocol: the prost messages and tonic services generated from
//! `proto/swarm/v1/*.proto`, and the encoded descriptor set that nodes serve
//! through gRPC reflection.
//!
//! # Layout
//! - [`v1`]: every message and service of package `swarm.v1`
//!   (`WorkService`, `AdminService`, `RaftService`, `HandoffService`).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded `FileDescriptorSet` for reflection.

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
