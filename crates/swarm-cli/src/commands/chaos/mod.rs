//! `swarmctl chaos ...`: fault injection against a local cluster started by
//! `scripts/cluster-up.sh` (signals by the PIDs it recorded under
//! `$SWARM_CLUSTER_DIR`), and the chaos suite's replica checks against a
//! live cluster's replicas.

pub mod check;
pub mod kill;
pub mod partition;
pub mod pause;
pub mod pid;
pub mod resume;

use anyhow::Result;
use clap::Subcommand;

use crate::cli::GlobalOpts;

#[derive(Debug, Subcommand)]
pub enum Chaos {
    /// SIGKILL a node of the local cluster (by its recorded PID)
    Kill(kill::Kill),
    /// SIGSTOP a node of the local cluster: it keeps its sockets but answers nothing
    Pause(pause::Pause),
    /// SIGCONT a paused node of the local cluster
    Resume(resume::Resume),
    /// Cut a node off from its peers (needs link proxies; not available here)
    Partition(partition::Partition),
    /// Undo partitions (needs link proxies; not available here)
    Heal(partition::Heal),
    /// Read every node's replica and report double grants, token order, duplicates and divergence
    Check(check::Check),
}

impl Chaos {
    pub async fn run(self, global: GlobalOpts) -> Result<()> {
        match self {
            Chaos::Kill(args) => kill::run(args),
            Chaos::Pause(args) => pause::run(args),
            Chaos::Resume(args) => resume::run(args),
            Chaos::Partition(args) => partition::run_partition(args),
            Chaos::Heal(args) => partition::run_heal(args),
            Chaos::Check(args) => check::run(global, args).await,
        }
    }
}
