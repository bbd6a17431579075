#!/usr/bin/env bash
# Runs the demo: the whole nightly job on a generated SQLite source, publishing to local files.
#   bash scripts/demo.sh [--users N] [--dir DIR] [--seed S] [--date YYYY-MM-DD] ...
# Installs what the build needs when it is missing, builds the release binary, then runs
# `targeting demo` with the given flags (see `targeting demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
bin="$(build_targeting)"
exec "$bin" demo "$@"
