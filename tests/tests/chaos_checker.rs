//! The chaos checker is proven: hand-built histories and replicas, each with
//! one known anomaly, must be reported under that anomaly's kind, and a clean
//! run must report nothing. Pure: no processes, no network. The anomalies
//! the replicas alone show are proven in `swarm-check`, whose checks this
//! checker runs; here, those that need the history, and the replica ones as
//! the whole checker reports them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use swarm_check::fixtures::{
    LEASE_MS, all_items_mut, assert_only, ended, granted, item, item_mut, replicas,
    three_completed_items,
};
use swarm_tests::chaos::checker::{
    ANOMALY_KINDS, CheckInput, CheckReport, DOUBLE_GRANT, DUPLICATE_COMPLETION, GRANTED_EARLY,
    LIMIT_EXCEEDED, LOST_ACK, Liveness, REPLICA_DIVERGENCE, STALE_WRITE_ACCEPTED, STUCK,
    TOKEN_NOT_INCREASING, TWO_LEADERS_IN_TERM, UNKNOWN_APPLIED_TWICE, check,
};
use swarm_tests::chaos::fenced::{FencedResource, WriteAttempt};
use swarm_tests::chaos::history::{
    Grant, History, LeaderObservation, Op, OpFields, OpKind, OpResult, Outcome,
};

/// The leader's clock (Unix epoch ms) at the start of the scenarios.
const T0: u64 = 1_700_000_000_000;
/// The lease of every grant, as the replica items have it.
const LEASE: u64 = LEASE_MS;

// ---------------------------------------------------------------------------
// Building histories.

struct Ops(Vec<Op>);

impl Ops {
    fn new() -> Ops {
        Ops(Vec::new())
    }

    /// Records an operation invoked at `inv` and completed at `done` (ms since
    /// the run started).
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        client: u32,
        kind: OpKind,
        inv: u64,
        done: u64,
        outcome: Outcome,
        fields: OpFields,
        result: OpResult,
    ) -> &mut Ops {
        let index = self.0.len() as u64;
        self.0.push(Op {
            index,
            client,
            kind,
            invoked_at_ms: inv,
            completed_at_ms: Some(done),
            outcome,
            reason: (outcome != Outcome::Ok).then(|| "test".to_string()),
            fields,
            result,
        });
        self
    }

    fn submit(&mut self, client: u32, inv: u64, key: &str, item: &str) -> &mut Ops {
        self.add(
            client,
            OpKind::Submit,
            inv,
            inv + 5,
            Outcome::Ok,
            OpFields::submit(key),
            OpResult::submitted(item, true),
        )
    }

    /// An acknowledged claim by `agent` that granted `item` with `token` at
    /// leader time `granted`.
    fn claim(
        &mut self,
        client: u32,
        inv: u64,
        agent: &str,
        item: &str,
        token: u64,
        granted: u64,
    ) -> &mut Ops {
        self.add(
            client,
            OpKind::Claim,
            inv,
            inv + 5,
            Outcome::Ok,
            OpFields::agent(agent),
            OpResult::granted(vec![grant(item, token, agent, granted, granted + LEASE)]),
        )
    }

    /// An acknowledged renew that extended `renewed`'s lease.
    fn renew(&mut self, client: u32, inv: u64, renewed: Grant) -> &mut Ops {
        let agent = renewed.agent.clone();
        self.add(
            client,
            OpKind::Renew,
            inv,
            inv + 5,
            Outcome::Ok,
            OpFields::agent(agent),
            OpResult::granted(vec![renewed]),
        )
    }

    fn held(
        &mut self,
        client: u32,
        kind: OpKind,
        inv: u64,
        outcome: Outcome,
        item: &str,
        token: u64,
    ) -> &mut Ops {
        self.add(
            client,
            kind,
            inv,
            inv + 5,
            outcome,
            OpFields::held(item, token),
            OpResult::none(),
        )
    }

    fn history(&self, leaders: Vec<LeaderObservation>) -> History {
        History {
            started_at_unix_ms: T0,
            ops: self.0.clone(),
            leaders,
        }
    }
}

