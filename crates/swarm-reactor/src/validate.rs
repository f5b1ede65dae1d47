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
    /// Runs the one branch the `on` argument names (or `default`) as a sub-run.
    Switch {
        branches: Vec<Branch>,
        default: Option<usize>,
    },
}

/// One named branch of a `switch` step: a workflow whose inputs are the step's arguments.
pub(crate) struct Branch {
    pub name: String,
    pub workflow: Arc<Workflow>,
}

/// The branch a `switch` takes for its `on` value: the branch of that name (a string as it
/// is, a number or boolean as written in JSON), else `default`.
pub(crate) fn pick_branch<'b>(
    branches: &'b [Branch],
    default: Option<usize>,
    on: &Value,
) -> Result<&'b Branch, String> {
    let key = match on {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(on.to_string()),
        _ => None,
    };
    let named = key
        .as_deref()
        .and_then(|k| branches.iter().find(|b| b.name == k));
    match (named, default.and_then(|d| branches.get(d))) {
        (Some(b), _) | (None, Some(b)) => Ok(b),
        (None, None) => {
            let names: Vec<&str> = branches.iter().map(|b| b.name.as_str()).collect();
            let got = match key {
                Some(k) => format!("{k:?}"),
                None => format!("{on} (a switch picks by a string, number or boolean)"),
            };
            Err(format!(
                "argument \"on\" is {got}, which names no branch (branches: {}) and the switch has no default",
                names.join(", ")
            ))
        }
    }
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
                Runner::Switch { branches, .. } => branches
                    .iter()
                    .any(|b| b.workflow.steps.iter().any(ResolvedStep::undoable)),
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

    /// A `switch` step's branches as `(name, workflow, is the default)`, by name, or `None`
    /// when `step` is not a switch.
    pub fn branches(&self, step: &str) -> Option<Vec<(&str, &Workflow, bool)>> {
        let i = *self.index.get(step)?;
        let Runner::Switch { branches, default } = &self.steps[i].runner else {
            return None;
        };
        Some(
            branches
                .iter()
                .enumerate()
                .map(|(k, b)| (b.name.as_str(), &*b.workflow, *default == Some(k)))
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
                    None => match branch_home(&spec.steps, step) {
                        Some((switch, branch)) => at.argument(
                            arg,
                            format!(
                                "refers to step {step:?}, which is inside branch {branch:?} of \
                                 switch {switch:?}; outside a switch use its result: \
                                 result({switch}.{step})"
                            ),
                        ),
                        None => at.argument(arg, format!("refers to unknown step {step:?}")),
                    },
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

    check_switch_references(&steps, &index, spec.returns.as_ref(), errs);
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
        "switch" => resolve_switch(s, registry, base_dir, stack, at),
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
        "map" | "switch" | "workflow" => {
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

fn resolve_switch(
    s: &StepSpec,
    registry: &Registry,
    base_dir: &Path,
    stack: &mut Vec<PathBuf>,
    at: &mut At<'_>,
) -> Option<Runner> {
    const SHAPE: &str =
        "a switch step needs `with: { branches: { NAME: [steps...] }, default: NAME }`";
    let Value::Object(with) = &s.with else {
        at.field("with", SHAPE);
        return None;
    };
    for key in with.keys() {
        if key != "branches" && key != "default" {
            at.field(
                &format!("with.{key}"),
                "is not a known option (known: branches, default)",
            );
        }
    }
    if !s.arguments.contains_key("on") {
        at.field(
            "arguments",
            "a switch step needs argument \"on\": the value that picks the branch",
        );
    }
    let docs = match with.get("branches") {
        Some(Value::Object(docs)) if !docs.is_empty() => docs,
        Some(Value::Object(_)) => {
            at.field("with.branches", "must name at least one branch");
            return None;
        }
        Some(other) => {
            at.field(
                "with.branches",
                format!(
                    "expected a map of branch name to its steps, got {}",
                    spec::kind_of(other)
                ),
            );
            return None;
        }
        None => {
            at.field("with.branches", format!("is required: {SHAPE}"));
            return None;
        }
    };
    // A branch's inputs are the switch step's arguments, `on` included.
    let inputs: Vec<Value> = s
        .arguments
        .keys()
        .map(|k| Value::from(k.as_str()))
        .collect();
    let mut branches = Vec::new();
    let mut ok = true;
    for (name, doc) in docs {
        let field = format!("with.branches.{name}");
        if name.trim().is_empty() || name.contains('/') {
            at.field(&field, "a branch name must not be empty or contain '/'");
            ok = false;
            continue;
        }
        let mut body = match doc {
            Value::Array(_) => Map::from_iter([("steps".to_owned(), doc.clone())]),
            Value::Object(m) => m.clone(),
            other => {
                at.field(
                    &field,
                    format!(
                        "expected the branch's steps (a list, or a map with steps and return), got {}",
                        spec::kind_of(other)
                    ),
                );
                ok = false;
                continue;
            }
        };
        for key in ["name", "inputs"] {
            if body.contains_key(key) {
                at.field(
                    &format!("{field}.{key}"),
                    "cannot be set: a branch's inputs are the switch step's arguments",
                );
                ok = false;
            }
        }
        body.insert("name".into(), Value::from(format!("{}/{name}", s.name)));
        body.insert("inputs".into(), Value::Array(inputs.clone()));
        let mut sub = ValidationErrors::default();
        let built = spec::parse_workflow(&Value::Object(body), &mut sub)
            .map(|spec| build(spec, registry, base_dir, stack, &mut sub));
        match built {
            Some(workflow) if sub.is_empty() => branches.push(Branch {
                name: name.clone(),
                workflow: Arc::new(workflow),
            }),
            _ => {
                for p in sub.problems {
                    at.field(&field, format!("in branch {name:?}: {}", p.message));
                }
                ok = false;
            }
        }
    }
    let default = match with.get("default") {
        None => None,
        Some(Value::String(d)) if docs.contains_key(d) => {
            branches.iter().position(|b| b.name == *d)
        }
        Some(Value::String(d)) => {
            let names: Vec<&str> = docs.keys().map(String::as_str).collect();
            at.field(
                "with.default",
                format!("names no branch: {d:?} (branches: {})", names.join(", ")),
            );
            ok = false;
            None
        }
        Some(other) => {
            at.field(
                "with.default",
                format!("expected a branch name, got {}", spec::kind_of(other)),
            );
            ok = false;
            None
        }
    };
    ok.then_some(Runner::Switch { branches, default })
}

/// What a reference to `result(SWITCH.KEY...)` needs: each branch that returns all its
/// steps' results (no `return`) has a step `KEY`. `None` when every branch provides it.
fn missing_in_branches(branches: &[Branch], path: &[String]) -> Option<String> {
    let key = path.first()?;
    branches
        .iter()
        .filter(|b| b.workflow.spec.returns.is_none() && !b.workflow.index.contains_key(key))
        .map(|b| {
            format!(
                "branch {:?} has no step {key:?} (its steps: {})",
                b.name,
                b.workflow.step_names().join(", ")
            )
        })
        .reduce(|a, b| format!("{a}; {b}"))
}

/// The `switch` step and branch that step `name` is written inside, for a clearer "unknown
/// step" (read from the spec as written, before the branches are built).
fn branch_home(specs: &[StepSpec], name: &str) -> Option<(String, String)> {
    specs.iter().filter(|s| s.run == "switch").find_map(|s| {
        let Some(Value::Object(branches)) = s.with.get("branches") else {
            return None;
        };
        branches.iter().find_map(|(branch, doc)| {
            let steps = match doc {
                Value::Array(steps) => steps,
                Value::Object(m) => m.get("steps")?.as_array()?,
                _ => return None,
            };
            steps
                .iter()
                .any(|st| st.get("name").and_then(Value::as_str) == Some(name))
                .then(|| (s.name.clone(), branch.clone()))
        })
    })
}

/// Steps outside a switch see only its result, the taken branch's: a reference into it
/// (`result(route.summary)`) must be provided by every branch.
fn check_switch_references(
    steps: &[ResolvedStep],
    index: &HashMap<String, usize>,
    returns: Option<&Source>,
    errs: &mut ValidationErrors,
) {
    let missing = |source: &Source| {
        let Source::Result { step, path } = source else {
            return None;
        };
        let Runner::Switch { branches, .. } = &steps[*index.get(step)?].runner else {
            return None;
        };
        missing_in_branches(branches, path).map(|why| {
            format!(
                "uses {source}, which not every branch of switch {step:?} provides: {why}; \
                 give each branch that step, or a `return`"
            )
        })
    };
    for s in steps {
        let mut at = At {
            step: Some(s.spec.name.clone()),
            prefix: String::new(),
            errs,
        };
        for (arg, source) in &s.spec.arguments {
            if let Some(why) = missing(source) {
                at.argument(arg, why);
            }
        }
    }
    if let Some(why) = returns.and_then(missing) {
        errs.push(
            None,
            Some("return"),
            format!("workflow field \"return\" {why}"),
        );
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
