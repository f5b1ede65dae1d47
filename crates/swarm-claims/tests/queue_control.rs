//! Queue control in the state machine: delayed items, concurrency keys with
//! limits and rates, dead letters and retry, cron schedules. Unit tests for
//! each rule, and property tests over random sequences: a key never has
//! more live claims than its limit, grants never outrun the key's bucket
//! over any window, a delayed item is never granted before its time, and
//! replicas (and a replica restored from a snapshot) stay equal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use swarm_claims::command::{
    Claim, Complete, CreateSchedule, DeleteSchedule, Fail, FireSchedule, PauseSchedule, Release,
    Retry, SetLimit, Submit, SubmitControl,
};
use swarm_claims::{
    ClaimError, Command, Millis, Overlap, Rate, Response, ScheduleSpec, State, Status, WorkItem,
    apply,
};

fn submit(id: &str, key: &str, delay_ms: Millis, now: Millis) -> Command {
    Command::SubmitWith(
        Submit {
            id: id.into(),
            idempotency_key: String::new(),
            kind: "job".into(),
            priority: 0,
            requires: vec![],
            payload: "{}".into(),
            max_attempts: 2,
            now,
        },
        SubmitControl {
            not_before: 0,
            delay_ms,
            concurrency_key: key.into(),
        },
    )
}

fn claim(agent: &str, max: u32, now: Millis) -> Command {
    Command::Claim(Claim {
        agent: agent.into(),
        kinds: vec![],
        capabilities: vec![],
        max,
        lease_ms: 10_000,
        now,
    })
}

fn granted(state: &mut State, cmd: Command) -> Vec<WorkItem> {
    match apply(state, cmd).unwrap() {
        Response::Granted(items) => items,
        other => panic!("not a grant: {other:?}"),
    }
}

fn ids(items: &[WorkItem]) -> Vec<String> {
    items.iter().map(|i| i.id.to_string()).collect()
}

fn set_limit(key: &str, max_running: u32, rate: Option<Rate>, now: Millis) -> Command {
    Command::SetLimit(SetLimit {
        key: key.into(),
        max_running,
        rate,
        now,
    })
}

#[test]
fn a_delayed_item_is_claimable_from_its_time_on() {
    let mut st = State::new();
    apply(&mut st, submit("later", "", 5_000, 1_000)).unwrap();
    apply(&mut st, submit("now", "", 0, 1_000)).unwrap();
    assert_eq!(st.get("later").unwrap().not_before(), 6_000);
    assert_eq!(st.delayed_count(), 1);
    assert_eq!(st.next_due(), Some(6_000));
    assert_eq!(ids(&granted(&mut st, claim("a", 5, 2_000))), ["now"]);
    assert!(granted(&mut st, claim("a", 5, 5_999)).is_empty());
    // A tick at its time makes it claimable for a replica's check too.
    apply(&mut st, Command::Tick { now: 6_000 }).unwrap();
    assert!(st.has_claimable(&[], &[]));
    assert_eq!(st.next_due(), None);
    assert_eq!(ids(&granted(&mut st, claim("a", 5, 6_000))), ["later"]);
}

#[test]
fn an_absolute_time_and_a_delay_take_the_later() {
    let mut st = State::new();
    let mut cmd = submit("w", "", 1_000, 1_000);
    if let Command::SubmitWith(_, control) = &mut cmd {
        control.not_before = 10_000;
    }
    apply(&mut st, cmd).unwrap();
    assert_eq!(st.get("w").unwrap().not_before(), 10_000);
    // A time in the past is no delay at all.
    let mut past = submit("p", "", 0, 1_000);
    if let Command::SubmitWith(_, control) = &mut past {
        control.not_before = 500;
    }
    apply(&mut st, past).unwrap();
    assert_eq!(st.get("p").unwrap().not_before(), 0);
    assert_eq!(ids(&granted(&mut st, claim("a", 5, 1_000))), ["p"]);
}

#[test]
fn cancelling_a_delayed_item_takes_it_out_of_the_delayed_index() {
    let mut st = State::new();
    apply(&mut st, submit("later", "", 5_000, 1_000)).unwrap();
    apply(
        &mut st,
        Command::Cancel(swarm_claims::command::Cancel {
            id: "later".into(),
            reason: "no".into(),
            now: 1_500,
        }),
    )
    .unwrap();
    assert_eq!(st.delayed_count(), 0);
    assert_eq!(st.next_due(), None);
    assert!(granted(&mut st, claim("a", 5, 9_000)).is_empty());
}

