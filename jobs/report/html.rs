//! `targeting report --html FILE`: the report as one self-contained page for people — no
//! script, no font or style sheet from the network; every chart is an inline SVG drawn by
//! `plotters`. Each chart is a `<figure class="chart" data-chart="…">`, so that a check in a
//! browser (`tests/e2e`, through headless Chromium) can find every chart and count its marks.
//!
//! The charts: the conversion lift of each campaign-day with its 95 % interval; incremental
//! conversions against the forecast made at run time; per campaign-day, the Qini curve of the
//! predicted uplift against random choice and the observed against the predicted uplift by
//! decile; and the drift of each model's features since its training.

use std::fmt::Write as _;

use anyhow::{anyhow, Result};
use models::drift::{MODERATE, SHIFTED};
use models::lift::scaled;
use models::metrics::Interval;
use plotters::coord::Shift as Whole;
use plotters::prelude::*;

use super::text::{count, money, signed};
use super::{ArmOutcome, CampaignLift, Drift, Figure, GlobalControl, ModelCheck, Report};
use crate::pipeline::monitor::ModelDrift;

/// Width of every chart, in CSS pixels.
const WIDTH: u32 = 860;
/// Distributions shown per model in the drift chart: the most shifted.
const DRIFT_ROWS: usize = 15;

const OUTCOME: RGBColor = RGBColor(31, 119, 180);
const FORECAST: RGBColor = RGBColor(230, 120, 20);
const RANDOM: RGBColor = RGBColor(140, 140, 140);
const WARN: RGBColor = RGBColor(200, 40, 40);

type Area<'a> = DrawingArea<SVGBackend<'a>, Whole>;
type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

impl Report {
    /// The report as a self-contained HTML page.
    pub fn html(&self) -> Result<String> {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Lift report, as of {}</title><style>{STYLE}</style></head><body>\n",
            escape(&self.as_of)
        );
        let _ = writeln!(
            out,
            "<h1>Did it work?</h1><p class=\"sub\">Outcomes as of {}, over the {}-day \
             attribution window after each run date. Intervals are 95 %.</p>",
            escape(&self.as_of),
            self.attribution_days
        );
        if self.campaigns.is_empty() {
            out.push_str("<p>No campaign-day with a succeeded run in the range.</p>\n");
        } else {
            summary_table(&mut out, &self.campaigns);
            self.lift_charts(&mut out)?;
            for c in &self.campaigns {
                campaign_section(&mut out, c)?;
            }
        }
        if let Some(g) = &self.global_control {
            global_section(&mut out, g);
        }
        if let Some(d) = &self.drift {
            drift_section(&mut out, d)?;
        }
        out.push_str("</body></html>\n");
        Ok(out)
    }

    /// The lift of every campaign-day, then incremental conversions against the forecast.
    fn lift_charts(&self, out: &mut String) -> Result<()> {
        let pp = |i: Interval| scaled(i, 100.0);
        let lift: Vec<Row> = self
            .campaigns
            .iter()
            .filter_map(|c| {
                Some(Row {
                    label: label(c),
                    interval: pp(c.conversion_lift?),
                    forecast: None,
                })
            })
            .collect();
        let conversions: Vec<Row> = self
            .campaigns
            .iter()
            .filter_map(|c| {
                Some(Row {
                    label: label(c),
                    interval: c.incremental_conversions?,
                    forecast: c.forecast.map(|f| f.incremental_conversions),
                })
            })
            .collect();
        if lift.is_empty() {
            out.push_str("<p>No campaign-day has a holdout: there is no lift to show.</p>\n");
            return Ok(());
        }
        figure(
            out,
            "lift",
            "Conversion lift: treatment's conversion rate minus the holdout's, in points",
            &intervals(&lift, "percentage points")?,
        );
        figure(
            out,
            "forecast",
            "Incremental conversions: what happened against what the run forecast",
            &intervals(&conversions, "conversions caused in the treatment arm")?,
        );
        Ok(())
    }
}

/// A campaign-day's label on the charts.
fn label(c: &CampaignLift) -> String {
    format!("{} {}", c.campaign_id, c.run_date)
}

