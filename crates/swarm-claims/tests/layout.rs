//! The memory layout of a work item (shared names, rare fields behind one
//! pointer, compact events) changes nothing in its encoding: an item encodes
//! to the same bytes, in bincode and JSON, as the plain layout every earlier
//! version wrote (plus, since snapshot format version 2, its queue control
//! at the end), and those bytes decode back to the same item.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use swarm_claims::command::{Cancel, Claim, Fail, StepDone, Submit};
use swarm_claims::{Command, Response, State, WorkItem, apply};

/// A work item as earlier versions declared it: owned strings, every field
/// inline, in this order.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PlainItem {
    id: String,
    kind: String,
    priority: i32,
    requires: Vec<String>,
    payload: String,
    idempotency_key: String,
    status: PlainStatus,
    attempt: u32,
    max_attempts: u32,
    lease: Option<PlainLease>,
    token: u64,
    result: Option<String>,
    error: Option<String>,
    submitted_at: u64,
    updated_at: u64,
    seq: u64,
    history: Vec<PlainHolder>,
    journal: Vec<PlainJournalEntry>,
    cancel_requested: Option<String>,
    events: Vec<PlainEvent>,
    events_dropped: u32,
    /// Since snapshot format version 2.
    control: Option<swarm_claims::ItemControl>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum PlainStatus {
    Pending,
    Claimed,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PlainLease {
    agent: String,
    token: u64,
    granted_at: u64,
    expires_at: u64,
    lease_ms: u64,
    progress: Option<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PlainHolder {
    agent: String,
    token: u64,
    granted_at: u64,
    ended: Option<PlainClaimEnd>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum PlainClaimEnd {
    Completed,
    Failed,
    Released,
    Expired,
    HandedOff,
    Cancelled,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PlainJournalEntry {
    step: String,
    token: u64,
    outcome: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum PlainEventKind {
    Submitted,
    Claimed,
    StepRecorded,
    HandedOff,
    Released,
    Expired,
    Retrying,
    CancelRequested,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PlainEvent {
    at: u64,
    kind: PlainEventKind,
    agent: Option<String>,
    token: Option<u64>,
    step: Option<String>,
    detail: Option<String>,
    journal_index: Option<usize>,
}

fn item(response: Response) -> WorkItem {
    match response {
        Response::Submitted { item, .. } | Response::Item(item) => item,
        Response::Granted(mut items) => items.remove(0),
        other => panic!("unexpected {other:?}"),
    }
}

/// Items that use every field: a plain task, a claimed workflow with steps
/// done and a cancel request, and a failed one with requirements.
fn items() -> Vec<WorkItem> {
    let mut state = State::new();
    let mut run = |cmd| item(apply(&mut state, cmd).unwrap());
    let submit = |id: &str, kind: &str, requires: &[&str]| {
        Command::Submit(Submit {
            id: id.into(),
            idempotency_key: format!("key-{id}"),
            kind: kind.into(),
            priority: 3,
            requires: requires.iter().map(|r| r.to_string()).collect(),
            payload: r#"{"n":1}"#.into(),
            max_attempts: 0,
            now: 1_000,
        })
    };
    let claim = |kind: &str, capabilities: &[&str]| {
        Command::Claim(Claim {
            agent: "agent-7".into(),
            kinds: vec![kind.into()],
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            max: 1,
            lease_ms: 5_000,
            now: 2_000,
        })
    };
    let plain = run(submit("w1", "task", &[]));
    run(submit("w2", "workflow", &[]));
    let token = run(claim("workflow", &[])).token;
    run(Command::StepDone(StepDone {
        id: "w2".into(),
        token,
        step: "fetch".into(),
        outcome: r#"{"ok":true}"#.into(),
        now: 2_500,
    }));
    let workflow = run(Command::Cancel(Cancel {
        id: "w2".into(),
        reason: "not needed".into(),
        now: 3_000,
    }));
    run(submit("w3", "gpu-task", &["gpu"]));
    let token = run(claim("gpu-task", &["gpu"])).token;
    let failed = run(Command::Fail(Fail {
        id: "w3".into(),
        token,
        error: "boom".into(),
        retry: false,
        now: 4_000,
    }));
    vec![plain, workflow, failed]
}

#[test]
fn an_item_encodes_as_the_plain_layout_did() {
    let config = bincode::config::standard();
    for item in items() {
        let bytes = bincode::serde::encode_to_vec(&item, config).unwrap();
        let (plain, _): (PlainItem, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(plain.id, &*item.id);
        assert_eq!(plain.requires, item.requires());
        assert_eq!(plain.error.as_deref(), item.error());
        assert_eq!(plain.journal.len(), item.journal().len());
        assert_eq!(plain.cancel_requested.as_deref(), item.cancel_requested());
        assert_eq!(
            bincode::serde::encode_to_vec(&plain, config).unwrap(),
            bytes,
            "{item:?}"
        );
        let (decoded, _): (WorkItem, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(decoded, item);

        let json = serde_json::to_string(&item).unwrap();
        let plain: PlainItem = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&plain).unwrap(), json);
        assert_eq!(serde_json::from_str::<WorkItem>(&json).unwrap(), item);
    }
}

#[test]
fn the_submission_is_every_items_first_event_though_no_item_stores_it() {
    let config = bincode::config::standard();
    for item in items() {
        let first = item.event(0).unwrap();
        assert_eq!(
            (first.kind.as_str(), first.at, first.token()),
            ("submitted", item.submitted_at, None)
        );
        let bytes = bincode::serde::encode_to_vec(&item, config).unwrap();
        let (plain, _): (PlainItem, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(plain.events.len(), item.event_count());
        assert_eq!(plain.events[0].kind, PlainEventKind::Submitted);
        assert_eq!(plain.events[0].at, item.submitted_at);
    }
}

/// Data whose first event is not the plain submission (written by hand, or
/// by a version that had none) decodes to an item that keeps that event and
/// encodes back to the same bytes.
#[test]
fn an_item_whose_first_event_is_not_a_submission_keeps_it() {
    let config = bincode::config::standard();
    for item in items() {
        let bytes = bincode::serde::encode_to_vec(&item, config).unwrap();
        let (mut plain, _): (PlainItem, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        let variants = [
            |p: &mut PlainItem| p.events[0].at += 1,
            |p: &mut PlainItem| p.events[0].kind = PlainEventKind::Claimed,
            |p: &mut PlainItem| p.events.clear(),
        ];
        for change in variants {
            change(&mut plain);
            let odd = bincode::serde::encode_to_vec(&plain, config).unwrap();
            let (decoded, _): (WorkItem, usize) =
                bincode::serde::decode_from_slice(&odd, config).unwrap();
            assert_eq!(decoded.event_count(), plain.events.len());
            assert_eq!(
                bincode::serde::encode_to_vec(&decoded, config).unwrap(),
                odd
            );
        }
    }
}

/// The live holder is stored as the lease alone; data whose last holder is
/// not the lease's (or that has none) keeps what it says.
#[test]
fn a_live_holder_is_the_leases_and_odd_data_keeps_its_own() {
    let config = bincode::config::standard();
    let claimed: Vec<WorkItem> = items().into_iter().filter(|i| i.lease.is_some()).collect();
    assert!(!claimed.is_empty());
    for item in claimed {
        let lease = item.lease.clone().unwrap();
        let live = item.holders().last().unwrap();
        assert_eq!(
            (&*live.agent, live.token, live.granted_at, live.ended),
            (&*lease.agent, lease.token, lease.granted_at, None)
        );
        let bytes = bincode::serde::encode_to_vec(&item, config).unwrap();
        let (mut plain, _): (PlainItem, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        let variants = [
            |p: &mut PlainItem| {
                if let Some(h) = p.history.last_mut() {
                    h.granted_at += 1;
                }
            },
            |p: &mut PlainItem| p.history.clear(),
        ];
        for change in variants {
            change(&mut plain);
            let odd = bincode::serde::encode_to_vec(&plain, config).unwrap();
            let (decoded, _): (WorkItem, usize) =
                bincode::serde::decode_from_slice(&odd, config).unwrap();
            assert_eq!(decoded.holder_count(), plain.history.len());
            assert_eq!(
                bincode::serde::encode_to_vec(&decoded, config).unwrap(),
                odd
            );
        }
    }
}

/// An item written in the layout of snapshot format version 1 (no queue
/// control at the end) reads as the same item when decoded as version 1.
#[test]
fn an_item_of_format_version_1_decodes_without_control() {
    let config = bincode::config::standard();
    for item in items() {
        let bytes = bincode::serde::encode_to_vec(&item, config).unwrap();
        assert_eq!(bytes.last(), Some(&0), "no control: None, one zero byte");
        let v1 = &bytes[..bytes.len() - 1];
        let (decoded, read): (WorkItem, usize) = swarm_claims::decode_items_without_control(|| {
            bincode::serde::decode_from_slice(v1, config)
        })
        .unwrap();
        assert_eq!((decoded, read), (item, v1.len()));
    }
}

/// Queue control travels with the item, in bincode and JSON.
#[test]
fn an_items_queue_control_round_trips() {
    let mut state = State::new();
    let mut submit = Submit {
        id: "d1".into(),
        idempotency_key: String::new(),
        kind: "mail".into(),
        priority: 0,
        requires: vec![],
        payload: "{}".into(),
        max_attempts: 0,
        now: 1_000,
    };
    let control = swarm_claims::command::SubmitControl {
        not_before: 0,
        delay_ms: 60_000,
        concurrency_key: "smtp".into(),
    };
    submit.now = 1_000;
    let Response::Submitted { item, .. } =
        apply(&mut state, Command::SubmitWith(submit, control)).unwrap()
    else {
        panic!("not a submit answer")
    };
    assert_eq!(item.not_before(), 61_000);
    assert_eq!(item.concurrency_key().map(|k| &**k), Some("smtp"));
    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&item, config).unwrap();
    let (decoded, _): (WorkItem, usize) =
        bincode::serde::decode_from_slice(&bytes, config).unwrap();
    assert_eq!(decoded, item);
    let json = serde_json::to_string(&item).unwrap();
    assert_eq!(serde_json::from_str::<WorkItem>(&json).unwrap(), item);
}

/// What a claimed item costs in place: the sizes the memory bench's figure
/// rests on.
#[test]
fn items_and_events_keep_their_size() {
    assert_eq!(std::mem::size_of::<swarm_claims::ItemEvent>(), 40);
    assert!(std::mem::size_of::<WorkItem>() <= 192);
}

#[test]
fn the_fixture_uses_every_rare_field() {
    let items = items();
    assert!(items.iter().any(|i| !i.requires().is_empty()));
    assert!(items.iter().any(|i| i.error().is_some()));
    assert!(items.iter().any(|i| !i.journal().is_empty()));
    assert!(items.iter().any(|i| i.cancel_requested().is_some()));
    assert!(items.iter().any(|i| i.events().any(|e| e.step().is_some())));
}

#[test]
fn a_restored_state_shares_each_name_once() {
    let mut state = State::new();
    for cmd in items_commands() {
        apply(&mut state, cmd).unwrap();
    }
    let restored = State::from_snapshot(&state.to_snapshot().unwrap()).unwrap();
    assert_eq!(restored, state);
    let items: Vec<&WorkItem> = restored.items().collect();
    let agents: Vec<_> = items
        .iter()
        .filter_map(|i| i.lease.as_ref().map(|l| l.agent.clone()))
        .collect();
    assert_eq!(agents.len(), 2);
    assert!(swarm_claims::Text::ptr_eq(&agents[0], &agents[1]));
    let kinds: Vec<_> = items.iter().map(|i| i.kind.clone()).collect();
    assert!(swarm_claims::Text::ptr_eq(&kinds[0], &kinds[1]));
}

/// Two items of one type, both claimed by one agent.
fn items_commands() -> Vec<Command> {
    let submit = |id: &str| {
        Command::Submit(Submit {
            id: id.into(),
            idempotency_key: String::new(),
            kind: "task".into(),
            priority: 0,
            requires: Vec::new(),
            payload: "{}".into(),
            max_attempts: 0,
            now: 1_000,
        })
    };
    let claim = Command::Claim(Claim {
        agent: "agent-1".into(),
        kinds: Vec::new(),
        capabilities: Vec::new(),
        max: 2,
        lease_ms: 5_000,
        now: 2_000,
    });
    vec![submit("a"), submit("b"), claim]
}
