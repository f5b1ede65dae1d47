//! `swarmctl work watch ID [--from-start]`: prints an item's events as they
//! happen, until it completes, fails or is cancelled. Table: one row per
//! event (time, kind, agent, token, step, detail); `-o json`: one JSON
//! object per line.
//!
//! [`follow`] is the watch loop `workflow run --wait` shares: when the node
//! streaming the events dies, it watches again through another node, from
//! the start, and skips the events already seen.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use futures::StreamExt as _;
use swarm_client::SwarmClient;
use swarm_client::proto::{GetWorkRequest, ReadConsistency, WorkEvent, WorkStatus};

use crate::commands::Context;
use crate::output::{OutputFormat, print_text};
use crate::views::work_event::{is_final, watch_header, watch_row, watched_event_json};
use crate::views::work_item::status_name;

#[derive(Debug, Args)]
pub struct Watch {
    /// Work item id
    pub id: String,
    /// Every event since the item was submitted, then the live ones (default: live only)
    #[arg(long)]
    pub from_start: bool,
}

/// Pause before watching again after a stream broke, so that a cluster
/// electing a new leader is not hammered.
const REOPEN_PAUSE: Duration = Duration::from_millis(300);

/// How many times in a row a watch may be reopened without a new event
/// before the command gives up.
const MAX_QUIET_REOPENS: u32 = 10;

/// Where [`follow`] sends what it learns.
pub trait EventSink {
    /// An event not seen before, in order.
    fn event(&mut self, event: &WorkEvent) -> Result<()>;
    /// Something to tell the user that is not an event (a reconnect).
    fn notice(&mut self, text: &str);
}

/// Hands every event of item `id` to `sink` once, in order, until the
/// item's final event (`completed`, `failed`, `cancelled`). Returns the
/// item's status when it ended.
///
/// A stream that breaks, or ends before the final event, is opened again
/// (the client tries the other endpoints) from the start, skipping events
/// whose `seq` was handed over already. A live-only watch that broke before
/// its first event opens live-only again: it cannot know where it was.
pub async fn follow(
    client: &SwarmClient,
    id: &str,
    from_start: bool,
    sink: &mut dyn EventSink,
) -> Result<WorkStatus> {
    let mut next_seq: Option<u64> = None;
    let mut quiet_reopens = 0u32;
    loop {
        let mut events = client
            .watch_work(id, from_start || next_seq.is_some())
            .await
            .with_context(|| format!("watch work item {id:?}"))?;
        let mut progressed = false;
        let why = loop {
            match events.next().await {
                Some(Ok(event)) => {
                    if next_seq.is_some_and(|next| event.seq < next) {
                        continue;
                    }
                    next_seq = Some(event.seq + 1);
                    progressed = true;
                    sink.event(&event)?;
                    if is_final(&event) {
                        return Ok(
                            WorkStatus::try_from(event.status).unwrap_or(WorkStatus::Unspecified)
                        );
                    }
                }
                Some(Err(err)) if err.is_watch_interrupted() => break err.to_string(),
                Some(Err(err)) => {
                    return Err(anyhow::Error::new(err).context(format!("watch work item {id:?}")));
                }
                None => {
                    // A node ends the stream when the item has ended; a
                    // live-only watch of an item that ended already sees
                    // no event at all.
                    let status = ended_status(client, id).await?;
                    if let Some(status) = status {
                        if !progressed && next_seq.is_none() {
                            sink.notice(&format!(
                                "work item {id:?} has ended already: {}",
                                status_name(status as i32)
                            ));
                        }
                        return Ok(status);
                    }
                    break "the node ended the watch before the item ended".to_string();
                }
            }
        };
        quiet_reopens = if progressed { 1 } else { quiet_reopens + 1 };
        if quiet_reopens > MAX_QUIET_REOPENS {
            bail!("watch work item {id:?}: {why} ({MAX_QUIET_REOPENS} times without a new event)");
        }
        sink.notice(&format!("{why}; watching again"));
        tokio::time::sleep(REOPEN_PAUSE).await;
    }
}

/// The item's status if it has ended, `None` while it runs.
async fn ended_status(client: &SwarmClient, id: &str) -> Result<Option<WorkStatus>> {
    let item = client
        .get_work(GetWorkRequest {
            id: id.to_string(),
            consistency: ReadConsistency::Linearizable as i32,
        })
        .await
        .with_context(|| format!("get work item {id:?}"))?;
    Ok(match WorkStatus::try_from(item.status) {
        Ok(s @ (WorkStatus::Completed | WorkStatus::Failed | WorkStatus::Cancelled)) => Some(s),
        _ => None,
    })
}

/// Prints each event on stdout as it comes.
struct Printer<'a> {
    id: &'a str,
    output: OutputFormat,
    header_printed: bool,
}

impl EventSink for Printer<'_> {
    fn event(&mut self, event: &WorkEvent) -> Result<()> {
        match self.output {
            OutputFormat::Json => {
                let line = serde_json::to_string(&watched_event_json(event))
                    .context("encode event as json")?;
                print_text(&line)
            }
            OutputFormat::Table => {
                if !self.header_printed {
                    self.header_printed = true;
                    print_text(&watch_header())?;
                }
                print_text(&watch_row(self.id, event))
            }
        }
    }

    fn notice(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

pub async fn run(ctx: &Context, args: Watch) -> Result<()> {
    let mut printer = Printer {
        id: &args.id,
        output: ctx.output,
        header_printed: false,
    };
    follow(&ctx.client, &args.id, args.from_start, &mut printer).await?;
    Ok(())
}
