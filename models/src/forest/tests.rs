//! The native scorer against LightGBM's predict: random model texts with every kind of split and
//! edge value, and models LightGBM trains, must give the same outputs, bit for bit.

use lightgbm3::{Booster, Dataset};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::*;

/// Values where LightGBM's semantics have edges: signed zeros, its zero threshold and values
/// on either side, the smallest subnormal, the largest finite, infinities.
fn edges() -> Vec<f64> {
    let z = ZERO_THRESHOLD;
    vec![
        0.0,
        -0.0,
        z,
        -z,
        z * 0.5,
        -z * 0.5,
        z * 2.0,
        1e-36,
        5e-324,
        -5e-324,
        f64::MAX,
        -f64::MAX,
        1.5,
        -2.25,
        1.0,
        2.0,
        31.0,
        32.0,
        33.0,
    ]
}

fn threshold(rng: &mut ChaCha8Rng) -> f64 {
    let edges = edges();
    match rng.random_range(0..4) {
        0 => edges[rng.random_range(0..edges.len())],
        1 => f64::from(rng.random_range(-3..40)),
        _ => rng.random_range(-3.0..3.0),
    }
}

fn value(rng: &mut ChaCha8Rng) -> f64 {
    let edges = edges();
    match rng.random_range(0..12) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => 3e9,
        4 => -0.5,
        5..=7 => edges[rng.random_range(0..edges.len())],
        8 => f64::from(rng.random_range(-2..70)),
        _ => rng.random_range(-3.0..3.0),
    }
}

/// A random tree grown as LightGBM grows one: a leaf at a time splits into a new split whose
/// left child is that leaf and whose right child is a new leaf.
/// With `missing`, each feature's splits share its missing type (as in a model LightGBM trained,
/// which the masks kernel evaluates); without, each split has its own.
fn tree_text(
    rng: &mut ChaCha8Rng,
    index: usize,
    features: usize,
    missing: Option<&[i64]>,
) -> String {
    let leaves = match rng.random_range(0..6) {
        0 => 1,
        1 => rng.random_range(20..40),
        _ => rng.random_range(2..8),
    };
    let categorical = rng.random_bool(0.4);
    let (mut left, mut right) = (Vec::new(), Vec::new());
    let mut parent: Vec<Option<(usize, bool)>> = vec![None];
    for k in 1..leaves {
        let leaf = rng.random_range(0..k);
        let node = (k - 1) as i64;
        left.push(!(leaf as i64));
        right.push(!(k as i64));
        match parent[leaf] {
            Some((p, true)) => left[p] = node,
            Some((p, false)) => right[p] = node,
            None => {}
        }
        parent[leaf] = Some((node as usize, true));
        parent.push(Some((node as usize, false)));
    }
    let (mut feature, mut thresholds, mut decisions) = (Vec::new(), Vec::new(), Vec::new());
    let (mut boundaries, mut words) = (vec![0usize], Vec::<u32>::new());
    for _ in 1..leaves {
        let f = rng.random_range(0..features);
        feature.push(f.to_string());
        // Missing type and default direction at random; on a categorical split LightGBM
        // ignores both, and a tree without num_cat ignores the categorical bit.
        let kind = missing.map_or_else(|| rng.random_range(0..3), |m| m[f]);
        let mut decision = (kind << 2) | (rng.random_range(0..2) << 1);
        if rng.random_bool(0.3) {
            decision |= 1;
        }
        if categorical && decision & 1 == 1 {
            thresholds.push(format!("{}", boundaries.len() - 1));
            for _ in 0..rng.random_range(1..4) {
                words.push(rng.random());
            }
            boundaries.push(words.len());
        } else {
            thresholds.push(format!("{:?}", threshold(rng)));
        }
        decisions.push(decision.to_string());
    }
    let values: Vec<String> = (0..leaves)
        .map(|_| match rng.random_range(0..5) {
            0 => format!("{:?}", rng.random_range(-1e-300..1e-300)),
            1 => format!("{:?}", rng.random_range(-1e6..1e6)),
            _ => format!("{:?}", rng.random_range(-1.0..1.0)),
        })
        .collect();
    let join = |v: &[String]| v.join(" ");
    let ints = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(" ");
    let num_cat = boundaries.len() - 1;
    let mut text = format!(
        "Tree={index}\nnum_leaves={leaves}\nnum_cat={num_cat}\nsplit_feature={}\nthreshold={}\n\
         decision_type={}\nleft_child={}\nright_child={}\nleaf_value={}\n",
        join(&feature),
        join(&thresholds),
        join(&decisions),
        ints(&left),
        ints(&right),
        join(&values),
    );
    if num_cat > 0 {
        let b: Vec<String> = boundaries.iter().map(usize::to_string).collect();
        let w: Vec<String> = words.iter().map(u32::to_string).collect();
        text += &format!("cat_boundaries={}\ncat_threshold={}\n", join(&b), join(&w));
    }
    text + "is_linear=0\nshrinkage=1\n\n\n"
}

