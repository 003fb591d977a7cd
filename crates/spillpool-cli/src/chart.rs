//! SVG charts of benchmark samples: median MB/s by size, one line per storage.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::bench::{Sample, median};

/// A labelled series of (MB, MB/s) points, and whether it is a machine limit.
type Line = (String, Vec<(f64, f64)>, bool);

/// Two panels, write and read: median MB/s against size for each storage,
/// with the machine's limits (`hw-*`) dashed.
pub fn draw(samples: &[Sample], path: &Path) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("chart {}: {e}", path.display());
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((1, 2));
    let mut sizes: Vec<u64> = samples
        .iter()
        .filter(|s| !s.op.starts_with("small-"))
        .map(|s| s.bytes)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let x_max = sizes.last().copied().unwrap_or(1) as f64 / 1e6 * 1.05;
    let panel_ops: [(&str, &[&str]); 2] = [
        ("write (MB/s)", &["write", "write+fsync", "copy"]),
        ("read (MB/s)", &["read", "read+scan", "copy"]),
    ];
    for (panel, (title, ops)) in panels.iter().zip(panel_ops) {
        let mut lines: Vec<Line> = Vec::new();
        let mut keys: Vec<(String, &str)> = Vec::new();
        for s in samples {
            if ops.contains(&s.op) && !keys.contains(&(s.storage.clone(), s.op)) {
                keys.push((s.storage.clone(), s.op));
            }
        }
        for (storage, op) in keys {
            let points = sizes
                .iter()
                .filter_map(|&b| {
                    let at: Vec<Sample> =
                        samples.iter().filter(|s| s.bytes == b).cloned().collect();
                    let m = median(&at, &storage, op);
                    (m > 0.0).then_some((b as f64 / 1e6, m))
                })
                .collect::<Vec<_>>();
            if !points.is_empty() {
                lines.push((
                    format!("{storage} {op}"),
                    points,
                    storage.starts_with("hw-"),
                ));
            }
        }
        // A log axis: zero-copy reads and `mem://` writes run at TB/s,
        // disk writes at hundreds of MB/s, and both must stay readable.
        let values = || lines.iter().flat_map(|l| l.1.iter().map(|p| p.1));
        let y_max = values().fold(1.0f64, f64::max) * 1.5;
        let y_min = (values().fold(f64::INFINITY, f64::min) / 1.5).clamp(1.0, y_max / 10.0);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("table size (MB)")
            .y_desc("MB/s (median, log scale)")
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (label, points, limit)) in lines.into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let style = ShapeStyle::from(color).stroke_width(if limit { 1 } else { 2 });
            let series = if limit {
                chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
            } else {
                chart.draw_series(LineSeries::new(points.clone(), style))
            }
            .map_err(|e| err(&e))?;
            series
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
