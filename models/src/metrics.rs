//! Evaluation metrics for classifiers and uplift models.
//!
//! The uplift curves follow scikit-uplift's definitions (`qini_curve`, `perfect_qini_curve`,
//! `qini_auc_score`, `uplift_curve`, `perfect_uplift_curve`, `uplift_auc_score`, `uplift_at_k`)
//! so that our numbers can be put next to theirs: rows are ranked by score, ties are grouped, and
//! a curve is evaluated at the end of each group of equal scores.

/// A curve as `(x, y)` points: x = rows targeted, y = incremental outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

impl Curve {
    /// Area under the curve by the trapezoid rule.
    pub fn area(&self) -> f64 {
        self.x
            .windows(2)
            .zip(self.y.windows(2))
            .map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0)
            .sum()
    }

    /// At most `points + 1` of the curve's points, for drawing: the first, then the last
    /// point at or before each of `points` even steps of x, the last point included. A curve
    /// of a million users becomes a few dozen points that still pass through its own values.
    pub fn sampled(&self, points: usize) -> Curve {
        let (Some(&end), true) = (self.x.last(), points > 0) else {
            return self.clone();
        };
        let mut out = Curve {
            x: vec![self.x[0]],
            y: vec![self.y[0]],
        };
        let mut at = 0;
        for step in 1..=points {
            let target = end * step as f64 / points as f64;
            while at + 1 < self.x.len() && self.x[at + 1] <= target {
                at += 1;
            }
            if out.x.last() != Some(&self.x[at]) {
                out.x.push(self.x[at]);
                out.y.push(self.y[at]);
            }
        }
        out
    }
}

/// Cumulative counts after the top rows: treated, treated buyers, control buyers.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    all: f64,
    n_t: f64,
    y_t: f64,
    y_c: f64,
}

impl Counts {
    fn n_c(&self) -> f64 {
        self.all - self.n_t
    }
}

/// Rows in descending score order, ties broken as numpy's reversed stable argsort does (later
/// rows first), so that top-k cuts through ties select the same rows as scikit-uplift.
fn descending(score: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(b.cmp(&a)));
    order
}

/// A curve evaluated at the end of each group of equal scores, starting at (0, 0).
fn ranked_curve(
    outcome: &[bool],
    score: &[f64],
    treated: &[bool],
    value: impl Fn(&Counts) -> f64,
) -> Curve {
    let order = descending(score);
    let mut c = Counts::default();
    let mut curve = Curve {
        x: vec![0.0],
        y: vec![0.0],
    };
    for (pos, &i) in order.iter().enumerate() {
        c.all += 1.0;
        if treated[i] {
            c.n_t += 1.0;
            c.y_t += f64::from(u8::from(outcome[i]));
        } else {
            c.y_c += f64::from(u8::from(outcome[i]));
        }
        let group_ends = pos + 1 == order.len() || score[order[pos + 1]] != score[i];
        if group_ends {
            curve.x.push(c.all);
            curve.y.push(value(&c));
        }
    }
    curve
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// Qini curve: after the top-k rows, treated conversions minus control conversions scaled to the
/// treated count, `y_t(k) − y_c(k) · n_t(k) / n_c(k)`.
pub fn qini_curve(outcome: &[bool], score: &[f64], treated: &[bool]) -> Curve {
    ranked_curve(outcome, score, treated, |c| {
        c.y_t - c.y_c * ratio(c.n_t, c.n_c())
    })
}

/// Uplift curve: after the top-k rows, the difference in conversion rates times k,
/// `(y_t(k) / n_t(k) − y_c(k) / n_c(k)) · k`.
pub fn uplift_curve(outcome: &[bool], score: &[f64], treated: &[bool]) -> Curve {
    ranked_curve(outcome, score, treated, |c| {
        (ratio(c.y_t, c.n_t) - ratio(c.y_c, c.n_c())) * c.all
    })
}

/// The uplift curve of the best ranking, as scikit-uplift's `perfect_uplift_curve`.
pub fn perfect_uplift_curve(outcome: &[bool], treated: &[bool]) -> Curve {
    let control_responders = outcome
        .iter()
        .zip(treated)
        .filter(|(&y, &t)| y && !t)
        .count();
    let treated_non_responders = outcome
        .iter()
        .zip(treated)
        .filter(|(&y, &t)| !y && t)
        .count();
    let ideal: Vec<f64> = outcome
        .iter()
        .zip(treated)
        .map(|(&y, &t)| {
            let summand = if control_responders > treated_non_responders {
                y
            } else {
                t
            };
            2.0 * f64::from(u8::from(y == t)) + f64::from(u8::from(summand))
        })
        .collect();
    uplift_curve(outcome, &ideal, treated)
}

/// `(actual − random) / (perfect − random)` areas, the normalisation of both AUC scores.
fn normalized_area(actual: &Curve, perfect: &Curve) -> f64 {
    let baseline = Curve {
        x: vec![0.0, *perfect.x.last().unwrap_or(&0.0)],
        y: vec![0.0, *perfect.y.last().unwrap_or(&0.0)],
    };
    let base = baseline.area();
    let best = perfect.area() - base;
    if best == 0.0 {
        return 0.0;
    }
    (actual.area() - base) / best
}

/// Normalized area under the uplift curve (AUUC), as scikit-uplift's `uplift_auc_score`.
pub fn uplift_auc_score(outcome: &[bool], score: &[f64], treated: &[bool]) -> f64 {
    normalized_area(
        &uplift_curve(outcome, score, treated),
        &perfect_uplift_curve(outcome, treated),
    )
}

/// How scikit-uplift's `uplift_at_k` picks the top rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopK {
    /// The top k share of all rows.
    Overall,
    /// The top k share of each arm separately.
    ByGroup,
}

