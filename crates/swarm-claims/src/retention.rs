//! What the state keeps, and for how long: finished items leave after the
//! cluster's retention (`Compact`, proposed by the leader in bounded
//! batches), and each item keeps a bounded story ([`ITEM_BOUNDS`]), so that
//! memory and snapshots grow with live and recently finished work, not with
//! everything ever seen.

use std::collections::BTreeSet;

use crate::command::Compact;
use crate::state::{Text, WorkItem};
use crate::{ClaimError, FencingToken, Millis, Response, State};

/// Bounds on what one work item keeps, whatever its age: an item renewed
/// 100,000 times or a workflow of 1,000 steps stays within them. Fixed (not
/// node config) so that every replica trims and refuses alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemBounds {
    /// Events kept: the first (`submitted`) and the most recent
    /// `max_events - 1`. Dropped events keep their sequence numbers counted
    /// ([`WorkItem::events_dropped`]), so a watcher sees the gap.
    pub max_events: usize,
    /// Holder records kept: the most recent `max_holders`, and any older
    /// one whose token a journal entry carries (the checks and the step view
    /// name a journal entry's holder). The live holder is always the last
    /// record, so fencing and the holder checks never miss it.
    pub max_holders: usize,
    /// Journal entries one item may hold: a workflow resumes from all of
    /// them, so none is dropped; a step checkpoint beyond is refused.
    pub max_journal_entries: usize,
    /// Total bytes of one item's journal outcomes; a checkpoint that would
    /// pass it is refused.
    pub max_journal_bytes: usize,
}

/// The bounds every item is held to. Renewals record no event and no holder,
/// so they never grow an item; claims, hand-offs, expiries and releases do,
/// up to these.
pub const ITEM_BOUNDS: ItemBounds = ItemBounds {
    max_events: 128,
    max_holders: 32,
    max_journal_entries: 10_000,
    max_journal_bytes: 32 * 1024 * 1024,
};

/// Most items one `Compact` entry may remove, so that one entry never
/// stalls the log.
pub const MAX_COMPACT_BATCH: u32 = 10_000;

/// Removes the finished items that ended at or before `c.before`, oldest
/// first (by end time, then id), at most `c.max`; their idempotency keys go
/// with them. Live items are never in the terminal index, and an entry that
/// somehow names one is dropped without touching the item.
pub(crate) fn compact(state: &mut State, c: Compact) -> Response {
    crate::apply::advance(state, c.now);
    let due: Vec<(Millis, Text)> = state
        .ended
        .iter()
        .take_while(|(at, _)| *at <= c.before)
        .take(c.max as usize)
        .cloned()
        .collect();
    let mut removed = 0;
    for key in due {
        state.ended.remove(&key);
        let id = key.1;
        if !state
            .items
            .get(&*id)
            .is_some_and(|i| i.status.is_terminal())
        {
            continue;
        }
        let Some(item) = state.items.remove(&*id) else {
            continue;
        };
        if !item.idempotency_key.is_empty() && state.by_key.get(&*item.idempotency_key) == Some(&id)
        {
            state.by_key.remove(&*item.idempotency_key);
        }
        state.counts.remove(&item);
        removed += 1;
    }
    state.removed += removed as u64;
    Response::Compacted(removed)
}

/// Records that `item` just became terminal at its `updated_at`.
pub(crate) fn note_ended(ended: &mut BTreeSet<(Millis, Text)>, item: &WorkItem) {
    ended.insert((item.updated_at, item.id.clone()));
}

/// Rebuilds the terminal index and trims every item to [`ITEM_BOUNDS`]: for
/// a state decoded from a snapshot, which may predate retention, so that a
/// replica that loaded it equals one that replayed the log.
pub(crate) fn reindex(state: &mut State) {
    state.ended = state
        .items
        .values()
        .filter(|i| i.status.is_terminal())
        .map(|i| (i.updated_at, i.id.clone()))
        .collect();
    for item in state.items.values_mut() {
        let item = std::sync::Arc::make_mut(item);
        bound_events(item);
        bound_history(item);
    }
}

/// Drops the oldest events after the first until the item keeps at most
/// [`ITEM_BOUNDS`]`.max_events`.
pub(crate) fn bound_events(item: &mut WorkItem) {
    let max = ITEM_BOUNDS.max_events.max(2);
    if item.event_count() <= max {
        return;
    }
    let excess = item.event_count() - max;
    item.drop_events_after_first(excess);
    let excess = u32::try_from(excess).unwrap_or(u32::MAX);
    item.events_dropped = item.events_dropped.saturating_add(excess);
}

/// Drops the oldest ended holder records no journal entry names until the
/// item keeps at most [`ITEM_BOUNDS`]`.max_holders` (or only records it
/// must keep).
pub(crate) fn bound_history(item: &mut WorkItem) {
    let count = item.holder_count();
    if count <= ITEM_BOUNDS.max_holders {
        return;
    }
    let named: BTreeSet<FencingToken> = item.journal().iter().map(|j| j.token).collect();
    let mut excess = count - ITEM_BOUNDS.max_holders;
    item.retain_holders(|h| {
        let drop = excess > 0 && h.ended.is_some() && !named.contains(&h.token);
        if drop {
            excess -= 1;
        }
        !drop
    });
}

/// Refuses a step checkpoint that would take the item's journal past
/// [`ITEM_BOUNDS`].
pub(crate) fn check_journal_room(item: &WorkItem, outcome_bytes: usize) -> Result<(), ClaimError> {
    let bounds = ITEM_BOUNDS;
    if item.journal().len() >= bounds.max_journal_entries {
        return Err(ClaimError::invalid(
            "journal",
            format!(
                "work item {:?} already has {} journal entries, the most one item keeps",
                item.id, bounds.max_journal_entries
            ),
        ));
    }
    let used: usize = item.journal().iter().map(|j| j.outcome.len()).sum();
    if used.saturating_add(outcome_bytes) > bounds.max_journal_bytes {
        return Err(ClaimError::invalid(
            "journal",
            format!(
                "work item {:?} journal would hold {} bytes of outcomes, over the limit of {} bytes",
                item.id,
                used.saturating_add(outcome_bytes),
                bounds.max_journal_bytes
            ),
        ));
    }
    Ok(())
}
