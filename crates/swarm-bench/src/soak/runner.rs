//! One soak run against a three-node cluster of real `swarmd` processes,
//! started by the end-to-end harness (`swarm-tests`' [`Cluster`]: ports on
//! 127.0.0.1 below the ephemeral range, data dirs in a temp dir, processes
//! tracked by PID and SIGKILLed when it is dropped).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use swarm_proto::v1::ClusterStatusResponse;
use swarm_tests::{Cluster, ClusterOptions, NodeId, is_voter};
use tokio::time::MissedTickBehavior;

use super::load::{Progress, agent};
use super::probe::{SnapshotFile, log_bytes, rss_bytes};
use super::report::{NodeSample, Report, Restart, Sample, Summary};
use crate::client::SwarmClaimer;

/// The work type of the soak's items.
const KIND: &str = "soak";
/// How long the cluster may take to start, and to be healthy again after
/// the restart, before the run gives up.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(120);

/// What a soak run does; also `swarm-soak run`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakOptions {
    /// Items to push through submit → claim → complete.
    #[arg(long, default_value_t = 1_000_000)]
    pub items: u64,
    /// swarmd's retention of finished items (humantime), passed as
    /// `--retention` when the swarmd binary has that flag.
    #[arg(long, env = "SWARM_RETENTION", default_value = "30s", value_parser = humantime_text)]
    pub retention: String,
    /// Agents looping at once, spread over the nodes.
    #[arg(long, default_value_t = 128)]
    pub clients: usize,
    /// Lease of each claim: how long an item whose claim answer was lost
    /// stays held.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
    /// The load stops here, done or not.
    #[arg(long, default_value = "60m", value_parser = humantime::parse_duration)]
    pub max_duration: Duration,
    /// The load stops when no item completes for this long.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
    /// Written with `<node> <pid>` lines whenever the nodes (re)start, so
    /// that the calling script can clean up by PID if this process dies.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Keep the cluster's temp dir (data and logs) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Recorded in the report: how the run was asked for.
    #[arg(long, default_value = "")]
    pub command: String,
    /// Recorded in the report: the source revision.
    #[arg(long, default_value = "")]
    pub revision: String,
}

