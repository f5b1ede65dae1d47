//! Runs a workflow file in-process, the way `swarmctl workflow run-local` does:
//!
//! ```text
//! cargo run -p swarm-reactor --example run_local -- cluster/workflows/parallel-analysis.yaml dataset=sales
//! cargo run -p swarm-reactor --example run_local -- --plan mermaid cluster/workflows/error-recovery.yaml
//! ```
//!
//! Progress goes to stderr, the JSON report to stdout; exit 1 when invalid or failed.

use std::process::ExitCode;
use std::sync::Arc;

use swarm_reactor::{PlanFormat, Reactor, Registry, RunOptions, load_file, parse_input, plan};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let plan_format = match args.iter().position(|a| a == "--plan") {
        Some(i) if i + 1 < args.len() => {
            let f = args.remove(i + 1);
            args.remove(i);
            match f.parse::<PlanFormat>() {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let Some((file, inputs)) = args.split_first() else {
        eprintln!("usage: run_local [--plan text|mermaid] FILE [name=value ...]");
        return ExitCode::from(2);
    };
    let workflow = match load_file(file, &Registry::builtin()) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            for m in e.messages() {
                eprintln!("{m}");
            }
            return ExitCode::FAILURE;
        }
    };
    if let Some(format) = plan_format {
        print!("{}", plan::render(&workflow, format));
        return ExitCode::SUCCESS;
    }
    let mut map = serde_json::Map::new();
    for flag in inputs {
        match parse_input(flag) {
            Ok((k, v)) => {
                map.insert(k, v);
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    let reactor = Reactor::new().on_event(|e| eprintln!("{e}"));
    let report = reactor.run(workflow, map, RunOptions::default()).await;
    eprint!("{}", report.render_table());
    println!("{}", report.to_json());
    if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