#[test]
fn a_key_at_its_limit_is_passed_over_without_holding_up_other_work() {
    let mut st = State::new();
    apply(&mut st, set_limit("api", 2, None, 1_000)).unwrap();
    for i in 0..4 {
        apply(&mut st, submit(&format!("k{i}"), "api", 0, 1_000)).unwrap();
    }
    apply(&mut st, submit("free", "", 0, 1_000)).unwrap();
    let first = granted(&mut st, claim("a", 10, 1_000));
    assert_eq!(ids(&first), ["k0", "k1", "free"]);
    assert_eq!(st.counts().key("api").claimed, 2);
    assert_eq!(st.counts().key("api").pending, 2);
    assert!(granted(&mut st, claim("b", 10, 1_100)).is_empty());
    // A slot frees when a claim ends.
    apply(
        &mut st,
        Command::Complete(Complete {
            id: "k0".into(),
            token: first[0].token,
            result: "null".into(),
            now: 1_200,
        }),
    )
    .unwrap();
    assert_eq!(ids(&granted(&mut st, claim("b", 10, 1_300))), ["k2"]);
}

#[test]
fn a_rate_grants_its_burst_then_one_per_period() {
    let mut st = State::new();
    let rate = Rate {
        count: 1,
        per_ms: 1_000,
        burst: 2,
    };
    apply(&mut st, set_limit("llm", 0, Some(rate), 0)).unwrap();
    for i in 0..6 {
        apply(&mut st, submit(&format!("r{i}"), "llm", 0, 0)).unwrap();
    }
    assert_eq!(granted(&mut st, claim("a", 10, 0)).len(), 2);
    assert!(granted(&mut st, claim("a", 10, 999)).is_empty());
    assert_eq!(st.limit("llm").unwrap().next_token_at(), Some(1_000));
    assert_eq!(st.next_due(), Some(1_000));
    assert_eq!(granted(&mut st, claim("a", 10, 1_000)).len(), 1);
    // 2.5 seconds refill 2.5 tokens, but the bucket holds its burst, 2.
    assert_eq!(granted(&mut st, claim("a", 10, 3_500)).len(), 2);
    assert_eq!(st.limit("llm").unwrap().next_token_at(), Some(4_500));
    // Half a second later, half a token: none to grant yet.
    apply(&mut st, Command::Tick { now: 4_000 }).unwrap();
    assert!(granted(&mut st, claim("a", 10, 4_000)).is_empty());
    assert_eq!(st.limit("llm").unwrap().next_token_at(), Some(4_500));
}

#[test]
fn limits_are_refused_when_they_limit_nothing() {
    let mut st = State::new();
    let err = apply(&mut st, set_limit("k", 0, None, 0)).unwrap_err();
    assert!(matches!(err, ClaimError::Invalid { ref field, .. } if field == "limit"));
    let zero = Rate {
        count: 0,
        per_ms: 1_000,
        burst: 1,
    };
    let err = apply(&mut st, set_limit("k", 1, Some(zero), 0)).unwrap_err();
    assert!(matches!(err, ClaimError::Invalid { ref field, .. } if field == "rate"));
    assert_eq!(st, State::new());
}

