//! `swarmctl workflow ...`: check, draw and run reactor workflows on this
//! machine. No cluster is involved: these commands never read `--endpoints`.

pub mod plan;
pub mod run_local;
pub mod validate;

use std::path::Path;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use swarm_reactor::{LoadError, Registry, ValidationErrors, load_file};

use crate::output::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum Workflow {
    /// Check a workflow spec and list every problem in it
    Validate(validate::Validate),
    /// Show a workflow's steps as a DAG, each marked undoable or not
    Plan(plan::Plan),
    /// Run a workflow in this process, showing each step as it starts and ends
    RunLocal(run_local::RunLocal),
}

impl Workflow {
    pub async fn run(self, output: OutputFormat) -> Result<()> {
        match self {
            Workflow::Validate(args) => validate::run(output, args),
            Workflow::Plan(args) => plan::run(args),
            Workflow::RunLocal(args) => run_local::run(output, args).await,
        }
    }
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
