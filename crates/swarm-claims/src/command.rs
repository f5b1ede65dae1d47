//! Commands: the only way the state changes. Each one is (part of) one Raft
//! entry; time enters only through the `now` the proposing leader stamped.

use serde::{Deserialize, Serialize};

use crate::{FencingToken, Millis, WorkId};

/// One command of the replicated state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Submit(Submit),
    Claim(Claim),
    Renew(Renew),
    StepDone(StepDone),
    Complete(Complete),
    Fail(Fail),
    Release(Release),
    Handoff(Handoff),
    Cancel(Cancel),
    RegisterNode(RegisterNode),
    /// Expires every lease that ended at or before `now`.
    Tick {
        now: Millis,
    },
    /// Proposed by a new leader when it takes office: every live lease is
    /// extended to at least `now + lease_ms`, so a change of leader never
    /// shortens a lease an agent was promised.
    LeaderTookOffice {
        now: Millis,
    },
    /// Several commands applied in order as one entry (group commit). Each
    /// gets its own response; one failing does not undo the others.
    Batch(Vec<Command>),
    /// Retention: removes finished items that ended long enough ago. Last,
    /// so that the binary encoding of every older variant stays as it was.
    Compact(Compact),
    // Queue control, after every older variant for the same reason.
    /// A submit with queue control: a time before which the item is not
    /// claimable, and a concurrency key.
    SubmitWith(Submit, SubmitControl),
    SetLimit(SetLimit),
    DeleteLimit(DeleteLimit),
    /// Puts a failed item back to pending.
    Retry(Retry),
    CreateSchedule(CreateSchedule),
    PauseSchedule(PauseSchedule),
    DeleteSchedule(DeleteSchedule),
    FireSchedule(FireSchedule),
    // Run control.
    /// Pauses an item: a pending one is held out of the claim queue; a
    /// running workflow is asked to stop at its next step boundary.
    Pause(Pause),
    /// Undoes a pause.
    Resume(Resume),
    /// Delivers a named signal (with a JSON payload) to an item.
    Signal(Signal),
    /// The holder of a workflow run parks it (paused, waiting for a signal,
    /// sleeping): the claim ends without counting as an attempt and the item
    /// waits, holding no lease.
    Park(Park),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub id: WorkId,
    /// Who asked and why, for the item's events.
    pub reason: String,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub id: WorkId,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub id: WorkId,
    pub name: String,
    /// JSON text.
    pub payload: String,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Park {
    pub id: WorkId,
    pub token: FencingToken,
    pub hold: crate::control::Hold,
    pub now: Millis,
}

/// The queue-control part of a submit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitControl {
    /// Not claimable before this time (0: no such time).
    pub not_before: Millis,
    /// Not claimable before the leader's `now` plus this (0: none). With
    /// `not_before` too, the later of the two.
    pub delay_ms: Millis,
    /// Empty = none.
    pub concurrency_key: String,
}

/// Sets (or replaces) the limit on a concurrency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLimit {
    pub key: String,
    /// 0 = no cap on items claimed at once.
    pub max_running: u32,
    pub rate: Option<crate::control::Rate>,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteLimit {
    pub key: String,
    pub now: Millis,
}

/// Puts a failed item back to pending, its history kept. Without
/// `reset_attempts` it keeps its attempt count (and gets one more attempt
/// if it had none left); with it, it starts over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub id: WorkId,
    pub reset_attempts: bool,
    pub now: Millis,
}

/// Creates a cron schedule whose first fire time (computed at the edge
/// from its expression) is `next_fire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSchedule {
    pub spec: crate::control::ScheduleSpec,
    pub next_fire: Millis,
    pub now: Millis,
}

/// Pauses a schedule, or resumes it from `next_fire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseSchedule {
    pub name: String,
    pub paused: bool,
    /// On resume: the first fire time after now.
    pub next_fire: Millis,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSchedule {
    pub name: String,
    pub now: Millis,
}

/// Fires a schedule for `fire_at` (which must be its next fire time, unless
/// `manual`), submitting an item with id `item_id`, and moves its next fire
/// time to `next_fire`. `missed` fire times came and went while nothing
/// fired them: they are folded into this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireSchedule {
    pub name: String,
    pub fire_at: Millis,
    pub next_fire: Millis,
    pub item_id: WorkId,
    /// A trigger by hand: fires now and leaves the next fire time alone.
    pub manual: bool,
    pub missed: u32,
    pub now: Millis,
}

/// Creates a work item, or returns the existing one with the same
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submit {
    pub id: WorkId,
    /// Empty = no idempotency.
    pub idempotency_key: String,
    pub kind: String,
    pub priority: i32,
    pub requires: Vec<String>,
    /// JSON text.
    pub payload: String,
    /// 0 = [`crate::DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    pub now: Millis,
}

/// Grants up to `max` of the highest-priority claimable items matching
/// `kinds` (empty = any) whose `requires` are all in `capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub agent: String,
    pub kinds: Vec<String>,
    pub capabilities: Vec<String>,
    pub max: u32,
    pub lease_ms: Millis,
    pub now: Millis,
}

/// Renews the agent's leases named by `tokens` (empty = all it holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renew {
    pub agent: String,
    pub tokens: Vec<FencingToken>,
    pub progress: Option<String>,
    pub now: Millis,
}

