//! Queue control: *when* and *how much* work runs, decided in `apply()` from
//! leader-stamped time, so it is exact across failover.
//!
//! - Delayed work: an item with a `not_before` in the future waits in
//!   [`State`]'s delayed index, out of the claim queue, until the state's
//!   clock reaches it (any applied command moves the clock; the leader ticks
//!   when the next one is due).
//! - Concurrency keys and rate limits: a [`KeyLimit`] caps how many items of
//!   one key are claimed at once and how fast they are granted (a token
//!   bucket whose refill is exact integer arithmetic on the state's clock).
//!   Items over the limit stay pending and claims pass over them.
//! - Dead letters and requeue: an item whose attempts ran out is marked
//!   [`ItemControl::dead_letter`]; `Retry` puts a failed item back.
//! - Cron schedules: a [`Schedule`] holds its next fire time; the leader
//!   proposes `FireSchedule` for it, which submits exactly once per fire time
//!   (the command carries the fire time it is for, and applies only while
//!   that is still the schedule's next one). Cron expressions and time zones
//!   are evaluated at the edge: the state machine stores times, not rules.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::command::{
    CreateSchedule, DeleteLimit, DeleteSchedule, FireSchedule, PauseSchedule, Retry, SetLimit,
    Submit,
};
use crate::state::{EventKind, ItemEvent, Status, Text, WorkItem};
use crate::{ClaimError, Millis, Response, State};

/// What queue control knows of one item. Default for most items, which
/// then store nothing for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemControl {
    /// Not claimable before this time (0: from submission).
    pub not_before: Millis,
    /// The key whose limit the item counts against.
    pub concurrency_key: Option<Text>,
    /// Failed because its attempts ran out.
    pub dead_letter: bool,
    /// How many times `Retry` put the item back after it failed.
    pub retries: u32,
    /// Why the item is not claimable though pending: paused, or a parked
    /// workflow run waiting for a signal or a time.
    pub hold: Option<Hold>,
    /// A pause asked of a running workflow: its holder stops at the next
    /// step boundary and parks the run.
    pub pause_requested: Option<String>,
    /// Signals delivered to the item, by name: each one's JSON payload,
    /// kept for the item's life (one per name).
    pub signals: Vec<(String, String)>,
}

/// Why a pending item is held out of the claim queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hold {
    /// Paused by an operator: claimable again only on resume.
    Paused { reason: String, since: Millis },
    /// A workflow run parked at a signal step: claimable again when the
    /// signal arrives, or at `timeout_at` (0: never) for the step to fail.
    Signal {
        name: String,
        since: Millis,
        timeout_at: Millis,
    },
    /// A workflow run parked in a durable sleep: claimable again at `until`.
    Sleep { until: Millis, since: Millis },
}

impl Hold {
    /// When the hold ends by itself (0: only by a command).
    pub fn until(&self) -> Millis {
        match self {
            Hold::Paused { .. } => 0,
            Hold::Signal { timeout_at, .. } => *timeout_at,
            Hold::Sleep { until, .. } => *until,
        }
    }

    /// Since when the item is held.
    pub fn since(&self) -> Millis {
        match self {
            Hold::Paused { since, .. } | Hold::Signal { since, .. } | Hold::Sleep { since, .. } => {
                *since
            }
        }
    }

    /// The hold in words, for the item's events.
    pub fn describe(&self) -> String {
        match self {
            Hold::Paused { reason, .. } => format!("paused: {reason}"),
            Hold::Signal {
                name, timeout_at, ..
            } => match timeout_at {
                0 => format!("waiting for signal {name:?}"),
                t => format!("waiting for signal {name:?} until {t}"),
            },
            Hold::Sleep { until, .. } => format!("sleeping until {until}"),
        }
    }
}

impl ItemControl {
    pub(crate) fn is_default(&self) -> bool {
        *self == ItemControl::default()
    }
}

/// A token bucket's rule: `count` grants per `per_ms`, at most `burst` at
/// once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub count: u32,
    pub per_ms: Millis,
    pub burst: u32,
}

