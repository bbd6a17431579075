//! `targeting evaluate`: offline evaluation of the uplift learners on any CSV with a treatment
//! column and a binary outcome, so a data scientist can compare our learners with their own
//! tools on their own data.
//!
//! Rows whose treatment is neither the treated nor the control value are dropped. The test part
//! is held out stratified by (treatment, outcome); a validation part for early stopping is
//! carved from the rest the same way; the scores are computed on the test part only.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use models::metrics::{bootstrap, qini_auc_score, uplift_at_k, uplift_auc_score, TopK};
use models::training::stratified_split;
use models::{Learner, TrainingSet, UpliftModel, UpliftParams};
use serde::Serialize;

/// The learner `--learner` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LearnerChoice {
    Odds,
    S,
    T,
    Ct,
    X,
    Dr,
    R,
    /// All of them on every setting, chosen by cross-validation (the one-standard-error rule).
    Auto,
}

impl LearnerChoice {
    /// The learner to fit, or `None` to choose among all.
    fn learner(self) -> Option<Learner> {
        match self {
            LearnerChoice::Odds => Some(Learner::Odds),
            LearnerChoice::S => Some(Learner::S),
            LearnerChoice::T => Some(Learner::T),
            LearnerChoice::Ct => Some(Learner::Ct),
            LearnerChoice::X => Some(Learner::X),
            LearnerChoice::Dr => Some(Learner::Dr),
            LearnerChoice::R => Some(Learner::R),
            LearnerChoice::Auto => None,
        }
    }
}

/// What to evaluate and how.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    /// The CSV file (with a header row).
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// Column holding the arm.
    #[arg(long, value_name = "COL")]
    pub treatment: String,
    /// Value of the treatment column for treated rows.
    #[arg(long, value_name = "VALUE")]
    pub treated: String,
    /// Value of the treatment column for control rows.
    #[arg(long, value_name = "VALUE")]
    pub control: String,
    /// Column holding the binary outcome (0/1).
    #[arg(long, value_name = "COL")]
    pub outcome: String,
    /// Columns to treat as categorical (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub categorical: Vec<String>,
    /// Columns to leave out (comma-separated), e.g. post-treatment columns.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub drop: Vec<String>,
    /// Learner: odds, s, t, ct, x, dr, r, or auto (chosen by cross-validation). A named learner
    /// still has its LightGBM setting chosen by cross-validation.
    #[arg(long, value_enum, default_value_t = LearnerChoice::Auto)]
    pub learner: LearnerChoice,
    /// Share of rows held out for the test.
    #[arg(long, default_value_t = 0.3)]
    pub test_size: f64,
    /// Seed of the split and of LightGBM.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Threads for LightGBM (overrides runtime.threads; 0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the split (`row,part` with the 0-based data row of the file and
    /// train/valid/test) to this file, for comparisons on the same split.
    #[arg(long, value_name = "FILE")]
    pub save_split: Option<PathBuf>,
}

/// One candidate of the choice: a learner on a LightGBM setting, with its held-out Qinis.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub learner: String,
    /// The grid setting (`shallow` or `deeper`).
    pub setting: String,
    /// Mean normalized Qini AUC over the held-out folds.
    pub mean: f64,
    /// Standard deviation of the fold Qinis (0 with one validation split).
    pub sd: f64,
    /// The Qini AUC of each held-out fold (one figure with one validation split).
    pub folds: Vec<f64>,
}

