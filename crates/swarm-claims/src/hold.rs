//! Run control: pause and resume, signals, and parked workflow runs. A held
//! item is pending but out of the claim queue (see [`Hold`]); a parked run
//! holds no lease and no node, and its journal keeps everything a later
//! holder resumes from.

use crate::command::{Park, Pause, Resume, Signal};
use crate::control::Hold;
use crate::state::{ClaimEnd, EventKind, ItemEvent, Status, Text};
use crate::{ClaimError, Millis, Response, State, WORKFLOW_KIND, WorkItem};
use std::sync::Arc;

fn item<'a>(state: &'a State, id: &str) -> Result<&'a WorkItem, ClaimError> {
    state
        .get(id)
        .ok_or_else(|| ClaimError::NotFound { id: id.to_string() })
}

fn item_mut<'a>(state: &'a mut State, id: &str) -> Result<&'a mut WorkItem, ClaimError> {
    state
        .items
        .get_mut(id)
        .map(Arc::make_mut)
        .ok_or_else(|| ClaimError::NotFound { id: id.to_string() })
}

fn not_finished(item: &WorkItem, action: &str) -> Result<(), ClaimError> {
    match item.status {
        s if s.is_terminal() => Err(ClaimError::WrongStatus {
            id: item.id.to_string(),
            status: s,
            action: action.to_string(),
        }),
        _ => Ok(()),
    }
}

fn record(item: &mut WorkItem, now: Millis, kind: EventKind, detail: String) {
    crate::apply::push_event(
        item,
        ItemEvent::new(now, kind, None, None, Some(detail), None),
    );
}

/// Takes a pending item out of the claim queue and the delayed index.
fn unqueue(state: &mut State, id: &str) {
    let Some((key, kind, not_before)) = state
        .get(id)
        .map(|i| (crate::apply::queue_key(i), i.kind.clone(), i.not_before()))
    else {
        return;
    };
    state.dequeue(&key, &kind);
    state.delayed.remove(&(not_before, Text::from(id)));
}

/// Puts a pending item where it belongs: the delayed index while its
/// `not_before` is ahead of the clock, else the claim queue.
fn queue(state: &mut State, id: &str) {
    if let Some(item) = state.items.get_mut(id).map(Arc::make_mut) {
        item.tidy_rare();
    }
    let clock = state.clock;
    let Some(item) = state.get(id) else {
        return;
    };
    let (not_before, key, kind, id) = (
        item.not_before(),
        crate::apply::queue_key(item),
        item.kind.clone(),
        item.id.clone(),
    );
    if not_before > clock {
        state.delayed.insert((not_before, id));
    } else {
        state.enqueue(key, &kind);
    }
}

pub(crate) fn pause(state: &mut State, c: Pause) -> Result<Response, ClaimError> {
    let current = item(state, &c.id)?;
    not_finished(current, "pause")?;
    let control = current.control();
    if matches!(
        control.and_then(|c| c.hold.as_ref()),
        Some(Hold::Paused { .. })
    ) || (current.status == Status::Claimed
        && control.is_some_and(|c| c.pause_requested.is_some()))
    {
        return Ok(Response::Item(current.clone()));
    }
    let running_workflow = current.status == Status::Claimed && *current.kind == *WORKFLOW_KIND;
    if current.status == Status::Claimed && !running_workflow {
        return Err(ClaimError::WrongStatus {
            id: c.id,
            status: Status::Claimed,
            action: "pause (a claimed task is its holder's: release or cancel it)".into(),
        });
    }
    let now = crate::apply::advance(state, c.now);
    if !running_workflow {
        unqueue(state, &c.id);
    }
    let item = item_mut(state, &c.id)?;
    let detail = if running_workflow {
        item.control_mut().pause_requested = Some(c.reason.clone());
        format!("pause requested: {}", c.reason)
    } else {
        // A parked run's wait gives way to the pause. Resumed, a run that
        // waited for a signal is claimable at once (the signal may have
        // come meanwhile); a sleeping one sleeps on until its time.
        let control = item.control_mut();
        if matches!(control.hold, Some(Hold::Signal { .. })) {
            control.not_before = 0;
        }
        control.hold = Some(Hold::Paused {
            reason: c.reason.clone(),
            since: now,
        });
        c.reason
    };
    item.updated_at = now;
    record(item, now, EventKind::Paused, detail);
    Ok(Response::Item(item.clone()))
}

pub(crate) fn resume(state: &mut State, c: Resume) -> Result<Response, ClaimError> {
    let current = item(state, &c.id)?;
    not_finished(current, "resume")?;
    let control = current.control();
    let paused = matches!(
        control.and_then(|c| c.hold.as_ref()),
        Some(Hold::Paused { .. })
    );
    let requested = control.is_some_and(|c| c.pause_requested.is_some());
    if !paused && !requested {
        return Err(ClaimError::WrongStatus {
            id: c.id,
            status: current.status,
            action: "resume (it is not paused)".into(),
        });
    }
    let now = crate::apply::advance(state, c.now);
    let item = item_mut(state, &c.id)?;
    let control = item.control_mut();
    control.pause_requested = None;
    if paused {
        control.hold = None;
    }
    item.updated_at = now;
    record(item, now, EventKind::Resumed, "resumed".into());
    item.tidy_rare();
    if paused {
        queue(state, &c.id);
    }
    Ok(Response::Item(item_mut(state, &c.id)?.clone()))
}

