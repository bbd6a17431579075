//! `targeting bench-score`: the native scorer against LightGBM's predict, on the store's current
//! models and on a large model (1000 trees of 31 leaves), over the source's users as of a date.
//! Both scorers score the same rows with the same threads; every output is compared bit for
//! bit, and the command fails when one differs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use models::uplift::{large_benchmark_model, TreeModel};
use models::{Isa, RunDate, Scorer};
use serde::Serialize;

use crate::config::Settings;
use crate::pipeline::extract::{self, Slice};
use crate::training;

#[derive(Debug, Args)]
pub struct BenchScoreArgs {
    /// Rows to score: the source's users as of --date, repeated or cut to this many.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Features as of this date (default: today, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<RunDate>,
    /// Timings of each model and scorer; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Leave out the large model (training its 1000 trees takes a minute or two).
    #[arg(long)]
    pub no_large: bool,
    /// Source database URL (overrides source.database_url).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Model store folder (overrides models.store).
    #[arg(long, value_name = "DIR")]
    pub model_store: Option<PathBuf>,
    /// Threads for both scorers (overrides runtime.threads; 0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One model (a role of a stored model, or the large one) through both scorers.
#[derive(Debug, Serialize)]
pub struct Timing {
    pub model: String,
    pub role: String,
    pub trees: usize,
    /// Nodes a row steps through in the native scorer, over all trees.
    pub steps_per_row: usize,
    pub lightgbm_seconds: f64,
    pub native_seconds: f64,
    /// The native scorer compiled for baseline x86-64 (SSE2) only: what the wider vectors of
    /// [`Report::instructions`] give.
    pub baseline_seconds: f64,
}

impl Timing {
    fn rows_per_second(&self, rows: usize, seconds: f64) -> f64 {
        rows as f64 / seconds
    }

    /// Wall nanoseconds per row and tree.
    fn ns_per_tree(&self, rows: usize, seconds: f64) -> f64 {
        seconds * 1e9 / (rows * self.trees) as f64
    }

