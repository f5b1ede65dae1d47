//! Swarm's wire protocol: the prost messages and tonic services generated from
//! `proto/swarm/v1/*.proto`, and the encoded descriptor set that nodes serve
//! through gRPC reflection.
//!
//! # Layout
//! - [`v1`]: every message and service of package `swarm.v1`
//!   (`WorkService`, `AdminService`, `RaftService`, `HandoffService`).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded `FileDescriptorSet` for reflection.
//! - [`LEADER_ADDR_KEY`]: the response metadata that names the leader.
//! - [`LIST_DEFAULT_LIMIT`], [`LIST_MAX_LIMIT`]: the page sizes of `ListWork`.

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

/// The name a node's TLS certificate carries for node `id` (a DNS subject
/// alternative name): what a node checks a peer's certificate against the
/// membership by, and what `swarmctl cert node` writes.
pub fn node_cert_name(id: u64) -> String {
    format!("{NODE_CERT_PREFIX}{id}")
}

/// What every [`node_cert_name`] starts with.
pub const NODE_CERT_PREFIX: &str = "swarm-node-";

/// How a tokens file names a bearer token: `sha256:` and the hex SHA-256 of
/// the token (the file never holds the token itself).
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Metadata key in which a node that cannot serve a request names the
/// leader's `host:port`. Its presence on an UNAVAILABLE status also says the
/// node did not act on the request (empty value: leader unknown).
pub const LEADER_ADDR_KEY: &str = "swarm-leader-addr";

/// Items in one `ListWork` answer when the request's `limit` is 0.
pub const LIST_DEFAULT_LIMIT: u32 = 1_000;

/// The largest `limit` a `ListWork` request may ask for; more is refused.
pub const LIST_MAX_LIMIT: u32 = 10_000;