/// One line of an interval chart.
struct Row {
    label: String,
    interval: Interval,
    forecast: Option<f64>,
}

/// Horizontal 95 % intervals, one line per row, with the forecast as a second mark.
fn intervals(rows: &[Row], unit: &str) -> Result<String> {
    anyhow::ensure!(!rows.is_empty(), "an interval chart needs a row");
    let n = rows.len();
    let values = rows.iter().flat_map(|r| {
        [r.interval.low, r.interval.high]
            .into_iter()
            .chain(r.forecast)
    });
    let (lo, hi) = padded(values.chain([0.0]));
    let label_width = rows.iter().map(|r| r.label.len()).max().unwrap_or(0) as u32 * 7 + 20;
    let height = 150 + 44 * n as u32;
    // The first row at the top; the bottom row (0) is left to the legend.
    let at = |i: usize| SegmentValue::CenterOf(n - i);
    svg(WIDTH, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(label_width.min(WIDTH / 2))
            .build_cartesian_2d(lo..hi, (0..n).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .y_labels(n + 1)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if (1..=n).contains(i) => rows[n - i].label.clone(),
                _ => String::new(),
            })
            .x_label_formatter(&|v| tick(*v))
            .x_desc(unit)
            .label_style(("sans-serif", 13))
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Last)],
            BLACK.mix(0.6),
        )))?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                ErrorBar::new_horizontal(
                    at(i),
                    r.interval.low,
                    r.interval.estimate,
                    r.interval.high,
                    OUTCOME.filled(),
                    10,
                )
            }))?
            .label("outcome and its 95 % interval")
            .legend(|(x, y)| Circle::new((x + 8, y), 5, OUTCOME.filled()));
        if rows.iter().any(|r| r.forecast.is_some()) {
            chart
                .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
                    Some(Circle::new((r.forecast?, at(i)), 6, FORECAST.filled()))
                }))?
                .label("forecast at run time")
                .legend(|(x, y)| Circle::new((x + 8, y), 5, FORECAST.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// The per-campaign-day section: arms, figures, notes, and the model's two charts.
fn campaign_section(out: &mut String, c: &CampaignLift) -> Result<()> {
    let state = if c.complete { "complete" } else { "partial" };
    let _ = writeln!(
        out,
        "<section class=\"campaign\"><h2>{} <span class=\"sub\">{} · run {} · window to {} \
         · {state}</span></h2>",
        escape(&c.campaign_id),
        escape(&c.run_date),
        escape(&c.run_id),
        escape(&c.window_end)
    );
    arms_table(
        out,
        &[
            ("treatment", &c.arms.treatment),
            ("holdout", &c.arms.holdout),
        ],
    );
    out.push_str("<table class=\"figures\">");
    let forecast = c.forecast;
    for f in c.figures() {
        figure_row(out, f);
    }
    let _ = write!(
        out,
        "<tr><td>discount given</td><td>{}</td><td></td><td>{}</td></tr>",
        money(c.discount_cost, 2),
        forecast.map_or_else(String::new, |f| format!(
            "forecast {}",
            money(f.discount_cost, 2)
        ))
    );
    if let Some(m) = c.minimum_detectable_effect {
        let _ = write!(
            out,
            "<tr><td>minimum detectable lift</td><td>{:.2} points</td><td></td><td></td></tr>",
            m * 100.0
        );
    }
    out.push_str("</table>\n");
    for n in &c.notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(n));
    }
    if let Some(r) = &c.model_vs_random {
        let _ = writeln!(
            out,
            "<p>Random choice (the campaign's <code>explore</code> share of its eligible users, \
             drawn before the model chose among the rest): {} messaged, {} held out.</p>",
            count(r.arms.treatment.users as f64),
            count(r.arms.holdout.users as f64)
        );
        let rows: Vec<Row> = [
            ("the model's choice", r.model_lift),
            ("random choice", r.random_lift),
            ("model minus random", r.difference),
        ]
        .into_iter()
        .filter_map(|(label, v)| {
            Some(Row {
                label: label.to_string(),
                interval: scaled(v?, 100.0),
                forecast: None,
            })
        })
        .collect();
        if !rows.is_empty() {
            figure(
                out,
                "explore",
                "What the model is worth: conversion lift per user, in points",
                &intervals(&rows, "percentage points")?,
            );
        }
    }
    if let Some(m) = &c.model {
        let _ = writeln!(
            out,
            "<p>Realized Qini of the predicted uplift on these users: <b>{:.4}</b> (0 is \
             random choice, 1 the best possible order).</p>",
            m.realized_qini_auc
        );
        out.push_str("<div class=\"pair\">");
        figure(
            out,
            "qini",
            "Cumulative incremental conversions, users taken by predicted uplift",
            &qini(m)?,
        );
        figure(
            out,
            "deciles",
            "Uplift by decile of predicted uplift: predicted against observed",
            &deciles(m)?,
        );
        out.push_str("</div>\n");
    }
    out.push_str("</section>\n");
    Ok(())
}

