//! Swarm's replicated state machine: work items, claims under leases, and
//! fencing tokens, so that no two agents ever hold the same work.
//!
//! The crate is pure: [`apply`] takes the [`State`] and one [`Command`] and
//! returns a [`Response`] or a [`ClaimError`]. It reads no clock (time comes
//! only from the `now` a leader stamped on the command), does no I/O, never
//! panics, and gives the same state for the same sequence of commands on
//! every replica. Raft (in `swarm-raft`) decides the sequence.
//!
//! ```
//! use swarm_claims::{apply, Command, Response, State, command::{Claim, Submit}};
//!
//! let mut state = State::new();
//! apply(&mut state, Command::Submit(Submit {
//!     id: "w1".into(), idempotency_key: String::new(), kind: "build".into(),
//!     priority: 0, requires: vec![], payload: "{}".into(), max_attempts: 0, now: 1_000,
//! })).unwrap();
//! let granted = apply(&mut state, Command::Claim(Claim {
//!     agent: "a1".into(), kinds: vec!["build".into()], capabilities: vec![],
//!     max: 1, lease_ms: 10_000, now: 1_000,
//! })).unwrap();
//! let Response::Granted(items) = granted else { panic!() };
//! assert_eq!(items[0].lease.as_ref().unwrap().token, 1);
//! ```
//!
//! # Layout
//! - [`command`]: the commands, one per Raft entry (or many in a `Batch`).
//! - [`request`]: each command paired with the shape of its answer
//!   ([`Request`]), so callers get typed answers instead of a [`Response`].
//! - `state`: [`State`], [`WorkItem`], [`Lease`] and the claim indexes.
//! - `counts`: [`WorkCounts`], items by type and status, kept by `apply`.
//! - `apply`: [`apply`], the transition function, and [`Response`].
//! - `retention`: `Compact` (finished items leave after the retention, in
//!   bounded batches) and [`ITEM_BOUNDS`], what one item keeps.
//! - `validate`: [`Limits`] on names and sizes, checked at the edge and again
//!   by `apply`.
//! - `error`: [`ClaimError`], why a command was refused.

mod apply;
pub mod command;
pub mod control;
mod counts;
mod error;
mod hold;
pub mod request;
mod retention;
mod shared;
mod state;
mod validate;

pub use apply::{APPLY_LIMITS, Response, WORKFLOW_KIND, apply};
pub use command::Command;
pub use control::{
    Hold, ItemControl, KeyLimit, Overlap, QueueControl, Rate, Schedule, ScheduleSpec,
    decode_items_without_control,
};
pub use counts::{StatusCounts, WorkCounts};
pub use error::ClaimError;
pub use request::Request;
pub use retention::{ITEM_BOUNDS, ItemBounds, MAX_COMPACT_BATCH};
pub use state::{
    ClaimEnd, DEFAULT_MAX_ATTEMPTS, EventKind, Holder, ItemEvent, JournalEntry, Lease, NodeInfo,
    State, Status, Text, WorkItem,
};
pub use validate::Limits;

/// A work item's id.
pub type WorkId = String;

/// A fencing token: the value of the cluster-wide grant counter when a claim
/// was granted. Strictly increasing, globally and per item.
pub type FencingToken = u64;

/// Milliseconds since the Unix epoch, as stamped by the proposing leader.
pub type Millis = u64;

impl State {
    /// Encodes the whole state as snapshots hold it: bincode 2, standard
    /// configuration, the state and then its queue control (swarm-raft adds
    /// a header and a checksum around it).
    pub fn to_snapshot(&self) -> Result<Vec<u8>, ClaimError> {
        bincode::serde::encode_to_vec(self.snapshot_body(), bincode::config::standard()).map_err(
            |e| ClaimError::Invalid {
                field: "snapshot".into(),
                reason: e.to_string(),
            },
        )
    }

    /// Decodes a state written by [`State::to_snapshot`].
    pub fn from_snapshot(bytes: &[u8]) -> Result<State, ClaimError> {
        let invalid = |reason: String| ClaimError::Invalid {
            field: "snapshot".into(),
            reason,
        };
        let ((mut state, control), read) =
            decode_state(bytes).map_err(|e| invalid(e.to_string()))?;
        match bytes.len() - read {
            0 => {
                state.control = control;
                Ok(State::restored(state))
            }
            left => Err(invalid(format!("{left} bytes follow the state"))),
        }
    }

    /// What a snapshot body (format version 2) encodes: the state, then its
    /// queue control.
    pub fn snapshot_body(&self) -> (&State, &QueueControl) {
        (self, &self.control)
    }

    /// A decoded snapshot body, put together.
    pub fn from_snapshot_body((mut state, control): (State, QueueControl)) -> State {
        state.control = control;
        state.restored()
    }
}

/// Decodes a state from `bytes`, held to a limit on what its strings may
/// claim: bincode allocates a string's length before reading it, so a damaged
/// length could ask for any amount. A valid encoding's strings are within
/// its own length; the limit is the first tier at least that long (at most
/// 64 times it, or 1 MiB).
fn decode_state(
    bytes: &[u8],
) -> Result<((State, QueueControl), usize), bincode::error::DecodeError> {
    use bincode::serde::decode_from_slice as decode;
    const MIB: usize = 1 << 20;
    const SMALL: usize = MIB;
    const MEDIUM: usize = 64 * MIB;
    const LARGE: usize = 4096 * MIB;
    const HUGE: usize = 1 << 40;
    let config = bincode::config::standard();
    let len = bytes.len();
    if len <= SMALL {
        decode(bytes, config.with_limit::<SMALL>())
    } else if len <= MEDIUM {
        decode(bytes, config.with_limit::<MEDIUM>())
    } else if len <= LARGE {
        decode(bytes, config.with_limit::<LARGE>())
    } else {
        decode(bytes, config.with_limit::<HUGE>())
    }
}
