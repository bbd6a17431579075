//! The native scorer: a LightGBM model text loaded into flat arrays and evaluated in Rust, with
//! outputs equal, bit for bit, to LightGBM's own predict.
//!
//! Scoring is the part of the nightly run that grows with users × trees, and LightGBM's predict
//! spends its time per row (a sparse copy of the row into a buffer) and on branches it cannot
//! predict: which way a row goes at a node is data. Here rows are scored in blocks, tree after
//! tree, so that a tree stays in L1 while every row of the block goes through it, and the rows
//! are split in contiguous ranges, one per thread. Each tree has one of two kernels:
//! - **masks** (a tree of at most 64 leaves with numerical splits, as LightGBM's uplift models
//!   are): QuickScorer's idea. Leaves are numbered left to right; each split has a mask of the
//!   leaves *not* in its left subtree. Every split of the tree is tested on every row of the
//!   block, column by column, and a row's leaf set is ANDed with the mask of each split it goes
//!   right at; its leaf is the lowest bit left. No test depends on another and the same
//!   comparison runs down a column of rows, so the compiler vectorises it and nothing waits on
//!   a branch or a load chain. Missing values are folded into the column once per block (see
//!   below), so that each test is one comparison.
//! - **walk** (any other tree: categorical splits, more leaves): every node is 16 bytes
//!   (threshold, feature with three flag bits, index of its left child, the right child next to
//!   it), a leaf is a node that goes left to itself, and every row takes the same number of
//!   steps (the tree's depth), a few rows side by side so that their chains of loads overlap.
//!
//! The kernels are compiled three times, for baseline x86-64, AVX2 and AVX-512 ([`Isa`]), and
//! the widest the CPU has is chosen at run time: the masks kernel's tests and ANDs run 2, 4 or
//! 8 rows per instruction. The outputs do not depend on the choice.
//!
//! Exactness comes from copying LightGBM 4's semantics, which are those of its C API, of
//! `Tree::NumericalDecision`, `Tree::CategoricalDecision`, `GBDT::PredictRaw` and the objectives'
//! `ConvertOutput`:
//! - an input value with |v| ≤ 1e-35 (`kZeroThreshold`, an f32 constant) is zero: the C API
//!   drops it from the row and the predictor's buffer holds 0 there;
//! - numerical split: NaN is 0 unless the node's missing type is NaN; a missing value (NaN for
//!   type NaN, zero for type Zero) goes the node's default way, any other goes left when
//!   `v <= threshold` (thresholds as f64, parsed with correct rounding, as LightGBM's);
//! - categorical split (only in trees with `num_cat > 0`, as LightGBM's `GetLeaf` reads them):
//!   NaN and negative values go right; others are truncated to an integer and go left when it is
//!   in the node's bitset;
//! - the masks kernel folds missing values into its columns per feature, which is exact when all
//!   numerical splits on a feature share its missing type (as in a model LightGBM trained: the
//!   type is the feature's): type None, NaN becomes 0; type Zero, 0 becomes NaN. A split that
//!   sends missing values right reads that column (`NaN <= t` is false), one that sends them
//!   left a copy with NaN as −∞ (`−∞ <= t` is true, as for a real −∞), so every test is
//!   `v <= t`. A tree with a feature whose splits disagree is walked;
//! - the trees' outputs are summed in f64 from 0, in the order of the text, then transformed:
//!   `1 / (1 + exp(−σ·s))` for `binary`, `sign(s)·s²` for `regression sqrt`, `s` otherwise.
//!   `f64::exp` is the C library's `exp`, the one LightGBM calls.
//!
//! What it cannot evaluate exactly it refuses when loading, naming what: another model version,
//! linear trees, several trees per iteration (multiclass), averaged outputs (random forests),
//! objectives other than binary and regression, a sigmoid written as other than an integer
//! (LightGBM reads that number with its own, approximate, parser).

use std::collections::HashMap;

/// LightGBM's `kZeroThreshold`: `1e-35f`, an f32 widened to f64.
const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;
/// Rows scored together: a block's folded columns (256 rows, 40 features, two copies at most:
/// 160 KB) stay in L2 while the trees go over them; smaller blocks measured slower.
const BLOCK_ROWS: usize = 256;
/// Most leaves a tree may have for the masks kernel: one bit each in a `u64`.
const MASK_LEAVES: usize = 64;
/// Rows walked through a tree side by side; their chains of loads are independent.
const LANES: usize = 8;
/// Flag bits at the top of [`Node::feature`].
const DEFAULT_LEFT: u32 = 1 << 31;
const MISSING_ZERO: u32 = 1 << 30;
const CATEGORICAL: u32 = 1 << 29;
const FEATURE_MASK: u32 = CATEGORICAL - 1;

