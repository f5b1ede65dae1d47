//! `swarmctl workflow plan FILE [--format text|mermaid]`: the DAG on stdout,
//! in stages (steps of one stage can run at the same time) or as a mermaid
//! flowchart, each step marked undoable or not.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use swarm_reactor::PlanFormat;

use crate::output::print_text;

#[derive(Debug, Args)]
pub struct Plan {
    /// Workflow spec, YAML or JSON
    pub file: PathBuf,
    /// How to draw the DAG
    #[arg(
        long,
        default_value = "text",
        value_parser = PossibleValuesParser::new(["text", "mermaid"])
            .try_map(|s| s.parse::<PlanFormat>()),
    )]
    pub format: PlanFormat,
}

pub fn run(args: Plan) -> Result<()> {
    let workflow = super::load(&args.file)?;
    print_text(&swarm_reactor::plan::render(&workflow, args.format))
}
