//! `swarm-soak`: the soak benchmark behind `scripts/soak.sh` (see
//! `swarm_bench::soak`). `run` starts its own three-node cluster of the
//! `swarmd` in `$SWARMD_BIN` (or next to this binary), pushes the items,
//! restarts the cluster, prints the table on stdout (progress on stderr) and
//! writes the JSON and the SVG beside it; `report` prints and draws a saved
//! run again.
//!
//! Exit status: 0 done, 1 the run failed or stopped early (its report is
//! still written), 2 usage.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use swarm_bench::soak::{self, SoakOptions};

#[derive(Parser)]
#[command(name = "swarm-soak", about = "soak a three-node Swarm cluster")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Push items through a fresh cluster, sampling it, then restart it.
    Run {
        #[command(flatten)]
        options: SoakOptions,
        /// Where to write the JSON; the SVG goes beside it.
        #[arg(long, default_value = "target/soak/soak.json")]
        json: PathBuf,
        /// Sample rows in the printed table (the JSON has them all).
        #[arg(long, default_value_t = 30)]
        rows: usize,
    },
    /// Print and draw a saved run again.
    Report {
        json: PathBuf,
        #[arg(long, default_value_t = 30)]
        rows: usize,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Cmd) -> Result<ExitCode> {
    match command {
        Cmd::Report { json, rows } => {
            let report = soak::load_report(&json)?;
            print!("{}", report.to_text(rows));
            let svg = soak::save(&report, &json)?;
            eprintln!("soak: wrote {} and {}", json.display(), svg.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            options,
            json,
            rows,
        } => {
            // A signal drops the run, and with it the cluster: every node it
            // started is SIGKILLed by PID.
            let report = tokio::select! {
                report = soak::run(&options) => report?,
                _ = shutdown_signal() => anyhow::bail!("interrupted: the cluster was stopped"),
            };
            print!("{}", report.to_text(rows));
            let svg = soak::save(&report, &json)?;
            eprintln!("soak: wrote {} and {}", json.display(), svg.display());
            Ok(match report.failure() {
                Some(why) => {
                    eprintln!("error: {why}");
                    ExitCode::FAILURE
                }
                None => ExitCode::SUCCESS,
            })
        }
    }
}

/// Resolves on SIGINT or SIGTERM; never, if they cannot be listened for.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("soak: cannot listen for SIGINT/SIGTERM; the calling script cleans up by PID");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
