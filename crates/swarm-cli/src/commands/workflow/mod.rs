//! `swarmctl workflow ...`: check, draw and run reactor workflows on this
//! machine, and submit them to the cluster. Only `run` talks to a cluster;
//! the others never read `--endpoints`.

pub mod plan;
pub mod run;
pub mod run_local;
pub mod validate;

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Map, Value};
use swarm_reactor::{LoadError, Registry, ValidationErrors, WorkflowPayload, load_file};

use crate::cli::GlobalOpts;

#[derive(Debug, Subcommand)]
pub enum Workflow {
    /// Check a workflow spec and list every problem in it
    Validate(validate::Validate),
    /// Show a workflow's steps as a DAG, each marked undoable or not
    Plan(plan::Plan),
    /// Run a workflow in this process, showing each step as it starts and ends
    RunLocal(run_local::RunLocal),
    /// Submit a workflow to the cluster; with --wait, follow it to its end
    Run(run::Run),
}

impl Workflow {
    pub async fn run(self, global: GlobalOpts) -> Result<()> {
        let output = global.output;
        match self {
            Workflow::Validate(args) => validate::run(output, args),
            Workflow::Plan(args) => plan::run(args),
            Workflow::RunLocal(args) => run_local::run(output, args).await,
            Workflow::Run(args) => run::run(&super::connect(global)?, args).await,
        }
    }
}

/// Loads `file` (see [`load`]) and checks the `--input` flags against it:
/// what `run-local` runs and `run` submits.
fn load_with_inputs(
    file: &Path,
    flags: Vec<(String, Value)>,
) -> Result<(swarm_reactor::Workflow, Map<String, Value>)> {
    let workflow = load(file)?;
    let inputs = input_map(flags)?;
    if let Err(problems) = workflow.check_inputs(&inputs) {
        bail!(
            "workflow {:?} cannot start: {}",
            workflow.name(),
            problems.join("; ")
        );
    }
    Ok((workflow, inputs))
}

/// A run of the workflow in `file` with the `--input` flags, as the payload
/// of a work item of type `workflow` (`swarm_claims::WORKFLOW_KIND`): the
/// spec checked here first (as `run-local` checks it), then its text, the
/// inputs and the file's absolute directory. What `workflow run` submits
/// and what each fire of a `schedule create --workflow` submits.
pub(crate) fn workflow_payload(
    file: &Path,
    flags: Vec<(String, Value)>,
) -> Result<(swarm_reactor::Workflow, String)> {
    let (workflow, inputs) = load_with_inputs(file, flags)?;
    let spec = std::fs::read_to_string(file)
        .with_context(|| format!("read workflow spec {}", file.display()))?;
    let payload = WorkflowPayload {
        spec,
        inputs,
        base_dir: Some(base_dir(file)?),
        // The node that takes the submit adds its request's trace.
        trace: None,
    }
    .to_json()
    .context("encode the workflow payload")?;
    Ok((workflow, payload))
}

/// The absolute directory of the spec file: where the node resolves the
/// spec's relative paths (sub-workflows).
fn base_dir(file: &Path) -> Result<String> {
    let absolute = std::path::absolute(file)
        .with_context(|| format!("find the directory of {}", file.display()))?;
    let dir = absolute.parent().unwrap_or(Path::new("/"));
    Ok(dir.display().to_string())
}

/// The `--input` flags as the run's inputs; naming an input twice is a
/// mistake, not a silent override.
fn input_map(flags: Vec<(String, Value)>) -> Result<Map<String, Value>> {
    let mut inputs = Map::new();
    for (name, value) in flags {
        if inputs.contains_key(&name) {
            bail!("input {name:?} is given more than once");
        }
        inputs.insert(name, value);
    }
    Ok(inputs)
}

/// Loads and validates `file` with the built-in step kinds. When the spec is
/// invalid, every problem goes to stderr, one per line, before the error.
fn load(file: &Path) -> Result<swarm_reactor::Workflow> {
    load_file(file, &Registry::builtin()).map_err(|err| match err {
        LoadError::Invalid(problems) => invalid(file, &problems),
        // Its message already ends with the OS error, which `{:#}` would
        // print a second time as the source.
        io @ LoadError::Io { .. } => anyhow!("{io}"),
    })
}

/// Lists `problems` on stderr, one per line, and returns the error that ends
/// the command.
fn invalid(file: &Path, problems: &ValidationErrors) -> anyhow::Error {
    let file = file.display();
    for message in problems.messages() {
        eprintln!("{file}: {message}");
    }
    let n = problems.problems.len();
    anyhow!(
        "{file}: workflow is invalid ({n} problem{})",
        if n == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn base_dir_is_absolute() {
        let dir = base_dir(Path::new("cluster/workflows/x.yaml")).unwrap();
        assert!(Path::new(&dir).is_absolute(), "{dir}");
        assert!(dir.ends_with("cluster/workflows"), "{dir}");
    }
}
