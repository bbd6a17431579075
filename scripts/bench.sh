#!/usr/bin/env bash
# Benchmark: the nightly job on generated data of fixed sizes and seed, timed per stage from the
# job's own JSON span logs, plus wall time and peak memory.
#   bash scripts/bench.sh [USERS ...]        (default: 100000 1000000)
# On the embedded default (SQLite, local files), or on a PostgreSQL source and ledger and an S3
# destination with BENCH_DATABASE_URL=postgres://… and BENCH_EXPORTS=s3://bucket/prefix (S3
# settings and credentials from the usual TARGETING__S3__* and AWS_* variables).
# Prints one line per size: generation, extract, train (all models, s; conversion uplift rows and
# that model's own training time, its four learners, refit and the demo's feature ceiling),
# score (users/s), publish (all campaigns' files, s), record (ledger and assignments, s), total,
# peak RSS. Then the nightly run alone per size: one shard against BENCH_SHARDS, and with
# PEER_DIR the Python peer (see the end of this script). BENCH_REPS repeats (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
bin="$(build_targeting)"
work="$(mktemp -d -t targeting-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
threads="$(nproc)"
targets=()
[ -z "${BENCH_DATABASE_URL:-}" ] || targets+=(--database-url "$BENCH_DATABASE_URL")
[ -z "${BENCH_EXPORTS:-}" ] || targets+=(--exports "$BENCH_EXPORTS")
printf '%-9s %7s %8s %9s %10s %11s %12s %9s %8s %9s %9s %10s\n' users gen_s extract_s train_s train_rows conv_train_s score_users/s publish_s record_s total_s rerun_s peak_MB
for n in "${sizes[@]}"; do
  dir="$work/demo-$n"
  # First run generates the data; the second, on the same data, is the nightly job alone.
  /usr/bin/time -f '%e %M' -o "$work/time1" "$bin" demo --users "$n" --seed 7 --date 2026-11-20 \
    --dir "$dir" --threads "$threads" --log-format json ${targets[@]+"${targets[@]}"} \
    >/dev/null 2>"$work/log1"
  /usr/bin/time -f '%e %M' -o "$work/time2" "$bin" demo --users "$n" --seed 7 --date 2026-11-20 \
    --dir "$dir" --threads "$threads" --log-format json ${targets[@]+"${targets[@]}"} \
    >/dev/null 2>"$work/log2"
  python3 - "$n" "$work" <<'PY'
import json, sys
n, work = int(sys.argv[1]), sys.argv[2]
def spans(path):
    out, first, ready = {}, None, None
    for line in open(path):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        ts = e.get("timestamp")
        if e.get("message") == "generating demo data":
            first = ts
        if e.get("message") == "demo source ready":
            ready = ts
        if e.get("message") == "trained" and "qini_auc" in e and "rows_train" not in out:
            out["rows_train"] = e.get("rows_train")  # the conversion uplift model's rows
        if e.get("message") == "close":
            name = e.get("span", {}).get("name")
            secs = e.get("busy_secs", 0.0)
            if name in ("extract", "spill", "publish", "record"):
                # Async stages wait on the database and the object store: count that too.
                secs += e.get("idle_secs", 0.0)
            if name in ("extract", "spill", "train", "score", "publish", "record"):
                # One train span per model: the stage's time is their sum.
                out[name] = out.get(name, 0.0) + secs
            if name == "train" and e.get("span", {}).get("model") == "conversion_uplift":
                out["train_conversion"] = secs
    return out, first, ready
from datetime import datetime
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00"))
s1, first, ready = spans(f"{work}/log1")
s2, _, _ = spans(f"{work}/log2")
wall1, rss1 = open(f"{work}/time1").read().split()
wall2, rss2 = open(f"{work}/time2").read().split()
gen = (t(ready) - t(first)).total_seconds() if ready and first else float("nan")
# A night in shards reads the source in its spill pass instead of an extract.
extract = s2.get("extract", 0.0) + s2.get("spill", 0.0)
print(f"{n:<9d} {gen:7.1f} {extract:8.1f} {s2['train']:9.1f} {s2.get('rows_train', 0):10d} {s2.get('train_conversion', 0.0):11.1f} "
      f"{n / s2['score']:12.0f} {s2.get('publish', 0.0):9.1f} {s2.get('record', 0.0):8.1f} {float(wall1):9.1f} {float(wall2):9.1f} {max(int(rss1), int(rss2)) / 1024:10.0f}")
