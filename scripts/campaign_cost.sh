#!/usr/bin/env bash
# What one campaign costs the nightly run: the demo's night (a dry run on the stored models, in
# shards of at most 500k users) with every shipped campaign and without CAMPAIGN, alternating,
# REPEATS times each. Prints each run and the medians of the wall time, the peak RSS, the spill
# pass and the rank stage per shard (from the JSON log's span ends). Fixed seed and date.
#   bash scripts/campaign_cost.sh [CAMPAIGN] [USERS] [REPEATS]   (default gift-a-friend 1000000 3)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
campaign="${1:-gift-a-friend}"
users="${2:-1000000}"
repeats="${3:-3}"
[ -f "config/campaigns/$campaign.toml" ] || { echo "no config/campaigns/$campaign.toml" >&2; exit 2; }
bin="$(build_targeting)"
work="$(mktemp -d -t targeting-cost.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$bin" demo --users "$users" --seed 7 --date 2026-11-20 --dir "$work/demo" --outcome-days 0 \
  --threads "$(nproc)" >/dev/null 2>"$work/demo.log" || { cat "$work/demo.log" >&2; exit 1; }
mkdir -p "$work/with" "$work/without"
cp config/campaigns/*.toml "$work/with/"
cp config/campaigns/*.toml "$work/without/"
rm "$work/without/$campaign.toml"
for i in $(seq "$repeats"); do
  for side in with without; do
    TARGETING__SOURCE__DATABASE_URL="sqlite://$work/demo/source.db" \
    TARGETING__MODELS__STORE="$work/demo/models" \
    TARGETING__EXPORT__DESTINATION="file://$work/exports" \
    TARGETING__TARGETING__CAMPAIGNS_DIR="$work/$side" \
      /usr/bin/time -f "%e %M" -o "$work/$side-$i.time" \
      "$bin" run --all --dry-run --date 2026-11-20 --threads "$(nproc)" --log-format json \
      >/dev/null 2>"$work/$side-$i.log" || { tail -5 "$work/$side-$i.log" >&2; exit 1; }
  done
done
python3 - "$work" "$repeats" "$campaign" "$users" <<'PY'
import json, statistics, sys
work, repeats, campaign, users = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def one(side, i):
    wall, rss = open(f"{work}/{side}-{i}.time").read().split()[-2:]
    spill, rank = 0.0, []
    for line in open(f"{work}/{side}-{i}.log"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("message") != "close":
            continue
        name = e["span"]["name"]
        if name == "spill":
            spill += e["busy_secs"] + e["idle_secs"]
        if name == "rank":
            rank.append(e["busy_secs"])
    return float(wall), int(rss) / 1024, spill, statistics.mean(rank) if rank else 0.0
print(f"{users} users; the demo night with every campaign and without {campaign}")
print(f"{'run':>4} {'side':>8} {'wall s':>7} {'RSS MB':>7} {'spill s':>8} {'rank s/shard':>13}")
runs = {"with": [], "without": []}
for i in range(1, repeats + 1):
    for side in ("with", "without"):
        r = one(side, i)
        runs[side].append(r)
        print(f"{i:>4} {side:>8} {r[0]:>7.2f} {r[1]:>7.0f} {r[2]:>8.2f} {r[3]:>13.2f}")
med = {s: [statistics.median(x[k] for x in runs[s]) for k in range(4)] for s in runs}
w, wo = med["with"], med["without"]
print(f"medians: wall {w[0]:.2f} s against {wo[0]:.2f} s ({100 * (w[0] / wo[0] - 1):+.0f}%), "
      f"peak RSS {w[1]:.0f} MB against {wo[1]:.0f} MB, spill {w[2]:.2f} s against {wo[2]:.2f} s, "
      f"rank {w[3]:.2f} s against {wo[3]:.2f} s a shard")
PY
