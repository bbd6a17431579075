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
moto_pid=""
cleanup() {
  set +e
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null; wait "$moto_pid" 2>/dev/null; fi
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

moto_port="$(free_port)"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$moto_port/moto-api/data.json', timeout=1)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
log "moto S3 server on 127.0.0.1:$moto_port"

cargo test --release --workspace "$@"
