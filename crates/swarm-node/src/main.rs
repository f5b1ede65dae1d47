use std::process::ExitCode;

use clap::Parser;
use swarm_node::{Config, Flags, Telemetry};

/// jemalloc: see the workspace Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Before any thread starts: the arenas made later take these settings.
    let untuned = swarm_node::allocator::tune();
    let flags = Flags::parse();
    let config = match Config::load(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("swarmd: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarmd: start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let telemetry = {
        let _runtime = runtime.enter();
        match Telemetry::init(&config) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("swarmd: {e:#}");
                return ExitCode::from(1);
            }
        }
    };
    for exposed in config.insecure_exposure() {
        tracing::warn!(%exposed, "insecure = true: serving in the clear beyond loopback; anyone who reaches it can use it");
    }
    for what in untuned {
        tracing::warn!(%what, "allocator setting not applied; freed memory is returned later");
    }
    let code = match runtime.block_on(swarm_node::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "swarmd failed");
            eprintln!("swarmd: {e:#}");
            ExitCode::from(1)
        }
    };
    telemetry.shutdown();
    code
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