/// Which implementation scores the LightGBM models: this module, or LightGBM itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scorer {
    /// The native scorer: the same outputs, many times faster.
    #[default]
    Native,
    /// LightGBM's own predict, to check the native scorer against, or to score a model the
    /// native scorer refuses.
    Lightgbm,
}

/// Why a model text cannot be evaluated natively.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ForestError {
    #[error("the native scorer does not support {0} (set runtime.scorer = \"lightgbm\" to score it with LightGBM)")]
    Unsupported(String),
    #[error("malformed LightGBM model text: {0}")]
    Malformed(String),
    #[error("the rows have {got} columns, the model {want} features")]
    Columns { got: usize, want: usize },
}

/// One split, or a leaf (a node whose walk always goes left, to itself).
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Numerical split: its threshold. Categorical: offset (high 32 bits) and length in words
    /// (low 32) of its bitset in [`Forest::bitsets`]. A leaf: +∞.
    threshold: f64,
    /// The feature's column, with [`DEFAULT_LEFT`], [`MISSING_ZERO`] and [`CATEGORICAL`].
    feature: u32,
    /// The left child's index; the right child is the next node.
    left: u32,
}

impl Node {
    const fn leaf(at: u32) -> Self {
        Node {
            threshold: f64::INFINITY,
            feature: DEFAULT_LEFT,
            left: at,
        }
    }
}

/// A numerical split as the masks kernel tests it: a row goes left when its value in
/// `column` is `<= threshold`.
#[derive(Debug, Clone, Copy)]
struct MaskNode {
    threshold: f64,
    /// The folded column: `2 × feature`, or `2 × feature + 1` for the copy in which missing
    /// values are −∞ (for a split that sends them left).
    column: u32,
    /// Every leaf but those of the left subtree.
    mask: u64,
}

/// How the masks kernel folds missing values into a feature's column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// NaN reads as 0.
    None,
    /// 0 (and NaN, which reads as 0) is missing: it becomes NaN.
    Zero,
    /// NaN is missing.
    Nan,
}

/// How one tree is evaluated.
#[derive(Debug, Clone)]
enum Kernel {
    /// Its splits in `mask_nodes[nodes]`, its leaves (left to right) in `mask_leaves[leaves]`.
    Masks {
        nodes: std::ops::Range<usize>,
        leaves: usize,
    },
    Walk(TreeAt),
}

/// One tree: where its nodes start, and how many steps reach any of its leaves.
#[derive(Debug, Clone, Copy)]
struct TreeAt {
    root: u32,
    depth: u32,
    categorical: bool,
}

/// The instructions [`Forest::score_range`] is compiled for. The same source, compiled again
/// for wider vectors, tests and masks 4 (AVX2) or 8 (AVX-512) rows per instruction where the
/// baseline x86-64 (SSE2) tests 2; each is chosen at run time, when the CPU has it. Outputs are
/// the same bit for bit: a comparison is exact at any width, and every row's sum still adds
/// its leaves one by one, in order (Rust never fuses a multiply and an add on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// Every kind, narrowest first.
    const ALL: &[Isa] = &[
        Isa::Baseline,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512,
    ];

    /// Whether this CPU runs it (the standard library caches what the CPU has).
    pub fn runs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        use std::arch::is_x86_feature_detected as has;
        match self {
            Isa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => has!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512dq")
            }
        }
    }

    /// The widest this CPU runs: what [`Forest::predict`] uses.
    pub fn detect() -> Isa {
        Isa::available().last().unwrap_or(Isa::Baseline)
    }

    /// Every kind this CPU runs, narrowest first.
    pub fn available() -> impl Iterator<Item = Isa> {
        Isa::ALL.iter().copied().filter(|isa| isa.runs())
    }
}

/// How the sum of the trees becomes the model's output.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transform {
    Identity,
    Sigmoid(f64),
    SignedSquare,
}

/// A LightGBM model ready to score natively.
#[derive(Debug, Clone)]
pub struct Forest {
    feature_names: Vec<String>,
    transform: Transform,
    /// Every tree, walkable, in the order of the text.
    trees: Vec<TreeAt>,
    /// The kernel of each tree, in the same order.
    kernels: Vec<Kernel>,
    nodes: Vec<Node>,
    /// A leaf's output, by node index (0 for splits).
    values: Vec<f64>,
    bitsets: Vec<u32>,
    mask_nodes: Vec<MaskNode>,
    /// Each tree's leaf values, padded to 64 so that any bit's index is in bounds (the lookup
    /// needs no check; only the cache lines of the real leaves are ever read).
    mask_leaves: Vec<[f64; MASK_LEAVES]>,
    /// The features the masks kernel reads, with their missing type: column `2 × feature`.
    features: Vec<(usize, Missing)>,
    /// The features some split sends missing values left at: column `2 × feature + 1`, the
    /// copy with missing values at −∞.
    missing_left: Vec<usize>,
}

