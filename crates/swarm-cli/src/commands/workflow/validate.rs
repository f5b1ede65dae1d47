//! `swarmctl workflow validate FILE`: parses and validates a spec without
//! running anything. Every problem is listed on stderr, one per line, each
//! naming the step and field it is in; `-o json` also prints them on stdout.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;
use serde_json::json;
use swarm_reactor::{LoadError, Registry, load_file};

use crate::output::{OutputFormat, print_json, print_text};

#[derive(Debug, Args)]
pub struct Validate {
    /// Workflow spec, YAML or JSON
    pub file: PathBuf,
}

pub fn run(output: OutputFormat, args: Validate) -> Result<()> {
    let file = args.file.display().to_string();
    match load_file(&args.file, &Registry::builtin()) {
        Ok(workflow) => {
            let steps = workflow.spec().steps.len();
            match output {
                OutputFormat::Json => print_json(&json!({
                    "file": file,
                    "valid": true,
                    "steps": steps,
                    "problems": [],
                })),
                OutputFormat::Table => print_text(&format!(
                    "{file}: ok ({steps} step{})",
                    if steps == 1 { "" } else { "s" }
                )),
            }
        }
        Err(LoadError::Invalid(problems)) => {
            if output == OutputFormat::Json {
                print_json(&json!({
                    "file": file,
                    "valid": false,
                    "problems": problems.problems,
                }))?;
            }
            Err(super::invalid(&args.file, &problems))
        }
        // Its message already ends with the OS error, which `{:#}` would print
        // a second time as the source.
        Err(io @ LoadError::Io { .. }) => Err(anyhow!("{io}")),
    }
}