    pub fn speedup(&self) -> f64 {
        self.lightgbm_seconds / self.native_seconds
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub rows: usize,
    pub threads: usize,
    /// The instructions the native scorer ran with: the widest this CPU has.
    pub instructions: Isa,
    /// Every role of every model, then one line per model (role `all`).
    pub timings: Vec<Timing>,
}

/// Loads the models and the rows, times both scorers and checks that they agree.
pub async fn run(s: &Settings, a: &BenchScoreArgs) -> Result<Report> {
    let date = a.date.unwrap_or_else(RunDate::today);
    let set = training::load_stored(s).await?.with_context(|| {
        format!(
            "no current models in {}: run `targeting train` (or the demo) first",
            s.models.store
        )
    })?;
    let source = s.source.connect(false).await?;
    let tables = extract::extract(&source, None, s, date, &Slice::Everything).await?;
    source.close().await;
    let levels = set.uplift.metadata.categorical_levels.clone();
    let names = models::features::feature_names();
    let columns = names.len();
    let users = tokio::task::block_in_place(|| -> Result<Vec<f64>> {
        Ok(models::training::user_features(&tables, &levels, date, s.threads)?.matrix(&names)?)
    })?;
    drop(tables);
    if users.is_empty() {
        bail!("the source has no users to score");
    }
    let x: Vec<f64> = users
        .iter()
        .copied()
        .cycle()
        .take(a.rows * columns)
        .collect();
    drop(users);
    let mut models: Vec<(String, String, String)> = Vec::new();
    for artifact in [&set.uplift, &set.discount_uplift, &set.sensitivity] {
        for (role, text) in &artifact.models {
            models.push((artifact.metadata.name.clone(), role.clone(), text.clone()));
        }
    }
    if !a.no_large {
        let sample = &x[..x.len().min(50_000 * columns)];
        let text = tokio::task::block_in_place(|| {
            large_benchmark_model(
                sample,
                columns,
                &models::features::categorical_indices(),
                s.threads,
            )
        })?;
        models.push(("large".into(), "1000x31".into(), text));
    }
    // The S-learner's model reads the arm as one more column; the dose learner's reads a step
    // per discount level (no offer and each level, in turn).
    let levels = &set.discount_uplift.metadata.discount_levels;
    let widened = |extra: &dyn Fn(usize) -> Vec<f64>| -> Vec<f64> {
        x.chunks(columns)
            .enumerate()
            .flat_map(|(i, r)| r.iter().copied().chain(extra(i)))
            .collect()
    };
    // Each is as large as the users' matrix: built only for a role that reads it.
    let has = |wanted: &str| models.iter().any(|(_, role, _)| role == wanted);
    let with_arm = if has("single") {
        widened(&|i| vec![(i % 2) as f64])
    } else {
        vec![]
    };
    let with_steps = if has("dose") {
        widened(&|i| {
            let pct = [0].iter().chain(levels).nth(i % (levels.len() + 1));
            let pct = pct.copied().unwrap_or_default();
            levels
                .iter()
                .map(|&l| f64::from(u8::from(pct >= l)))
                .collect()
        })
    } else {
        vec![]
    };
    let mut timings = Vec::new();
    for (model, role, text) in &models {
        let (rows, n) = match role.as_str() {
            "single" => (&with_arm[..], columns + 1),
            "dose" => (&with_steps[..], columns + levels.len()),
            _ => (&x[..], columns),
        };
        let timing =
            tokio::task::block_in_place(|| time(model, role, text, rows, n, s.threads, a.repeat))?;
        timings.push(timing);
    }
    let mut per_model = Vec::new();
    for (name, _, _) in &models {
        if per_model.iter().any(|t: &Timing| &t.model == name) {
            continue;
        }
        let parts: Vec<&Timing> = timings.iter().filter(|t| &t.model == name).collect();
        per_model.push(Timing {
            model: name.clone(),
            role: "all".into(),
            trees: parts.iter().map(|t| t.trees).sum(),
            steps_per_row: parts.iter().map(|t| t.steps_per_row).sum(),
            lightgbm_seconds: parts.iter().map(|t| t.lightgbm_seconds).sum(),
            native_seconds: parts.iter().map(|t| t.native_seconds).sum(),
            baseline_seconds: parts.iter().map(|t| t.baseline_seconds).sum(),
        });
    }
    timings.extend(per_model);
    Ok(Report {
        rows: a.rows,
        threads: s.threads,
        instructions: Isa::detect(),
        timings,
    })
}

/// Median seconds of both scorers on `x`, after checking that their outputs are identical.
fn time(
    model: &str,
    role: &str,
    text: &str,
    x: &[f64],
    n: usize,
    threads: usize,
    repeat: usize,
) -> Result<Timing> {
    let context = || format!("model {model}, role {role}");
    let lightgbm = TreeModel::load(text, Scorer::Lightgbm, role).with_context(context)?;
    let native = TreeModel::load(text, Scorer::Native, role).with_context(context)?;
    let forest = native.native().expect("loaded for the native scorer");
    let (mut lightgbm_seconds, mut native_seconds, mut baseline_seconds) =
        (Vec::new(), Vec::new(), Vec::new());
    for i in 0..repeat.max(1) {
        // Alternating, so that all see the same state of a shared machine.
        let t = Instant::now();
        let want = lightgbm.predict(x, n, threads)?;
        lightgbm_seconds.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let got = native.predict(x, n, threads)?;
        native_seconds.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let baseline = forest.predict_on(Isa::Baseline, x, n, threads)?;
        baseline_seconds.push(t.elapsed().as_secs_f64());
        if i == 0 {
            same(&got, &want, &context())?;
            same(
                &baseline,
                &want,
                &format!("{} (baseline x86-64)", context()),
            )?;
        }
    }
    Ok(Timing {
        model: model.into(),
        role: role.into(),
        trees: forest.num_trees(),
        steps_per_row: forest.steps_per_row(),
        lightgbm_seconds: median(&mut lightgbm_seconds),
        native_seconds: median(&mut native_seconds),
        baseline_seconds: median(&mut baseline_seconds),
    })
}

/// Fails unless `got` and `want` are equal, bit for bit.
fn same(got: &[f64], want: &[f64], context: &str) -> Result<()> {
    let differ = |(g, w): &(&f64, &f64)| g.to_bits() != w.to_bits();
    if let Some(row) = got.iter().zip(want).position(|p| differ(&p)) {
        let count = got.iter().zip(want).filter(differ).count();
        bail!(
            "{context}: the native scorer differs from LightGBM on {count} rows (first: row {row}, native {:e}, lightgbm {:e})",
            got[row],
            want[row]
        );
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Report {
    /// The report as a table: rows per second, wall nanoseconds per row and tree, speedup.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} rows, {} threads, native scorer on {:?}; outputs identical (bit for bit) for every model\n\
             {:<22} {:<12} {:>6} {:>9} {:>13} {:>13} {:>9} {:>9} {:>9} {:>8}\n",
            self.rows,
            self.threads,
            self.instructions,
            "model",
            "role",
            "trees",
            "steps/row",
            "lightgbm r/s",
            "native r/s",
            "lgbm ns",
            "base ns",
            "nat. ns",
            "speedup"
        );
        for t in &self.timings {
            out += &format!(
                "{:<22} {:<12} {:>6} {:>9} {:>13.0} {:>13.0} {:>9.2} {:>9.2} {:>9.2} {:>7.1}×\n",
                t.model,
                t.role,
                t.trees,
                t.steps_per_row,
                t.rows_per_second(self.rows, t.lightgbm_seconds),
                t.rows_per_second(self.rows, t.native_seconds),
                t.ns_per_tree(self.rows, t.lightgbm_seconds),
                t.ns_per_tree(self.rows, t.baseline_seconds),
                t.ns_per_tree(self.rows, t.native_seconds),
                t.speedup()
            );
        }
        out + "(ns: wall nanoseconds per row and tree; base: the native scorer on baseline x86-64)\n"
    }
}
