#!/usr/bin/env bash
# The demo's weekly deal with per-user discount levels against each of its levels given to
# everyone it takes, at the same budget and maximum audience, valued by the demo's truth, over
# several data seeds: true expected incremental profit, the gain over the best single level,
# the share of the eligible users' purchases without a message left undiscounted, and the same
# gain for the truth's own choices among the same eligible users (what per-user levels can earn
# in this world at all, for a model that knew every user's response); then the same gains under
# tighter budgets, binding at 75, 50 and 25% of what the per-user levels spend under the
# campaign's own. Fixed date; one demo run per seed.
#   bash scripts/levels.sh [USERS] [SEED ...]      (default: 100000 7 11 23 37 41)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
demo_over_seeds levels "7 11 23 37 41" "$@"
python3 - "$USERS" "$WORK" "${SEEDS[@]}" <<'PY'
import json, statistics, sys
users, work, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
print(f"{users} users; weekly-deal, true expected incremental profit (currency) of the messaged users")
print(f"{'seed':>5} {'per user':>9} {'10%':>9} {'20%':>9} {'30%':>9} {'best':>5} {'gain':>7} "
      f"{'undisc.':>8} {'best:':>6} {'mix (10/20/30%)':>18} {'truth':>9} {'gain':>7}")
gains, undiscounted, oracle_gains = [], [], []
for seed in seeds:
    s = json.load(open(f"{work}/seed-{seed}/summary.json"))
    c = next(c for c in s["campaigns"] if c["campaign_id"] == "weekly-deal")
    t = c["levels_against_truth"]
    single = {v["levels"][0]: v for v in t["single"]}
    best = single[t["best_single_level"]]
    mix = dict((int(p), n) for p, n in t["per_user"]["mix"])
    gains.append(t["gain_over_best_single"])
    undiscounted.append(t["per_user"]["buy_anyway_undiscounted"])
    oracle = t["oracle"]["true_profit"]
    oracle_gains.append(t["oracle_gain_over_best_single"])
    print(f"{seed:>5} {t['per_user']['true_profit']:9.0f} "
          + " ".join(f"{single[l]['true_profit']:9.0f}" for l in (10, 20, 30))
          + f" {t['best_single_level']:>4}% {100 * t['gain_over_best_single']:+6.1f}%"
          + f" {100 * t['per_user']['buy_anyway_undiscounted']:7.0f}% {100 * best['buy_anyway_undiscounted']:5.0f}%"
          + f" {'/'.join(str(mix.get(l, 0)) for l in (10, 20, 30)):>18}"
          + f" {oracle:9.0f} {100 * oracle_gains[-1]:+6.1f}%")
tight = {}
for seed in seeds:
    s = json.load(open(f"{work}/seed-{seed}/summary.json"))
    c = next(c for c in s["campaigns"] if c["campaign_id"] == "weekly-deal")
    t = c["levels_against_truth"]
    for i, b in enumerate(t["tighter"]):
        tight.setdefault(i, []).append((b["budget"], b["gain_over_best_single"],
                                        b["oracle_gain_over_best_single"], b["best_single_level"]))
print("under tighter budgets (share of what the per-user levels spend under the campaign's own):")
for i, share in zip(sorted(tight), ("75%", "50%", "25%")):
    rows = tight[i]
    print(f"  {share}: budgets {'/'.join(f'{b:.0f}' for b, _, _, _ in rows)}; "
          f"gain {' '.join(f'{100 * g:+.1f}%' for _, g, _, _ in rows)} "
          f"(mean {100 * statistics.mean(g for _, g, _, _ in rows):+.1f}%, min {100 * min(g for _, g, _, _ in rows):+.1f}%); "
          f"best single level {'/'.join(str(l) for _, _, _, l in rows)}; "
          f"the truth's {100 * statistics.mean(o for _, _, o, _ in rows):+.1f}%")
print(f"mean gain over the best single level {100 * statistics.mean(gains):+.1f}% "
      f"(min {100 * min(gains):+.1f}%); purchases without a message left undiscounted "
      f"{100 * statistics.mean(undiscounted):.0f}% (min {100 * min(undiscounted):.0f}%); "
      f"the truth's per-user levels {100 * statistics.mean(oracle_gains):+.1f}% over its best single level")
PY