/// One tree as the text holds it.
#[derive(Debug, Default)]
struct TextTree {
    num_leaves: usize,
    num_cat: usize,
    split_feature: Vec<i64>,
    threshold: Vec<f64>,
    decision_type: Vec<i64>,
    left_child: Vec<i64>,
    right_child: Vec<i64>,
    leaf_value: Vec<f64>,
    cat_boundaries: Vec<i64>,
    cat_threshold: Vec<u32>,
}

fn malformed(what: impl Into<String>) -> ForestError {
    ForestError::Malformed(what.into())
}

fn unsupported(what: impl Into<String>) -> ForestError {
    ForestError::Unsupported(what.into())
}

fn numbers<T: std::str::FromStr>(
    fields: &HashMap<&str, &str>,
    key: &str,
    n: usize,
    tree: usize,
) -> Result<Vec<T>, ForestError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let text = fields
        .get(key)
        .ok_or_else(|| malformed(format!("tree {tree} has no {key}")))?;
    let values = text
        .split(' ')
        .map(|v| v.parse::<T>())
        .collect::<Result<Vec<T>, _>>()
        .map_err(|_| {
            malformed(format!(
                "tree {tree}: {key} holds a value that is not a number"
            ))
        })?;
    if values.len() != n {
        return Err(malformed(format!(
            "tree {tree}: {key} has {} values, not {n}",
            values.len()
        )));
    }
    Ok(values)
}

fn count(fields: &HashMap<&str, &str>, key: &str, tree: usize) -> Result<usize, ForestError> {
    fields
        .get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed(format!("tree {tree} has no valid {key}")))
}

impl TextTree {
    fn parse(fields: &HashMap<&str, &str>, tree: usize) -> Result<Self, ForestError> {
        if fields.get("is_linear").is_some_and(|v| *v != "0") {
            return Err(unsupported(format!("linear trees (tree {tree})")));
        }
        let num_leaves = count(fields, "num_leaves", tree)?;
        if num_leaves == 0 {
            return Err(malformed(format!("tree {tree} has no leaves")));
        }
        let num_cat = count(fields, "num_cat", tree)?;
        let splits = num_leaves - 1;
        let cat_boundaries: Vec<i64> = if num_cat > 0 {
            numbers(fields, "cat_boundaries", num_cat + 1, tree)?
        } else {
            Vec::new()
        };
        let words = cat_boundaries.last().copied().unwrap_or(0);
        let words = usize::try_from(words)
            .map_err(|_| malformed(format!("tree {tree}: negative cat_boundaries")))?;
        Ok(TextTree {
            num_leaves,
            num_cat,
            leaf_value: numbers(fields, "leaf_value", num_leaves, tree)?,
            split_feature: numbers(fields, "split_feature", splits, tree)?,
            threshold: numbers(fields, "threshold", splits, tree)?,
            decision_type: match fields.get("decision_type") {
                Some(_) => numbers(fields, "decision_type", splits, tree)?,
                None => vec![0; splits],
            },
            left_child: numbers(fields, "left_child", splits, tree)?,
            right_child: numbers(fields, "right_child", splits, tree)?,
            cat_threshold: if num_cat > 0 {
                numbers(fields, "cat_threshold", words, tree)?
            } else {
                Vec::new()
            },
            cat_boundaries,
        })
    }
}

/// A tree the masks kernel can evaluate: its splits with their features' missing type, and
/// its leaf values left to right.
#[derive(Debug)]
struct MaskTree {
    nodes: Vec<(MaskNode, Missing)>,
    leaves: Vec<f64>,
}

impl MaskTree {
    /// The tree for the masks kernel, if it qualifies (see [`Forest::choose_kernels`]); the
    /// text is known to be a tree (the walk's layout checked it).
    fn of(t: &TextTree) -> Option<MaskTree> {
        // LightGBM reads the categorical bit only in trees that declare categorical splits.
        let categorical = t.num_cat > 0 && t.decision_type.iter().any(|d| d & 1 != 0);
        if t.num_leaves > MASK_LEAVES || categorical || t.threshold.iter().any(|v| v.is_nan()) {
            return None;
        }
        let mut tree = MaskTree {
            nodes: Vec::with_capacity(t.num_leaves - 1),
            leaves: Vec::with_capacity(t.num_leaves),
        };
        if t.num_leaves == 1 {
            tree.leaves.push(t.leaf_value[0]);
            return Some(tree);
        }
        tree.visit(t, 0)?;
        (tree.leaves.len() == t.num_leaves).then_some(tree)
    }