/// A humantime duration, kept as written.
fn humantime_text(s: &str) -> Result<String, String> {
    humantime::parse_duration(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{s:?} is not a duration like 500ms or 30s: {e}"))
}

/// Starts the cluster, runs the load while sampling, restarts the cluster
/// and times it back to healthy. The cluster is gone when this returns (or
/// is dropped, e.g. on a signal).
pub async fn run(o: &SoakOptions) -> Result<Report> {
    let swarmd = swarm_tests::swarmd_binary()?;
    let retention_in_effect = has_flag(&swarmd, "--retention")?;
    let mut extra_args = Vec::new();
    if retention_in_effect {
        extra_args = vec!["--retention".to_string(), o.retention.clone()];
    } else {
        eprintln!(
            "soak: {} has no --retention flag: the retention of {} is not in effect, every finished item stays",
            swarmd.display(),
            o.retention
        );
    }
    // The Raft timings of cluster/node*.toml (scripts/cluster-up.sh), which
    // are swarmd's defaults.
    let options = ClusterOptions {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(150),
        election_max: Duration::from_millis(300),
        start_timeout: HEALTHY_TIMEOUT,
        extra_args,
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(3, options)
        .await
        .context("start a three-node cluster")?;
    if o.keep {
        cluster.keep_dir();
    }
    write_pids(&cluster, o.pid_file.as_deref())?;
    for id in cluster.node_ids() {
        eprintln!(
            "soak: node {id} at {} (pid {}), data {}",
            cluster.addr(id)?,
            cluster.pid(id)?,
            cluster.data_dir(id)?.display()
        );
    }

    let load = drive_load(&cluster, o).await?;
    let (restart, restart_error) = match restart(&cluster, o.pid_file.as_deref()).await {
        Ok(r) => (Some(r), None),
        Err(e) => {
            cluster.print_log_tails();
            (None, Some(format!("{e:#}")))
        }
    };
    let summary = Summary::of(o.items, load.secs, &load.samples, restart.as_ref());
    Ok(Report {
        command: o.command.clone(),
        revision: o.revision.clone(),
        items_requested: o.items,
        retention: o.retention.clone(),
        retention_in_effect,
        clients: o.clients,
        load_s: load.secs,
        errors: load.errors,
        stopped_early: load.stopped_early,
        restart_error,
        samples: load.samples,
        restart,
        summary,
    })
}

/// Whether `swarmd --help` lists `flag`.
fn has_flag(swarmd: &Path, flag: &str) -> Result<bool> {
    let out = std::process::Command::new(swarmd)
        .arg("--help")
        .output()
        .with_context(|| format!("run {} --help", swarmd.display()))?;
    let help = String::from_utf8_lossy(&out.stdout);
    Ok(help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
        .any(|word| word == flag))
}

fn write_pids(cluster: &Cluster, path: Option<&Path>) -> Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let mut text = String::new();
    for id in cluster.node_ids() {
        if let Ok(pid) = cluster.pid(id) {
            text.push_str(&format!("{id} {pid}\n"));
        }
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The load as it went.
struct LoadRun {
    samples: Vec<Sample>,
    secs: f64,
    errors: u64,
    stopped_early: Option<String>,
}

async fn drive_load(cluster: &Cluster, o: &SoakOptions) -> Result<LoadRun> {
    let ids = cluster.node_ids();
    let progress = Arc::new(Progress::default());
    let lease_ms = o.lease.as_millis() as u64;
    let mut agents = Vec::with_capacity(o.clients);
    for i in 0..o.clients.max(1) {
        let node = ids[i % ids.len()];
        let claimer = SwarmClaimer::new(
            cluster.work(node)?,
            format!("soak-{i}"),
            KIND.into(),
            lease_ms,
        );
        agents.push(tokio::spawn(agent(claimer, o.items, progress.clone())));
    }
    let start = Instant::now();
    let mut all_done = std::pin::pin!(futures::future::join_all(agents));
    let mut tick = tokio::time::interval(o.sample_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    let mut stopped_early = None;
    let (mut last_items, mut last_change) = (0, Instant::now());
    let secs = loop {
        tokio::select! {
            _ = &mut all_done => break start.elapsed().as_secs_f64(),
            _ = tick.tick() => {
                let s = sample(cluster, progress.completed(), start).await;
                eprintln!("soak: {}", progress_line(&s, o.items, progress.errors()));
                if s.items != last_items {
                    (last_items, last_change) = (s.items, Instant::now());
                }
                samples.push(s);
                if stopped_early.is_none() {
                    stopped_early = stop_reason(cluster, o, start, last_change);
                    if let Some(why) = &stopped_early {
                        eprintln!("soak: stopping the load: {why}");
                        progress.stop();
                    }
                }
            }
        }
    };
    samples.push(sample(cluster, progress.completed(), start).await);
    Ok(LoadRun {
        samples,
        secs,
        errors: progress.errors(),
        stopped_early,
    })
}

/// Why the load must stop before its last item, if it must.
fn stop_reason(
    cluster: &Cluster,
    o: &SoakOptions,
    start: Instant,
    last_change: Instant,
) -> Option<String> {
    if let Err(e) = cluster.check_alive() {
        return Some(format!("{e:#}"));
    }
    if start.elapsed() >= o.max_duration {
        return Some(format!(
            "the time bound of {} was reached",
            humantime::format_duration(o.max_duration)
        ));
    }
    if last_change.elapsed() >= o.stall_timeout {
        return Some(format!(
            "no item completed for {}",
            humantime::format_duration(o.stall_timeout)
        ));
    }
    None
}

fn progress_line(s: &Sample, target: u64, errors: u64) -> String {
    let rss: Vec<String> = s
        .nodes
        .iter()
        .map(|n| n.rss_bytes.map_or("?".into(), |b| (b >> 20).to_string()))
        .collect();
    let snapshot = s.nodes.iter().filter_map(|n| n.snapshot_bytes).max();
    format!(
        "{:>6.0}s {:>9}/{} items ({:.0}/s), RSS MiB {}, snapshot {} MiB, {} errors",
        s.t_s,
        s.items,
        target,
        if s.t_s > 0.0 {
            s.items as f64 / s.t_s
        } else {
            0.0
        },
        rss.join("/"),
        snapshot.map_or("-".into(), |b| format!(
            "{:.1}",
            b as f64 / (1024.0 * 1024.0)
        )),
        errors
    )
}

/// Every node now.
async fn sample(cluster: &Cluster, items: u64, start: Instant) -> Sample {
    Sample {
        t_s: start.elapsed().as_secs_f64(),
        items,
        nodes: sample_nodes(cluster).await,
    }
}

async fn sample_nodes(cluster: &Cluster) -> Vec<NodeSample> {
    let looks = cluster.node_ids().into_iter().map(|id| async move {
        let held = cluster.status(id).await.ok().map(|s| s.items);
        let data_dir = cluster.data_dir(id).unwrap_or_default();
        let snapshot = SnapshotFile::of_node(&data_dir);
        NodeSample {
            node: id,
            rss_bytes: cluster.pid(id).ok().and_then(rss_bytes),
            snapshot_bytes: snapshot.as_ref().map(|s| s.bytes),
            snapshot_age_s: snapshot.as_ref().map(|s| s.age.as_secs_f64()),
            log_bytes: log_bytes(&data_dir),
            items_held: held,
        }
    });
    futures::future::join_all(looks).await
}

/// Stops every node at once (SIGTERM, SIGKILL after the harness's grace),
/// relaunches them on their data dirs and times them back to healthy.
async fn restart(cluster: &Cluster, pid_file: Option<&Path>) -> Result<Restart> {
    let ids = cluster.node_ids();
    let mut applied_before = 0;
    for &id in &ids {
        applied_before = applied_before.max(cluster.applied(id).await.unwrap_or(0));
    }
    eprintln!("soak: stopping every node (SIGTERM), applied index {applied_before}");
    let stopping = Instant::now();
    let stops = futures::future::join_all(
        ids.iter()
            .map(|&id| async move { (id, cluster.stop(id).await) }),
    )
    .await;
    let stop_s = stopping.elapsed().as_secs_f64();
    let mut sigkilled = Vec::new();
    for (id, stopped) in stops {
        if let Err(e) = stopped {
            eprintln!("soak: node {id}: {e:#}");
            sigkilled.push(id);
        }
    }

    eprintln!("soak: relaunching every node on its data dir");
    let relaunched = Instant::now();
    for &id in &ids {
        cluster.restart(id)?;
    }
    write_pids(cluster, pid_file)?;
    let times = healthy_again(cluster, &ids, applied_before, relaunched).await?;
    eprintln!(
        "soak: healthy again {:.2}s after the relaunch",
        times.healthy_s
    );
    Ok(Restart {
        stop_s,
        sigkilled,
        answering_s: times.answering_s,
        leader_s: times.leader_s,
        healthy_s: times.healthy_s,
        applied_index: times.applied_index,
        after: sample_nodes(cluster).await,
    })
}

/// How far a relaunched cluster has come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// Some node does not answer ClusterStatus yet.
    Down,
    /// Every node answers, but they do not all name one leader and see every
    /// node as a voter.
    Answering,
    /// One leader, every node a voter, but the applied indexes differ or are
    /// behind the index applied before the stop.
    OneLeader,
    /// Everything above, every node at this applied index.
    Healthy(u64),
}

/// Where the cluster stands, from every node's own ClusterStatus (`None`:
/// no answer).
fn recovery(views: &[Option<ClusterStatusResponse>], applied_before: u64) -> Recovery {
    let Some(views) = views.iter().map(Option::as_ref).collect::<Option<Vec<_>>>() else {
        return Recovery::Down;
    };
    let Some(first) = views.first() else {
        return Recovery::Down;
    };
    let one_leader = first.leader_id != 0
        && views.iter().all(|v| {
            v.leader_id == first.leader_id
                && v.members.iter().filter(|m| is_voter(m.role)).count() == views.len()
        });
    if !one_leader {
        return Recovery::Answering;
    }
    let index = first.last_applied;
    if index >= applied_before && views.iter().all(|v| v.last_applied == index) {
        Recovery::Healthy(index)
    } else {
        Recovery::OneLeader
    }
}

/// When a relaunched cluster reached each [`Recovery`] stage.
struct RecoveryTimes {
    answering_s: f64,
    leader_s: f64,
    healthy_s: f64,
    applied_index: u64,
}

/// Polls every node until the cluster is [`Recovery::Healthy`], noting when
/// it reached each stage, in seconds since `relaunched`.
async fn healthy_again(
    cluster: &Cluster,
    ids: &[NodeId],
    applied_before: u64,
    relaunched: Instant,
) -> Result<RecoveryTimes> {
    let (mut answering_s, mut leader_s) = (None, None);
    loop {
        cluster.check_alive()?;
        let views = futures::future::join_all(
            ids.iter()
                .map(|&id| async move { cluster.status(id).await.ok() }),
        )
        .await;
        let now = relaunched.elapsed().as_secs_f64();
        let stage = recovery(&views, applied_before);
        if stage != Recovery::Down {
            answering_s.get_or_insert(now);
        }
        if matches!(stage, Recovery::OneLeader | Recovery::Healthy(_)) {
            leader_s.get_or_insert(now);
        }
        if let Recovery::Healthy(applied_index) = stage {
            return Ok(RecoveryTimes {
                answering_s: answering_s.unwrap_or(now),
                leader_s: leader_s.unwrap_or(now),
                healthy_s: now,
                applied_index,
            });
        }
        if relaunched.elapsed() >= HEALTHY_TIMEOUT {
            bail!(
                "the cluster was not healthy {HEALTHY_TIMEOUT:?} after the relaunch (last seen: {stage:?}, applied index before the stop {applied_before})"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use swarm_proto::v1::{Member, MemberRole};

    use super::*;

    fn view(node: u64, leader: u64, applied: u64) -> Option<ClusterStatusResponse> {
        Some(ClusterStatusResponse {
            leader_id: leader,
            node_id: node,
            last_applied: applied,
            members: (1..=3)
                .map(|id| Member {
                    id,
                    role: if id == leader {
                        MemberRole::Leader
                    } else {
                        MemberRole::Follower
                    } as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    #[test]
    fn a_cluster_is_healthy_when_all_agree_on_the_leader_and_the_index() {
        let all = |a: [u64; 3], leaders: [u64; 3]| {
            (0..3)
                .map(|i| view(i as u64 + 1, leaders[i], a[i]))
                .collect::<Vec<_>>()
        };
        let mut down = all([5, 5, 5], [1, 1, 1]);
        down[2] = None;
        assert_eq!(recovery(&down, 5), Recovery::Down);
        assert_eq!(recovery(&all([5, 5, 5], [1, 0, 1]), 5), Recovery::Answering);
        assert_eq!(recovery(&all([5, 5, 5], [1, 2, 1]), 5), Recovery::Answering);
        assert_eq!(recovery(&all([6, 5, 6], [1, 1, 1]), 5), Recovery::OneLeader);
        assert_eq!(recovery(&all([4, 4, 4], [1, 1, 1]), 5), Recovery::OneLeader);
        assert_eq!(
            recovery(&all([6, 6, 6], [1, 1, 1]), 5),
            Recovery::Healthy(6)
        );
        assert_eq!(recovery(&[], 0), Recovery::Down);
    }
}