fn fail(state: &mut State, id: &str, retry: bool, now: Millis) -> WorkItem {
    let token = state.get(id).unwrap().current_token().unwrap();
    match apply(
        state,
        Command::Fail(Fail {
            id: id.into(),
            token,
            error: format!("boom at {now}"),
            retry,
            now,
        }),
    )
    .unwrap()
    {
        Response::Item(item) => item,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_item_out_of_attempts_is_a_dead_letter_until_retried() {
    let mut st = State::new();
    apply(&mut st, submit("d", "", 0, 1_000)).unwrap();
    granted(&mut st, claim("a", 1, 1_000));
    assert_eq!(fail(&mut st, "d", true, 1_100).status, Status::Pending);
    granted(&mut st, claim("a", 1, 1_200));
    let dead = fail(&mut st, "d", true, 1_300);
    assert_eq!((dead.status, dead.dead_letter()), (Status::Failed, true));
    assert_eq!(st.counts().dead_letters(), 1);
    assert_eq!(dead.error(), Some("boom at 1300"));

    // Kept attempts: one more.
    let back = match apply(
        &mut st,
        Command::Retry(Retry {
            id: "d".into(),
            reset_attempts: false,
            now: 2_000,
        }),
    )
    .unwrap()
    {
        Response::Item(item) => item,
        other => panic!("{other:?}"),
    };
    assert_eq!((back.status, back.dead_letter()), (Status::Pending, false));
    assert_eq!((back.attempt, back.max_attempts), (2, 3));
    assert_eq!(st.counts().dead_letters(), 0);
    assert_eq!(back.holder_count(), 2, "history kept");
    assert_eq!(
        back.events().last().map(|e| e.kind.as_str()),
        Some("requeued")
    );
    assert_eq!(ids(&granted(&mut st, claim("b", 1, 2_100))), ["d"]);
    let dead = fail(&mut st, "d", true, 2_200);
    assert!(dead.dead_letter());

    // Reset attempts: the full count again.
    apply(
        &mut st,
        Command::Retry(Retry {
            id: "d".into(),
            reset_attempts: true,
            now: 3_000,
        }),
    )
    .unwrap();
    assert_eq!(st.get("d").unwrap().attempt, 0);
    assert_eq!(st.get("d").unwrap().control().unwrap().retries, 2);
    // Only a failed item is retried.
    let err = apply(
        &mut st,
        Command::Retry(Retry {
            id: "d".into(),
            reset_attempts: false,
            now: 3_100,
        }),
    )
    .unwrap_err();
    assert!(matches!(err, ClaimError::WrongStatus { .. }), "{err}");
}

#[test]
fn a_permanent_failure_is_not_a_dead_letter() {
    let mut st = State::new();
    apply(&mut st, submit("p", "", 0, 1_000)).unwrap();
    granted(&mut st, claim("a", 1, 1_000));
    let failed = fail(&mut st, "p", false, 1_100);
    assert_eq!(
        (failed.status, failed.dead_letter()),
        (Status::Failed, false)
    );
}

#[test]
fn an_expired_last_attempt_is_a_dead_letter() {
    let mut st = State::new();
    apply(&mut st, submit("e", "", 0, 1_000)).unwrap();
    granted(&mut st, claim("a", 1, 1_000));
    apply(&mut st, Command::Tick { now: 11_000 }).unwrap();
    granted(&mut st, claim("a", 1, 11_000));
    apply(&mut st, Command::Tick { now: 21_000 }).unwrap();
    let item = st.get("e").unwrap();
    assert_eq!((item.status, item.dead_letter()), (Status::Failed, true));
}

fn spec(name: &str, overlap: Overlap) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        cron: "* * * * *".into(),
        timezone: "UTC".into(),
        kind: "report".into(),
        priority: 0,
        requires: vec![],
        payload: r#"{"r":1}"#.into(),
        max_attempts: 0,
        concurrency_key: String::new(),
        overlap,
    }
}

fn fire(name: &str, fire_at: Millis, next_fire: Millis, id: &str) -> Command {
    Command::FireSchedule(FireSchedule {
        name: name.into(),
        fire_at,
        next_fire,
        item_id: id.into(),
        manual: false,
        missed: 0,
        now: fire_at + 5,
    })
}

