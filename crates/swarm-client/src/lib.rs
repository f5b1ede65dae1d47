//! Rust client for a Swarm cluster: submit, claim and finish work items,
//! put failed ones back, keep cron schedules and concurrency-key limits,
//! inspect and change the membership, without caring which node leads.
//!
//! A [`SwarmClient`] holds the nodes' addresses and one lazily connected
//! gRPC channel per node. A call goes first to the node that answered last.
//! Nodes forward writes to the leader themselves, so most calls succeed on
//! the first node asked. When a node cannot serve a call it answers
//! UNAVAILABLE, and when it knows the leader it names it in the
//! `swarm-leader-addr` metadata ([`LEADER_ADDR_KEY`]): the client asks that
//! node next, so users never see "not leader".
//!
//! # Retries
//!
//! Whether a failed attempt is retried depends on what it says about the
//! request's fate, and on whether the call is safe to repeat:
//!
//! | failure                                             | retried for               |
//! |-----------------------------------------------------|---------------------------|
//! | connecting failed (refused, unreachable, timeout)   | every call                |
//! | UNAVAILABLE carrying `swarm-leader-addr`            | every call                |
//! | timeout, connection lost after sending, UNAVAILABLE without hint | repeatable calls only |
//! | any other answer (not found, stale token, ...)      | no call                   |
//!
//! Repeatable calls: `get_work`, `list_work` (each page), `work_stats`,
//! `watch_work` (opening the stream), `cluster_status`, `renew`,
//! `complete`, `cancel`, `submit` with a non-empty idempotency key, and
//! every schedule and limit call but `trigger_schedule` (the node answers a
//! repeated create, set, pause, resume or delete as the first).
//! `claim`, `fail`, `release`, `handoff`, `submit` without a key,
//! `retry_work`, `trigger_schedule` and the membership changes are not:
//! after an ambiguous failure they end with
//! [`ClientError::OutcomeUnknown`]. Attempts go round the endpoint list up to
//! [`RetryPolicy::rounds`] times, with a pause between rounds, all within
//! [`RetryPolicy::total_timeout`].
//!
//! [`SwarmClient::watch_work`] opens its server stream like any read, going
//! round the endpoints; once the stream has started nothing retries it: a
//! broken stream ends with [`ClientError::WatchInterrupted`], and the caller
//! watches again from the start and skips the events it saw (by `seq`).
//!
//! Listings come in pages ([`LIST_DEFAULT_LIMIT`] items unless the request
//! says, at most [`LIST_MAX_LIMIT`], and never more than one gRPC message):
//! [`SwarmClient::list_work_page`] is one call, [`SwarmClient::list_work_pages`]
//! a stream that follows `next_page_token` (each page a call retried like any
//! read), and [`SwarmClient::list_work`] collects every matching item.
//! [`SwarmClient::work_stats`] counts items by status and type without
//! listing them.
//!
//! ```no_run
//! use swarm_client::SwarmClient;
//! use swarm_client::proto::{ClaimRequest, CompleteRequest, SubmitRequest};
//!
//! # async fn demo() -> Result<(), swarm_client::ClientError> {
//! let client = SwarmClient::connect(vec!["127.0.0.1:7101".into(), "127.0.0.1:7102".into()])?;
//! client
//!     .submit(SubmitRequest {
//!         r#type: "build".into(),
//!         payload_json: r#"{"repo":"swarm"}"#.into(),
//!         idempotency_key: "build-swarm-1".into(),
//!         ..Default::default()
//!     })
//!     .await?;
//! let items = client
//!     .claim(ClaimRequest { agent: "a1".into(), max: 1, ..Default::default() })
//!     .await?;
//! for item in items {
//!     let token = item.claim.as_ref().map_or(0, |c| c.token);
//!     client
//!         .complete(CompleteRequest { id: item.id, token, result_json: "true".into() })
//!         .await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - `client`: [`SwarmClient`], its channels, and the call loop that picks
//!   nodes, follows leader hints and retries; `client/queue.rs` holds the
//!   schedule and limit calls.
//! - `retry`: sorting a failed attempt (not sent, refused, ambiguous,
//!   answered) and deciding per call whether to try again.
//! - `config`: [`ClientConfig`] timeouts and the [`RetryPolicy`].
//! - `endpoint`: [`NodeAddr`], parsing `host:port` / `http://host:port`.
//! - `error`: [`ClientError`], mapping node answers to what callers act on.

mod client;
mod config;
mod endpoint;
mod error;
mod retry;

pub use client::{SwarmClient, WorkEvents, WorkPages};
pub use config::{ClientConfig, RetryPolicy};
pub use endpoint::NodeAddr;
pub use error::ClientError;
pub use retry::LEADER_ADDR_KEY;

/// The generated protocol types the client takes and returns.
pub use swarm_proto::v1 as proto;
/// The page sizes of `list_work`: the default and the most one page holds.
pub use swarm_proto::{LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT};
