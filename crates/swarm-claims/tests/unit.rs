//! Unit tests of every command of the state machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use swarm_claims::command::{
    Cancel, Claim, Complete, Fail, Handoff, Release, Renew, StepDone, Submit,
};
use swarm_claims::{
    APPLY_LIMITS, ClaimEnd, ClaimError, Command, DEFAULT_MAX_ATTEMPTS, FencingToken, Limits,
    Millis, Response, State, Status, WorkItem, apply,
};

// ---------------------------------------------------------------- helpers

/// The item's holders, the live one included.
fn history(it: &WorkItem) -> Vec<swarm_claims::Holder> {
    it.holders().map(std::borrow::Cow::into_owned).collect()
}

fn s(v: &str) -> String {
    v.to_string()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn submit_cmd(id: &str, kind: &str, priority: i32, requires: &[&str]) -> Submit {
    Submit {
        id: s(id),
        idempotency_key: String::new(),
        kind: s(kind),
        priority,
        requires: strings(requires),
        payload: s("{}"),
        max_attempts: 0,
        now: 1_000,
    }
}

fn submit(state: &mut State, id: &str, kind: &str, priority: i32, requires: &[&str]) -> WorkItem {
    match apply(
        state,
        Command::Submit(submit_cmd(id, kind, priority, requires)),
    )
    .unwrap()
    {
        Response::Submitted { item, created } => {
            assert!(created);
            item
        }
        other => panic!("unexpected response {other:?}"),
    }
}

fn submit_with_attempts(state: &mut State, id: &str, max_attempts: u32) -> WorkItem {
    let mut cmd = submit_cmd(id, "task", 0, &[]);
    cmd.max_attempts = max_attempts;
    match apply(state, Command::Submit(cmd)).unwrap() {
        Response::Submitted { item, .. } => item,
        other => panic!("unexpected response {other:?}"),
    }
}

fn claim_cmd(
    agent: &str,
    kinds: &[&str],
    caps: &[&str],
    max: u32,
    lease_ms: Millis,
    now: Millis,
) -> Command {
    Command::Claim(Claim {
        agent: s(agent),
        kinds: strings(kinds),
        capabilities: strings(caps),
        max,
        lease_ms,
        now,
    })
}

fn granted(resp: Response) -> Vec<WorkItem> {
    match resp {
        Response::Granted(items) => items,
        other => panic!("expected Granted, got {other:?}"),
    }
}

fn claim(state: &mut State, agent: &str, max: u32, lease_ms: Millis, now: Millis) -> Vec<WorkItem> {
    granted(apply(state, claim_cmd(agent, &[], &[], max, lease_ms, now)).unwrap())
}

/// Claims exactly one item (any kind, no capabilities) and returns its token.
fn claim_one(
    state: &mut State,
    agent: &str,
    lease_ms: Millis,
    now: Millis,
) -> (String, FencingToken) {
    let items = claim(state, agent, 1, lease_ms, now);
    assert_eq!(items.len(), 1, "expected one grant");
    let item = &items[0];
    (item.id.to_string(), item.lease.as_ref().unwrap().token)
}

fn ids(items: &[WorkItem]) -> Vec<&str> {
    items.iter().map(|i| &*i.id).collect()
}

fn item(resp: Response) -> WorkItem {
    match resp {
        Response::Item(item) => item,
        other => panic!("expected Item, got {other:?}"),
    }
}

fn renew_cmd(agent: &str, tokens: &[FencingToken], progress: Option<&str>, now: Millis) -> Command {
    Command::Renew(Renew {
        agent: s(agent),
        tokens: tokens.to_vec(),
        progress: progress.map(s),
        now,
    })
}

fn renewed(resp: Response) -> (Vec<WorkItem>, Vec<(FencingToken, ClaimError)>) {
    match resp {
        Response::Renewed { renewed, rejected } => (renewed, rejected),
        other => panic!("expected Renewed, got {other:?}"),
    }
}

fn complete_cmd(id: &str, token: FencingToken, now: Millis) -> Command {
    Command::Complete(Complete {
        id: s(id),
        token,
        result: s(r#"{"ok":true}"#),
        now,
    })
}

fn fail_cmd(id: &str, token: FencingToken, retry: bool, now: Millis) -> Command {
    Command::Fail(Fail {
        id: s(id),
        token,
        error: s("boom"),
        retry,
        now,
    })
}

fn release_cmd(id: &str, token: FencingToken, now: Millis) -> Command {
    Command::Release(Release {
        id: s(id),
        token,
        now,
    })
}

fn handoff_cmd(id: &str, token: FencingToken, to: &str, now: Millis) -> Command {
    Command::Handoff(Handoff {
        id: s(id),
        token,
        to_agent: s(to),
        now,
    })
}

fn cancel_cmd(id: &str, now: Millis) -> Command {
    Command::Cancel(Cancel {
        id: s(id),
        reason: s("not needed"),
        now,
    })
}

fn step_cmd(id: &str, token: FencingToken, step: &str, now: Millis) -> Command {
    Command::StepDone(StepDone {
        id: s(id),
        token,
        step: s(step),
        outcome: s(r#"{"out":1}"#),
        now,
    })
}

/// Applies `cmd`, expects an error, and checks the state did not change.
fn refused(state: &mut State, cmd: Command) -> ClaimError {
    let before = state.clone();
    let err = apply(state, cmd).expect_err("command should be refused");
    assert_eq!(*state, before, "a refused command changed the state");
    err
}

fn assert_stale(err: ClaimError, id: &str, presented: FencingToken, current: Option<FencingToken>) {
    assert_eq!(
        err,
        ClaimError::StaleToken {
            id: s(id),
            presented,
            current,
        }
    );
}

// ---------------------------------------------------------------- submit

#[test]
fn submit_creates_a_pending_item() {
    let mut st = State::new();
    let it = submit(&mut st, "w1", "build", 3, &["gpu"]);
    assert_eq!(&*it.id, "w1");
    assert_eq!(&*it.kind, "build");
    assert_eq!(it.priority, 3);
    assert_eq!(it.requires(), strings(&["gpu"]));
    assert_eq!(it.status, Status::Pending);
    assert_eq!(it.attempt, 0);
    assert_eq!(it.max_attempts, DEFAULT_MAX_ATTEMPTS);
    assert_eq!(it.lease, None);
    assert_eq!(it.token, 0);
    assert_eq!(it.submitted_at, 1_000);
    assert!(history(&it).is_empty() && it.journal().is_empty());
    assert_eq!(st.get("w1"), Some(&it));
    assert_eq!(st.len(), 1);
    assert!(!st.is_empty());
    assert_eq!(st.clock(), 1_000);
    assert_eq!(st.last_token(), 0);
}

#[test]
fn submit_keeps_explicit_max_attempts() {
    let mut st = State::new();
    assert_eq!(submit_with_attempts(&mut st, "w1", 2).max_attempts, 2);
}

#[test]
fn submit_same_idempotency_key_returns_the_same_item() {
    let mut st = State::new();
    let mut first = submit_cmd("w1", "build", 0, &[]);
    first.idempotency_key = s("key-1");
    let Response::Submitted { item: a, created } =
        apply(&mut st, Command::Submit(first.clone())).unwrap()
    else {
        panic!()
    };
    assert!(created);

    // The very same command again.
    let before = st.clone();
    let Response::Submitted { item: b, created } =
        apply(&mut st, Command::Submit(first.clone())).unwrap()
    else {
        panic!()
    };
    assert!(!created);
    assert_eq!(a, b);
    assert_eq!(st, before);

    // Same key, another id and payload: still the first item, nothing new.
    let mut other = submit_cmd("w2", "other", 9, &[]);
    other.idempotency_key = s("key-1");
    other.payload = s("[1,2]");
    let Response::Submitted { item: c, created } = apply(&mut st, Command::Submit(other)).unwrap()
    else {
        panic!()
    };
    assert!(!created);
    assert_eq!(&*c.id, "w1");
    assert_eq!(st.len(), 1);
    assert!(st.get("w2").is_none());
    assert_eq!(st, before);
}

#[test]
fn submit_idempotent_retry_returns_the_item_as_it_is_now() {
    let mut st = State::new();
    let mut cmd = submit_cmd("w1", "build", 0, &[]);
    cmd.idempotency_key = s("k");
    apply(&mut st, Command::Submit(cmd.clone())).unwrap();
    let (_, token) = claim_one(&mut st, "a1", 1_000, 1_000);
    let Response::Submitted { item, created } = apply(&mut st, Command::Submit(cmd)).unwrap()
    else {
        panic!()
    };
    assert!(!created);
    assert_eq!(item.status, Status::Claimed);
    assert_eq!(item.current_token(), Some(token));
}

#[test]
fn submit_without_key_is_not_idempotent() {
    let mut st = State::new();
    submit(&mut st, "w1", "build", 0, &[]);
    submit(&mut st, "w2", "build", 0, &[]);
    assert_eq!(st.len(), 2);
}

#[test]
fn submit_duplicate_id_is_refused() {
    let mut st = State::new();
    submit(&mut st, "w1", "build", 0, &[]);
    let err = refused(&mut st, Command::Submit(submit_cmd("w1", "other", 5, &[])));
    assert_eq!(err, ClaimError::DuplicateId { id: s("w1") });

    // A fresh idempotency key does not make a taken id free.
    let mut keyed = submit_cmd("w1", "other", 5, &[]);
    keyed.idempotency_key = s("fresh");
    let err = refused(&mut st, Command::Submit(keyed.clone()));
    assert_eq!(err, ClaimError::DuplicateId { id: s("w1") });
    // ... and the refused submit did not record its key.
    keyed.id = s("w9");
    let Response::Submitted { item, created } = apply(&mut st, Command::Submit(keyed)).unwrap()
    else {
        panic!()
    };
    assert!(created);
    assert_eq!(&*item.id, "w9");
}

// ---------------------------------------------------------------- claim

#[test]
fn claim_grants_highest_priority_first_then_submit_order() {
    let mut st = State::new();
    submit(&mut st, "low", "t", -5, &[]);
    submit(&mut st, "mid-b", "t", 1, &[]);
    submit(&mut st, "high", "t", 10, &[]);
    submit(&mut st, "mid-a", "t", 1, &[]);
    submit(&mut st, "min", "t", i32::MIN, &[]);
    submit(&mut st, "max", "t", i32::MAX, &[]);
    let got = claim(&mut st, "a1", 100, 5_000, 2_000);
    assert_eq!(ids(&got), ["max", "high", "mid-b", "mid-a", "low", "min"]);
    // Tokens follow the grant order.
    let tokens: Vec<FencingToken> = got
        .iter()
        .map(|i| i.lease.as_ref().unwrap().token)
        .collect();
    assert_eq!(tokens, [1, 2, 3, 4, 5, 6]);
    assert_eq!(st.last_token(), 6);
}

#[test]
fn claim_sets_the_lease() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let got = claim(&mut st, "a1", 1, 5_000, 2_000);
    let it = &got[0];
    assert_eq!(it.status, Status::Claimed);
    assert_eq!(it.attempt, 1);
    assert_eq!(it.token, 1);
    let lease = it.lease.as_ref().unwrap();
    assert_eq!(&*lease.agent, "a1");
    assert_eq!(lease.token, 1);
    assert_eq!(lease.granted_at, 2_000);
    assert_eq!(lease.expires_at, 7_000);
    assert_eq!(lease.lease_ms, 5_000);
    assert_eq!(lease.progress, None);
    assert_eq!(history(it).len(), 1);
    assert_eq!(&*history(it)[0].agent, "a1");
    assert_eq!(history(it)[0].token, 1);
    assert_eq!(history(it)[0].ended, None);
    assert_eq!(st.get("w1"), Some(it));
    assert_eq!(st.live_claims(), 1);
    assert_eq!(st.next_expiry(), Some(7_000));
    assert_eq!(
        ids(&st.claims_of("a1").into_iter().cloned().collect::<Vec<_>>()),
        ["w1"]
    );
    assert!(st.claims_of("a2").is_empty());
}

#[test]
fn claim_filters_by_kind() {
    let mut st = State::new();
    submit(&mut st, "b1", "build", 0, &[]);
    submit(&mut st, "t1", "test", 5, &[]);
    submit(&mut st, "d1", "deploy", 9, &[]);
    let got = granted(
        apply(
            &mut st,
            claim_cmd("a1", &["build", "test"], &[], 10, 1_000, 1_000),
        )
        .unwrap(),
    );
    assert_eq!(ids(&got), ["t1", "b1"]);
    let got = granted(apply(&mut st, claim_cmd("a1", &["nope"], &[], 10, 1_000, 1_000)).unwrap());
    assert!(got.is_empty());
    // Empty kinds = any.
    let got = claim(&mut st, "a2", 10, 1_000, 1_000);
    assert_eq!(ids(&got), ["d1"]);
}

#[test]
fn claim_requires_must_be_a_subset_of_capabilities() {
    let mut st = State::new();
    submit(&mut st, "gpu", "t", 9, &["gpu"]);
    submit(&mut st, "gpu-big", "t", 8, &["gpu", "mem:64g"]);
    submit(&mut st, "plain", "t", 0, &[]);

    assert!(st.has_claimable(&[], &[]));
    // No capabilities: only the item that requires nothing.
    let got = granted(apply(&mut st, claim_cmd("a1", &[], &[], 10, 1_000, 1_000)).unwrap());
    assert_eq!(ids(&got), ["plain"]);

    // Only part of gpu-big's requirements.
    assert!(!st.has_claimable(&[], &strings(&["mem:64g"])));
    let got = granted(
        apply(
            &mut st,
            claim_cmd("a2", &[], &["mem:64g"], 10, 1_000, 1_000),
        )
        .unwrap(),
    );
    assert!(got.is_empty());

    // A superset of capabilities matches both.
    assert!(st.has_claimable(&[], &strings(&["gpu", "mem:64g", "x"])));
    let got = granted(
        apply(
            &mut st,
            claim_cmd("a3", &[], &["x", "mem:64g", "gpu"], 10, 1_000, 1_000),
        )
        .unwrap(),
    );
    assert_eq!(ids(&got), ["gpu", "gpu-big"]);
    assert!(!st.has_claimable(&[], &strings(&["gpu", "mem:64g"])));
}

#[test]
fn claim_grants_at_most_max() {
    let mut st = State::new();
    for i in 0..5 {
        submit(&mut st, &format!("w{i}"), "t", 0, &[]);
    }
    assert_eq!(ids(&claim(&mut st, "a1", 2, 1_000, 1_000)), ["w0", "w1"]);
    assert_eq!(ids(&claim(&mut st, "a2", 2, 1_000, 1_000)), ["w2", "w3"]);
    assert_eq!(ids(&claim(&mut st, "a3", 2, 1_000, 1_000)), ["w4"]);
    assert_eq!(st.live_claims(), 5);
}

#[test]
fn claim_is_empty_when_nothing_is_claimable() {
    let mut st = State::new();
    assert!(claim(&mut st, "a1", 5, 1_000, 1_000).is_empty());
    assert!(!st.has_claimable(&[], &[]));
    submit(&mut st, "w1", "t", 0, &[]);
    claim_one(&mut st, "a1", 1_000, 1_000);
    assert!(!st.has_claimable(&[], &[]));
    assert!(claim(&mut st, "a2", 5, 1_000, 1_000).is_empty());
    assert_eq!(st.last_token(), 1);
}

#[test]
fn claim_with_a_clock_behind_uses_the_state_clock() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    apply(&mut st, Command::Tick { now: 10_000 }).unwrap();
    let got = claim(&mut st, "a1", 1, 1_000, 5_000);
    let lease = got[0].lease.as_ref().unwrap();
    assert_eq!(lease.granted_at, 10_000);
    assert_eq!(lease.expires_at, 11_000);
    assert_eq!(st.clock(), 10_000);
}

// ---------------------------------------------------------------- renew

#[test]
fn renew_with_no_tokens_renews_every_lease_of_the_agent() {
    let mut st = State::new();
    for i in 0..3 {
        submit(&mut st, &format!("w{i}"), "t", 0, &[]);
    }
    claim(&mut st, "a1", 2, 1_000, 1_000);
    claim(&mut st, "a2", 1, 1_000, 1_000);
    let (ok, rejected) = renewed(apply(&mut st, renew_cmd("a1", &[], Some("50%"), 1_500)).unwrap());
    assert!(rejected.is_empty());
    assert_eq!(ids(&ok), ["w0", "w1"]);
    for id in ["w0", "w1"] {
        let lease = st.get(id).unwrap().lease.clone().unwrap();
        assert_eq!(lease.expires_at, 2_500);
        assert_eq!(lease.progress.as_deref(), Some("50%"));
        assert_eq!(st.get(id).unwrap().updated_at, 1_500);
    }
    // a2's lease is untouched.
    let other = st.get("w2").unwrap().lease.clone().unwrap();
    assert_eq!(other.expires_at, 2_000);
    assert_eq!(other.progress, None);
    assert_eq!(st.next_expiry(), Some(2_000));
}

#[test]
fn renew_without_progress_keeps_the_last_progress() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, token) = claim_one(&mut st, "a1", 1_000, 1_000);
    apply(&mut st, renew_cmd("a1", &[token], Some("step 1"), 1_100)).unwrap();
    apply(&mut st, renew_cmd("a1", &[token], None, 1_200)).unwrap();
    let lease = st.get("w1").unwrap().lease.clone().unwrap();
    assert_eq!(lease.progress.as_deref(), Some("step 1"));
    assert_eq!(lease.expires_at, 2_200);
}

