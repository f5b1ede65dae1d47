use std::process::ExitCode;

use clap::Parser;
use swarm_node::{Config, Flags, LogFormat};
use tracing_subscriber::EnvFilter;

/// jemalloc: see the workspace Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match Config::load(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("swarmd: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_env("SWARM_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,openraft=warn,sled=warn,h2=warn,tower=warn,hyper=warn")
    });
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => subscriber.json().init(),
        LogFormat::Text => {
            use std::io::IsTerminal;
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            subscriber.with_ansi(color).init()
        }
    }
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
    match runtime.block_on(swarm_node::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "swarmd failed");
            eprintln!("swarmd: {e:#}");
            ExitCode::from(1)
        }
    }
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
