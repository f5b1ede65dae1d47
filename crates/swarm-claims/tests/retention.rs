//! Retention and the bounds on one item: `Compact` removes finished items
//! (and only those), oldest first and in bounded batches; an item's events,
//! holders and journal stay within `ITEM_BOUNDS` however long it lives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use swarm_claims::command::{
    Cancel, Claim, Compact, Complete, Fail, Release, Renew, StepDone, Submit,
};
use swarm_claims::request::Submitted;
use swarm_claims::{
    ClaimError, Command, FencingToken, ITEM_BOUNDS, MAX_COMPACT_BATCH, Millis, Request, State,
    Status, WorkItem, apply,
};

fn request<R: Request>(state: &mut State, r: R) -> Result<R::Answer, ClaimError> {
    let response = apply(state, r.into_command())?;
    Ok(R::answer(response).unwrap())
}

fn submit(state: &mut State, id: &str, key: &str, now: Millis) -> Submitted {
    request(
        state,
        Submit {
            id: id.into(),
            idempotency_key: key.into(),
            kind: "task".into(),
            priority: 0,
            requires: Vec::new(),
            payload: "{}".into(),
            max_attempts: 0,
            now,
        },
    )
    .unwrap()
}

/// Claims the next pending item for `agent`; its id and token.
fn claim(state: &mut State, agent: &str, now: Millis) -> (String, FencingToken) {
    let granted = request(
        state,
        Claim {
            agent: agent.into(),
            kinds: Vec::new(),
            capabilities: Vec::new(),
            max: 1,
            lease_ms: 10_000,
            now,
        },
    )
    .unwrap();
    let item = &granted[0];
    (item.id.to_string(), item.current_token().unwrap())
}

/// Claims the next pending item for `agent` and gives it back untried: a
/// grant and its end, without using up an attempt.
fn claim_and_release(state: &mut State, agent: &str, now: Millis) {
    let (id, token) = claim(state, agent, now);
    request(state, Release { id, token, now }).unwrap();
}

fn complete(state: &mut State, id: &str, token: FencingToken, now: Millis) -> WorkItem {
    request(
        state,
        Complete {
            id: id.into(),
            token,
            result: "{}".into(),
            now,
        },
    )
    .unwrap()
}

fn compact(state: &mut State, before: Millis, max: u32) -> Result<usize, ClaimError> {
    request(
        state,
        Compact {
            before,
            max,
            now: 100_000,
        },
    )
}

fn ids(state: &State) -> Vec<&str> {
    state.items().map(|i| &*i.id).collect()
}

#[test]
fn compaction_removes_finished_items_that_ended_by_before_and_nothing_live() {
    let mut st = State::new();
    for id in ["a", "b", "c", "d", "e"] {
        submit(&mut st, id, "", 1_000);
    }
    let (a, ta) = claim(&mut st, "x", 1_500);
    complete(&mut st, &a, ta, 2_000);
    let (b, tb) = claim(&mut st, "x", 2_500);
    request(
        &mut st,
        Fail {
            id: b.clone(),
            token: tb,
            error: "no".into(),
            retry: false,
            now: 3_000,
        },
    )
    .unwrap();
    request(
        &mut st,
        Cancel {
            id: "c".into(),
            reason: "stop".into(),
            now: 4_000,
        },
    )
    .unwrap();
    let (live, _) = claim(&mut st, "x", 4_500);
    assert_eq!(live, "d");
    let live_before: Vec<WorkItem> = ["d", "e"].map(|id| st.get(id).unwrap().clone()).into();

    assert_eq!(compact(&mut st, 3_000, 10), Ok(2));
    assert_eq!(ids(&st), ["c", "d", "e"]);
    assert_eq!(st.oldest_ended(), Some(4_000));
    assert_eq!(compact(&mut st, Millis::MAX, 10), Ok(1));
    assert_eq!(ids(&st), ["d", "e"]);
    assert_eq!(st.removed(), 3);
    for item in &live_before {
        assert_eq!(st.get(&item.id), Some(item), "a live item changed");
    }
    assert_eq!(compact(&mut st, Millis::MAX, 10), Ok(0));
    assert_eq!(st.counts().total(), 2);
    assert_eq!(st.counts().by_status().claimed, 1);
}

