#!/usr/bin/env bash
# Regenerates the scikit-uplift metrics fixture (models/tests/fixtures/sklift_*).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/sklift/setup.sh
"$SKLIFT_VENV/bin/python" scripts/sklift/metrics_fixture.py
