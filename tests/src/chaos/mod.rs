//! The chaos suite: faults injected into real `swarmd` processes under load,
//! every operation recorded, and the history checked afterwards, the way
//! Jepsen and etcd's robustness tests do it.
//!
//! # Layout
//! - [`history`]: the operation history ([`history::Recorder`],
//!   [`history::History`]): invoke and completion times, outcomes, grants,
//!   and leader observations; serializable so a failing run can be saved.
//! - [`fenced`]: the fenced resource, a harness-side store that rejects
//!   writes carrying a fencing token lower than one it has seen, in process
//!   and over HTTP on 127.0.0.1 for workflow steps.
//! - [`checker`]: checks a history, the fenced resource's log and every
//!   replica's final state for anomalies; [`checker::collect_replicas`]
//!   reads the replicas once they agree on the applied index.
//! - [`proxy`]: per-link TCP proxies in front of the nodes' peer ports.
//! - [`nemesis`]: the faults (kill, pause, partition, restart).
//! - [`workload`]: the agents that drive the cluster and record operations.
//! - [`runner`]: runs a workload under nemeses and checks the outcome.

pub mod checker;
pub mod fenced;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod runner;
pub mod workload;