#[test]
fn renew_named_tokens_only() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    submit(&mut st, "w2", "t", 0, &[]);
    let got = claim(&mut st, "a1", 2, 1_000, 1_000);
    let t2 = got[1].lease.as_ref().unwrap().token;
    let (ok, rejected) = renewed(apply(&mut st, renew_cmd("a1", &[t2], None, 1_500)).unwrap());
    assert!(rejected.is_empty());
    assert_eq!(ids(&ok), ["w2"]);
    assert_eq!(
        st.get("w1").unwrap().lease.as_ref().unwrap().expires_at,
        2_000
    );
    assert_eq!(
        st.get("w2").unwrap().lease.as_ref().unwrap().expires_at,
        2_500
    );
}

#[test]
fn renew_rejects_tokens_of_other_agents_unknown_tokens_and_expired_leases() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    submit(&mut st, "w2", "t", 0, &[]);
    let (_, t1) = claim_one(&mut st, "a1", 1_000, 1_000);
    let (_, t2) = claim_one(&mut st, "a2", 5_000, 1_000);

    // a1 tries to renew a2's lease and a token nobody holds.
    let before_w2 = st.get("w2").cloned();
    let (ok, rejected) =
        renewed(apply(&mut st, renew_cmd("a1", &[t2, 99], Some("x"), 1_500)).unwrap());
    assert!(ok.is_empty());
    assert_eq!(
        rejected,
        vec![
            (
                t2,
                ClaimError::NotHolder {
                    agent: s("a1"),
                    token: t2
                }
            ),
            (
                99,
                ClaimError::NotHolder {
                    agent: s("a1"),
                    token: 99
                }
            ),
        ]
    );
    assert_eq!(st.get("w2").cloned(), before_w2);

    // a1's own lease has run out (at 2_000) though no tick has run yet.
    let before_w1 = st.get("w1").cloned();
    let (ok, rejected) = renewed(apply(&mut st, renew_cmd("a1", &[t1], None, 2_000)).unwrap());
    assert!(ok.is_empty());
    assert_eq!(
        rejected,
        vec![(
            t1,
            ClaimError::NotHolder {
                agent: s("a1"),
                token: t1
            }
        )]
    );
    assert_eq!(st.get("w1").cloned(), before_w1);
    // With no tokens named, the expired lease is rejected too.
    let (ok, rejected) = renewed(apply(&mut st, renew_cmd("a1", &[], None, 2_500)).unwrap());
    assert!(ok.is_empty());
    assert_eq!(rejected.len(), 1);
}

