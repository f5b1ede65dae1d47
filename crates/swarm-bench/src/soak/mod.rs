//! The soak benchmark (`scripts/soak.sh`): does a node stay flat when items
//! keep flowing through it? A three-node cluster of release `swarmd`s takes
//! N items through submit → claim → complete at full speed while every
//! node's RSS, current snapshot file and on-disk log are sampled every few
//! seconds; then the whole cluster is stopped, relaunched on the same data
//! and timed back to healthy. The run is written as JSON, a markdown table
//! and an SVG of the curves against items processed.
//!
//! # Layout
//! - [`runner`]: the run: cluster, load, sampling, restart.
//! - [`load`]: the agents and the counters they share with the sampler.
//! - [`probe`]: one node's RSS from `/proc`, its snapshot and log from its
//!   data dir.
//! - [`report`]: the run as data, its summary, the table.
//! - [`plot`]: the SVG.

pub mod load;
pub mod plot;
pub mod probe;
pub mod report;
pub mod runner;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use report::Report;
pub use runner::{SoakOptions, run};

/// Writes `report` as JSON to `json` and its curves as SVG beside it (same
/// name, `.svg`); returns the SVG's path.
pub fn save(report: &Report, json: &Path) -> Result<PathBuf> {
    if let Some(dir) = json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report).context("encode the report")?;
    std::fs::write(json, text + "\n").with_context(|| format!("write {}", json.display()))?;
    let svg_path = json.with_extension("svg");
    std::fs::write(&svg_path, plot::svg(report)?)
        .with_context(|| format!("write {}", svg_path.display()))?;
    Ok(svg_path)
}

/// Reads a report written by [`save`], its summary recomputed from its
/// samples.
pub fn load_report(json: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(json).with_context(|| format!("read {}", json.display()))?;
    let mut report: Report =
        serde_json::from_str(&text).with_context(|| format!("parse {}", json.display()))?;
    report.summary = report::Summary::of(
        report.items_requested,
        report.load_s,
        &report.samples,
        report.restart.as_ref(),
    );
    Ok(report)
}
