#!/usr/bin/env bash
# Our `evaluate --learner auto` against scikit-uplift's SoloModel, TwoModels and
# ClassTransformation (LightGBM), and causalml's X- and DR-learners when causalml installs, on
# identical splits, seed by seed, with the paired differences:
#   bash scripts/sklift/paired.sh [N] [DATASET...]    (seeds 1 to N, default 10)
# DATASET is `lenta` (the default), `criteo` (the two real samples of tests/fixtures/uplift),
# `synthetic` (scripts/sklift/synthetic.py: a generated dataset with a known effect, whose
# oracle Qini is printed too) or `all`. Another CSV: DATASET=csv with CSV=…, and its columns with
# TREATMENT, TREATED, CONTROL, OUTCOME (and DROP: columns that are no features), as
# `targeting evaluate` takes them.
# scikit-uplift goes into its own venv (scripts/sklift/setup.sh): a comparison, not a dependency.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
source scripts/sklift/setup.sh
bin="$(build_targeting)"
seeds="${1:-10}"
shift || true
datasets=("${@:-lenta}")
[ "${datasets[*]}" != all ] || datasets=(lenta criteo synthetic)
work="$(mktemp -d -t targeting-paired.XXXXXX)"
trap 'rm -rf "$work"' EXIT

compare() { # name csv treatment outcome drop truth
  local name="$1" csv="$2" treatment="$3" outcome="$4" drop="$5" truth="$6"
  local runs="$work/$name" cols drops=()
  mkdir -p "$runs"
  cols=(--treatment "$treatment" --treated "${TREATED:-1}" --control "${CONTROL:-0}" --outcome "$outcome")
  [ -z "$drop" ] || drops=(--drop "$drop")
  echo "== $name: $csv, $seeds seeds"
  local start=$SECONDS
  for seed in $(seq 1 "$seeds"); do
    "$bin" evaluate --csv "$csv" "${cols[@]}" ${drops[@]+"${drops[@]}"} --seed "$seed" \
      --learner auto --json --save-split "$runs/$seed.split.csv" > "$runs/$seed.json" 2> "$runs/$seed.log"
  done
  echo "our evaluate: $(( (SECONDS - start) / seeds )) s per seed"
  "$SKLIFT_VENV/bin/python" scripts/sklift/paired.py --csv "$csv" --runs "$runs" "${cols[@]}" \
    ${drops[@]+"${drops[@]}"} ${truth:+--truth "$truth"}
  echo
}

for d in "${datasets[@]}"; do
  case "$d" in
    lenta) compare lenta tests/fixtures/uplift/lenta_sample_50k.csv is_treatment response_att "" "" ;;
    criteo) compare criteo tests/fixtures/uplift/criteo_uplift_sample_1k.csv treatment visit \
      exposure,conversion "" ;;
    synthetic)
      "$SKLIFT_VENV/bin/python" scripts/sklift/synthetic.py "$work/synthetic.csv"
      compare synthetic "$work/synthetic.csv" treatment outcome true_uplift true_uplift ;;
    csv) compare csv "${CSV:?CSV=file}" "${TREATMENT:?}" "${OUTCOME:?}" "${DROP:-}" "" ;;
    *) echo "unknown dataset $d (lenta, criteo, synthetic, csv or all)" >&2; exit 2 ;;
  esac
done
