//! SVG plots (plotters' SVG backend: no system fonts needed).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// A line per series over shared x values: `(label, points)`.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()> {
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x1, mut y1) = (1e-9f64, 1e-9f64);
    for &(x, y) in pts {
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x1 * 1.05, 0f64..y1 * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(err)?;
    for (i, (label, p)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                p.iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Cumulative distributions of latency samples (ms).
pub fn cdf(path: &Path, title: &str, series: &[(&str, Vec<f64>)]) -> Result<()> {
    let curves: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(l, v)| {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            let n = v.len().max(1) as f64;
            (
                *l,
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| (x, (i + 1) as f64 / n))
                    .collect(),
            )
        })
        .collect();
    lines(
        path,
        title,
        "latency (ms)",
        "fraction of samples <= x",
        &curves,
    )
}

/// Grouped bars: per group, `(label, measured, minimum)`.
pub fn bars(path: &Path, title: &str, y_label: &str, groups: &[(&str, f64, f64)]) -> Result<()> {
    let y1 = groups.iter().map(|g| g.1.max(g.2)).fold(1e-9, f64::max);
    let n = groups.len() as f64;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n, 0f64..y1 * 1.15)
        .map_err(err)?;
    let labels: Vec<String> = groups.iter().map(|g| g.0.to_string()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.26 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .draw()
        .map_err(err)?;
    let measured = Palette99::pick(0).to_rgba();
    let minimum = Palette99::pick(1).to_rgba();
    chart
        .draw_series(groups.iter().enumerate().map(|(i, g)| {
            Rectangle::new(
                [(i as f64 + 0.1, 0.0), (i as f64 + 0.48, g.1)],
                measured.filled(),
            )
        }))
        .map_err(err)?
        .label("measured cycle")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], measured.filled()));
    chart
        .draw_series(groups.iter().enumerate().map(|(i, g)| {
            Rectangle::new(
                [(i as f64 + 0.52, 0.0), (i as f64 + 0.9, g.2)],
                minimum.filled(),
            )
        }))
        .map_err(err)?
        .label("wire-time minimum")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], minimum.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_render_to_svg() {
        let dir = std::env::temp_dir().join(format!("bench-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        lines(
            &dir.join("l.svg"),
            "t",
            "x",
            "y",
            &[("a", vec![(1.0, 2.0), (2.0, 3.0)])],
        )
        .unwrap();
        cdf(&dir.join("c.svg"), "t", &[("a", vec![3.0, 1.0, 2.0])]).unwrap();
        bars(
            &dir.join("b.svg"),
            "t",
            "ms",
            &[("merged", 90.0, 85.0), ("single", 250.0, 240.0)],
        )
        .unwrap();
        let svg = std::fs::read_to_string(dir.join("b.svg")).unwrap();
        assert!(svg.contains("<svg"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
