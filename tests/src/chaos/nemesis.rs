//! Nemeses: faults injected into real `swarmd` processes and into the links
//! between them, one at a time, each healed before the next and recorded
//! with its kind, target, start and duration.
//!
//! A seeded RNG picks the schedule: first every enabled kind once in a
//! shuffled order (so a short run still covers them all), then kinds drawn at
//! random. At most one fault is live at any time, so a majority always
//! survives: the guarantees under test are those "while a majority survives".

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use swarm_proto::v1::{ListWorkRequest, ReadConsistency, WorkStatus};

use super::proxy::{LinkMode, LinkProxies};
use crate::{Cluster, NodeId};

/// How long to wait for a leader after a fault before going on anyway (the
/// workload and the final liveness check will tell if the cluster is stuck).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(20);

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL the leader, restart it after a short downtime.
    KillLeader,
    /// SIGKILL a follower, restart it.
    KillFollower,
    /// SIGKILL a node picked at random, restart it.
    KillRandom,
    /// SIGSTOP the leader for longer than the election timeout, then
    /// SIGCONT: it comes back as a stale leader.
    PauseLeader,
    /// SIGSTOP a node that holds workflow work for longer than its lease,
    /// then SIGCONT: it comes back believing it still holds the work.
    PauseAgent,
    /// Blackhole every link of the leader both ways (it is the minority),
    /// then heal.
    PartitionLeader,
    /// Add latency to some links, then remove it.
    LinkDelay,
    /// Close some links' connections and refuse new ones, then heal.
    LinkDrop,
    /// SIGKILL every node, then start them all again.
    RestartCluster,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::KillRandom,
        FaultKind::PauseLeader,
        FaultKind::PauseAgent,
        FaultKind::PartitionLeader,
        FaultKind::LinkDelay,
        FaultKind::LinkDrop,
        FaultKind::RestartCluster,
    ];

    /// The name used in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill_leader",
            FaultKind::KillFollower => "kill_follower",
            FaultKind::KillRandom => "kill_random",
            FaultKind::PauseLeader => "pause_leader",
            FaultKind::PauseAgent => "pause_agent",
            FaultKind::PartitionLeader => "partition_leader",
            FaultKind::LinkDelay => "delay",
            FaultKind::LinkDrop => "drop",
            FaultKind::RestartCluster => "restart_cluster",
        }
    }

    /// Parses a comma-separated list of kinds or families: `kill` (the three
    /// kills), `pause` (both pauses), `partition`, `delay`, `drop`,
    /// `restart`, `all`, or any exact [`FaultKind::name`].
    pub fn parse_list(text: &str) -> Result<Vec<FaultKind>> {
        let mut kinds = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let matched: Vec<FaultKind> = match word {
                "all" => FaultKind::ALL.to_vec(),
                "kill" => vec![
                    FaultKind::KillLeader,
                    FaultKind::KillFollower,
                    FaultKind::KillRandom,
                ],
                "pause" => vec![FaultKind::PauseLeader, FaultKind::PauseAgent],
                "partition" => vec![FaultKind::PartitionLeader],
                "restart" => vec![FaultKind::RestartCluster],
                other => FaultKind::ALL
                    .into_iter()
                    .filter(|k| k.name() == other)
                    .collect(),
            };
            if matched.is_empty() {
                bail!(
                    "unknown nemesis {word:?}: expected all, kill, pause, partition, delay, drop, restart or one of {:?}",
                    FaultKind::ALL.map(FaultKind::name)
                );
            }
            for k in matched {
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
        }
        if kinds.is_empty() {
            bail!("no nemesis given");
        }
        Ok(kinds)
    }
}

/// One fault that was injected.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// The node it hit; `None` for link faults on several nodes and for a
    /// whole-cluster restart.
    pub node: Option<NodeId>,
    /// When it started (for a kill: the SIGKILL).
    pub start: Instant,
    /// How long the fault lasted, until it was healed.
    pub duration: Duration,
    /// What exactly was done, for the report and the nodes' logs.
    pub detail: String,
}

