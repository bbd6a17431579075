#!/usr/bin/env bash
# The lift report against the demo's truth. For each seed 1..SEEDS (default 10), `targeting demo`
# on USERS users (default 30000) with its 14 simulated days after the night, then the report's
# 95% interval for each campaign's incremental conversions (report.json) against the true
# incremental conversions of the demo's truth (summary.json).
#   bash scripts/report_coverage.sh [SEEDS] [USERS]
# Prints one line per seed and campaign, then how many intervals cover the truth and the mean
# error of the estimates against its standard error (an unbiased estimate stays within ~2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
bin="$(build_targeting)"
seeds="${1:-10}"; users="${2:-30000}"
work="$(mktemp -d -t targeting-coverage.XXXXXX)"
trap 'rm -rf "$work"' EXIT
for seed in $(seq 1 "$seeds"); do
  "$bin" demo --users "$users" --seed "$seed" --date 2026-11-20 --dir "$work/s$seed" \
    --threads "$(nproc)" --log-format json >/dev/null 2>"$work/s$seed.log" \
    || { tail -n 5 "$work/s$seed.log" >&2; exit 1; }
done
python3 - "$work" "$seeds" <<'PY'
import json, statistics, sys
work, seeds = sys.argv[1], int(sys.argv[2])
rows = []
print(f"{'seed':>4} {'campaign':<26} {'truth':>9} {'estimate':>9} {'low':>9} {'high':>9} covered")
for seed in range(1, seeds + 1):
    summary = json.load(open(f"{work}/s{seed}/summary.json"))
    report = json.load(open(f"{work}/s{seed}/report.json"))
    truth = {c["campaign_id"]: c["true_incremental_conversions"] for c in summary["campaigns"]}
    for c in report["campaigns"]:
        i, t = c["incremental_conversions"], truth[c["campaign_id"]]
        covered = i["low"] <= t <= i["high"]
        se = (i["high"] - i["low"]) / (2 * 1.959964)
        rows.append((covered, (i["estimate"] - t) / se))
        print(f"{seed:>4} {c['campaign_id']:<26} {t:9.1f} {i['estimate']:9.1f} {i['low']:9.1f} {i['high']:9.1f} {covered}")
covered = sum(r[0] for r in rows)
z = [r[1] for r in rows]
mean = statistics.mean(z)
se = statistics.stdev(z) / len(z) ** 0.5 if len(z) > 1 else float("nan")
print(f"\ncovered {covered} of {len(rows)} ({covered / len(rows):.0%}); "
      f"mean error {mean:+.3f} standard errors of the estimate (its own standard error {se:.3f}, "
      f"t = {mean / se:+.2f})")
PY
