//! The state: every work item, its claim and journal, the fencing counter, and
//! the indexes that keep claiming, renewing and expiry cheap.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;
use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::control::{ItemControl, QueueControl};
use crate::counts::WorkCounts;
use crate::{FencingToken, Millis};

/// Attempts an item gets when its submit does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Where a work item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Claimed,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Claimed => "claimed",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text the state stores once and shares: an item's id is one allocation
/// however many indexes name it, and an agent's or type's name one
/// allocation however many items, holders and events name it. Encoded as a
/// plain string. `arcstr`'s thin pointer (8 bytes, where `Arc<str>` takes
/// 16): every index entry, item, holder and event that names one is 8 bytes
/// smaller.
pub type Text = arcstr::ArcStr;

/// A live claim: who holds the item, under which token, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub agent: Text,
    pub token: FencingToken,
    pub granted_at: Millis,
    pub expires_at: Millis,
    /// The lease length the agent asked for; renewals and a new leader's
    /// extension grant this much again.
    pub lease_ms: Millis,
    pub progress: Option<Text>,
}

/// How a holder's claim ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimEnd {
    Completed,
    Failed,
    Released,
    Expired,
    HandedOff,
    Cancelled,
}

impl ClaimEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimEnd::Completed => "completed",
            ClaimEnd::Failed => "failed",
            ClaimEnd::Released => "released",
            ClaimEnd::Expired => "expired",
            ClaimEnd::HandedOff => "handed_off",
            ClaimEnd::Cancelled => "cancelled",
        }
    }
}

/// One holder in an item's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub agent: Text,
    pub token: FencingToken,
    pub granted_at: Millis,
    pub ended: Option<ClaimEnd>,
}

/// One checkpointed workflow step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub step: String,
    pub token: FencingToken,
    /// JSON text.
    pub outcome: String,
}

/// What happened to an item, in order: the stream `WatchWork` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Submitted,
    Claimed,
    /// A workflow step's outcome was checkpointed; `journal_index` is the
    /// position of the entry in the item's journal.
    StepRecorded,
    HandedOff,
    Released,
    Expired,
    /// The holder failed the attempt and the item went back to pending.
    Retrying,
    CancelRequested,
    Completed,
    Failed,
    Cancelled,
    /// A failed item was put back to pending (`Retry`). After the older
    /// variants, so their binary encoding stays as it was.
    Requeued,
    /// Paused by an operator (or a pause was asked of its running workflow).
    Paused,
    /// Claimable again: resumed, woken from a sleep, or its signal came or
    /// timed out.
    Resumed,
    /// A signal was delivered to the item.
    Signalled,
    /// Its workflow run parked: paused, waiting for a signal, or sleeping.
    Waiting,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Submitted => "submitted",
            EventKind::Claimed => "claimed",
            EventKind::StepRecorded => "step",
            EventKind::HandedOff => "handed_off",
            EventKind::Released => "released",
            EventKind::Expired => "expired",
            EventKind::Retrying => "retrying",
            EventKind::CancelRequested => "cancel_requested",
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
            EventKind::Cancelled => "cancelled",
            EventKind::Requeued => "requeued",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Signalled => "signalled",
            EventKind::Waiting => "waiting",
        }
    }
}

/// One entry of an item's event history. 48 bytes: what only some events
/// carry (a step, a detail, a journal position) sits behind one pointer, and
/// the token, never 0, takes no room to say it is absent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "StoredItemEvent")]
pub struct ItemEvent {
    pub at: Millis,
    pub kind: EventKind,
    /// The agent the event concerns (the new holder, the one whose lease
    /// expired, ...).
    pub agent: Option<Text>,
    token: Option<NonZeroU64>,
    note: Option<Box<EventNote>>,
}

/// The rarer parts of an [`ItemEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct EventNote {
    step: Option<String>,
    detail: Option<String>,
    journal_index: Option<usize>,
}

impl ItemEvent {
    pub fn new(
        at: Millis,
        kind: EventKind,
        holder: Option<(Text, FencingToken)>,
        step: Option<String>,
        detail: Option<String>,
        journal_index: Option<usize>,
    ) -> ItemEvent {
        let note = (step.is_some() || detail.is_some() || journal_index.is_some()).then(|| {
            Box::new(EventNote {
                step,
                detail,
                journal_index,
            })
        });
        let (agent, token) = holder.map_or((None, None), |(a, t)| (Some(a), NonZeroU64::new(t)));
        ItemEvent {
            at,
            kind,
            agent,
            token,
            note,
        }
    }

    /// The token of the claim the event concerns.
    pub fn token(&self) -> Option<FencingToken> {
        self.token.map(NonZeroU64::get)
    }