/// The limit on one concurrency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimit {
    /// At most this many items of the key claimed at once (0: no cap).
    pub max_running: u32,
    pub rate: Option<Rate>,
    /// The bucket's content at `bucket_at`, in tokens times `rate.per_ms`:
    /// a refill of `elapsed_ms * count` is then exact, with no rounding.
    pub bucket: u64,
    pub bucket_at: Millis,
    pub set_at: Millis,
}

impl KeyLimit {
    /// The bucket's content at `now`, scaled (see [`KeyLimit::bucket`]).
    fn scaled_at(&self, now: Millis) -> u64 {
        let Some(rate) = self.rate else { return 0 };
        let cap = u64::from(rate.burst).saturating_mul(rate.per_ms);
        let refill = now
            .saturating_sub(self.bucket_at)
            .saturating_mul(u64::from(rate.count));
        self.bucket.saturating_add(refill).min(cap)
    }

    /// Whole tokens in the bucket at `now`; `u64::MAX` without a rate.
    pub fn tokens_at(&self, now: Millis) -> u64 {
        match self.rate {
            None => u64::MAX,
            Some(rate) => self.scaled_at(now) / rate.per_ms.max(1),
        }
    }

    /// How many more items of the key may be granted at `now` with
    /// `running` of them claimed.
    pub fn allowance(&self, running: u64, now: Millis) -> u64 {
        let slots = match self.max_running {
            0 => u64::MAX,
            max => u64::from(max).saturating_sub(running),
        };
        slots.min(self.tokens_at(now))
    }

    /// Takes one token at `now` (a grant).
    fn take(&mut self, now: Millis) {
        let Some(rate) = self.rate else { return };
        let scaled = self.scaled_at(now);
        self.bucket = scaled.saturating_sub(rate.per_ms);
        self.bucket_at = now.max(self.bucket_at);
    }

    /// Brings the bucket's record up to `now` (what a tick does, so that
    /// [`KeyLimit::next_token_at`] looks forward from there).
    fn refill(&mut self, now: Millis) {
        if self.rate.is_some() && now > self.bucket_at {
            self.bucket = self.scaled_at(now);
            self.bucket_at = now;
        }
    }

    /// When the bucket, empty of whole tokens as last recorded, holds one
    /// again; `None` when it has one (or has no rate).
    pub fn next_token_at(&self) -> Option<Millis> {
        let rate = self.rate?;
        let missing = rate.per_ms.checked_sub(self.bucket).filter(|m| *m > 0)?;
        let count = u64::from(rate.count).max(1);
        Some(self.bucket_at.saturating_add(missing.div_ceil(count)))
    }
}

/// What a schedule does when a fire time comes while the item of the
/// previous one is still pending or claimed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overlap {
    /// Skip this fire time (counted in [`Schedule::skipped`]).
    #[default]
    Skip,
    /// Submit anyway.
    Allow,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        }
    }
}

/// What a schedule is: its rule and the item it submits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    pub name: String,
    /// The cron expression, as given (evaluated at the edge).
    pub cron: String,
    /// IANA time zone the expression is read in.
    pub timezone: String,
    pub kind: String,
    pub priority: i32,
    pub requires: Vec<String>,
    /// JSON text.
    pub payload: String,
    /// 0 = the default.
    pub max_attempts: u32,
    /// Empty = none.
    pub concurrency_key: String,
    pub overlap: Overlap,
}

/// A cron schedule as the state machine keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    pub paused: bool,
    /// The fire time still to come; a `FireSchedule` for it submits once.
    pub next_fire: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The last fire time that submitted an item, and that item.
    pub last_fire: Option<Millis>,
    pub last_item: Option<String>,
    /// Items submitted, fire times skipped because the last item was still
    /// running (overlap `skip`), and fire times missed while no leader
    /// could fire them (folded into the one fire that followed).
    pub fires: u64,
    pub skipped: u64,
    pub missed: u64,
}

/// The queue-control state beyond the items: limits by key and schedules
/// by name. Snapshots carry it after the rest of the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueControl {
    pub(crate) limits: BTreeMap<Text, KeyLimit>,
    pub(crate) schedules: BTreeMap<String, Schedule>,
}

impl State {
    /// The limit on a concurrency key.
    pub fn limit(&self, key: &str) -> Option<&KeyLimit> {
        self.control.limits.get(key)
    }

