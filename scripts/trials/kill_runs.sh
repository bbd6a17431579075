#!/usr/bin/env bash
# Trials of `targeting run` killed with SIGKILL while it publishes, then run again (as an
# external scheduler retries): counts campaign-days with more than one complete list, and
# succeeded ledger rows whose export is not complete. The suite keeps a short version of this
# (tests/e2e/exactly_once.rs: the window between `_SUCCESS` and the ledger); this is the sweep:
#   bash scripts/trials/kill_runs.sh [TRIALS] [DATABASE_URL]
# Default 20 trials on a SQLite source in a scratch folder; with a postgres:// URL (an empty
# database), on PostgreSQL. TARGETING_BIN tries another build of the binary.
DEMO_USERS=20000 source "$(dirname "$0")/setup.sh"
# A killed run's SQLite lease then runs out in seconds, not the default five minutes.
export TARGETING__SCHEDULER__LEASE_SECS=3
doubles=0
missing=0
adopted=0
for t in $(seq 1 "$trials"); do
  night="$(date -u -d "2026-12-01 + $t days" +%Y-%m-%d)"
  args=(run --date "$night" --database-url "$db" --exports "file://$work/exports" --threads 1)
  "$bin" "${args[@]}" >/dev/null 2>"$work/killed.log" &
  pid=$!
  # Kill it while it publishes: once its first run folder appears, after 0 to 60 ms more (the
  # four campaigns' parts, assignments, `_SUCCESS` and ledger rows take about that long).
  while kill -0 "$pid" 2>/dev/null && ! compgen -G "$work/exports/*/dt=$night" >/dev/null; do
    sleep 0.002
  done
  wait_ms=$(( RANDOM % 60 ))
  sleep "$(printf '0.%03d' "$wait_ms")"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # The retry, as a scheduler would; a killed run's SQLite lease must expire first.
  for _ in 1 2 3; do
    if "$bin" "${args[@]}" >"$work/retry.out" 2>"$work/retry.log"; then
      break
    fi
    sleep 3
  done
  adopted=$((adopted + $(grep -c "adopted the complete export" "$work/retry.out" || true)))
  for campaign in "$work"/exports/*/; do
    lists="$(find "$campaign/dt=$night" -name _SUCCESS 2>/dev/null | wc -l)"
    if [ "$lists" -gt 1 ]; then
      doubles=$((doubles + 1))
      echo "trial $t (killed ${wait_ms} ms into publishing): $(basename "$campaign") has $lists complete lists"
    fi
  done
  for uri in $("$bin" runs list --limit 1000 --state-database-url "$db" \
      | awk -v night="$night" '$3 == night && $4 == "succeeded" {print $NF}'); do
    [ -f "${uri#file://}/_SUCCESS" ] || { missing=$((missing + 1)); echo "trial $t: $uri succeeded without a complete export"; }
  done
done
echo "$trials kill trials: $doubles double publishes, $missing succeeded rows without a complete export ($adopted complete exports of killed runs adopted)"
[ "$doubles" -eq 0 ] && [ "$missing" -eq 0 ]
