"""scikit-uplift's TwoModels and SoloModel with LightGBM on the split `targeting evaluate` used.

    python compare.py --csv FILE --split SPLIT.csv --treatment COL --treated V --control V
                      --outcome COL [--drop a,b] [--seed 42]

Fits on the train and validation rows (scikit-uplift has no early stopping, so the LightGBM
settings mirror ours with a fixed number of rounds) and prints one JSON line per model with the
test-part Qini AUC, AUUC and uplift@30% (by group), the figures `targeting evaluate` reports,
with the same 95% percentile bootstrap interval of the Qini AUC (200 resamples of the test rows,
seeded; numpy's generator, so the resamples are not the same draws as ours).
"""
import argparse
import json

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklift.metrics import qini_auc_score, uplift_at_k, uplift_auc_score
from sklift.models import SoloModel, TwoModels

ap = argparse.ArgumentParser()
for flag in ["--csv", "--split", "--treatment", "--treated", "--control", "--outcome"]:
    ap.add_argument(flag, required=True)
ap.add_argument("--drop", default="")
ap.add_argument("--seed", type=int, default=42)
a = ap.parse_args()

data = pd.read_csv(a.csv)
split = pd.read_csv(a.split)
data = data.iloc[split["row"].to_numpy()].reset_index(drop=True)
part = split["part"].to_numpy()
t = (data[a.treatment].astype(str) == a.treated).astype(int).to_numpy()
y = data[a.outcome].astype(int).to_numpy()
drop = [c for c in a.drop.split(",") if c]
X = data.drop(columns=[a.treatment, a.outcome] + drop)
fit, test = part != "test", part == "test"


def qini_ci95(y, u, t, rounds=200):
    """95% percentile bootstrap interval, as `targeting evaluate` computes it."""
    rng = np.random.default_rng(a.seed)
    values = []
    for _ in range(rounds):
        idx = rng.integers(0, len(y), len(y))
        v = qini_auc_score(y[idx], u[idx], t[idx])
        if np.isfinite(v):
            values.append(v)
    values = np.sort(values)
    at = lambda q: float(values[int(round((len(values) - 1) * q))])
    return [at(0.025), at(0.975)]


def lgbm():
    return lgb.LGBMClassifier(
        n_estimators=100, learning_rate=0.05, num_leaves=15, min_child_samples=100,
        reg_lambda=10.0, colsample_bytree=0.8, subsample=0.8, subsample_freq=1,
        random_state=a.seed, n_jobs=2, verbose=-1,
    )


models = {
    "sklift TwoModels (LightGBM)": TwoModels(estimator_trmnt=lgbm(), estimator_ctrl=lgbm(), method="vanilla"),
    "sklift SoloModel (LightGBM)": SoloModel(estimator=lgbm()),
}
for name, model in models.items():
    model.fit(X[fit], y[fit], t[fit])
    u = model.predict(X[test])
    print(json.dumps({
        "model": name,
        "qini_auc": float(qini_auc_score(y[test], u, t[test])),
        "qini_auc_ci95": qini_ci95(y[test], u, t[test]),
        "uplift_auc": float(uplift_auc_score(y[test], u, t[test])),
        "uplift_at_30": float(uplift_at_k(y[test], u, t[test], strategy="by_group", k=0.3)),
        "n_test": int(test.sum()),
    }))
