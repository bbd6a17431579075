# Sourced by scripts/demo.sh and scripts/test.sh: installs what building and testing need when
# it is missing, and exports CMAKE for the LightGBM build. Idempotent; quiet when all is there.
#
#   clang, libclang-dev, g++    Debian packages (bindgen and the LightGBM C++ build)
#   cmake >= 3.28, < 4          from PyPI into a venv (Debian 12 ships 3.25)
#   moto[server] == 5.2.5       from PyPI into the same venv (tests only: S3-compatible server)
#   postgresql                  Debian package (tests only: throwaway server binaries)
#   chromium                    Debian package (tests only: the HTML report checked in a browser)

TOOLS_DIR="${TARGETING_TOOLS_DIR:-$HOME/.cache/campaign-targeting}"
VENV="$TOOLS_DIR/venv"
MOTO_VERSION="5.2.5"

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing Debian packages: $*"
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

install_build_tools() {
  local missing=()
  command -v cargo >/dev/null || { log "cargo is missing: install Rust (rustup) first"; return 1; }
  command -v clang >/dev/null || missing+=(clang)
  command -v g++ >/dev/null || missing+=(g++)
  ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || missing+=(libclang-dev)
  command -v python3 >/dev/null || missing+=(python3 python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
  if [ ! -x "$VENV/bin/cmake" ]; then
    log "installing CMake from PyPI into $VENV"
    mkdir -p "$TOOLS_DIR"
    python3 -m venv "$VENV" || { apt_install python3-venv && python3 -m venv "$VENV"; }
    "$VENV/bin/pip" install -q --disable-pip-version-check 'cmake>=3.28,<4'
  fi
  export CMAKE="$VENV/bin/cmake"
}

install_test_tools() {
  if [ ! -x "$VENV/bin/moto_server" ]; then
    log "installing moto[server]==$MOTO_VERSION from PyPI into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_install postgresql
  fi
  if ! command -v chromium >/dev/null; then
    apt_install chromium
  fi
}

# Builds the release binary (installing the build tools first) and prints its path.
build_targeting() {
  install_build_tools
  cargo build --release --quiet --bin targeting
  echo "${CARGO_TARGET_DIR:-target}/release/targeting"
}

# Runs the demo binary BIN on USERS users once per SEED, into WORK/seed-SEED (a fixed date, no
# simulated days after the night); stops at the first failure with its log.
#   demo_per_seed BIN USERS WORK SEED...
demo_per_seed() {
  local bin="$1" users="$2" work="$3" seed
  shift 3
  for seed in "$@"; do
    "$bin" demo --users "$users" --seed "$seed" --date 2026-11-20 --dir "$work/seed-$seed" \
      --outcome-days 0 --threads "$(nproc)" >/dev/null 2>"$work/seed-$seed.log" \
      || { cat "$work/seed-$seed.log" >&2; return 1; }
  done
}

# For a script that compares over data seeds: builds the binary, makes WORK (removed at exit),
# reads USERS and SEEDS from the script's arguments (`[USERS] [SEED ...]`, default 100000 and
# DEFAULT_SEEDS), and runs the demo once per seed (see demo_per_seed).
#   demo_over_seeds NAME "DEFAULT_SEEDS" "$@"
demo_over_seeds() {
  local name="$1" defaults="$2" bin
  shift 2
  bin="$(build_targeting)"
  WORK="$(mktemp -d -t "targeting-$name.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  USERS="${1:-100000}"
  shift || true
  SEEDS=("$@")
  # shellcheck disable=SC2206 # the defaults are a word list on purpose
  [ ${#SEEDS[@]} -gt 0 ] || SEEDS=($defaults)
  demo_per_seed "$bin" "$USERS" "$WORK" "${SEEDS[@]}"
}

# A free TCP port on the loopback interface.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