    /// Every limit, by key.
    pub fn limits(&self) -> impl Iterator<Item = (&str, &KeyLimit)> {
        self.control.limits.iter().map(|(k, l)| (&**k, l))
    }

    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.control.schedules.get(name)
    }

    /// Every schedule, by name.
    pub fn schedules(&self) -> impl Iterator<Item = &Schedule> {
        self.control.schedules.values()
    }

    /// Checks where every item sits: a pending one in exactly one of the
    /// claim queue and the delayed index, unless held with no time to wake
    /// (paused, or waiting for a signal with no timeout: in neither); any
    /// other in neither. For tests and checkers: `Err` names the first item
    /// out of place.
    pub fn check_placement(&self) -> Result<(), String> {
        for item in self.items() {
            let key = crate::apply::queue_key(item);
            let queued = self.queue.contains(&key);
            let delayed = self.delayed.contains(&(item.not_before(), item.id.clone()));
            let timeless = matches!(
                item.control().and_then(|c| c.hold.as_ref()),
                Some(Hold::Paused { .. } | Hold::Signal { timeout_at: 0, .. })
            );
            let expected = item.status == Status::Pending && !timeless;
            if (queued || delayed) != expected || (queued && delayed) {
                return Err(format!(
                    "item {} ({}, hold {:?}): queued {queued}, delayed {delayed}",
                    item.id,
                    item.status,
                    item.control().and_then(|c| c.hold.as_ref())
                ));
            }
        }
        Ok(())
    }

    /// How many pending items wait for their `not_before`.
    pub fn delayed_count(&self) -> usize {
        self.delayed.len()
    }

    /// When the leader should next tick for queue control: the earliest
    /// delayed item coming due, or a rate-limited key with pending work
    /// getting a token back. A tick makes the change visible (and wakes
    /// long-polling claims).
    pub fn next_due(&self) -> Option<Millis> {
        let delayed = self.delayed.first().map(|(at, _)| *at);
        let refill = self
            .control
            .limits
            .iter()
            .filter(|(key, _)| self.counts.key(key).pending > 0)
            .filter_map(|(_, limit)| limit.next_token_at())
            .min();
        delayed.into_iter().chain(refill).min()
    }

    /// Whether the item may be granted at `now`, given the grants of this
    /// claim so far (`taken`, by key).
    pub(crate) fn key_allows(
        &self,
        item: &WorkItem,
        now: Millis,
        taken: &BTreeMap<Text, u64>,
    ) -> bool {
        let Some(key) = item.concurrency_key() else {
            return true;
        };
        let Some(limit) = self.control.limits.get(&**key) else {
            return true;
        };
        let running = self.counts.key(key).claimed;
        let already = taken.get(&**key).copied().unwrap_or(0);
        limit.allowance(running, now) > already
    }

    /// A grant of `item` at `now` spends a token of its key's bucket.
    pub(crate) fn spend_token(&mut self, key: Option<&Text>, now: Millis) {
        if let Some(limit) = key.and_then(|k| self.control.limits.get_mut(&**k)) {
            limit.take(now);
        }
    }

    /// Moves the items whose time has come from the delayed index to the
    /// claim queue.
    pub(crate) fn promote_due(&mut self, now: Millis) {
        while let Some((at, _)) = self.delayed.first() {
            if *at > now {
                break;
            }
            let Some((_, id)) = self.delayed.pop_first() else {
                break;
            };
            let Some(item) = self.items.get_mut(&id).map(Arc::make_mut) else {
                continue;
            };
            if item.status != Status::Pending {
                continue;
            }
            // A parked run's sleep ended, or its signal timed out.
            if let Some(hold) = item.rare_mut().control.hold.take() {
                if matches!(hold, Hold::Paused { .. }) {
                    item.rare_mut().control.hold = Some(hold);
                    continue;
                }
                let detail = match hold {
                    Hold::Signal { name, .. } => format!("signal {name:?} timed out"),
                    _ => "woke up".to_string(),
                };
                crate::apply::push_event(
                    item,
                    ItemEvent::new(now, EventKind::Resumed, None, None, Some(detail), None),
                );
            }
            item.tidy_rare();
            let key = crate::apply::queue_key(item);
            let kind = item.kind.clone();
            self.enqueue(key, &kind);
        }
    }

    /// A tick brings every bucket's record to `now`.
    pub(crate) fn refill_buckets(&mut self, now: Millis) {
        for limit in self.control.limits.values_mut() {
            limit.refill(now);
        }
    }
}

