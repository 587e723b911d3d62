//! The demo's PNG: the grown run's train loss and the validation loss of every run (host only,
//! grown, static) over steps, each seed's stages as coloured bands, gate evaluations marked.

use std::path::Path;

use anyhow::{Result, anyhow};
use leyline::SeedLifecycleStage as Stage;
use plotters::prelude::*;

/// A line to draw.
pub(crate) struct Series<'a> {
    pub(crate) label: &'static str,
    pub(crate) points: &'a [(f64, f64)],
}

/// One seed's stages over steps: (start, end, stage).
pub(crate) struct Band {
    pub(crate) label: String,
    pub(crate) segments: Vec<(u64, u64, Stage)>,
}

/// A gate evaluation at a step.
#[derive(Debug, Clone)]
pub(crate) struct GateMark {
    pub(crate) step: u64,
    pub(crate) passed: bool,
    pub(crate) label: String,
}

fn stage_color(stage: Stage) -> RGBColor {
    match stage {
        Stage::SeedStageGerminated => RGBColor(189, 189, 189),
        Stage::SeedStageTraining => RGBColor(158, 202, 225),
        Stage::SeedStageBlending => RGBColor(107, 174, 214),
        Stage::SeedStageShadowing => RGBColor(161, 217, 155),
        Stage::SeedStageProbationary => RGBColor(116, 196, 118),
        Stage::SeedStageFossilized => RGBColor(49, 163, 84),
        Stage::SeedStageCulled => RGBColor(251, 106, 74),
        Stage::SeedStageEmbargoed => RGBColor(252, 146, 114),
        Stage::SeedStageResetting => RGBColor(253, 208, 162),
        Stage::SeedStageTerminated => RGBColor(99, 99, 99),
        _ => RGBColor(240, 240, 240),
    }
}

/// Draws the loss curves with the stage bands and gate marks (top) and one lane of stages per
/// seed (bottom) to a PNG at `path`. `y_max` caps the loss axis (a text model's first losses,
/// near ln 256, would flatten everything after them); by default it fits every point.
pub(crate) fn render(
    path: &Path,
    title: &str,
    series: &[Series<'_>],
    bands: &[Band],
    gates: &[GateMark],
    steps: u64,
    y_max: Option<f64>,
) -> Result<()> {
    let root = BitMapBackend::new(path, (1200, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(560);
    let max_loss = y_max.unwrap_or_else(|| {
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(0.0f64, f64::max)
    });
    let x_end = steps.max(1) as f64;
    draw_losses(&top, title, series, bands, gates, x_end, max_loss)?;
    draw_lanes(&bottom, bands, x_end)?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn err(e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// The loss chart: the first seed's stage bands behind the curves, gate marks above them.
fn draw_losses(
    area: &Area<'_>,
    title: &str,
    series: &[Series<'_>],
    bands: &[Band],
    gates: &[GateMark],
    x_end: f64,
    max_loss: f64,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_end, 0.0..(max_loss * 1.08).max(0.1))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(&e))?;
    // Stage bands of the first seed behind the curves.
    if let Some(band) = bands.first() {
        for (a, b, stage) in &band.segments {
            let c = stage_color(*stage).mix(0.25);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*a as f64, 0.0), (*b as f64, max_loss * 1.08)],
                    c.filled(),
                )))
                .map_err(|e| err(&e))?;
        }
    }
    let palette = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(127, 127, 127), RGBColor(148, 103, 189)];
    for (i, s) in series.iter().enumerate() {
        let color = palette[i % palette.len()];
        let width = if i == 0 { 1 } else { 3 };
        // Points above the axis are clamped to its top (only with a cap).
        let top = max_loss * 1.08;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied().filter(|p| p.1.is_finite()).map(|(x, y)| (x, y.min(top))),
                color.stroke_width(width),
            ))
            .map_err(|e| err(&e))?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
    }
    for g in gates {
        let color = if g.passed { RGBColor(49, 163, 84) } else { RGBColor(203, 24, 29) };
        let y = max_loss * 1.02;
        chart
            .draw_series(std::iter::once(TriangleMarker::new((g.step as f64, y), 7, color.filled())))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(std::iter::once(Text::new(
                g.label.clone(),
                (g.step as f64, y * 0.965),
                ("sans-serif", 13).into_font().color(&color),
            )))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

/// One lane per seed with its stages, labelled.
fn draw_lanes(area: &Area<'_>, bands: &[Band], x_end: f64) -> Result<()> {
    let lanes = bands.len().max(1);
    let mut lane_chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_end, 0.0..lanes as f64)
        .map_err(|e| err(&e))?;
    lane_chart
        .configure_mesh()
        .disable_mesh()
        .y_labels(0)
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, band) in bands.iter().enumerate() {
        let y0 = (lanes - 1 - i) as f64 + 0.15;
        for (a, b, stage) in &band.segments {
            lane_chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*a as f64, y0), (*b as f64, y0 + 0.7)],
                    stage_color(*stage).filled(),
                )))
                .map_err(|e| err(&e))?;
            if (*b - *a) as f64 > x_end * 0.06 {
                lane_chart
                    .draw_series(std::iter::once(Text::new(
                        stage.short_name().to_owned(),
                        (*a as f64 + x_end * 0.004, y0 + 0.25),
                        ("sans-serif", 13).into_font(),
                    )))
                    .map_err(|e| err(&e))?;
            }
        }
        lane_chart
            .draw_series(std::iter::once(Text::new(
                band.label.clone(),
                (x_end * 0.005, y0 + 0.72),
                ("sans-serif", 14).into_font(),
            )))
            .map_err(|e| err(&e))?;
    }
    Ok(())
}
