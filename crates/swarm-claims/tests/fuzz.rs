//! Edge fuzzing: commands built from arbitrary input, the kind a hostile or
//! broken client could get proposed (any text, any number, batches that nest,
//! names past every limit). `apply()` must never panic, must refuse with an
//! error that says which field is wrong and why, must refuse exactly what the
//! limits refuse, and must stay deterministic: two replicas that apply the same
//! entries stay equal, through a snapshot too.
//!
//! `properties.rs` walks meaningful sequences over a small universe; this file
//! throws everything else at the state machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::collection::vec;
use proptest::prelude::*;
use swarm_claims::command::{
    Cancel, Claim, Compact, Complete, CreateSchedule, DeleteLimit, DeleteSchedule, Fail,
    FireSchedule, Handoff, PauseSchedule, RegisterNode, Release, Renew, Retry, SetLimit, StepDone,
    Submit, SubmitControl,
};
use swarm_claims::{
    APPLY_LIMITS, ClaimError, Command, Overlap, Rate, Response, ScheduleSpec, State, apply,
};

/// Text: mostly names that collide (so commands meet the items others made),
/// else anything: empty, control characters, any Unicode, past the name limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["w1", "w2", "a1", "a2", "task", "gpu", "k1"])
            .prop_map(str::to_string),
        1 => Just(String::new()),
        2 => any::<String>(),
        1 => "[\\x00-\\x1f ]{0,4}",
        1 => (200usize..300).prop_map(|n| "n".repeat(n)),
    ]
}

/// Payload-like text: JSON, or not.
fn json() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("{\"n\":1}".to_string()),
        1 => Just("null".to_string()),
        1 => any::<String>(),
        1 => "\\{\"[a-z]{0,3}\": ?[0-9\\[\\]\"]{0,5}".prop_map(|s| s),
    ]
}

/// Numbers at the edges as well as in between.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..10_000,
        1 => Just(0),
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..4)
}

fn command() -> impl Strategy<Value = Command> {
    let leaf = prop_oneof![
        (
            text(),
            text(),
            text(),
            any::<i32>(),
            texts(),
            json(),
            any::<u32>(),
            number()
        )
            .prop_map(
                |(id, idempotency_key, kind, priority, requires, payload, max_attempts, now)| {
                    Command::Submit(Submit {
                        id,
                        idempotency_key,
                        kind,
                        priority,
                        requires,
                        payload,
                        max_attempts,
                        now,
                    })
                }
            ),
        (text(), texts(), texts(), any::<u32>(), number(), number()).prop_map(
            |(agent, kinds, capabilities, max, lease_ms, now)| {
                Command::Claim(Claim {
                    agent,
                    kinds,
                    capabilities,
                    max: max % 20_000,
                    lease_ms,
                    now,
                })
            }
        ),
        (
            text(),
            vec(number(), 0..4),
            proptest::option::of(json()),
            number()
        )
            .prop_map(|(agent, tokens, progress, now)| Command::Renew(Renew {
                agent,
                tokens,
                progress,
                now,
            })),
        (text(), number(), text(), json(), number()).prop_map(|(id, token, step, outcome, now)| {
            Command::StepDone(StepDone {
                id,
                token,
                step,
                outcome,
                now,
            })
        }),
        (text(), number(), json(), number()).prop_map(|(id, token, result, now)| {
            Command::Complete(Complete {
                id,
                token,
                result,
                now,
            })
        }),
        (text(), number(), text(), any::<bool>(), number()).prop_map(
            |(id, token, error, retry, now)| Command::Fail(Fail {
                id,
                token,
                error,
                retry,
                now,
            })
        ),
        (text(), number(), number()).prop_map(|(id, token, now)| Command::Release(Release {
            id,
            token,
            now
        })),
        (text(), number(), text(), number()).prop_map(|(id, token, to_agent, now)| {
            Command::Handoff(Handoff {
                id,
                token,
                to_agent,
                now,
            })
        }),
        (text(), text(), number()).prop_map(|(id, reason, now)| Command::Cancel(Cancel {
            id,
            reason,
            now
        })),
        (text(), number(), text(), texts(), any::<u32>(), number()).prop_map(
            |(agent, node_id, addr, capabilities, capacity, now)| {
                Command::RegisterNode(RegisterNode {
                    agent,
                    node_id,
                    addr,
                    capabilities,
                    capacity,
                    now,
                })
            }
        ),
        number().prop_map(|now| Command::Tick { now }),
        number().prop_map(|now| Command::LeaderTookOffice { now }),
        (number(), any::<u32>(), number())
            .prop_map(|(before, max, now)| Command::Compact(Compact { before, max, now })),
        (text(), text(), json(), number(), number(), text()).prop_map(
            |(id, kind, payload, not_before, delay_ms, concurrency_key)| {
                Command::SubmitWith(
                    Submit {
                        id,
                        idempotency_key: String::new(),
                        kind,
                        priority: 0,
                        requires: vec![],
                        payload,
                        max_attempts: 0,
                        now: not_before / 2,
                    },
                    SubmitControl {
                        not_before,
                        delay_ms,
                        concurrency_key,
                    },
                )
            }
        ),
        (
            text(),
            any::<u32>(),
            any::<Option<(u32, u64, u32)>>(),
            number()
        )
            .prop_map(|(key, max_running, rate, now)| Command::SetLimit(SetLimit {
                key,
                max_running,
                rate: rate.map(|(count, per_ms, burst)| Rate {
                    count,
                    per_ms,
                    burst
                }),
                now,
            })),
        (text(), number()).prop_map(|(key, now)| Command::DeleteLimit(DeleteLimit { key, now })),
        (text(), any::<bool>(), number()).prop_map(|(id, reset_attempts, now)| {
            Command::Retry(Retry {
                id,
                reset_attempts,
                now,
            })
        }),
        (text(), text(), json(), number(), number()).prop_map(
            |(name, cron, payload, next_fire, now)| Command::CreateSchedule(CreateSchedule {
                spec: ScheduleSpec {
                    name,
                    cron,
                    timezone: String::new(),
                    kind: "k".into(),
                    priority: 0,
                    requires: vec![],
                    payload,
                    max_attempts: 0,
                    concurrency_key: String::new(),
                    overlap: Overlap::Skip,
                },
                next_fire,
                now,
            })
        ),
        (text(), any::<bool>(), number(), number()).prop_map(|(name, paused, next_fire, now)| {
            Command::PauseSchedule(PauseSchedule {
                name,
                paused,
                next_fire,
                now,
            })
        }),
        (text(), number())
            .prop_map(|(name, now)| Command::DeleteSchedule(DeleteSchedule { name, now })),
        (text(), number(), number(), text(), any::<bool>(), number()).prop_map(
            |(name, fire_at, next_fire, item_id, manual, now)| {
                Command::FireSchedule(FireSchedule {
                    name,
                    fire_at,
                    next_fire,
                    item_id,
                    manual,
                    missed: 1,
                    now,
                })
            }
        ),
    ];
    // Batches, and batches in batches (which apply refuses).
    leaf.prop_recursive(2, 24, 6, |inner| vec(inner, 0..6).prop_map(Command::Batch))
}

