//! `swarmctl`, the command line of a Swarm cluster: inspect the cluster,
//! change its membership, submit (now, after a delay or at a time), claim,
//! finish, watch and retry work items, list live claims, keep cron
//! schedules (`schedule`) and limits on concurrency keys (`limit`). Its `workflow` commands validate, plan and run reactor
//! workflows locally, without a cluster, and `workflow run` submits one to
//! the cluster and (with `--wait`) follows it to its end. Its `chaos`
//! commands kill, pause and resume nodes of the local cluster of
//! `scripts/cluster-up.sh` by their recorded PIDs, and run the chaos suite's
//! replica checks (`swarm-check`: double grants, token order, duplicate
//! completions and keys, divergence) against a live cluster. `top` shows
//! the cluster, the queues and the live claims on one screen, refreshed in
//! place.
//!
//! Data goes to stdout, as a table (`-o table`, the default) or as JSON
//! (`-o json`, the shapes scripts rely on); messages and errors go to stderr.
//! Exit codes: 0 success, 1 failure, 2 usage error. The output has no color,
//! so `NO_COLOR` holds trivially.
//!
//! # Layout
//! - `cli`: [`Cli`], the global options (`--endpoints`, `-o`) and the
//!   argument parsers shared by commands (endpoints, JSON, names).
//! - `commands`: one module per noun, one file per verb
//!   (`commands/work/claim.rs`, `commands/workflow/run_local.rs`), each with
//!   its clap arguments and `run`. `commands/work/watch.rs` also holds the
//!   watch loop that `workflow run --wait` shares (reopening a broken stream
//!   through another node). `commands/top` is `swarmctl top`, a command
//!   without verbs; its terminal handling (raw mode, the alternate screen)
//!   is `commands/top/screen.rs`, its frame `views/top.rs`.
//! - `views`: prost messages to JSON values and table rows, one file per
//!   message family (`work_item`, `work_event`, `claim`, `cluster`,
//!   `work_stats`, `schedule`, `limit`), `attempts` (an item's holders
//!   numbered as attempts, with their errors), `top` (a frame of
//!   `swarmctl top`), and
//!   `workflow_steps`: a workflow item's steps (`swarm_reactor::StepBoard`)
//!   as JSON and a table.
//! - `output`: printing JSON and tables to stdout, humanized lease times.

mod cli;
mod commands;
mod output;
mod views;

use std::process::ExitCode;

pub use cli::Cli;
/// `swarmctl cert`'s files, for programs and tests that set up a secure
/// cluster themselves.
pub use commands::cert::{make_ca, make_client, make_node};

/// Runs one parsed command line and returns the process exit code: 0 when
/// the command succeeded, 1 (with `error: ...` on stderr) when it failed.
pub fn run(cli: Cli) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(commands::run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
