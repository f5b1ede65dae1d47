//! A soak run as data: the samples taken while items flowed, the restart, and
//! the summary figures drawn from them; written as JSON, printed as a table.
//!
//! The summary is always recomputed from the samples ([`Summary::of`]), so a
//! report read back from its JSON prints the same figures.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Bytes in a MiB, the unit of every figure shown.
const MIB: f64 = 1024.0 * 1024.0;

/// The goals for a node under the soak, shown beside the figures.
pub const TARGET_RSS_RATIO: f64 = 1.25;
pub const TARGET_RSS_MIB: f64 = 150.0;
pub const TARGET_RESTART_S: f64 = 5.0;

/// Items after which the memory is taken as the baseline the end is compared
/// with (half the run when the run is shorter than 200,000 items).
const BASELINE_ITEMS: u64 = 100_000;

/// One look at one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSample {
    pub node: u64,
    /// The process's VmRSS; `None` when it could not be read.
    pub rss_bytes: Option<u64>,
    /// The current snapshot file; `None` before the node's first snapshot.
    pub snapshot_bytes: Option<u64>,
    /// Seconds since the current snapshot file was written.
    pub snapshot_age_s: Option<f64>,
    /// The sled directory without snapshot files: the Raft log on disk.
    pub log_bytes: u64,
    /// Items in the node's replica (ClusterStatus); `None` when it did not
    /// answer in time.
    pub items_held: Option<u64>,
}

/// Every node, at one moment of the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Items completed so far.
    pub items: u64,
    pub nodes: Vec<NodeSample>,
}

/// The whole-cluster restart after the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restart {
    /// From SIGTERM to every node until the last one exited.
    pub stop_s: f64,
    /// Nodes still running when the SIGTERM grace ran out (then SIGKILLed).
    pub sigkilled: Vec<u64>,
    /// From relaunching the nodes on their data dirs until every node
    /// answers ClusterStatus.
    pub answering_s: f64,
    /// ... until every node names one leader and sees three voters.
    pub leader_s: f64,
    /// ... until, besides, every node has applied the same index, at least
    /// the one applied before the stop: healthy.
    pub healthy_s: f64,
    /// The index applied by every node when it was healthy again.
    pub applied_index: u64,
    /// Every node once it was healthy again.
    pub after: Vec<NodeSample>,
}

/// A whole soak run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// How the run was asked for (the script's command line).
    pub command: String,
    /// The source revision of the binaries (`git describe`), when known.
    pub revision: String,
    pub items_requested: u64,
    /// The retention asked for, as written (`30s`).
    pub retention: String,
    /// Whether swarmd took it: a swarmd without a `--retention` flag keeps
    /// every finished item whatever was asked.
    pub retention_in_effect: bool,
    pub clients: usize,
    /// Wall time of the load, from the first submit to the last complete.
    pub load_s: f64,
    /// Calls that failed and were retried.
    pub errors: u64,
    /// Why the load stopped before its last item (its time bound, a stall,
    /// a node that exited), if it did.
    pub stopped_early: Option<String>,
    /// Why the cluster did not come back healthy after the restart, if not.
    pub restart_error: Option<String>,
    pub samples: Vec<Sample>,
    pub restart: Option<Restart>,
    pub summary: Summary,
}

/// One node's memory at the baseline and at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeGrowth {
    pub node: u64,
    pub rss_mib_baseline: Option<f64>,
    pub rss_mib_end: Option<f64>,
    /// End over baseline.
    pub ratio: Option<f64>,
}

/// The figures a reader looks for first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub items_done: u64,
    pub items_per_s: f64,
    /// Items done at the baseline sample (the first at or after 100,000
    /// items, or half the run).
    pub baseline_items: Option<u64>,
    pub rss: Vec<NodeGrowth>,
    pub rss_ratio_max: Option<f64>,
    pub rss_mib_end_max: Option<f64>,
    pub snapshot_mib_max: Option<f64>,
    pub log_mib_max: Option<f64>,
    pub restart_healthy_s: Option<f64>,
    pub rss_mib_after_restart_max: Option<f64>,
}

/// The ids of the nodes the samples saw, in order.
pub fn node_ids(samples: &[Sample]) -> Vec<u64> {
    let mut ids: Vec<u64> = samples
        .iter()
        .flat_map(|s| s.nodes.iter().map(|n| n.node))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn max_f64(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |m, v| Some(m.map_or(v, |m: f64| m.max(v))))
}

