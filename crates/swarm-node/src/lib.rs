//! `swarmd`, a Swarm agent node, as a library: the binary only parses its
//! configuration, sets up logging and tracing ([`Telemetry`]) and calls
//! [`run`]; tests call the same [`run`].
//!
//! A node takes part in the Raft group through swarm-raft's
//! [`swarm_raft::Cluster`] (the Raft log in sled, snapshots of the claims
//! state in files beside it), runs workflows as an agent, and serves the
//! client API (`WorkService`, `AdminService`), the peer API (`RaftService`,
//! `HandoffService`), gRPC health and reflection on one address. Nothing
//! here names openraft: every write, read barrier and membership change
//! goes through the `Cluster` handle and answers a `ClusterError`.
//!
//! # Layout
//! - [`config`]: [`Config`], layered from defaults, a TOML file, `SWARM_*`
//!   environment variables and flags, then validated.
//! - `node`: [`run`], start-up (bootstrap or join), the leader's lease
//!   clock, and shutdown with a hand-over of leadership.
//! - `work_service`: `WorkService`, validating and proposing client commands.
//! - `listing`: `ListWork` pages (page tokens, size limits) and the check
//!   that an answer fits one gRPC message.
//! - `admin_service`: `AdminService`, status and membership.
//! - `agent`: the agent loop (claim workflows, run them with swarm-reactor,
//!   renew, self-fence, hand off, drain) and `HandoffService`.
//! - `journal`: the reactor journal kept in the item's Raft journal.
//! - `convert`: protobuf conversions and the mapping of errors to gRPC codes.
//! - [`telemetry`]: the log subscriber, request spans, optional OTLP export
//!   ([`Telemetry`]) and the trace context that travels with a workflow.
//! - `http`: the HTTP listener (`http_listen`): `/metrics`, `/healthz`,
//!   `/readyz`, the dashboard (`assets/`, compiled in) and its JSON API.
//! - [`metrics`]: the Prometheus registry and what the node counts (runs,
//!   gRPC requests; Raft and applied work come from swarm-raft).

mod admin_service;
mod agent;
pub mod allocator;
pub mod auth;
pub mod config;
mod convert;
pub mod cron;
mod gate;
mod http;
mod journal;
mod listing;
mod long_poll;
pub mod metrics;
mod node;
mod ports;
mod queue_service;
pub mod telemetry;
pub mod tls;
mod work_service;

/// The node's conversion of items to the wire and of state-machine refusals
/// to gRPC statuses (the bench's no-consensus server answers as a node does).
pub use convert::{claim_error_status, item_to_pb};
pub use work_service::json_or_null;

pub use config::{Config, Flags, LogFormat};
pub use node::run;
pub use telemetry::Telemetry;