/// Every refusal names what is wrong in words a person can act on.
fn says_why(e: &ClaimError) -> Result<(), TestCaseError> {
    let message = e.to_string();
    prop_assert!(
        message.trim().len() >= 8,
        "refusal {e:?} says too little: {message:?}"
    );
    if let ClaimError::Invalid { field, reason } = e {
        prop_assert!(!field.is_empty() && !reason.is_empty(), "{e:?}");
        prop_assert!(
            message.contains(field.as_str()),
            "{message:?} names no field"
        );
    }
    Ok(())
}

/// The refusals in a response, a batch's included.
fn refusals(result: &Result<Response, ClaimError>) -> Vec<&ClaimError> {
    match result {
        Err(e) => vec![e],
        Ok(Response::Batch(results)) => results.iter().flat_map(refusals).collect(),
        Ok(Response::Renewed { rejected, .. }) => rejected.iter().map(|(_, e)| e).collect(),
        Ok(_) => Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_commands_never_panic_and_every_refusal_says_why(
        cmds in vec(command(), 1..24),
    ) {
        let (mut a, mut b) = (State::new(), State::new());
        for cmd in cmds {
            let over_limits = match &cmd {
                Command::Batch(_) => None,
                one => Some(APPLY_LIMITS.check(one).is_err()),
            };
            let before = a.clone();
            let got = apply(&mut a, cmd.clone());
            // Deterministic: a second replica answers and ends the same.
            prop_assert_eq!(&apply(&mut b, cmd), &got);
            for e in refusals(&got) {
                says_why(e)?;
            }
            match (over_limits, &got) {
                // What the limits refuse, apply refuses, and changes nothing.
                (Some(true), result) => {
                    prop_assert!(result.is_err(), "over the limits yet applied: {result:?}");
                    prop_assert_eq!(&a, &before);
                }
                // A refused single command leaves the state as it was.
                (Some(false), Err(_)) => prop_assert_eq!(&a, &before),
                _ => {}
            }
        }
        prop_assert_eq!(&a, &b);
        let restored = State::from_snapshot(&a.to_snapshot().unwrap()).unwrap();
        prop_assert_eq!(restored, a);
    }

    /// Snapshot bytes from anywhere (a torn file, another program) are
    /// refused with an error, never a panic.
    #[test]
    fn arbitrary_snapshot_bytes_are_refused_not_a_panic(
        bytes in vec(any::<u8>(), 0..512),
    ) {
        if let Err(e) = State::from_snapshot(&bytes) {
            says_why(&e)?;
        }
    }
}