fn fired(state: &mut State, cmd: Command) -> (swarm_claims::Schedule, Option<WorkItem>) {
    match apply(state, cmd).unwrap() {
        Response::Fired { schedule, item } => (*schedule, item),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_schedule_fires_once_per_fire_time() {
    let mut st = State::new();
    let create = Command::CreateSchedule(CreateSchedule {
        spec: spec("every-minute", Overlap::Allow),
        next_fire: 60_000,
        now: 1_000,
    });
    apply(&mut st, create.clone()).unwrap();
    // Created again the same: the same schedule.
    apply(&mut st, create).unwrap();
    let (schedule, item) = fired(&mut st, fire("every-minute", 60_000, 120_000, "f1"));
    let item = item.unwrap();
    assert_eq!(&*item.idempotency_key, "schedule:every-minute:60000");
    assert_eq!((schedule.fires, schedule.next_fire), (1, 120_000));
    // The same fire again (a deposed leader's, say): nothing.
    let (again, none) = fired(&mut st, fire("every-minute", 60_000, 120_000, "f2"));
    assert!(none.is_none());
    assert_eq!(again.fires, 1);
    assert!(st.get("f2").is_none());
    let (_, second) = fired(&mut st, fire("every-minute", 120_000, 180_000, "f3"));
    assert!(second.is_some());
    assert_eq!(st.len(), 2);
    // A different schedule by the same name is refused.
    let mut other = spec("every-minute", Overlap::Skip);
    other.cron = "0 * * * *".into();
    let err = apply(
        &mut st,
        Command::CreateSchedule(CreateSchedule {
            spec: other,
            next_fire: 1,
            now: 1,
        }),
    )
    .unwrap_err();
    assert!(matches!(err, ClaimError::Exists { .. }), "{err}");
}

#[test]
fn overlap_skip_skips_while_the_last_item_runs_and_pause_stops_fires() {
    let mut st = State::new();
    apply(
        &mut st,
        Command::CreateSchedule(CreateSchedule {
            spec: spec("s", Overlap::Skip),
            next_fire: 60_000,
            now: 1_000,
        }),
    )
    .unwrap();
    assert!(fired(&mut st, fire("s", 60_000, 120_000, "a")).1.is_some());
    let (schedule, skipped) = fired(&mut st, fire("s", 120_000, 180_000, "b"));
    assert!(skipped.is_none());
    assert_eq!(
        (schedule.fires, schedule.skipped, schedule.next_fire),
        (1, 1, 180_000)
    );
    let pause = |paused, next_fire| {
        Command::PauseSchedule(PauseSchedule {
            name: "s".into(),
            paused,
            next_fire,
            now: 130_000,
        })
    };
    apply(&mut st, pause(true, 0)).unwrap();
    assert!(fired(&mut st, fire("s", 180_000, 240_000, "c")).1.is_none());
    assert_eq!(st.schedule("s").unwrap().next_fire, 180_000);
    // Resumed: from the next fire time after now.
    apply(&mut st, pause(false, 600_000)).unwrap();
    assert_eq!(st.schedule("s").unwrap().next_fire, 600_000);
    // A trigger by hand fires now (the overlap rule holds: "a" is pending).
    let manual = Command::FireSchedule(FireSchedule {
        name: "s".into(),
        fire_at: 0,
        next_fire: 0,
        item_id: "m".into(),
        manual: true,
        missed: 0,
        now: 200_000,
    });
    assert!(fired(&mut st, manual).1.is_none());
    apply(
        &mut st,
        Command::DeleteSchedule(DeleteSchedule {
            name: "s".into(),
            now: 1,
        }),
    )
    .unwrap();
    let err = apply(&mut st, fire("s", 600_000, 660_000, "d")).unwrap_err();
    assert!(matches!(err, ClaimError::Unknown { .. }), "{err}");
}

#[test]
fn a_snapshot_keeps_limits_buckets_schedules_and_delays() {
    let mut st = State::new();
    let rate = Rate {
        count: 2,
        per_ms: 1_000,
        burst: 3,
    };
    apply(&mut st, set_limit("k", 1, Some(rate), 0)).unwrap();
    apply(&mut st, submit("x", "k", 0, 100)).unwrap();
    apply(&mut st, submit("y", "k", 9_000, 100)).unwrap();
    granted(&mut st, claim("a", 1, 200));
    apply(
        &mut st,
        Command::CreateSchedule(CreateSchedule {
            spec: spec("s", Overlap::Skip),
            next_fire: 60_000,
            now: 300,
        }),
    )
    .unwrap();
    let back = State::from_snapshot(&st.to_snapshot().unwrap()).unwrap();
    assert_eq!(back, st);
    assert_eq!(back.delayed_count(), 1);
    assert_eq!(back.limit("k"), st.limit("k"));
    assert_eq!(back.counts().key("k"), st.counts().key("k"));
}

// ---------------------------------------------------------------- properties

const KEYS: &[&str] = &["", "k0", "k1"];

#[derive(Debug, Clone)]
enum Op {
    Submit { key: usize, delay: Millis },
    Claim { agent: usize, max: u32 },
    Complete { pick: usize },
    Fail { pick: usize, retry: bool },
    Release { pick: usize },
    Retry { pick: usize, reset: bool },
    Tick,
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..KEYS.len(), prop_oneof![Just(0u64), 0u64..3_000])
            .prop_map(|(key, delay)| Op::Submit { key, delay }),
        4 => (0..3usize, 1u32..4).prop_map(|(agent, max)| Op::Claim { agent, max }),
        2 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, retry)| Op::Fail { pick, retry }),
        1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, reset)| Op::Retry { pick, reset }),
        1 => Just(Op::Tick),
        1 => Just(Op::Snapshot),
    ]
}