#[test]
fn a_batch_removes_at_most_max_oldest_first() {
    let mut st = State::new();
    // Ended in the order e4, e3, e2, e1, e0: end time, not id, decides.
    for n in 0..5 {
        submit(&mut st, &format!("e{n}"), "", 1_000);
    }
    let mut held = Vec::new();
    for n in 0..5 {
        held.push(claim(&mut st, "x", 1_100 + n));
    }
    for (n, (id, token)) in held.iter().rev().enumerate() {
        complete(&mut st, id, *token, 2_000 + n as Millis);
    }
    assert_eq!(compact(&mut st, Millis::MAX, 2), Ok(2));
    assert_eq!(ids(&st), ["e0", "e1", "e2"]);
    assert_eq!(compact(&mut st, Millis::MAX, 2), Ok(2));
    assert_eq!(ids(&st), ["e0"]);
    assert_eq!(compact(&mut st, Millis::MAX, 2), Ok(1));
    assert!(st.is_empty());
}

#[test]
fn a_compaction_outside_the_bounds_is_refused_and_changes_nothing() {
    let mut st = State::new();
    submit(&mut st, "a", "", 1_000);
    let before = st.clone();
    for max in [0, MAX_COMPACT_BATCH + 1] {
        let err = compact(&mut st, Millis::MAX, max).unwrap_err();
        assert!(
            matches!(&err, ClaimError::Invalid { field, .. } if field == "max"),
            "{err}"
        );
        assert_eq!(st, before);
    }
}

#[test]
fn an_idempotency_key_lives_exactly_as_long_as_its_item() {
    let mut st = State::new();
    assert!(submit(&mut st, "first", "k", 1_000).created);
    let again = submit(&mut st, "other", "k", 1_100);
    assert!(!again.created);
    assert_eq!(&*again.item.id, "first");
    let (id, token) = claim(&mut st, "x", 1_200);
    complete(&mut st, &id, token, 1_300);
    assert!(!submit(&mut st, "other", "k", 1_400).created);
    assert_eq!(compact(&mut st, 1_300, 10), Ok(1));
    let after = submit(&mut st, "second", "k", 1_500);
    assert!(after.created, "a removed item's key makes a new item");
    assert_eq!(&*after.item.id, "second");
}

#[test]
fn a_removed_item_is_not_found() {
    let mut st = State::new();
    submit(&mut st, "a", "", 1_000);
    let (id, token) = claim(&mut st, "x", 1_100);
    complete(&mut st, &id, token, 1_200);
    compact(&mut st, 1_200, 10).unwrap();
    let retried = request(
        &mut st,
        Complete {
            id: "a".into(),
            token,
            result: "{}".into(),
            now: 1_300,
        },
    );
    assert_eq!(retried, Err(ClaimError::NotFound { id: "a".into() }));
}

#[test]
fn renewing_a_claim_many_times_does_not_grow_the_item() {
    let mut st = State::new();
    submit(&mut st, "a", "", 1_000);
    let (id, token) = claim(&mut st, "x", 1_000);
    let size = |st: &State| serde_json::to_string(st.get(&id).unwrap()).unwrap().len();
    let grown = size(&st);
    for n in 0..100_000u64 {
        request(
            &mut st,
            Renew {
                agent: "x".into(),
                tokens: vec![token],
                progress: Some("50%".into()),
                now: 1_000 + n % 5_000,
            },
        )
        .unwrap();
    }
    let item = st.get(&id).unwrap();
    assert_eq!((item.event_count(), item.holder_count()), (2, 1));
    assert!(
        size(&st) <= grown + 16,
        "{} bytes after, {grown} before",
        size(&st)
    );
}

#[test]
fn events_keep_the_first_and_the_most_recent_with_stable_numbers() {
    let mut st = State::new();
    submit(&mut st, "a", "", 1_000);
    let cycles = 500u64;
    for n in 0..cycles {
        claim_and_release(&mut st, "x", 2_000 + n);
    }
    let item = st.get("a").unwrap();
    assert_eq!(item.event_count(), ITEM_BOUNDS.max_events);
    assert_eq!(item.event(0).unwrap().kind.as_str(), "submitted");
    // One submitted, then a claimed and a released per cycle.
    assert_eq!(item.events_recorded(), 1 + 2 * cycles);
    let last = item.event_count() - 1;
    assert_eq!(item.event_seq(last), 2 * cycles);
    assert_eq!(item.event(last).unwrap().kind.as_str(), "released");
    assert_eq!(item.event_seq(1), 2 * cycles - last as u64 + 1);
    assert_eq!(item.holder_count(), ITEM_BOUNDS.max_holders);
    assert_eq!(item.token, st.last_token());
    assert_eq!(item.holders().last().map(|h| h.token), Some(item.token));
}

