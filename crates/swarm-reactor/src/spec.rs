//! The workflow spec: the typed form of a YAML or JSON document, and the lenient parser that
//! turns a document into it while collecting every problem instead of stopping at the first.
//!
//! Parsing checks shapes (types, durations, argument syntax, unknown fields); what the fields
//! refer to (steps, inputs, kinds, cycles) is checked by [`crate::validate`](mod@crate::validate).
//!
//! A YAML note: inside a flow map (`{ ... }`) a plain scalar cannot contain `[`, `{` or `,`, so
//! write `items: "value([1, 2])"` (quoted) or simply `items: [1, 2]`; in block style
//! `items: value([1, 2])` works as is.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backoff::Backoff;
use crate::error::ValidationErrors;

/// A whole workflow as written, before its references are checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Names the caller must supply; `input(NAME)` may only use these.
    #[serde(default)]
    pub inputs: Vec<String>,
    pub steps: Vec<StepSpec>,
    /// At most this many step attempts run at once; `None` is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// The whole run, undo excluded, must finish within this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    /// What the run returns; `None` returns every step's result keyed by step name.
    #[serde(default, rename = "return", skip_serializing_if = "Option::is_none")]
    pub returns: Option<Source>,
}

/// One step as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSpec {
    pub name: String,
    /// The step kind: a registered [`crate::Step`], or `map` / `switch` / `workflow`.
    pub run: String,
    /// Configuration for the kind (`command` for exec, `url` for http, ...).
    #[serde(default)]
    pub with: Value,
    #[serde(default)]
    pub arguments: BTreeMap<String, Source>,
    /// Steps that must finish first without passing data.
    #[serde(default)]
    pub wait_for: Vec<String>,
    #[serde(default)]
    pub max_retries: u32,
    #[serde(default)]
    pub backoff: Backoff,
    /// Limit on each attempt.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    /// `false` runs the step alone: nothing else runs while it does.
    #[serde(default = "yes", rename = "async")]
    pub run_async: bool,
    /// Node capabilities the step needs.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Rolls back this step once completed, when a later failure aborts the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<ActionSpec>,
    /// Runs when this step fails for good; its result replaces the step's and the run continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensate: Option<ActionSpec>,
    /// `pause`: when the step fails for good, the run stops there, undoing
    /// nothing (no `compensate`), and waits paused for an operator to fix
    /// the cause and resume it; resumed, the step runs again. `fail` (the
    /// default): the run fails and is undone.
    #[serde(default, skip_serializing_if = "OnExhausted::is_fail")]
    pub on_exhausted: OnExhausted,
}

/// What a step that failed for good does to its run (`on_exhausted:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    #[default]
    Fail,
    Pause,
}

impl OnExhausted {
    fn is_fail(&self) -> bool {
        *self == OnExhausted::Fail
    }
}

fn yes() -> bool {
    true
}

/// An `undo` or `compensate` action: a step kind run with its own config.
///
/// Its arguments are `{"arguments": <the step's arguments>, "result": <its result>}` for undo
/// and `{"arguments": ..., "error": "<message>"}` for compensate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    pub run: String,
    #[serde(default)]
    pub with: Value,
    #[serde(default)]
    pub max_retries: u32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
}

/// Where an argument's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `input(NAME[.path])`
    Input { name: String, path: Vec<String> },
    /// `result(STEP[.path])`
    Result { step: String, path: Vec<String> },
    /// `value(JSON)` or any plain scalar, list or map.
    Value(Value),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dotted = |head: &str, path: &[String]| {
            let mut s = head.to_owned();
            for p in path {
                s.push('.');
                s.push_str(p);
            }
            s
        };
        match self {
            Source::Input { name, path } => write!(f, "input({})", dotted(name, path)),
            Source::Result { step, path } => write!(f, "result({})", dotted(step, path)),
            Source::Value(v) => write!(f, "value({v})"),
        }
    }
}