fn grant(item: &str, token: u64, agent: &str, granted: u64, expires: u64) -> Grant {
    Grant {
        item: item.into(),
        token,
        agent: agent.into(),
        granted_at_ms: granted,
        lease_expires_at_ms: expires,
    }
}

fn seen(at_ms: u64, node: u64, term: u64, leader: u64) -> LeaderObservation {
    LeaderObservation {
        at_ms,
        node,
        term,
        leader,
    }
}

fn deadline_passed() -> Liveness {
    Liveness {
        deadline_passed: true,
        ..Liveness::default()
    }
}

// ---------------------------------------------------------------------------
// The clean run every anomaly test starts from.

/// Three items: w1 claimed, renewed and completed; w2 claimed, released,
/// claimed again and completed; w3 claimed, left to expire, claimed again
/// and completed, while the stale holder's fenced write is rejected. The
/// replicas hold what the history did: [`three_completed_items`].
fn clean() -> CheckInput {
    let mut ops = Ops::new();
    ops.submit(1, 0, "k1", "w1")
        .submit(2, 1, "k2", "w2")
        .submit(3, 2, "k3", "w3")
        // An unknown submit that did not take effect twice.
        .add(
            4,
            OpKind::Submit,
            3,
            40,
            Outcome::Unknown,
            OpFields::submit("k4"),
            OpResult::none(),
        )
        .claim(1, 10, "a", "w1", 1, T0 + 10)
        .claim(2, 11, "b", "w2", 2, T0 + 11)
        .claim(3, 12, "c", "w3", 3, T0 + 12)
        .renew(1, 500, grant("w1", 1, "a", T0 + 10, T0 + 1_500))
        .held(2, OpKind::Release, 600, Outcome::Ok, "w2", 2)
        .claim(4, 620, "d", "w2", 4, T0 + 620)
        // c pauses past its lease; e gets w3 after it expired.
        .claim(5, 1_100, "e", "w3", 5, T0 + 1_100)
        .add(
            5,
            OpKind::FencedWrite,
            1_110,
            1_112,
            Outcome::Ok,
            OpFields::held("w3", 5),
            OpResult::none(),
        )
        .add(
            3,
            OpKind::FencedWrite,
            1_120,
            1_122,
            Outcome::Failed,
            OpFields::held("w3", 3),
            OpResult::none(),
        )
        .held(3, OpKind::Complete, 1_130, Outcome::Failed, "w3", 3)
        .held(1, OpKind::Complete, 1_200, Outcome::Ok, "w1", 1)
        .held(4, OpKind::Complete, 1_210, Outcome::Ok, "w2", 4)
        .held(5, OpKind::Complete, 1_220, Outcome::Ok, "w3", 5)
        // A retried complete of the same claim is acknowledged again.
        .held(5, OpKind::Complete, 1_230, Outcome::Ok, "w3", 5);
    let leaders = vec![
        seen(0, 1, 1, 1),
        seen(0, 2, 1, 1),
        seen(0, 3, 1, 0),
        seen(900, 2, 2, 2),
        seen(900, 3, 2, 2),
        seen(950, 1, 2, 2),
    ];

    let fenced = FencedResource::new();
    fenced.write("w1", 1, "a").unwrap();
    fenced.write("w1", 1, "a").unwrap();
    fenced.write("w3", 3, "c").unwrap();
    fenced.write("w3", 5, "e").unwrap();
    fenced.write("w3", 3, "c").unwrap_err();

    // w2 and w3 carry a concurrency key limited to 2 claims at once (they
    // overlap, w1 has none); w3 was delayed until its first claim.
    let mut replicas = replicas(&three_completed_items(T0), 42);
    for item in replicas.iter_mut().flat_map(|r| r.items.iter_mut()) {
        if item.id != "w1" {
            item.concurrency_key = LIMITED_KEY.into();
        }
        if item.id == "w3" {
            item.not_before_ms = T0 + 12;
        }
    }
    CheckInput {
        history: ops.history(leaders),
        fenced: fenced.log(),
        replicas,
        liveness: deadline_passed(),
        key_limits: [(LIMITED_KEY.to_string(), 2)].into(),
    }
}

