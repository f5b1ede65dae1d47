//! Run control in the state machine: pause and resume, signals, parked
//! workflow runs. Unit tests for each rule, and a property test over random
//! sequences: a paused item is never granted, a held item has no live
//! claim, a signal is kept once, and replicas (one restored from snapshots
//! along the way) stay equal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use swarm_claims::command::{Cancel, Claim, Park, Pause, Resume, Signal, StepDone, Submit};
use swarm_claims::{ClaimError, Command, Hold, Millis, Response, State, Status, WorkItem, apply};

fn submit(id: &str, kind: &str, now: Millis) -> Command {
    Command::Submit(Submit {
        id: id.into(),
        idempotency_key: String::new(),
        kind: kind.into(),
        priority: 0,
        requires: vec![],
        payload: "{}".into(),
        max_attempts: 3,
        now,
    })
}

fn claim(kind: &str, now: Millis) -> Command {
    Command::Claim(Claim {
        agent: "node-1".into(),
        kinds: vec![kind.into()],
        capabilities: vec![],
        max: 10,
        lease_ms: 10_000,
        now,
    })
}

fn granted(state: &mut State, cmd: Command) -> Vec<WorkItem> {
    match apply(state, cmd).unwrap() {
        Response::Granted(items) => items,
        other => panic!("{other:?}"),
    }
}

fn item(state: &mut State, cmd: Command) -> WorkItem {
    match apply(state, cmd).unwrap() {
        Response::Item(item) => item,
        other => panic!("{other:?}"),
    }
}

fn pause(id: &str, now: Millis) -> Command {
    Command::Pause(Pause {
        id: id.into(),
        reason: "by ops: the payments API is down".into(),
        now,
    })
}

fn resume(id: &str, now: Millis) -> Command {
    Command::Resume(Resume { id: id.into(), now })
}

fn signal(id: &str, name: &str, payload: &str, now: Millis) -> Command {
    Command::Signal(Signal {
        id: id.into(),
        name: name.into(),
        payload: payload.into(),
        now,
    })
}

fn park(id: &str, token: u64, hold: Hold, now: Millis) -> Command {
    Command::Park(Park {
        id: id.into(),
        token,
        hold,
        now,
    })
}

fn hold_of(state: &State, id: &str) -> Option<Hold> {
    state.get(id)?.control()?.hold.clone()
}

#[test]
fn a_paused_pending_item_is_not_granted_until_resumed() {
    let mut st = State::new();
    apply(&mut st, submit("p", "task", 1_000)).unwrap();
    let paused = item(&mut st, pause("p", 1_100));
    assert!(matches!(hold_of(&st, "p"), Some(Hold::Paused { .. })));
    assert_eq!(paused.events().last().unwrap().kind.as_str(), "paused");
    assert!(!st.has_claimable(&[], &[]));
    assert!(granted(&mut st, claim("task", 1_200)).is_empty());
    // Pausing again is a no-op; resuming twice is refused.
    apply(&mut st, pause("p", 1_250)).unwrap();
    item(&mut st, resume("p", 1_300));
    let err = apply(&mut st, resume("p", 1_350)).unwrap_err();
    assert!(matches!(err, ClaimError::WrongStatus { .. }), "{err}");
    assert_eq!(granted(&mut st, claim("task", 1_400)).len(), 1);
}

#[test]
fn a_claimed_task_cannot_be_paused_but_a_running_workflow_is_asked_to_stop() {
    let mut st = State::new();
    apply(&mut st, submit("t", "task", 1_000)).unwrap();
    granted(&mut st, claim("task", 1_000));
    let err = apply(&mut st, pause("t", 1_100)).unwrap_err();
    assert!(matches!(err, ClaimError::WrongStatus { .. }), "{err}");

    apply(&mut st, submit("w", "workflow", 1_000)).unwrap();
    let run = granted(&mut st, claim("workflow", 1_000)).remove(0);
    let asked = item(&mut st, pause("w", 1_200));
    assert_eq!(
        asked.status,
        Status::Claimed,
        "still running until it parks"
    );
    assert!(asked.control().unwrap().pause_requested.is_some());
    // The holder parks it at the next step boundary: no lease, no attempt.
    let parked = item(
        &mut st,
        park(
            "w",
            run.token,
            Hold::Paused {
                reason: "paused".into(),
                since: 1_300,
            },
            1_300,
        ),
    );
    assert_eq!(
        (parked.status, parked.lease.is_none(), parked.attempt),
        (Status::Pending, true, 0)
    );
    assert!(parked.control().unwrap().pause_requested.is_none());
    assert!(granted(&mut st, claim("workflow", 1_400)).is_empty());
    item(&mut st, resume("w", 1_500));
    assert_eq!(granted(&mut st, claim("workflow", 1_600)).len(), 1);
}

