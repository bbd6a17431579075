//! Evaluation metrics for classifiers and uplift models.
//!
//! The uplift curves follow scikit-uplift's definitions (`qini_curve`, `perfect_qini_curve`,
//! `qini_auc_score`) so that our numbers can be put next to theirs: rows are ranked by score,
//! ties are grouped, and the curve is evaluated at the end of each group of equal scores.

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
}

/// Qini curve: after the top-k rows, treated conversions minus control conversions scaled to the
/// treated count, `y_t(k) − y_c(k) · n_t(k) / n_c(k)`.
pub fn qini_curve(outcome: &[bool], score: &[f64], treated: &[bool]) -> Curve {
    let n = outcome.len();
    // Descending by score; equal scores form one group, so their order is irrelevant.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let (mut n_t, mut y_t, mut y_c) = (0.0, 0.0, 0.0);
    let mut curve = Curve {
        x: vec![0.0],
        y: vec![0.0],
    };
    for (pos, &i) in order.iter().enumerate() {
        if treated[i] {
            n_t += 1.0;
            if outcome[i] {
                y_t += 1.0;
            }
        } else if outcome[i] {
            y_c += 1.0;
        }
        let group_ends = pos + 1 == n || score[order[pos + 1]] != score[i];
        if group_ends {
            let all = (pos + 1) as f64;
            let n_c = all - n_t;
            let scaled = if n_c > 0.0 { y_c * n_t / n_c } else { 0.0 };
            curve.x.push(all);
            curve.y.push(y_t - scaled);
        }
    }
    curve
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
    let actual = qini_curve(outcome, score, treated);
    let perfect = perfect_qini_curve(outcome, treated);
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

    #[test]
    fn roc_auc_matches_scikit_learn_example() {
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        let auc = roc_auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]);
        assert!((auc - 0.75).abs() < 1e-12);
        let tied = roc_auc(&[false, true], &[0.5, 0.5]);
        assert!((tied - 0.5).abs() < 1e-12);
    }
}
