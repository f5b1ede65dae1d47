//! [`WorkCounts`]: how many items there are per type and status, kept by
//! `apply()` as items are submitted, change status and leave, so that stats
//! never scan the items.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::{Status, Text, WorkItem};

/// How many items are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub pending: u64,
    pub claimed: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl StatusCounts {
    /// The count of one status.
    pub fn get(&self, status: Status) -> u64 {
        match status {
            Status::Pending => self.pending,
            Status::Claimed => self.claimed,
            Status::Completed => self.completed,
            Status::Failed => self.failed,
            Status::Cancelled => self.cancelled,
        }
    }

    /// Every item counted, whatever its status.
    pub fn total(&self) -> u64 {
        self.pending + self.claimed + self.completed + self.failed + self.cancelled
    }

    fn slot(&mut self, status: Status) -> &mut u64 {
        match status {
            Status::Pending => &mut self.pending,
            Status::Claimed => &mut self.claimed,
            Status::Completed => &mut self.completed,
            Status::Failed => &mut self.failed,
            Status::Cancelled => &mut self.cancelled,
        }
    }

    fn add(&mut self, other: &StatusCounts) {
        self.pending += other.pending;
        self.claimed += other.claimed;
        self.completed += other.completed;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
    }
}

/// Item counts by type and status: an index of the state, like the claim
/// queue. Every item the state holds is counted once, under its type and
/// current status; a type with no items has no entry, so two states holding
/// the same items have equal counts however they got there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkCounts {
    by_kind: BTreeMap<Text, StatusCounts>,
    /// The same per concurrency key, for the items that have one: what a
    /// key's limit counts its running items by. Not encoded: a decoded
    /// state counts again ([`crate::State::restored`]).
    #[serde(skip)]
    by_key: BTreeMap<Text, StatusCounts>,
    /// Failed items whose attempts ran out. Not encoded either.
    #[serde(skip)]
    dead_letters: u64,
}

/// Adds one item of `status` under `name`.
fn count_in(map: &mut BTreeMap<Text, StatusCounts>, name: &Text, status: Status) {
    match map.get_mut(&**name) {
        Some(counts) => *counts.slot(status) += 1,
        None => {
            let mut counts = StatusCounts::default();
            *counts.slot(status) = 1;
            map.insert(name.clone(), counts);
        }
    }
}

/// Takes one item of `status` from under `name`; a name left with none
/// goes.
fn uncount_in(map: &mut BTreeMap<Text, StatusCounts>, name: &str, status: Status) {
    let Some(counts) = map.get_mut(name) else {
        return;
    };
    let slot = counts.slot(status);
    *slot = slot.saturating_sub(1);
    if counts.total() == 0 {
        map.remove(name);
    }
}