#[test]
fn a_signal_wakes_the_run_that_waits_for_it_and_is_kept_once() {
    let mut st = State::new();
    apply(&mut st, submit("w", "workflow", 1_000)).unwrap();
    let run = granted(&mut st, claim("workflow", 1_000)).remove(0);
    let waiting = Hold::Signal {
        name: "approve".into(),
        since: 1_100,
        timeout_at: 0,
    };
    item(&mut st, park("w", run.token, waiting, 1_100));
    assert!(st.get("w").unwrap().lease.is_none());
    assert!(granted(&mut st, claim("workflow", 50_000)).is_empty());
    item(&mut st, signal("w", "approve", r#"{"by":"alice"}"#, 60_000));
    assert_eq!(hold_of(&st, "w"), None);
    let again = granted(&mut st, claim("workflow", 60_100)).remove(0);
    assert_eq!(
        again.control().unwrap().signals,
        [("approve".to_string(), r#"{"by":"alice"}"#.to_string())]
    );
    // The same signal again answers as before; a different payload is refused.
    apply(&mut st, signal("w", "approve", r#"{"by":"alice"}"#, 60_200)).unwrap();
    let err = apply(&mut st, signal("w", "approve", r#"{"by":"bob"}"#, 60_300)).unwrap_err();
    assert!(matches!(err, ClaimError::Exists { .. }), "{err}");
}

#[test]
fn a_signal_before_its_step_is_kept_and_a_run_parking_for_it_goes_on_at_once() {
    let mut st = State::new();
    apply(&mut st, submit("w", "workflow", 1_000)).unwrap();
    item(&mut st, signal("w", "approve", "true", 1_050));
    let run = granted(&mut st, claim("workflow", 1_100)).remove(0);
    let waiting = Hold::Signal {
        name: "approve".into(),
        since: 1_200,
        timeout_at: 0,
    };
    item(&mut st, park("w", run.token, waiting, 1_200));
    assert_eq!(hold_of(&st, "w"), None);
    assert_eq!(granted(&mut st, claim("workflow", 1_300)).len(), 1);
}

#[test]
fn a_signal_times_out_and_a_sleep_wakes_at_their_time() {
    let mut st = State::new();
    apply(&mut st, submit("s", "workflow", 1_000)).unwrap();
    apply(&mut st, submit("t", "workflow", 1_000)).unwrap();
    let runs = granted(&mut st, claim("workflow", 1_000));
    let token = |id: &str| runs.iter().find(|r| &*r.id == id).unwrap().token;
    let sleep = Hold::Sleep {
        until: 5_000,
        since: 1_100,
    };
    item(&mut st, park("s", token("s"), sleep, 1_100));
    let wait = Hold::Signal {
        name: "approve".into(),
        since: 1_100,
        timeout_at: 8_000,
    };
    item(&mut st, park("t", token("t"), wait, 1_100));
    assert_eq!(st.next_due(), Some(5_000));
    assert!(granted(&mut st, claim("workflow", 4_999)).is_empty());
    apply(&mut st, Command::Tick { now: 5_000 }).unwrap();
    assert_eq!(hold_of(&st, "s"), None);
    assert_eq!(ids(&granted(&mut st, claim("workflow", 5_000))), ["s"]);
    apply(&mut st, Command::Tick { now: 8_000 }).unwrap();
    let woke = granted(&mut st, claim("workflow", 8_000)).remove(0);
    assert_eq!(&*woke.id, "t");
    assert!(
        woke.events()
            .any(|e| e.detail() == Some("signal \"approve\" timed out"))
    );
}

fn ids(items: &[WorkItem]) -> Vec<String> {
    items.iter().map(|i| i.id.to_string()).collect()
}

#[test]
fn a_cancel_of_a_parked_run_with_steps_done_makes_it_claimable_for_its_undo() {
    let mut st = State::new();
    apply(&mut st, submit("w", "workflow", 1_000)).unwrap();
    let run = granted(&mut st, claim("workflow", 1_000)).remove(0);
    apply(
        &mut st,
        Command::StepDone(StepDone {
            id: "w".into(),
            token: run.token,
            step: "charge".into(),
            outcome: "{}".into(),
            now: 1_050,
        }),
    )
    .unwrap();
    let paused = Hold::Paused {
        reason: "x".into(),
        since: 1_100,
    };
    item(&mut st, park("w", run.token, paused, 1_100));
    let cancelled = item(
        &mut st,
        Command::Cancel(Cancel {
            id: "w".into(),
            reason: "not needed".into(),
            now: 1_200,
        }),
    );
    assert!(cancelled.cancel_requested().is_some());
    assert_eq!(granted(&mut st, claim("workflow", 1_300)).len(), 1);
}

#[test]
fn a_finished_item_takes_no_pause_or_signal_and_a_stale_holder_cannot_park() {
    let mut st = State::new();
    apply(&mut st, submit("w", "workflow", 1_000)).unwrap();
    let run = granted(&mut st, claim("workflow", 1_000)).remove(0);
    let stale = park(
        "w",
        run.token + 1,
        Hold::Sleep {
            until: 9_000,
            since: 1_000,
        },
        1_100,
    );
    assert!(matches!(
        apply(&mut st, stale).unwrap_err(),
        ClaimError::StaleToken { .. }
    ));
    apply(
        &mut st,
        Command::Cancel(Cancel {
            id: "w".into(),
            reason: "r".into(),
            now: 1_200,
        }),
    )
    .unwrap();
    // Running with no steps done: the cancel asks the holder first.
    let before = st.clone();
    for cmd in [pause("nope", 1), signal("nope", "a", "1", 1)] {
        assert!(matches!(
            apply(&mut st, cmd).unwrap_err(),
            ClaimError::NotFound { .. }
        ));
    }
    assert_eq!(st, before);
}

// ---------------------------------------------------------------- properties

#[derive(Debug, Clone)]
enum Op {
    Submit,
    Claim,
    Pause(usize),
    Resume(usize),
    Signal(usize, usize),
    Park(usize, u8, Millis),
    Tick,
    Snapshot,
}

const NAMES: &[&str] = &["approve", "deploy"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Submit),
        3 => Just(Op::Claim),
        1 => any::<usize>().prop_map(Op::Pause),
        1 => any::<usize>().prop_map(Op::Resume),
        2 => (any::<usize>(), 0..NAMES.len()).prop_map(|(p, n)| Op::Signal(p, n)),
        3 => (any::<usize>(), 0u8..4, 0u64..3_000).prop_map(|(p, h, d)| Op::Park(p, h, d)),
        1 => Just(Op::Tick),
        1 => Just(Op::Snapshot),
    ]
}

fn make(state: &State, n: usize, now: Millis, op: &Op) -> Option<Command> {
    let all: Vec<String> = state.items().map(|i| i.id.to_string()).collect();
    let claimed: Vec<(String, u64)> = state
        .items()
        .filter_map(|i| Some((i.id.to_string(), i.current_token()?)))
        .collect();
    let any = |p: usize| all.get(p % all.len().max(1)).cloned();
    Some(match op {
        Op::Submit => submit(&format!("w{n}"), "workflow", now),
        Op::Claim => claim("workflow", now),
        Op::Pause(p) => pause(&any(*p)?, now),
        Op::Resume(p) => resume(&any(*p)?, now),
        Op::Signal(p, name) => signal(&any(*p)?, NAMES[*name], "1", now),
        Op::Park(p, h, d) => {
            let (id, token) = claimed.get(p % claimed.len().max(1))?.clone();
            let hold = match h {
                0 => Hold::Paused {
                    reason: "r".into(),
                    since: now,
                },
                1 => Hold::Sleep {
                    until: now + d,
                    since: now,
                },
                2 => Hold::Signal {
                    name: NAMES[(*d % 2) as usize].into(),
                    since: now,
                    timeout_at: now + d,
                },
                _ => Hold::Signal {
                    name: NAMES[(*d % 2) as usize].into(),
                    since: now,
                    timeout_at: 0,
                },
            };
            park(&id, token, hold, now)
        }
        Op::Tick => Command::Tick { now },
        Op::Snapshot => return None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn held_items_are_never_granted_and_replicas_agree(
        ops in proptest::collection::vec((0u64..900, op()), 1..100)
    ) {
        let mut a = State::new();
        let mut b = State::new();
        let mut now = 1_000;
        for (n, (dt, op)) in ops.iter().enumerate() {
            now += dt;
            if matches!(op, Op::Snapshot) {
                b = State::from_snapshot(&b.to_snapshot().unwrap()).unwrap();
                prop_assert_eq!(&a, &b);
                continue;
            }
            let Some(cmd) = make(&a, n, now, op) else { continue };
            let paused: Vec<String> = a
                .items()
                .filter(|i| matches!(i.control().and_then(|c| c.hold.as_ref()), Some(Hold::Paused { .. })))
                .map(|i| i.id.to_string())
                .collect();
            let out_a = apply(&mut a, cmd.clone());
            let out_b = apply(&mut b, cmd);
            prop_assert_eq!(&out_a, &out_b);
            prop_assert_eq!(&a, &b);
            // Every pending item is claimable, delayed, or held: none lost.
            prop_assert_eq!(a.check_placement(), Ok(()));
            if let Ok(Response::Granted(items)) = &out_a {
                for item in items {
                    prop_assert!(!paused.contains(&item.id.to_string()), "paused {} granted", item.id);
                }
            }
            for item in a.items() {
                let control = item.control();
                // A held item has no live claim.
                if control.is_some_and(|c| c.hold.is_some()) {
                    prop_assert!(item.lease.is_none(), "{} held and claimed", item.id);
                    prop_assert_eq!(item.status, Status::Pending);
                }
                // Each signal is kept once.
                if let Some(c) = control {
                    let mut names: Vec<&str> = c.signals.iter().map(|(n, _)| n.as_str()).collect();
                    let count = names.len();
                    names.sort_unstable();
                    names.dedup();
                    prop_assert_eq!(names.len(), count);
                }
            }
        }
    }
}

#[test]
fn a_pause_asked_of_a_run_wins_over_the_wait_it_parks_for_and_resume_frees_it() {
    let mut st = State::new();
    apply(&mut st, submit("w", "workflow", 1_000)).unwrap();
    let run = granted(&mut st, claim("workflow", 1_000)).remove(0);
    item(&mut st, pause("w", 1_100));
    let wait = Hold::Signal {
        name: "x".into(),
        since: 1_200,
        timeout_at: 0,
    };
    item(&mut st, park("w", run.token, wait, 1_200));
    assert!(matches!(hold_of(&st, "w"), Some(Hold::Paused { .. })));
    assert_eq!(st.check_placement(), Ok(()));
    item(&mut st, resume("w", 1_300));
    assert_eq!(st.check_placement(), Ok(()));
    assert_eq!(granted(&mut st, claim("workflow", 1_400)).len(), 1);
}

#[test]
fn a_pause_asked_of_a_run_whose_holder_died_holds_it_when_the_lease_expires() {
    let mut st = State::new();
    apply(&mut st, submit("w", "workflow", 1_000)).unwrap();
    granted(&mut st, claim("workflow", 1_000));
    item(&mut st, pause("w", 1_100));
    apply(&mut st, Command::Tick { now: 20_000 }).unwrap();
    assert!(matches!(hold_of(&st, "w"), Some(Hold::Paused { .. })));
    assert!(granted(&mut st, claim("workflow", 20_100)).is_empty());
    assert_eq!(st.check_placement(), Ok(()));
    item(&mut st, resume("w", 20_200));
    assert_eq!(granted(&mut st, claim("workflow", 20_300)).len(), 1);
}