pub(crate) fn signal(state: &mut State, c: Signal) -> Result<Response, ClaimError> {
    let current = item(state, &c.id)?;
    not_finished(current, "take a signal")?;
    if let Some((_, payload)) = current
        .control()
        .and_then(|ctl| ctl.signals.iter().find(|(name, _)| *name == c.name))
    {
        // The same signal again (a retried call) answers as the first did.
        if *payload == c.payload {
            return Ok(Response::Item(current.clone()));
        }
        return Err(ClaimError::Exists {
            what: format!("signal for work item {:?}", c.id),
            name: c.name,
        });
    }
    let waiting = matches!(
        current.control().and_then(|ctl| ctl.hold.as_ref()),
        Some(Hold::Signal { name, .. }) if *name == c.name
    );
    let now = crate::apply::advance(state, c.now);
    if waiting {
        unqueue(state, &c.id);
    }
    let item = item_mut(state, &c.id)?;
    let control = item.control_mut();
    control.signals.push((c.name.clone(), c.payload));
    item.updated_at = now;
    record(item, now, EventKind::Signalled, c.name.clone());
    if waiting {
        let control = item.control_mut();
        control.hold = None;
        control.not_before = 0;
        record(
            item,
            now,
            EventKind::Resumed,
            format!("signal {:?} arrived", c.name),
        );
        queue(state, &c.id);
    }
    Ok(Response::Item(item_mut(state, &c.id)?.clone()))
}

pub(crate) fn park(state: &mut State, c: Park) -> Result<Response, ClaimError> {
    let current = item(state, &c.id)?;
    match current.current_token() {
        Some(t) if t == c.token => {}
        current_token => {
            return Err(ClaimError::StaleToken {
                id: c.id,
                presented: c.token,
                current: current_token,
            });
        }
    }
    let delivered = match &c.hold {
        Hold::Signal { name, .. } => current
            .control()
            .is_some_and(|ctl| ctl.signals.iter().any(|(n, _)| n == name)),
        Hold::Paused { .. } | Hold::Sleep { .. } => false,
    };
    let now = crate::apply::advance(state, c.now);
    crate::apply::end_claim(state, &c.id, ClaimEnd::Released, now);
    state_pending(state, &c.id, now)?;
    let item_ref = item_mut(state, &c.id)?;
    // Parked, not tried: the grant does not count against the item.
    item_ref.attempt = item_ref.attempt.saturating_sub(1);
    // A pause asked of the run wins over what it parks for; its wait is
    // taken up again from the journal once resumed.
    let pause_asked = item_ref
        .control()
        .and_then(|ctl| ctl.pause_requested.clone());
    // (A holder stopping for a pause parks with nothing to wait for, a
    // sleep until 0: if the pause was lifted meanwhile, the run goes on.)
    let parked = match (pause_asked, c.hold) {
        (Some(reason), _) => Hold::Paused { reason, since: now },
        (None, hold) => with_since(hold, now),
    };
    let until = parked.until();
    let hold = match parked {
        // The signal came while the run was on its way here: on at once.
        Hold::Signal { .. } if delivered => None,
        // Its time already passed (or it has none): claimable at once.
        Hold::Sleep { .. } if until <= now => None,
        Hold::Signal { .. } if until != 0 && until <= now => None,
        hold => Some(hold),
    };
    let control = item_ref.control_mut();
    if matches!(hold, Some(Hold::Paused { .. })) {
        control.pause_requested = None;
    }
    control.not_before = match &hold {
        Some(Hold::Signal { .. } | Hold::Sleep { .. }) => until,
        _ => control.not_before.min(now),
    };
    let detail = hold
        .as_ref()
        .map_or_else(|| "parked and claimable again".to_string(), Hold::describe);
    let queued = !matches!(hold, Some(Hold::Paused { .. }))
        && !matches!(hold, Some(Hold::Signal { timeout_at: 0, .. }));
    control.hold = hold;
    record(item_ref, now, EventKind::Waiting, detail);
    if queued {
        queue(state, &c.id);
    }
    Ok(Response::Item(item_mut(state, &c.id)?.clone()))
}

/// `hold` as of `now`: the state machine's time, not the proposer's.
fn with_since(hold: Hold, now: Millis) -> Hold {
    match hold {
        Hold::Paused { reason, .. } => Hold::Paused { reason, since: now },
        Hold::Signal {
            name, timeout_at, ..
        } => Hold::Signal {
            name,
            since: now,
            timeout_at,
        },
        Hold::Sleep { until, .. } => Hold::Sleep { until, since: now },
    }
}

/// A claim of `item` ended and it goes back to pending: a pause asked of
/// its run (whose holder died, or gave it back, before parking it) holds it
/// now. Returns whether it is held.
pub(crate) fn pause_on_requeue(item: &mut WorkItem, now: Millis) -> bool {
    let Some(reason) = item.control().and_then(|c| c.pause_requested.clone()) else {
        return false;
    };
    let control = item.control_mut();
    control.pause_requested = None;
    control.hold = Some(Hold::Paused { reason, since: now });
    true
}

/// Lets a held item be claimed now (a cancel of a parked workflow: its next
/// holder undoes the steps done).
pub(crate) fn release_hold(state: &mut State, id: &str) {
    let held = state
        .get(id)
        .is_some_and(|i| i.control().is_some_and(|c| c.hold.is_some()));
    if !held {
        return;
    }
    unqueue(state, id);
    if let Some(item) = state.items.get_mut(id).map(Arc::make_mut) {
        let control = item.control_mut();
        control.hold = None;
        control.not_before = 0;
    }
    queue(state, id);
}

/// Makes a claimed item pending again (counted so), in no queue yet.
fn state_pending(state: &mut State, id: &str, now: Millis) -> Result<(), ClaimError> {
    let item = state
        .items
        .get_mut(id)
        .map(Arc::make_mut)
        .ok_or_else(|| ClaimError::NotFound { id: id.to_string() })?;
    state.counts.set_status(item, Status::Pending);
    item.updated_at = now;
    Ok(())
}