/// The result, as printed with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub learner: String,
    /// The LightGBM setting chosen with the learner.
    pub setting: String,
    /// Normalized Qini AUC (scikit-uplift `qini_auc_score`) on the test part.
    pub qini_auc: f64,
    /// 95 % bootstrap interval of the Qini AUC (200 resamples of the test part, seeded).
    pub qini_auc_ci95: (f64, f64),
    /// Normalized AUUC (scikit-uplift `uplift_auc_score`) on the test part.
    pub uplift_auc: f64,
    /// scikit-uplift `uplift_at_k(k=0.3, strategy="by_group")` on the test part.
    pub uplift_at_30: f64,
    pub n_train: usize,
    pub n_test: usize,
    /// Cross-validated Qini of every candidate trained (every learner on every setting with
    /// `auto`, unless some could not be trained), simplest first.
    pub validation_qini: Vec<Candidate>,
    /// Why the choice was made on one validation split instead of by cross-validation (too few
    /// buying rows per fold), if it was.
    pub single_split: Option<String>,
    /// With `auto`: the learners that could not be trained on these rows, with why. They are
    /// passed over; a learner asked for by name that cannot be trained is an error.
    pub skipped_learners: Vec<(String, String)>,
}

/// The CSV as a training set, with the file row of each kept row.
#[derive(Debug)]
pub struct Loaded {
    pub set: TrainingSet,
    pub feature_names: Vec<String>,
    pub categorical: Vec<usize>,
    pub file_rows: Vec<usize>,
}

fn parse_outcome(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "1.0" | "true" | "True" | "TRUE" => Some(true),
        "0" | "0.0" | "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_number(v: &str) -> Option<f64> {
    match v.trim() {
        "" | "NA" | "NaN" | "nan" | "null" | "None" => Some(f64::NAN),
        s => s.parse().ok(),
    }
}

/// Reads the CSV into a training set: numeric columns as floats (empty = missing),
/// categorical columns as codes of their sorted levels.
pub fn load(a: &EvaluateArgs) -> Result<Loaded> {
    let file = a.csv.display().to_string();
    let mut reader =
        csv::Reader::from_path(&a.csv).with_context(|| format!("cannot read {file}"))?;
    let headers: Vec<String> = reader
        .headers()
        .with_context(|| format!("cannot read the header of {file}"))?
        .iter()
        .map(String::from)
        .collect();
    let find = |name: &str, flag: &str| -> Result<usize> {
        headers.iter().position(|h| h == name).with_context(|| {
            format!(
                "{file}: no column {name:?} (given by {flag}); columns: {}",
                headers.join(", ")
            )
        })
    };
    let t_col = find(&a.treatment, "--treatment")?;
    let y_col = find(&a.outcome, "--outcome")?;
    for (list, flag) in [(&a.categorical, "--categorical"), (&a.drop, "--drop")] {
        for c in list {
            find(c, flag)?;
        }
    }
    let features: Vec<usize> = (0..headers.len())
        .filter(|&i| i != t_col && i != y_col && !a.drop.contains(&headers[i]))
        .collect();
    if features.is_empty() {
        bail!("{file}: no feature columns left after --treatment, --outcome and --drop");
    }
    let is_cat: Vec<bool> = features
        .iter()
        .map(|&i| a.categorical.contains(&headers[i]))
        .collect();
    let mut numeric: Vec<Vec<f64>> = vec![Vec::new(); features.len()];
    let mut text: Vec<Vec<String>> = vec![Vec::new(); features.len()];
    let (mut treated, mut outcome, mut file_rows) = (Vec::new(), Vec::new(), Vec::new());
    for (row, rec) in reader.records().enumerate() {
        let line = row + 2;
        let rec = rec.with_context(|| format!("{file}: line {line}"))?;
        let arm = &rec[t_col];
        let t = if arm == a.treated {
            true
        } else if arm == a.control {
            false
        } else {
            continue;
        };
        let y = parse_outcome(&rec[y_col]).with_context(|| {
            format!(
                "{file}:{line}: outcome column {:?} must be binary (0/1), got {:?}",
                a.outcome, &rec[y_col]
            )
        })?;
        for (k, &c) in features.iter().enumerate() {
            if is_cat[k] {
                text[k].push(rec[c].to_string());
            } else {
                let v = parse_number(&rec[c]).with_context(|| {
                    format!(
                        "{file}:{line}: column {:?} is not numeric ({:?}); list it with --categorical or --drop",
                        headers[c], &rec[c]
                    )
                })?;
                numeric[k].push(v);
            }
        }
        treated.push(t);
        outcome.push(y);
        file_rows.push(row);
    }
    let n_t = treated.iter().filter(|&&t| t).count();
    if n_t == 0 || n_t == treated.len() {
        bail!(
            "{file}: needs both arms, found {n_t} treated ({:?}) and {} control ({:?}) rows",
            a.treated,
            treated.len() - n_t,
            a.control
        );
    }
    let columns: Vec<Vec<f64>> = (0..features.len())
        .map(|k| {
            if !is_cat[k] {
                return std::mem::take(&mut numeric[k]);
            }
            let mut levels: Vec<&str> = text[k]
                .iter()
                .map(String::as_str)
                .filter(|s| !s.is_empty())
                .collect();
            levels.sort_unstable();
            levels.dedup();
            text[k]
                .iter()
                .map(|v| {
                    levels
                        .binary_search(&v.as_str())
                        .map_or(f64::NAN, |p| p as f64)
                })
                .collect()
        })
        .collect();
    let n = treated.len();
    let mut x = Vec::with_capacity(n * features.len());
    for r in 0..n {
        x.extend(columns.iter().map(|c| c[r]));
    }
    Ok(Loaded {
        set: TrainingSet {
            x,
            n_features: features.len(),
            treated,
            outcome,
        },
        feature_names: features.iter().map(|&i| headers[i].clone()).collect(),
        categorical: (0..features.len()).filter(|&k| is_cat[k]).collect(),
        file_rows,
    })
}