/// The concurrency key of the clean run's limited items.
const LIMITED_KEY: &str = "k-lim";

/// Asserts that `kind`, and only `kind`, is reported, and returns the report.
fn only(input: &CheckInput, kind: &str) -> CheckReport {
    let report = check(input);
    assert_only(&report.anomalies, &ANOMALY_KINDS, kind, &report);
    assert!(!report.is_clean());
    report
}

// ---------------------------------------------------------------------------
// The clean run.

#[test]
fn a_clean_run_reports_nothing() {
    let input = clean();
    let report = check(&input);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.ops_checked, input.history.ops.len() as u64);
    // w2's and w3's two claims each, w3 delayed: on three replicas.
    assert_eq!((report.key_claims_checked, report.delayed_checked), (12, 3));
    assert_eq!(report.stale_rejected, 1);
    let kinds: BTreeSet<&str> = report.anomalies.keys().map(String::as_str).collect();
    assert_eq!(kinds, ANOMALY_KINDS.into_iter().collect());
    assert_eq!(report.replica_hashes.len(), 3);
    let hashes: BTreeSet<&String> = report.replica_hashes.values().collect();
    assert_eq!(hashes.len(), 1);

    let json = serde_json::to_value(&report).unwrap();
    for kind in ANOMALY_KINDS {
        assert_eq!(json["anomalies"][kind], serde_json::json!([]), "{kind}");
    }
    assert_eq!(json["stale_rejected"], 1);
    assert!(report.counts().values().all(|n| *n == 0));
}

#[test]
fn many_recorded_operations_check_clean() {
    // A recorded history, not a hand-built one: the Recorder's times are
    // real and the checker must accept what a correct cluster produces.
    use swarm_tests::chaos::history::Recorder;
    let recorder = Recorder::new();
    let mut items = Vec::new();
    for n in 0..200u64 {
        let id = format!("w{n}");
        let key = format!("k{n}");
        recorder
            .invoke(1, OpKind::Submit, OpFields::submit(key.as_str()))
            .ok(OpResult::submitted(id.as_str(), true));
        let token = n + 1;
        let at = T0 + n * 10;
        recorder
            .invoke(2, OpKind::Claim, OpFields::agent("a"))
            .ok(OpResult::granted(vec![grant(
                &id,
                token,
                "a",
                at,
                at + LEASE,
            )]));
        recorder
            .invoke(2, OpKind::Complete, OpFields::held(id.as_str(), token))
            .ok(OpResult::none());
        items.push(ended(
            granted(item(&id, &key, at), "a", token, at),
            "completed",
            at + 1,
        ));
    }
    let input = CheckInput {
        history: recorder.history(),
        fenced: Vec::new(),
        replicas: replicas(&items, 600),
        liveness: deadline_passed(),
        key_limits: Default::default(),
    };
    let report = check(&input);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.ops_checked, 600);
}

// ---------------------------------------------------------------------------
// double_grant

#[test]
fn a_double_grant_in_the_client_history_is_reported() {
    let mut input = clean();
    // f is granted w1 while a's renewed lease (until T0 + 1500) is live and
    // before a completed it.
    let mut ops = Ops(input.history.ops.clone());
    ops.claim(6, 1_000, "f", "w1", 6, T0 + 1_000);
    input.history.ops = ops.0;
    let report = only(&input, DOUBLE_GRANT);
    let text = report.of(DOUBLE_GRANT).join("\n");
    assert!(
        text.contains("item w1") && text.contains("token 6"),
        "{text}"
    );
}

