#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/dev.sh: makes sure DATABASE_URL and REDIS_URL point at
# running servers. When they are unset it starts throwaway PostgreSQL and Redis instances in a
# temp dir (installing the Debian packages first when they are missing) and stops them on exit.

services_log() { echo "services: $*" >&2; }

services_free_port() {
  # A random high port nobody answers on (bash's /dev/tcp: no python or netcat needed).
  local port
  for _ in $(seq 100); do
    port=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  services_log "no free port found"; return 1
}

services_apt_install() {
  if [ "$(id -u)" != 0 ]; then
    services_log "need $* but cannot install it without root; install it or set the URL"; return 1
  fi
  services_log "installing $* from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

services_pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

services_start_postgres() {
  local bin; bin=$(services_pg_bin)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    services_apt_install postgresql || return 1
    bin=$(services_pg_bin)
  fi
  local dir="$SERVICES_TMP/pg" port; port=$(services_free_port)
  mkdir -p "$dir"
  # initdb refuses to run as root: run the cluster as the postgres user then.
  local run=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
    chown -R postgres "$SERVICES_TMP"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$SERVICES_TMP/initdb.log" 2>&1 \
    || { cat "$SERVICES_TMP/initdb.log" >&2; return 1; }
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  SERVICES_PG_STOP=("${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop)
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  services_log "throwaway PostgreSQL on 127.0.0.1:$port"
}

services_start_redis() {
  command -v redis-server >/dev/null || services_apt_install redis-server || return 1
  local port; port=$(services_free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$SERVICES_TMP" --pidfile "$SERVICES_TMP/redis.pid" --logfile "$SERVICES_TMP/redis.log"
  for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export REDIS_URL="redis://127.0.0.1:$port"
  services_log "throwaway Redis on 127.0.0.1:$port"
}

services_stop() {
  if [ -n "${SERVICES_PG_STOP+x}" ]; then "${SERVICES_PG_STOP[@]}" >/dev/null 2>&1 || true; fi
  if [ -f "${SERVICES_TMP:-}/redis.pid" ]; then kill "$(cat "$SERVICES_TMP/redis.pid")" 2>/dev/null || true; fi
  if [ -n "${SERVICES_TMP:-}" ]; then rm -rf "$SERVICES_TMP"; fi
}

ensure_services() {
  if [ -n "${DATABASE_URL:-}" ] && [ -n "${REDIS_URL:-}" ]; then
    services_log "using DATABASE_URL and REDIS_URL from the environment"; return 0
  fi
  SERVICES_TMP=$(mktemp -d /tmp/portcullis-services.XXXXXX)
  chmod 755 "$SERVICES_TMP"
  trap services_stop EXIT
  if [ -z "${DATABASE_URL:-}" ]; then services_start_postgres || return 1; fi
  if [ -z "${REDIS_URL:-}" ]; then services_start_redis || return 1; fi
}
