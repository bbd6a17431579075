# Sourced by the scikit-uplift scripts: a venv with scikit-uplift and LightGBM, for comparisons
# only (the project never depends on it).
SKLIFT_VENV="${SKLIFT_VENV:-$HOME/.cache/campaign-targeting/sklift-venv}"
if [ ! -x "$SKLIFT_VENV/bin/python" ] || ! "$SKLIFT_VENV/bin/python" -c 'import sklift, lightgbm' 2>/dev/null; then
  echo "[sklift] installing scikit-uplift 0.5.1 and LightGBM into $SKLIFT_VENV" >&2
  python3 -m venv "$SKLIFT_VENV"
  "$SKLIFT_VENV/bin/pip" install -q --disable-pip-version-check 'scikit-uplift==0.5.1' 'lightgbm>=4,<5' 'pandas<3'
fi
# causalml's meta-learners join the paired comparison when they install (they build native code).
if ! "$SKLIFT_VENV/bin/python" -c 'import causalml' 2>/dev/null && [ ! -e "$SKLIFT_VENV/.no-causalml" ]; then
  echo "[sklift] installing causalml 0.18 into $SKLIFT_VENV" >&2
  "$SKLIFT_VENV/bin/pip" install -q --disable-pip-version-check 'causalml==0.18.0' \
    || { echo "[sklift] causalml did not install: its learners are left out" >&2; touch "$SKLIFT_VENV/.no-causalml"; }
fi
