//! Turns a [`WorkflowSpec`] into a runnable [`Workflow`]: resolves kinds, checks every reference,
//! finds cycles and computes the DAG, reporting every problem at once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{LoadError, ValidationErrors};
use crate::spec::{self, ActionSpec, At, Source, StepSpec, WorkflowSpec};
use crate::step::{Registry, Step};

/// A validated workflow, ready to run. Cheap to share behind an `Arc`.
pub struct Workflow {
    pub(crate) spec: WorkflowSpec,
    pub(crate) steps: Vec<ResolvedStep>,
    /// Step indices in an order where every step comes after its dependencies.
    pub(crate) order: Vec<usize>,
    pub(crate) index: HashMap<String, usize>,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.spec.name)
            .field("steps", &self.spec.steps.len())
            .finish()
    }
}

/// A step with its kind looked up and its dependencies as indices.
pub(crate) struct ResolvedStep {
    pub spec: StepSpec,
    pub runner: Runner,
    pub undo: Option<ResolvedAction>,
    pub compensate: Option<ResolvedAction>,
    /// Every step that must finish first (arguments and `wait_for`), sorted, no duplicates.
    pub deps: Vec<usize>,
    /// The subset of `deps` that pass data (for drawing the plan).
    pub data_deps: BTreeSet<usize>,
}

pub(crate) enum Runner {
    Kind(Arc<dyn Step>),
    Map {
        template: Box<ResolvedStep>,
        max_concurrency: Option<usize>,
    },
    Workflow(Arc<Workflow>),
}

pub(crate) struct ResolvedAction {
    pub spec: ActionSpec,
    pub kind: Arc<dyn Step>,
}

impl ResolvedStep {
    /// Whether a completed run of this step can be rolled back.
    pub fn undoable(&self) -> bool {
        self.undo.is_some()
            || match &self.runner {
                Runner::Kind(k) => k.can_undo(),
                Runner::Map { template, .. } => template.undoable(),
                Runner::Workflow(w) => w.steps.iter().any(ResolvedStep::undoable),
            }
    }
}

/// Parses and validates workflow text (YAML or JSON). `base_dir` is where `workflow` steps'
/// relative `path`s are found.
pub fn validate(
    text: &str,
    registry: &Registry,
    base_dir: &Path,
) -> Result<Workflow, ValidationErrors> {
    validate_in(text, registry, base_dir, &mut Vec::new())
}

fn validate_in(
    text: &str,
    registry: &Registry,
    base_dir: &Path,
    stack: &mut Vec<PathBuf>,
) -> Result<Workflow, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let doc = match spec::parse_document(text) {
        Ok(d) => d,
        Err(e) => {
            errs.push(None, None, e);
            return Err(errs);
        }
    };
    let Some(spec) = spec::parse_workflow(&doc, &mut errs) else {
        return Err(errs);
    };
    let wf = build(spec, registry, base_dir, stack, &mut errs);
    if errs.is_empty() { Ok(wf) } else { Err(errs) }
}

/// Reads, parses and validates a workflow file.
pub fn load_file(path: impl AsRef<Path>, registry: &Registry) -> Result<Workflow, LoadError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut stack = vec![path.canonicalize().unwrap_or_else(|_| path.to_owned())];
    Ok(validate_in(&text, registry, base, &mut stack)?)
}