    /// The workflow step a step event recorded.
    pub fn step(&self) -> Option<&str> {
        self.note.as_ref().and_then(|n| n.step.as_deref())
    }

    /// Why the item failed or was cancelled, for those events.
    pub fn detail(&self) -> Option<&str> {
        self.note.as_ref().and_then(|n| n.detail.as_deref())
    }

    /// For a step event: the position in the item's journal of the entry it
    /// recorded.
    pub fn journal_index(&self) -> Option<usize> {
        self.note.as_ref().and_then(|n| n.journal_index)
    }
}

/// The holder a live lease stands for.
fn live_holder(lease: &Lease) -> Holder {
    Holder {
        agent: lease.agent.clone(),
        token: lease.token,
        granted_at: lease.granted_at,
        ended: None,
    }
}

/// The event a grant of `lease` records: what an item whose last event is
/// implied by its lease reads as.
fn claim_event(lease: &Lease) -> ItemEvent {
    ItemEvent::new(
        lease.granted_at,
        EventKind::Claimed,
        Some((lease.agent.clone(), lease.token)),
        None,
        None,
        None,
    )
}

/// The first event of every item submitted: what an item whose first event
/// is implied reads as.
fn submission(at: Millis) -> ItemEvent {
    ItemEvent::new(at, EventKind::Submitted, None, None, None, None)
}

/// An [`ItemEvent`] as snapshots and answers carry it: every field always
/// written, even when `None` (bincode has no field names, so a skipped field
/// would shift the rest).
#[derive(Serialize)]
struct ItemEventOut<'a> {
    at: Millis,
    kind: EventKind,
    agent: Option<&'a str>,
    token: Option<FencingToken>,
    step: Option<&'a str>,
    detail: Option<&'a str>,
    journal_index: Option<usize>,
}

impl Serialize for ItemEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ItemEventOut {
            at: self.at,
            kind: self.kind,
            agent: self.agent.as_deref(),
            token: self.token(),
            step: self.step(),
            detail: self.detail(),
            journal_index: self.journal_index(),
        }
        .serialize(s)
    }
}

/// An [`ItemEvent`] as any version stored it. Before `journal_index`
/// existed, a step event kept the index as its `detail` text; reading such a
/// snapshot gives the same event a replica replaying the log writes today,
/// so replicas that load old and new snapshots agree.
#[derive(Deserialize)]
struct StoredItemEvent {
    at: Millis,
    kind: EventKind,
    agent: Option<Text>,
    token: Option<FencingToken>,
    step: Option<String>,
    detail: Option<String>,
    #[serde(default)]
    journal_index: Option<usize>,
}

impl From<StoredItemEvent> for ItemEvent {
    fn from(s: StoredItemEvent) -> ItemEvent {
        let legacy_index = match (s.kind, s.journal_index, s.detail.as_deref()) {
            (EventKind::StepRecorded, None, Some(detail)) => detail.parse::<usize>().ok(),
            _ => None,
        };
        let (detail, journal_index) = match legacy_index {
            Some(index) => (None, Some(index)),
            None => (s.detail, s.journal_index),
        };
        let mut event = ItemEvent::new(s.at, s.kind, None, s.step, detail, journal_index);
        event.agent = s.agent;
        event.token = s.token.and_then(NonZeroU64::new);
        event
    }
}

/// A node that runs workflows, as it registered itself: what handoff picks
/// targets from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub agent: String,
    pub node_id: u64,
    pub addr: String,
    pub capabilities: Vec<String>,
    /// How many workflows it runs at once.
    pub capacity: u32,
    pub registered_at: Millis,
}

