"""Writes the fixture that pins our uplift metrics to scikit-uplift's.

models/tests/fixtures/sklift_metrics.csv: 2000 rows of (outcome, treatment, score) with many tied
scores; models/tests/fixtures/sklift_expected.json: scikit-uplift 0.5.1's metric values on them.
The Rust test `metrics::tests::reproduces_scikit_uplift` recomputes them.

    bash scripts/sklift/fixture.sh
"""
import json
import pathlib

import numpy as np
from sklift.metrics import qini_auc_score, uplift_at_k, uplift_auc_score

out = pathlib.Path(__file__).resolve().parents[2] / "models" / "tests" / "fixtures"
rng = np.random.default_rng(20261125)
n = 2000
treatment = rng.integers(0, 2, n)
x = rng.normal(size=n)
p = 0.15 + 0.15 * treatment * (x > 0) - 0.05 * treatment * (x < -1)
outcome = (rng.random(n) < p).astype(int)
# One decimal: many ties, so the fixture also checks how ties are grouped and cut.
score = np.round(x + rng.normal(scale=0.3, size=n), 1)

with open(out / "sklift_metrics.csv", "w") as f:
    f.write("outcome,treatment,score\n")
    for y, t, s in zip(outcome, treatment, score):
        f.write(f"{y},{t},{float(s)!r}\n")

expected = {
    "qini_auc_score": qini_auc_score(outcome, score, treatment),
    "uplift_auc_score": uplift_auc_score(outcome, score, treatment),
    "uplift_at_k_by_group_0.3": uplift_at_k(outcome, score, treatment, strategy="by_group", k=0.3),
    "uplift_at_k_overall_0.3": uplift_at_k(outcome, score, treatment, strategy="overall", k=0.3),
    "uplift_at_k_overall_0.1": uplift_at_k(outcome, score, treatment, strategy="overall", k=0.1),
}
expected = {k: float(v) for k, v in expected.items()}
(out / "sklift_expected.json").write_text(json.dumps(expected, indent=2) + "\n")
print(json.dumps(expected, indent=2))