#[test]
fn a_grant_after_expiry_release_or_an_unknown_end_is_not_a_double_grant() {
    for (case, end) in [
        ("after the lease expired", None),
        ("after an acknowledged release", Some(Outcome::Ok)),
        ("after a release of unknown outcome", Some(Outcome::Unknown)),
    ] {
        let mut ops = Ops::new();
        ops.claim(1, 0, "a", "x", 1, T0);
        if let Some(outcome) = end {
            ops.held(1, OpKind::Release, 100, outcome, "x", 1);
        }
        let later = if end.is_some() { T0 + 200 } else { T0 + LEASE };
        ops.claim(2, 200, "b", "x", 2, later);
        let input = CheckInput {
            history: ops.history(Vec::new()),
            ..CheckInput::default()
        };
        let report = check(&input);
        assert!(report.is_clean(), "{case}:\n{report}");
    }
    // A failed release proves nothing: the second grant overlaps.
    let mut ops = Ops::new();
    ops.claim(1, 0, "a", "x", 1, T0)
        .held(1, OpKind::Release, 100, Outcome::Failed, "x", 1)
        .claim(2, 200, "b", "x", 2, T0 + 200);
    let input = CheckInput {
        history: ops.history(Vec::new()),
        ..CheckInput::default()
    };
    only(&input, DOUBLE_GRANT);
}

#[test]
fn one_token_granted_to_two_agents_is_a_double_grant() {
    let mut ops = Ops::new();
    ops.claim(1, 0, "a", "x", 7, T0)
        .claim(2, 1, "b", "x", 7, T0);
    let input = CheckInput {
        history: ops.history(Vec::new()),
        ..CheckInput::default()
    };
    only(&input, DOUBLE_GRANT);
}

#[test]
fn a_double_grant_in_a_replica_is_reported() {
    let mut input = clean();
    // Node 2 lets f claim w1 while a still holds it: two live holders.
    let w1 = item_mut(&mut input.replicas, 2, "w1").unwrap();
    *w1 = granted(
        granted(item("w1", "k1", T0), "a", 1, T0 + 10),
        "f",
        6,
        T0 + 20,
    );
    let report = check(&input);
    let text = report.of(DOUBLE_GRANT).join("\n");
    assert!(text.contains("node 2, item w1"), "{report}");
    // The replicas differ too, and w1 is not done on node 2.
    assert!(!report.of(REPLICA_DIVERGENCE).is_empty());
}

// ---------------------------------------------------------------------------
// token_not_increasing

#[test]
fn a_token_going_down_in_the_client_history_is_reported() {
    let mut ops = Ops::new();
    // Released, then granted again with a lower token.
    ops.claim(1, 0, "a", "x", 9, T0)
        .held(1, OpKind::Release, 10, Outcome::Ok, "x", 9)
        .claim(2, 20, "b", "x", 8, T0 + 20);
    let input = CheckInput {
        history: ops.history(Vec::new()),
        ..CheckInput::default()
    };
    only(&input, TOKEN_NOT_INCREASING);
}

#[test]
fn concurrent_grants_are_not_ordered_by_real_time() {
    let mut ops = Ops::new();
    // a's claim was invoked first but acknowledged last: b's grant (token 8,
    // released) may well have come first, so token 9 is no regression.
    ops.add(
        1,
        OpKind::Claim,
        0,
        50,
        Outcome::Ok,
        OpFields::agent("a"),
        OpResult::granted(vec![grant("x", 9, "a", T0 + 40, T0 + 40 + LEASE)]),
    )
    .add(
        2,
        OpKind::Claim,
        10,
        15,
        Outcome::Ok,
        OpFields::agent("b"),
        OpResult::granted(vec![grant("x", 8, "b", T0, T0 + LEASE)]),
    )
    .held(2, OpKind::Release, 20, Outcome::Unknown, "x", 8);
    let input = CheckInput {
        history: ops.history(Vec::new()),
        ..CheckInput::default()
    };
    let report = check(&input);
    assert!(report.is_clean(), "{report}");
}

