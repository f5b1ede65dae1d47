//! `apply()`: the transition function. Pure, deterministic, total: it reads
//! no clock, does no I/O, never panics, and a refused command changes
//! nothing.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::command::{Cancel, Claim, Complete, Fail, Handoff, Release, Renew, StepDone, Submit};
use crate::command::{RegisterNode, SubmitControl};
use crate::state::{
    ClaimEnd, EventKind, ItemEvent, JournalEntry, Lease, NodeInfo, QueueKey, Status, Text, WorkItem,
};
use crate::{
    ClaimError, Command, DEFAULT_MAX_ATTEMPTS, FencingToken, Limits, Millis, State, WorkId,
};

/// What an applied command answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// `created` is false when the idempotency key matched an existing item.
    Submitted {
        item: WorkItem,
        created: bool,
    },
    /// The items a claim was granted, with their new tokens; may be empty.
    Granted(Vec<WorkItem>),
    Renewed {
        renewed: Vec<WorkItem>,
        rejected: Vec<(FencingToken, ClaimError)>,
    },
    /// The item after a step checkpoint, complete, fail, release, hand-off or
    /// cancel.
    Item(WorkItem),
    /// Items whose lease a tick expired.
    Expired(Vec<WorkId>),
    /// How many leases a new leader extended.
    Extended(usize),
    /// A node's registration was recorded.
    Registered,
    Batch(Vec<Result<Response, ClaimError>>),
    /// How many finished items a compaction removed. Last, so that the
    /// binary encoding of every older variant stays as it was.
    Compacted(usize),
    // Queue control, after every older variant for the same reason.
    /// A concurrency key's limit as set.
    Limit(crate::control::KeyLimit),
    /// Whether a limit or schedule was there to delete.
    Deleted(bool),
    /// A schedule after a create, pause or resume.
    Schedule(crate::control::Schedule),
    /// A schedule after a fire, and the item it submitted (none when the
    /// fire was skipped, or had already happened).
    Fired {
        schedule: Box<crate::control::Schedule>,
        item: Option<WorkItem>,
    },
}

/// Limits `apply()` holds every entry to. They are fixed (not node config) so
/// every replica answers a committed entry the same way; the edge checks the
/// tighter, configurable limits before proposing.
pub const APPLY_LIMITS: Limits = Limits {
    max_payload_bytes: 16 * 1024 * 1024,
    max_name_len: 256,
    max_claim: 10_000,
    max_capabilities: 256,
};

/// Applies one command. A refused command leaves `state` exactly as it was.
pub fn apply(state: &mut State, cmd: Command) -> Result<Response, ClaimError> {
    if let Command::Batch(cmds) = cmd {
        let mut out = Vec::with_capacity(cmds.len());
        for c in cmds {
            out.push(match c {
                Command::Batch(_) => Err(ClaimError::invalid("batch", "batches do not nest")),
                c => apply_one(state, c),
            });
        }
        return Ok(Response::Batch(out));
    }
    apply_one(state, cmd)
}

fn apply_one(state: &mut State, cmd: Command) -> Result<Response, ClaimError> {
    APPLY_LIMITS.check(&cmd)?;
    match cmd {
        Command::Submit(c) => submit(state, c, SubmitControl::default()),
        Command::SubmitWith(c, control) => submit(state, c, control),
        Command::SetLimit(c) => crate::control::set_limit(state, c),
        Command::DeleteLimit(c) => Ok(crate::control::delete_limit(state, c)),
        Command::Retry(c) => crate::control::retry(state, c),
        Command::CreateSchedule(c) => crate::control::create_schedule(state, c),
        Command::PauseSchedule(c) => crate::control::pause_schedule(state, c),
        Command::DeleteSchedule(c) => Ok(crate::control::delete_schedule(state, c)),
        Command::FireSchedule(c) => crate::control::fire_schedule(state, c),
        Command::Pause(c) => crate::hold::pause(state, c),
        Command::Resume(c) => crate::hold::resume(state, c),
        Command::Signal(c) => crate::hold::signal(state, c),
        Command::Park(c) => crate::hold::park(state, c),
        Command::Claim(c) => claim(state, c),
        Command::Renew(c) => renew(state, c),
        Command::StepDone(c) => step_done(state, c),
        Command::Complete(c) => complete(state, c),
        Command::Fail(c) => fail(state, c),
        Command::Release(c) => release(state, c),
        Command::Handoff(c) => handoff(state, c),
        Command::Cancel(c) => cancel(state, c),
        Command::RegisterNode(c) => Ok(register_node(state, c)),
        Command::Tick { now } => Ok(tick(state, now)),
        Command::LeaderTookOffice { now } => Ok(extend_leases(state, now)),
        Command::Compact(c) => Ok(crate::retention::compact(state, c)),
        Command::Batch(_) => Err(ClaimError::invalid("batch", "batches do not nest")),
    }
}

