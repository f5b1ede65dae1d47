//! Renders a validated workflow's DAG for people: plain text in stages (steps in one stage can
//! run at the same time) or a mermaid flowchart. Each step is marked undoable or not. For
//! programs that draw the DAG themselves, [`dependencies`] lists each step's direct ones.

use std::fmt::Write as _;
use std::str::FromStr;

use crate::validate::{ResolvedStep, Runner, Workflow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlanFormat {
    #[default]
    Text,
    Mermaid,
}

impl FromStr for PlanFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(PlanFormat::Text),
            "mermaid" => Ok(PlanFormat::Mermaid),
            other => Err(format!(
                "unknown plan format {other:?} (expected text or mermaid)"
            )),
        }
    }
}

/// The plan in the given format.
pub fn render(workflow: &Workflow, format: PlanFormat) -> String {
    match format {
        PlanFormat::Text => render_text(workflow),
        PlanFormat::Mermaid => render_mermaid(workflow),
    }
}

/// Step names grouped by stage: a step's stage is one more than its latest dependency's, so
/// the steps of a stage depend only on earlier stages.
pub fn stages(workflow: &Workflow) -> Vec<Vec<&str>> {
    let mut level = vec![0usize; workflow.steps.len()];
    for &i in &workflow.order {
        level[i] = workflow.steps[i]
            .deps
            .iter()
            .map(|&d| level[d] + 1)
            .max()
            .unwrap_or(0);
    }
    let depth = level.iter().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); depth];
    for &i in &workflow.order {
        out[level[i]].push(workflow.steps[i].spec.name.as_str());
    }
    out
}

/// Each step's direct dependencies, in plan order (stage by stage, as [`stages`] lists them):
/// `(step, run kind, depends_on)`, where the run kind is the step's `run` as written (a
/// registered kind, `map` or `workflow`) and `depends_on` names every step that must finish
/// first (data and `wait_for`), in spec order. The edges of the DAG a dashboard draws.
pub fn dependencies(workflow: &Workflow) -> Vec<(String, String, Vec<String>)> {
    stages(workflow)
        .into_iter()
        .flatten()
        .filter_map(|name| workflow.index.get(name))
        .map(|&i| {
            let step = &workflow.steps[i];
            let depends_on = step
                .deps
                .iter()
                .map(|&d| workflow.steps[d].spec.name.clone())
                .collect();
            (step.spec.name.clone(), step.spec.run.clone(), depends_on)
        })
        .collect()
}

fn kind_label(step: &ResolvedStep) -> String {
    match &step.runner {
        Runner::Kind(_) => step.spec.run.clone(),
        Runner::Map { template, .. } => format!("map of {}", template.spec.run),
        Runner::Workflow(w) => format!("workflow {}", w.spec.name),
        Runner::Switch { .. } => match step.spec.arguments.get("on") {
            Some(on) => format!("switch on {on}"),
            None => "switch".to_owned(),
        },
    }
}

fn undo_label(step: &ResolvedStep) -> &'static str {
    if step.undoable() {
        "undoable"
    } else {
        "not undoable"
    }
}

fn details(step: &ResolvedStep) -> Vec<String> {
    let s = &step.spec;
    let mut d = Vec::new();
    if s.max_retries > 0 {
        d.push(format!("retries {}", s.max_retries));
    }
    if let Some(t) = s.timeout {
        d.push(format!("timeout {}", humantime::format_duration(t)));
    }
    if !s.run_async {
        d.push("runs alone".into());
    }
    if !s.requires.is_empty() {
        d.push(format!("requires {}", s.requires.join(", ")));
    }
    if step.compensate.is_some() {
        d.push("compensates".into());
    }
    d
}

