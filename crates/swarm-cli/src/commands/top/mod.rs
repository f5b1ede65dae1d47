//! `swarmctl top [--interval 1s] [--once]`: the cluster, the queues and the
//! live claims on one screen, refreshed in place until `q` or Ctrl-C, for
//! people who live in a terminal.
//!
//! Each refresh reads, concurrently: the cluster status with every member
//! probed (as `cluster status` does), the work stats, and the first page of
//! claimed items; the queues and claims are the answering node's replica (a
//! local read, so the view keeps going while the cluster has no leader). A
//! read that fails shows its error in its part of the frame and the view
//! keeps refreshing. The reads run in their own task, so a slow or dead node
//! never keeps `q` from quitting.
//!
//! When stdout is not a terminal, or with `--once`, one frame is printed as
//! plain text (`-o json`: as JSON) and the command exits, 1 if a part could
//! not be read.

mod screen;

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use crossterm::event::{Event, EventStream};
use futures::StreamExt as _;
use swarm_client::SwarmClient;
use swarm_client::proto::{
    GetWorkRequest, ListWorkRequest, ReadConsistency, WorkStatsRequest, WorkStatus,
};
use tokio::sync::mpsc;

use self::screen::{Screen, is_quit};
use super::cluster::status::probed_status;
use crate::commands::Context;
use crate::output::{OutputFormat, now_ms, print_json, print_text};
use crate::views::top::{
    CLAIMS_OVERHEAD, ClaimsPage, Snapshot, claims_lines, cut, frame_json, frame_text,
    overview_lines,
};

/// Faster than this only loads the cluster: every refresh probes every member.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Claims listed in one frame printed once, unless `--claims` says otherwise.
const ONCE_CLAIMS: u32 = 20;

#[derive(Debug, Args)]
pub struct Top {
    /// How often to refresh, e.g. 500ms or 2s (at least 100ms)
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Print one frame as plain text and exit (what a pipe gets anyway)
    #[arg(long)]
    pub once: bool,
    /// Most live claims to list [default: what fits the terminal; 20 when printing once]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub claims: Option<u32>,
}

/// A refresh interval: a humantime duration of at least [`MIN_INTERVAL`].
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 500ms or 2s: {e}"))?;
    if interval < MIN_INTERVAL {
        return Err(format!(
            "{s:?} is too short: refreshing probes every member, so the interval must be at least {}",
            humantime::format_duration(MIN_INTERVAL)
        ));
    }
    Ok(interval)
}

pub async fn run(ctx: &Context, args: Top) -> Result<()> {
    let live = !args.once && ctx.output == OutputFormat::Table && std::io::stdout().is_terminal();
    if live {
        return run_live(ctx.client.clone(), args).await;
    }
    let snapshot = read_snapshot(&ctx.client, args.claims.unwrap_or(ONCE_CLAIMS)).await;
    let now = now_ms();
    match ctx.output {
        OutputFormat::Json => print_json(&frame_json(&snapshot, now))?,
        OutputFormat::Table => print_text(&frame_text(&snapshot, now, usize::MAX))?,
    }
    let errors = snapshot.errors();
    if !errors.is_empty() {
        bail!("could not read {}", errors.join("; "));
    }
    Ok(())
}

/// Redraws a frame on every refresh and on every resize until a quit key or
/// SIGINT.
async fn run_live(client: SwarmClient, args: Top) -> Result<()> {
    let mut screen = Screen::enter().context("set up the terminal")?;
    let (snapshots, mut refreshed) = mpsc::channel(1);
    let reader = tokio::spawn(read_every(
        client.clone(),
        args.interval,
        args.claims,
        snapshots,
    ));
    let mut keys = EventStream::new();
    let endpoints: Vec<String> = client.endpoints().iter().map(ToString::to_string).collect();
    let mut latest: Option<Snapshot> = None;
    let ended = loop {
        let lines = live_frame(latest.as_ref(), &endpoints, args.interval);
        if let Err(e) = screen.draw(&lines) {
            break Err(anyhow!(e).context("draw the screen"));
        }
        tokio::select! {
            snapshot = refreshed.recv() => match snapshot {
                Some(snapshot) => latest = Some(snapshot),
                None => break Err(anyhow!("the refresh task stopped")),
            },
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) if is_quit(&key) => break Ok(()),
                // A resize, or a key that does nothing: draw again.
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(anyhow!(e).context("read the keyboard")),
                None => break Ok(()),
            },
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
    };
    reader.abort();
    drop(screen);
    ended
}