fn model_text(rng: &mut ChaCha8Rng, features: usize, objective: Option<&str>) -> String {
    let missing: Vec<i64> = (0..features).map(|_| rng.random_range(0..3)).collect();
    let missing = rng.random_bool(0.5).then_some(&missing[..]);
    let names: Vec<String> = (0..features).map(|i| format!("f{i}")).collect();
    let mut text = format!(
        "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
         max_feature_idx={}\n",
        features - 1
    );
    if let Some(o) = objective {
        text += &format!("objective={o}\n");
    }
    text += &format!(
        "feature_names={}\nfeature_infos={}\n\n",
        names.join(" "),
        vec!["none"; features].join(" ")
    );
    for t in 0..rng.random_range(1..30) {
        text += &tree_text(rng, t, features, missing);
    }
    text + "end of trees\n"
}

/// LightGBM's and the native scorer's outputs, compared bit for bit.
fn assert_same(text: &str, x: &[f64], features: usize, context: &str) {
    let booster = Booster::from_string(text).expect("lightgbm loads the model");
    let want = booster
        .predict_with_params(x, features as i32, true, "num_threads=1")
        .unwrap();
    let forest = Forest::parse(text).unwrap_or_else(|e| panic!("{context}: {e}"));
    for (isa, threads) in Isa::available().flat_map(|i| [(i, 1), (i, 2)]) {
        let got = forest.predict_on(isa, x, features, threads).unwrap();
        assert_eq!(got.len(), want.len());
        for (row, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{context}, {isa:?}, row {row} {:?}: native {g:e}, lightgbm {w:e}",
                &x[row * features..(row + 1) * features]
            );
        }
    }
}

#[test]
fn random_models_score_as_lightgbm_does() {
    let objectives = [
        Some("binary sigmoid:1"),
        Some("binary sigmoid:3"),
        Some("regression"),
        Some("regression sqrt"),
        None,
    ];
    let (mut masked, mut walked) = (0, 0);
    for seed in 0..400 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let features = rng.random_range(1..7);
        let objective = objectives[rng.random_range(0..objectives.len())];
        let text = model_text(&mut rng, features, objective);
        let rows = rng.random_range(1..300);
        let x: Vec<f64> = (0..rows * features).map(|_| value(&mut rng)).collect();
        assert_same(&text, &x, features, &format!("seed {seed}"));
        let forest = Forest::parse(&text).unwrap();
        masked += forest.masked_trees();
        walked += forest.num_trees() - forest.masked_trees();
    }
    // Both kernels were tried, on thousands of trees.
    assert!(
        masked > 2000 && walked > 2000,
        "{masked} masked, {walked} walked"
    );
}

/// Random rows with NaNs, zeros and two categorical columns, and a label that depends on them.
fn trained(objective: &str, seed: u64) -> (String, Vec<f64>, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (rows, features) = (3000, 6);
    let mut x = Vec::with_capacity(rows * features);
    let mut y = Vec::with_capacity(rows);
    for _ in 0..rows {
        let row = [
            rng.random_range(-2.0..2.0),
            if rng.random_bool(0.2) {
                f64::NAN
            } else {
                rng.random_range(0.0..5.0)
            },
            if rng.random_bool(0.3) {
                0.0
            } else {
                rng.random_range(-1.0..1.0)
            },
            f64::from(rng.random_range(0..8)),
            f64::from(rng.random_range(0..40)),
            rng.random_range(0.0..1.0),
        ];
        let signal = row[0]
            + if row[1].is_nan() { 1.0 } else { -row[1] * 0.3 }
            + f64::from(u8::from(row[3] as i32 % 3 == 0))
            + if row[2] == 0.0 { 0.7 } else { row[2] }
            + if (row[4] as i32) % 7 == 1 { 1.2 } else { 0.0 };
        let noisy = signal + rng.random_range(-1.0..1.0);
        y.push(if objective == "binary" {
            f32::from(u8::from(noisy > 0.5))
        } else {
            noisy as f32
        });
        x.extend_from_slice(&row);
    }
    let mut ds = Dataset::from_slice(&x, &y, features as i32, true).unwrap();
    ds.set_feature_names(&(0..features).map(|i| format!("f{i}")).collect::<Vec<_>>())
        .unwrap();
    let params = json!({
        "objective": objective,
        "num_iterations": 60,
        "num_leaves": 31,
        "min_data_in_leaf": 5,
        "categorical_feature": "3,4",
        "num_threads": 2,
        "verbosity": -1,
        "seed": seed,
    });
    let booster = Booster::train(ds, &params).unwrap();
    let mut test: Vec<f64> = (0..500 * features).map(|_| value(&mut rng)).collect();
    test.extend_from_slice(&x[..1000 * features]);
    (booster.save_string().unwrap(), test, features)
}

