//! `swarmctl workflow run-local FILE --input k=v ... [--seed N]`: runs a
//! workflow in this process with the reactor. Each step's start and end go to
//! stderr as they happen; the report goes to stdout (`-o json`: the report's
//! JSON exactly). A failed run exits 1 after undoing its completed steps, and
//! so does a run cancelled with Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::Value;
use swarm_reactor::{Reactor, RunOptions, parse_input};
use tokio::sync::watch;

use crate::output::{OutputFormat, print_text};

#[derive(Debug, Args)]
pub struct RunLocal {
    /// Workflow spec, YAML or JSON
    pub file: PathBuf,
    /// A run input as NAME=VALUE; VALUE is JSON if it parses, a string otherwise (repeat per input)
    #[arg(long = "input", value_name = "NAME=VALUE", value_parser = parse_input)]
    pub inputs: Vec<(String, Value)>,
    /// Seed for the retry jitter, so that backoff delays replay exactly
    #[arg(long)]
    pub seed: Option<u64>,
}

pub async fn run(output: OutputFormat, args: RunLocal) -> Result<()> {
    let (workflow, inputs) = super::load_with_inputs(&args.file, args.inputs)?;
    let workflow = Arc::new(workflow);

    let mut reactor = Reactor::new().on_event(|event| eprintln!("{event}"));
    if let Some(seed) = args.seed {
        reactor = reactor.with_seed(seed);
    }
    let (cancel, cancelled) = watch::channel(false);
    let interrupts = tokio::spawn(cancel_on_ctrl_c(cancel));
    let options = RunOptions {
        cancel: Some(cancelled),
        ..RunOptions::default()
    };
    let report = reactor.run(Arc::clone(&workflow), inputs, options).await;
    interrupts.abort();

    match output {
        OutputFormat::Json => print_text(&report.to_json())?,
        OutputFormat::Table => print_text(&report.render_table())?,
    }
    if !report.succeeded() {
        let why = report
            .error
            .as_ref()
            .map_or_else(|| "no error recorded".to_owned(), ToString::to_string);
        let undone = if report.undone.is_empty() {
            String::new()
        } else {
            format!(" (undone: {})", report.undone.join(", "))
        };
        bail!("workflow {:?} failed: {why}{undone}", workflow.name());
    }
    Ok(())
}

/// The first Ctrl-C cancels the run: the reactor stops the steps in flight
/// and undoes the completed ones before `run` returns, so the process must
/// stay alive for that. A second Ctrl-C gives up on the undo and exits.
async fn cancel_on_ctrl_c(cancel: watch::Sender<bool>) {
    if tokio::signal::ctrl_c().await.is_err() {
        // No handler: Ctrl-C keeps its default meaning, killing the process.
        return;
    }
    eprintln!("interrupted: cancelling the run and undoing completed steps (Ctrl-C again to quit)");
    let _ = cancel.send(true);
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("interrupted again: quitting before the undo finished");
        std::process::exit(130);
    }
}
