//! Property tests: random command sequences over a small universe of ids,
//! agents, types and capabilities (so that collisions happen), with a clock
//! that mostly moves forward but sometimes goes back, and tokens drawn from
//! the ones granted so far plus random ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use swarm_claims::command::{
    Cancel, Claim, Compact, Complete, Fail, Handoff, Release, Renew, StepDone, Submit,
};
use swarm_claims::{
    ClaimError, Command, FencingToken, ITEM_BOUNDS, MAX_COMPACT_BATCH, Millis, Response, State,
    Status, WorkItem, apply,
};

const IDS: &[&str] = &["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7"];
const AGENTS: &[&str] = &["a0", "a1", "a2"];
const KINDS: &[&str] = &["k0", "k1"];
const CAPS: &[&str] = &["c0", "c1"];
const KEYS: &[&str] = &["", "", "key0", "key1"];

// ---------------------------------------------------------------- abstract commands

/// How a command picks the fencing token it presents.
#[derive(Debug, Clone)]
enum Tok {
    /// The item's current token (or, with no live claim, the last one it
    /// had); for a renew, one of the agent's live tokens.
    Current(u8),
    /// One of the tokens granted so far.
    Seen(u16),
    /// A small number, granted or not.
    Random(u64),
    Huge,
}

/// Which item a command names: mostly one that exists, sometimes any id of
/// the universe (which may not exist yet).
#[derive(Debug, Clone)]
enum Id {
    Existing(u8),
    Any(usize),
}

/// A name from the universe, or (rarely) one `apply` must refuse.
#[derive(Debug, Clone)]
enum Name {
    Pick(usize),
    Bad,
}

#[derive(Debug, Clone)]
enum Op {
    Submit {
        id: Name,
        key: usize,
        kind: usize,
        priority: i32,
        requires: Vec<usize>,
        payload_ok: bool,
        max_attempts: u32,
    },
    Claim {
        agent: Name,
        kinds: Vec<usize>,
        caps: Vec<usize>,
        max: u32,
        lease_ms: Millis,
    },
    Renew {
        agent: usize,
        tokens: Vec<Tok>,
        progress: Option<u8>,
    },
    StepDone {
        id: Id,
        tok: Tok,
        step: u8,
    },
    Complete {
        id: Id,
        tok: Tok,
        result_ok: bool,
    },
    Fail {
        id: Id,
        tok: Tok,
        retry: bool,
    },
    Release {
        id: Id,
        tok: Tok,
    },
    Handoff {
        id: Id,
        tok: Tok,
        to: Name,
    },
    Cancel {
        id: Id,
    },
    Tick,
    LeaderTookOffice,
    /// Retention: removes what ended `age` ms or more before now, at most
    /// `max` items (0 and too many must be refused).
    Compact {
        age: Millis,
        max: u32,
    },
    Batch(Vec<(i64, Op)>),
    /// A batch inside a batch: `apply` must refuse it.
    Nested,
}

fn tok() -> impl Strategy<Value = Tok> {
    prop_oneof![
        6 => any::<u8>().prop_map(Tok::Current),
        3 => any::<u16>().prop_map(Tok::Seen),
        1 => (0u64..30).prop_map(Tok::Random),
        1 => Just(Tok::Huge),
    ]
}

fn name(n: usize) -> impl Strategy<Value = Name> {
    prop_oneof![
        20 => (0..n).prop_map(Name::Pick),
        1 => Just(Name::Bad),
    ]
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        4 => any::<u8>().prop_map(Id::Existing),
        1 => (0..IDS.len()).prop_map(Id::Any),
    ]
}

fn subset(n: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..n, 0..=n)
}