#[test]
fn renew_never_shortens_a_lease() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, t) = claim_one(&mut st, "a1", 10_000, 1_000);
    apply(&mut st, Command::LeaderTookOffice { now: 5_000 }).unwrap();
    assert_eq!(
        st.get("w1").unwrap().lease.as_ref().unwrap().expires_at,
        15_000
    );
    // A renewal at an older time does not pull the expiry back.
    apply(&mut st, renew_cmd("a1", &[t], None, 2_000)).unwrap();
    assert_eq!(
        st.get("w1").unwrap().lease.as_ref().unwrap().expires_at,
        15_000
    );
}

// ---------------------------------------------------------------- step_done

#[test]
fn step_done_records_the_journal() {
    let mut st = State::new();
    submit(&mut st, "w1", "workflow", 0, &[]);
    let (_, t) = claim_one(&mut st, "a1", 1_000, 1_000);
    let it = item(apply(&mut st, step_cmd("w1", t, "fetch", 1_100)).unwrap());
    assert_eq!(it.journal().len(), 1);
    assert_eq!(it.journal()[0].step, "fetch");
    assert_eq!(it.journal()[0].token, t);
    assert_eq!(it.journal()[0].outcome, r#"{"out":1}"#);
    assert_eq!(it.status, Status::Claimed);
    apply(&mut st, step_cmd("w1", t, "build", 1_200)).unwrap();
    let steps: Vec<_> = st
        .get("w1")
        .unwrap()
        .journal()
        .iter()
        .map(|j| j.step.clone())
        .collect();
    assert_eq!(steps, ["fetch", "build"]);

    // The journal survives expiry and is there for the next holder.
    apply(&mut st, Command::Tick { now: 2_200 }).unwrap();
    let (_, t2) = claim_one(&mut st, "a2", 1_000, 2_300);
    let it = st.get("w1").unwrap();
    assert_eq!(it.journal().len(), 2);
    assert_eq!(it.current_token(), Some(t2));
    // The old holder can no longer write to it.
    let err = refused(&mut st, step_cmd("w1", t, "deploy", 2_400));
    assert_stale(err, "w1", t, Some(t2));
}

#[test]
fn step_done_refuses_unknown_items_and_unclaimed_items() {
    let mut st = State::new();
    let err = refused(&mut st, step_cmd("nope", 1, "s", 1_000));
    assert_eq!(err, ClaimError::NotFound { id: s("nope") });
    submit(&mut st, "w1", "t", 0, &[]);
    let err = refused(&mut st, step_cmd("w1", 0, "s", 1_000));
    assert_stale(err, "w1", 0, None);
}

// ---------------------------------------------------------------- complete

#[test]
fn complete_finishes_the_item() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, t) = claim_one(&mut st, "a1", 1_000, 1_000);
    let it = item(apply(&mut st, complete_cmd("w1", t, 1_500)).unwrap());
    assert_eq!(it.status, Status::Completed);
    assert_eq!(it.result.as_deref(), Some(r#"{"ok":true}"#));
    assert_eq!(it.lease, None);
    assert_eq!(it.token, t);
    assert_eq!(history(&it)[0].ended, Some(ClaimEnd::Completed));
    assert_eq!(it.updated_at, 1_500);
    assert_eq!(st.live_claims(), 0);
    assert_eq!(st.next_expiry(), None);
    assert!(st.claims_of("a1").is_empty());
    assert!(!st.has_claimable(&[], &[]));
    // A completed item's lease is not expired by a later tick.
    let Response::Expired(expired) = apply(&mut st, Command::Tick { now: 99_999 }).unwrap() else {
        panic!()
    };
    assert!(expired.is_empty());
    assert_eq!(st.get("w1").unwrap().status, Status::Completed);
}

#[test]
fn complete_with_a_stale_token_names_the_current_one() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, t1) = claim_one(&mut st, "a1", 1_000, 1_000);
    apply(&mut st, Command::Tick { now: 2_000 }).unwrap();
    let (_, t2) = claim_one(&mut st, "a2", 1_000, 2_000);
    assert!(t2 > t1);
    let err = refused(&mut st, complete_cmd("w1", t1, 2_100));
    assert_stale(err.clone(), "w1", t1, Some(t2));
    assert!(err.to_string().contains(&t2.to_string()));
    // A token that was never granted is stale too.
    let err = refused(&mut st, complete_cmd("w1", t2 + 7, 2_100));
    assert_stale(err, "w1", t2 + 7, Some(t2));
    // The current holder can complete.
    apply(&mut st, complete_cmd("w1", t2, 2_200)).unwrap();
    // After completion the old token is still stale, with no current holder.
    let err = refused(&mut st, complete_cmd("w1", t1, 2_300));
    assert_stale(err, "w1", t1, None);
}

