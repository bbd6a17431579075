#!/usr/bin/env bash
# Our `evaluate --learner auto` against scikit-uplift's SoloModel, TwoModels and
# ClassTransformation (LightGBM) on identical splits, seed by seed, with the paired difference:
#   bash scripts/sklift/paired.sh [N]         (seeds 1 to N; default 10)
# On the Lenta sample by default; another CSV with CSV=… and its columns with TREATMENT, TREATED,
# CONTROL, OUTCOME (and DROP: columns that are no features), as `targeting evaluate` takes them.
# scikit-uplift goes into its own venv (scripts/sklift/setup.sh): a comparison, not a dependency.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
source scripts/sklift/setup.sh
bin="$(build_targeting)"
seeds="${1:-10}"
csv="${CSV:-tests/fixtures/uplift/lenta_sample_50k.csv}"
cols=(--treatment "${TREATMENT:-is_treatment}" --treated "${TREATED:-1}" --control "${CONTROL:-0}"
      --outcome "${OUTCOME:-response_att}")
drop=()
[ -z "${DROP:-}" ] || drop=(--drop "$DROP")
runs="$(mktemp -d -t targeting-paired.XXXXXX)"
trap 'rm -rf "$runs"' EXIT
for seed in $(seq 1 "$seeds"); do
  "$bin" evaluate --csv "$csv" "${cols[@]}" ${drop[@]+"${drop[@]}"} --seed "$seed" --learner auto \
    --json --save-split "$runs/$seed.split.csv" > "$runs/$seed.json"
done
"$SKLIFT_VENV/bin/python" scripts/sklift/paired.py --csv "$csv" --runs "$runs" "${cols[@]}" \
  ${drop[@]+"${drop[@]}"}