    /// Numbers the leaves under `child` left to right; a split's mask clears its left
    /// subtree's leaves.
    fn visit(&mut self, t: &TextTree, child: i64) -> Option<()> {
        if child < 0 {
            self.leaves.push(*t.leaf_value.get(!child as usize)?);
            return (self.leaves.len() <= MASK_LEAVES).then_some(());
        }
        let s = child as usize;
        let first = self.leaves.len();
        self.visit(t, *t.left_child.get(s)?)?;
        let in_left: u64 = (first..self.leaves.len()).map(|leaf| 1u64 << leaf).sum();
        let decision = *t.decision_type.get(s)?;
        let (missing, left) = match (decision >> 2) & 3 {
            0 => (Missing::None, false),
            1 => (Missing::Zero, decision & 2 != 0),
            _ => (Missing::Nan, decision & 2 != 0),
        };
        self.nodes.push((
            MaskNode {
                threshold: *t.threshold.get(s)?,
                column: 2 * u32::try_from(*t.split_feature.get(s)?).ok()? + u32::from(left),
                mask: !in_left,
            },
            missing,
        ));
        self.visit(t, *t.right_child.get(s)?)
    }
}

/// A child reference of the text: a split (≥ 0) or a leaf (`!leaf`).
#[derive(Debug, Clone, Copy)]
enum Child {
    Split(usize),
    Leaf(usize),
}