/// The Qini curve of the model against the straight line of random choice.
fn qini(m: &ModelCheck) -> Result<String> {
    let q = &m.qini_curve;
    let points: Vec<(f64, f64)> = q
        .users
        .iter()
        .copied()
        .zip(q.incremental.iter().copied())
        .collect();
    let end = points.last().copied().unwrap_or((1.0, 0.0));
    let (lo, hi) = padded(points.iter().map(|p| p.1).chain([0.0]));
    svg(WIDTH / 2 - 10, 340, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..end.0.max(1.0), lo..hi)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .x_desc("users taken, highest predicted uplift first")
            .y_desc("incremental conversions")
            .label_style(("sans-serif", 12))
            .draw()?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), end], RANDOM.stroke_width(2)))?
            .label("random choice")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RANDOM.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(points.clone(), OUTCOME.stroke_width(2)).point_size(2))?
            .label("the model's order")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], OUTCOME.stroke_width(2)));
        // Below the random line is where the curve seldom goes.
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// Predicted and observed uplift of each decile, in points.
fn deciles(m: &ModelCheck) -> Result<String> {
    let series = |f: fn(&models::metrics::DecileRow) -> f64| -> Vec<(f64, f64)> {
        m.by_decile
            .iter()
            .map(|d| (d.decile as f64, f(d) * 100.0))
            .filter(|p| p.1.is_finite())
            .collect()
    };
    let (predicted, observed) = (series(|d| d.predicted), series(|d| d.observed));
    let (lo, hi) = padded(predicted.iter().chain(&observed).map(|p| p.1).chain([0.0]));
    // Headroom for the legend above the highest decile.
    let hi = hi + (hi - lo) * 0.3;
    svg(WIDTH / 2 - 10, 340, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.5..10.5, lo..hi)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(10)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|v| tick(*v))
            .x_desc("decile of predicted uplift (1 = highest)")
            .y_desc("uplift, points")
            .label_style(("sans-serif", 12))
            .draw()?;
        chart
            .draw_series(
                LineSeries::new(predicted.clone(), FORECAST.stroke_width(2)).point_size(3),
            )?
            .label("predicted")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, FORECAST.filled()));
        chart
            .draw_series(LineSeries::new(observed.clone(), OUTCOME.stroke_width(2)).point_size(3))?
            .label("observed (treatment − holdout)")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, OUTCOME.filled()));
        // The deciles go from the highest prediction down: the upper right is the emptiest.
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

fn global_section(out: &mut String, g: &GlobalControl) {
    let state = if g.complete { "complete" } else { "partial" };
    let _ = writeln!(
        out,
        "<section><h2>Global control group <span class=\"sub\">{:.1} % of users, never \
         messaged · run dates from {} · windows to {} · {state}</span></h2>\
         <p>Everyone outside the group against it, by intent to treat; {} users outside it \
         were messaged.</p>",
        g.share * 100.0,
        escape(&g.from),
        escape(&g.window_end),
        count(g.reached as f64)
    );
    arms_table(
        out,
        &[("outside", &g.arms.outside), ("control", &g.arms.control)],
    );
    out.push_str("<table class=\"figures\">");
    for f in g.figures() {
        figure_row(out, f);
    }
    out.push_str("</table></section>\n");
}