fn leaf_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (
            name(IDS.len()),
            0..KEYS.len(),
            0..KINDS.len(),
            -2i32..=2,
            prop_oneof![3 => Just(vec![]), 1 => subset(CAPS.len())],
            prop::bool::weighted(0.95),
            0u32..=3,
        )
            .prop_map(|(id, key, kind, priority, requires, payload_ok, max_attempts)| {
                Op::Submit { id, key, kind, priority, requires, payload_ok, max_attempts }
            }),
        5 => (
            name(AGENTS.len()),
            prop_oneof![2 => Just(vec![]), 1 => subset(KINDS.len())],
            prop_oneof![1 => Just(vec![]), 2 => subset(CAPS.len())],
            prop_oneof![20 => 1u32..=3, 1 => Just(0u32)],
            prop_oneof![
                3 => Just(1),
                6 => Just(500),
                6 => Just(2_000),
                6 => Just(10_000),
                1 => Just(0),
            ],
        )
            .prop_map(|(agent, kinds, caps, max, lease_ms)| Op::Claim {
                agent, kinds, caps, max, lease_ms,
            }),
        3 => (0..AGENTS.len(), prop::collection::vec(tok(), 0..3), prop::option::of(any::<u8>()))
            .prop_map(|(agent, tokens, progress)| Op::Renew { agent, tokens, progress }),
        2 => (id(), tok(), 0u8..3).prop_map(|(id, tok, step)| Op::StepDone { id, tok, step }),
        3 => (id(), tok(), prop::bool::weighted(0.95))
            .prop_map(|(id, tok, result_ok)| Op::Complete { id, tok, result_ok }),
        2 => (id(), tok(), any::<bool>()).prop_map(|(id, tok, retry)| Op::Fail { id, tok, retry }),
        2 => (id(), tok()).prop_map(|(id, tok)| Op::Release { id, tok }),
        2 => (id(), tok(), name(AGENTS.len()))
            .prop_map(|(id, tok, to)| Op::Handoff { id, tok, to }),
        1 => id().prop_map(|id| Op::Cancel { id }),
        3 => Just(Op::Tick),
        1 => Just(Op::LeaderTookOffice),
        2 => (
            prop_oneof![Just(0u64), 0u64..3_000, Just(Millis::MAX)],
            prop_oneof![8 => 1u32..4, 1 => Just(0u32), 1 => Just(MAX_COMPACT_BATCH + 1)],
        )
            .prop_map(|(age, max)| Op::Compact { age, max }),
    ]
}

/// Time steps: mostly forward, sometimes back.
fn dt() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 0i64..1_500,
        1 => -3_000i64..0,
        1 => Just(0i64),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let inner = prop_oneof![
        15 => (dt(), leaf_op()),
        1 => dt().prop_map(|d| (d, Op::Nested)),
    ];
    prop_oneof![
        12 => leaf_op(),
        2 => prop::collection::vec(inner, 0..6).prop_map(Op::Batch),
    ]
}

fn ops() -> impl Strategy<Value = Vec<(i64, Op)>> {
    prop::collection::vec((dt(), op()), 1..60)
}

// ---------------------------------------------------------------- making commands

fn item_id(state: &State, id: &Id) -> String {
    match id {
        Id::Existing(n) if !state.is_empty() => state
            .items()
            .nth(usize::from(*n) % state.len())
            .map(|i| i.id.to_string())
            .unwrap_or_default(),
        Id::Existing(n) => IDS[usize::from(*n) % IDS.len()].to_string(),
        Id::Any(i) => IDS[*i].to_string(),
    }
}

fn pick(names: &[&str], n: &Name) -> String {
    match n {
        Name::Pick(i) => names[*i].to_string(),
        Name::Bad => "bad name".to_string(),
    }
}

fn picks(names: &[&str], idx: &[usize]) -> Vec<String> {
    idx.iter().map(|i| names[*i].to_string()).collect()
}

fn item_token(state: &State, id: &str, tok: &Tok) -> FencingToken {
    match tok {
        Tok::Current(_) => state
            .get(id)
            .map(|i| i.current_token().unwrap_or(i.token))
            .unwrap_or(0),
        other => loose_token(state, other),
    }
}

fn agent_token(state: &State, agent: &str, tok: &Tok) -> FencingToken {
    match tok {
        Tok::Current(n) => {
            let held = state.claims_of(agent);
            if held.is_empty() {
                state.last_token()
            } else {
                held[*n as usize % held.len()].current_token().unwrap_or(0)
            }
        }
        other => loose_token(state, other),
    }
}