#[test]
fn complete_retried_with_the_same_token_is_ok_and_changes_nothing() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, t) = claim_one(&mut st, "a1", 1_000, 1_000);
    let first = item(apply(&mut st, complete_cmd("w1", t, 1_500)).unwrap());
    let before = st.clone();
    let again = item(apply(&mut st, complete_cmd("w1", t, 1_900)).unwrap());
    assert_eq!(first, again);
    assert_eq!(st, before);
}

#[test]
fn complete_refuses_unknown_and_unclaimed_items() {
    let mut st = State::new();
    let err = refused(&mut st, complete_cmd("nope", 1, 1_000));
    assert_eq!(err, ClaimError::NotFound { id: s("nope") });
    submit(&mut st, "w1", "t", 0, &[]);
    let err = refused(&mut st, complete_cmd("w1", 0, 1_000));
    assert_stale(err, "w1", 0, None);
}

// ---------------------------------------------------------------- fail

#[test]
fn fail_with_retry_requeues_while_attempts_remain() {
    let mut st = State::new();
    submit_with_attempts(&mut st, "w1", 2);
    let (_, t1) = claim_one(&mut st, "a1", 1_000, 1_000);
    let it = item(apply(&mut st, fail_cmd("w1", t1, true, 1_100)).unwrap());
    assert_eq!(it.status, Status::Pending);
    assert_eq!(it.attempt, 1);
    assert_eq!(it.error(), Some("boom"));
    assert_eq!(it.lease, None);
    assert_eq!(history(&it)[0].ended, Some(ClaimEnd::Failed));
    assert!(st.has_claimable(&[], &[]));
    assert_eq!(st.live_claims(), 0);
    // The failed holder's token is dead.
    let err = refused(&mut st, complete_cmd("w1", t1, 1_150));
    assert_stale(err, "w1", t1, None);

    // Second (last) attempt: a retry now fails the item for good.
    let (_, t2) = claim_one(&mut st, "a2", 1_000, 1_200);
    assert_eq!(st.get("w1").unwrap().attempt, 2);
    let it = item(apply(&mut st, fail_cmd("w1", t2, true, 1_300)).unwrap());
    assert_eq!(it.status, Status::Failed);
    assert_eq!(it.attempt, 2);
    assert_eq!(it.error(), Some("boom"));
    assert!(!st.has_claimable(&[], &[]));
    assert!(claim(&mut st, "a3", 1, 1_000, 1_400).is_empty());
}

#[test]
fn fail_without_retry_is_final() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, t) = claim_one(&mut st, "a1", 1_000, 1_000);
    let it = item(apply(&mut st, fail_cmd("w1", t, false, 1_100)).unwrap());
    assert_eq!(it.status, Status::Failed);
    assert_eq!(it.lease, None);
    assert!(!st.has_claimable(&[], &[]));
    // Failing again is stale.
    let err = refused(&mut st, fail_cmd("w1", t, false, 1_200));
    assert_stale(err, "w1", t, None);
}

#[test]
fn fail_with_a_stale_token_changes_nothing() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, t) = claim_one(&mut st, "a1", 1_000, 1_000);
    let err = refused(&mut st, fail_cmd("w1", t + 1, true, 1_100));
    assert_stale(err, "w1", t + 1, Some(t));
    let err = refused(&mut st, fail_cmd("nope", t, true, 1_100));
    assert_eq!(err, ClaimError::NotFound { id: s("nope") });
}

// ---------------------------------------------------------------- release

