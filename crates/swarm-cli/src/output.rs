//! Printing command results: JSON for scripts, aligned tables for people,
//! and lease times as "how long is left".

use std::fmt::Display;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

/// How a command prints its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people
    Table,
    /// JSON for scripts
    Json,
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("encode output as json")?;
    print_text(&text)
}

/// Prints `text` on stdout, ending it with a newline.
pub fn print_text(text: &str) -> Result<()> {
    if text.ends_with('\n') {
        print_raw(text)
    } else {
        print_raw(&format!("{text}\n"))
    }
}

/// Prints `text` on stdout as it is, now: a piece of output that arrives
/// in parts.
pub fn print_raw(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("write output")
}

/// Rows of cells under a header, columns padded to their widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        self.render_continued(&mut Vec::new(), true)
    }

    /// Renders the rows (after the header when `header`) as part of a table
    /// printed in pieces: `widths` carries the column widths from piece to
    /// piece and only ever grows, so columns stay aligned unless a later
    /// cell is wider than every earlier one.
    pub fn render_continued(&self, widths: &mut Vec<usize>, header: bool) -> String {
        let columns = self.header.len();
        widths.resize(columns, 0);
        for (i, h) in self.header.iter().enumerate() {
            widths[i] = widths[i].max(h.chars().count());
        }
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let header = header.then_some(&self.header);
        let mut text = String::new();
        for row in header.into_iter().chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// `name  value` lines, names padded to the longest: one record, vertically.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}").trim_end().to_string() + "\n")
        .collect()
}

/// The value, or `-` when there is none.
pub fn or_dash<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Milliseconds since the Unix epoch, the unit of every time on the wire.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How long a lease that ends at `expires_at_ms` has left: `9s`, `1m 30s`,
/// `800ms`, or `expired`. Seconds are rounded down, so the value never
/// promises more time than there is.
pub fn time_left(expires_at_ms: u64, now_ms: u64) -> String {
    match expires_at_ms.saturating_sub(now_ms) {
        0 => "expired".to_string(),
        left => duration_ms(left),
    }
}

/// A time on the wire (Unix epoch ms) for people: RFC 3339 in UTC, to the
/// second (`2026-12-24T09:00:00Z`).
pub fn utc_time(at_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}

/// [`utc_time`], followed by how long until then while it is ahead:
/// `2026-12-24T09:00:00Z (in 9m 59s)`.
pub fn utc_time_ahead(at_ms: u64, now_ms: u64) -> String {
    match at_ms.checked_sub(now_ms).filter(|left| *left > 0) {
        Some(left) => format!("{} (in {})", utc_time(at_ms), duration_ms(left)),
        None => utc_time(at_ms),
    }
}

/// A span of milliseconds for people: `800ms` under a second, else whole
/// seconds rounded down (`1m 30s`).
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns_and_trims_line_ends() {
        let mut t = Table::new(&["ID", "STATUS"]);
        t.push(vec!["w-long-id".into(), "pending".into()]);
        t.push(vec!["w2".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "ID         STATUS\nw-long-id  pending\nw2         -\n"
        );
    }

    #[test]
    fn a_table_in_pieces_keeps_one_header_and_grows_columns() {
        let mut widths = Vec::new();
        let mut first = Table::new(&["ID", "STATUS"]);
        first.push(vec!["w1".into(), "pending".into()]);
        let mut second = Table::new(&["ID", "STATUS"]);
        second.push(vec!["w-long".into(), "claimed".into()]);
        let text = first.render_continued(&mut widths, true)
            + &second.render_continued(&mut widths, false);
        assert_eq!(text, "ID  STATUS\nw1  pending\nw-long  claimed\n");
        assert_eq!(widths, [6, 7]);
    }

    #[test]
    fn fields_align_names() {
        let text = fields(&[
            ("id", "w1".into()),
            ("status", "claimed".into()),
            ("error", String::new()),
        ]);
        assert_eq!(text, "id      w1\nstatus  claimed\nerror\n");
    }

    #[test]
    fn wire_times_read_as_utc() {
        assert_eq!(utc_time(1_798_102_800_250), "2026-12-24T09:00:00Z");
        assert_eq!(
            utc_time_ahead(1_798_102_800_000, 1_798_102_200_500),
            "2026-12-24T09:00:00Z (in 9m 59s)"
        );
        assert_eq!(
            utc_time_ahead(1_798_102_800_000, 1_798_102_800_000),
            "2026-12-24T09:00:00Z"
        );
    }

    #[test]
    fn time_left_is_humanized() {
        assert_eq!(time_left(10_000, 1_000), "9s");
        assert_eq!(time_left(100_500, 10_000), "1m 30s");
        assert_eq!(time_left(1_800, 1_000), "800ms");
        assert_eq!(time_left(1_000, 1_000), "expired");
        assert_eq!(time_left(1_000, 5_000), "expired");
    }
}