/// Splits, trains and scores.
pub fn evaluate(a: &EvaluateArgs, threads: usize, scorer: models::Scorer) -> Result<Evaluation> {
    if !(0.05..=0.9).contains(&a.test_size) {
        bail!(
            "--test-size must be between 0.05 and 0.9, got {}",
            a.test_size
        );
    }
    let learner = a.learner.learner();
    let data = load(a)?;
    let all = &data.set;
    let (rest, test_idx) = stratified_split(&all.treated, &all.outcome, a.test_size, a.seed);
    let rest_set = all.subset(&rest);
    let (fit_pos, valid_pos) = stratified_split(
        &rest_set.treated,
        &rest_set.outcome,
        0.2,
        a.seed.wrapping_add(1),
    );
    let (fit, valid, test) = (
        rest_set.subset(&fit_pos),
        rest_set.subset(&valid_pos),
        all.subset(&test_idx),
    );
    if let Some(path) = &a.save_split {
        save_split(path, &data.file_rows, &rest, &valid_pos, &test_idx)?;
    }
    let params = UpliftParams {
        num_threads: threads,
        seed: a.seed,
        ..UpliftParams::default()
    };
    let (model, tried) = UpliftModel::fit(
        learner,
        &fit,
        &valid,
        &data.feature_names,
        &data.categorical,
        &params,
    )?;
    crate::training::log_choice(&tried.failed, tried.single_split.as_deref());
    let model = model.scored_by(scorer)?;
    let uplift = model.predict(&test.x, threads)?.uplift;
    let qini = bootstrap(
        &test.outcome,
        &uplift,
        &test.treated,
        qini_auc_score,
        200,
        a.seed,
    );
    Ok(Evaluation {
        learner: model.learner.name().into(),
        setting: tried.setting.into(),
        qini_auc: qini.estimate,
        qini_auc_ci95: (qini.low, qini.high),
        uplift_auc: uplift_auc_score(&test.outcome, &uplift, &test.treated),
        uplift_at_30: uplift_at_k(&test.outcome, &uplift, &test.treated, 0.3, TopK::ByGroup),
        n_train: rest.len(),
        n_test: test_idx.len(),
        validation_qini: tried
            .scores
            .iter()
            .map(|s| Candidate {
                learner: s.learner.name().into(),
                setting: s.setting.name.into(),
                mean: s.mean(),
                sd: s.sd(),
                folds: s.qini.clone(),
            })
            .collect(),
        single_split: tried.single_split.clone(),
        skipped_learners: tried
            .failed
            .iter()
            .map(|(l, why)| (l.name().to_string(), why.clone()))
            .collect(),
    })
}