#[test]
fn release_returns_the_item_untried() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, t) = claim_one(&mut st, "a1", 1_000, 1_000);
    let it = item(apply(&mut st, release_cmd("w1", t, 1_100)).unwrap());
    assert_eq!(it.status, Status::Pending);
    assert_eq!(it.attempt, 0);
    assert_eq!(it.lease, None);
    assert_eq!(history(&it)[0].ended, Some(ClaimEnd::Released));
    assert_eq!(st.live_claims(), 0);
    assert!(st.claims_of("a1").is_empty());
    // The released token is dead; the item can be claimed again under a new one.
    let err = refused(&mut st, release_cmd("w1", t, 1_200));
    assert_stale(err, "w1", t, None);
    let (_, t2) = claim_one(&mut st, "a2", 1_000, 1_300);
    assert!(t2 > t);
    assert_eq!(st.get("w1").unwrap().attempt, 1);
    let err = refused(&mut st, release_cmd("w1", t, 1_400));
    assert_stale(err, "w1", t, Some(t2));
}

// ---------------------------------------------------------------- handoff

#[test]
fn handoff_moves_the_claim_under_a_new_higher_token() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, t1) = claim_one(&mut st, "a1", 4_000, 1_000);
    let it = item(apply(&mut st, handoff_cmd("w1", t1, "a2", 2_000)).unwrap());
    let lease = it.lease.clone().unwrap();
    assert!(lease.token > t1);
    assert_eq!(lease.token, st.last_token());
    assert_eq!(&*lease.agent, "a2");
    assert_eq!(lease.lease_ms, 4_000);
    assert_eq!(lease.granted_at, 2_000);
    assert_eq!(lease.expires_at, 6_000);
    assert_eq!(it.status, Status::Claimed);
    assert_eq!(it.attempt, 1, "a hand-off is not a new attempt");
    assert_eq!(it.token, lease.token);
    assert_eq!(history(&it).len(), 2);
    assert_eq!(history(&it)[0].ended, Some(ClaimEnd::HandedOff));
    assert_eq!(&*history(&it)[1].agent, "a2");
    assert_eq!(history(&it)[1].ended, None);
    assert_eq!(st.live_claims(), 1);
    assert!(st.claims_of("a1").is_empty());
    assert_eq!(st.claims_of("a2").len(), 1);
    assert_eq!(st.next_expiry(), Some(6_000));

    // The old token is stale for everything.
    let t2 = lease.token;
    for cmd in [
        complete_cmd("w1", t1, 2_100),
        fail_cmd("w1", t1, true, 2_100),
        release_cmd("w1", t1, 2_100),
        handoff_cmd("w1", t1, "a3", 2_100),
        step_cmd("w1", t1, "s", 2_100),
    ] {
        let err = refused(&mut st, cmd);
        assert_stale(err, "w1", t1, Some(t2));
    }
    let (ok, rejected) = renewed(apply(&mut st, renew_cmd("a1", &[t1], None, 2_100)).unwrap());
    assert!(ok.is_empty());
    assert_eq!(rejected.len(), 1);

    // The new holder can complete.
    apply(&mut st, complete_cmd("w1", t2, 2_200)).unwrap();
    assert_eq!(st.get("w1").unwrap().status, Status::Completed);
}

#[test]
fn handoff_refuses_unknown_and_unclaimed_items() {
    let mut st = State::new();
    let err = refused(&mut st, handoff_cmd("nope", 1, "a2", 1_000));
    assert_eq!(err, ClaimError::NotFound { id: s("nope") });
    submit(&mut st, "w1", "t", 0, &[]);
    let err = refused(&mut st, handoff_cmd("w1", 1, "a2", 1_000));
    assert_stale(err, "w1", 1, None);
}

// ---------------------------------------------------------------- cancel

#[test]
fn cancel_a_pending_item() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let it = item(apply(&mut st, cancel_cmd("w1", 1_100)).unwrap());
    assert_eq!(it.status, Status::Cancelled);
    assert_eq!(it.error(), Some("not needed"));
    assert!(!st.has_claimable(&[], &[]));
    assert!(claim(&mut st, "a1", 1, 1_000, 1_200).is_empty());
}

#[test]
fn cancel_a_claimed_item_ends_the_claim() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, t) = claim_one(&mut st, "a1", 1_000, 1_000);
    let it = item(apply(&mut st, cancel_cmd("w1", 1_100)).unwrap());
    assert_eq!(it.status, Status::Cancelled);
    assert_eq!(it.lease, None);
    assert_eq!(history(&it)[0].ended, Some(ClaimEnd::Cancelled));
    assert_eq!(st.live_claims(), 0);
    assert_eq!(st.next_expiry(), None);
    let err = refused(&mut st, complete_cmd("w1", t, 1_200));
    assert_stale(err, "w1", t, None);
    assert!(claim(&mut st, "a1", 1, 1_000, 1_200).is_empty());
}

#[test]
fn cancel_is_idempotent_on_a_cancelled_item() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let first = item(apply(&mut st, cancel_cmd("w1", 1_100)).unwrap());
    let before = st.clone();
    let again = item(apply(&mut st, cancel_cmd("w1", 1_900)).unwrap());
    assert_eq!(first, again);
    assert_eq!(st, before);
}

#[test]
fn cancel_refuses_completed_failed_and_unknown_items() {
    let mut st = State::new();
    submit(&mut st, "done", "t", 1, &[]);
    submit(&mut st, "bad", "t", 0, &[]);
    let (_, t) = claim_one(&mut st, "a1", 1_000, 1_000);
    apply(&mut st, complete_cmd("done", t, 1_100)).unwrap();
    let (_, t) = claim_one(&mut st, "a1", 1_000, 1_000);
    apply(&mut st, fail_cmd("bad", t, false, 1_100)).unwrap();

    let err = refused(&mut st, cancel_cmd("done", 1_200));
    assert_eq!(
        err,
        ClaimError::WrongStatus {
            id: s("done"),
            status: Status::Completed,
            action: s("cancel"),
        }
    );
    let err = refused(&mut st, cancel_cmd("bad", 1_200));
    assert!(matches!(
        err,
        ClaimError::WrongStatus {
            status: Status::Failed,
            ..
        }
    ));
    let err = refused(&mut st, cancel_cmd("nope", 1_200));
    assert_eq!(err, ClaimError::NotFound { id: s("nope") });
}

// ---------------------------------------------------------------- tick