/// Time in the state machine never runs backwards, whatever a new leader's
/// clock says. Delayed items whose time has come join the claim queue.
pub(crate) fn advance(state: &mut State, now: Millis) -> Millis {
    state.clock = state.clock.max(now);
    state.promote_due(state.clock);
    state.clock
}

pub(crate) fn submit(
    state: &mut State,
    c: Submit,
    control: SubmitControl,
) -> Result<Response, ClaimError> {
    if !c.idempotency_key.is_empty()
        && let Some(item) = state
            .by_key
            .get(c.idempotency_key.as_str())
            .and_then(|id| state.items.get(id))
    {
        return Ok(Response::Submitted {
            item: WorkItem::clone(item),
            created: false,
        });
    }
    if state.items.contains_key(c.id.as_str()) {
        return Err(ClaimError::DuplicateId { id: c.id });
    }
    let now = advance(state, c.now);
    let seq = state.next_seq;
    state.next_seq += 1;
    let id = Text::from(c.id);
    let key = if c.idempotency_key.is_empty() {
        crate::shared::empty_text()
    } else {
        Text::from(c.idempotency_key)
    };
    let max_attempts = if c.max_attempts == 0 {
        DEFAULT_MAX_ATTEMPTS
    } else {
        c.max_attempts
    };
    let mut item = WorkItem::pending(
        id.clone(),
        state.kind_text(&c.kind),
        c.priority,
        c.payload.into_boxed_str(),
        key.clone(),
        max_attempts,
        now,
        seq,
    );
    if !c.requires.is_empty() {
        item.rare_mut().requires = c.requires;
    }
    let not_before = control.not_before.max(now.saturating_add(control.delay_ms));
    let delayed = not_before > now;
    if delayed || !control.concurrency_key.is_empty() {
        let concurrency_key = (!control.concurrency_key.is_empty())
            .then(|| state.concurrency_key_text(&control.concurrency_key));
        let item_control = item.control_mut();
        item_control.not_before = if delayed { not_before } else { 0 };
        item_control.concurrency_key = concurrency_key;
    }
    // The submission is the item's first event, implied by `submitted_at`:
    // nothing to store.
    if !key.is_empty() {
        state.by_key.insert(key, id.clone());
    }
    let kind = item.kind.clone();
    if delayed {
        state.delayed.insert((not_before, id.clone()));
    } else {
        state.enqueue(queue_key(&item), &kind);
    }
    state.counts.insert(&item);
    state.items.insert(id, Arc::new(item.clone()));
    Ok(Response::Submitted {
        item,
        created: true,
    })
}

fn claim(state: &mut State, c: Claim) -> Result<Response, ClaimError> {
    let now = advance(state, c.now);
    let chosen = state.claimable(&c.kinds, &c.capabilities, c.max as usize, now);
    let mut granted = Vec::with_capacity(chosen.len());
    for key in chosen {
        let Some((kind, concurrency_key)) = state
            .items
            .get(&key.id)
            .map(|i| (i.kind.clone(), i.concurrency_key().cloned()))
        else {
            continue;
        };
        state.dequeue(&key, &kind);
        state.spend_token(concurrency_key.as_ref(), now);
        if let Some(item) = grant(state, &key.id, &c.agent, c.lease_ms, now, true) {
            granted.push(item);
        }
    }
    Ok(Response::Granted(granted))
}

