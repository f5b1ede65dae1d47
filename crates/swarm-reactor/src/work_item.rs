//! A workflow as a Swarm work item: the contract between whoever submits
//! one (`swarmctl workflow run`, any client), the node that validates and
//! runs it, and whoever reads its journal back (`swarmctl work get`,
//! `workflow run --wait`). Both sides use these types; none mirrors them.
//!
//! - [`WorkflowPayload`]: the item's payload (spec text, inputs, base
//!   directory, the submitter's [`TraceContext`]), and its validation before
//!   a submit is proposed (a spec that cannot run never enters the log).
//! - [`JournalRecord`]: one entry of the item's journal as the node records
//!   it: which run it belongs to, and the reactor's [`JournalEntry`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::journal::JournalEntry;
use crate::step::Registry;
use crate::validate::Workflow;

/// The payload of a work item of type `workflow`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkflowPayload {
    /// The workflow spec, YAML or JSON text.
    pub spec: String,
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// Where relative paths in the spec (sub-workflows) resolve; the
    /// submitting client's directory of the spec file.
    #[serde(default)]
    pub base_dir: Option<String>,
    /// The trace of the request that submitted the workflow: every run of
    /// the item, on whichever node claims it or is handed it, is a child of
    /// it. Absent in payloads from before tracing, and when nothing traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

/// A W3C trace context (<https://www.w3.org/TR/trace-context/>) as it
/// travels with a work item: the two headers, verbatim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// `00-<trace id>-<parent span id>-<flags>`.
    pub traceparent: String,
    /// Vendor entries; empty when there are none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tracestate: String,
}

impl WorkflowPayload {
    /// The payload's JSON text, as submitted.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Parses and validates a payload: the spec, and the inputs it needs.
    /// Every problem is reported, one per line.
    pub fn load(payload_json: &str) -> Result<(WorkflowPayload, Arc<Workflow>), String> {
        let payload: WorkflowPayload = serde_json::from_str(payload_json).map_err(|e| {
            format!(
                "invalid payload: a workflow item needs {{\"spec\": \"<yaml or json>\", \"inputs\": {{...}}}}: {e}"
            )
        })?;
        let base = payload
            .base_dir
            .as_deref()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        let workflow =
            crate::validate::validate(&payload.spec, &Registry::builtin(), Path::new(&base))
                .map_err(|e| format!("invalid workflow spec:\n{}", e.messages().join("\n")))?;
        workflow
            .check_inputs(&payload.inputs)
            .map_err(|problems| format!("invalid workflow inputs: {}", problems.join("; ")))?;
        Ok((payload, Arc::new(workflow)))
    }
}

/// One entry of a workflow item's journal: the reactor's entry and the run
/// it belongs to. The top-level run's id is the item id; a sub-workflow's
/// run is `<item id>/<step>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    pub run: String,
    pub entry: JournalEntry,
}

impl JournalRecord {
    /// `None` for text that is not a recorded reactor entry (a journal
    /// written by something else is skipped rather than fatal).
    pub fn parse(outcome_json: &str) -> Option<JournalRecord> {
        serde_json::from_str(outcome_json).ok()
    }

    /// The JSON text the node records in the item's journal.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_valid_payload_loads() {
        let p = serde_json::json!({
            "spec": "name: t\ninputs: [x]\nsteps:\n  - name: a\n    run: echo\n    arguments: { v: input(x) }\n",
            "inputs": {"x": 1}
        });
        let (_, wf) = WorkflowPayload::load(&p.to_string()).unwrap();
        assert_eq!(wf.name(), "t");
    }

    #[test]
    fn problems_are_named() {
        let p = serde_json::json!({
            "spec": "name: t\nsteps:\n  - name: a\n    run: nope\n",
            "inputs": {}
        });
        let err = WorkflowPayload::load(&p.to_string()).unwrap_err();
        assert!(err.contains("nope"), "{err}");
        let missing = serde_json::json!({
            "spec": "name: t\ninputs: [x]\nsteps:\n  - name: a\n    run: echo\n",
        });
        let err = WorkflowPayload::load(&missing.to_string()).unwrap_err();
        assert!(err.contains("\"x\""), "{err}");
        assert!(WorkflowPayload::load("[1]").unwrap_err().contains("spec"));
    }

    #[test]
    fn a_payload_round_trips_through_its_json() {
        let p = WorkflowPayload {
            spec: "name: t\ninputs: [x]\nsteps:\n  - name: a\n    run: echo\n".into(),
            inputs: Map::from_iter([("x".to_string(), serde_json::json!(1))]),
            base_dir: Some("/tmp".into()),
            trace: Some(TraceContext {
                traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                tracestate: String::new(),
            }),
        };
        let (back, _) = WorkflowPayload::load(&p.to_json().unwrap()).unwrap();
        assert_eq!(back.inputs, p.inputs);
        assert_eq!(back.base_dir.as_deref(), Some("/tmp"));
        assert_eq!(back.trace, p.trace);
    }

    #[test]
    fn a_payload_without_a_trace_loads_and_writes_none() {
        let p = serde_json::json!({
            "spec": "name: t\nsteps:\n  - name: a\n    run: echo\n",
            "inputs": {}
        });
        let (back, _) = WorkflowPayload::load(&p.to_string()).unwrap();
        assert_eq!(back.trace, None);
        assert!(!back.to_json().unwrap().contains("trace"));
    }

    #[test]
    fn a_record_round_trips_and_foreign_text_is_skipped() {
        let text = r#"{"run":"w1","entry":{"event":"step_started","step":"a","attempt":1}}"#;
        let record = JournalRecord::parse(text).unwrap();
        assert_eq!(record.run, "w1");
        assert_eq!(
            JournalRecord::parse(&record.to_json().unwrap()),
            Some(record)
        );
        assert_eq!(JournalRecord::parse("null"), None);
    }
}