/// Timings the nemeses need to know about the cluster they hurt.
#[derive(Debug, Clone)]
pub struct NemesisConfig {
    pub kinds: Vec<FaultKind>,
    pub seed: u64,
    /// `--election-max`: a pause of the leader must outlast it.
    pub election_max: Duration,
    /// `--workflow-lease`: a pause of an agent must outlast it.
    pub workflow_lease: Duration,
    /// Quiet time between two faults: drawn from this range.
    pub gap: (Duration, Duration),
    /// Scales how long each fault is held (1.0 = the built-in durations).
    pub hold_scale: f64,
}

/// Injects faults into one cluster until told to stop.
pub struct Nemesis<'a> {
    cluster: &'a Cluster,
    proxies: &'a LinkProxies,
    config: NemesisConfig,
    rng: StdRng,
    records: Vec<FaultRecord>,
}

impl std::fmt::Debug for Nemesis<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nemesis")
            .field("config", &self.config)
            .field("records", &self.records.len())
            .finish()
    }
}

impl<'a> Nemesis<'a> {
    pub fn new(cluster: &'a Cluster, proxies: &'a LinkProxies, config: NemesisConfig) -> Self {
        // A different stream from the workload's, from the same seed.
        let rng = StdRng::seed_from_u64(config.seed ^ 0x6e65_6d65_7369_7321);
        Nemesis {
            cluster,
            proxies,
            config,
            rng,
            records: Vec::new(),
        }
    }

    /// Injects faults until `until`, then heals everything and returns what
    /// was done. A fault in progress at `until` is still healed in full.
    /// An error means the harness itself failed (a node could not be
    /// restarted), not that the cluster misbehaved.
    pub async fn run(mut self, until: Instant) -> Result<Vec<FaultRecord>> {
        let mut first_pass = self.config.kinds.clone();
        first_pass.shuffle(&mut self.rng);
        first_pass.reverse();
        loop {
            let gap = self.draw(self.config.gap.0, self.config.gap.1);
            if Instant::now() + gap >= until {
                break;
            }
            tokio::time::sleep(gap).await;
            let kind = match first_pass.pop() {
                Some(k) => k,
                None => match self.config.kinds.choose(&mut self.rng) {
                    Some(k) => *k,
                    None => break,
                },
            };
            let result = self.inject(kind).await;
            // Whatever happened, leave nothing broken behind.
            self.heal_all()?;
            result?;
            let _ = self.cluster.wait_for_leader(RECOVERY_TIMEOUT).await;
        }
        self.heal_all()?;
        Ok(self.records)
    }

    /// Every link back to pass, every paused node resumed, every stopped
    /// node restarted.
    pub fn heal_all(&self) -> Result<()> {
        heal_everything(self.cluster, self.proxies)
    }