/// Gives a (no longer queued) item a new claim under the next token.
fn grant(
    state: &mut State,
    id: &str,
    agent: &str,
    lease_ms: Millis,
    now: Millis,
    counts_as_attempt: bool,
) -> Option<WorkItem> {
    let kind = if counts_as_attempt {
        EventKind::Claimed
    } else {
        EventKind::HandedOff
    };
    let agent = state.agent_text(agent);
    let item = state.items.get_mut(id).map(Arc::make_mut)?;
    state.last_token += 1;
    let token = state.last_token;
    let expires_at = now.saturating_add(lease_ms);
    state.counts.set_status(item, Status::Claimed);
    if counts_as_attempt {
        item.attempt = item.attempt.saturating_add(1);
    }
    item.token = token;
    item.updated_at = now;
    item.lease = Some(Lease {
        agent: agent.clone(),
        token,
        granted_at: now,
        expires_at,
        lease_ms,
        progress: None,
    });
    // The new holder is the lease's: nothing more to store until it ends;
    // and so is its grant event, while it is the last.
    crate::retention::bound_history(item);
    if counts_as_attempt {
        item.imply_claim_event();
        crate::retention::bound_events(item);
    } else {
        record(item, now, kind, Some((agent.clone(), token)), None, None);
    }
    state.live.insert(token, item.id.clone());
    state.by_agent.entry(agent).or_default().insert(token);
    state.expiry.insert((expires_at, token));
    Some(WorkItem::clone(item))
}

/// Ends the live claim of `item` (which must have one) and drops it from
/// every claim index.
pub(crate) fn end_claim(state: &mut State, id: &str, how: ClaimEnd, now: Millis) {
    let Some(item) = state.items.get_mut(id).map(Arc::make_mut) else {
        return;
    };
    // The lease goes: its grant event can no longer be implied by it.
    item.materialize_claim_event();
    let Some(lease) = item.lease.take() else {
        return;
    };
    item.updated_at = now;
    item.end_holder(&lease, how);
    let kind = match how {
        ClaimEnd::Expired => Some(EventKind::Expired),
        ClaimEnd::Released => Some(EventKind::Released),
        _ => None,
    };
    if let Some(kind) = kind {
        record(
            item,
            now,
            kind,
            Some((lease.agent.clone(), lease.token)),
            None,
            None,
        );
    }
    state.live.remove(&lease.token);
    state.expiry.remove(&(lease.expires_at, lease.token));
    if let Some(tokens) = state.by_agent.get_mut(&*lease.agent) {
        tokens.remove(&lease.token);
        if tokens.is_empty() {
            state.by_agent.remove(&*lease.agent);
        }
    }
}

/// The item behind `id` if `token` is its live claim's token.
fn held<'a>(state: &'a State, id: &str, token: FencingToken) -> Result<&'a WorkItem, ClaimError> {
    let item = state
        .items
        .get(id)
        .ok_or_else(|| ClaimError::NotFound { id: id.to_string() })?;
    match item.current_token() {
        Some(t) if t == token => Ok(item),
        current => Err(ClaimError::StaleToken {
            id: id.to_string(),
            presented: token,
            current,
        }),
    }
}

fn renew(state: &mut State, c: Renew) -> Result<Response, ClaimError> {
    let now = advance(state, c.now);
    let tokens: Vec<FencingToken> = if c.tokens.is_empty() {
        state
            .by_agent
            .get(c.agent.as_str())
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    } else {
        c.tokens
    };
    let mut renewed = Vec::new();
    let mut rejected = Vec::new();
    for token in tokens {
        let lease = state
            .live
            .get(&token)
            .and_then(|id| state.items.get(id))
            .and_then(|item| item.lease.as_ref());
        let lease = match lease {
            Some(l) if *l.agent == *c.agent && l.expires_at > now => l.clone(),
            _ => {
                rejected.push((
                    token,
                    ClaimError::NotHolder {
                        agent: c.agent.clone(),
                        token,
                    },
                ));
                continue;
            }
        };
        let Some(id) = state.live.get(&token).cloned() else {
            continue;
        };
        let expires_at = now.saturating_add(lease.lease_ms).max(lease.expires_at);
        state.expiry.remove(&(lease.expires_at, token));
        state.expiry.insert((expires_at, token));
        if let Some(item) = state.items.get_mut(&id).map(Arc::make_mut) {
            if let Some(l) = item.lease.as_mut() {
                l.expires_at = expires_at;
                if let Some(progress) = c.progress.as_deref() {
                    l.progress = Some(progress.into());
                }
            }
            item.updated_at = now;
            renewed.push(WorkItem::clone(item));
        }
    }
    Ok(Response::Renewed { renewed, rejected })
}

