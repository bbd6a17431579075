#!/usr/bin/env bash
# The gift recipient model against the demo's truth over several data seeds: top-1 accuracy on
# the gifts of held-out senders (the share whose recipient was the friend put first) of the
# model, the most recent friend and the most active friend (sessions in the last 30 days), and
# the model's lead over the better of the two, and which of the three the validation gifts
# chose (with its test accuracy). Fixed date; one demo run per seed.
#   bash scripts/gifts.sh [USERS] [SEED ...]      (default: 100000 7 11 23 37 41)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
demo_over_seeds gifts "7 11 23 37 41" "$@"
python3 - "$USERS" "$WORK" "${SEEDS[@]}" <<'PY'
import json, statistics, sys
users, work, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
print(f"{users} users; top-1 accuracy on held-out senders' gifts")
print(f"{'seed':>5} {'gifts':>6} {'friends':>8} {'model':>7} {'recent':>7} {'active':>7} {'lead':>7}"
      f"  chosen")
leads, model, chosen = [], [], []
for seed in seeds:
    g = json.load(open(f"{work}/seed-{seed}/summary.json"))["gift_recipients"]
    lead = g["model"] - max(g["most_recent_friend"], g["most_active_friend"])
    leads.append(lead)
    model.append(g["model"])
    chosen.append(g["chosen_share"])
    print(f"{seed:>5} {g['gifts']:>6} {g['mean_friends']:>8.2f} {100 * g['model']:>6.1f}% "
          f"{100 * g['most_recent_friend']:>6.1f}% {100 * g['most_active_friend']:>6.1f}% "
          f"{100 * lead:>+6.1f}  {g['chosen']} {100 * g['chosen_share']:.1f}%")
print(f"mean model {100 * statistics.mean(model):.1f}%, lead over the better rule "
      f"{100 * statistics.mean(leads):+.1f} points (min {100 * min(leads):+.1f}, "
      f"max {100 * max(leads):+.1f}); the way chosen on validation gifts "
      f"{100 * statistics.mean(chosen):.1f}%")
PY