impl Workflow {
    /// Validates a spec built in code.
    pub fn from_spec(spec: WorkflowSpec, registry: &Registry) -> Result<Self, ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let wf = build(spec, registry, Path::new("."), &mut Vec::new(), &mut errs);
        if errs.is_empty() { Ok(wf) } else { Err(errs) }
    }

    /// Parses and validates YAML or JSON text; `workflow` paths resolve from the current directory.
    pub fn parse(text: &str, registry: &Registry) -> Result<Self, ValidationErrors> {
        validate(text, registry, Path::new("."))
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &WorkflowSpec {
        &self.spec
    }

    /// Step names in spec order.
    pub fn step_names(&self) -> Vec<&str> {
        self.spec.steps.iter().map(|s| s.name.as_str()).collect()
    }

    /// Step names in an order where each comes after everything it depends on.
    pub fn topological_order(&self) -> Vec<&str> {
        self.order
            .iter()
            .map(|&i| self.spec.steps[i].name.as_str())
            .collect()
    }

    /// The steps `step` waits for, or `None` if there is no such step.
    pub fn dependencies(&self, step: &str) -> Option<Vec<&str>> {
        let i = *self.index.get(step)?;
        Some(
            self.steps[i]
                .deps
                .iter()
                .map(|&d| self.spec.steps[d].name.as_str())
                .collect(),
        )
    }

    /// Whether a completed `step` can be rolled back (`None` if there is no such step).
    pub fn is_undoable(&self, step: &str) -> Option<bool> {
        let i = *self.index.get(step)?;
        Some(self.steps[i].undoable())
    }

    /// Checks run inputs against the declared `inputs`: every one present, nothing undeclared.
    pub fn check_inputs(&self, inputs: &Map<String, Value>) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for name in &self.spec.inputs {
            if !inputs.contains_key(name) {
                problems.push(format!("input {name:?} is missing"));
            }
        }
        for name in inputs.keys() {
            if !self.spec.inputs.contains(name) {
                problems.push(format!(
                    "input {name:?} is not declared by workflow {:?} (declared: {})",
                    self.spec.name,
                    self.spec.inputs.join(", ")
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

fn build(
    spec: WorkflowSpec,
    registry: &Registry,
    base_dir: &Path,
    stack: &mut Vec<PathBuf>,
    errs: &mut ValidationErrors,
) -> Workflow {
    if spec.steps.is_empty() {
        errs.push(
            None,
            Some("steps"),
            format!("workflow {:?} has no steps", spec.name),
        );
    }
    let mut seen_steps = HashSet::new();
    let mut reported = HashSet::new();
    for s in &spec.steps {
        if !seen_steps.insert(s.name.as_str()) && reported.insert(s.name.as_str()) {
            errs.push(
                Some(&s.name),
                Some("name"),
                format!("step {:?} is defined more than once", s.name),
            );
        }
    }
    let mut seen_inputs = HashSet::new();
    for name in &spec.inputs {
        if !seen_inputs.insert(name) {
            errs.push(
                None,
                Some("inputs"),
                format!("input {name:?} is declared more than once"),
            );
        }
    }
    // First index wins for duplicated names, so references still resolve somewhere.
    let index: HashMap<String, usize> = spec
        .steps
        .iter()
        .enumerate()
        .rev()
        .map(|(i, s)| (s.name.clone(), i))
        .collect();

    let mut steps = Vec::with_capacity(spec.steps.len());
    for s in &spec.steps {
        let mut at = At {
            step: Some(s.name.clone()),
            prefix: String::new(),
            errs,
        };
        let mut deps = BTreeSet::new();
        let mut data_deps = BTreeSet::new();
        for (arg, source) in &s.arguments {
            match source {
                Source::Result { step, .. } if *step == s.name => {
                    at.argument(
                        arg,
                        "refers to its own step; a step cannot use its own result",
                    );
                }
                Source::Result { step, .. } => match index.get(step) {
                    Some(&d) => {
                        deps.insert(d);
                        data_deps.insert(d);
                    }
                    None => at.argument(arg, format!("refers to unknown step {step:?}")),
                },
                Source::Input { name, .. } if !spec.inputs.contains(name) => {
                    at.argument(arg, format!("refers to unknown input {name:?}"));
                }
                _ => {}
            }
        }
        for w in &s.wait_for {
            match index.get(w) {
                Some(_) if *w == s.name => at.field("wait_for", "refers to its own step"),
                Some(&d) => {
                    deps.insert(d);
                }
                None => at.field("wait_for", format!("refers to unknown step {w:?}")),
            }
        }
        let runner = resolve_runner(s, registry, base_dir, stack, &mut at);
        let undo = s
            .undo
            .as_ref()
            .and_then(|a| resolve_action(a, "undo", registry, &mut at));
        let compensate = s
            .compensate
            .as_ref()
            .and_then(|a| resolve_action(a, "compensate", registry, &mut at));
        steps.push(ResolvedStep {
            spec: s.clone(),
            runner: runner.unwrap_or_else(placeholder),
            undo,
            compensate,
            deps: deps.into_iter().collect(),
            data_deps,
        });
    }

    if let Some(Source::Result { step, .. }) = &spec.returns
        && !index.contains_key(step)
    {
        errs.push(
            None,
            Some("return"),
            format!("workflow field \"return\" refers to unknown step {step:?}"),
        );
    }

    let cycles = find_cycles(&steps, &spec.steps);
    for cycle in &cycles {
        errs.push(
            cycle.first().map(String::as_str),
            Some("arguments"),
            format!("steps form a cycle: {}", cycle.join(" -> ")),
        );
    }
    let order = if cycles.is_empty() {
        topological_order(&steps)
    } else {
        (0..steps.len()).collect()
    };
    Workflow {
        spec,
        steps,
        order,
        index,
    }
}

/// Stands in for a step whose kind could not be resolved; never runs because the workflow is
/// rejected.
fn placeholder() -> Runner {
    Runner::Kind(Arc::new(crate::kinds::Echo))
}

fn known_kinds(registry: &Registry) -> String {
    registry.names().join(", ")
}

fn resolve_runner(
    s: &StepSpec,
    registry: &Registry,
    base_dir: &Path,
    stack: &mut Vec<PathBuf>,
    at: &mut At<'_>,
) -> Option<Runner> {
    match s.run.as_str() {
        "" => None, // already reported by the parser
        "map" => resolve_map(s, registry, base_dir, stack, at),
        "workflow" => resolve_workflow(s, registry, base_dir, stack, at),
        kind => {
            let Some(k) = registry.get(kind) else {
                at.field(
                    "run",
                    format!(
                        "unknown step kind {kind:?} (known: {})",
                        known_kinds(registry)
                    ),
                );
                return None;
            };
            for problem in k.check(&s.with) {
                at.field("with", problem);
            }
            Some(Runner::Kind(k))
        }
    }
}

fn resolve_action(
    a: &ActionSpec,
    field: &str,
    registry: &Registry,
    at: &mut At<'_>,
) -> Option<ResolvedAction> {
    if a.run.is_empty() {
        return None;
    }
    let Some(kind) = registry.get(&a.run) else {
        at.field(
            &format!("{field}.run"),
            format!(
                "unknown step kind {:?} (known: {})",
                a.run,
                known_kinds(registry)
            ),
        );
        return None;
    };
    for problem in kind.check(&a.with) {
        at.field(&format!("{field}.with"), problem);
    }
    Some(ResolvedAction {
        spec: a.clone(),
        kind,
    })
}

fn resolve_map(
    s: &StepSpec,
    registry: &Registry,
    base_dir: &Path,
    stack: &mut Vec<PathBuf>,
    at: &mut At<'_>,
) -> Option<Runner> {
    if !s.arguments.contains_key("items") {
        at.argument(
            "items",
            "is required by a map step (the list to run the step over)",
        );
    }
    for reserved in ["item", "index"] {
        if s.arguments.contains_key(reserved) {
            at.argument(
                reserved,
                "is set by map for each element and cannot be given",
            );
        }
    }
    let with = match &s.with {
        Value::Object(m) => m,
        _ => {
            at.field(
                "with",
                "a map step needs `with: { step: { run: ..., with: ... } }`",
            );
            return None;
        }
    };
    for key in with.keys() {
        if key != "step" && key != "max_concurrency" {
            at.field(
                &format!("with.{key}"),
                "is not a known option (known: step, max_concurrency)",
            );
        }
    }
    let max_concurrency = match with.get("max_concurrency") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => {
                at.field(
                    "with.max_concurrency",
                    format!("must be an integer of at least 1, got {v}"),
                );
                None
            }
        },
    };
    let Some(doc) = with.get("step") else {
        at.field(
            "with.step",
            "is required (the step to run for each element)",
        );
        return None;
    };
    let before = at.errs.problems.len();
    let mut template = spec::parse_step(doc, 0, "with.step.", Some(&s.name), at.errs)?;
    template.name = s.name.clone();
    let mut inner_at = At {
        step: Some(s.name.clone()),
        prefix: "with.step.".into(),
        errs: at.errs,
    };
    let runner = match template.run.as_str() {
        "map" | "workflow" => {
            // Nesting composites inside map is not supported: keep the template a plain kind.
            inner_at.field(
                "run",
                format!(
                    "{:?} cannot be a map's step; use a workflow step around the map",
                    template.run
                ),
            );
            None
        }
        _ => resolve_runner(&template, registry, base_dir, stack, &mut inner_at),
    };
    let undo = template
        .undo
        .as_ref()
        .and_then(|a| resolve_action(a, "undo", registry, &mut inner_at));
    let compensate = template
        .compensate
        .as_ref()
        .and_then(|a| resolve_action(a, "compensate", registry, &mut inner_at));
    let runner = runner?;
    if at.errs.problems.len() > before {
        return None;
    }
    Some(Runner::Map {
        template: Box::new(ResolvedStep {
            spec: template,
            runner,
            undo,
            compensate,
            deps: Vec::new(),
            data_deps: BTreeSet::new(),
        }),
        max_concurrency,
    })
}

fn resolve_workflow(
    s: &StepSpec,
    registry: &Registry,
    base_dir: &Path,
    stack: &mut Vec<PathBuf>,
    at: &mut At<'_>,
) -> Option<Runner> {
    let with = match &s.with {
        Value::Object(m) => m,
        _ => {
            at.field(
                "with",
                "a workflow step needs `with: { path: FILE }` or `with: { spec: {...} }`",
            );
            return None;
        }
    };
    for key in with.keys() {
        if key != "path" && key != "spec" {
            at.field(
                &format!("with.{key}"),
                "is not a known option (known: path, spec)",
            );
        }
    }
    let (result, label) = match (with.get("path"), with.get("spec")) {
        (Some(Value::String(p)), None) => {
            let path = base_dir.join(p);
            let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
            if let Some(pos) = stack.iter().position(|x| *x == canonical) {
                let chain: Vec<String> = stack[pos..]
                    .iter()
                    .chain(std::iter::once(&canonical))
                    .map(|p| p.display().to_string())
                    .collect();
                at.field(
                    "with.path",
                    format!("workflows include each other: {}", chain.join(" -> ")),
                );
                return None;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    at.field("with.path", format!("cannot read {}: {e}", path.display()));
                    return None;
                }
            };
            stack.push(canonical);
            let base = path.parent().unwrap_or(Path::new("."));
            let r = validate_in(&text, registry, base, stack);
            stack.pop();
            (r, format!("in {p}"))
        }
        (None, Some(doc)) => {
            let mut sub = ValidationErrors::default();
            let r = match spec::parse_workflow(doc, &mut sub) {
                Some(spec) => {
                    let wf = build(spec, registry, base_dir, stack, &mut sub);
                    if sub.is_empty() { Ok(wf) } else { Err(sub) }
                }
                None => Err(sub),
            };
            (r, "in its inline spec".to_owned())
        }
        _ => {
            at.field(
                "with",
                "a workflow step needs exactly one of `path` (a file) or `spec` (inline)",
            );
            return None;
        }
    };
    match result {
        Ok(sub) => {
            for name in &sub.spec.inputs {
                if !s.arguments.contains_key(name) {
                    at.argument(name, format!("is required by workflow {:?}", sub.spec.name));
                }
            }
            for name in s.arguments.keys() {
                if !sub.spec.inputs.contains(name) {
                    at.argument(
                        name,
                        format!("is not an input of workflow {:?}", sub.spec.name),
                    );
                }
            }
            Some(Runner::Workflow(Arc::new(sub)))
        }
        Err(sub) => {
            let field = if with.contains_key("path") {
                "with.path"
            } else {
                "with.spec"
            };
            for p in sub.problems {
                at.field(field, format!("{label}: {}", p.message));
            }
            None
        }
    }
}

/// Every distinct cycle, each as names in data-flow order, closed (`a -> b -> a`) and rotated
/// to start at its smallest name so the same cycle is reported once.
fn find_cycles(steps: &[ResolvedStep], specs: &[StepSpec]) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let n = steps.len();
    let mut mark = vec![Mark::New; n];
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut seen = HashSet::new();
    for start in 0..n {
        if mark[start] != Mark::New {
            continue;
        }
        // (node, next dep position)
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Open;
        while let Some(top) = stack.last_mut() {
            let (node, pos) = *top;
            if let Some(&dep) = steps[node].deps.get(pos) {
                top.1 += 1;
                match mark[dep] {
                    Mark::New => {
                        mark[dep] = Mark::Open;
                        stack.push((dep, 0));
                    }
                    Mark::Open => {
                        let from = stack.iter().position(|(x, _)| *x == dep).unwrap_or(0);
                        // The stack follows "depends on"; data flows the other way.
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|(x, _)| *x).collect();
                        cycle.reverse();
                        let min = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, i)| &specs[**i].name)
                            .map_or(0, |(p, _)| p);
                        cycle.rotate_left(min);
                        let mut names: Vec<String> =
                            cycle.iter().map(|&i| specs[i].name.clone()).collect();
                        names.push(names[0].clone());
                        if seen.insert(names.clone()) {
                            found.push(names);
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    found
}

/// Kahn's algorithm, ties broken by spec order so plans read top to bottom like the file.
fn topological_order(steps: &[ResolvedStep]) -> Vec<usize> {
    let n = steps.len();
    let mut remaining: Vec<usize> = steps.iter().map(|s| s.deps.len()).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, s) in steps.iter().enumerate() {
        for &d in &s.deps {
            dependents[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependents[i] {
            remaining[j] -= 1;
            if remaining[j] == 0 {
                ready.insert(j);
            }
        }
    }
    order
}