pub(crate) fn set_limit(state: &mut State, c: SetLimit) -> Result<Response, ClaimError> {
    let now = crate::apply::advance(state, c.now);
    let key = state
        .control
        .limits
        .get_key_value(c.key.as_str())
        .map_or_else(|| Text::from(c.key.as_str()), |(k, _)| k.clone());
    // A changed rate starts from a full bucket, as a new one does; an
    // unchanged one keeps its content.
    let kept = state
        .control
        .limits
        .get(&*key)
        .filter(|l| l.rate == c.rate)
        .map(|l| (l.bucket, l.bucket_at, l.set_at));
    let full = c
        .rate
        .map_or(0, |r| u64::from(r.burst).saturating_mul(r.per_ms));
    let (bucket, bucket_at, set_at) = kept.unwrap_or((full, now, now));
    let limit = KeyLimit {
        max_running: c.max_running,
        rate: c.rate,
        bucket,
        bucket_at,
        set_at,
    };
    state.control.limits.insert(key, limit.clone());
    Ok(Response::Limit(limit))
}

pub(crate) fn delete_limit(state: &mut State, c: DeleteLimit) -> Response {
    crate::apply::advance(state, c.now);
    Response::Deleted(state.control.limits.remove(c.key.as_str()).is_some())
}

/// Puts a failed item back to pending, its history kept.
pub(crate) fn retry(state: &mut State, c: Retry) -> Result<Response, ClaimError> {
    let item = state
        .items
        .get(c.id.as_str())
        .ok_or_else(|| ClaimError::NotFound { id: c.id.clone() })?;
    if item.status != Status::Failed {
        return Err(ClaimError::WrongStatus {
            id: c.id,
            status: item.status,
            action: "retry (only a failed item goes back to pending)".to_string(),
        });
    }
    let ended_at = item.updated_at;
    let now = crate::apply::advance(state, c.now);
    state.ended.remove(&(ended_at, Text::from(c.id.as_str())));
    if let Some(item) = state.items.get_mut(c.id.as_str()).map(Arc::make_mut) {
        state.counts.set_dead_letter(item, false);
    }
    let item = crate::apply::requeue(state, &c.id, now)?;
    let detail = if c.reset_attempts {
        item.attempt = 0;
        "retried: attempts reset".to_string()
    } else {
        if item.attempt >= item.max_attempts {
            item.max_attempts = item.attempt.saturating_add(1);
        }
        format!(
            "retried: attempt {} of {} next",
            item.attempt.saturating_add(1),
            item.max_attempts
        )
    };
    let control = item.control_mut();
    control.retries = control.retries.saturating_add(1);
    crate::apply::push_event(
        item,
        ItemEvent::new(now, EventKind::Requeued, None, None, Some(detail), None),
    );
    Ok(Response::Item(item.clone()))
}

pub(crate) fn create_schedule(
    state: &mut State,
    c: CreateSchedule,
) -> Result<Response, ClaimError> {
    if let Some(existing) = state.control.schedules.get(&c.spec.name) {
        // A retried create of the same schedule answers as the first did.
        if existing.spec == c.spec {
            return Ok(Response::Schedule(existing.clone()));
        }
        return Err(ClaimError::Exists {
            what: "schedule".into(),
            name: c.spec.name,
        });
    }
    let now = crate::apply::advance(state, c.now);
    let schedule = Schedule {
        spec: c.spec,
        paused: false,
        next_fire: c.next_fire,
        created_at: now,
        updated_at: now,
        last_fire: None,
        last_item: None,
        fires: 0,
        skipped: 0,
        missed: 0,
    };
    state
        .control
        .schedules
        .insert(schedule.spec.name.clone(), schedule.clone());
    Ok(Response::Schedule(schedule))
}

