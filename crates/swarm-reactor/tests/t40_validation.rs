//! Validation: every problem is reported at once, each naming the step and field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use swarm_reactor::{LoadError, Registry, Workflow, load_file, validate};

fn problems(yaml: &str) -> Vec<String> {
    match Workflow::parse(yaml, &Registry::builtin()) {
        Ok(_) => Vec::new(),
        Err(e) => e.messages(),
    }
}

#[track_caller]
fn assert_has(msgs: &[String], want: &str) {
    assert!(
        msgs.iter().any(|m| m.starts_with(want)),
        "no problem starting with {want:?} in:\n{}",
        msgs.join("\n")
    );
}

#[test]
fn a_valid_workflow_has_no_problems() {
    assert!(problems("name: ok\nsteps:\n  - { name: a, run: echo }\n").is_empty());
}

#[test]
fn every_problem_is_reported_at_once() {
    let msgs = problems(
        r#"
name: broken
inputs: [file]
timeout: forever
steps:
  - name: a
    run: echo
    arguments: { x: result(b) }
  - name: b
    run: echo
    arguments: { x: result(a), y: input(nope), z: result(ghost) }
  - name: a
    run: echo
  - name: k
    run: teleport
  - name: t
    run: echo
    timeout: 5 parsecs
    backoff: { initial: soon }
  - name: w
    run: echo
    wait_for: [nobody]
  - name: e
    run: exec
  - name: s
    run: echo
    arguments: { me: result(s) }
  - name: u
    run: echo
    undo: { run: vanish }
return: ghost
"#,
    );
    let expected = [
        "workflow field \"timeout\": bad duration \"forever\"",
        "step \"a\" is defined more than once",
        "step \"b\" argument \"y\" refers to unknown input \"nope\"",
        "step \"b\" argument \"z\" refers to unknown step \"ghost\"",
        "step \"k\" field \"run\": unknown step kind \"teleport\" (known: echo, exec, fail, http, map, signal, sleep, switch, workflow)",
        "step \"t\" field \"timeout\": bad duration \"5 parsecs\"",
        "step \"t\" field \"backoff.initial\": bad duration \"soon\"",
        "step \"w\" field \"wait_for\": refers to unknown step \"nobody\"",
        "step \"e\" field \"with\": \"command\" is required",
        "step \"s\" argument \"me\" refers to its own step",
        "step \"u\" field \"undo.run\": unknown step kind \"vanish\"",
        "workflow field \"return\" refers to unknown step \"ghost\"",
        "steps form a cycle: a -> b -> a",
    ];
    for want in expected {
        assert_has(&msgs, want);
    }
    assert_eq!(msgs.len(), expected.len(), "{}", msgs.join("\n"));
}

#[test]
fn unknown_step_in_result() {
    let msgs =
        problems("name: w\nsteps:\n  - { name: b, run: echo, arguments: { x: result(c) } }\n");
    assert_eq!(
        msgs,
        vec!["step \"b\" argument \"x\" refers to unknown step \"c\""]
    );
}

#[test]
fn unknown_input() {
    let msgs = problems(
        "name: w\ninputs: [a]\nsteps:\n  - { name: b, run: echo, arguments: { x: input(z.path) } }\n",
    );
    assert_eq!(
        msgs,
        vec!["step \"b\" argument \"x\" refers to unknown input \"z\""]
    );
}

#[test]
fn cycles_are_printed_in_data_flow_order() {
    let msgs = problems(
        "name: w\nsteps:\n  - { name: a, run: echo, arguments: { x: result(c) } }\n  - { name: b, run: echo, arguments: { x: result(a) } }\n  - { name: c, run: echo, wait_for: [b] }\n",
    );
    assert_eq!(msgs, vec!["steps form a cycle: a -> b -> c -> a"]);
}

#[test]
fn duplicate_names_and_inputs() {
    let msgs = problems(
        "name: w\ninputs: [i, i]\nsteps:\n  - { name: a, run: echo }\n  - { name: a, run: echo }\n",
    );
    assert_has(&msgs, "step \"a\" is defined more than once");
    assert_has(&msgs, "input \"i\" is declared more than once");
}

#[test]
fn unknown_kind_lists_the_known_ones() {
    let msgs = problems("name: w\nsteps:\n  - { name: a, run: nope }\n");
    assert_eq!(
        msgs,
        vec![
            "step \"a\" field \"run\": unknown step kind \"nope\" (known: echo, exec, fail, http, map, signal, sleep, switch, workflow)"
        ]
    );
}

#[test]
fn bad_durations_everywhere() {
    let msgs = problems(
        "name: w\ntimeout: 3\nsteps:\n  - { name: a, run: sleep, with: { duration: later }, timeout: 1 fortnight, backoff: { max: x } }\n",
    );
    assert_has(&msgs, "workflow field \"timeout\": bad duration 3");
    assert_has(
        &msgs,
        "step \"a\" field \"with\": \"duration\": bad duration \"later\"",
    );
    assert_has(
        &msgs,
        "step \"a\" field \"timeout\": bad duration \"1 fortnight\"",
    );
    assert_has(
        &msgs,
        "step \"a\" field \"backoff.max\": bad duration \"x\"",
    );
}