/// A unit of work and everything known about it.
///
/// Laid out for memory (192 bytes inline): ids and names are shared
/// [`Text`], and what most items never have (requirements, an error, a
/// journal, a cancel request) sits behind one pointer, read through
/// [`WorkItem::requires`], [`WorkItem::error`], [`WorkItem::journal`] and
/// [`WorkItem::cancel_requested`]. Encoded field by field as before, so
/// snapshots and answers are unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub id: Text,
    pub kind: Text,
    pub priority: i32,
    pub status: Status,
    /// How many times the item has been granted (claims and hand-offs that
    /// followed an expiry or failure count; a hand-off does not).
    pub attempt: u32,
    pub max_attempts: u32,
    /// Events dropped from between the first and the kept recent ones, so
    /// that an event keeps its sequence number (see [`WorkItem::event_seq`])
    /// however many were dropped before it.
    pub events_dropped: u32,
    /// The most recent token granted for the item; 0 = never claimed.
    pub token: FencingToken,
    pub submitted_at: Millis,
    pub updated_at: Millis,
    /// Order of submission, the tie-breaker among equal priorities.
    pub seq: u64,
    /// JSON text.
    pub payload: Box<str>,
    /// Empty when the submit gave none.
    pub idempotency_key: Text,
    pub lease: Option<Lease>,
    /// JSON text, once completed.
    pub result: Option<Text>,
    /// The holders whose claims ended, oldest first. The live holder is the
    /// lease's, stored nowhere else unless `live_holder_stored`. Read through
    /// [`WorkItem::holders`].
    history: Box<[Holder]>,
    /// Whether `history` holds the live holder too: only an item decoded
    /// from data whose last holder is not its lease's.
    live_holder_stored: bool,
    /// The events after the first: the first is the submission, which
    /// `submitted_at` says all of, unless `first_event_stored`. Read through
    /// [`WorkItem::events`].
    events: Box<[ItemEvent]>,
    /// Whether `events` holds the first event too: only an item decoded from
    /// data whose first event is not a plain submission.
    first_event_stored: bool,
    /// Whether the item's last event is the live claim's grant, implied by
    /// the lease (as the first is by `submitted_at`) and stored nowhere: an
    /// item claimed and not yet touched since keeps no event at all.
    claim_event_implied: bool,
    rare: Option<Box<Rare>>,
}

/// What most items never have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rare {
    pub(crate) requires: Vec<String>,
    pub(crate) error: Option<String>,
    pub(crate) journal: Vec<JournalEntry>,
    /// Set when a cancel arrived while a workflow had steps done: the holder
    /// undoes them, then ends the item as cancelled.
    pub(crate) cancel_requested: Option<String>,
    pub(crate) control: ItemControl,
}

/// A [`WorkItem`] as snapshots and answers carry it, in its field order of
/// every earlier version.
#[derive(Serialize)]
struct WorkItemOut<'a> {
    id: &'a str,
    kind: &'a str,
    priority: i32,
    requires: &'a [String],
    payload: &'a str,
    idempotency_key: &'a str,
    status: Status,
    attempt: u32,
    max_attempts: u32,
    lease: &'a Option<Lease>,
    token: FencingToken,
    result: Option<&'a str>,
    error: Option<&'a str>,
    submitted_at: Millis,
    updated_at: Millis,
    seq: u64,
    history: HoldersOut<'a>,
    journal: &'a [JournalEntry],
    cancel_requested: Option<&'a str>,
    events: EventsOut<'a>,
    events_dropped: u32,
    /// Absent from snapshot format version 1 (see
    /// [`crate::decode_items_without_control`]).
    control: Option<&'a ItemControl>,
}

#[derive(Deserialize)]
struct StoredWorkItem {
    id: Text,
    kind: Text,
    priority: i32,
    requires: Vec<String>,
    payload: Box<str>,
    idempotency_key: Text,
    status: Status,
    attempt: u32,
    max_attempts: u32,
    lease: Option<Lease>,
    token: FencingToken,
    result: Option<Text>,
    error: Option<String>,
    submitted_at: Millis,
    updated_at: Millis,
    seq: u64,
    history: Vec<Holder>,
    journal: Vec<JournalEntry>,
    cancel_requested: Option<String>,
    events: Vec<ItemEvent>,
    #[serde(default)]
    events_dropped: u32,
}

/// A [`WorkItem`] as JSON carries it: the fields of every version, and
/// queue control when there is any.
#[derive(Deserialize)]
struct StoredWorkItemJson {
    #[serde(flatten)]
    item: StoredWorkItem,
    #[serde(default)]
    control: Option<ItemControl>,
}

impl Serialize for WorkItem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WorkItemOut {
            id: &self.id,
            kind: &self.kind,
            priority: self.priority,
            requires: self.requires(),
            payload: &self.payload,
            idempotency_key: &self.idempotency_key,
            status: self.status,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            lease: &self.lease,
            token: self.token,
            result: self.result.as_deref(),
            error: self.error(),
            submitted_at: self.submitted_at,
            updated_at: self.updated_at,
            seq: self.seq,
            history: HoldersOut(self),
            journal: self.journal(),
            cancel_requested: self.cancel_requested(),
            events: EventsOut(self),
            events_dropped: self.events_dropped,
            control: self
                .rare
                .as_ref()
                .map(|r| &r.control)
                .filter(|c| !c.is_default()),
        }
        .serialize(s)
    }
}

/// An item's holders, the live one included, as a sequence of known length.
struct HoldersOut<'a>(&'a WorkItem);

impl Serialize for HoldersOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.holder_count()))?;
        for holder in self.0.holders() {
            seq.serialize_element(&*holder)?;
        }
        seq.end()
    }
}

