//! `swarmctl work list [--status S] [--type T] [--holder A] [--dead-letter]
//! [--limit N] [--page-token T] [--all] [--local]`
//!
//! Without `--all`: at most `--limit` items (default 1,000), then, when
//! more match, `next page token: T` on stderr; `--page-token T` carries on
//! from there. stdout is what it is for any list: a table, or one JSON
//! array (the token stays off stdout so that scripts parse one value).
//!
//! With `--all`: every matching item (from `--page-token` on, if given),
//! printed page by page as each arrives (`--limit` is then the page size):
//! a table with one header, or one JSON array whose items are written as
//! they come, one per line. If a page fails, what was printed stays (the
//! array is closed) and the command exits 1.

use anyhow::{Context as _, Result};
use clap::Args;
use futures::StreamExt as _;
use swarm_client::LIST_DEFAULT_LIMIT;
use swarm_client::proto::{ListWorkRequest, WorkItem, WorkStatus};

use super::StatusFilter;
use crate::commands::Context;
use crate::output::{OutputFormat, now_ms, print_raw};
use crate::views::work_item::{item_json, items_table};

#[derive(Debug, Args)]
pub struct List {
    /// Only items in this status
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Only items of this type
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Only items this agent holds
    #[arg(long)]
    pub holder: Option<String>,
    /// Only dead letters: failed items whose attempts ran out (`work retry` puts them back)
    #[arg(long)]
    pub dead_letter: bool,
    /// At most this many items (up to 10000); with --all, the page size
    #[arg(long, default_value_t = LIST_DEFAULT_LIMIT, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Carry on where an earlier listing stopped: the token it printed
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
    /// Every matching item, following the pages, printed as they arrive
    #[arg(long)]
    pub all: bool,
    /// Read the answering node's replica (may be behind) instead of a linearizable read
    #[arg(long)]
    pub local: bool,
}

pub async fn run(ctx: &Context, args: List) -> Result<()> {
    let status = args
        .status
        .map_or(WorkStatus::Unspecified, WorkStatus::from);
    let request = ListWorkRequest {
        status: status as i32,
        r#type: args.kind.unwrap_or_default(),
        holder: args.holder.unwrap_or_default(),
        limit: args.limit,
        consistency: super::consistency(args.local),
        page_token: args.page_token.unwrap_or_default(),
        dead_letter: args.dead_letter,
    };
    if args.all {
        every_page(ctx, request).await
    } else {
        one_page(ctx, request).await
    }
}

/// Up to `request.limit` items. A node may answer a short page (it stops
/// at the message limit, or after looking at many items that do not match)
/// that still has a next one: the rest is asked for until the limit is
/// reached, so the token printed continues right after the last item shown.
async fn one_page(ctx: &Context, mut request: ListWorkRequest) -> Result<()> {
    let limit = request.limit as usize;
    let mut items: Vec<WorkItem> = Vec::new();
    let mut failure = None;
    loop {
        request.limit = u32::try_from(limit - items.len()).unwrap_or(u32::MAX);
        match ctx.client.list_work_page(request.clone()).await {
            Ok(page) => {
                items.extend(page.items);
                request.page_token = page.next_page_token;
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if request.page_token.is_empty() || items.len() >= limit {
            break;
        }
    }
    if failure.is_none() || !items.is_empty() {
        super::print_items(ctx, &items, "no work items")?;
    }
    if let Some(e) = failure {
        return Err(e).context("list work items");
    }
    if !request.page_token.is_empty() {
        eprintln!("next page token: {}", request.page_token);
    }
    Ok(())
}

async fn every_page(ctx: &Context, request: ListWorkRequest) -> Result<()> {
    let mut pages = ctx.client.list_work_pages(request);
    let mut out = PagePrinter::new(ctx.output);
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => out.page(&page.items)?,
            Err(e) => {
                out.finish()?;
                return Err(e).context("list work items");
            }
        }
    }
    out.finish()
}

/// Prints a listing page by page, as one table or one JSON array.
struct PagePrinter {
    format: OutputFormat,
    /// Items printed so far.
    printed: usize,
    /// Column widths of the table so far.
    widths: Vec<usize>,
}

impl PagePrinter {
    fn new(format: OutputFormat) -> PagePrinter {
        PagePrinter {
            format,
            printed: 0,
            widths: Vec::new(),
        }
    }

    fn page(&mut self, items: &[WorkItem]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let text = match self.format {
            OutputFormat::Table => {
                items_table(items, now_ms()).render_continued(&mut self.widths, self.printed == 0)
            }
            // Each item opens its line with what separates it from the one
            // before, so a page ends without knowing whether more follow.
            OutputFormat::Json => {
                let mut text = String::new();
                for (i, item) in items.iter().enumerate() {
                    text.push_str(if self.printed + i == 0 { "[\n" } else { ",\n" });
                    let json =
                        serde_json::to_string(&item_json(item)).context("encode output as json")?;
                    text.push_str(&json);
                }
                text
            }
        };
        self.printed += items.len();
        print_raw(&text)
    }

    fn finish(&mut self) -> Result<()> {
        match self.format {
            OutputFormat::Json if self.printed == 0 => print_raw("[]\n"),
            OutputFormat::Json => print_raw("\n]\n"),
            OutputFormat::Table if self.printed == 0 => {
                eprintln!("no work items");
                Ok(())
            }
            OutputFormat::Table => Ok(()),
        }
    }
}