impl Summary {
    /// The summary of `samples` of a run of `items_requested` items whose
    /// load took `load_s`, and of its restart.
    pub fn of(
        items_requested: u64,
        load_s: f64,
        samples: &[Sample],
        restart: Option<&Restart>,
    ) -> Summary {
        let items_done = samples.last().map_or(0, |s| s.items);
        let wanted = BASELINE_ITEMS.min(items_requested / 2).max(1);
        let baseline = samples.iter().find(|s| s.items >= wanted);
        let end = samples.last();
        let rss_of = |sample: Option<&Sample>, node: u64| {
            sample
                .and_then(|s| s.nodes.iter().find(|n| n.node == node))
                .and_then(|n| n.rss_bytes)
                .map(mib)
        };
        let rss: Vec<NodeGrowth> = node_ids(samples)
            .into_iter()
            .map(|node| {
                let (b, e) = (rss_of(baseline, node), rss_of(end, node));
                NodeGrowth {
                    node,
                    rss_mib_baseline: b,
                    rss_mib_end: e,
                    ratio: b.zip(e).filter(|(b, _)| *b > 0.0).map(|(b, e)| e / b),
                }
            })
            .collect();
        let all_nodes = || samples.iter().flat_map(|s| s.nodes.iter());
        Summary {
            items_done,
            items_per_s: if load_s > 0.0 {
                items_done as f64 / load_s
            } else {
                0.0
            },
            baseline_items: baseline.map(|s| s.items),
            rss_ratio_max: max_f64(rss.iter().filter_map(|g| g.ratio)),
            rss_mib_end_max: max_f64(rss.iter().filter_map(|g| g.rss_mib_end)),
            rss,
            snapshot_mib_max: max_f64(all_nodes().filter_map(|n| n.snapshot_bytes).map(mib)),
            log_mib_max: max_f64(all_nodes().map(|n| mib(n.log_bytes))),
            restart_healthy_s: restart.map(|r| r.healthy_s),
            rss_mib_after_restart_max: restart
                .and_then(|r| max_f64(r.after.iter().filter_map(|n| n.rss_bytes).map(mib))),
        }
    }
}

/// At most `rows` of `samples`, evenly spread, always with the first and the
/// last (the JSON keeps them all).
pub fn thin(samples: &[Sample], rows: usize) -> Vec<&Sample> {
    let n = samples.len();
    if n <= rows || rows < 2 {
        return samples.iter().collect();
    }
    let mut picked: Vec<usize> = (0..rows).map(|i| i * (n - 1) / (rows - 1)).collect();
    picked.dedup();
    picked.into_iter().map(|i| &samples[i]).collect()
}

/// Per node, `f` of its sample, as `a / b / c`.
fn per_node(nodes: &[NodeSample], f: impl Fn(&NodeSample) -> String) -> String {
    nodes.iter().map(f).collect::<Vec<_>>().join(" / ")
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".to_string(), |v| format!("{v:.decimals$}"))
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "not met" }
}

impl Report {
    /// What went wrong, if the run did not do what it was asked: stopped
    /// before its last item, or the cluster did not come back.
    pub fn failure(&self) -> Option<String> {
        match (&self.stopped_early, &self.restart_error) {
            (Some(load), _) => Some(format!("the load stopped early: {load}")),
            (None, Some(restart)) => Some(format!("the restart failed: {restart}")),
            (None, None) => None,
        }
    }