fn save_split(
    path: &Path,
    file_rows: &[usize],
    rest: &[usize],
    valid: &[usize],
    test: &[usize],
) -> Result<()> {
    let mut part = vec!["train"; file_rows.len()];
    for &p in valid {
        part[rest[p]] = "valid";
    }
    for &i in test {
        part[i] = "test";
    }
    let mut out = String::from("row,part\n");
    for (i, r) in file_rows.iter().enumerate() {
        out.push_str(&format!("{r},{}\n", part[i]));
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

impl Evaluation {
    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut s = format!(
            "learner {} ({} trees)  (train {} rows, test {} rows)\n  Qini AUC      {:.4}  (95% CI {:.4} to {:.4})\n  uplift AUC    {:.4}\n  uplift@30%    {:.4}\n",
            self.learner,
            self.setting,
            self.n_train,
            self.n_test,
            self.qini_auc,
            self.qini_auc_ci95.0,
            self.qini_auc_ci95.1,
            self.uplift_auc,
            self.uplift_at_30
        );
        if let Some(why) = &self.single_split {
            s.push_str(&format!("  {why}\n"));
        }
        for c in &self.validation_qini {
            s.push_str(&format!(
                "  validation Qini of {:>4} ({}): {:.4} ± {:.4}\n",
                c.learner, c.setting, c.mean, c.sd
            ));
        }
        for (l, why) in &self.skipped_learners {
            s.push_str(&format!("  {l} not trained: {why}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use models::Scorer;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EvaluateArgs,
    }

    /// Every learner trained on the Lenta sample (real data, categorical and missing values)
    /// scores the same, bit for bit, under the native scorer and LightGBM.
    #[test]
    fn the_scorers_agree_on_models_trained_on_real_data() {
        let csv = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/uplift/lenta_sample_50k.csv"
        );
        let a = Cli::parse_from([
            "evaluate",
            "--csv",
            csv,
            "--treatment",
            "is_treatment",
            "--treated",
            "1",
            "--control",
            "0",
            "--outcome",
            "response_att",
            "--categorical",
            "is_women",
        ])
        .args;
        let data = load(&a).unwrap();
        let all = &data.set;
        assert!(
            all.x.iter().any(|v| v.is_nan()),
            "the sample has missing values"
        );
        assert!(
            !data.categorical.is_empty(),
            "the sample has categorical columns"
        );
        let idx: Vec<usize> = (0..all.len()).collect();
        let (fit, valid, test) = (
            all.subset(&idx[..16_000]),
            all.subset(&idx[16_000..22_000]),
            all.subset(&idx[22_000..]),
        );
        // Few rounds: the scorers' agreement does not need good models, and every learner is
        // cross-validated on both settings.
        let params = UpliftParams {
            max_rounds: 100,
            ..UpliftParams::default()
        };
        for learner in Learner::ALL {
            let (model, _) = UpliftModel::fit(
                Some(learner),
                &fit,
                &valid,
                &data.feature_names,
                &data.categorical,
                &params,
            )
            .unwrap();
            let texts = model.to_texts().unwrap();
            let score = |scorer| {
                let mut m =
                    UpliftModel::from_texts(learner, &texts, &data.feature_names, scorer).unwrap();
                m.arm_shift = model.arm_shift;
                m.predict(&test.x, 2).unwrap()
            };
            let (native, lightgbm) = (score(Scorer::Native), score(Scorer::Lightgbm));
            for (what, n, l) in [
                ("uplift", &native.uplift, &lightgbm.uplift),
                ("p_control", &native.p_control, &lightgbm.p_control),
            ] {
                assert_eq!(n.len(), test.len());
                let differ = n.iter().zip(l).filter(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(differ.count(), 0, "{learner:?} {what}");
            }
        }
    }
}