fn step_done(state: &mut State, c: StepDone) -> Result<Response, ClaimError> {
    crate::retention::check_journal_room(held(state, &c.id, c.token)?, c.outcome.len())?;
    let now = advance(state, c.now);
    let item = state
        .items
        .get_mut(c.id.as_str())
        .map(Arc::make_mut)
        .ok_or_else(|| ClaimError::NotFound { id: c.id.clone() })?;
    let index = item.journal().len();
    let holder = item.lease.as_ref().map(|l| (l.agent.clone(), c.token));
    push_event(
        item,
        ItemEvent::new(
            now,
            EventKind::StepRecorded,
            holder,
            Some(c.step.clone()),
            None,
            Some(index),
        ),
    );
    let journal = &mut item.rare_mut().journal;
    journal.reserve_exact(1);
    journal.push(JournalEntry {
        step: c.step,
        token: c.token,
        outcome: c.outcome,
    });
    item.updated_at = now;
    Ok(Response::Item(WorkItem::clone(item)))
}

fn complete(state: &mut State, c: Complete) -> Result<Response, ClaimError> {
    // A retried complete of the same claim answers as the first one did.
    if let Some(item) = state.items.get(c.id.as_str())
        && item.status == Status::Completed
        && item.token == c.token
    {
        return Ok(Response::Item(WorkItem::clone(item)));
    }
    held(state, &c.id, c.token)?;
    let now = advance(state, c.now);
    let agent = holder_of(state, &c.id);
    end_claim(state, &c.id, ClaimEnd::Completed, now);
    let item = finish(state, &c.id, Status::Completed, now)?;
    item.result = Some(c.result.into());
    record(
        item,
        now,
        EventKind::Completed,
        agent.map(|a| (a, c.token)),
        None,
        None,
    );
    Ok(Response::Item(item.clone()))
}

fn fail(state: &mut State, c: Fail) -> Result<Response, ClaimError> {
    held(state, &c.id, c.token)?;
    let now = advance(state, c.now);
    let agent = holder_of(state, &c.id);
    end_claim(state, &c.id, ClaimEnd::Failed, now);
    let (cancelling, retry) = state.items.get(c.id.as_str()).map_or((false, false), |i| {
        (
            i.cancel_requested().is_some(),
            c.retry && i.attempt < i.max_attempts,
        )
    });
    // A holder that undid a cancelled workflow ends it with a fail: the
    // item ends cancelled, as its owner asked.
    let (item, kind) = if cancelling {
        (
            finish(state, &c.id, Status::Cancelled, now)?,
            EventKind::Cancelled,
        )
    } else if retry {
        (requeue(state, &c.id, now)?, EventKind::Retrying)
    } else {
        let item = state_finish_dead(state, &c.id, now, c.retry)?;
        (item, EventKind::Failed)
    };
    record(
        item,
        now,
        kind,
        agent.map(|a| (a, c.token)),
        None,
        Some(c.error.clone()),
    );
    item.rare_mut().error = Some(c.error);
    Ok(Response::Item(item.clone()))
}

fn release(state: &mut State, c: Release) -> Result<Response, ClaimError> {
    held(state, &c.id, c.token)?;
    let now = advance(state, c.now);
    end_claim(state, &c.id, ClaimEnd::Released, now);
    let item = requeue(state, &c.id, now)?;
    // Given back untried: the grant does not count against the item.
    item.attempt = item.attempt.saturating_sub(1);
    Ok(Response::Item(item.clone()))
}

fn handoff(state: &mut State, c: Handoff) -> Result<Response, ClaimError> {
    let lease_ms = held(state, &c.id, c.token)?
        .lease
        .as_ref()
        .map(|l| l.lease_ms)
        .unwrap_or_default();
    let now = advance(state, c.now);
    end_claim(state, &c.id, ClaimEnd::HandedOff, now);
    grant(state, &c.id, &c.to_agent, lease_ms, now, false)
        .map(Response::Item)
        .ok_or(ClaimError::NotFound { id: c.id })
}