    /// The samples as a markdown table (at most `rows` of them), then the
    /// summary.
    pub fn to_text(&self, rows: usize) -> String {
        let mut out = String::new();
        let ids = self
            .samples
            .first()
            .map(|s| per_node(&s.nodes, |n| format!("n{}", n.node)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| t s | items | RSS MiB {ids} | items held {ids} | snapshot MiB {ids} | snapshot age s (max) | log MiB {ids} |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        for s in thin(&self.samples, rows) {
            let n = &s.nodes;
            let _ = writeln!(
                out,
                "| {:.0} | {} | {} | {} | {} | {} | {} |",
                s.t_s,
                thousands(s.items),
                per_node(n, |n| opt(n.rss_bytes.map(mib), 0)),
                per_node(n, |n| n.items_held.map_or("—".into(), thousands)),
                per_node(n, |n| opt(n.snapshot_bytes.map(mib), 1)),
                opt(max_f64(n.iter().filter_map(|n| n.snapshot_age_s)), 0),
                per_node(n, |n| format!("{:.0}", mib(n.log_bytes))),
            );
        }
        out.push('\n');
        out.push_str(&self.summary_text());
        out
    }

    fn summary_text(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "items: {} of {} in {:.1} s = {}/s, {} clients, {} call errors retried",
            thousands(s.items_done),
            thousands(self.items_requested),
            self.load_s,
            thousands(s.items_per_s.round() as u64),
            self.clients,
            self.errors,
        );
        if let Some(why) = &self.stopped_early {
            let _ = writeln!(out, "  the load stopped early: {why}");
        }
        let _ = writeln!(
            out,
            "retention: {} ({})",
            self.retention,
            if self.retention_in_effect {
                "in effect"
            } else {
                "NOT in effect: this swarmd has no --retention and keeps every finished item"
            }
        );
        let growth = per_node_growth(&s.rss);
        let _ = writeln!(
            out,
            "RSS MiB after {} items -> at the end: {growth}",
            s.baseline_items.map_or("—".into(), thousands),
        );
        if let (Some(ratio), Some(end)) = (s.rss_ratio_max, s.rss_mib_end_max) {
            let _ = writeln!(
                out,
                "  worst node {ratio:.2}x, {end:.0} MiB at the end; goal <= {TARGET_RSS_RATIO}x and <= {TARGET_RSS_MIB:.0} MiB after 1,000,000 items: {}",
                met(ratio <= TARGET_RSS_RATIO && end <= TARGET_RSS_MIB)
            );
        }
        let _ = writeln!(
            out,
            "snapshot file: max {} MiB; log (sled dir): max {} MiB",
            opt(s.snapshot_mib_max, 1),
            opt(s.log_mib_max, 1)
        );
        match &self.restart {
            Some(r) => {
                let killed = if r.sigkilled.is_empty() {
                    "all exited on SIGTERM".to_string()
                } else {
                    format!("SIGKILLed after the grace: nodes {:?}", r.sigkilled)
                };
                let _ = writeln!(
                    out,
                    "restart: stop {:.1} s ({killed}); relaunch -> healthy (one leader, 3 voters, all at applied index {}) {:.2} s; goal <= {TARGET_RESTART_S:.0} s: {}",
                    r.stop_s,
                    thousands(r.applied_index),
                    r.healthy_s,
                    met(r.healthy_s <= TARGET_RESTART_S)
                );
                let _ = writeln!(
                    out,
                    "  every node answering after {:.2} s, one leader after {:.2} s",
                    r.answering_s, r.leader_s
                );
                let _ = writeln!(
                    out,
                    "  RSS MiB after the restart: {}",
                    per_node(&r.after, |n| opt(n.rss_bytes.map(mib), 0))
                );
            }
            None => {
                let why = self.restart_error.as_deref().unwrap_or("not done");
                let _ = writeln!(out, "restart: FAILED: {why}");
            }
        }
        out
    }
}

fn per_node_growth(rss: &[NodeGrowth]) -> String {
    rss.iter()
        .map(|g| {
            format!(
                "n{} {} -> {} ({}x)",
                g.node,
                opt(g.rss_mib_baseline, 0),
                opt(g.rss_mib_end, 0),
                opt(g.ratio, 2)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn node(node: u64, rss_mib: u64, snapshot_mib: Option<u64>) -> NodeSample {
        NodeSample {
            node,
            rss_bytes: Some(rss_mib * 1024 * 1024),
            snapshot_bytes: snapshot_mib.map(|m| m * 1024 * 1024),
            snapshot_age_s: snapshot_mib.map(|_| 1.0),
            log_bytes: 3 * 1024 * 1024,
            items_held: Some(10),
        }
    }

    fn sample(items: u64, rss: [u64; 3], snapshot: Option<u64>) -> Sample {
        Sample {
            t_s: items as f64 / 1000.0,
            items,
            nodes: (0..3)
                .map(|i| node(i + 1, rss[i as usize], snapshot))
                .collect(),
        }
    }

    fn report(items_requested: u64, samples: Vec<Sample>, restart: Option<Restart>) -> Report {
        let load_s = samples.last().map_or(0.0, |s| s.t_s);
        Report {
            command: "scripts/soak.sh".into(),
            revision: "test".into(),
            items_requested,
            retention: "30s".into(),
            retention_in_effect: false,
            clients: 4,
            load_s,
            errors: 0,
            stopped_early: None,
            restart_error: None,
            summary: Summary::of(items_requested, load_s, &samples, restart.as_ref()),
            samples,
            restart,
        }
    }

    #[test]
    fn the_baseline_is_the_first_sample_past_100k_items() {
        let samples = vec![
            sample(50_000, [40, 40, 40], None),
            sample(120_000, [50, 60, 40], Some(5)),
            sample(500_000, [100, 90, 40], Some(20)),
            sample(1_000_000, [100, 120, 44], Some(8)),
        ];
        let s = Summary::of(1_000_000, 500.0, &samples, None);
        assert_eq!(s.baseline_items, Some(120_000));
        assert_eq!(s.items_done, 1_000_000);
        assert_eq!(s.items_per_s, 2_000.0);
        assert_eq!(s.rss[0].ratio, Some(2.0));
        assert_eq!(s.rss[1].ratio, Some(2.0));
        assert_eq!(s.rss[2].ratio, Some(1.1));
        assert_eq!(s.rss_ratio_max, Some(2.0));
        assert_eq!(s.rss_mib_end_max, Some(120.0));
        assert_eq!(s.snapshot_mib_max, Some(20.0));
        assert_eq!(s.log_mib_max, Some(3.0));
        assert_eq!(s.restart_healthy_s, None);
    }

    #[test]
    fn a_short_run_takes_its_half_as_the_baseline() {
        let samples = vec![
            sample(1_000, [40, 40, 40], None),
            sample(10_500, [42, 40, 40], None),
            sample(20_000, [84, 40, 40], None),
        ];
        let s = Summary::of(20_000, 10.0, &samples, None);
        assert_eq!(s.baseline_items, Some(10_500));
        assert_eq!(s.rss[0].ratio, Some(2.0));
        assert_eq!(s.snapshot_mib_max, None);
    }

    #[test]
    fn no_samples_no_figures() {
        let s = Summary::of(1_000, 0.0, &[], None);
        assert_eq!(s.items_done, 0);
        assert_eq!(s.items_per_s, 0.0);
        assert!(s.rss.is_empty());
        assert_eq!(s.rss_ratio_max, None);
    }

    #[test]
    fn thinning_keeps_the_first_and_the_last() {
        let samples: Vec<Sample> = (1..=100).map(|i| sample(i * 10, [1, 1, 1], None)).collect();
        let rows = thin(&samples, 10);
        assert_eq!(rows.len(), 10);
        assert_eq!(rows[0].items, 10);
        assert_eq!(rows[9].items, 1_000);
        assert_eq!(thin(&samples[..3], 10).len(), 3);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_text_shows_every_node_the_goals_and_the_restart() {
        let restart = Restart {
            stop_s: 0.4,
            sigkilled: vec![],
            answering_s: 0.5,
            leader_s: 0.9,
            healthy_s: 1.25,
            applied_index: 123_456,
            after: vec![
                node(1, 70, Some(1)),
                node(2, 71, Some(1)),
                node(3, 72, None),
            ],
        };
        let r = report(
            200_000,
            vec![
                sample(100_000, [50, 50, 50], Some(2)),
                sample(200_000, [60, 55, 50], Some(3)),
            ],
            Some(restart),
        );
        let text = r.to_text(30);
        assert!(text.contains("| 100 | 100,000 | 50 / 50 / 50 |"), "{text}");
        assert!(text.contains("n1 50 -> 60 (1.20x)"), "{text}");
        assert!(text.contains("goal <= 1.25x and <= 150 MiB"), "{text}");
        assert!(text.contains("NOT in effect"), "{text}");
        assert!(text.contains("1.25 s; goal <= 5 s: met"), "{text}");
        assert!(text.contains("70 / 71 / 72"), "{text}");
    }

    #[test]
    fn a_report_survives_its_json() {
        let r = report(10, vec![sample(10, [1, 2, 3], Some(1))], None);
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
