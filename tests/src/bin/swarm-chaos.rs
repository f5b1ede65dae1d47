//! `swarm-chaos`: one chaos run of the Swarm cluster, for long runs
//! (`scripts/chaos.sh`). Prints the report; exits 0 when no anomaly was
//! found, 1 when one was (or the cluster did not settle), 2 on bad usage or
//! when the harness itself failed.
//!
//! ```text
//! swarm-chaos [--duration 10m] [--seed S] [--nemesis kill,pause,partition,...]
//!             [--clients N] [--json FILE] [--history FILE]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use swarm_tests::chaos::nemesis::FaultKind;
use swarm_tests::chaos::runner::{self, ChaosConfig};

const USAGE: &str = "usage: swarm-chaos [--duration 10m] [--seed S] [--nemesis all|kill,pause,partition,delay,drop,restart,...] [--clients N] [--json FILE] [--history FILE]";

struct Args {
    config: ChaosConfig,
    json: Option<PathBuf>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args> {
    let mut duration = Duration::from_secs(600);
    let mut seed = None;
    let mut nemeses = FaultKind::ALL.to_vec();
    let mut clients = None;
    let mut json = None;
    let mut history = None;
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        if flag == "-h" || flag == "--help" {
            bail!("{USAGE}");
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => bail!("{flag} needs a value\n{USAGE}"),
        };
        match flag.as_str() {
            "--duration" => {
                duration = humantime::parse_duration(&value)
                    .with_context(|| format!("--duration {value:?}: expected e.g. 90s or 10m"))?
            }
            "--seed" => {
                seed = Some(
                    value
                        .parse::<u64>()
                        .with_context(|| format!("--seed {value:?}: expected an integer"))?,
                )
            }
            "--nemesis" => nemeses = FaultKind::parse_list(&value)?,
            "--clients" => {
                clients = Some(
                    value
                        .parse::<u32>()
                        .with_context(|| format!("--clients {value:?}: expected an integer"))?,
                )
            }
            "--json" => json = Some(PathBuf::from(value)),
            "--history" => history = Some(PathBuf::from(value)),
            other => bail!("unknown flag {other:?}\n{USAGE}"),
        }
    }
    let seed = seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1)
    });
    let mut config = ChaosConfig::new(seed, duration);
    config.nemeses = nemeses;
    if let Some(c) = clients {
        config.workload.clients = c;
    }
    match history {
        Some(path) => config.history_path = Some(path),
        None => {
            // Keep the evidence of a failing run without being asked.
            config.history_path =
                Some(std::env::temp_dir().join(format!("swarm-chaos-{seed}-history.json")));
            config.save_history_on_anomaly_only = true;
        }
    }
    Ok(Args { config, json })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("swarm-chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "swarm-chaos: seed {} for {:?}, nemeses {:?}",
        args.config.seed,
        args.config.duration,
        args.config
            .nemeses
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("swarm-chaos: start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(runner::run(args.config)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("swarm-chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("{report}");
    if let Some(path) = &args.json {
        let text = match serde_json::to_string_pretty(&report.to_json()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("swarm-chaos: encode the report: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("swarm-chaos: write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.passed() && report.liveness_error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