/// Conversion rate of the treated minus that of the control among the top `k` share (0 to 1)
/// of rows by score, as scikit-uplift's `uplift_at_k`. NaN when an arm has no row in the top.
pub fn uplift_at_k(
    outcome: &[bool],
    score: &[f64],
    treated: &[bool],
    k: f64,
    strategy: TopK,
) -> f64 {
    let order = descending(score);
    let rate = |rows: &mut dyn Iterator<Item = usize>| -> f64 {
        let (mut n, mut y) = (0.0, 0.0);
        for i in rows {
            n += 1.0;
            y += f64::from(u8::from(outcome[i]));
        }
        if n > 0.0 {
            y / n
        } else {
            f64::NAN
        }
    };
    match strategy {
        TopK::Overall => {
            let top = &order[..((order.len() as f64 * k) as usize).min(order.len())];
            rate(&mut top.iter().copied().filter(|&i| treated[i]))
                - rate(&mut top.iter().copied().filter(|&i| !treated[i]))
        }
        TopK::ByGroup => {
            let n_t = treated.iter().filter(|&&t| t).count();
            let n_c = treated.len() - n_t;
            rate(
                &mut order
                    .iter()
                    .copied()
                    .filter(|&i| treated[i])
                    .take((n_t as f64 * k) as usize),
            ) - rate(
                &mut order
                    .iter()
                    .copied()
                    .filter(|&i| !treated[i])
                    .take((n_c as f64 * k) as usize),
            )
        }
    }
}

/// Predicted next to observed in one decile of a score (decile 1 = highest scores).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecileRow {
    pub decile: usize,
    pub rows: usize,
    /// Mean score of the decile.
    pub predicted: f64,
    /// What the score predicts, as observed in the decile (NaN when it cannot be).
    pub observed: f64,
}

/// Rows in ten equal parts by descending score, each with its mean score and `observe` of its
/// rows.
fn by_decile(score: &[f64], observe: impl Fn(&[usize]) -> f64) -> Vec<DecileRow> {
    let order = descending(score);
    let n = order.len();
    (0..10)
        .filter_map(|d| {
            let rows = &order[d * n / 10..(d + 1) * n / 10];
            if rows.is_empty() {
                return None;
            }
            Some(DecileRow {
                decile: d + 1,
                rows: rows.len(),
                predicted: rows.iter().map(|&i| score[i]).sum::<f64>() / rows.len() as f64,
                observed: observe(rows),
            })
        })
        .collect()
}