/// Reads a snapshot, sends it, waits `interval`, again, until the receiver
/// is gone.
async fn read_every(
    client: SwarmClient,
    interval: Duration,
    claims: Option<u32>,
    snapshots: mpsc::Sender<Snapshot>,
) {
    loop {
        // The claims that could fit: no frame shows more rows than the screen has.
        let (_, rows) = Screen::size();
        let limit = claims.unwrap_or_else(|| u32::try_from(rows.clamp(1, 1000)).unwrap_or(1));
        let snapshot = read_snapshot(&client, limit).await;
        if snapshots.send(snapshot).await.is_err() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// A title line, then the frame, fitted to the screen: the claims get the
/// rows left over, and every line is cut to the width.
fn live_frame(
    snapshot: Option<&Snapshot>,
    endpoints: &[String],
    interval: Duration,
) -> Vec<String> {
    let (width, height) = Screen::size();
    let mut lines = vec![format!(
        "swarmctl top  every {}  q to quit  {}",
        humantime::format_duration(interval),
        endpoints.join(","),
    )];
    match snapshot {
        None => lines.push("reading...".to_string()),
        Some(s) => {
            lines.extend(overview_lines(s));
            let left = height.saturating_sub(lines.len() + CLAIMS_OVERHEAD);
            lines.extend(claims_lines(s, now_ms(), left));
        }
    }
    lines.truncate(height);
    lines.iter().map(|l| cut(l, width)).collect()
}

/// One refresh: the three reads at once, then the oldest pending item's type.
async fn read_snapshot(client: &SwarmClient, claims_limit: u32) -> Snapshot {
    let cluster = async { probed_status(client).await.map_err(|e| format!("{e:#}")) };
    let stats = async {
        client
            .work_stats(WorkStatsRequest {
                consistency: ReadConsistency::Local as i32,
            })
            .await
            .context("read work stats")
            .map_err(|e| format!("{e:#}"))
    };
    let claims = async {
        client
            .list_work_page(ListWorkRequest {
                status: WorkStatus::Claimed as i32,
                limit: claims_limit,
                consistency: ReadConsistency::Local as i32,
                ..Default::default()
            })
            .await
            .context("list claimed work items")
            .map(|page| ClaimsPage {
                more: !page.next_page_token.is_empty(),
                items: page.items,
            })
            .map_err(|e| format!("{e:#}"))
    };
    let (cluster, stats, claims) = tokio::join!(cluster, stats, claims);
    let oldest_pending_type = match &stats {
        Ok(stats) => oldest_pending_type(client, stats).await,
        Err(_) => None,
    };
    Snapshot {
        cluster,
        stats,
        oldest_pending_type,
        claims,
    }
}

/// The type of the oldest pending item: the only type with pending items,
/// else looked up by its id (unknown if that fails: the age still shows for
/// all types together).
async fn oldest_pending_type(
    client: &SwarmClient,
    stats: &swarm_client::proto::WorkStatsResponse,
) -> Option<String> {
    if stats.oldest_pending_id.is_empty() {
        return None;
    }
    let mut pending = stats.by_type.iter().filter(|(_, c)| c.pending > 0);
    if let (Some((kind, _)), None) = (pending.next(), pending.next()) {
        return Some(kind.clone());
    }
    client
        .get_work(GetWorkRequest {
            id: stats.oldest_pending_id.clone(),
            consistency: ReadConsistency::Local as i32,
        })
        .await
        .ok()
        .map(|item| item.r#type)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        let err = parse_interval("soon").unwrap_err();
        assert!(err.contains("not a duration"), "{err}");
        let err = parse_interval("10ms").unwrap_err();
        assert!(err.contains("at least 100ms"), "{err}");
        assert!(parse_interval("0s").is_err());
    }
}
