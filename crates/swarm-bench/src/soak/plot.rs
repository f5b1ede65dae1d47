//! The soak's curves as one SVG: every node's RSS, the items its replica
//! holds, its snapshot file and its log against items processed, one panel
//! each, with the RSS goal drawn in.
//!
//! plotters without its default features: the SVG backend writes text as
//! `<text>` elements for the viewer to render, so no font or freetype is
//! needed to build or to draw.

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::report::{Report, Sample, TARGET_RSS_MIB, node_ids};

const WIDTH: u32 = 960;
const PANEL_HEIGHT: u32 = 270;
const MIB: f64 = 1024.0 * 1024.0;
/// One colour per node (nodes 1, 2, 3, then around again).
const NODE_COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

/// One panel: a figure of every node against items.
struct Panel {
    title: String,
    y_desc: &'static str,
    value: fn(&super::report::NodeSample) -> Option<f64>,
    /// A horizontal goal line, with its label.
    goal: Option<(f64, &'static str)>,
}

/// The SVG document of `report`'s samples.
pub fn svg(report: &Report) -> Result<String> {
    let panels = [
        Panel {
            title: format!(
                "RSS per node; {} items, retention {}{}",
                super::report::thousands(report.items_requested),
                report.retention,
                if report.retention_in_effect {
                    ""
                } else {
                    " (not in effect: swarmd has no --retention)"
                }
            ),
            y_desc: "RSS (MiB)",
            value: |n| n.rss_bytes.map(|b| b as f64 / MIB),
            goal: Some((TARGET_RSS_MIB, "goal: 150 MiB")),
        },
        Panel {
            title: "items in each replica (live and retained finished ones)".into(),
            y_desc: "items (thousands)",
            value: |n| n.items_held.map(|i| i as f64 / 1000.0),
            goal: None,
        },
        Panel {
            title: "current snapshot file per node".into(),
            y_desc: "snapshot (MiB)",
            value: |n| n.snapshot_bytes.map(|b| b as f64 / MIB),
            goal: None,
        },
        Panel {
            title: "Raft log on disk per node (sled dir without snapshots)".into(),
            y_desc: "log (MiB)",
            value: |n| Some(n.log_bytes as f64 / MIB),
            goal: None,
        },
    ];
    let mut out = String::new();
    {
        let height = PANEL_HEIGHT * panels.len() as u32;
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let areas = root.split_evenly((panels.len(), 1));
        for (panel, area) in panels.iter().zip(&areas) {
            draw_panel(area, panel, &report.samples)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(out)
}

fn draw_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("draw the soak chart: {e}")
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    samples: &[Sample],
) -> Result<()> {
    let series: Vec<(u64, Vec<(f64, f64)>)> = node_ids(samples)
        .into_iter()
        .map(|id| {
            let points = samples
                .iter()
                .filter_map(|s| {
                    let n = s.nodes.iter().find(|n| n.node == id)?;
                    Some((s.items as f64 / 1000.0, (panel.value)(n)?))
                })
                .collect();
            (id, points)
        })
        .collect();
    let x_max = samples
        .iter()
        .map(|s| s.items as f64 / 1000.0)
        .fold(1.0, f64::max);
    let y_top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .chain(panel.goal.map(|(y, _)| y))
        .fold(1.0, f64::max)
        * 1.1;

    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(12)
        // Room for the last x label, which is centred on the right edge.
        .margin_right(32)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_top)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("items processed (thousands)")
        .y_desc(panel.y_desc)
        .draw()
        .map_err(draw_error)?;
    if let Some((y, label)) = panel.goal {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(LineSeries::new(
                [(0.0, y), (x_max, y)],
                grey.stroke_width(1),
            ))
            .map_err(draw_error)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey));
    }
    for (i, (id, points)) in series.into_iter().enumerate() {
        let colour = NODE_COLOURS[i % NODE_COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(draw_error)?
            .label(format!("node {id}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::report::{NodeSample, Summary};
    use super::*;

    #[test]
    fn draws_every_panel_and_node() {
        let samples: Vec<Sample> = (1..=5u64)
            .map(|i| Sample {
                t_s: i as f64,
                items: i * 20_000,
                nodes: (1..=3)
                    .map(|node| NodeSample {
                        node,
                        rss_bytes: Some((40 + i * node) * 1024 * 1024),
                        snapshot_bytes: (i > 1).then_some(i * 1024 * 1024),
                        snapshot_age_s: Some(1.0),
                        log_bytes: 2 * 1024 * 1024,
                        items_held: Some(i * 100),
                    })
                    .collect(),
            })
            .collect();
        let report = Report {
            command: "scripts/soak.sh --items 100000".into(),
            revision: "test".into(),
            items_requested: 100_000,
            retention: "5s".into(),
            retention_in_effect: true,
            clients: 8,
            load_s: 5.0,
            errors: 0,
            stopped_early: None,
            restart_error: None,
            summary: Summary::of(100_000, 5.0, &samples, None),
            samples,
            restart: None,
        };
        let svg = svg(&report).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.contains("retention 5s"));
        assert!(svg.contains("current snapshot file per node"));
        assert!(svg.contains("goal: 150 MiB"));
        assert_eq!(
            svg.matches("node 3").count(),
            4,
            "one legend entry per panel"
        );
    }

    #[test]
    fn no_samples_still_draws_empty_axes() {
        let report = Report {
            command: String::new(),
            revision: String::new(),
            items_requested: 0,
            retention: "30s".into(),
            retention_in_effect: false,
            clients: 1,
            load_s: 0.0,
            errors: 0,
            stopped_early: None,
            restart_error: None,
            summary: Summary::of(0, 0.0, &[], None),
            samples: vec![],
            restart: None,
        };
        assert!(svg(&report).unwrap().contains("</svg>"));
    }
}
