//! Workflow work items: the payload format, and its validation before a
//! submit is proposed (a spec that cannot run never enters the log).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use swarm_reactor::{Registry, Workflow};

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
}

impl WorkflowPayload {
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
            swarm_reactor::validate(&payload.spec, &Registry::builtin(), Path::new(&base))
                .map_err(|e| format!("invalid workflow spec:\n{}", e.messages().join("\n")))?;
        workflow
            .check_inputs(&payload.inputs)
            .map_err(|problems| format!("invalid workflow inputs: {}", problems.join("; ")))?;
        Ok((payload, Arc::new(workflow)))
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
}