impl Source {
    /// Reads an argument as written: `input(..)`, `result(..)` and `value(..)` strings are
    /// sources, anything else is a literal value.
    pub fn parse(raw: &Value) -> Result<Source, String> {
        let Value::String(s) = raw else {
            return Ok(Source::Value(raw.clone()));
        };
        let t = s.trim();
        if let Some(inner) = call(t, "input") {
            let (name, path) = reference(inner).map_err(|e| format!("input({inner}): {e}"))?;
            return Ok(Source::Input { name, path });
        }
        if let Some(inner) = call(t, "result") {
            let (step, path) = reference(inner).map_err(|e| format!("result({inner}): {e}"))?;
            return Ok(Source::Result { step, path });
        }
        if let Some(inner) = call(t, "value") {
            return serde_json::from_str(inner)
                .map(Source::Value)
                .map_err(|e| format!("value({inner}) is not valid json: {e}"));
        }
        Ok(Source::Value(raw.clone()))
    }

    /// The step this source reads a result from, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Source::Result { step, .. } => Some(step),
            _ => None,
        }
    }
}

fn call<'a>(s: &'a str, func: &str) -> Option<&'a str> {
    s.strip_prefix(func)?
        .strip_prefix('(')?
        .strip_suffix(')')
        .map(str::trim)
}

/// `name.a.0.b` -> (`name`, [`a`, `0`, `b`]).
fn reference(s: &str) -> Result<(String, Vec<String>), String> {
    let mut parts = s.split('.').map(str::trim);
    let head = parts.next().unwrap_or_default();
    if head.is_empty() {
        return Err("a name is required".into());
    }
    let path: Vec<String> = parts.map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err("the path has an empty segment".into());
    }
    Ok((head.to_owned(), path))
}

/// Follows a dotted path into a value: object keys by name, list elements by index.
pub(crate) fn follow<'v>(mut v: &'v Value, path: &[String]) -> Result<&'v Value, String> {
    for (i, seg) in path.iter().enumerate() {
        let next = match v {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        v = next.ok_or_else(|| {
            if i == 0 {
                format!("has no field {seg:?}")
            } else {
                format!("has no field {:?}", path[..=i].join("."))
            }
        })?;
    }
    Ok(v)
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => humantime::parse_duration(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// Parses YAML or JSON text into a document. One error: nothing else can be checked without it.
pub(crate) fn parse_document(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{')
        && let Ok(v) = serde_json::from_str(text)
    {
        return Ok(v);
    }
    serde_yaml_ng::from_str::<Value>(text)
        .map_err(|e| format!("workflow is not valid yaml or json: {e}"))
}

/// Where problems found while parsing get reported: the owner (`workflow` or `step "a"`) and a
/// field prefix for nested specs (`with.step.`).
pub(crate) struct At<'e> {
    pub step: Option<String>,
    pub prefix: String,
    pub errs: &'e mut ValidationErrors,
}

impl At<'_> {
    pub fn owner(&self) -> String {
        match &self.step {
            Some(s) => format!("step {s:?}"),
            None => "workflow".into(),
        }
    }

    pub fn field(&mut self, field: &str, msg: impl fmt::Display) {
        let f = format!("{}{field}", self.prefix);
        let m = format!("{} field {f:?}: {msg}", self.owner());
        self.errs.push(self.step.as_deref(), Some(&f), m);
    }

    pub fn argument(&mut self, arg: &str, msg: impl fmt::Display) {
        let f = format!("{}arguments.{arg}", self.prefix);
        let m = if self.prefix.is_empty() {
            format!("{} argument {arg:?} {msg}", self.owner())
        } else {
            format!("{} field {f:?} {msg}", self.owner())
        };
        self.errs.push(self.step.as_deref(), Some(&f), m);
    }

    pub fn plain(&mut self, msg: String) {
        let step = self.step.clone();
        self.errs.push(step.as_deref(), None, msg);
    }
}

/// Reads typed fields out of a map, reporting wrong types, and afterwards any unknown keys.
struct Fields<'m> {
    map: &'m Map<String, Value>,
    known: Vec<&'static str>,
}

