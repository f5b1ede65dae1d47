//! `plan`: text stages and mermaid, each step marked undoable or not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use swarm_reactor::{PlanFormat, Registry, Workflow, plan};

const SPEC: &str = r#"
name: shop
description: a small saga
inputs: [order]
max_concurrency: 2
steps:
  - name: reserve
    run: echo
    arguments: { order: input(order) }
    undo: { run: echo }
  - name: charge
    run: echo
    arguments: { r: result(reserve) }
    max_retries: 3
    timeout: 5s
  - name: audit
    run: echo
    wait_for: [reserve]
    async: false
  - name: ship
    run: echo
    arguments: { c: result(charge) }
return: ship
"#;

#[test]
fn text_plan_shows_stages_and_undoability() {
    let wf = Workflow::parse(SPEC, &Registry::builtin()).unwrap();
    let text = plan::render(&wf, PlanFormat::Text);
    let expected = "\
workflow shop: a small saga
inputs: order
max_concurrency: 2, timeout: none
return: result(ship)

stage 1:
  reserve (echo) [undoable]

stage 2:
  charge (echo) after reserve [retries 3; timeout 5s; not undoable]
  audit (echo) after reserve [runs alone; not undoable]

stage 3:
  ship (echo) after charge [not undoable]
";
    assert_eq!(text, expected);
}

#[test]
fn mermaid_plan_draws_data_and_ordering_edges() {
    let wf = Workflow::parse(SPEC, &Registry::builtin()).unwrap();
    let m = plan::render(&wf, PlanFormat::Mermaid);
    assert!(m.starts_with("flowchart TD\n"));
    assert!(
        m.contains("s0[\"reserve<br/>echo · undoable\"]:::undoable"),
        "{m}"
    );
    assert!(
        m.contains("s1[\"charge<br/>echo · not undoable<br/>retries 3; timeout 5s\"]"),
        "{m}"
    );
    assert!(m.contains("s0 --> s1"));
    assert!(m.contains("s0 -.-> s2"), "wait_for is dashed: {m}");
    assert!(m.contains("classDef undoable"));
}

#[test]
fn composites_are_labelled_and_undoable_through_their_parts() {
    let wf = Workflow::parse(
        r#"
name: c
steps:
  - name: each
    run: map
    arguments: { items: [1, 2] }
    with: { step: { run: echo, undo: { run: echo } } }
  - name: sub
    run: workflow
    with: { spec: { name: inner, steps: [ { name: x, run: echo } ] } }
"#,
        &Registry::builtin(),
    )
    .unwrap();
    let text = plan::render(&wf, PlanFormat::Text);
    assert!(text.contains("each (map of echo) [undoable]"), "{text}");
    assert!(
        text.contains("sub (workflow inner) [not undoable]"),
        "{text}"
    );
    assert_eq!(wf.is_undoable("each"), Some(true));
    assert_eq!(wf.is_undoable("sub"), Some(false));
}

#[test]
fn formats_parse() {
    assert_eq!("text".parse::<PlanFormat>(), Ok(PlanFormat::Text));
    assert_eq!("mermaid".parse::<PlanFormat>(), Ok(PlanFormat::Mermaid));
    assert!("svg".parse::<PlanFormat>().is_err());
}

#[test]
fn dependencies_name_each_steps_direct_predecessors_in_plan_order() {
    let deps = |name: &str, run: &str, on: &[&str]| {
        (
            name.to_string(),
            run.to_string(),
            on.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    let wf = Workflow::parse(SPEC, &Registry::builtin()).unwrap();
    assert_eq!(
        plan::dependencies(&wf),
        [
            deps("reserve", "echo", &[]),
            deps("charge", "echo", &["reserve"]),
            deps("audit", "echo", &["reserve"]),
            deps("ship", "echo", &["charge"]),
        ]
    );

    // Written last, planned first; data and `wait_for` both count, only direct ones.
    let wf = Workflow::parse(
        r#"
name: fan-in
steps:
  - name: report
    run: echo
    arguments: { a: result(left), b: result(right) }
    wait_for: [root]
  - name: left
    run: echo
    arguments: { r: result(root) }
  - name: right
    run: sleep
    with: { duration: 1ms }
    wait_for: [root]
  - name: each
    run: map
    arguments: { items: [1] }
    with: { step: { run: echo } }
  - name: root
    run: echo
"#,
        &Registry::builtin(),
    )
    .unwrap();
    assert_eq!(
        plan::dependencies(&wf),
        [
            deps("each", "map", &[]),
            deps("root", "echo", &[]),
            deps("left", "echo", &["root"]),
            deps("right", "sleep", &["root"]),
            deps("report", "echo", &["left", "right", "root"]),
        ]
    );
}