/// The limits every run starts with: k0 capped at 2 running, k1 at 3 per
/// second with a burst of 2.
fn limits() -> [(Command, Option<Rate>, u32); 2] {
    let k1 = Rate {
        count: 3,
        per_ms: 1_000,
        burst: 2,
    };
    [
        (set_limit("k0", 2, None, 0), None, 2),
        (set_limit("k1", 0, Some(k1), 0), Some(k1), 0),
    ]
}

fn live(state: &State) -> Vec<(String, u64)> {
    state
        .items()
        .filter(|i| i.status == Status::Claimed)
        .map(|i| (i.id.to_string(), i.token))
        .collect()
}

fn make(state: &State, n: usize, now: Millis, op: &Op) -> Option<Command> {
    let live = live(state);
    let pick = |p: usize| live.get(p % live.len().max(1)).cloned();
    Some(match op {
        Op::Submit { key, delay } => submit(&format!("w{n}"), KEYS[*key], *delay, now),
        Op::Claim { agent, max } => claim(&format!("a{agent}"), *max, now),
        Op::Complete { pick: p } => {
            let (id, token) = pick(*p)?;
            Command::Complete(Complete {
                id,
                token,
                result: "null".into(),
                now,
            })
        }
        Op::Fail { pick: p, retry } => {
            let (id, token) = pick(*p)?;
            Command::Fail(Fail {
                id,
                token,
                error: "x".into(),
                retry: *retry,
                now,
            })
        }
        Op::Release { pick: p } => {
            let (id, token) = pick(*p)?;
            Command::Release(Release { id, token, now })
        }
        Op::Retry { pick: p, reset } => {
            let failed: Vec<String> = state
                .items()
                .filter(|i| i.status == Status::Failed)
                .map(|i| i.id.to_string())
                .collect();
            let id = failed.get(p % failed.len().max(1))?.clone();
            Command::Retry(Retry {
                id,
                reset_attempts: *reset,
                now,
            })
        }
        Op::Tick => Command::Tick { now },
        Op::Snapshot => return None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn limits_rates_and_delays_hold_and_replicas_agree(
        ops in proptest::collection::vec((0u64..700, op()), 1..120)
    ) {
        let mut a = State::new();
        let mut b = State::new();
        let rules = limits();
        for (cmd, _, _) in &rules {
            apply(&mut a, cmd.clone()).unwrap();
            apply(&mut b, cmd.clone()).unwrap();
        }
        let mut now: Millis = 0;
        // Grant times per key, for the rate check.
        let mut grants: BTreeMap<String, Vec<Millis>> = BTreeMap::new();
        for (n, (dt, op)) in ops.iter().enumerate() {
            now += dt;
            if matches!(op, Op::Snapshot) {
                b = State::from_snapshot(&b.to_snapshot().unwrap()).unwrap();
                prop_assert_eq!(&a, &b);
                continue;
            }
            let Some(cmd) = make(&a, n, now, op) else { continue };
            let out_a = apply(&mut a, cmd.clone());
            let out_b = apply(&mut b, cmd);
            prop_assert_eq!(&out_a, &out_b);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.check_placement(), Ok(()));
            if let Ok(Response::Granted(items)) = out_a {
                for item in items {
                    // Never before its time.
                    prop_assert!(item.not_before() <= now, "{} granted at {now}", item.id);
                    if let Some(key) = item.concurrency_key() {
                        grants.entry(key.to_string()).or_default().push(now);
                    }
                }
            }
            // A key never has more live claims than its cap.
            for (_, _, cap) in rules.iter().filter(|r| r.2 > 0) {
                prop_assert!(a.counts().key("k0").claimed <= u64::from(*cap));
            }
            let counted = a.items().filter(|i| i.status == Status::Claimed
                && i.concurrency_key().is_some_and(|k| &**k == "k0")).count() as u64;
            prop_assert_eq!(counted, a.counts().key("k0").claimed);
        }
        // Over any window of grants, no more than the burst plus what the
        // rate refilled in that window.
        if let Some(rate) = rules[1].1 {
            let times = grants.get("k1").cloned().unwrap_or_default();
            for i in 0..times.len() {
                for j in i..times.len() {
                    let window = times[j] - times[i];
                    let allowed = u64::from(rate.burst) + window * u64::from(rate.count) / rate.per_ms;
                    prop_assert!((j - i + 1) as u64 <= allowed,
                        "{} grants in {window}ms: {times:?}", j - i + 1);
                }
            }
        }
    }
}