impl<'m> Fields<'m> {
    fn new(map: &'m Map<String, Value>) -> Self {
        Self {
            map,
            known: Vec::new(),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'m Value> {
        self.known.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, at: &mut At<'_>, key: &'static str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                at.field(key, format!("expected a string, got {}", kind_of(other)));
                None
            }
        }
    }

    fn duration(&mut self, at: &mut At<'_>, key: &'static str) -> Option<Duration> {
        let v = self.get(key)?;
        duration_value(v).map_err(|e| at.field(key, e)).ok()
    }

    fn uint(&mut self, at: &mut At<'_>, key: &'static str) -> Option<u64> {
        match self.get(key)? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            other => {
                at.field(
                    key,
                    format!("expected a non-negative integer, got {}", show(other)),
                );
                None
            }
        }
    }

    fn boolean(&mut self, at: &mut At<'_>, key: &'static str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                at.field(key, format!("expected true or false, got {}", show(other)));
                None
            }
        }
    }

    fn names(&mut self, at: &mut At<'_>, key: &'static str) -> Vec<String> {
        match self.get(key) {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => at.field(key, format!("expected names, got {}", show(other))),
                    }
                }
                out
            }
            Some(other) => {
                at.field(
                    key,
                    format!("expected a list of names, got {}", show(other)),
                );
                Vec::new()
            }
        }
    }

    fn unknown(&self, at: &mut At<'_>) {
        for key in self.map.keys() {
            if !self.known.contains(&key.as_str()) {
                at.field(
                    key,
                    format!("is not a known field (known: {})", self.known.join(", ")),
                );
            }
        }
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => kind_of(v).to_owned(),
        other => other.to_string(),
    }
}

/// A humantime duration string (`500ms`, `10s`, `1m 30s`).
pub(crate) fn duration_value(v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("bad duration {s:?}: {}", e.to_string().to_lowercase())),
        other => Err(format!(
            "bad duration {}: expected a string like \"500ms\" or \"10s\"",
            show(other)
        )),
    }
}

/// Reads the top level of a document. Always returns a spec (with defaults where fields were
/// wrong) so that reference checks can still run and report their problems too.
pub(crate) fn parse_workflow(doc: &Value, errs: &mut ValidationErrors) -> Option<WorkflowSpec> {
    let mut at = At {
        step: None,
        prefix: String::new(),
        errs,
    };
    let Value::Object(map) = doc else {
        at.plain(format!(
            "workflow must be a map with name and steps, got {}",
            kind_of(doc)
        ));
        return None;
    };
    let mut f = Fields::new(map);
    let name = f.string(&mut at, "name").unwrap_or_default();
    if name.trim().is_empty() && map.contains_key("name") {
        at.field("name", "must not be empty");
    } else if !map.contains_key("name") {
        at.field("name", "is required");
    }
    let description = f.string(&mut at, "description");
    let inputs = match f.get("inputs") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.clone()),
                other => {
                    at.field(
                        "inputs",
                        format!("expected input names, got {}", show(other)),
                    );
                    None
                }
            })
            .collect(),
        // A map of name -> description is accepted too.
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        Some(other) => {
            at.field(
                "inputs",
                format!("expected a list of names, got {}", show(other)),
            );
            Vec::new()
        }
    };
    let max_concurrency = f.uint(&mut at, "max_concurrency").and_then(|n| {
        if n == 0 {
            at.field("max_concurrency", "must be at least 1");
            None
        } else {
            Some(usize::try_from(n).unwrap_or(usize::MAX))
        }
    });
    let timeout = f.duration(&mut at, "timeout");
    let returns = f.get("return").and_then(|v| match parse_return(v) {
        Ok(s) => Some(s),
        Err(e) => {
            at.field("return", e);
            None
        }
    });
    let mut steps = Vec::new();
    match f.get("steps") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(s) = parse_step(item, i, "", None, at.errs) {
                    steps.push(s);
                }
            }
        }
        Some(other) => at.field(
            "steps",
            format!("expected a list of steps, got {}", kind_of(other)),
        ),
    }
    f.unknown(&mut at);
    Some(WorkflowSpec {
        name,
        description,
        inputs,
        steps,
        max_concurrency,
        timeout,
        returns,
    })
}

fn parse_return(v: &Value) -> Result<Source, String> {
    let Value::String(s) = v else {
        return Err(format!(
            "expected a step name or result(STEP.path), got {}",
            kind_of(v)
        ));
    };
    let t = s.trim();
    if call(t, "result").is_some() {
        return Source::parse(v);
    }
    let (step, path) = reference(t)?;
    Ok(Source::Result { step, path })
}