fn cancel(state: &mut State, c: Cancel) -> Result<Response, ClaimError> {
    let item = state
        .items
        .get(c.id.as_str())
        .ok_or_else(|| ClaimError::NotFound { id: c.id.clone() })?;
    match item.status {
        Status::Cancelled => return Ok(Response::Item(WorkItem::clone(item))),
        s if s.is_terminal() => {
            return Err(ClaimError::WrongStatus {
                id: c.id,
                status: s,
                action: "cancel".to_string(),
            });
        }
        _ => {}
    }
    // A workflow that is running, or has steps done, has effects to undo:
    // the cancel becomes a request its (next) holder carries out.
    let undo_first = *item.kind == *WORKFLOW_KIND
        && (item.status == Status::Claimed || !item.journal().is_empty());
    let key = queue_key(item);
    let kind = item.kind.clone();
    let now = advance(state, c.now);
    if undo_first {
        let item = state
            .items
            .get_mut(c.id.as_str())
            .map(Arc::make_mut)
            .ok_or_else(|| ClaimError::NotFound { id: c.id.clone() })?;
        if item.cancel_requested().is_none() {
            record(
                item,
                now,
                EventKind::CancelRequested,
                None,
                None,
                Some(c.reason.clone()),
            );
            item.rare_mut().cancel_requested = Some(c.reason);
            item.updated_at = now;
        }
        // A parked run is claimed again at once, for its undo.
        crate::hold::release_hold(state, &c.id);
        let item = state
            .items
            .get(c.id.as_str())
            .ok_or_else(|| ClaimError::NotFound { id: c.id.clone() })?;
        return Ok(Response::Item(WorkItem::clone(item)));
    }
    state.dequeue(&key, &kind);
    if let Some(not_before) = state.items.get(c.id.as_str()).map(|i| i.not_before()) {
        state
            .delayed
            .remove(&(not_before, Text::from(c.id.as_str())));
    }
    end_claim(state, &c.id, ClaimEnd::Cancelled, now);
    let item = finish(state, &c.id, Status::Cancelled, now)?;
    record(
        item,
        now,
        EventKind::Cancelled,
        None,
        None,
        Some(c.reason.clone()),
    );
    item.rare_mut().error = Some(c.reason);
    Ok(Response::Item(item.clone()))
}

fn tick(state: &mut State, now: Millis) -> Response {
    let now = advance(state, now);
    state.refill_buckets(now);
    let due: Vec<FencingToken> = state
        .expiry
        .iter()
        .take_while(|(at, _)| *at <= now)
        .map(|(_, t)| *t)
        .collect();
    let mut expired = Vec::with_capacity(due.len());
    for token in due {
        let Some(id) = state.live.get(&token).cloned() else {
            continue;
        };
        end_claim(state, &id, ClaimEnd::Expired, now);
        let Some(item) = state.items.get(&id) else {
            continue;
        };
        let (attempt, max) = (item.attempt, item.max_attempts);
        let cancelling = item.cancel_requested().map(str::to_string);
        let outcome = match (&cancelling, attempt >= max) {
            (Some(_), true) => finish(state, &id, Status::Cancelled, now),
            (None, true) => state_finish_dead(state, &id, now, true),
            (_, false) => requeue(state, &id, now),
        };
        if let Ok(item) = outcome
            && item.status.is_terminal()
        {
            let reason = format!("lease expired on attempt {attempt} of {max}: no attempts left");
            let kind = if item.status == Status::Cancelled {
                EventKind::Cancelled
            } else {
                EventKind::Failed
            };
            record(item, now, kind, None, None, Some(reason.clone()));
            item.rare_mut().error =
                Some(cancelling.map_or(reason.clone(), |r| format!("{r} ({reason})")));
        }
        expired.push(id.to_string());
    }
    Response::Expired(expired)
}