/// An item's kept events, the first included, as a sequence of known length.
struct EventsOut<'a>(&'a WorkItem);

impl Serialize for EventsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.event_count()))?;
        for event in self.0.events() {
            seq.serialize_element(&*event)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for WorkItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<WorkItem, D::Error> {
        // Binary formats have no field names: the layout is known from the
        // format version (control follows the older fields from version 2
        // on). JSON says which fields it has.
        let (s, control) = if d.is_human_readable() {
            let json = StoredWorkItemJson::deserialize(d)?;
            (json.item, json.control)
        } else if crate::control::items_without_control() {
            (StoredWorkItem::deserialize(d)?, None)
        } else {
            <(StoredWorkItem, Option<ItemControl>)>::deserialize(d)?
        };
        let mut events = s.events;
        let implied = submission(s.submitted_at);
        let first_event_stored = events.first() != Some(&implied);
        if !first_event_stored {
            events.remove(0);
        }
        // The live claim's grant, last and not the stored first event, is
        // implied by the lease, as `apply()` keeps it.
        let claim_event = s.lease.as_ref().map(claim_event);
        let claim_event_implied = claim_event.is_some()
            && events.len() > usize::from(first_event_stored)
            && events.last() == claim_event.as_ref();
        if claim_event_implied {
            events.pop();
        }
        let mut history = s.history;
        let implied = s.lease.as_ref().map(live_holder);
        let live_holder_stored = implied.is_some() && history.last() != implied.as_ref();
        if implied.is_some() && !live_holder_stored {
            history.pop();
        }
        let rare = Rare {
            requires: s.requires,
            error: s.error,
            journal: s.journal,
            cancel_requested: s.cancel_requested,
            control: control.unwrap_or_default(),
        };
        Ok(WorkItem {
            id: s.id,
            kind: s.kind,
            priority: s.priority,
            status: s.status,
            attempt: s.attempt,
            max_attempts: s.max_attempts,
            events_dropped: s.events_dropped,
            token: s.token,
            submitted_at: s.submitted_at,
            updated_at: s.updated_at,
            seq: s.seq,
            payload: s.payload,
            idempotency_key: s.idempotency_key,
            lease: s.lease,
            result: s.result,
            history: history.into_boxed_slice(),
            live_holder_stored,
            events: events.into_boxed_slice(),
            first_event_stored,
            claim_event_implied,
            rare: (rare != Rare::default()).then(|| Box::new(rare)),
        })
    }
}