#[test]
fn holders_a_journal_entry_names_are_kept() {
    let mut st = State::new();
    submit(&mut st, "a", "", 1_000);
    let (id, first) = claim(&mut st, "x", 1_000);
    request(
        &mut st,
        StepDone {
            id: id.clone(),
            token: first,
            step: "s".into(),
            outcome: "1".into(),
            now: 1_001,
        },
    )
    .unwrap();
    request(
        &mut st,
        Release {
            id: id.clone(),
            token: first,
            now: 1_002,
        },
    )
    .unwrap();
    for n in 0..100 {
        claim_and_release(&mut st, "y", 2_000 + n);
    }
    let item = st.get("a").unwrap();
    assert_eq!(item.holder_count(), ITEM_BOUNDS.max_holders);
    assert_eq!(
        item.holders().next().unwrap().token,
        first,
        "the step's holder stays"
    );
    let tokens: Vec<u64> = item.holders().map(|h| h.token).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]));
}

/// A state whose item `a` is claimed under the returned token with `entries`
/// journal entries, built through its serde form so that the test does not
/// apply thousands of checkpoints.
fn with_journal(entries: usize) -> (State, FencingToken) {
    let mut st = State::new();
    submit(&mut st, "a", "", 1_000);
    let (id, token) = claim(&mut st, "x", 1_000);
    request(
        &mut st,
        StepDone {
            id,
            token,
            step: "s".into(),
            outcome: "1".into(),
            now: 1_001,
        },
    )
    .unwrap();
    let mut json = serde_json::to_value(&st).unwrap();
    let journal = &mut json["items"]["a"]["journal"];
    let entry = journal[0].clone();
    *journal = serde_json::Value::Array(vec![entry; entries]);
    (serde_json::from_value(json).unwrap(), token)
}

#[test]
fn a_checkpoint_past_the_journal_bound_is_refused_naming_the_limit() {
    let (mut st, token) = with_journal(ITEM_BOUNDS.max_journal_entries - 1);
    let step = |outcome: &str| StepDone {
        id: "a".into(),
        token,
        step: "s".into(),
        outcome: outcome.into(),
        now: 1_002,
    };
    request(&mut st, step("2")).unwrap();
    let before = st.clone();
    let err = request(&mut st, step("3")).unwrap_err();
    assert!(
        matches!(&err, ClaimError::Invalid { field, .. } if field == "journal"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&ITEM_BOUNDS.max_journal_entries.to_string()),
        "{err}"
    );
    assert_eq!(st, before);
}

#[test]
fn a_checkpoint_past_the_journal_bytes_is_refused() {
    let (mut st, token) = with_journal(1);
    let big = format!("\"{}\"", "x".repeat(ITEM_BOUNDS.max_journal_bytes / 3));
    let step = StepDone {
        id: "a".into(),
        token,
        step: "s".into(),
        outcome: big,
        now: 1_002,
    };
    request(&mut st, step.clone()).unwrap();
    request(&mut st, step.clone()).unwrap();
    let err = request(&mut st, step).unwrap_err();
    assert!(err.to_string().contains("bytes"), "{err}");
}

#[test]
fn a_snapshot_from_before_retention_loads_as_a_replay_builds_it() {
    let mut st = State::new();
    for id in ["a", "b", "c"] {
        submit(&mut st, id, "", 1_000);
    }
    let (a, ta) = claim(&mut st, "x", 1_100);
    complete(&mut st, &a, ta, 1_200);
    let (_, tb) = claim(&mut st, "x", 1_300);
    let mut json = serde_json::to_value(&st).unwrap();
    let fields = json.as_object_mut().unwrap();
    fields.remove("ended");
    fields.remove("removed");
    // An old item kept every event: a replay today keeps the bound.
    let events = &mut json["items"]["c"]["events"];
    let first = events[0].clone();
    *events = serde_json::Value::Array(vec![first; 300]);
    // Restoring a state decoded from such JSON, as every snapshot decoder
    // does, rebuilds what it lacks.
    let mut old = serde_json::from_value::<State>(json).unwrap().restored();
    assert_eq!(
        compact(&mut old, 1_200, 10),
        Ok(1),
        "the terminal index is rebuilt"
    );
    assert_eq!(ids(&old), ["b", "c"]);
    assert_eq!(old.get("b").unwrap().current_token(), Some(tb));
    assert_eq!(old.get("b").unwrap().status, Status::Claimed);
    let c = old.get("c").unwrap();
    assert_eq!(c.event_count(), ITEM_BOUNDS.max_events);
    assert_eq!(c.events_recorded(), 300);
}

#[test]
fn compact_is_stamped_with_the_leaders_time() {
    let mut cmd = Compact {
        before: 5,
        max: 1,
        now: 0,
    }
    .into_command();
    cmd.stamp(77);
    assert_eq!(
        cmd,
        Command::Compact(Compact {
            before: 5,
            max: 1,
            now: 77
        })
    );
    assert_eq!(cmd.name(), "compact");
}