#[test]
fn one_token_granted_for_two_items_is_reported() {
    // In the client history.
    let mut ops = Ops::new();
    ops.claim(1, 0, "a", "x", 5, T0)
        .claim(2, 10, "b", "y", 5, T0 + 10);
    let input = CheckInput {
        history: ops.history(Vec::new()),
        ..CheckInput::default()
    };
    only(&input, TOKEN_NOT_INCREASING);

    // In a replica: w6 was granted token 5, which w3 already had.
    let mut input = clean();
    let w6 = ended(
        granted(item("w6", "k6", T0 + 1_101), "g", 5, T0 + 1_102),
        "completed",
        T0 + 1_103,
    );
    for r in &mut input.replicas {
        r.items.push(w6.clone());
    }
    let report = only(&input, TOKEN_NOT_INCREASING);
    assert_eq!(report.of(TOKEN_NOT_INCREASING).len(), 3, "{report}");
}

// ---------------------------------------------------------------------------
// stale_write_accepted

#[test]
fn a_stale_write_accepted_is_reported_even_when_the_resource_says_it_was_fine() {
    let mut input = clean();
    // A broken resource accepted c's write with token 3 after e's 5, and
    // even recorded it as if 3 were the highest so far.
    let seq = input.fenced.len() as u64;
    input.fenced.push(WriteAttempt {
        seq,
        at_ms: 2_000,
        item: "w3".into(),
        token: 3,
        writer: "c".into(),
        accepted: true,
        highest_before: Some(3),
    });
    let report = only(&input, STALE_WRITE_ACCEPTED);
    assert!(report.of(STALE_WRITE_ACCEPTED)[0].contains("token 3"));
    assert_eq!(report.stale_rejected, 1);
}

// ---------------------------------------------------------------------------
// lost_ack

#[test]
fn a_lost_acknowledged_submit_is_reported() {
    let mut input = clean();
    let mut ops = Ops(input.history.ops.clone());
    ops.submit(6, 1_300, "k9", "w9");
    input.history.ops = ops.0;
    // w9 made it to nodes 1 and 2 only (completed there), not to node 3.
    let w9 = ended(
        granted(item("w9", "k9", T0 + 1_300), "z", 10, T0 + 1_301),
        "completed",
        T0 + 1_302,
    );
    for r in input.replicas.iter_mut().filter(|r| r.node != 3) {
        r.items.push(w9.clone());
    }
    let report = check(&input);
    let lost = report.of(LOST_ACK);
    assert_eq!(lost.len(), 1, "{report}");
    assert!(
        lost[0].contains("node 3") && lost[0].contains("w9"),
        "{}",
        lost[0]
    );
    // A missing item is also a divergence between replicas.
    assert!(!report.of(REPLICA_DIVERGENCE).is_empty());
}

#[test]
fn a_lost_acknowledged_complete_is_reported() {
    let mut input = clean();
    // Every replica still shows e holding w3, though its complete was
    // acknowledged.
    for w3 in all_items_mut(&mut input.replicas, "w3") {
        *w3 = granted(
            ended(
                granted(item("w3", "k3", T0 + 2), "c", 3, T0 + 12),
                "expired",
                T0 + 1_012,
            ),
            "e",
            5,
            T0 + 1_100,
        );
    }
    input.liveness.exempt_claimed = true;
    let report = only(&input, LOST_ACK);
    assert_eq!(report.of(LOST_ACK).len(), 3 * 2, "{report}");
}

#[test]
fn finished_items_removed_after_the_retention_period_are_not_lost() {
    let mut input = clean();
    // Every replica removed the finished w1 and w3 after the retention
    // period, and says it removed two items.
    for r in &mut input.replicas {
        r.items.retain(|i| i.id != "w1" && i.id != "w3");
        r.removed = 2;
    }
    let report = check(&input);
    assert!(report.is_clean(), "{report}");
}

#[test]
fn more_missing_items_than_the_replica_removed_are_lost() {
    let mut input = clean();
    for r in &mut input.replicas {
        r.items.retain(|i| i.id != "w1" && i.id != "w3");
        r.removed = 1;
    }
    let report = only(&input, LOST_ACK);
    let lost = report.of(LOST_ACK);
    assert_eq!(lost.len(), 3 * 2, "{report}");
    assert!(
        lost.iter().all(|l| l.contains("removed only 1")),
        "{report}"
    );
}