fn loose_token(state: &State, tok: &Tok) -> FencingToken {
    match tok {
        Tok::Current(_) => state.last_token(),
        Tok::Seen(n) => match state.last_token() {
            0 => 0,
            last => 1 + u64::from(*n) % last,
        },
        Tok::Random(n) => *n,
        Tok::Huge => FencingToken::MAX,
    }
}

/// Turns an abstract op into a concrete command, against the state it will
/// be applied to (tokens) and the proposer's clock `now`.
fn make(state: &State, now: Millis, op: &Op) -> Command {
    match op {
        Op::Submit {
            id,
            key,
            kind,
            priority,
            requires,
            payload_ok,
            max_attempts,
        } => Command::Submit(Submit {
            id: pick(IDS, id),
            idempotency_key: KEYS[*key].to_string(),
            kind: KINDS[*kind].to_string(),
            priority: *priority,
            requires: picks(CAPS, requires),
            payload: if *payload_ok { r#"{"n":1}"# } else { "{oops" }.to_string(),
            max_attempts: *max_attempts,
            now,
        }),
        Op::Claim {
            agent,
            kinds,
            caps,
            max,
            lease_ms,
        } => Command::Claim(Claim {
            agent: pick(AGENTS, agent),
            kinds: picks(KINDS, kinds),
            capabilities: picks(CAPS, caps),
            max: *max,
            lease_ms: *lease_ms,
            now,
        }),
        Op::Renew {
            agent,
            tokens,
            progress,
        } => {
            let agent = AGENTS[*agent];
            Command::Renew(Renew {
                agent: agent.to_string(),
                tokens: tokens
                    .iter()
                    .map(|t| agent_token(state, agent, t))
                    .collect(),
                progress: progress.map(|p| format!("progress {p}")),
                now,
            })
        }
        Op::StepDone { id, tok, step } => {
            let id = item_id(state, id);
            Command::StepDone(StepDone {
                token: item_token(state, &id, tok),
                id,
                step: format!("step{step}"),
                outcome: "true".to_string(),
                now,
            })
        }
        Op::Complete { id, tok, result_ok } => {
            let id = item_id(state, id);
            Command::Complete(Complete {
                token: item_token(state, &id, tok),
                id,
                result: if *result_ok { "[1]" } else { "nope" }.to_string(),
                now,
            })
        }
        Op::Fail { id, tok, retry } => {
            let id = item_id(state, id);
            Command::Fail(Fail {
                token: item_token(state, &id, tok),
                id,
                error: "it broke".to_string(),
                retry: *retry,
                now,
            })
        }
        Op::Release { id, tok } => {
            let id = item_id(state, id);
            Command::Release(Release {
                token: item_token(state, &id, tok),
                id,
                now,
            })
        }
        Op::Handoff { id, tok, to } => {
            let id = item_id(state, id);
            Command::Handoff(Handoff {
                token: item_token(state, &id, tok),
                id,
                to_agent: pick(AGENTS, to),
                now,
            })
        }
        Op::Cancel { id } => Command::Cancel(Cancel {
            id: item_id(state, id),
            reason: "stop".to_string(),
            now,
        }),
        Op::Tick => Command::Tick { now },
        Op::LeaderTookOffice => Command::LeaderTookOffice { now },
        Op::Compact { age, max } => Command::Compact(Compact {
            before: now.saturating_sub(*age),
            max: *max,
            now,
        }),
        Op::Nested => Command::Batch(vec![Command::Tick { now }]),
        Op::Batch(inner) => {
            // Tokens inside a batch are picked against the state before the
            // batch; later entries may well present stale ones.
            let mut t = now;
            Command::Batch(
                inner
                    .iter()
                    .map(|(d, op)| {
                        t = step(t, *d);
                        make(state, t, op)
                    })
                    .collect(),
            )
        }
    }
}

fn step(now: Millis, d: i64) -> Millis {
    now.saturating_add_signed(d)
}

// ---------------------------------------------------------------- invariants

fn live_leases(state: &State) -> Vec<&WorkItem> {
    state.items().filter(|i| i.lease.is_some()).collect()
}

/// Everything that must hold after every applied command.
fn check_invariants(state: &State) -> Result<(), TestCaseError> {
    let mut tokens = BTreeSet::new();
    let mut by_agent: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in state.items() {
        // At most one live claim per item, and it is the item's latest grant.
        prop_assert_eq!(
            item.status == Status::Claimed,
            item.lease.is_some(),
            "{:?}",
            item
        );
        if let Some(lease) = &item.lease {
            prop_assert!(
                tokens.insert(lease.token),
                "token {} is live twice",
                lease.token
            );
            prop_assert_eq!(lease.token, item.token);
            prop_assert!(lease.expires_at >= lease.granted_at);
            by_agent
                .entry(lease.agent.to_string())
                .or_default()
                .insert(item.id.to_string());
        }
        prop_assert!(item.token <= state.last_token());
        // History: strictly increasing tokens, only the live one open.
        let history: Vec<_> = item.holders().collect();
        for w in history.windows(2) {
            prop_assert!(
                w[0].token < w[1].token,
                "history of {}: {:?}",
                item.id,
                history
            );
        }
        prop_assert_eq!(history.last().map_or(0, |h| h.token), item.token);
        for (n, h) in history.iter().enumerate() {
            let is_live = n + 1 == history.len() && item.lease.is_some();
            prop_assert_eq!(h.ended.is_none(), is_live, "history of {}", item.id);
        }
        for j in item.journal() {
            prop_assert!(history.iter().any(|h| h.token == j.token));
        }
        // Attempts stay in bounds; a pending item has one left.
        prop_assert!(item.attempt <= item.max_attempts, "{:?}", item);
        if item.status == Status::Pending {
            prop_assert!(item.attempt < item.max_attempts, "{:?}", item);
        }
        if item.status == Status::Completed {
            prop_assert!(item.result.is_some());
        }
        // What one item keeps is bounded.
        prop_assert!(item.event_count() <= ITEM_BOUNDS.max_events);
        prop_assert_eq!(item.event(0).map(|e| e.kind.as_str()), Some("submitted"));
        let named = history
            .iter()
            .filter(|h| item.journal().iter().any(|j| j.token == h.token))
            .count();
        prop_assert!(history.len() <= ITEM_BOUNDS.max_holders.max(named + 1));
    }
    check_compaction_oracle(state)?;
    prop_assert_eq!(state.live_claims(), tokens.len());
    prop_assert_eq!(
        state.next_expiry(),
        live_leases(state)
            .iter()
            .filter_map(|i| i.lease.as_ref().map(|l| l.expires_at))
            .min()
    );
    for agent in AGENTS {
        let held: BTreeSet<String> = state
            .claims_of(agent)
            .iter()
            .map(|i| i.id.to_string())
            .collect();
        let expected = by_agent.get(*agent).cloned().unwrap_or_default();
        prop_assert_eq!(held, expected);
    }

    // The claim queue holds exactly the pending items, in priority then
    // submission order: a claim of everything on a copy grants just those.
    let mut pending: Vec<&WorkItem> = state
        .items()
        .filter(|i| i.status == Status::Pending)
        .collect();
    pending.sort_by_key(|i| (-i64::from(i.priority), i.seq));
    let expected: Vec<String> = pending.iter().map(|i| i.id.to_string()).collect();
    prop_assert_eq!(state.has_claimable(&[], &all_caps()), !expected.is_empty());
    let mut copy = state.clone();
    let resp = apply(
        &mut copy,
        Command::Claim(Claim {
            agent: "oracle".to_string(),
            kinds: vec![],
            capabilities: all_caps(),
            max: 10_000,
            lease_ms: 1,
            now: 0,
        }),
    );
    let Ok(Response::Granted(got)) = resp else {
        return Err(TestCaseError::fail(format!("oracle claim: {resp:?}")));
    };
    let got: Vec<String> = got.into_iter().map(|i| i.id.to_string()).collect();
    prop_assert_eq!(got, expected);

    // The expiry index holds exactly the live leases.
    let mut copy = state.clone();
    let resp = apply(&mut copy, Command::Tick { now: Millis::MAX });
    let Ok(Response::Expired(expired)) = resp else {
        return Err(TestCaseError::fail(format!("oracle tick: {resp:?}")));
    };
    let expired: BTreeSet<String> = expired.into_iter().collect();
    let live: BTreeSet<String> = live_leases(state)
        .iter()
        .map(|i| i.id.to_string())
        .collect();
    prop_assert_eq!(expired, live);
    prop_assert_eq!(copy.live_claims(), 0);
    check_counts(state)
}

/// The counts `apply()` keeps are what a full scan of the items finds, and
/// the oldest pending item is the pending item submitted first.
fn check_counts(state: &State) -> Result<(), TestCaseError> {
    // The kept counts themselves, compared with the scan below.
    let counts = state.counts();
    let mut scanned: BTreeMap<(String, Status), u64> = BTreeMap::new();
    for item in state.items() {
        *scanned
            .entry((item.kind.to_string(), item.status))
            .or_default() += 1;
    }
    let statuses = [
        Status::Pending,
        Status::Claimed,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];
    let mut kept: BTreeMap<(String, Status), u64> = BTreeMap::new();
    for (kind, by_status) in counts.by_kind() {
        prop_assert!(
            by_status.total() > 0,
            "type {} is counted with no items",
            kind
        );
        for status in statuses {
            if by_status.get(status) > 0 {
                kept.insert((kind.to_string(), status), by_status.get(status));
            }
        }
    }
    prop_assert_eq!(&kept, &scanned);
    let all = counts.by_status();
    for status in statuses {
        let scanned_status: u64 = scanned
            .iter()
            .filter(|((_, s), _)| *s == status)
            .map(|(_, n)| n)
            .sum();
        prop_assert_eq!(all.get(status), scanned_status);
    }
    prop_assert_eq!(counts.total(), state.len() as u64);

    let first_pending = state
        .items()
        .filter(|i| i.status == Status::Pending)
        .min_by_key(|i| i.seq)
        .map(|i| i.id.clone());
    prop_assert_eq!(state.oldest_pending().map(|i| i.id.clone()), first_pending);
    Ok(())
}

/// The terminal index holds exactly the finished items: a compaction of
/// everything on a copy removes just those, and leaves every live item as
/// it was.
fn check_compaction_oracle(state: &State) -> Result<(), TestCaseError> {
    let mut copy = state.clone();
    let resp = apply(
        &mut copy,
        Command::Compact(Compact {
            before: Millis::MAX,
            max: MAX_COMPACT_BATCH,
            now: 0,
        }),
    );
    let finished = state.items().filter(|i| i.status.is_terminal()).count();
    prop_assert_eq!(resp, Ok(Response::Compacted(finished)));
    let live: Vec<&WorkItem> = state.items().filter(|i| !i.status.is_terminal()).collect();
    prop_assert_eq!(copy.items().collect::<Vec<_>>(), live);
    prop_assert_eq!(copy.removed(), state.removed() + finished as u64);
    Ok(())
}

fn all_caps() -> Vec<String> {
    CAPS.iter().map(|c| c.to_string()).collect()
}

/// What must hold between the state before and after one (non-batch)
/// command, given its answer.
fn check_step(
    before: &State,
    after: &State,
    cmd: &Command,
    resp: &Result<Response, ClaimError>,
) -> Result<(), TestCaseError> {
    prop_assert!(after.last_token() >= before.last_token());
    prop_assert!(after.clock() >= before.clock());
    if resp.is_err() {
        prop_assert_eq!(
            after,
            before,
            "{:?} was refused ({:?}) but changed the state",
            cmd,
            resp
        );
    }
    // Fencing: a command acting for a holder goes through exactly when its
    // token is the item's current one.
    let fenced = match cmd {
        Command::StepDone(c) => Some((&c.id, c.token)),
        Command::Complete(c) => Some((&c.id, c.token)),
        Command::Fail(c) => Some((&c.id, c.token)),
        Command::Release(c) => Some((&c.id, c.token)),
        Command::Handoff(c) => Some((&c.id, c.token)),
        _ => None,
    };
    if let Some((id, token)) = fenced
        && !matches!(resp, Err(ClaimError::Invalid { .. }))
    {
        match before.get(id) {
            None => prop_assert_eq!(
                resp.clone().err(),
                Some(ClaimError::NotFound { id: id.clone() })
            ),
            Some(item) => {
                let current = item.current_token();
                let retried_complete = matches!(cmd, Command::Complete(_))
                    && item.status == Status::Completed
                    && item.token == token;
                if current == Some(token) || retried_complete {
                    prop_assert!(resp.is_ok(), "{:?} -> {:?}", cmd, resp);
                } else {
                    prop_assert_eq!(
                        resp.clone().err(),
                        Some(ClaimError::StaleToken {
                            id: id.clone(),
                            presented: token,
                            current,
                        })
                    );
                }
            }
        }
    }
    match (cmd, resp) {
        (Command::Claim(c), Ok(Response::Granted(items))) => {
            prop_assert!(items.len() <= c.max as usize);
            let mut last = before.last_token();
            for it in items {
                let lease = it.lease.as_ref().expect("granted without a lease");
                prop_assert_eq!(lease.token, last + 1);
                last = lease.token;
                prop_assert_eq!(&*lease.agent, c.agent.as_str());
                prop_assert!(c.kinds.is_empty() || c.kinds.iter().any(|k| **k == *it.kind));
                prop_assert!(it.requires().iter().all(|r| c.capabilities.contains(r)));
                prop_assert_eq!(before.get(&it.id).map(|i| i.status), Some(Status::Pending));
                prop_assert_eq!(after.get(&it.id), Some(it));
            }
            prop_assert_eq!(after.last_token(), last);
            if items.len() < c.max as usize {
                prop_assert!(!after.has_claimable(&c.kinds, &c.capabilities));
            }
        }
        (Command::Handoff(c), Ok(Response::Item(it))) => {
            let lease = it.lease.as_ref().expect("handed off without a lease");
            prop_assert_eq!(lease.token, before.last_token() + 1);
            prop_assert_eq!(&*lease.agent, c.to_agent.as_str());
        }
        (Command::Complete(c), Ok(Response::Item(it))) => {
            prop_assert_eq!(it.status, Status::Completed);
            prop_assert_eq!(after.get(&c.id), Some(it));
        }
        (Command::Renew(c), Ok(Response::Renewed { renewed, rejected })) => {
            prop_assert_eq!(after.last_token(), before.last_token());
            let now = after.clock();
            let lease_of = |t: FencingToken| {
                before
                    .items()
                    .find_map(|i| i.lease.as_ref().filter(|l| l.token == t))
            };
            // Empty = every lease the agent holds.
            let asked: Vec<FencingToken> = if c.tokens.is_empty() {
                let mut mine: Vec<FencingToken> = before
                    .items()
                    .filter_map(|i| i.lease.as_ref())
                    .filter(|l| *l.agent == *c.agent)
                    .map(|l| l.token)
                    .collect();
                mine.sort_unstable();
                mine
            } else {
                c.tokens.clone()
            };
            // Renewed exactly when the agent holds the lease and it has not
            // run out yet.
            let ok = |t: &FencingToken| {
                lease_of(*t).is_some_and(|l| *l.agent == *c.agent && l.expires_at > now)
            };
            let want_renewed: Vec<FencingToken> = asked.iter().copied().filter(ok).collect();
            let want_rejected: Vec<(FencingToken, ClaimError)> = asked
                .iter()
                .copied()
                .filter(|t| !ok(t))
                .map(|t| {
                    (
                        t,
                        ClaimError::NotHolder {
                            agent: c.agent.clone(),
                            token: t,
                        },
                    )
                })
                .collect();
            let got_renewed: Vec<FencingToken> =
                renewed.iter().filter_map(|i| i.current_token()).collect();
            prop_assert_eq!(got_renewed, want_renewed);
            prop_assert_eq!(rejected, &want_rejected);
            for it in before.items() {
                let Some(old) = it.lease.as_ref() else {
                    continue;
                };
                let new = after.get(&it.id).and_then(|i| i.lease.as_ref());
                if ok(&old.token) && asked.contains(&old.token) {
                    let new = new.expect("a renewed lease ended");
                    prop_assert_eq!(
                        new.expires_at,
                        now.saturating_add(old.lease_ms).max(old.expires_at)
                    );
                    let progress = c.progress.as_deref().or(old.progress.as_deref());
                    prop_assert_eq!(new.progress.as_deref(), progress);
                } else {
                    // Leases not renewed are untouched.
                    prop_assert_eq!(after.get(&it.id), Some(it));
                }
            }
        }
        (Command::Compact(c), Ok(Response::Compacted(n))) => {
            // Only finished items that ended by `before` leave, at most
            // `max`, oldest first; nothing that stays changes.
            prop_assert!(*n <= c.max as usize);
            prop_assert_eq!(after.len() + n, before.len());
            for it in after.items() {
                prop_assert_eq!(before.get(&it.id), Some(it));
            }
            let gone: Vec<&WorkItem> = before
                .items()
                .filter(|i| after.get(&i.id).is_none())
                .collect();
            for it in &gone {
                prop_assert!(it.status.is_terminal(), "{} was live", it.id);
                prop_assert!(it.updated_at <= c.before);
            }
            let newest_gone = gone.iter().map(|i| (i.updated_at, &i.id)).max();
            for it in after.items().filter(|i| i.status.is_terminal()) {
                let due = it.updated_at <= c.before;
                // A batch that was not full left nothing due behind.
                prop_assert!(!due || *n == c.max as usize, "{} is due but kept", it.id);
                if due {
                    prop_assert!(newest_gone < Some((it.updated_at, &it.id)));
                }
            }
            prop_assert_eq!(after.removed(), before.removed() + *n as u64);
        }
        (Command::LeaderTookOffice { .. }, Ok(_)) | (Command::Tick { .. }, Ok(_)) => {
            prop_assert_eq!(after.last_token(), before.last_token());
        }
        _ => {}
    }
    // No lease is ever shortened, except by ending it.
    for it in before.items() {
        if let (Some(old), Some(new)) = (
            it.lease.as_ref(),
            after.get(&it.id).and_then(|i| i.lease.as_ref()),
        ) && old.token == new.token
        {
            prop_assert!(new.expires_at >= old.expires_at);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- the run

/// Applies the ops from an empty state, checking everything on the way, and
/// returns the concrete commands and answers.
#[allow(clippy::type_complexity)]
fn run(
    ops: &[(i64, Op)],
) -> Result<(State, Vec<(Command, Result<Response, ClaimError>)>), TestCaseError> {
    let mut state = State::new();
    let mut now: Millis = 1_000;
    let mut log = Vec::new();
    for (d, op) in ops {
        now = step(now, *d);
        let cmd = make(&state, now, op);
        let before = state.clone();
        let resp = apply(&mut state, cmd.clone());

        if let Command::Batch(inner) = &cmd {
            // A batch is its entries applied one by one (nested batches
            // refused), and is itself never refused.
            let Ok(Response::Batch(answers)) = &resp else {
                return Err(TestCaseError::fail(format!("batch answered {resp:?}")));
            };
            prop_assert_eq!(answers.len(), inner.len());
            let mut replay = before.clone();
            for (c, answer) in inner.iter().zip(answers) {
                if let Command::Batch(_) = c {
                    prop_assert!(
                        matches!(answer, Err(ClaimError::Invalid { field, .. }) if field == "batch"),
                        "nested batch answered {:?}",
                        answer
                    );
                    continue;
                }
                let step_before = replay.clone();
                let one = apply(&mut replay, c.clone());
                prop_assert_eq!(&one, answer);
                check_step(&step_before, &replay, c, &one)?;
            }
            prop_assert_eq!(&replay, &state);
            prop_assert!(state.last_token() >= before.last_token());
        } else {
            check_step(&before, &state, &cmd, &resp)?;
        }
        check_invariants(&state)?;
        let snap = state
            .to_snapshot()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = State::from_snapshot(&snap).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &state);
        log.push((cmd, resp));
    }
    Ok((state, log))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every invariant after every command, refusals change nothing, batches
    /// are their entries in order, snapshots round-trip.
    #[test]
    fn random_sequences_keep_the_invariants(ops in ops()) {
        run(&ops)?;
    }

    /// The same commands from an empty state give the same answers and the
    /// same state.
    #[test]
    fn apply_is_deterministic(ops in ops()) {
        let (first, log) = run(&ops)?;
        let mut second = State::new();
        for (cmd, resp) in &log {
            let again = apply(&mut second, cmd.clone());
            prop_assert_eq!(&again, resp);
        }
        prop_assert_eq!(&second, &first);
        // A state restored from a snapshot carries on exactly like the original.
        let mut restored = State::from_snapshot(&first.to_snapshot().unwrap()).unwrap();
        let mut original = first.clone();
        for (cmd, _) in log.iter().rev().take(10) {
            prop_assert_eq!(apply(&mut restored, cmd.clone()), apply(&mut original, cmd.clone()));
        }
        prop_assert_eq!(restored, original);
    }

    /// Replicas that applied the same commands, one of them restored from a
    /// snapshot, remove the same finished items at the same compaction, and
    /// none whose retention passed is left on either.
    #[test]
    fn a_compaction_removes_the_same_items_on_every_replica(ops in ops(), age in 0u64..5_000) {
        let (first, _) = run(&ops)?;
        let mut restored = State::from_snapshot(&first.to_snapshot().unwrap()).unwrap();
        let mut original = first.clone();
        let before = first.clock().saturating_sub(age);
        let cmd = Command::Compact(Compact { before, max: MAX_COMPACT_BATCH, now: first.clock() });
        let answer = apply(&mut original, cmd.clone());
        prop_assert_eq!(apply(&mut restored, cmd), answer);
        prop_assert_eq!(&restored, &original);
        for replica in [&restored, &original] {
            prop_assert!(replica.items().all(|i| !i.status.is_terminal() || i.updated_at > before));
        }
        let snap = State::from_snapshot(&original.to_snapshot().unwrap()).unwrap();
        prop_assert_eq!(snap, original);
    }

    /// Arbitrary (even nonsensical) field values never make `apply` panic,
    /// and a refusal never changes the state.
    #[test]
    fn apply_never_panics_on_junk(
        prelude in ops(),
        id in ".{0,10}",
        agent in ".{0,10}",
        text in ".{0,20}",
        token in any::<u64>(),
        now in any::<u64>(),
        lease_ms in any::<u64>(),
        max in any::<u32>(),
        priority in any::<i32>(),
        pick in 0usize..10,
    ) {
        let (mut state, _) = run(&prelude)?;
        let cmd = match pick {
            0 => Command::Submit(Submit {
                id: id.clone(), idempotency_key: text.clone(), kind: agent.clone(), priority,
                requires: vec![text.clone()], payload: text.clone(), max_attempts: max, now,
            }),
            1 => Command::Claim(Claim {
                agent: agent.clone(), kinds: vec![id.clone()], capabilities: vec![text.clone()],
                max, lease_ms, now,
            }),
            2 => Command::Renew(Renew {
                agent: agent.clone(), tokens: vec![token], progress: Some(text.clone()), now,
            }),
            3 => Command::StepDone(StepDone {
                id: id.clone(), token, step: agent.clone(), outcome: text.clone(), now,
            }),
            4 => Command::Complete(Complete { id: id.clone(), token, result: text.clone(), now }),
            5 => Command::Fail(Fail { id: id.clone(), token, error: text.clone(), retry: max % 2 == 0, now }),
            6 => Command::Release(Release { id: id.clone(), token, now }),
            7 => Command::Handoff(Handoff { id: id.clone(), token, to_agent: agent.clone(), now }),
            8 => Command::Cancel(Cancel { id: id.clone(), reason: text.clone(), now }),
            _ => Command::Batch(vec![Command::Tick { now }, Command::LeaderTookOffice { now }]),
        };
        let before = state.clone();
        let resp = apply(&mut state, cmd);
        if resp.is_err() {
            prop_assert_eq!(&state, &before);
        }
        check_invariants(&state)?;
        prop_assert_eq!(State::from_snapshot(&state.to_snapshot().unwrap()).unwrap(), state);
    }
}