#[test]
fn tick_expires_due_leases_and_requeues() {
    let mut st = State::new();
    submit(&mut st, "short", "t", 1, &[]);
    submit(&mut st, "long", "t", 0, &[]);
    let (_, t_short) = claim_one(&mut st, "a1", 1_000, 1_000);
    let (_, t_long) = claim_one(&mut st, "a1", 5_000, 1_000);
    assert_eq!(st.next_expiry(), Some(2_000));

    // Not yet due.
    let Response::Expired(none) = apply(&mut st, Command::Tick { now: 1_999 }).unwrap() else {
        panic!()
    };
    assert!(none.is_empty());
    assert_eq!(st.live_claims(), 2);

    // Due exactly at expires_at.
    let Response::Expired(expired) = apply(&mut st, Command::Tick { now: 2_000 }).unwrap() else {
        panic!()
    };
    assert_eq!(expired, vec![s("short")]);
    let it = st.get("short").unwrap();
    assert_eq!(it.status, Status::Pending);
    assert_eq!(it.attempt, 1);
    assert_eq!(it.lease, None);
    assert_eq!(history(it)[0].ended, Some(ClaimEnd::Expired));
    assert_eq!(st.live_claims(), 1);
    assert_eq!(st.next_expiry(), Some(6_000));
    assert_eq!(st.get("long").unwrap().current_token(), Some(t_long));

    // The expired holder is fenced; the next claim is attempt 2.
    let err = refused(&mut st, complete_cmd("short", t_short, 2_001));
    assert_stale(err, "short", t_short, None);
    let (id, _) = claim_one(&mut st, "a2", 1_000, 2_100);
    assert_eq!(id, "short");
    assert_eq!(st.get("short").unwrap().attempt, 2);
}

#[test]
fn tick_with_a_clock_behind_expires_nothing() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    claim_one(&mut st, "a1", 1_000, 5_000);
    let Response::Expired(expired) = apply(&mut st, Command::Tick { now: 100 }).unwrap() else {
        panic!()
    };
    assert!(expired.is_empty());
    assert_eq!(st.clock(), 5_000);
    assert_eq!(st.live_claims(), 1);
}

#[test]
fn tick_past_max_attempts_fails_the_item_with_the_reason() {
    let mut st = State::new();
    submit_with_attempts(&mut st, "w1", 2);
    let mut now = 1_000;
    for attempt in 1..=2 {
        claim_one(&mut st, "a1", 1_000, now);
        assert_eq!(st.get("w1").unwrap().attempt, attempt);
        now += 1_000;
        let Response::Expired(expired) = apply(&mut st, Command::Tick { now }).unwrap() else {
            panic!()
        };
        assert_eq!(expired, vec![s("w1")]);
    }
    let it = st.get("w1").unwrap();
    assert_eq!(it.status, Status::Failed);
    assert_eq!(it.lease, None);
    let reason = it.error().unwrap().to_string();
    assert!(reason.contains("expired"), "reason: {reason}");
    assert!(reason.contains("2 of 2"), "reason: {reason}");
    assert!(!st.has_claimable(&[], &[]));
    assert_eq!(st.live_claims(), 0);
}

#[test]
fn tick_at_the_end_of_time_does_not_panic() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    claim_one(&mut st, "a1", Millis::MAX, Millis::MAX - 1);
    assert_eq!(st.next_expiry(), Some(Millis::MAX));
    apply(&mut st, Command::LeaderTookOffice { now: Millis::MAX }).unwrap();
    let Response::Expired(expired) = apply(&mut st, Command::Tick { now: Millis::MAX }).unwrap()
    else {
        panic!()
    };
    assert_eq!(expired, vec![s("w1")]);
}

// ---------------------------------------------------------------- leader took office

#[test]
fn leader_took_office_extends_leases_but_never_shortens() {
    let mut st = State::new();
    submit(&mut st, "short", "t", 1, &[]);
    submit(&mut st, "long", "t", 0, &[]);
    claim_one(&mut st, "a1", 1_000, 1_000); // short: expires 2_000
    claim_one(&mut st, "a2", 60_000, 1_000); // long: expires 61_000

    let Response::Extended(n) = apply(&mut st, Command::LeaderTookOffice { now: 1_500 }).unwrap()
    else {
        panic!()
    };
    assert_eq!(n, 2);
    assert_eq!(
        st.get("short").unwrap().lease.as_ref().unwrap().expires_at,
        2_500
    );
    assert_eq!(
        st.get("long").unwrap().lease.as_ref().unwrap().expires_at,
        61_500
    );
    assert_eq!(st.next_expiry(), Some(2_500));

    // A leader whose clock is behind extends from the state clock, and never
    // pulls an expiry back.
    let Response::Extended(n) = apply(&mut st, Command::LeaderTookOffice { now: 10 }).unwrap()
    else {
        panic!()
    };
    assert_eq!(n, 0);
    assert_eq!(
        st.get("short").unwrap().lease.as_ref().unwrap().expires_at,
        2_500
    );
    assert_eq!(
        st.get("long").unwrap().lease.as_ref().unwrap().expires_at,
        61_500
    );

    // The extended expiry is the one a tick honours.
    let Response::Expired(expired) = apply(&mut st, Command::Tick { now: 2_400 }).unwrap() else {
        panic!()
    };
    assert!(expired.is_empty());
    let Response::Expired(expired) = apply(&mut st, Command::Tick { now: 2_500 }).unwrap() else {
        panic!()
    };
    assert_eq!(expired, vec![s("short")]);
}

#[test]
fn leader_took_office_with_no_leases() {
    let mut st = State::new();
    let Response::Extended(n) = apply(&mut st, Command::LeaderTookOffice { now: 7 }).unwrap()
    else {
        panic!()
    };
    assert_eq!(n, 0);
    assert_eq!(st.clock(), 7);
}

// ---------------------------------------------------------------- batch

#[test]
fn batch_tokens_are_unique_and_increasing() {
    let mut st = State::new();
    for i in 0..6 {
        submit(&mut st, &format!("w{i}"), "t", 0, &[]);
    }
    let resp = apply(
        &mut st,
        Command::Batch(vec![
            claim_cmd("a1", &[], &[], 2, 1_000, 1_000),
            claim_cmd("a2", &[], &[], 1, 1_000, 1_000),
            claim_cmd("a3", &[], &[], 3, 1_000, 1_000),
            claim_cmd("a4", &[], &[], 3, 1_000, 1_000),
        ]),
    )
    .unwrap();
    let Response::Batch(results) = resp else {
        panic!()
    };
    assert_eq!(results.len(), 4);
    let mut tokens = Vec::new();
    let mut granted_ids = Vec::new();
    for r in results {
        for it in granted(r.unwrap()) {
            tokens.push(it.lease.unwrap().token);
            granted_ids.push(it.id);
        }
    }
    assert_eq!(tokens, [1, 2, 3, 4, 5, 6]);
    granted_ids.sort();
    granted_ids.dedup();
    assert_eq!(granted_ids.len(), 6, "an item was granted twice");
    assert_eq!(st.last_token(), 6);
    assert_eq!(st.live_claims(), 6);
}

#[test]
fn batch_entries_fail_alone_and_nested_batches_are_refused() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let resp = apply(
        &mut st,
        Command::Batch(vec![
            Command::Submit(submit_cmd("w2", "t", 0, &[])),
            Command::Submit(submit_cmd("w1", "t", 0, &[])), // duplicate
            Command::Batch(vec![Command::Submit(submit_cmd("w3", "t", 0, &[]))]),
            claim_cmd("a1", &[], &[], 0, 1_000, 1_000), // invalid max
            claim_cmd("a1", &[], &[], 5, 1_000, 1_000),
        ]),
    )
    .unwrap();
    let Response::Batch(results) = resp else {
        panic!()
    };
    assert_eq!(results.len(), 5);
    assert!(matches!(
        results[0],
        Ok(Response::Submitted { created: true, .. })
    ));
    assert_eq!(results[1], Err(ClaimError::DuplicateId { id: s("w1") }));
    assert!(matches!(&results[2], Err(ClaimError::Invalid { field, .. }) if field == "batch"));
    assert!(matches!(&results[3], Err(ClaimError::Invalid { field, .. }) if field == "max"));
    let Ok(Response::Granted(got)) = &results[4] else {
        panic!("{:?}", results[4])
    };
    assert_eq!(ids(got), ["w1", "w2"]);
    // The nested batch's submit did not happen.
    assert!(st.get("w3").is_none());
    assert_eq!(st.len(), 2);
}