    async fn inject(&mut self, kind: FaultKind) -> Result<()> {
        match kind {
            FaultKind::KillLeader => {
                let Some(leader) = self.leader().await else {
                    return Ok(());
                };
                self.kill_and_restart(kind, leader).await
            }
            FaultKind::KillFollower => {
                let Some(leader) = self.leader().await else {
                    return Ok(());
                };
                let followers: Vec<NodeId> = self
                    .cluster
                    .running()
                    .into_iter()
                    .filter(|n| *n != leader)
                    .collect();
                let Some(&node) = followers.choose(&mut self.rng) else {
                    return Ok(());
                };
                self.kill_and_restart(kind, node).await
            }
            FaultKind::KillRandom => {
                let running = self.cluster.running();
                let Some(&node) = running.choose(&mut self.rng) else {
                    return Ok(());
                };
                self.kill_and_restart(kind, node).await
            }
            FaultKind::PauseLeader => {
                let Some(leader) = self.leader().await else {
                    return Ok(());
                };
                let min = self.config.election_max * 3;
                let hold = self.hold(min, min + Duration::from_millis(1500));
                self.pause_for(kind, leader, hold, "leader").await
            }
            FaultKind::PauseAgent => {
                let (node, why) = match self.workflow_holder().await {
                    Some(n) => (n, "holds workflow work"),
                    None => match self.cluster.running().choose(&mut self.rng) {
                        Some(&n) => (n, "random: no node held workflow work"),
                        None => return Ok(()),
                    },
                };
                let min = self.config.workflow_lease + Duration::from_secs(2);
                let hold = self.hold(min, min + Duration::from_secs(2));
                self.pause_for(kind, node, hold, why).await
            }
            FaultKind::PartitionLeader => {
                let Some(leader) = self.leader().await else {
                    return Ok(());
                };
                let hold = self.hold(Duration::from_secs(2), Duration::from_secs(4));
                let start = Instant::now();
                self.proxies.isolate(leader, LinkMode::Blackhole);
                self.cluster
                    .note_fault(leader, "isolated: every peer link blackholed");
                tokio::time::sleep(hold).await;
                self.proxies.heal();
                self.cluster.note_fault(leader, "partition healed");
                self.record(
                    kind,
                    Some(leader),
                    start,
                    "leader isolated (blackhole both ways)",
                );
                Ok(())
            }
            FaultKind::LinkDelay => {
                let links = self.some_links();
                let delay = Duration::from_millis(self.rng.random_range(20..=150));
                let hold = self.hold(Duration::from_secs(2), Duration::from_secs(4));
                let start = Instant::now();
                for &(from, to) in &links {
                    self.proxies.set(from, to, LinkMode::Delay(delay));
                }
                tokio::time::sleep(hold).await;
                self.proxies.heal();
                let detail = format!("{delay:?} on links {links:?}");
                self.record(kind, None, start, &detail);
                Ok(())
            }
            FaultKind::LinkDrop => {
                let links = self.some_links();
                let hold = self.hold(Duration::from_secs(1), Duration::from_secs(3));
                let start = Instant::now();
                for &(from, to) in &links {
                    self.proxies.set(from, to, LinkMode::Drop);
                }
                tokio::time::sleep(hold).await;
                self.proxies.heal();
                let detail = format!("links {links:?}");
                self.record(kind, None, start, &detail);
                Ok(())
            }
            FaultKind::RestartCluster => {
                let start = Instant::now();
                let nodes = self.cluster.node_ids();
                for &n in &nodes {
                    if self.cluster.pid(n).is_ok() {
                        self.cluster.kill(n)?;
                    }
                }
                let down = self.hold(Duration::from_millis(300), Duration::from_millis(1500));
                tokio::time::sleep(down).await;
                for &n in &nodes {
                    self.cluster.restart(n)?;
                }
                let _ = self
                    .cluster
                    .wait_healthy(nodes.len(), RECOVERY_TIMEOUT)
                    .await;
                self.record(kind, None, start, "every node SIGKILLed and restarted");
                Ok(())
            }
        }
    }

    async fn kill_and_restart(&mut self, kind: FaultKind, node: NodeId) -> Result<()> {
        let down = self.hold(Duration::from_millis(500), Duration::from_millis(2500));
        let start = Instant::now();
        self.cluster.kill(node)?;
        tokio::time::sleep(down).await;
        self.cluster.restart(node)?;
        let detail = format!("SIGKILL, restarted after {down:?}");
        self.record(kind, Some(node), start, &detail);
        Ok(())
    }

    async fn pause_for(
        &mut self,
        kind: FaultKind,
        node: NodeId,
        hold: Duration,
        why: &str,
    ) -> Result<()> {
        let start = Instant::now();
        self.cluster.pause(node)?;
        tokio::time::sleep(hold).await;
        self.cluster.resume(node)?;
        let detail = format!("SIGSTOP for {hold:?} ({why})");
        self.record(kind, Some(node), start, &detail);
        Ok(())
    }