#[test]
fn trained_models_score_as_lightgbm_does() {
    for (objective, seed) in [("binary", 1), ("binary", 2), ("regression", 3)] {
        let (text, x, features) = trained(objective, seed);
        let forest = Forest::parse(&text).unwrap();
        assert_eq!(forest.num_trees(), 60, "{objective}");
        assert_eq!(forest.masked_trees(), 60, "{objective}");
        assert_same(&text, &x, features, objective);
    }
}

#[test]
fn what_cannot_be_scored_exactly_is_refused_by_name() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let text = model_text(&mut rng, 3, Some("binary sigmoid:1"));
    assert!(Forest::parse(&text).is_ok());
    let cases = [
        ("version=v4", "version=v3", "model version v3 (only v4)"),
        ("is_linear=0", "is_linear=1", "linear trees (tree 0)"),
        ("num_class=1", "num_class=3", "several classes"),
        (
            "num_tree_per_iteration=1",
            "num_tree_per_iteration=3",
            "several trees per iteration",
        ),
        (
            "label_index=0",
            "label_index=0\naverage_output",
            "averaged outputs",
        ),
        ("binary sigmoid:1", "poisson", "the objective \"poisson\""),
        (
            "binary sigmoid:1",
            "binary sigmoid:0.5",
            "the binary objective's sigmoid:0.5",
        ),
    ];
    for (from, to, what) in cases {
        let err = Forest::parse(&text.replacen(from, to, 1)).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, ForestError::Unsupported(_)) && message.contains(what),
            "{to}: {message}"
        );
        assert!(
            message.contains("runtime.scorer = \"lightgbm\""),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }
    let broken = [
        (
            "max_feature_idx=1",
            "max_feature_idx=0",
            "feature_names does not match",
        ),
        (
            "left_child=1 -1",
            "left_child=1 -1 5",
            "left_child has 3 values, not 2",
        ),
        ("left_child=1 -1", "left_child=1 0", "tree 0 is not a tree"),
        (
            "left_child=1 -1",
            "left_child=1 -9",
            "tree 0: child -9 out of range",
        ),
        (
            "split_feature=0 1",
            "split_feature=0 2",
            "split feature out of range",
        ),
        ("num_leaves=3", "num_leaves=x", "no valid num_leaves"),
        (
            "threshold=1 2",
            "threshold=1 z",
            "threshold holds a value that is not a number",
        ),
    ];
    for (from, to, what) in broken {
        let broken = SMALL.replacen(from, to, 1);
        assert_ne!(broken, SMALL);
        let message = Forest::parse(&broken).unwrap_err().to_string();
        assert!(message.contains(what), "{to}: {message}");
    }
    assert_eq!(
        Forest::parse(SMALL)
            .unwrap()
            .predict(&[0.0; 3], 3, 1)
            .unwrap_err(),
        ForestError::Columns { got: 3, want: 2 }
    );
}

/// Two splits on two features: left of the root is the second split, right a leaf.
const SMALL: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
    max_feature_idx=1\nfeature_names=a b\nfeature_infos=none none\n\nTree=0\nnum_leaves=3\n\
    num_cat=0\nsplit_feature=0 1\nthreshold=1 2\ndecision_type=0 0\nleft_child=1 -1\n\
    right_child=-3 -2\nleaf_value=1 2 3\n\nend of trees\n";

#[test]
fn a_small_model_walks_as_written() {
    let forest = Forest::parse(SMALL).unwrap();
    assert_eq!((forest.num_trees(), forest.steps_per_row()), (1, 2));
    // a ≤ 1 and b ≤ 2: leaf 0; a ≤ 1 and b > 2: leaf 1; a > 1: leaf 2, a step early. NaN
    // reads as 0 (missing type None).
    let x = [0.5, 2.0, 0.5, 2.5, 1.5, 0.0, f64::NAN, f64::NAN];
    assert_eq!(forest.predict(&x, 2, 1).unwrap(), vec![1.0, 2.0, 3.0, 1.0]);
}
