"""Paired comparison over seeds: our `evaluate --learner auto` against the Python libraries' learners,
each fit on exactly the rows our split trained on and scored on the same test rows.

    python paired.py --csv FILE --runs DIR --treatment COL --treated V --control V --outcome COL
                     [--drop a,b] [--truth COL]

DIR holds, per seed S, `S.json` (our `evaluate --json` output) and `S.split.csv` (its
`--save-split`). scikit-uplift's SoloModel (S-learner), TwoModels (T-learner) and
ClassTransformation, each on a default LightGBM classifier (seeded, 2 threads), and, when
causalml installed, its X-learner (LightGBM classifier and regressor) and DR-learner (LightGBM
regressor), with the treated share as the propensity, are fit on the
split's train and validation rows (ours cross-validates on the same rows, then refits on all
of them) and scored by the normalized Qini AUC of scikit-uplift on
the test rows, the figure `evaluate` reports. Prints a line per seed, the mean ± standard
deviation of each learner, and two paired differences with their 95% t intervals (a win is an
interval above 0):
- against the best of theirs by mean over the seeds: one learner, as a user would pick it;
- against the best of theirs on each seed: a stricter bar, since it picks with the test labels.
With --truth (a column of known individual effects, generated data), the oracle's Qini too.
"""
import argparse
import glob
import json
import os
import statistics
import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import stats
from sklift.metrics import qini_auc_score
from sklift.models import ClassTransformation, SoloModel, TwoModels

try:  # causalml's meta-learners, when they installed (scripts/sklift/setup.sh)
    from causalml.inference.meta import BaseDRLearner, BaseXClassifier
except ImportError:
    BaseDRLearner = BaseXClassifier = None

ap = argparse.ArgumentParser()
for flag in ["--csv", "--runs", "--treatment", "--treated", "--control", "--outcome"]:
    ap.add_argument(flag, required=True)
ap.add_argument("--drop", default="")
ap.add_argument("--truth", default="")
a = ap.parse_args()
# scikit-uplift 0.5.1 calls a scikit-learn helper that warns of its removal on every metric.
warnings.filterwarnings("ignore", category=FutureWarning)

data = pd.read_csv(a.csv)
drop = [c for c in a.drop.split(",") if c]
for c in data.columns:
    if data[c].dtype == object and c not in (a.treatment, a.outcome):
        data[c] = data[c].astype("category")


def theirs(split, seed):
    rows = data.iloc[split["row"].to_numpy()].reset_index(drop=True)
    part = split["part"].to_numpy()
    t = (rows[a.treatment].astype(str) == a.treated).astype(int).to_numpy()
    y = rows[a.outcome].astype(int).to_numpy()
    X = rows.drop(columns=[a.treatment, a.outcome] + drop)
    fit, test = part != "test", part == "test"
    out = {}
    if a.truth:
        out["oracle"] = float(qini_auc_score(y[test], rows[a.truth].to_numpy()[test], t[test]))
    clf = lambda: lgb.LGBMClassifier(random_state=seed, n_jobs=2, verbose=-1)
    models = {
        "s": SoloModel(estimator=clf()),
        "t": TwoModels(estimator_trmnt=clf(), estimator_ctrl=clf(), method="vanilla"),
        "ct": ClassTransformation(estimator=clf()),
    }
    for name, model in models.items():
        model.fit(X[fit], y[fit], t[fit])
        out[name] = float(qini_auc_score(y[test], model.predict(X[test]), t[test]))
    if BaseXClassifier is not None:
        # The arms' share as the propensity (a randomised test); categories as their codes.
        Xn = X.apply(lambda c: c.cat.codes if c.dtype.name == "category" else c).to_numpy(float)
        p = np.full(len(t), t[fit].mean())
        reg = lambda: lgb.LGBMRegressor(random_state=seed, n_jobs=2, verbose=-1)
        cml = {
            "cml_x": BaseXClassifier(outcome_learner=clf(), effect_learner=reg(), control_name=0),
            "cml_dr": BaseDRLearner(learner=reg(), control_name=0),
        }
        for name, model in cml.items():
            model.fit(Xn[fit], t[fit], y[fit], p=p[fit])
            u = np.asarray(model.predict(Xn[test], p=p[test])).reshape(-1)
            out[name] = float(qini_auc_score(y[test], u, t[test]))
    return out


seeds = sorted(int(os.path.basename(p).split(".")[0]) for p in glob.glob(f"{a.runs}/*.json"))
theirs_keys = ["s", "t", "ct"] + (["cml_x", "cml_dr"] if BaseXClassifier is not None else [])
rows = []
head = f"{'seed':>5} {'ours':>12} {'ours auto':>10} {'sklift s':>9} {'sklift t':>9} {'sklift ct':>10}"
head += f" {'cml x':>7} {'cml dr':>7}" if BaseXClassifier is not None else ""
print(head + (f" {'oracle':>7}" if a.truth else ""))
for seed in seeds:
    ours = json.load(open(f"{a.runs}/{seed}.json"))
    sk = theirs(pd.read_csv(f"{a.runs}/{seed}.split.csv"), seed)
    rows.append({"ours": ours["qini_auc"], **sk})
    chosen = f"{ours['learner']}/{ours['setting']}"
    line = f"{seed:>5} {chosen:>12} {ours['qini_auc']:10.4f} {sk['s']:9.4f} {sk['t']:9.4f} {sk['ct']:10.4f}"
    if BaseXClassifier is not None:
        line += f" {sk['cml_x']:7.4f} {sk['cml_dr']:7.4f}"
    print(line + (f" {sk['oracle']:7.4f}" if a.truth else ""))

n = len(rows)
mean = lambda v: statistics.mean(v)
sd = lambda v: statistics.stdev(v) if n > 1 else 0.0
print(f"\nnormalized Qini AUC on the test rows, {n} seeds (mean ± sd):")
names = [("ours", "ours (auto)"), ("s", "sklift SoloModel"), ("t", "sklift TwoModels"),
         ("ct", "sklift ClassTransformation")]
names += [("cml_x", "causalml X-learner"), ("cml_dr", "causalml DR-learner")] if BaseXClassifier is not None else []
names += [("oracle", "oracle (true effects)")] if a.truth else []
for key, name in names:
    v = [r[key] for r in rows]
    print(f"  {name:28} {mean(v):.4f} ± {sd(v):.4f}")


def paired(label, d):
    m = mean(d)
    half = stats.t.ppf(0.975, n - 1) * sd(d) / n ** 0.5 if n > 1 else float("nan")
    verdict = "a win" if m - half > 0 else "a loss" if m + half < 0 else "a tie"
    print(f"paired difference, ours - {label}: {m:+.4f} (95% CI {m - half:+.4f} to {m + half:+.4f}): "
          f"{verdict}")


best = max(theirs_keys, key=lambda k: mean([r[k] for r in rows]))
paired(f"{best} (their best by mean)", [r["ours"] - r[best] for r in rows])
paired("the best of theirs on each seed", [r["ours"] - max(r[k] for k in theirs_keys) for r in rows])