    fn record(&mut self, kind: FaultKind, node: Option<NodeId>, start: Instant, detail: &str) {
        self.records.push(FaultRecord {
            kind,
            node,
            start,
            duration: start.elapsed(),
            detail: detail.to_string(),
        });
    }

    async fn leader(&self) -> Option<NodeId> {
        self.cluster
            .wait_for_leader(RECOVERY_TIMEOUT)
            .await
            .ok()
            .filter(|l| self.cluster.running().contains(l))
    }

    /// A running node whose agent (`node-N`) holds a claimed workflow item,
    /// as the first node that answers sees it.
    async fn workflow_holder(&mut self) -> Option<NodeId> {
        let running = self.cluster.running();
        for &asked in &running {
            let Ok(mut work) = self.cluster.work(asked) else {
                continue;
            };
            let mut request = tonic::Request::new(ListWorkRequest {
                status: WorkStatus::Claimed as i32,
                r#type: "workflow".into(),
                consistency: ReadConsistency::Local as i32,
                ..Default::default()
            });
            request.set_timeout(Duration::from_secs(2));
            let Ok(Ok(resp)) =
                tokio::time::timeout(Duration::from_secs(2), work.list_work(request)).await
            else {
                continue;
            };
            let holders: Vec<NodeId> = resp
                .into_inner()
                .items
                .iter()
                .filter_map(|i| i.claim.as_ref())
                .filter_map(|c| c.agent.strip_prefix("node-")?.parse().ok())
                .filter(|n| running.contains(n))
                .collect();
            return holders.choose(&mut self.rng).copied();
        }
        None
    }

    /// One to three directed links, drawn at random.
    fn some_links(&mut self) -> Vec<(NodeId, NodeId)> {
        let all = self.proxies.links();
        let count = self.rng.random_range(1..=3.min(all.len().max(1)));
        all.choose_multiple(&mut self.rng, count).copied().collect()
    }

    fn draw(&mut self, min: Duration, max: Duration) -> Duration {
        if max <= min {
            return min;
        }
        let ms = self
            .rng
            .random_range(min.as_millis() as u64..=max.as_millis() as u64);
        Duration::from_millis(ms)
    }

    fn hold(&mut self, min: Duration, max: Duration) -> Duration {
        let d = self.draw(min, max);
        // Never scale a pause below what makes it the fault it claims to be.
        d.mul_f64(self.config.hold_scale.max(1.0))
    }
}

/// Every link back to pass, every paused node resumed and every node that
/// is not running started again.
pub fn heal_everything(cluster: &Cluster, proxies: &LinkProxies) -> Result<()> {
    proxies.heal();
    for n in cluster.node_ids() {
        if cluster.is_paused(n) {
            cluster.resume(n)?;
        }
        if cluster.pid(n).is_err() {
            cluster.restart(n)?;
        }
    }
    Ok(())
}

/// Count and total time of the faults of each kind.
pub fn faults_by_kind(records: &[FaultRecord]) -> BTreeMap<&'static str, (u64, Duration)> {
    let mut by_kind: BTreeMap<&'static str, (u64, Duration)> = BTreeMap::new();
    for r in records {
        let e = by_kind.entry(r.kind.name()).or_default();
        e.0 += 1;
        e.1 += r.duration;
    }
    by_kind
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn families_expand_and_unknown_names_fail() {
        let kinds = FaultKind::parse_list("kill,partition,delay").unwrap();
        assert_eq!(kinds.len(), 5);
        assert_eq!(
            FaultKind::parse_list("all").unwrap().len(),
            FaultKind::ALL.len()
        );
        assert!(FaultKind::parse_list("kill,explode").is_err());
        assert!(FaultKind::parse_list("").is_err());
    }
}