fn drift_section(out: &mut String, d: &Drift) -> Result<()> {
    let _ = writeln!(
        out,
        "<section><h2>Model drift <span class=\"sub\">measured by run {} ({})</span></h2>\
         <p>Population stability index of each model's score and features: the run's users \
         against the users the model was trained for, as of its training date. Under {MODERATE} is stable, {MODERATE}–{SHIFTED} a \
         moderate shift, above {SHIFTED} a shift that makes the scores suspect.</p>",
        escape(&d.run_id),
        escape(&d.run_date)
    );
    for m in &d.models {
        let _ = writeln!(
            out,
            "<h3>{} <span class=\"sub\">version {} · {} users sampled · {}</span></h3>",
            escape(&m.model),
            escape(&m.version),
            count(m.sampled as f64),
            escape(&m.verdict())
        );
        match drift_chart(m)? {
            Some(svg) => figure(
                out,
                "drift",
                &format!("The {DRIFT_ROWS} most shifted distributions of {}", m.model),
                &svg,
            ),
            None => out.push_str("<p>No distribution had a value to compare.</p>\n"),
        }
    }
    out.push_str("</section>\n");
    Ok(())
}

/// A dot per distribution at its PSI, most shifted first, with the two thresholds.
fn drift_chart(m: &ModelDrift) -> Result<Option<String>> {
    let mut shown: Vec<_> = m.shifts.iter().filter(|s| s.psi.is_finite()).collect();
    shown.sort_by(|a, b| b.psi.total_cmp(&a.psi));
    shown.truncate(DRIFT_ROWS);
    if shown.is_empty() {
        return Ok(None);
    }
    let n = shown.len();
    let hi = shown[0].psi.max(SHIFTED) * 1.15;
    let label_width = shown.iter().map(|s| s.name.len()).max().unwrap_or(0) as u32 * 7 + 20;
    let at = |i: usize| SegmentValue::CenterOf(n - 1 - i);
    svg(WIDTH, 80 + 26 * n as u32, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(label_width.min(WIDTH / 2))
            .build_cartesian_2d(0.0..hi, (0..n - 1).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i < n => shown[n - 1 - i].name.clone(),
                _ => String::new(),
            })
            .x_label_formatter(&|v| format!("{v:.2}"))
            .x_desc("population stability index")
            .label_style(("sans-serif", 12))
            .draw()?;
        for (threshold, color) in [(MODERATE, FORECAST), (SHIFTED, WARN)] {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![
                    (threshold, SegmentValue::Exact(0)),
                    (threshold, SegmentValue::Last),
                ],
                color.stroke_width(1),
            )))?;
        }
        chart.draw_series(shown.iter().enumerate().map(|(i, s)| {
            let color = if s.warns() { WARN } else { OUTCOME };
            Circle::new((s.psi, at(i)), 5, color.filled())
        }))?;
        Ok(())
    })
    .map(Some)
}

/// Two arms side by side: users, conversions, rate and revenue.
fn arms_table(out: &mut String, rows: &[(&str, &ArmOutcome)]) {
    out.push_str(
        "<table><tr><th>arm</th><th>users</th><th>converted</th><th>rate</th><th>revenue</th>\
         <th>revenue / user</th></tr>",
    );
    for (name, a) in rows {
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{:.2} %</td><td>{}</td><td>{}</td></tr>",
            count(a.users as f64),
            count(a.conversions as f64),
            a.conversion_rate * 100.0,
            money(a.revenue, 2),
            money(a.revenue_per_user, 3)
        );
    }
    out.push_str("</table>\n");
}