fn extend_leases(state: &mut State, now: Millis) -> Response {
    let now = advance(state, now);
    let tokens: Vec<FencingToken> = state.live.keys().copied().collect();
    let mut extended = 0;
    for token in tokens {
        let Some(item) = state
            .live
            .get(&token)
            .and_then(|id| state.items.get_mut(id).map(Arc::make_mut))
        else {
            continue;
        };
        let Some(lease) = item.lease.as_mut() else {
            continue;
        };
        let floor = now.saturating_add(lease.lease_ms);
        if lease.expires_at < floor {
            state.expiry.remove(&(lease.expires_at, token));
            lease.expires_at = floor;
            state.expiry.insert((floor, token));
            extended += 1;
        }
    }
    Response::Extended(extended)
}

/// Puts an unclaimed item back in the claimable queue.
pub(crate) fn requeue<'a>(
    state: &'a mut State,
    id: &str,
    now: Millis,
) -> Result<&'a mut WorkItem, ClaimError> {
    let item = state
        .items
        .get_mut(id)
        .map(Arc::make_mut)
        .ok_or_else(|| ClaimError::NotFound { id: id.to_string() })?;
    state.counts.set_status(item, Status::Pending);
    item.updated_at = now;
    if !crate::hold::pause_on_requeue(item, now) {
        let key = queue_key(item);
        let kind = item.kind.clone();
        state.enqueue(key, &kind);
    }
    let item = state
        .items
        .get_mut(id)
        .map(Arc::make_mut)
        .ok_or_else(|| ClaimError::NotFound { id: id.to_string() })?;
    Ok(item)
}

/// Ends the item failed; `dead` (its attempts ran out) makes it a dead
/// letter.
fn state_finish_dead<'a>(
    state: &'a mut State,
    id: &str,
    now: Millis,
    dead: bool,
) -> Result<&'a mut WorkItem, ClaimError> {
    finish(state, id, Status::Failed, now)?;
    let item = state
        .items
        .get_mut(id)
        .map(Arc::make_mut)
        .ok_or_else(|| ClaimError::NotFound { id: id.to_string() })?;
    if dead {
        state.counts.set_dead_letter(item, true);
    }
    Ok(item)
}

fn finish<'a>(
    state: &'a mut State,
    id: &str,
    status: Status,
    now: Millis,
) -> Result<&'a mut WorkItem, ClaimError> {
    let item = state
        .items
        .get_mut(id)
        .map(Arc::make_mut)
        .ok_or_else(|| ClaimError::NotFound { id: id.to_string() })?;
    if item.status.is_terminal() {
        state.ended.remove(&(item.updated_at, item.id.clone()));
    }
    state.counts.set_status(item, status);
    item.updated_at = now;
    // A pause asked of a run that ended first has nothing left to pause.
    if item.control().is_some_and(|c| c.pause_requested.is_some()) {
        item.control_mut().pause_requested = None;
        item.tidy_rare();
    }
    crate::retention::note_ended(&mut state.ended, item);
    Ok(item)
}

/// The work type a node runs as a workflow; a cancel of one that is under
/// way asks its holder to undo first.
pub const WORKFLOW_KIND: &str = "workflow";

fn register_node(state: &mut State, c: RegisterNode) -> Response {
    let now = advance(state, c.now);
    let registered_at = state.nodes.get(&c.agent).map_or(now, |n| n.registered_at);
    let info = NodeInfo {
        agent: c.agent.clone(),
        node_id: c.node_id,
        addr: c.addr,
        capabilities: c.capabilities,
        capacity: c.capacity,
        registered_at,
    };
    state.nodes.insert(c.agent, info);
    Response::Registered
}

/// The agent of the item's live claim.
fn holder_of(state: &State, id: &str) -> Option<Text> {
    state
        .items
        .get(id)
        .and_then(|i| i.lease.as_ref())
        .map(|l| l.agent.clone())
}

fn record(
    item: &mut WorkItem,
    at: Millis,
    kind: EventKind,
    holder: Option<(Text, FencingToken)>,
    step: Option<String>,
    detail: Option<String>,
) {
    push_event(item, ItemEvent::new(at, kind, holder, step, detail, None));
}

pub(crate) fn push_event(item: &mut WorkItem, event: ItemEvent) {
    item.push_event(event);
    crate::retention::bound_events(item);
}

pub(crate) fn queue_key(item: &WorkItem) -> QueueKey {
    QueueKey {
        neg_priority: -i64::from(item.priority),
        seq: item.seq,
        id: item.id.clone(),
    }
}