// ---------------------------------------------------------------------------
// duplicate_completion

#[test]
fn a_duplicate_completion_in_the_client_history_is_reported() {
    let mut input = clean();
    // c's complete with its stale token was acknowledged too.
    let op = input
        .history
        .ops
        .iter_mut()
        .find(|o| o.kind == OpKind::Complete && o.fields.token == Some(3))
        .unwrap();
    op.outcome = Outcome::Ok;
    let report = check(&input);
    let text = report.of(DUPLICATE_COMPLETION).join("\n");
    assert!(text.contains("item w3"), "{report}");
}

// ---------------------------------------------------------------------------
// stuck

#[test]
fn a_stuck_item_is_reported_after_the_deadline_only() {
    let mut input = clean();
    let pending = item("w8", "k8", T0 + 5);
    let held = granted(item("w7", "k7", T0 + 6), "g", 11, T0 + 7);
    for r in &mut input.replicas {
        r.items.push(pending.clone());
        r.items.push(held.clone());
    }
    let report = only(&input, STUCK);
    let stuck = report.of(STUCK);
    assert_eq!(stuck.len(), 2, "{report}");
    assert!(stuck[0].contains("w7") && stuck[1].contains("w8"));

    input.liveness.exempt_claimed = true;
    assert_eq!(check(&input).of(STUCK).len(), 1);
    input.liveness.exempt_items.insert("w8".into());
    assert!(check(&input).is_clean());
    input.liveness = Liveness::default();
    assert!(check(&input).is_clean());
}

// ---------------------------------------------------------------------------
// two_leaders_in_term

#[test]
fn two_leaders_in_one_term_are_reported() {
    let mut input = clean();
    // Node 3 believes it leads term 2, which node 2 won.
    input.history.leaders.push(seen(960, 3, 2, 3));
    let report = only(&input, TWO_LEADERS_IN_TERM);
    assert!(report.of(TWO_LEADERS_IN_TERM)[0].contains("term 2"));
}

// ---------------------------------------------------------------------------
// unknown_applied_twice

#[test]
fn one_key_acknowledged_as_two_items_is_reported() {
    let mut ops = Ops::new();
    ops.submit(1, 0, "k", "w1").submit(2, 1, "k", "w2");
    let input = CheckInput {
        history: ops.history(Vec::new()),
        ..CheckInput::default()
    };
    only(&input, UNKNOWN_APPLIED_TWICE);
}

// ---------------------------------------------------------------------------
// limit_exceeded, granted_early

#[test]
fn more_claims_of_a_key_at_once_than_its_limit_are_reported() {
    let mut input = clean();
    // w1 overlaps w2 and w3: three claims of the key at once.
    for item in input.replicas.iter_mut().flat_map(|r| r.items.iter_mut()) {
        item.concurrency_key = LIMITED_KEY.into();
    }
    let report = only(&input, LIMIT_EXCEEDED);
    let text = report.of(LIMIT_EXCEEDED).join("\n");
    assert!(
        text.contains("3 items of concurrency key \"k-lim\""),
        "{report}"
    );
    // One item's claims, one after another, never overlap.
    let mut input = clean();
    input.key_limits.insert(LIMITED_KEY.into(), 1);
    for item in input.replicas.iter_mut().flat_map(|r| r.items.iter_mut()) {
        item.concurrency_key = if item.id == "w2" {
            LIMITED_KEY.into()
        } else {
            String::new()
        };
    }
    assert!(check(&input).is_clean());
}

#[test]
fn a_delayed_item_granted_before_its_time_is_reported() {
    let mut input = clean();
    for item in input.replicas.iter_mut().flat_map(|r| r.items.iter_mut()) {
        if item.id == "w3" {
            item.not_before_ms = T0 + 500;
        }
    }
    let report = only(&input, GRANTED_EARLY);
    assert!(
        report
            .of(GRANTED_EARLY)
            .join("\n")
            .contains("item w3 granted at"),
        "{report}"
    );
}