/// One row of the figures table: estimate, interval, forecast.
fn figure_row(out: &mut String, f: Figure) {
    let Figure {
        name,
        value,
        decimals,
        forecast,
    } = f;
    let (estimate, interval) = match value {
        Some(i) => (
            signed(i.estimate, decimals),
            format!(
                "95 % CI {} to {}",
                signed(i.low, decimals),
                signed(i.high, decimals)
            ),
        ),
        None => ("–".to_string(), String::new()),
    };
    let forecast =
        forecast.map_or_else(String::new, |f| format!("forecast {}", signed(f, decimals)));
    let _ = write!(
        out,
        "<tr><td>{name}</td><td>{estimate}</td><td>{interval}</td><td>{forecast}</td></tr>"
    );
}

fn summary_table(out: &mut String, campaigns: &[CampaignLift]) {
    out.push_str(
        "<table class=\"summary\"><tr><th>campaign</th><th>run date</th><th>window</th>\
         <th>treatment</th><th>holdout</th><th>incremental conversions</th><th>forecast</th>\
         <th>incremental profit</th></tr>\n",
    );
    for c in campaigns {
        let interval = |v: Option<Interval>, d: usize| {
            v.map_or_else(
                || "–".to_string(),
                |i| {
                    format!(
                        "{} <span class=\"ci\">({} to {})</span>",
                        signed(i.estimate, d),
                        signed(i.low, d),
                        signed(i.high, d)
                    )
                },
            )
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.campaign_id),
            escape(&c.run_date),
            if c.complete { "complete" } else { "partial" },
            count(c.arms.treatment.users as f64),
            count(c.arms.holdout.users as f64),
            interval(c.incremental_conversions, 0),
            c.forecast
                .map_or_else(|| "–".to_string(), |f| signed(f.incremental_conversions, 0)),
            interval(c.incremental_profit, 2),
        );
    }
    out.push_str("</table>\n");
}

/// A chart in its figure, with its caption.
fn figure(out: &mut String, chart: &str, caption: &str, svg: &str) {
    let _ = writeln!(
        out,
        "<figure class=\"chart\" data-chart=\"{chart}\"><figcaption>{}</figcaption>{svg}</figure>",
        escape(caption)
    );
}

/// Draws one chart into an SVG string.
fn svg(width: u32, height: u32, draw: impl FnOnce(&Area) -> Drawn) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(Into::into)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(Into::into));
        drawn.map_err(|e| anyhow!("cannot draw a chart of the report: {e}"))?;
    }
    Ok(out)
}

/// The legend of a chart's labelled series, at `position`.
fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Drawn
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// An axis tick: whole numbers from 100 on, one decimal from 1, two below.
fn tick(v: f64) -> String {
    match v.abs() {
        0.0 => "0".to_string(),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// The range of `values`, widened by a tenth on each side (and never empty).
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(1e-9);
    (lo - pad, hi + pad)
}

/// Text for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;max-width:900px;margin:24px auto;color:#222}\
h1{margin-bottom:4px}h2{margin-top:36px;border-bottom:1px solid #ddd}.sub{color:#666;\
font-weight:normal;font-size:0.8em}table{border-collapse:collapse;margin:8px 0}td,th{padding:3px \
10px;text-align:right;border-bottom:1px solid #eee}td:first-child,th:first-child{text-align:left}\
.ci{color:#666}.note{color:#8a4b00}figure{margin:12px 0}figcaption{font-size:0.9em;color:#444}\
.pair{display:flex;gap:12px}.pair figure{flex:1}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_without_campaigns_says_so_and_draws_nothing() {
        let page = Report {
            as_of: "2026-12-04".into(),
            attribution_days: 7,
            campaigns: vec![],
            drift: None,
            global_control: None,
        }
        .html()
        .unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("No campaign-day with a succeeded run in the range."));
        assert!(!page.contains("<svg"));
        // Nothing to fetch: no script, no link, no remote source.
        for banned in ["<script", "<link", "http://", "https://"] {
            assert!(!page.contains(banned), "{banned}");
        }
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }

    #[test]
    fn ranges_are_padded_and_never_empty() {
        assert_eq!(padded([0.0, 10.0].into_iter()), (-1.0, 11.0));
        assert_eq!(padded(std::iter::empty()), (-1.0, 1.0));
        let (lo, hi) = padded([3.0].into_iter());
        assert!(lo < 3.0 && hi > 3.0);
    }
}
