"""A generated uplift dataset with a known effect, for the paired comparison (scripts/sklift/paired.sh).

    python synthetic.py OUT.csv [--rows 50000] [--seed 2026]

Seven features: x0..x5 standard normal, c0 binary. The purchase probability without a message is
σ(b) with b = −2.2 + 0.9·x0 + 0.5·x1 − 0.4·x3 + 0.3·c0; a message adds τ = 0.1 + 0.7·x2 − 0.5·max(x4, 0)
to the log-odds, so the effect is carried mostly by features that do not predict the purchase itself
(ranking by the baseline does not find it). 60 % of rows are treated, at random. The file holds
`treatment`, `outcome`, the features and `true_uplift` = σ(b + τ) − σ(b), which is no feature: drop it
and rank by it for the oracle's Qini.
"""
import argparse

import numpy as np
import pandas as pd

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--rows", type=int, default=50_000)
ap.add_argument("--seed", type=int, default=2026)
a = ap.parse_args()
rng = np.random.default_rng(a.seed)
n = a.rows
x = rng.standard_normal((n, 6))
c0 = (rng.random(n) < 0.4).astype(int)
b = -2.2 + 0.9 * x[:, 0] + 0.5 * x[:, 1] - 0.4 * x[:, 3] + 0.3 * c0
tau = 0.1 + 0.7 * x[:, 2] - 0.5 * np.maximum(x[:, 4], 0)
sig = lambda z: 1 / (1 + np.exp(-z))
t = (rng.random(n) < 0.6).astype(int)
y = (rng.random(n) < sig(b + t * tau)).astype(int)
frame = pd.DataFrame({"treatment": t, "outcome": y})
for j in range(6):
    frame[f"x{j}"] = x[:, j].round(6)
frame["c0"] = c0
frame["true_uplift"] = (sig(b + tau) - sig(b)).round(8)
frame.to_csv(a.out, index=False)
