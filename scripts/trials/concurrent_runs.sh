#!/usr/bin/env bash
# Trials of two `targeting run`s of one night started together: counts the campaign-days that got
# more than one complete list (a double publish). The suite keeps a short version of this
# (tests/e2e/exactly_once.rs); this is the sweep:
#   bash scripts/trials/concurrent_runs.sh [TRIALS] [DATABASE_URL]
# Default 20 trials on a SQLite source in a scratch folder; with a postgres:// URL (an empty
# database), on PostgreSQL.
DEMO_USERS=5000 source "$(dirname "$0")/setup.sh"
doubles=0
published=0
for t in $(seq 1 "$trials"); do
  night="$(date -u -d "2026-12-01 + $t days" +%Y-%m-%d)"
  args=(run --date "$night" --database-url "$db" --exports "file://$work/exports" --threads 1)
  "$bin" "${args[@]}" >/dev/null 2>"$work/a.log" &
  a=$!
  "$bin" "${args[@]}" >/dev/null 2>"$work/b.log" &
  b=$!
  wait "$a" || true
  wait "$b" || true
  for campaign in "$work"/exports/*/; do
    lists="$(find "$campaign/dt=$night" -name _SUCCESS 2>/dev/null | wc -l)"
    published=$((published + lists))
    if [ "$lists" -gt 1 ]; then
      doubles=$((doubles + 1))
      echo "trial $t: $(basename "$campaign") has $lists complete lists for $night"
    fi
  done
done
echo "$trials trials: $published complete lists, $doubles double publishes"
# Every trial must have published something, or the trials prove nothing.
[ "$published" -ge "$trials" ] || { echo "too few lists: the runs failed (see $work)"; exit 1; }
[ "$doubles" -eq 0 ]