PY
done

# The nightly run (`run --all`, default settings, stored models) against the Python peer
# ($PEER_DIR/peer.py, the same job in polars + connectorx + lightgbm), alternately, BENCH_REPS
# times each, on the demo folder $2 restored from one snapshot before every run. Both sides
# select the peer's copies of the example campaigns ($PEER_DIR/campaigns). Prints each run's
# wall and CPU time, peak RSS and stages, then the medians and the peer / Rust ratios. The
# peer's packages go into a venv under ~/.cache on first use, where its own bench.sh puts them.
peer_side() {
  local n="$1" dir="$2" out="$work/peer-$1"
  local venv="${PEER_VENV:-$HOME/.cache/campaign-targeting-peer/venv}"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check polars lightgbm numpy pyarrow connectorx
  fi
  mkdir -p "$out"
  # The demo's own night would make `run --all` skip every campaign-day, and its simulated
  # days after the run date are not history: both go from the snapshot.
  cp "$dir/source.db" "$out/snapshot.db"
  python3 - "$out/snapshot.db" <<'PY'
import sqlite3, sys
from datetime import datetime, timezone
c = sqlite3.connect(sys.argv[1])
for t in ("targeting_assignments", "targeting_runs", "targeting_leases", "targeting_forecasts", "targeting_drift"):
    c.execute(f"DELETE FROM {t}")
cutoff = int(datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp())
c.execute("DELETE FROM purchases WHERE purchased_at >= ?", (cutoff,))
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
  cat > "$out/rust.toml" <<TOML
[source]
database_url = "sqlite://$dir/source.db"
[models]
store = "$dir/models"
[export]
destination = "file://$out/rust_exports"
[targeting]
campaigns_dir = "$PEER_DIR/campaigns"
TOML
  : > "$out/runs"
  for i in $(seq 1 "$reps"); do
    for side in rust peer; do
      cp "$out/snapshot.db" "$dir/source.db"
      rm -f "$dir/source.db-wal" "$dir/source.db-shm"
      case "$side" in
        rust) /usr/bin/time -f '%e %U %S %M' -o "$out/time" "$bin" run --all --date 2026-11-20 \
                --config "$out/rust.toml" --log-format json >/dev/null 2>"$out/log" ;;
        peer) /usr/bin/time -f '%e %U %S %M' -o "$out/time" "$venv/bin/python" "$PEER_DIR/peer.py" \
                --source "$dir/source.db" --models "$dir/models" --date 2026-11-20 \
                --out "$out/peer_exports" --engine connectorx >"$out/log" 2>&1 ;;
      esac
      python3 - "$side" "$out" >>"$out/runs" <<'PY'