/// Uplift by decile of the score: mean predicted uplift next to the observed difference in
/// conversion rates (treated minus control; NaN when an arm is empty).
pub fn uplift_by_decile(outcome: &[bool], score: &[f64], treated: &[bool]) -> Vec<DecileRow> {
    by_decile(score, |rows| {
        let o: Vec<bool> = rows.iter().map(|&i| outcome[i]).collect();
        let t: Vec<bool> = rows.iter().map(|&i| treated[i]).collect();
        uplift_at_k(&o, &vec![0.0; rows.len()], &t, 1.0, TopK::Overall)
    })
}

/// Calibration of a probability by decile: mean prediction next to the observed rate.
pub fn calibration_by_decile(label: &[bool], p: &[f64]) -> Vec<DecileRow> {
    by_decile(p, |rows| {
        rows.iter().filter(|&&i| label[i]).count() as f64 / rows.len() as f64
    })
}

/// The largest gap between predicted and observed rate over the deciles.
pub fn max_calibration_gap(rows: &[DecileRow]) -> f64 {
    rows.iter()
        .map(|r| (r.predicted - r.observed).abs())
        .fold(0.0, f64::max)
}

/// Mean binary log loss, probabilities clipped to [1e-15, 1 − 1e-15] as scikit-learn does.
pub fn log_loss(label: &[bool], p: &[f64]) -> f64 {
    let eps = 1e-15;
    let total: f64 = label
        .iter()
        .zip(p)
        .map(|(&y, &p)| {
            let p = p.clamp(eps, 1.0 - eps);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    total / label.len().max(1) as f64
}

/// A point estimate with a seeded percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// 95 % percentile bootstrap interval of an uplift metric: `rounds` resamples of the rows with
/// replacement, drawn from a generator seeded with `seed` (the same seed gives the same interval).
pub fn bootstrap(
    outcome: &[bool],
    score: &[f64],
    treated: &[bool],
    metric: impl Fn(&[bool], &[f64], &[bool]) -> f64,
    rounds: usize,
    seed: u64,
) -> Interval {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = outcome.len();
    let mut values: Vec<f64> = (0..rounds)
        .map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let o: Vec<bool> = idx.iter().map(|&i| outcome[i]).collect();
            let s: Vec<f64> = idx.iter().map(|&i| score[i]).collect();
            let t: Vec<bool> = idx.iter().map(|&i| treated[i]).collect();
            metric(&o, &s, &t)
        })
        .filter(|v| v.is_finite())
        .collect();
    values.sort_by(f64::total_cmp);
    let at = |q: f64| -> f64 {
        if values.is_empty() {
            return f64::NAN;
        }
        values[((values.len() - 1) as f64 * q).round() as usize]
    };
    Interval {
        estimate: metric(outcome, score, treated),
        low: at(0.025),
        high: at(0.975),
    }
}

/// The Qini curve of the best possible ranking (scikit-uplift's `perfect_qini_curve` with
/// `negative_effect=True`): treated buyers first, control buyers last.
pub fn perfect_qini_curve(outcome: &[bool], treated: &[bool]) -> Curve {
    let ideal: Vec<f64> = outcome
        .iter()
        .zip(treated)
        .map(|(&y, &t)| match (y, t) {
            (true, true) => 1.0,
            (true, false) => -1.0,
            _ => 0.0,
        })
        .collect();
    qini_curve(outcome, &ideal, treated)
}

/// Normalized area under the Qini curve, as scikit-uplift's `qini_auc_score`: the area between
/// the model's curve and the random line, divided by the same for the perfect ranking. 0 is
/// random, 1 is perfect.
pub fn qini_auc_score(outcome: &[bool], score: &[f64], treated: &[bool]) -> f64 {
    normalized_area(
        &qini_curve(outcome, score, treated),
        &perfect_qini_curve(outcome, treated),
    )
}