#[test]
fn missing_return_target() {
    let msgs = problems("name: w\nsteps:\n  - { name: a, run: echo }\nreturn: result(b.x)\n");
    assert_eq!(
        msgs,
        vec!["workflow field \"return\" refers to unknown step \"b\""]
    );
}

#[test]
fn async_must_be_a_boolean_and_cannot_be_set_on_a_map_template() {
    let msgs = problems(
        r#"
name: w
steps:
  - { name: a, run: echo, async: maybe }
  - name: m
    run: map
    arguments: { items: [] }
    with: { step: { run: echo, async: false } }
"#,
    );
    assert_has(
        &msgs,
        "step \"a\" field \"async\": expected true or false, got \"maybe\"",
    );
    assert_has(
        &msgs,
        "step \"m\" field \"with.step.async\": cannot be set on a map's step template",
    );
}

#[test]
fn max_concurrency_must_be_positive() {
    let msgs = problems("name: w\nmax_concurrency: 0\nsteps:\n  - { name: a, run: echo }\n");
    assert_eq!(
        msgs,
        vec!["workflow field \"max_concurrency\": must be at least 1"]
    );
}

#[test]
fn empty_workflow() {
    assert_eq!(
        problems("name: empty\nsteps: []\n"),
        vec!["workflow \"empty\" has no steps"]
    );
    assert_has(
        &problems("name: empty\n"),
        "workflow \"empty\" has no steps",
    );
}

#[test]
fn structural_problems() {
    assert_has(&problems("- just\n- a list\n"), "workflow must be a map");
    assert_has(
        &problems("name: [unclosed\n"),
        "workflow is not valid yaml or json",
    );
    assert_has(
        &problems("steps:\n  - { name: a, run: echo }\n"),
        "workflow field \"name\": is required",
    );
    assert_has(
        &problems("name: w\nsteps:\n  - { run: echo }\n"),
        "step #1 has no name",
    );
    assert_has(
        &problems("name: w\nsteps:\n  - { name: a }\n"),
        "step \"a\" field \"run\": is required",
    );
    assert_has(
        &problems("name: w\nsteps:\n  - { name: a, run: echo, retries: 3 }\n"),
        "step \"a\" field \"retries\": is not a known field",
    );
    assert_has(
        &problems(
            "name: w\nsteps:\n  - { name: a, run: echo, arguments: { x: \"value(nope)\" } }\n",
        ),
        "step \"a\" argument \"x\" is malformed: value(nope) is not valid json",
    );
}

#[test]
fn map_needs_items_and_a_step() {
    let msgs = problems("name: w\nsteps:\n  - { name: m, run: map, with: {} }\n");
    assert_has(
        &msgs,
        "step \"m\" argument \"items\" is required by a map step",
    );
    assert_has(&msgs, "step \"m\" field \"with.step\": is required");
    let msgs = problems(
        "name: w\nsteps:\n  - { name: m, run: map, arguments: { items: [] }, with: { step: { run: nope } } }\n",
    );
    assert_has(
        &msgs,
        "step \"m\" field \"with.step.run\": unknown step kind \"nope\"",
    );
}

#[test]
fn inline_sub_workflow_problems_are_reported_with_the_step() {
    let msgs = problems(
        r#"
name: w
steps:
  - name: sub
    run: workflow
    arguments: { extra: value(1) }
    with:
      spec:
        name: inner
        inputs: [needed]
        steps:
          - { name: x, run: echo, arguments: { a: result(y) } }
"#,
    );
    assert_has(
        &msgs,
        "step \"sub\" field \"with.spec\": in its inline spec: step \"x\" argument \"a\" refers to unknown step \"y\"",
    );
    let msgs = problems(
        "name: w\nsteps:\n  - name: sub\n    run: workflow\n    arguments: { extra: value(1) }\n    with: { spec: { name: inner, inputs: [needed], steps: [ { name: x, run: echo } ] } }\n",
    );
    assert_has(
        &msgs,
        "step \"sub\" argument \"needed\" is required by workflow \"inner\"",
    );
    assert_has(
        &msgs,
        "step \"sub\" argument \"extra\" is not an input of workflow \"inner\"",
    );
}

#[test]
fn workflow_files_that_include_each_other_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "name: a\nsteps:\n  - { name: to_b, run: workflow, with: { path: b.yaml } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "name: b\nsteps:\n  - { name: to_a, run: workflow, with: { path: a.yaml } }\n",
    )
    .unwrap();
    let err = load_file(dir.path().join("a.yaml"), &Registry::builtin()).unwrap_err();
    let msgs = err.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains("workflows include each other"), "{msgs:?}");
}

#[test]
fn unreadable_files_are_an_io_error() {
    let err = load_file("/nonexistent/w.yaml", &Registry::builtin()).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }));
    assert!(
        err.to_string()
            .starts_with("read workflow /nonexistent/w.yaml")
    );
}

#[test]
fn json_specs_work_too() {
    let wf = validate(
        r#"{"name": "j", "steps": [{"name": "a", "run": "echo"}]}"#,
        &Registry::builtin(),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(wf.step_names(), vec!["a"]);
}

#[test]
fn the_display_lists_every_problem() {
    let err = Workflow::parse(
        "name: w\nsteps:\n  - { name: a, run: x }\n  - { name: b, run: y }\n",
        &Registry::builtin(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("workflow is invalid (2 problems):\n  - step \"a\""),
        "{text}"
    );
}