/// Reads one step. `template_of` names the `map` step whose template this is; a template has no
/// name, arguments or ordering of its own. `prefix` is its field path (`with.step.`) for messages.
pub(crate) fn parse_step(
    doc: &Value,
    index: usize,
    prefix: &str,
    template_of: Option<&str>,
    errs: &mut ValidationErrors,
) -> Option<StepSpec> {
    let inner = template_of.is_some();
    let Value::Object(map) = doc else {
        errs.push(
            None,
            None,
            format!("step #{} must be a map, got {}", index + 1, kind_of(doc)),
        );
        return None;
    };
    let mut f = Fields::new(map);
    let mut at = At {
        step: template_of.map(str::to_owned),
        prefix: prefix.to_owned(),
        errs,
    };
    if inner {
        for key in ["name", "arguments", "wait_for", "requires", "async"] {
            if f.get(key).is_some() {
                at.field(
                    key,
                    "cannot be set on a map's step template; set it on the map step itself",
                );
            }
        }
    }
    let name = if inner {
        String::new()
    } else {
        match f.string(&mut at, "name") {
            Some(n) if !n.trim().is_empty() => n,
            _ => {
                at.plain(format!("step #{} has no name", index + 1));
                format!("#{}", index + 1)
            }
        }
    };
    if !inner {
        at.step = Some(name.clone());
    }
    let run = f.string(&mut at, "run").unwrap_or_else(|| {
        if !map.contains_key("run") {
            at.field("run", "is required (the step kind, e.g. exec or echo)");
        }
        String::new()
    });
    let with = f.get("with").cloned().unwrap_or(Value::Null);
    let mut arguments = BTreeMap::new();
    let mut wait_for = Vec::new();
    let mut requires = Vec::new();
    let mut run_async = true;
    if !inner {
        match f.get("arguments") {
            None => {}
            Some(Value::Object(args)) => {
                for (k, v) in args {
                    match Source::parse(v) {
                        Ok(s) => {
                            arguments.insert(k.clone(), s);
                        }
                        Err(e) => at.argument(k, format!("is malformed: {e}")),
                    }
                }
            }
            Some(other) => at.field(
                "arguments",
                format!("expected a map of name: source, got {}", kind_of(other)),
            ),
        }
        wait_for = f.names(&mut at, "wait_for");
        requires = f.names(&mut at, "requires");
        run_async = f.boolean(&mut at, "async").unwrap_or(true);
    }
    let max_retries = f
        .uint(&mut at, "max_retries")
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(0);
    let backoff = match f.get("backoff") {
        None => Backoff::default(),
        Some(v) => parse_backoff(v, &mut at),
    };
    let timeout = f.duration(&mut at, "timeout");
    let undo = f.get("undo").and_then(|v| parse_action(v, "undo", &mut at));
    let compensate = f
        .get("compensate")
        .and_then(|v| parse_action(v, "compensate", &mut at));
    let on_exhausted = match f.string(&mut at, "on_exhausted").as_deref() {
        None | Some("fail") => OnExhausted::Fail,
        Some("pause") => OnExhausted::Pause,
        Some(other) => {
            at.field(
                "on_exhausted",
                format!("{other:?} is not one of: fail, pause"),
            );
            OnExhausted::Fail
        }
    };
    f.unknown(&mut at);
    Some(StepSpec {
        name,
        run,
        with,
        arguments,
        wait_for,
        max_retries,
        backoff,
        timeout,
        run_async,
        requires,
        undo,
        compensate,
        on_exhausted,
    })
}

fn parse_backoff(v: &Value, at: &mut At<'_>) -> Backoff {
    let mut b = Backoff::default();
    let Value::Object(map) = v else {
        at.field(
            "backoff",
            format!(
                "expected a map with initial, max, factor, jitter, got {}",
                kind_of(v)
            ),
        );
        return b;
    };
    let nested = format!("{}backoff.", at.prefix);
    let saved = std::mem::replace(&mut at.prefix, nested);
    let mut f = Fields::new(map);
    if let Some(d) = f.duration(at, "initial") {
        b.initial = d;
    }
    if let Some(d) = f.duration(at, "max") {
        b.max = d;
    }
    match f.get("factor") {
        None => {}
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() && x >= 1.0 => b.factor = x,
            _ => at.field("factor", format!("must be a number >= 1, got {n}")),
        },
        Some(other) => at.field(
            "factor",
            format!("must be a number >= 1, got {}", show(other)),
        ),
    }
    if let Some(j) = f.boolean(at, "jitter") {
        b.jitter = j;
    }
    f.unknown(at);
    if b.initial > b.max {
        at.field(
            "initial",
            format!(
                "{} is longer than max {}",
                humantime::format_duration(b.initial),
                humantime::format_duration(b.max)
            ),
        );
    }
    at.prefix = saved;
    b
}