impl WorkItem {
    /// A new pending item with nothing rare about it yet.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pending(
        id: Text,
        kind: Text,
        priority: i32,
        payload: Box<str>,
        idempotency_key: Text,
        max_attempts: u32,
        now: Millis,
        seq: u64,
    ) -> WorkItem {
        WorkItem {
            id,
            kind,
            priority,
            status: Status::Pending,
            attempt: 0,
            max_attempts,
            events_dropped: 0,
            token: 0,
            submitted_at: now,
            updated_at: now,
            seq,
            payload,
            idempotency_key,
            lease: None,
            result: None,
            history: Box::default(),
            live_holder_stored: false,
            events: Box::default(),
            first_event_stored: false,
            claim_event_implied: false,
            rare: None,
        }
    }

    /// How many holders the item keeps: every one whose claim ended, within
    /// [`ITEM_BOUNDS`](crate::ITEM_BOUNDS)`.max_holders`, then the live one.
    pub fn holder_count(&self) -> usize {
        self.history.len() + usize::from(self.live_holder_implied())
    }

    /// The kept holders, oldest first; the live one, if any, last.
    pub fn holders(&self) -> impl DoubleEndedIterator<Item = Cow<'_, Holder>> + '_ {
        let live = self
            .lease
            .as_ref()
            .filter(|_| !self.live_holder_stored)
            .map(|l| Cow::Owned(live_holder(l)));
        self.history.iter().map(Cow::Borrowed).chain(live)
    }

    /// Whether the live holder is the lease's alone.
    fn live_holder_implied(&self) -> bool {
        self.lease.is_some() && !self.live_holder_stored
    }

    /// Records that the live claim, `lease`, ended `how`: its holder joins
    /// the stored ones. The caller has taken the lease and bounds holders.
    pub(crate) fn end_holder(&mut self, lease: &Lease, how: ClaimEnd) {
        if self.live_holder_stored {
            if let Some(h) = self
                .history
                .iter_mut()
                .rev()
                .find(|h| h.token == lease.token)
            {
                h.ended = Some(how);
            }
            self.live_holder_stored = false;
            return;
        }
        let holder = Holder {
            ended: Some(how),
            ..live_holder(lease)
        };
        edit(&mut self.history, |h| {
            h.reserve_exact(1);
            h.push(holder);
        });
    }

    /// The stored holders, to share their names.
    pub(crate) fn stored_holders_mut(&mut self) -> &mut [Holder] {
        &mut self.history
    }

    /// Keeps the stored holders `keep` says to.
    pub(crate) fn retain_holders(&mut self, keep: impl FnMut(&Holder) -> bool) {
        edit(&mut self.history, |h| h.retain(keep));
    }

    /// How many events the item keeps: the first and the most recent ones,
    /// within [`ITEM_BOUNDS`](crate::ITEM_BOUNDS)`.max_events`.
    pub fn event_count(&self) -> usize {
        self.events.len()
            + usize::from(!self.first_event_stored)
            + usize::from(self.claim_event_implied)
    }

    /// The kept event at `index` (0: the first, the submission).
    pub fn event(&self, index: usize) -> Option<Cow<'_, ItemEvent>> {
        if index + 1 == self.event_count() && self.claim_event_implied {
            return self.implied_claim_event().map(Cow::Owned);
        }
        match (self.first_event_stored, index) {
            (true, i) => self.events.get(i).map(Cow::Borrowed),
            (false, 0) => Some(Cow::Owned(submission(self.submitted_at))),
            (false, i) => self.events.get(i - 1).map(Cow::Borrowed),
        }
    }

    /// The kept events in order, the first included.
    pub fn events(&self) -> impl Iterator<Item = Cow<'_, ItemEvent>> + '_ {
        let first = (!self.first_event_stored).then(|| Cow::Owned(submission(self.submitted_at)));
        let last = self.implied_claim_event().map(Cow::Owned);
        first
            .into_iter()
            .chain(self.events.iter().map(Cow::Borrowed))
            .chain(last)
    }

    /// The live claim's grant event, when it is implied.
    fn implied_claim_event(&self) -> Option<ItemEvent> {
        self.lease
            .as_ref()
            .filter(|_| self.claim_event_implied)
            .map(claim_event)
    }

    /// The live claim's grant is the item's last event, implied by its
    /// lease. The caller bounds the events.
    pub(crate) fn imply_claim_event(&mut self) {
        self.materialize_claim_event();
        self.claim_event_implied = true;
    }

    /// Stores the implied grant event, before anything follows it or its
    /// lease goes.
    pub(crate) fn materialize_claim_event(&mut self) {
        if let Some(event) = self.implied_claim_event() {
            edit(&mut self.events, |e| {
                e.reserve_exact(1);
                e.push(event);
            });
        }
        self.claim_event_implied = false;
    }

    /// Records an event after the others; the caller bounds them.
    pub(crate) fn push_event(&mut self, event: ItemEvent) {
        self.materialize_claim_event();
        edit(&mut self.events, |e| {
            e.reserve_exact(1);
            e.push(event);
        });
    }

    /// Drops `n` events from just after the first: the oldest of the recent
    /// ones.
    pub(crate) fn drop_events_after_first(&mut self, n: usize) {
        let start = usize::from(self.first_event_stored);
        let end = start.saturating_add(n).min(self.events.len());
        edit(&mut self.events, |e| {
            e.drain(start..end);
        });
    }

    /// The stored events' agent names, to share.
    pub(crate) fn event_agents_mut(&mut self) -> impl Iterator<Item = &mut Text> {
        self.events.iter_mut().filter_map(|e| e.agent.as_mut())
    }

    /// The capabilities an agent needs to claim the item.
    pub fn requires(&self) -> &[String] {
        self.rare.as_ref().map_or(&[], |r| &r.requires)
    }

    /// Why the item failed or was cancelled.
    pub fn error(&self) -> Option<&str> {
        self.rare.as_ref().and_then(|r| r.error.as_deref())
    }

    /// The checkpointed workflow steps, in order.
    pub fn journal(&self) -> &[JournalEntry] {
        self.rare.as_ref().map_or(&[], |r| &r.journal)
    }

    /// Set when a cancel arrived while a workflow had steps done: the holder
    /// undoes them, then ends the item as cancelled.
    pub fn cancel_requested(&self) -> Option<&str> {
        self.rare
            .as_ref()
            .and_then(|r| r.cancel_requested.as_deref())
    }

    /// The rare parts, made on first write.
    pub(crate) fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// What queue control knows of the item.
    pub fn control(&self) -> Option<&ItemControl> {
        self.rare.as_ref().map(|r| &r.control)
    }

    pub(crate) fn control_mut(&mut self) -> &mut ItemControl {
        &mut self.rare_mut().control
    }

    /// Drops the rare parts when a change left them all empty, as an item
    /// decoded from the same values has none.
    pub(crate) fn tidy_rare(&mut self) {
        if self.rare.as_deref().is_some_and(|r| *r == Rare::default()) {
            self.rare = None;
        }
    }

    /// Not claimable before this time (0: no such time).
    pub fn not_before(&self) -> Millis {
        self.control().map_or(0, |c| c.not_before)
    }

    /// The concurrency key the item counts against.
    pub fn concurrency_key(&self) -> Option<&Text> {
        self.control().and_then(|c| c.concurrency_key.as_ref())
    }

    /// Failed because its attempts ran out.
    pub fn dead_letter(&self) -> bool {
        self.control().is_some_and(|c| c.dead_letter)
    }

    /// The token of the live claim, if any.
    pub fn current_token(&self) -> Option<FencingToken> {
        self.lease.as_ref().map(|l| l.token)
    }

    /// The sequence number of `events[index]`: its place in everything that
    /// happened to the item, dropped events included. Stable, so a watcher
    /// resumes after the last number it saw.
    pub fn event_seq(&self, index: usize) -> u64 {
        match index {
            0 => 0,
            i => i as u64 + u64::from(self.events_dropped),
        }
    }

    /// How many events were ever recorded: the sequence number the next one
    /// gets.
    pub fn events_recorded(&self) -> u64 {
        self.event_count() as u64 + u64::from(self.events_dropped)
    }
}

