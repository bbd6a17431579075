#!/usr/bin/env bash
# Our learners next to scikit-uplift's TwoModels and SoloModel on the same split of the Lenta
# sample (or another CSV given with the same flags as `targeting evaluate`):
#   bash scripts/sklift/compare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
source scripts/sklift/setup.sh
bin="$(build_targeting)"
csv="${CSV:-tests/fixtures/uplift/lenta_sample_50k.csv}"
flags=(--csv "$csv" --treatment is_treatment --treated 1 --control 0 --outcome response_att --seed 42)
split="$(mktemp)"
trap 'rm -f "$split"' EXIT
for learner in odds s t ct x dr r auto; do
  "$bin" evaluate "${flags[@]}" --learner "$learner" --json --save-split "$split"
done
"$SKLIFT_VENV/bin/python" scripts/sklift/compare.py --csv "$csv" --split "$split" \
  --treatment is_treatment --treated 1 --control 0 --outcome response_att --seed 42