/// Records one workflow step's outcome in the item's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDone {
    pub id: WorkId,
    pub token: FencingToken,
    pub step: String,
    /// JSON text of the outcome.
    pub outcome: String,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complete {
    pub id: WorkId,
    pub token: FencingToken,
    /// JSON text.
    pub result: String,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fail {
    pub id: WorkId,
    pub token: FencingToken,
    pub error: String,
    /// True: back to pending while attempts remain.
    pub retry: bool,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: WorkId,
    pub token: FencingToken,
    pub now: Millis,
}

/// Moves a live claim to another agent under a new token, in one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub id: WorkId,
    pub token: FencingToken,
    pub to_agent: String,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    pub id: WorkId,
    pub reason: String,
    pub now: Millis,
}

/// A node announces (or updates) itself as a runner of workflows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterNode {
    pub agent: String,
    pub node_id: u64,
    pub addr: String,
    pub capabilities: Vec<String>,
    pub capacity: u32,
    pub now: Millis,
}

/// Removes the finished items (completed, failed, cancelled) that ended at
/// or before `before`, oldest first, at most `max` of them: the leader
/// proposes it with `before` = its now minus the cluster's retention, again
/// while a batch comes back full. Live items are never removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compact {
    pub before: Millis,
    /// At most [`crate::MAX_COMPACT_BATCH`].
    pub max: u32,
    pub now: Millis,
}

impl Command {
    /// Sets the time of this command (and of every command in a batch).
    /// The leader calls this right before proposing, so time in the state
    /// machine is always a leader's clock.
    pub fn stamp(&mut self, at: Millis) {
        match self {
            Command::Submit(c) => c.now = at,
            Command::Claim(c) => c.now = at,
            Command::Renew(c) => c.now = at,
            Command::StepDone(c) => c.now = at,
            Command::Complete(c) => c.now = at,
            Command::Fail(c) => c.now = at,
            Command::Release(c) => c.now = at,
            Command::Handoff(c) => c.now = at,
            Command::Cancel(c) => c.now = at,
            Command::RegisterNode(c) => c.now = at,
            Command::Compact(c) => c.now = at,
            Command::SubmitWith(c, _) => c.now = at,
            Command::SetLimit(c) => c.now = at,
            Command::DeleteLimit(c) => c.now = at,
            Command::Retry(c) => c.now = at,
            Command::CreateSchedule(c) => c.now = at,
            Command::PauseSchedule(c) => c.now = at,
            Command::DeleteSchedule(c) => c.now = at,
            Command::FireSchedule(c) => c.now = at,
            Command::Pause(c) => c.now = at,
            Command::Resume(c) => c.now = at,
            Command::Signal(c) => c.now = at,
            Command::Park(c) => c.now = at,
            Command::Tick { now } | Command::LeaderTookOffice { now } => *now = at,
            Command::Batch(cmds) => cmds.iter_mut().for_each(|c| c.stamp(at)),
        }
    }

    /// Roughly how many bytes the command adds to a log entry, so the
    /// proposer can bound the size of a batch.
    pub fn weight(&self) -> usize {
        const BASE: usize = 128;
        BASE + match self {
            Command::Submit(c) | Command::SubmitWith(c, _) => {
                c.payload.len() + c.id.len() + c.kind.len()
            }
            Command::CreateSchedule(c) => c.spec.payload.len(),
            Command::Signal(c) => c.payload.len(),
            Command::StepDone(c) => c.outcome.len(),
            Command::Complete(c) => c.result.len(),
            Command::Fail(c) => c.error.len(),
            Command::Cancel(c) => c.reason.len(),
            Command::Renew(c) => c.tokens.len() * 8 + c.progress.as_ref().map_or(0, String::len),
            Command::Batch(cmds) => cmds.iter().map(Command::weight).sum(),
            _ => 0,
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Submit(_) => "submit",
            Command::Claim(_) => "claim",
            Command::Renew(_) => "renew",
            Command::StepDone(_) => "step_done",
            Command::Complete(_) => "complete",
            Command::Fail(_) => "fail",
            Command::Release(_) => "release",
            Command::Handoff(_) => "handoff",
            Command::Cancel(_) => "cancel",
            Command::RegisterNode(_) => "register_node",
            Command::Tick { .. } => "tick",
            Command::LeaderTookOffice { .. } => "leader_took_office",
            Command::Compact(_) => "compact",
            Command::Batch(_) => "batch",
            Command::SubmitWith(..) => "submit",
            Command::SetLimit(_) => "set_limit",
            Command::DeleteLimit(_) => "delete_limit",
            Command::Retry(_) => "retry",
            Command::CreateSchedule(_) => "create_schedule",
            Command::PauseSchedule(_) => "pause_schedule",
            Command::DeleteSchedule(_) => "delete_schedule",
            Command::FireSchedule(_) => "fire_schedule",
            Command::Pause(_) => "pause",
            Command::Resume(_) => "resume",
            Command::Signal(_) => "signal",
            Command::Park(_) => "park",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Batch(cmds) => write!(f, "batch({})", cmds.len()),
            other => f.write_str(other.name()),
        }
    }
}
