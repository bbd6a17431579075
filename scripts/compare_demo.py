#!/usr/bin/env python3
"""Compares two demo folders made with the same --seed, --users and --date (e.g. by the binary
before and after a restructuring): every export file (SHA-256; manifests as JSON), summary.json,
and, for a SQLite source, the ledger rows and assignments. Run ids, creation times and the time
stamp of model versions differ by nature and are masked; nothing else may differ. (Run folders are
matched by campaign and date, so compare folders with one run per campaign-day.)

    python3 scripts/compare_demo.py BEFORE_DIR AFTER_DIR     # exit 1 when anything differs
"""
import glob
import hashlib
import json
import os
import re
import sqlite3
import sys


def main():
    a, b = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/")

    def norm(v):
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items() if k not in ("run_id", "created_at")}
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, str):
            v = re.sub(r"\d{14}-([0-9a-f]{8})", r"<stamp>-\1", v)
            v = re.sub(r"run=\d{8}T\d{6}Z-[0-9a-f]{6}", "run=<id>", v)
            v = v.replace(a, "<dir>").replace(b, "<dir>")
        return v

    def files(root):
        out = {}
        for p in sorted(glob.glob(f"{root}/exports/**/*", recursive=True)):
            if os.path.isfile(p):
                data = open(p, "rb").read()
                key = norm(p[len(root):])
                out[key] = norm(json.loads(data)) if p.endswith(".json") else hashlib.sha256(data).hexdigest()
        return out

    def ledger(root):
        path = f"{root}/source.db"
        if not os.path.exists(path):
            return None, None
        c = sqlite3.connect(path)
        cols = "campaign_id, run_date, status, audience_size, holdout_size, model_versions, export_uri, error"
        runs = sorted(json.dumps(norm(dict(zip(cols.split(", "), r))), sort_keys=True)
                      for r in c.execute(f"SELECT {cols} FROM targeting_runs"))
        assignments = sorted(c.execute(
            "SELECT campaign_id, user_id, arm, scores, discount_pct FROM targeting_assignments"))
        return runs, assignments

    same = True

    def report(what, x, y, n):
        nonlocal same
        print(f"{what}: {n} {'identical' if x == y else 'DIFFERENT'}")
        same &= x == y

    fa, fb = files(a), files(b)
    report("export files", fa, fb, len(fa))
    for k in sorted(set(fa) | set(fb)):
        if fa.get(k) != fb.get(k):
            print(f"  differs: {k}")
    sa = norm(json.load(open(f"{a}/summary.json")))
    sb = norm(json.load(open(f"{b}/summary.json")))
    report("summary.json", sa, sb, 1)
    (ra, aa), (rb, ab) = ledger(a), ledger(b)
    if ra is not None and rb is not None:
        report("ledger rows", ra, rb, len(ra))
        report("assignments", aa, ab, len(aa))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