impl WorkCounts {
    /// Counts every item of `items` from scratch: what a decoded state
    /// starts from.
    pub fn of<'a>(items: impl IntoIterator<Item = &'a WorkItem>) -> WorkCounts {
        let mut counts = WorkCounts::default();
        for item in items {
            counts.insert(item);
        }
        counts
    }

    /// Counts a new item under its type and status.
    pub(crate) fn insert(&mut self, item: &WorkItem) {
        count_in(&mut self.by_kind, &item.kind, item.status);
        if let Some(key) = item.concurrency_key() {
            count_in(&mut self.by_key, key, item.status);
        }
        if item.dead_letter() {
            self.dead_letters += 1;
        }
    }

    /// Stops counting an item that leaves the state (retention).
    pub fn remove(&mut self, item: &WorkItem) {
        uncount_in(&mut self.by_kind, &item.kind, item.status);
        if let Some(key) = item.concurrency_key() {
            uncount_in(&mut self.by_key, key, item.status);
        }
        if item.dead_letter() {
            self.dead_letters = self.dead_letters.saturating_sub(1);
        }
    }

    /// Marks `item` a dead letter (or no longer one), counting it.
    pub(crate) fn set_dead_letter(&mut self, item: &mut WorkItem, dead: bool) {
        if item.dead_letter() != dead {
            match dead {
                true => self.dead_letters += 1,
                false => self.dead_letters = self.dead_letters.saturating_sub(1),
            }
            item.control_mut().dead_letter = dead;
        }
    }

    /// How many failed items ran out of attempts.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters
    }

    /// Moves `item` to `status`, counting it there instead: the one way
    /// `apply()` changes an item's status.
    pub(crate) fn set_status(&mut self, item: &mut WorkItem, status: Status) {
        if item.status != status {
            if let Some(counts) = self.by_kind.get_mut(&*item.kind) {
                let from = counts.slot(item.status);
                *from = from.saturating_sub(1);
                *counts.slot(status) += 1;
            }
            if let Some(key) = item.concurrency_key() {
                uncount_in(&mut self.by_key, key, item.status);
                count_in(&mut self.by_key, key, status);
            }
        }
        item.status = status;
    }

    /// Counts of the items with concurrency key `key`.
    pub fn key(&self, key: &str) -> StatusCounts {
        self.by_key.get(key).copied().unwrap_or_default()
    }

    /// Counts per concurrency key, in key order.
    pub fn by_concurrency_key(&self) -> impl Iterator<Item = (&str, &StatusCounts)> {
        self.by_key.iter().map(|(k, c)| (&**k, c))
    }

    /// A counted concurrency key's name, as the counts hold it.
    pub(crate) fn key_text(&self, name: &str) -> Option<Text> {
        self.by_key.get_key_value(name).map(|(k, _)| k.clone())
    }

    /// The name of a counted type, as the counts hold it: what new items of
    /// that type share.
    pub(crate) fn kind_text(&self, name: &str) -> Option<Text> {
        self.by_kind.get_key_value(name).map(|(k, _)| k.clone())
    }

    /// Counts over every type.
    pub fn by_status(&self) -> StatusCounts {
        let mut all = StatusCounts::default();
        for counts in self.by_kind.values() {
            all.add(counts);
        }
        all
    }

    /// Counts per type, in type order; types with no items are absent.
    pub fn by_kind(&self) -> impl Iterator<Item = (&str, &StatusCounts)> {
        self.by_kind.iter().map(|(k, c)| (&**k, c))
    }

    /// Every item counted.
    pub fn total(&self) -> u64 {
        self.by_kind.values().map(StatusCounts::total).sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::command::{Claim, Submit};
    use crate::{Command, State, apply};

    fn submit(state: &mut State, id: &str, kind: &str) {
        let cmd = Command::Submit(Submit {
            id: id.into(),
            idempotency_key: String::new(),
            kind: kind.into(),
            priority: 0,
            requires: vec![],
            payload: "{}".into(),
            max_attempts: 0,
            now: 1_000,
        });
        apply(state, cmd).unwrap();
    }

    fn two_types() -> State {
        let mut state = State::new();
        submit(&mut state, "w1", "build");
        submit(&mut state, "w2", "build");
        submit(&mut state, "w3", "test");
        let claim = Command::Claim(Claim {
            agent: "a1".into(),
            kinds: vec!["build".into()],
            capabilities: vec![],
            max: 1,
            lease_ms: 10_000,
            now: 1_000,
        });
        apply(&mut state, claim).unwrap();
        state
    }

    #[test]
    fn counts_follow_submit_and_claim() {
        let state = two_types();
        let counts = state.counts();
        let by_kind: Vec<_> = counts.by_kind().map(|(k, c)| (k, *c)).collect();
        let build = StatusCounts {
            pending: 1,
            claimed: 1,
            ..StatusCounts::default()
        };
        let test = StatusCounts {
            pending: 1,
            ..StatusCounts::default()
        };
        assert_eq!(by_kind, [("build", build), ("test", test)]);
        assert_eq!(counts.by_status().pending, 2);
        assert_eq!(counts.total(), 3);
    }

    #[test]
    fn a_state_decoded_without_counts_counts_again() {
        let state = two_types();
        // As a snapshot written before the counts existed decodes.
        let mut json = serde_json::to_value(&state).unwrap();
        json.as_object_mut().unwrap().remove("counts");
        let old: State = serde_json::from_value(json).unwrap();
        assert_ne!(old.counts(), state.counts());

        // Restoring it, as every snapshot decoder does, counts again.
        let recounted = old.restored();
        assert_eq!(*recounted.counts(), *state.counts());
        assert_eq!(recounted, state);
        let mut applied = recounted;
        submit(&mut applied, "w4", "test");
        let mut expected = state.clone();
        submit(&mut expected, "w4", "test");
        assert_eq!(applied, expected);
    }
}
