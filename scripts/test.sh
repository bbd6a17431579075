#!/usr/bin/env bash
# Runs the test suite against real services:
#   bash scripts/test.sh [extra cargo test args]
# Installs what is missing, starts a throwaway PostgreSQL (unless DATABASE_URL is set) and a moto
# S3-compatible server on free loopback ports, runs `cargo test --release`, and stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
install_build_tools
install_test_tools

work="$(mktemp -d -t targeting-test.XXXXXX)"
chmod 755 "$work"
pg_data=""
pg_bin=""
moto_pids=()
cleanup() {
  set +e
  for pid in "${moto_pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  if [ -n "$pg_data" ]; then run_pg "$pg_bin/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1; fi
  rm -rf "$work"
}
trap cleanup EXIT

# initdb refuses to run as root: run the server as the postgres user then.
run_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ -z "${DATABASE_URL:-}" ]; then
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  pg_port="$(free_port)"
  mkdir -p "$work/pg"
  [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
  pg_data="$work/pg/data"
  run_pg "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres >/dev/null
  run_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$work/pg/server.log" -w \
    -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" \
    start >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
  log "throwaway PostgreSQL on 127.0.0.1:$pg_port"
fi

# Starts a moto server on a free port and sets started_port (not run in a subshell, so that
# cleanup knows its pid). Extra arguments are environment settings of the server.
start_moto() {
  local port log_file
  port="$(free_port)"
  log_file="$work/moto-$port.log"
  env "$@" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log_file" 2>&1 &
  moto_pids+=("$!")
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/data.json', timeout=1)" 2>/dev/null; then
      started_port="$port"
      return 0
    fi
    sleep 0.2
  done
  log "moto did not start on 127.0.0.1:$port:"; cat "$log_file" >&2
  return 1
}

# The S3-compatible server of the tests; it accepts any credentials.
start_moto
moto_port="$started_port"
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
log "moto S3 server on 127.0.0.1:$moto_port"

# A second one that checks signatures, for the wrong-credentials test: an IAM user, its key and
# a bucket are made while requests are still unauthenticated.
start_moto INITIAL_NO_AUTH_ACTION_COUNT=8
auth_port="$started_port"
read -r auth_key auth_secret < <("$VENV/bin/python" scripts/s3_auth_setup.py \
  "http://127.0.0.1:$auth_port" targeting-auth)
[ -n "${auth_secret:-}" ] || { log "could not prepare the moto server with signature checks"; exit 1; }
export TEST_S3_AUTH_ENDPOINT="http://127.0.0.1:$auth_port" TEST_S3_AUTH_BUCKET=targeting-auth
export TEST_S3_AUTH_KEY_ID="$auth_key" TEST_S3_AUTH_SECRET="$auth_secret"
log "moto S3 server with signature checks on 127.0.0.1:$auth_port"

# The tests run two at a time, and many start daemons and runs that train with LightGBM's OpenMP
# threads: far more threads than this machine's two cores. OpenMP's default busy-waiting then
# starves the others (a daemon's training stalled for minutes under the full suite, while it
# takes seconds alone): waiting threads sleep instead.
export OMP_WAIT_POLICY=PASSIVE
cargo test --release --workspace "$@"