impl Forest {
    /// Loads a model from LightGBM's text format (what `save_string` writes and the model
    /// store keeps).
    pub fn parse(text: &str) -> Result<Self, ForestError> {
        let mut lines = text.lines().peekable();
        let mut header: HashMap<&str, &str> = HashMap::new();
        while let Some(line) = lines.next_if(|l| !l.starts_with("Tree=")) {
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            header.insert(key, value);
        }
        match header.get("version") {
            Some(&"v4") => {}
            Some(v) => return Err(unsupported(format!("model version {v} (only v4)"))),
            None => return Err(malformed("no version line")),
        }
        for (key, what) in [
            ("num_class", "several classes"),
            ("num_tree_per_iteration", "several trees per iteration"),
        ] {
            match header.get(key) {
                Some(&"1") => {}
                Some(_) => return Err(unsupported(what)),
                None => return Err(malformed(format!("no {key} line"))),
            }
        }
        if header.contains_key("average_output") {
            return Err(unsupported("averaged outputs (random forest boosting)"));
        }
        let max_feature: usize = header
            .get("max_feature_idx")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| malformed("no valid max_feature_idx line"))?;
        let feature_names: Vec<String> = header
            .get("feature_names")
            .ok_or_else(|| malformed("no feature_names line"))?
            .split(' ')
            .map(str::to_string)
            .collect();
        if feature_names.len() != max_feature + 1 {
            return Err(malformed("feature_names does not match max_feature_idx"));
        }
        if max_feature >= FEATURE_MASK as usize {
            return Err(unsupported(format!("{} features", max_feature + 1)));
        }
        let transform = match header.get("objective") {
            None => Transform::Identity,
            Some(objective) => transform(objective)?,
        };
        let mut forest = Forest {
            feature_names,
            transform,
            trees: Vec::new(),
            kernels: Vec::new(),
            nodes: Vec::new(),
            values: Vec::new(),
            bitsets: Vec::new(),
            mask_nodes: Vec::new(),
            mask_leaves: Vec::new(),
            features: Vec::new(),
            missing_left: Vec::new(),
        };
        let mut texts = Vec::new();
        while let Some(line) = lines.next() {
            if line.is_empty() {
                continue;
            }
            if !line.starts_with("Tree=") {
                break;
            }
            let mut fields = HashMap::new();
            for line in lines.by_ref() {
                let Some((key, value)) = line.split_once('=') else {
                    break;
                };
                fields.insert(key, value);
            }
            let index = forest.trees.len();
            let tree = TextTree::parse(&fields, index)?;
            forest.add(&tree, index, max_feature)?;
            texts.push(tree);
        }
        if forest.trees.is_empty() {
            return Err(malformed("no trees"));
        }
        forest.choose_kernels(&texts);
        Ok(forest)
    }

    /// Gives the masks kernel every tree it evaluates exactly (at most 64 leaves, numerical
    /// splits with thresholds that are numbers, each feature's splits of one missing type
    /// across those trees), and the walk to the others.
    fn choose_kernels(&mut self, texts: &[TextTree]) {
        let candidates: Vec<Option<MaskTree>> = texts.iter().map(MaskTree::of).collect();
        let mut kind: HashMap<u32, Option<Missing>> = HashMap::new();
        for tree in candidates.iter().flatten() {
            for (node, missing) in &tree.nodes {
                kind.entry(node.column / 2)
                    .and_modify(|k| {
                        if *k != Some(*missing) {
                            *k = None;
                        }
                    })
                    .or_insert(Some(*missing));
            }
        }
        for (candidate, walk) in candidates.into_iter().zip(&self.trees) {
            let agreed =
                |t: &MaskTree| t.nodes.iter().all(|(n, _)| kind[&(n.column / 2)].is_some());
            self.kernels.push(match candidate.filter(agreed) {
                Some(tree) => {
                    let n = self.mask_nodes.len();
                    self.mask_nodes.extend(tree.nodes.iter().map(|(n, _)| *n));
                    let mut leaves = [0.0; MASK_LEAVES];
                    leaves[..tree.leaves.len()].copy_from_slice(&tree.leaves);
                    self.mask_leaves.push(leaves);
                    for (node, missing) in &tree.nodes {
                        let feature = (node.column / 2) as usize;
                        if !self.features.iter().any(|(f, _)| *f == feature) {
                            self.features.push((feature, *missing));
                        }
                        if node.column % 2 == 1 && !self.missing_left.contains(&feature) {
                            self.missing_left.push(feature);
                        }
                    }
                    Kernel::Masks {
                        nodes: n..self.mask_nodes.len(),
                        leaves: self.mask_leaves.len() - 1,
                    }
                }
                None => Kernel::Walk(*walk),
            });
        }
        self.features.sort_unstable_by_key(|(f, _)| *f);
        self.missing_left.sort_unstable();
    }

    /// Lays out one tree: nodes in walk order, each split's children side by side.
    fn add(&mut self, t: &TextTree, index: usize, max_feature: usize) -> Result<(), ForestError> {
        let root = self.nodes.len() as u32;
        let categorical = t.num_cat > 0;
        if t.num_leaves == 1 {
            self.push(Node::leaf(root), t.leaf_value[0]);
            self.trees.push(TreeAt {
                root,
                depth: 0,
                categorical: false,
            });
            return Ok(());
        }
        let child = |c: i64| -> Result<Child, ForestError> {
            let bad = || malformed(format!("tree {index}: child {c} out of range"));
            if c >= 0 {
                let c = c as usize;
                (c < t.num_leaves - 1)
                    .then_some(Child::Split(c))
                    .ok_or_else(bad)
            } else {
                let leaf = !c as usize;
                (leaf < t.num_leaves)
                    .then_some(Child::Leaf(leaf))
                    .ok_or_else(bad)
            }
        };
        // Breadth first from the root: a slot is reserved for each node's pair of children.
        let mut depth = 0u32;
        let mut visits = 0usize;
        let mut queue = std::collections::VecDeque::from([(Child::Split(0), root, 0u32)]);
        self.push(Node::leaf(root), 0.0);
        while let Some((c, at, d)) = queue.pop_front() {
            visits += 1;
            if visits > 2 * t.num_leaves {
                return Err(malformed(format!("tree {index} is not a tree")));
            }
            depth = depth.max(d);
            match c {
                Child::Leaf(leaf) => {
                    self.nodes[at as usize] = Node::leaf(at);
                    self.values[at as usize] = t.leaf_value[leaf];
                }
                Child::Split(s) => {
                    let left = self.nodes.len() as u32;
                    self.push(Node::leaf(left), 0.0);
                    self.push(Node::leaf(left + 1), 0.0);
                    queue.push_back((child(t.left_child[s])?, left, d + 1));
                    queue.push_back((child(t.right_child[s])?, left + 1, d + 1));
                    self.nodes[at as usize] = self.split(t, s, index, max_feature, left)?;
                }
            }
        }
        self.trees.push(TreeAt {
            root,
            depth,
            categorical,
        });
        Ok(())
    }

    fn push(&mut self, node: Node, value: f64) {
        self.nodes.push(node);
        self.values.push(value);
    }

    fn split(
        &mut self,
        t: &TextTree,
        s: usize,
        tree: usize,
        max_feature: usize,
        left: u32,
    ) -> Result<Node, ForestError> {
        let feature = usize::try_from(t.split_feature[s])
            .ok()
            .filter(|&f| f <= max_feature)
            .ok_or_else(|| malformed(format!("tree {tree}: split feature out of range")))?
            as u32;
        let decision = t.decision_type[s];
        // LightGBM reads the categorical bit only in trees that declare categorical splits.
        if t.num_cat > 0 && decision & 1 != 0 {
            let cat = t.threshold[s] as i64;
            let (start, end) = usize::try_from(cat)
                .ok()
                .and_then(|c| Some((*t.cat_boundaries.get(c)?, *t.cat_boundaries.get(c + 1)?)))
                .filter(|&(a, b)| 0 <= a && a <= b && b as usize <= t.cat_threshold.len())
                .ok_or_else(|| malformed(format!("tree {tree}: categorical split out of range")))?;
            let offset = self.bitsets.len() as u64;
            self.bitsets
                .extend_from_slice(&t.cat_threshold[start as usize..end as usize]);
            return Ok(Node {
                threshold: f64::from_bits((offset << 32) | (end - start) as u64),
                feature: feature | CATEGORICAL,
                left,
            });
        }
        let threshold = t.threshold[s];
        let default_left = decision & 2 != 0;
        let flags = match (decision >> 2) & 3 {
            // None: NaN is read as 0, so "missing" goes where 0 goes.
            0 => {
                if 0.0 <= threshold {
                    DEFAULT_LEFT
                } else {
                    0
                }
            }
            1 => MISSING_ZERO | if default_left { DEFAULT_LEFT } else { 0 },
            _ => {
                if default_left {
                    DEFAULT_LEFT
                } else {
                    0
                }
            }
        };
        Ok(Node {
            threshold,
            feature: feature | flags,
            left,
        })
    }

    /// The model's feature names, in column order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    pub fn num_trees(&self) -> usize {
        self.trees.len()
    }

    /// Trees the masks kernel evaluates (the others are walked).
    pub fn masked_trees(&self) -> usize {
        self.kernels
            .iter()
            .filter(|k| matches!(k, Kernel::Masks { .. }))
            .count()
    }

    /// Nodes each row steps through, over all trees, if every tree were walked.
    pub fn steps_per_row(&self) -> usize {
        self.trees.iter().map(|t| t.depth as usize).sum()
    }

    /// Scores a row-major matrix of `columns` columns (the model's features), with `threads`
    /// threads: one output per row, as LightGBM's predict gives it.
    pub fn predict(
        &self,
        x: &[f64],
        columns: usize,
        threads: usize,
    ) -> Result<Vec<f64>, ForestError> {
        self.predict_on(Isa::detect(), x, columns, threads)
    }

    /// [`Forest::predict`] with the instructions of `isa` (one this CPU [`Isa::runs`]; any
    /// other scores as [`Isa::Baseline`]), to measure what the wider ones give.
    pub fn predict_on(
        &self,
        isa: Isa,
        x: &[f64],
        columns: usize,
        threads: usize,
    ) -> Result<Vec<f64>, ForestError> {
        let isa = if isa.runs() { isa } else { Isa::Baseline };
        let want = self.feature_names.len();
        if columns != want || !x.len().is_multiple_of(columns) {
            return Err(ForestError::Columns { got: columns, want });
        }
        let rows = x.len().checked_div(columns).unwrap_or(0);
        let mut out = vec![0.0; rows];
        let threads = threads.clamp(1, rows.div_ceil(BLOCK_ROWS).max(1));
        let per_thread = rows.div_ceil(threads).div_ceil(BLOCK_ROWS) * BLOCK_ROWS;
        if threads == 1 {
            self.score_range(isa, x, columns, &mut out);
        } else {
            std::thread::scope(|scope| {
                for (i, part) in out.chunks_mut(per_thread.max(1)).enumerate() {
                    let from = i * per_thread * columns;
                    let rows = &x[from..from + part.len() * columns];
                    scope.spawn(move || self.score_range(isa, rows, columns, part));
                }
            });
        }
        Ok(out)
    }

    /// Scores consecutive rows into `out` with the instructions of `isa`.
    #[allow(unsafe_code)]
    fn score_range(&self, isa: Isa, x: &[f64], columns: usize, out: &mut [f64]) {
        match isa {
            Isa::Baseline => self.score_blocks(x, columns, out),
            // SAFETY: `predict_on` passes these only when the CPU has their features.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { self.score_blocks_avx2(x, columns, out) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { self.score_blocks_avx512(x, columns, out) },
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1,bmi2,lzcnt,popcnt")]
    fn score_blocks_avx2(&self, x: &[f64], columns: usize, out: &mut [f64]) {
        self.score_blocks(x, columns, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,bmi1,bmi2,lzcnt,popcnt")]
    fn score_blocks_avx512(&self, x: &[f64], columns: usize, out: &mut [f64]) {
        self.score_blocks(x, columns, out)
    }

    /// Scores consecutive rows into `out`, a block at a time. Inlined into each of
    /// [`Isa`]'s variants, so that it is compiled for their instructions.
    #[inline(always)]
    fn score_blocks(&self, x: &[f64], columns: usize, out: &mut [f64]) {
        let walks = self.kernels.iter().any(|k| matches!(k, Kernel::Walk(_)));
        // The block's rows as the walk reads them (LightGBM's zeroing of tiny values applied),
        // and the columns the masks kernel reads (missing values folded).
        let mut rows_block = vec![0.0; if walks { BLOCK_ROWS * columns } else { 0 }];
        let mut columns_block = vec![0.0; 2 * BLOCK_ROWS * columns];
        let (mut sets, mut more) = ([0u64; BLOCK_ROWS], [0u64; BLOCK_ROWS]);
        for (rows, out) in x
            .chunks(BLOCK_ROWS * columns)
            .zip(out.chunks_mut(BLOCK_ROWS))
        {
            let n = out.len();
            if walks {
                for (b, &v) in rows_block.iter_mut().zip(rows) {
                    *b = zeroed(v);
                }
            }
            // Row by row, each feature's value into its column (the rows are read in order),
            // then the copies with missing values at −∞ (contiguous).
            for (r, row) in rows.chunks_exact(columns).enumerate() {
                for &(f, missing) in &self.features {
                    columns_block[2 * f * BLOCK_ROWS + r] = fold(zeroed(row[f]), missing);
                }
            }
            for &f in &self.missing_left {
                let (right, left) = columns_block.split_at_mut((2 * f + 1) * BLOCK_ROWS);
                let right = &right[2 * f * BLOCK_ROWS..][..n];
                for (l, &v) in left[..n].iter_mut().zip(right) {
                    *l = if v.is_nan() { f64::NEG_INFINITY } else { v };
                }
            }
            out.fill(0.0);
            let mut kernels = self.kernels.iter().peekable();
            while let Some(kernel) = kernels.next() {
                match kernel {
                    Kernel::Masks { nodes, leaves } => {
                        let leaves = &self.mask_leaves[*leaves];
                        leaf_sets(
                            &self.mask_nodes[nodes.clone()],
                            &columns_block,
                            &mut sets[..n],
                        );
                        // Two trees in a row: one pass adds both leaves, in order.
                        if let Some(Kernel::Masks {
                            nodes: next,
                            leaves: next_leaves,
                        }) = kernels.peek()
                        {
                            let next_leaves = &self.mask_leaves[*next_leaves];
                            leaf_sets(
                                &self.mask_nodes[next.clone()],
                                &columns_block,
                                &mut more[..n],
                            );
                            kernels.next();
                            for ((sum, &a), &b) in out.iter_mut().zip(&sets[..n]).zip(&more[..n]) {
                                *sum = *sum + leaf(leaves, a) + leaf(next_leaves, b);
                            }
                        } else {
                            for (sum, &a) in out.iter_mut().zip(&sets[..n]) {
                                *sum += leaf(leaves, a);
                            }
                        }
                    }
                    Kernel::Walk(tree) if tree.categorical => {
                        self.walk::<true>(tree, &rows_block[..n * columns], columns, out)
                    }
                    Kernel::Walk(tree) => {
                        self.walk::<false>(tree, &rows_block[..n * columns], columns, out)
                    }
                }
            }
            for o in out.iter_mut() {
                *o = self.transform.apply(*o);
            }
        }
    }

    /// Adds one tree's output to each row's sum, [`LANES`] rows at a time.
    #[inline(always)]
    fn walk<const CAT: bool>(
        &self,
        tree: &TreeAt,
        block: &[f64],
        columns: usize,
        sums: &mut [f64],
    ) {
        let nodes = &self.nodes;
        let mut lanes = block.chunks_exact(LANES * columns);
        let mut sums_by_lane = sums.chunks_exact_mut(LANES);
        for (rows, sums) in (&mut lanes).zip(&mut sums_by_lane) {
            let mut at = [tree.root; LANES];
            for _ in 0..tree.depth {
                for (lane, at) in at.iter_mut().enumerate() {
                    let node = nodes[*at as usize];
                    let v = rows[lane * columns + (node.feature & FEATURE_MASK) as usize];
                    *at = node.left + u32::from(!self.goes_left::<CAT>(&node, v));
                }
            }
            for (s, at) in sums.iter_mut().zip(at) {
                *s += self.values[at as usize];
            }
        }
        let rows = lanes.remainder();
        for (r, s) in sums_by_lane.into_remainder().iter_mut().enumerate() {
            let mut at = tree.root;
            for _ in 0..tree.depth {
                let node = nodes[at as usize];
                let v = rows[r * columns + (node.feature & FEATURE_MASK) as usize];
                at = node.left + u32::from(!self.goes_left::<CAT>(&node, v));
            }
            *s += self.values[at as usize];
        }
    }

    #[inline(always)]
    fn goes_left<const CAT: bool>(&self, node: &Node, v: f64) -> bool {
        if CAT && node.feature & CATEGORICAL != 0 {
            return self.in_bitset(node.threshold.to_bits(), v);
        }
        let nan = v.is_nan();
        let missing = nan | ((node.feature & MISSING_ZERO != 0) & (v == 0.0));
        let default_left = node.feature & DEFAULT_LEFT != 0;
        (missing & default_left) | (!missing & (v <= node.threshold))
    }

    /// LightGBM's categorical decision: NaN and negatives go right; the rest by their integer
    /// part's bit. (`as i32` saturates where C++'s cast is undefined; both go right there.)
    fn in_bitset(&self, at: u64, v: f64) -> bool {
        if v.is_nan() {
            return false;
        }
        let category = v as i32;
        if category < 0 {
            return false;
        }
        let (offset, words) = ((at >> 32) as usize, (at & 0xffff_ffff) as usize);
        let word = (category / 32) as usize;
        word < words && (self.bitsets[offset + word] >> (category % 32)) & 1 == 1
    }
}

/// Each row's leaf set in one tree: its splits tested down their columns four at a time, the
/// set narrowed by the masks of the splits the row goes right at; the row's leaf is the lowest
/// bit left.
#[inline(always)]
fn leaf_sets(nodes: &[MaskNode], columns: &[f64], sets: &mut [u64]) {
    let mut fours = nodes.chunks_exact(4);
    let mut first = true;
    for four in &mut fours {
        if first {
            narrow::<4, true>(four, columns, sets);
        } else {
            narrow::<4, false>(four, columns, sets);
        }
        first = false;
    }
    match (fours.remainder(), first) {
        ([], true) => sets.fill(u64::MAX),
        ([], false) => {}
        ([a], true) => narrow::<1, true>(&[*a], columns, sets),
        ([a], false) => narrow::<1, false>(&[*a], columns, sets),
        ([a, b], true) => narrow::<2, true>(&[*a, *b], columns, sets),
        ([a, b], false) => narrow::<2, false>(&[*a, *b], columns, sets),
        ([a, b, c], true) => narrow::<3, true>(&[*a, *b, *c], columns, sets),
        ([a, b, c], false) => narrow::<3, false>(&[*a, *b, *c], columns, sets),
        _ => unreachable!("chunks of four leave at most three"),
    }
}

/// ANDs each row's leaf set (all leaves, when `FIRST`) with the mask of each of `K` splits that
/// the row goes right at, in one pass down the block: `left` is all ones or zero, so the AND
/// keeps the set or applies the mask, with no branch.
#[inline(always)]
fn narrow<const K: usize, const FIRST: bool>(
    nodes: &[MaskNode],
    columns: &[f64],
    sets: &mut [u64],
) {
    let n = sets.len();
    let nodes: [MaskNode; K] = std::array::from_fn(|k| nodes[k]);
    let columns: [&[f64]; K] =
        std::array::from_fn(|k| &columns[nodes[k].column as usize * BLOCK_ROWS..][..n]);
    for (r, set) in sets.iter_mut().enumerate() {
        let mut s = if FIRST { u64::MAX } else { *set };
        for k in 0..K {
            let left = u64::from(columns[k][r] <= nodes[k].threshold).wrapping_neg();
            s &= nodes[k].mask | left;
        }
        *set = s;
    }
}

/// The leaf of a leaf set: its lowest bit (never past the 64 padded leaves).
#[inline(always)]
fn leaf(leaves: &[f64; MASK_LEAVES], set: u64) -> f64 {
    leaves[set.trailing_zeros() as usize % MASK_LEAVES]
}

/// LightGBM's C API drops values with |v| ≤ 1e-35 from a row: they read as 0.
#[inline(always)]
fn zeroed(v: f64) -> f64 {
    if v.abs() <= ZERO_THRESHOLD {
        0.0
    } else {
        v
    }
}

/// A value as the masks kernel's column holds it: missing values as NaN, all others as they are.
#[inline(always)]
fn fold(v: f64, missing: Missing) -> f64 {
    match missing {
        Missing::None if v.is_nan() => 0.0,
        Missing::Zero if v == 0.0 => f64::NAN,
        _ => v,
    }
}

impl Transform {
    #[inline]
    fn apply(self, s: f64) -> f64 {
        match self {
            Transform::Identity => s,
            // As LightGBM writes it: 1.0f / (1.0f + std::exp(-sigmoid_ * input)).
            Transform::Sigmoid(sigmoid) => 1.0 / (1.0 + (-sigmoid * s).exp()),
            // Common::Sign is an int: 0 at 0 and at NaN, where f64::signum is ±1 and NaN.
            Transform::SignedSquare => f64::from(i32::from(s > 0.0) - i32::from(s < 0.0)) * s * s,
        }
    }
}

/// The transform of an `objective=` line.
fn transform(objective: &str) -> Result<Transform, ForestError> {
    let mut words = objective.split(' ');
    let name = words.next().unwrap_or_default();
    let rest: Vec<&str> = words.filter(|w| !w.is_empty()).collect();
    match (name, rest.as_slice()) {
        ("regression", []) | ("custom", []) => Ok(Transform::Identity),
        ("regression", ["sqrt"]) => Ok(Transform::SignedSquare),
        ("binary", [sigmoid]) => {
            let value = sigmoid
                .strip_prefix("sigmoid:")
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| unsupported(format!("the binary objective's {sigmoid}")))?;
            Ok(Transform::Sigmoid(f64::from(value)))
        }
        _ => Err(unsupported(format!("the objective {objective:?}"))),
    }
}

#[cfg(test)]
mod tests;
