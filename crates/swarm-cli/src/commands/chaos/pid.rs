//! The PID files of `scripts/cluster-up.sh` and signals sent by them.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use rustix::process::{Pid, Signal, kill_process};

/// Which node of the local cluster, and where its state lives.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's id (its PID file is `nodeN.pid`)
    #[arg(long)]
    pub node: u64,
    /// Where `scripts/cluster-up.sh` keeps PID files and logs
    #[arg(long, env = "SWARM_CLUSTER_DIR", default_value = ".swarm-cluster")]
    pub cluster_dir: PathBuf,
}

/// The PID recorded for the node, checked to still be a `swarmd` (a PID
/// may have been recycled since the file was written).
pub fn node_pid(args: &NodeArgs) -> Result<Pid> {
    let path = args.cluster_dir.join(format!("node{}.pid", args.node));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "read {} (was the cluster started by scripts/cluster-up.sh?)",
            path.display()
        )
    })?;
    let raw: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a PID: {:?}", path.display(), text.trim()))?;
    let Some(pid) = Pid::from_raw(raw) else {
        bail!(
            "{} holds PID {raw}, which is not a process id",
            path.display()
        );
    };
    let cmdline = PathBuf::from(format!("/proc/{raw}/cmdline"));
    match std::fs::read(&cmdline) {
        Ok(bytes) if !String::from_utf8_lossy(&bytes).contains("swarmd") => {
            bail!("PID {raw} of node {} is no longer a swarmd", args.node)
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("node {} (PID {raw}) is not running", args.node)
        }
        // No /proc (not Linux): trust the file, as cluster-up.sh does.
        Err(_) => {}
    }
    Ok(pid)
}

/// Sends `signal` to the node's recorded PID and says so on stderr.
pub fn signal_node(args: &NodeArgs, signal: Signal, what: &str) -> Result<()> {
    let pid = node_pid(args)?;
    kill_process(pid, signal).with_context(|| {
        format!(
            "send {signal:?} to node {} (PID {})",
            args.node,
            pid.as_raw_nonzero()
        )
    })?;
    eprintln!("node {} (PID {}) {what}", args.node, pid.as_raw_nonzero());
    Ok(())
}
