//! The report for people: per campaign-day, the two arms side by side, then each incremental
//! figure with its interval and the forecast beside it, and the notes that qualify them.

use std::fmt::Write;

use models::metrics::Interval;

use super::{ArmOutcome, CampaignLift, Drift, GlobalControl, Report};

impl Report {
    /// The report as text.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "lift report, outcomes as of {} ({}-day attribution window after each run date)",
            self.as_of, self.attribution_days
        );
        if self.campaigns.is_empty() {
            out.push_str("\nno campaign-day with a succeeded run in the range\n");
        }
        for c in &self.campaigns {
            campaign(&mut out, c);
        }
        if let Some(g) = &self.global_control {
            global(&mut out, g);
        }
        if let Some(d) = &self.drift {
            drift(&mut out, d);
        }
        out
    }
}

fn drift(out: &mut String, d: &Drift) {
    let _ = writeln!(
        out,
        "\nmodel drift measured by run {} ({}), its users against those each model was trained for, as of the training date",
        d.run_id, d.run_date
    );
    for m in &d.models {
        let _ = writeln!(out, "  {:<22} {}", m.model, m.verdict());
    }
}

fn campaign(out: &mut String, c: &CampaignLift) {
    let state = if c.complete { "complete" } else { "partial" };
    let _ = writeln!(
        out,
        "\n{}  {}  (run {}, window to {}, {state})",
        c.campaign_id, c.run_date, c.run_id, c.window_end
    );
    arms(
        out,
        &[
            ("treatment", &c.arms.treatment),
            ("holdout", &c.arms.holdout),
        ],
    );
    let forecast = c.forecast;
    for f in c.figures() {
        figure(out, f.name, f.value, f.decimals, f.forecast);
    }
    let _ = write!(
        out,
        "  {:<24} {:>12}",
        "discount given",
        money(c.discount_cost, 2)
    );
    match forecast {
        Some(f) => {
            let _ = writeln!(out, "   forecast {}", money(f.discount_cost, 2));
        }
        None => out.push('\n'),
    }
    if let Some(m) = c.minimum_detectable_effect {
        let _ = writeln!(
            out,
            "  {:<24} {:>11.2} points",
            "minimum detectable lift",
            m * 100.0
        );
    }
    if let Some(m) = &c.model {
        let _ = writeln!(
            out,
            "  {:<24} {:>12.4}   (normalized Qini of the predicted uplift on these users)",
            "model: realized Qini", m.realized_qini_auc
        );
        let deciles: Vec<String> = m
            .by_decile
            .iter()
            .map(|d| {
                format!(
                    "{}: {:.1}→{:.1}",
                    d.decile,
                    d.predicted * 100.0,
                    d.observed * 100.0
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  {:<24} {}",
            "uplift by decile, points",
            if deciles.is_empty() {
                "-".to_string()
            } else {
                format!("predicted→observed  {}", deciles.join("  "))
            }
        );
    }
    if let Some(r) = &c.model_vs_random {
        let _ = writeln!(
            out,
            "  random choice (explore): {} messaged, {} held out, {} and {} converted",
            count(r.arms.treatment.users as f64),
            count(r.arms.holdout.users as f64),
            count(r.arms.treatment.conversions as f64),
            count(r.arms.holdout.conversions as f64),
        );
        for (name, v) in [
            ("lift/user: model", r.model_lift),
            ("lift/user: random", r.random_lift),
            ("model minus random", r.difference),
        ] {
            figure(
                out,
                name,
                v.map(|i| models::lift::scaled(i, 100.0)),
                2,
                None,
            );
        }
    }
    for n in &c.notes {
        let _ = writeln!(out, "  note: {n}");
    }
}

fn global(out: &mut String, g: &GlobalControl) {
    let state = if g.complete { "complete" } else { "partial" };
    let _ = writeln!(
        out,
        "\nglobal control group ({:.1}% of users, never messaged): everyone else against it, run dates from {} with windows to {} ({state}); {} users were messaged",
        g.share * 100.0,
        g.from,
        g.window_end,
        count(g.reached as f64)
    );
    arms(
        out,
        &[("outside", &g.arms.outside), ("control", &g.arms.control)],
    );
    for f in g.figures() {
        figure(out, f.name, f.value, f.decimals, f.forecast);
    }
}

fn arms(out: &mut String, rows: &[(&str, &ArmOutcome)]) {
    let _ = writeln!(
        out,
        "  {:<10} {:>12} {:>12} {:>9} {:>14} {:>13}",
        "arm", "users", "converted", "rate", "revenue", "revenue/user"
    );
    for (name, a) in rows {
        let _ = writeln!(
            out,
            "  {:<10} {:>12} {:>12} {:>8.2}% {:>14} {:>13}",
            name,
            count(a.users as f64),
            count(a.conversions as f64),
            a.conversion_rate * 100.0,
            money(a.revenue, 2),
            money(a.revenue_per_user, 3)
        );
    }
}

/// One incremental figure: estimate, 95 % interval and the forecast, or why there is none.
fn figure(
    out: &mut String,
    name: &str,
    v: Option<Interval>,
    decimals: usize,
    forecast: Option<f64>,
) {
    let _ = write!(out, "  {name:<24} ");
    match v {
        Some(i) => {
            let _ = write!(
                out,
                "{:>12}  (95% CI {} to {})",
                signed(i.estimate, decimals),
                signed(i.low, decimals),
                signed(i.high, decimals)
            );
        }
        None => {
            let _ = write!(out, "{:>12}", "-");
        }
    }
    if let Some(f) = forecast {
        let _ = write!(out, "   forecast {}", signed(f, decimals));
    }
    out.push('\n');
}

/// A whole number with thousands separators.
pub(crate) fn count(v: f64) -> String {
    money(v, 0)
}

/// A signed amount with thousands separators.
pub(super) fn signed(v: f64, decimals: usize) -> String {
    if v >= 0.0 {
        format!("+{}", money(v, decimals))
    } else {
        money(v, decimals)
    }
}

/// An amount with thousands separators and `decimals` decimals.
pub(crate) fn money(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "-".to_string();
    }
    let text = format!("{:.*}", decimals, v.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let sign = if v < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if fraction.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_grouped_by_thousands() {
        assert_eq!(money(1234567.891, 2), "1,234,567.89");
        assert_eq!(money(-1234.5, 0), "-1,234");
        assert_eq!(money(999.0, 0), "999");
        assert_eq!(money(-0.001, 2), "0.00");
        assert_eq!(signed(1500.0, 0), "+1,500");
        assert_eq!(count(f64::NAN), "-");
    }
}
