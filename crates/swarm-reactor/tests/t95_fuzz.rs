//! Edge fuzzing of what a submitter controls: the workflow spec (YAML or
//! JSON text) and the payload that carries it. Whatever arrives, parsing and
//! validation never panic; a refused spec lists its problems, each a sentence
//! that says what is wrong; an accepted one is a DAG whose order puts every
//! step after the steps it needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Value, json};
use swarm_reactor::{Registry, Workflow, WorkflowPayload};

/// Step names that collide, plus the odd ones.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_string),
        1 => Just(String::new()),
        1 => any::<String>(),
        1 => Just("x".repeat(300)),
    ]
}

/// Step kinds: the built-in ones and some that do not exist.
fn kind() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "echo", "exec", "fail", "http", "map", "sleep", "workflow", "teleport", "",
    ])
    .prop_map(str::to_string)
}

/// An argument: a literal, a reference (well or badly formed), or anything.
fn argument() -> impl Strategy<Value = Value> {
    prop_oneof![
        name().prop_map(|n| json!(format!("result({n})"))),
        name().prop_map(|n| json!(format!("input({n})"))),
        prop::sample::select(vec![
            "result(",
            "input()",
            "result(a).x.y",
            "${a}",
            "result(a"
        ])
        .prop_map(|s| json!(s)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<String>().prop_map(|s| json!(s)),
        Just(json!({"nested": ["result(a)", null, 1.5]})),
    ]
}

/// A duration as people write them, and as they should not.
fn duration() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "5s",
            "0s",
            "1ms",
            "2h",
            "99999999999999999h",
            "soon",
            "-1s",
            ""
        ])
        .prop_map(|s| json!(s)),
        any::<u64>().prop_map(|n| json!(n)),
    ]
}

fn step() -> impl Strategy<Value = Value> {
    (
        name(),
        kind(),
        btree_map("[a-z]{1,3}", argument(), 0..4),
        proptest::option::of(vec(name(), 0..3)),
        proptest::option::of(duration()),
        proptest::option::of(any::<i64>()),
        proptest::option::of((duration(), duration())),
        proptest::option::of(kind()),
        proptest::option::of(btree_map("[a-z]{1,8}", argument(), 0..3)),
    )
        .prop_map(
            |(name, run, arguments, wait_for, timeout, retries, backoff, undo, with)| {
                let mut s = json!({ "name": name, "run": run, "arguments": arguments });
                if let Some(w) = wait_for {
                    s["wait_for"] = json!(w);
                }
                if let Some(t) = timeout {
                    s["timeout"] = t;
                }
                if let Some(r) = retries {
                    s["retries"] = json!(r);
                }
                if let Some((initial, max)) = backoff {
                    s["backoff"] = json!({ "initial": initial, "max": max });
                }
                if let Some(u) = undo {
                    s["undo"] = json!({ "run": u });
                }
                if let Some(w) = with {
                    s["with"] = json!(w);
                }
                s
            },
        )
}

fn spec() -> impl Strategy<Value = Value> {
    (
        name(),
        vec(name(), 0..3),
        vec(step(), 0..6),
        proptest::option::of(name()),
        proptest::option::of(duration()),
    )
        .prop_map(|(name, inputs, steps, ret, timeout)| {
            let mut s = json!({ "name": name, "inputs": inputs, "steps": steps });
            if let Some(r) = ret {
                s["return"] = json!(r);
            }
            if let Some(t) = timeout {
                s["timeout"] = t;
            }
            s
        })
}

/// Parses `text`: never a panic; either a DAG in order or problems that each
/// say something.
fn check(text: &str) -> Result<(), TestCaseError> {
    match Workflow::parse(text, &Registry::builtin()) {
        Ok(workflow) => {
            let order = workflow.topological_order();
            prop_assert_eq!(order.len(), workflow.step_names().len());
            for (at, step) in order.iter().enumerate() {
                for dep in workflow.dependencies(step).unwrap_or_default() {
                    let dep_at = order.iter().position(|s| *s == dep);
                    prop_assert!(
                        dep_at.is_some_and(|d| d < at),
                        "{step} runs before {dep}, which it needs"
                    );
                }
            }
        }
        Err(errors) => {
            let messages = errors.messages();
            prop_assert!(!messages.is_empty(), "refused without a problem");
            for m in messages {
                prop_assert!(m.trim().len() >= 8, "a problem that says too little: {m:?}");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_specs_parse_or_list_their_problems(spec in spec()) {
        check(&spec.to_string())?;
        // The same spec as YAML takes the same path.
        check(&serde_yaml_ng::to_string(&spec).unwrap())?;
    }

    #[test]
    fn arbitrary_text_is_refused_not_a_panic(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn yaml_shaped_text_is_refused_not_a_panic(
        text in "(name: [a-z]{0,3}\n|steps:\n|  - |\\{|\\}|\\[|\\]|run: [a-z]{0,5}\n|&a |\\*a |!!str |: |- )*",
    ) {
        check(&text)?;
    }

    #[test]
    fn arbitrary_payloads_are_refused_with_a_reason(
        payload in prop_oneof![
            any::<String>(),
            spec().prop_map(|s| json!({ "spec": s.to_string(), "inputs": {} }).to_string()),
            spec().prop_map(|s| json!({ "spec": s }).to_string()),
            any::<String>().prop_map(|s| json!({ "spec": s }).to_string()),
        ],
    ) {
        if let Err(e) = WorkflowPayload::load(&payload) {
            prop_assert!(e.trim().len() >= 8, "{e:?}");
        }
    }
}