#[test]
fn empty_batch_is_ok() {
    let mut st = State::new();
    let before = st.clone();
    assert_eq!(
        apply(&mut st, Command::Batch(vec![])).unwrap(),
        Response::Batch(vec![])
    );
    assert_eq!(st, before);
}

// ---------------------------------------------------------------- validation

#[test]
fn invalid_input_is_refused_without_state_change() {
    let mut st = State::new();
    submit(&mut st, "w1", "t", 0, &[]);
    let (_, t) = claim_one(&mut st, "a1", 1_000, 1_000);
    let long = "x".repeat(APPLY_LIMITS.max_name_len + 1);
    let many: Vec<String> = (0..=APPLY_LIMITS.max_capabilities)
        .map(|i| format!("c{i}"))
        .collect();

    let mut bad_submits = Vec::new();
    for (field, value) in [
        ("id", ""),
        ("id", "has space"),
        ("id", long.as_str()),
        ("id", "é"),
        ("type", ""),
        ("type", "a\nb"),
        ("key", "bad key"),
        ("key", long.as_str()),
        ("payload", "not json"),
        ("payload", "{"),
        ("payload", ""),
        ("requires", "bad cap"),
    ] {
        let mut c = submit_cmd("w2", "t", 0, &[]);
        match field {
            "id" => c.id = s(value),
            "type" => c.kind = s(value),
            "key" => c.idempotency_key = s(value),
            "payload" => c.payload = s(value),
            "requires" => c.requires = vec![s(value)],
            _ => unreachable!(),
        }
        bad_submits.push(Command::Submit(c));
    }
    let mut too_many_requires = submit_cmd("w2", "t", 0, &[]);
    too_many_requires.requires = many.clone();
    bad_submits.push(Command::Submit(too_many_requires));

    let mut cmds = bad_submits;
    cmds.extend([
        claim_cmd("a1", &[], &[], 0, 1_000, 1_000),
        claim_cmd("a1", &[], &[], APPLY_LIMITS.max_claim + 1, 1_000, 1_000),
        claim_cmd("a1", &[], &[], 1, 0, 1_000),
        claim_cmd("", &[], &[], 1, 1_000, 1_000),
        claim_cmd("a 1", &[], &[], 1, 1_000, 1_000),
        claim_cmd("a1", &["bad kind"], &[], 1, 1_000, 1_000),
        claim_cmd("a1", &[], &["bad cap"], 1, 1_000, 1_000),
        Command::Claim(Claim {
            agent: s("a1"),
            kinds: vec![],
            capabilities: many.clone(),
            max: 1,
            lease_ms: 1_000,
            now: 1_000,
        }),
        renew_cmd("", &[t], None, 1_000),
        Command::Renew(Renew {
            agent: s("a1"),
            tokens: vec![t],
            progress: Some("p".repeat(APPLY_LIMITS.max_payload_bytes + 1)),
            now: 1_000,
        }),
        step_cmd("w1", t, "", 1_000),
        step_cmd("w1", t, "bad step", 1_000),
        Command::StepDone(StepDone {
            id: s("w1"),
            token: t,
            step: s("s"),
            outcome: s("nope"),
            now: 1_000,
        }),
        Command::Complete(Complete {
            id: s("w1"),
            token: t,
            result: s("{not json"),
            now: 1_000,
        }),
        complete_cmd("bad id", t, 1_000),
        Command::Fail(Fail {
            id: s("w1"),
            token: t,
            error: "e".repeat(APPLY_LIMITS.max_payload_bytes + 1),
            retry: true,
            now: 1_000,
        }),
        release_cmd("", t, 1_000),
        handoff_cmd("w1", t, "", 1_000),
        handoff_cmd("w1", t, "bad agent", 1_000),
        cancel_cmd("", 1_000),
        Command::Cancel(Cancel {
            id: s("w1"),
            reason: "r".repeat(APPLY_LIMITS.max_payload_bytes + 1),
            now: 1_000,
        }),
    ]);

    for cmd in cmds {
        let shown = format!("{cmd:?}");
        let shown = &shown[..shown.len().min(200)];
        let err = refused(&mut st, cmd);
        assert!(
            matches!(err, ClaimError::Invalid { .. }),
            "{shown}: expected Invalid, got {err:?}"
        );
    }
    // Still held by a1 under the same token, clock unchanged.
    assert_eq!(st.get("w1").unwrap().current_token(), Some(t));
    assert_eq!(st.clock(), 1_000);
}

