# Sourced by the trial scripts, with their arguments: [TRIALS] [DATABASE_URL]. Sets `trials`,
# `bin` (TARGETING_BIN, or this checkout's build), a scratch folder `work` removed on exit, and
# `db` (the URL, an empty PostgreSQL database, else SQLite in `work`), and generates a demo
# source of DEMO_USERS users there with its models in `work/models`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/setup.sh
trials="${1:-20}"
# TARGETING_BIN: another build of the binary to try (e.g. an older one, for a before/after).
bin="${TARGETING_BIN:-$(build_targeting)}"
work="$(mktemp -d -t targeting-trials.XXXXXX)"
trap 'rm -rf "$work"' EXIT
db="${2:-sqlite://$work/source.db}"
"$bin" demo --users "${DEMO_USERS:-5000}" --seed 7 --date 2026-11-20 --dir "$work" \
  --database-url "$db" --threads 1 >/dev/null 2>"$work/demo.log"
export TARGETING__MODELS__STORE="$work/models"