import json, sys
side, out = sys.argv[1], sys.argv[2]
wall, user, sys_, rss = open(f"{out}/time").read().split()[-4:]
stages = {}
if side == "rust":
    spans = {}
    for line in open(f"{out}/log"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("message") == "close":
            name = e.get("span", {}).get("name")
            spans[name] = spans.get(name, 0.0) + e["busy_secs"] + e["idle_secs"]
    # A night in shards reads the source in its spill pass, then loads each shard's files.
    for stage, names in (("extract", ("spill", "extract")), ("load", ("load_shard",)),
                         ("featurize+score", ("score",)), ("select", ("rank", "select")),
                         ("publish", ("publish",)), ("record", ("record",))):
        stages[stage] = sum(spans.get(k, 0.0) for k in names)
else:
    for line in open(f"{out}/log"):
        if line.startswith("stages:"):
            words = line.split()[1:]
            stages = {k: float(v.rstrip("s")) for k, v in zip(words[::2], words[1::2])}
    stages["featurize+score"] = stages.pop("featurize", 0.0) + stages.pop("score", 0.0)
print(json.dumps({"side": side, "wall_s": float(wall), "cpu_s": float(user) + float(sys_),
                  "peak_rss_mb": int(rss) / 1024, **stages}))
PY
    done
  done
  cp "$out/snapshot.db" "$dir/source.db"
  python3 - "$n" "$out/runs" <<'PY'
import json, statistics, sys
n, rows = sys.argv[1], [json.loads(l) for l in open(sys.argv[2])]
keys = ["extract", "load", "featurize+score", "select", "publish", "record", "wall_s", "cpu_s", "peak_rss_mb"]
med = {s: {k: statistics.median(r.get(k, 0.0) for r in rows if r["side"] == s) for k in keys}
       for s in ("rust", "peer")}
print(f"\nagainst the peer, {n} users, medians of {len(rows) // 2} alternating runs:")
print(f"{'':18}{'rust':>10}{'peer':>10}")
for k in keys:
    print(f"{k:18}{med['rust'][k]:10.2f}{med['peer'][k]:10.2f}")
r, p = med["rust"], med["peer"]
print(f"peer / rust: wall {p['wall_s'] / r['wall_s']:.2f}x, CPU {p['cpu_s'] / r['cpu_s']:.2f}x; "
      f"rust / peer peak RSS {r['peak_rss_mb'] / p['peak_rss_mb']:.2f}")
pairs = [(a, b) for a, b in zip([x for x in rows if x["side"] == "rust"], [x for x in rows if x["side"] == "peer"])]
print("each pair, peer / rust wall and CPU: " + ", ".join(
    f"{b['wall_s'] / a['wall_s']:.2f}/{b['cpu_s'] / a['cpu_s']:.2f}" for a, b in pairs))
PY
}

# The nightly run alone, with the stored models the demo trained, on the same data: in one shard
# against BENCH_SHARDS (default 8) in-process shards, BENCH_REPS times each (default 3),
# alternating; previews (--dry-run), so that no run changes what the next one sees. Then, with
# PEER_DIR set (the Python peer's folder, kept outside the repository), against the peer (see
# `peer_side`). Medians of wall time, CPU time and peak RSS.
reps="${BENCH_REPS:-3}"
shards="${BENCH_SHARDS:-8}"
for n in "${sizes[@]}"; do
  dir="$work/demo-$n"
  db="${BENCH_DATABASE_URL:-sqlite://$dir/source.db}"
  : > "$work/night-$n"
  for i in $(seq 1 "$reps"); do
    for k in 1 "$shards"; do
      /usr/bin/time -f "$k %e %U %S %M" -a -o "$work/night-$n" env \
        TARGETING__MODELS__STORE="$dir/models" "$bin" run --all --dry-run --date 2026-11-20 \
        --database-url "$db" --shards "$k" --threads "$threads" >/dev/null 2>&1
    done
  done
  python3 - "$n" "$shards" "$work/night-$n" <<'PY'
import statistics, sys
n, shards, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
runs = {}
for line in open(path):
    k, wall, user, sys_, rss = line.split()
    runs.setdefault(k, []).append((float(wall), float(user) + float(sys_), int(rss) / 1024))
med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in runs.items()}
one, many = med["1"], med[shards]
print(f"\nnightly run, {n} users, stored models, medians of {len(runs['1'])}: "
      f"1 shard {one[0]:.1f} s wall, {one[1]:.1f} s CPU, {one[2]:.0f} MB; "
      f"{shards} shards {many[0]:.1f} s, {many[1]:.1f} s, {many[2]:.0f} MB; "
      f"ratio {many[0] / one[0]:.2f}x time, {many[2] / one[2]:.2f}x memory")
PY
  if [ -n "${PEER_DIR:-}" ] && [ -z "${BENCH_DATABASE_URL:-}" ]; then
    peer_side "$n" "$dir"
  elif [ -z "${PEER_DIR:-}" ]; then
    echo "(PEER_DIR is not set: no comparison with the peer)"
  fi
done