#[test]
fn names_at_the_limit_are_accepted() {
    let mut st = State::new();
    let id = "a".repeat(APPLY_LIMITS.max_name_len);
    let mut c = submit_cmd(&id, "k-_.:/@9", 0, &[]);
    c.payload = s(r#"{"nested":[1,2,{"x":null}]}"#);
    apply(&mut st, Command::Submit(c)).unwrap();
    assert!(st.get(&id).is_some());
}

#[test]
fn edge_limits_are_tighter_than_apply_limits() {
    let edge = Limits::default();
    assert!(edge.max_name_len <= APPLY_LIMITS.max_name_len);
    assert!(edge.max_payload_bytes <= APPLY_LIMITS.max_payload_bytes);
    assert!(edge.max_claim <= APPLY_LIMITS.max_claim);
    assert!(edge.max_capabilities <= APPLY_LIMITS.max_capabilities);
    let name = "n".repeat(edge.max_name_len + 1);
    assert!(
        edge.check(&Command::Cancel(Cancel {
            id: name.clone(),
            reason: String::new(),
            now: 0,
        }))
        .is_err()
    );
    assert!(
        APPLY_LIMITS
            .check(&Command::Cancel(Cancel {
                id: name,
                reason: String::new(),
                now: 0,
            }))
            .is_ok()
    );
    // Batches do not nest, at the edge as in apply().
    let nested = Command::Batch(vec![
        Command::Tick { now: 1 },
        Command::Batch(vec![Command::Tick { now: 1 }]),
    ]);
    for limits in [edge, APPLY_LIMITS] {
        assert!(matches!(
            limits.check(&nested),
            Err(ClaimError::Invalid { field, .. }) if field == "batch"
        ));
    }
    // A batch is checked entry by entry.
    assert!(
        edge.check(&Command::Batch(vec![
            Command::Tick { now: 1 },
            claim_cmd("a1", &[], &[], 0, 1, 1),
        ]))
        .is_err()
    );
}

// ---------------------------------------------------------------- snapshots and misc

#[test]
fn snapshot_round_trips() {
    let mut st = State::new();
    let mut keyed = submit_cmd("w0", "t", 2, &["gpu"]);
    keyed.idempotency_key = s("k0");
    apply(&mut st, Command::Submit(keyed)).unwrap();
    for i in 1..5 {
        submit(&mut st, &format!("w{i}"), "t", i, &[]);
    }
    let got = claim(&mut st, "a1", 3, 1_000, 1_000);
    let t0 = got[0].lease.as_ref().unwrap().token;
    apply(&mut st, step_cmd(&got[0].id, t0, "s1", 1_100)).unwrap();
    apply(&mut st, renew_cmd("a1", &[], Some("p \"quoted\" ✓"), 1_200)).unwrap();
    apply(
        &mut st,
        complete_cmd(&got[1].id, got[1].lease.as_ref().unwrap().token, 1_300),
    )
    .unwrap();
    apply(&mut st, cancel_cmd("w1", 1_400)).unwrap();

    let bytes = st.to_snapshot().unwrap();
    let back = State::from_snapshot(&bytes).unwrap();
    assert_eq!(back, st);

    // The restored state behaves the same.
    let mut a = st.clone();
    let mut b = back;
    for cmd in [
        Command::Tick { now: 5_000 },
        claim_cmd("a2", &[], &["gpu"], 10, 1_000, 5_000),
    ] {
        assert_eq!(apply(&mut a, cmd.clone()), apply(&mut b, cmd));
    }
    assert_eq!(a, b);

    assert!(State::from_snapshot(b"not a snapshot").is_err());
}

#[test]
fn command_names() {
    assert_eq!(Command::Tick { now: 0 }.name(), "tick");
    assert_eq!(
        Command::LeaderTookOffice { now: 0 }.to_string(),
        "leader_took_office"
    );
    assert_eq!(
        Command::Batch(vec![Command::Tick { now: 0 }, Command::Tick { now: 1 }]).to_string(),
        "batch(2)"
    );
    assert_eq!(cancel_cmd("w1", 0).to_string(), "cancel");
}

// --- workflows: cancel as a request, events, node registry -----------------

#[test]
fn cancel_of_a_running_workflow_is_a_request_the_holder_ends_as_cancelled() {
    let mut st = State::new();
    submit(&mut st, "wf", "workflow", 0, &[]);
    let token = claim(&mut st, "node-1", 1, 10_000, 1_000)[0].token;
    apply(&mut st, step_cmd("wf", token, "a", 1_100)).unwrap();
    let after = item(apply(&mut st, cancel_cmd("wf", 1_200)).unwrap());
    assert_eq!(
        after.status,
        Status::Claimed,
        "the holder still owns it to undo"
    );
    assert!(after.cancel_requested().is_some());
    // The holder may still checkpoint its undo, then ends the item.
    apply(&mut st, step_cmd("wf", token, "a", 1_300)).unwrap();
    let done = item(apply(&mut st, fail_cmd("wf", token, true, 1_400)).unwrap());
    assert_eq!(done.status, Status::Cancelled);
    assert!(done.lease.is_none());
}

#[test]
fn cancel_of_a_pending_plain_task_or_untouched_workflow_is_immediate() {
    let mut st = State::new();
    submit(&mut st, "t", "task", 0, &[]);
    submit(&mut st, "wf", "workflow", 0, &[]);
    assert_eq!(
        item(apply(&mut st, cancel_cmd("t", 1)).unwrap()).status,
        Status::Cancelled
    );
    assert_eq!(
        item(apply(&mut st, cancel_cmd("wf", 1)).unwrap()).status,
        Status::Cancelled
    );
}

#[test]
fn cancel_requested_workflow_whose_attempts_run_out_ends_cancelled() {
    let mut st = State::new();
    let mut cmd = submit_cmd("wf", "workflow", 0, &[]);
    cmd.max_attempts = 1;
    apply(&mut st, Command::Submit(cmd)).unwrap();
    let granted = granted(apply(&mut st, claim_cmd("n1", &["workflow"], &[], 1, 100, 0)).unwrap());
    let token = granted[0].token;
    apply(&mut st, step_cmd("wf", token, "a", 10)).unwrap();
    apply(&mut st, cancel_cmd("wf", 20)).unwrap();
    apply(&mut st, Command::Tick { now: 5_000 }).unwrap();
    assert_eq!(st.get("wf").unwrap().status, Status::Cancelled);
}

#[test]
fn events_tell_the_story_in_order() {
    let mut st = State::new();
    submit(&mut st, "w", "task", 0, &[]);
    let t1 = claim(&mut st, "a1", 1, 100, 10)[0].token;
    apply(&mut st, step_cmd("w", t1, "s1", 20)).unwrap();
    let t2 = item(apply(&mut st, handoff_cmd("w", t1, "a2", 30)).unwrap()).token;
    apply(&mut st, Command::Tick { now: 5_000 }).unwrap();
    let t3 = claim(&mut st, "a3", 1, 100, 5_001)[0].token;
    apply(&mut st, complete_cmd("w", t3, 5_002)).unwrap();
    let kinds: Vec<&str> = st
        .get("w")
        .unwrap()
        .events()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "submitted",
            "claimed",
            "step",
            "handed_off",
            "expired",
            "claimed",
            "completed"
        ]
    );
    let ev: Vec<_> = st.get("w").unwrap().events().collect();
    assert_eq!(ev[3].agent.as_deref(), Some("a2"));
    assert_eq!(ev[3].token(), Some(t2));
    assert_eq!(ev[4].token(), Some(t2));
    assert_eq!(
        ev[2].journal_index(),
        Some(0),
        "step events point into the journal"
    );
}

#[test]
fn register_node_records_and_updates_a_node() {
    let mut st = State::new();
    let reg = |caps: &[&str], now| {
        Command::RegisterNode(swarm_claims::command::RegisterNode {
            agent: s("node-3"),
            node_id: 3,
            addr: s("127.0.0.1:7103"),
            capabilities: strings(caps),
            capacity: 4,
            now,
        })
    };
    apply(&mut st, reg(&["gpu"], 5)).unwrap();
    apply(&mut st, reg(&["gpu", "exec"], 9)).unwrap();
    let nodes: Vec<_> = st.nodes().collect();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].capabilities, strings(&["gpu", "exec"]));
    assert_eq!(nodes[0].registered_at, 5);
}

#[test]
fn completed_and_step_events_name_the_holder_and_token() {
    let mut st = State::new();
    submit(&mut st, "w", "task", 0, &[]);
    let t = claim(&mut st, "a1", 1, 10_000, 1_000)[0].token;
    apply(&mut st, step_cmd("w", t, "s", 1_001)).unwrap();
    apply(&mut st, complete_cmd("w", t, 1_002)).unwrap();
    let ev: Vec<_> = st.get("w").unwrap().events().collect();
    let step = ev.iter().find(|e| e.kind.as_str() == "step").unwrap();
    let done = ev.iter().find(|e| e.kind.as_str() == "completed").unwrap();
    assert_eq!((step.agent.as_deref(), step.token()), (Some("a1"), Some(t)));
    assert_eq!((done.agent.as_deref(), done.token()), (Some("a1"), Some(t)));
}