fn parse_action(v: &Value, field: &'static str, at: &mut At<'_>) -> Option<ActionSpec> {
    let Value::Object(map) = v else {
        at.field(
            field,
            format!("expected a map with run and with, got {}", kind_of(v)),
        );
        return None;
    };
    let nested = format!("{}{field}.", at.prefix);
    let saved = std::mem::replace(&mut at.prefix, nested);
    let mut f = Fields::new(map);
    let run = f.string(at, "run");
    if run.is_none() && !map.contains_key("run") {
        at.field("run", "is required");
    }
    let with = f.get("with").cloned().unwrap_or(Value::Null);
    let max_retries = f
        .uint(at, "max_retries")
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(0);
    let timeout = f.duration(at, "timeout");
    f.unknown(at);
    at.prefix = saved;
    Some(ActionSpec {
        run: run.unwrap_or_default(),
        with,
        max_retries,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            Source::parse(&json!("input(file.path.0)")).unwrap(),
            Source::Input {
                name: "file".into(),
                path: vec!["path".into(), "0".into()]
            }
        );
        assert_eq!(
            Source::parse(&json!("result(a)")).unwrap(),
            Source::Result {
                step: "a".into(),
                path: vec![]
            }
        );
        assert_eq!(
            Source::parse(&json!("value(\"dev\")")).unwrap(),
            Source::Value(json!("dev"))
        );
        assert_eq!(
            Source::parse(&json!({"a": 1})).unwrap(),
            Source::Value(json!({"a": 1}))
        );
        assert_eq!(
            Source::parse(&json!("plain")).unwrap(),
            Source::Value(json!("plain"))
        );
        assert!(Source::parse(&json!("result()")).is_err());
        assert!(Source::parse(&json!("result(a..b)")).is_err());
        assert!(Source::parse(&json!("value(nope)")).is_err());
    }

    #[test]
    fn follow_walks_objects_and_lists() {
        let v = json!({"a": [{"b": 3}]});
        let path: Vec<String> = vec!["a".into(), "0".into(), "b".into()];
        assert_eq!(follow(&v, &path).unwrap(), &json!(3));
        let bad: Vec<String> = vec!["a".into(), "7".into()];
        assert_eq!(follow(&v, &bad).unwrap_err(), "has no field \"a.7\"");
    }

    #[test]
    fn source_display_round_trips() {
        for s in ["input(a.b)", "result(x)", "value(3)"] {
            let parsed = Source::parse(&json!(s)).unwrap();
            assert_eq!(parsed.to_string(), s);
        }
    }

    #[test]
    fn parse_reports_every_shape_problem() {
        let doc = json!({
            "name": "w",
            "timeout": "soon",
            "steps": [
                {"name": "a", "run": "echo", "max_retries": "three", "async": "maybe",
                 "timeout": 5, "retries": 1, "backoff": {"factor": 0.5}},
                {"run": "echo"}
            ]
        });
        let mut errs = ValidationErrors::default();
        let spec = parse_workflow(&doc, &mut errs).unwrap();
        assert_eq!(spec.steps.len(), 2);
        let msgs = errs.messages();
        let expect = [
            "workflow field \"timeout\": bad duration \"soon\"",
            "step \"a\" field \"max_retries\": expected a non-negative integer, got \"three\"",
            "step \"a\" field \"async\": expected true or false, got \"maybe\"",
            "step \"a\" field \"timeout\": bad duration 5",
            "step \"a\" field \"retries\": is not a known field",
            "step \"a\" field \"backoff.factor\": must be a number >= 1, got 0.5",
            "step #2 has no name",
        ];
        for e in expect {
            assert!(
                msgs.iter().any(|m| m.starts_with(e)),
                "missing {e:?} in {msgs:#?}"
            );
        }
    }
}