/// Area under the ROC curve (ties count one half), as scikit-learn's `roc_auc_score`.
pub fn roc_auc(label: &[bool], score: &[f64]) -> f64 {
    let mut order: Vec<usize> = (0..label.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    // Mid-ranks of tied groups, then the Mann–Whitney U statistic.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && score[order[j + 1]] == score[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += order[i..=j].iter().filter(|&&k| label[k]).count() as f64 * mid;
        i = j + 1;
    }
    let pos = label.iter().filter(|&&l| l).count() as f64;
    let neg = label.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampled_curve_keeps_its_own_points_and_its_ends() {
        let curve = Curve {
            x: (0..=10).map(f64::from).collect(),
            y: (0..=10).map(|v| f64::from(v * v)).collect(),
        };
        let s = curve.sampled(4);
        // Steps at 2.5, 5, 7.5 and 10: the last point at or before each.
        assert_eq!(s.x, vec![0.0, 2.0, 5.0, 7.0, 10.0]);
        assert_eq!(s.y, vec![0.0, 4.0, 25.0, 49.0, 100.0]);
        assert_eq!(curve.sampled(100), curve);
    }

    // Hand-computed: ranking [0.4, 0.3, 0.2, 0.1] over (y, t) = (1,1), (0,1), (1,0), (0,0)
    // gives the Qini points (0,0) (1,1) (2,1) (3,-1) (4,0): area 1.0. The perfect ranking gives
    // (0,0) (1,1) (3,1) (4,0): area 3.0. The random line ends at 0: area 0. Score 1/3.
    const Y: [bool; 4] = [true, false, true, false];
    const T: [bool; 4] = [true, true, false, false];

    #[test]
    fn qini_curve_matches_hand_computation() {
        let c = qini_curve(&Y, &[0.4, 0.3, 0.2, 0.1], &T);
        assert_eq!(c.x, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(c.y, vec![0.0, 1.0, 1.0, -1.0, 0.0]);
        assert_eq!(c.area(), 1.0);
        let p = perfect_qini_curve(&Y, &T);
        assert_eq!(p.x, vec![0.0, 1.0, 3.0, 4.0]);
        assert_eq!(p.y, vec![0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn qini_auc_score_matches_hand_computation() {
        let s = qini_auc_score(&Y, &[0.4, 0.3, 0.2, 0.1], &T);
        assert!((s - 1.0 / 3.0).abs() < 1e-12, "{s}");
        // The perfect ranking scores exactly 1.
        let s = qini_auc_score(&Y, &[1.0, 0.0, -1.0, 0.0], &T);
        assert!((s - 1.0).abs() < 1e-12, "{s}");
    }

    #[test]
    fn tied_scores_form_one_group() {
        let c = qini_curve(&Y, &[0.5, 0.5, 0.5, 0.5], &T);
        assert_eq!(c.x, vec![0.0, 4.0]);
        assert_eq!(c.y, vec![0.0, 0.0]);
    }

    // Same rows: uplift curve points are (rate_t − rate_c) · k:
    // k=1: (1/1 − 0) · 1 = 1; k=2: (1/2 − 0) · 2 = 1; k=3: (1/2 − 1/1) · 3 = −1.5;
    // k=4: (1/2 − 1/2) · 4 = 0. Area 0.5 + 1 − 0.25 − 0.75 = 0.5.
    #[test]
    fn uplift_curve_matches_hand_computation() {
        let c = uplift_curve(&Y, &[0.4, 0.3, 0.2, 0.1], &T);
        assert_eq!(c.y, vec![0.0, 1.0, 1.0, -1.5, 0.0]);
        assert_eq!(c.area(), 0.5);
    }

    #[test]
    fn uplift_at_k_matches_hand_computation() {
        let s = [0.4, 0.3, 0.2, 0.1];
        // Top half overall: rows 0 and 1, both treated, one buyer: 0.5 − NaN.
        assert!(uplift_at_k(&Y, &s, &T, 0.5, TopK::Overall).is_nan());
        // Top 3 of 4 (int(4 · 0.75) = 3): treated 1/2, control 1/1.
        assert_eq!(uplift_at_k(&Y, &s, &T, 0.75, TopK::Overall), -0.5);
        // By group, top half of each arm: treated row 0 (bought), control row 2 (bought).
        assert_eq!(uplift_at_k(&Y, &s, &T, 0.5, TopK::ByGroup), 0.0);
    }

    // 20 rows with scores 20, 19, …, 1: decile d holds a treated row (score 20 − 2d) and a
    // control row (19 − 2d). Treated rows in deciles 1–5 bought, no control row did: observed
    // uplift 1 there and 0 below; predicted is the mean score of the pair, 19.5 − 2d.
    #[test]
    fn uplift_by_decile_matches_hand_computation() {
        let score: Vec<f64> = (0..20).map(|i| f64::from(20 - i)).collect();
        let treated: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
        let outcome: Vec<bool> = (0..20).map(|i| i % 2 == 0 && i < 10).collect();
        let rows = uplift_by_decile(&outcome, &score, &treated);
        assert_eq!(rows.len(), 10);
        for (d, row) in rows.iter().enumerate() {
            assert_eq!(row.decile, d + 1);
            assert_eq!(row.rows, 2);
            assert_eq!(row.predicted, 19.5 - 2.0 * d as f64);
            assert_eq!(row.observed, if d < 5 { 1.0 } else { 0.0 });
        }
    }

    // 10 rows, one per decile: p = 0.9, 0.8, …, 0.0; labels true for the top three.
    #[test]
    fn calibration_by_decile_matches_hand_computation() {
        let p: Vec<f64> = (0..10).map(|i| f64::from(9 - i) / 10.0).collect();
        let y: Vec<bool> = (0..10).map(|i| i < 3).collect();
        let rows = calibration_by_decile(&y, &p);
        assert_eq!(rows.len(), 10);
        assert_eq!((rows[0].predicted, rows[0].observed), (0.9, 1.0));
        assert_eq!((rows[9].predicted, rows[9].observed), (0.0, 0.0));
        // The largest gap: decile 4 predicts 0.6 and observes 0.
        assert!((max_calibration_gap(&rows) - 0.6).abs() < 1e-12);
    }

    #[test]
    fn log_loss_matches_hand_computation() {
        let l = log_loss(&[true, false], &[0.8, 0.4]);
        assert!((l - (-(0.8f64.ln()) - 0.6f64.ln()) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_estimate() {
        let y: Vec<bool> = (0..400).map(|i| i % 3 == 0).collect();
        let t: Vec<bool> = (0..400).map(|i| i % 2 == 0).collect();
        let s: Vec<f64> = (0..400).map(|i| ((i * 7919) % 400) as f64).collect();
        let a = bootstrap(&y, &s, &t, qini_auc_score, 50, 1);
        let b = bootstrap(&y, &s, &t, qini_auc_score, 50, 1);
        assert_eq!(a, b);
        assert!(a.low <= a.high);
    }

    /// `scripts/sklift/metrics_fixture.py` wrote the rows and scikit-uplift 0.5.1's values.
    #[test]
    fn reproduces_scikit_uplift() {
        let rows = include_str!("../tests/fixtures/sklift_metrics.csv");
        let expected: std::collections::BTreeMap<String, f64> =
            serde_json::from_str(include_str!("../tests/fixtures/sklift_expected.json")).unwrap();
        let (mut y, mut t, mut s) = (vec![], vec![], vec![]);
        for line in rows.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            y.push(f[0] == "1");
            t.push(f[1] == "1");
            s.push(f[2].parse::<f64>().unwrap());
        }
        assert_eq!(y.len(), 2000);
        let ours = [
            ("qini_auc_score", qini_auc_score(&y, &s, &t)),
            ("uplift_auc_score", uplift_auc_score(&y, &s, &t)),
            (
                "uplift_at_k_by_group_0.3",
                uplift_at_k(&y, &s, &t, 0.3, TopK::ByGroup),
            ),
            (
                "uplift_at_k_overall_0.3",
                uplift_at_k(&y, &s, &t, 0.3, TopK::Overall),
            ),
            (
                "uplift_at_k_overall_0.1",
                uplift_at_k(&y, &s, &t, 0.1, TopK::Overall),
            ),
        ];
        for (name, value) in ours {
            let want = expected[name];
            assert!(
                (value - want).abs() < 1e-12,
                "{name}: ours {value}, scikit-uplift {want}"
            );
        }
    }

    #[test]
    fn roc_auc_matches_scikit_learn_example() {
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        let auc = roc_auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]);
        assert!((auc - 0.75).abs() < 1e-12);
        let tied = roc_auc(&[false, true], &[0.5, 0.5]);
        assert!((tied - 0.5).abs() < 1e-12);
    }
}