/// Changes a boxed slice as a `Vec`, then boxes it again at its exact
/// length: an item keeps a handful of events and holders for its whole life,
/// and a `Vec` would carry a capacity word and reserve four of each. A push
/// reserves exactly one more, so boxing again moves nothing.
fn edit<T>(slice: &mut Box<[T]>, change: impl FnOnce(&mut Vec<T>)) {
    let mut v = Vec::from(std::mem::take(slice));
    change(&mut v);
    *slice = v.into_boxed_slice();
}

/// Order of the claimable queue: highest priority first, then oldest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct QueueKey {
    pub neg_priority: i64,
    pub seq: u64,
    pub id: Text,
}

/// The whole replicated state. Indexes are part of it (and of its
/// snapshots), so two replicas that applied the same entries are equal
/// field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Behind a pointer: a B-tree node reserves room for eleven values, and
    /// a work item is a few hundred bytes inline. Shared (`Arc`), so a copy
    /// of the state for a snapshot copies the indexes and shares the items:
    /// the snapshot is encoded from the copy while commands keep applying
    /// (an item changed meanwhile is copied once, by `Arc::make_mut`).
    pub(crate) items: BTreeMap<Text, Arc<WorkItem>>,
    pub(crate) by_key: BTreeMap<Text, Text>,
    /// Pending items in claim order.
    pub(crate) queue: BTreeSet<QueueKey>,
    /// Pending items by type, in claim order: a claim for some types looks
    /// only at those, however much other work waits.
    pub(crate) queue_by_kind: BTreeMap<Text, BTreeSet<QueueKey>>,
    /// Live claims by token.
    pub(crate) live: BTreeMap<FencingToken, Text>,
    /// Live claims by agent.
    pub(crate) by_agent: BTreeMap<Text, BTreeSet<FencingToken>>,
    /// Live claims by expiry.
    pub(crate) expiry: BTreeSet<(Millis, FencingToken)>,
    /// The cluster-wide fencing counter: the last token granted.
    pub(crate) last_token: FencingToken,
    pub(crate) next_seq: u64,
    /// The latest `now` any applied command carried.
    pub(crate) clock: Millis,
    /// Workflow-running nodes by agent id.
    pub(crate) nodes: BTreeMap<String, NodeInfo>,
    /// Item counts by type and status, for stats without a scan. A state
    /// decoded from a snapshot written before the counts existed has none:
    /// [`State::restored`] counts again.
    #[serde(default)]
    pub(crate) counts: WorkCounts,
    /// Terminal items by the time they ended (their `updated_at`, frozen
    /// once terminal), then id: the order `Compact` removes them in, without
    /// looking at a live item. Empty in a state decoded from a snapshot
    /// written before retention existed: [`State::restored`] rebuilds it.
    #[serde(default)]
    pub(crate) ended: BTreeSet<(Millis, Text)>,
    /// How many finished items retention has removed, ever: what tells a
    /// checker that an item missing from every replica may have finished and
    /// been removed rather than lost.
    #[serde(default)]
    pub(crate) removed: u64,
    /// Limits and schedules. Not part of the derived encoding: snapshots
    /// carry it after the rest (format version 2), and a state from an older
    /// snapshot has none.
    #[serde(skip)]
    pub(crate) control: QueueControl,
    /// Pending items waiting for their `not_before`, by that time: out of
    /// the claim queue until the clock reaches it. Rebuilt from the items by
    /// [`State::restored`].
    #[serde(skip)]
    pub(crate) delayed: BTreeSet<(Millis, Text)>,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, id: &str) -> Option<&WorkItem> {
        self.items.get(id).map(|b| &**b)
    }

    /// Every item, in id order.
    pub fn items(&self) -> impl Iterator<Item = &WorkItem> {
        self.items.values().map(|b| &**b)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items from the one after `after` (every item when `None`), in id
    /// order: a listing resumes where its last page stopped without walking
    /// the items before it.
    pub fn items_after(&self, after: Option<&str>) -> impl Iterator<Item = &WorkItem> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.items
            .range::<str, _>((from, Bound::Unbounded))
            .map(|(_, b)| &**b)
    }

    /// Item counts by type and status, kept by `apply()`.
    pub fn counts(&self) -> &WorkCounts {
        &self.counts
    }

    /// Rebuilds what a state decoded from an older snapshot may lack or
    /// hold beyond today's rules (the counts, the index of finished items,
    /// the per-item bounds), so that it equals a state that replayed the
    /// same log. Every decoder of a stored or received state calls it once,
    /// at load; `apply()` never checks.
    pub fn restored(mut self) -> State {
        self.counts = WorkCounts::of(self.items());
        let clock = self.clock;
        self.delayed = self
            .items
            .values()
            .filter(|i| {
                i.status == Status::Pending
                    && i.not_before() > clock
                    && !matches!(
                        i.control().and_then(|c| c.hold.as_ref()),
                        Some(crate::control::Hold::Paused { .. })
                    )
            })
            .map(|i| (i.not_before(), i.id.clone()))
            .collect();
        crate::retention::reindex(&mut self);
        crate::shared::share_text(&mut self);
        self
    }

    /// The pending item submitted first, of any type and priority. The claim
    /// queue is in priority order, so this looks at the head of each
    /// priority present in it (the oldest of that priority): a few lookups,
    /// not a walk of the queue.
    pub fn oldest_pending(&self) -> Option<&WorkItem> {
        self.oldest_in(&self.queue)
    }

    /// The pending item submitted first, per type, in type order: the age
    /// of each queue, what an operator alerts on.
    pub fn oldest_pending_by_kind(&self) -> impl Iterator<Item = (&str, &WorkItem)> {
        self.queue_by_kind
            .iter()
            .filter_map(|(kind, queue)| Some((&**kind, self.oldest_in(queue)?)))
    }

    /// The oldest item of a queue in claim order (see [`State::oldest_pending`]).
    fn oldest_in(&self, queue: &BTreeSet<QueueKey>) -> Option<&WorkItem> {
        let mut oldest: Option<&QueueKey> = None;
        let mut head = queue.first();
        while let Some(key) = head {
            if oldest.is_none_or(|o| key.seq < o.seq) {
                oldest = Some(key);
            }
            let Some(neg_priority) = key.neg_priority.checked_add(1) else {
                break;
            };
            let next_priority = QueueKey {
                neg_priority,
                seq: 0,
                id: crate::shared::empty_text(),
            };
            head = queue.range(next_priority..).next();
        }
        oldest.and_then(|k| self.get(&k.id))
    }

    /// How many finished items retention has removed from this state, ever.
    pub fn removed(&self) -> u64 {
        self.removed
    }

    /// When the longest-finished item still kept ended: `Compact` has work
    /// once this is at or before its `before`.
    pub fn oldest_ended(&self) -> Option<Millis> {
        self.ended.first().map(|(at, _)| *at)
    }

    /// How many claims are live.
    pub fn live_claims(&self) -> usize {
        self.live.len()
    }

    /// The last fencing token granted anywhere.
    pub fn last_token(&self) -> FencingToken {
        self.last_token
    }

    /// The latest time any applied command carried.
    pub fn clock(&self) -> Millis {
        self.clock
    }

    /// The earliest lease expiry, for a leader deciding when to tick.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// Whether a claim with these filters would get anything now, so an
    /// agent proposes a claim only when its replica shows claimable work.
    pub fn has_claimable(&self, kinds: &[String], capabilities: &[String]) -> bool {
        !self
            .claimable(kinds, capabilities, 1, self.clock)
            .is_empty()
    }

    /// The first `max` pending items, in claim order, of the given types
    /// (empty = any) whose requirements `capabilities` cover and whose
    /// concurrency key's limit allows a grant at `now` (items over a limit
    /// are passed over: the work behind them is not held up).
    pub(crate) fn claimable(
        &self,
        kinds: &[String],
        capabilities: &[String],
        max: usize,
        now: Millis,
    ) -> Vec<QueueKey> {
        let mut taken: BTreeMap<Text, u64> = BTreeMap::new();
        let mut found = Vec::new();
        let mut consider = |k: &QueueKey| {
            let Some(item) = self.items.get(&k.id) else {
                return false;
            };
            if item.requires().iter().all(|r| capabilities.contains(r))
                && self.key_allows(item, now, &taken)
            {
                if let Some(key) = item.concurrency_key() {
                    *taken.entry(key.clone()).or_default() += 1;
                }
                found.push(k.clone());
            }
            found.len() >= max
        };
        if kinds.is_empty() {
            for k in &self.queue {
                if consider(k) {
                    break;
                }
            }
            return found;
        }
        let mut wanted: Vec<&String> = kinds.iter().collect();
        wanted.sort();
        wanted.dedup();
        // The wanted types' queues merged in claim order.
        let mut heads: Vec<_> = wanted
            .into_iter()
            .filter_map(|kind| self.queue_by_kind.get(kind.as_str()))
            .map(|q| q.iter().peekable())
            .collect();
        loop {
            let next = heads
                .iter_mut()
                .enumerate()
                .filter_map(|(i, h)| h.peek().map(|k| (i, *k)))
                .min_by(|a, b| a.1.cmp(b.1))
                .map(|(i, _)| i);
            let Some(k) = next.and_then(|i| heads.get_mut(i)).and_then(|h| h.next()) else {
                break;
            };
            if consider(k) {
                break;
            }
        }
        found
    }

    /// `key` as the [`Text`] the state already holds for that concurrency
    /// key.
    pub(crate) fn concurrency_key_text(&self, key: &str) -> Text {
        self.control
            .limits
            .get_key_value(key)
            .map(|(k, _)| k.clone())
            .or_else(|| self.counts.key_text(key))
            .unwrap_or_else(|| Text::from(key))
    }

    pub(crate) fn enqueue(&mut self, key: QueueKey, kind: &Text) {
        match self.queue_by_kind.get_mut(&**kind) {
            Some(q) => {
                q.insert(key.clone());
            }
            None => {
                self.queue_by_kind
                    .insert(kind.clone(), BTreeSet::from([key.clone()]));
            }
        }
        self.queue.insert(key);
    }

    /// `name` as the [`Text`] the state already holds for that agent, so
    /// every claim of one agent shares one string.
    pub(crate) fn agent_text(&self, name: &str) -> Text {
        self.by_agent
            .get_key_value(name)
            .map_or_else(|| Text::from(name), |(k, _)| k.clone())
    }

    /// `name` as the [`Text`] the state already holds for that type.
    pub(crate) fn kind_text(&self, name: &str) -> Text {
        self.counts
            .kind_text(name)
            .unwrap_or_else(|| Text::from(name))
    }

    pub(crate) fn dequeue(&mut self, key: &QueueKey, kind: &str) {
        self.queue.remove(key);
        if let Some(q) = self.queue_by_kind.get_mut(kind) {
            q.remove(key);
            if q.is_empty() {
                self.queue_by_kind.remove(kind);
            }
        }
    }

    /// The registered workflow-running nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    /// The live claims of one agent.
    pub fn claims_of(&self, agent: &str) -> Vec<&WorkItem> {
        self.by_agent
            .get(agent)
            .into_iter()
            .flatten()
            .filter_map(|t| self.live.get(t))
            .filter_map(|id| self.items.get(id))
            .map(|b| &**b)
            .collect()
    }
}

#[cfg(test)]
mod stored_event_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_step_event_stored_before_journal_index_reads_as_one_written_now() {
        let old =
            r#"{"at":5,"kind":"StepRecorded","agent":"a1","token":3,"step":"s","detail":"2"}"#;
        let now = ItemEvent::new(
            5,
            EventKind::StepRecorded,
            Some(("a1".into(), 3)),
            Some("s".into()),
            None,
            Some(2),
        );
        assert_eq!(serde_json::from_str::<ItemEvent>(old).unwrap(), now);
        let round = serde_json::to_string(&now).unwrap();
        assert_eq!(serde_json::from_str::<ItemEvent>(&round).unwrap(), now);
        let failed =
            r#"{"at":5,"kind":"Failed","agent":null,"token":null,"step":null,"detail":"7"}"#;
        assert_eq!(
            serde_json::from_str::<ItemEvent>(failed).unwrap().detail(),
            Some("7")
        );
    }
}