fn schedule_mut<'a>(state: &'a mut State, name: &str) -> Result<&'a mut Schedule, ClaimError> {
    state
        .control
        .schedules
        .get_mut(name)
        .ok_or_else(|| ClaimError::Unknown {
            what: "schedule".into(),
            name: name.to_string(),
        })
}

pub(crate) fn pause_schedule(state: &mut State, c: PauseSchedule) -> Result<Response, ClaimError> {
    schedule_mut(state, &c.name)?;
    let now = crate::apply::advance(state, c.now);
    let schedule = schedule_mut(state, &c.name)?;
    if schedule.paused != c.paused {
        schedule.paused = c.paused;
        schedule.updated_at = now;
        // Resumed: on from the next fire time after now, none caught up.
        if !c.paused {
            schedule.next_fire = c.next_fire;
        }
    }
    Ok(Response::Schedule(schedule.clone()))
}

pub(crate) fn delete_schedule(state: &mut State, c: DeleteSchedule) -> Response {
    crate::apply::advance(state, c.now);
    Response::Deleted(state.control.schedules.remove(&c.name).is_some())
}

/// Fires a schedule: submits its item for `fire_at`, once. A fire for a
/// time that is no longer the schedule's next (already fired, by a leader
/// since deposed, say) or of a paused schedule changes nothing.
pub(crate) fn fire_schedule(state: &mut State, c: FireSchedule) -> Result<Response, ClaimError> {
    let schedule = schedule_mut(state, &c.name)?.clone();
    if !c.manual && (schedule.paused || schedule.next_fire != c.fire_at) {
        return Ok(Response::Fired {
            schedule: Box::new(schedule),
            item: None,
        });
    }
    if !c.manual && c.next_fire <= c.fire_at {
        return Err(ClaimError::invalid(
            "next_fire",
            format!(
                "must be after the fire time {} (got {})",
                c.fire_at, c.next_fire
            ),
        ));
    }
    let overlapping = schedule.spec.overlap == Overlap::Skip
        && schedule
            .last_item
            .as_deref()
            .and_then(|id| state.get(id))
            .is_some_and(|item| !item.status.is_terminal());
    let item = if overlapping {
        None
    } else {
        let spec = &schedule.spec;
        let key = match c.manual {
            true => format!("schedule:{}:manual:{}", spec.name, c.now),
            false => format!("schedule:{}:{}", spec.name, c.fire_at),
        };
        let submit = Submit {
            id: c.item_id.clone(),
            idempotency_key: key,
            kind: spec.kind.clone(),
            priority: spec.priority,
            requires: spec.requires.clone(),
            payload: spec.payload.clone(),
            max_attempts: spec.max_attempts,
            now: c.now,
        };
        let control = crate::command::SubmitControl {
            not_before: 0,
            delay_ms: 0,
            concurrency_key: spec.concurrency_key.clone(),
        };
        match crate::apply::submit(state, submit, control)? {
            Response::Submitted { item, .. } => Some(item),
            _ => None,
        }
    };
    let now = crate::apply::advance(state, c.now);
    let schedule = schedule_mut(state, &c.name)?;
    schedule.updated_at = now;
    match &item {
        Some(item) => {
            schedule.fires += 1;
            schedule.last_fire = Some(c.fire_at);
            schedule.last_item = Some(item.id.to_string());
        }
        None => schedule.skipped += 1,
    }
    if !c.manual {
        schedule.missed += u64::from(c.missed);
        schedule.next_fire = c.next_fire;
    }
    Ok(Response::Fired {
        schedule: Box::new(schedule.clone()),
        item,
    })
}

thread_local! {
    /// Set while decoding a snapshot of format version 1, whose items have
    /// no queue-control field.
    static ITEMS_WITHOUT_CONTROL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `decode` reading items in the layout of snapshot format version 1
/// (before queue control): a work item ends after `events_dropped`.
pub fn decode_items_without_control<T>(decode: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ITEMS_WITHOUT_CONTROL.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(ITEMS_WITHOUT_CONTROL.with(|c| c.replace(true)));
    decode()
}

/// Whether items are read in the layout before queue control.
pub(crate) fn items_without_control() -> bool {
    ITEMS_WITHOUT_CONTROL.with(Cell::get)
}