/// Plain text, one stage per block.
pub fn render_text(workflow: &Workflow) -> String {
    let spec = &workflow.spec;
    let mut out = format!("workflow {}", spec.name);
    if let Some(d) = &spec.description {
        let _ = write!(out, ": {}", d.trim());
    }
    out.push('\n');
    if !spec.inputs.is_empty() {
        let _ = writeln!(out, "inputs: {}", spec.inputs.join(", "));
    }
    let _ = writeln!(
        out,
        "max_concurrency: {}, timeout: {}",
        spec.max_concurrency
            .map_or("unlimited".to_owned(), |n| n.to_string()),
        spec.timeout
            .map_or("none".to_owned(), |t| humantime::format_duration(t)
                .to_string())
    );
    if let Some(r) = &spec.returns {
        let _ = writeln!(out, "return: {r}");
    }
    for (n, stage) in stages(workflow).iter().enumerate() {
        let _ = writeln!(out, "\nstage {}:", n + 1);
        for name in stage {
            if let Some(&i) = workflow.index.get(*name) {
                write_step(&mut out, workflow, i, "  ");
            }
        }
    }
    out
}

/// One step's line, and under a `switch` each branch's steps in run order.
fn write_step(out: &mut String, workflow: &Workflow, i: usize, indent: &str) {
    let step = &workflow.steps[i];
    let _ = write!(out, "{indent}{} ({})", step.spec.name, kind_label(step));
    if !step.deps.is_empty() {
        let deps: Vec<&str> = step
            .deps
            .iter()
            .map(|&d| workflow.steps[d].spec.name.as_str())
            .collect();
        let _ = write!(out, " after {}", deps.join(", "));
    }
    let mut d = details(step);
    d.push(undo_label(step).to_owned());
    let _ = writeln!(out, " [{}]", d.join("; "));
    if let Runner::Switch { branches, default } = &step.runner {
        for (k, b) in branches.iter().enumerate() {
            let mark = if *default == Some(k) {
                " (default)"
            } else {
                ""
            };
            let _ = write!(out, "{indent}  branch {}{mark}", b.name);
            match &b.workflow.spec.returns {
                Some(r) => {
                    let _ = writeln!(out, ", return {r}:");
                }
                None => out.push_str(":\n"),
            }
            for &j in &b.workflow.order {
                write_step(out, &b.workflow, j, &format!("{indent}    "));
            }
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// A mermaid flowchart: solid arrows pass data, dashed ones only order (`wait_for`); undoable
/// steps have a thick border.
pub fn render_mermaid(workflow: &Workflow) -> String {
    let mut out = String::from("flowchart TD\n");
    write_mermaid(&mut out, workflow, "s");
    out.push_str("    classDef undoable stroke-width:3px\n");
    out
}

/// The nodes and edges of `workflow`, node ids starting with `id`; a `switch` step's
/// branches are subgraphs its node points into, each arrow labelled with the branch.
fn write_mermaid(out: &mut String, workflow: &Workflow, id: &str) {
    for &i in &workflow.order {
        let step = &workflow.steps[i];
        let mut label = format!(
            "{}<br/>{} · {}",
            escape(&step.spec.name),
            escape(&kind_label(step)),
            undo_label(step)
        );
        let d = details(step);
        if !d.is_empty() {
            let _ = write!(label, "<br/>{}", escape(&d.join("; ")));
        }
        let class = if step.undoable() { ":::undoable" } else { "" };
        let _ = writeln!(out, "    {id}{i}[\"{label}\"]{class}");
    }
    for &i in &workflow.order {
        for &d in &workflow.steps[i].deps {
            let arrow = if workflow.steps[i].data_deps.contains(&d) {
                "-->"
            } else {
                "-.->"
            };
            let _ = writeln!(out, "    {id}{d} {arrow} {id}{i}");
        }
    }
    for &i in &workflow.order {
        let Runner::Switch { branches, default } = &workflow.steps[i].runner else {
            continue;
        };
        for (k, b) in branches.iter().enumerate() {
            let inner = format!("{id}{i}b{k}s");
            let mark = if *default == Some(k) {
                " (default)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    subgraph {id}{i}b{k}[\"{}: {}{mark}\"]",
                escape(&workflow.steps[i].spec.name),
                escape(&b.name)
            );
            write_mermaid(out, &b.workflow, &inner);
            out.push_str("    end\n");
            for (j, s) in b.workflow.steps.iter().enumerate() {
                if s.deps.is_empty() {
                    let _ = writeln!(out, "    {id}{i} -->|{}| {inner}{j}", escape(&b.name));
                }
            }
        }
    }
}
