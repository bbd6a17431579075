#!/usr/bin/env bash
# The demo's uplift model against its truth, over several data seeds: the selected learner's
# held-out Qini AUC, the oracle's (the same test exposures ranked by their true uplift), and the
# feature ceiling's (a regression of the true uplift on the same features: the most a model
# that learns from the features can reach). Fixed date; one demo run per seed.
#   bash scripts/oracle.sh [USERS] [SEED ...]      (default: 100000 7 11 23 37)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
demo_over_seeds oracle "7 11 23 37" "$@"
python3 - "$USERS" "$WORK" "${SEEDS[@]}" <<'PY'
import json, sys
users, work, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
print(f"{users} users; Qini AUC on the held-out exposures")
print(f"{'seed':>5} {'learner':>7} {'test':>7} {'model':>7} {'oracle':>7} {'ceiling':>7} "
      f"{'model/oracle':>12} {'ceiling/oracle':>14} {'model/ceiling':>13}")
ratios = []
for seed in seeds:
    m = json.load(open(f"{work}/seed-{seed}/summary.json"))["model"]
    q, o, c = m["qini_auc"], m["oracle_qini_auc"], m["feature_ceiling_qini_auc"]
    ratios.append((q / o, c / o, q / c))
    print(f"{seed:>5} {m['learner']:>7} {m['test_exposures']:>7} {q:7.4f} {o:7.4f} {c:7.4f} "
          f"{q / o:12.3f} {c / o:14.3f} {q / c:13.3f}")
mean = [sum(r[i] for r in ratios) / len(ratios) for i in range(3)]
print(f"{'mean':>5} {'':>7} {'':>7} {'':>7} {'':>7} {'':>7} "
      f"{mean[0]:12.3f} {mean[1]:14.3f} {mean[2]:13.3f}")
PY
