#!/usr/bin/env bash
# OpenID Connect benchmark of `make bench` (issue 10, Performance; plan §3.5). Prints figures,
# asserts no timings. Measures, with wrk on the same machine:
#   - client_credentials grants/s and introspections/s of the release `portcullis-authserver`
#     (one confidential client `bench`, RUST_LOG=warn, against throwaway PostgreSQL and Redis),
#   - the same of Node's certified oidc-provider (bench/op, pinned in its package-lock.json),
#     access tokens `opaque` (its default, the only format it introspects) and `jwt` (ES256),
#   - p50/p99, non-2xx and socket errors, and the server's VmRSS every 0.5 s under load plus
#     VmHWM at the end,
# each unpinned (server and wrk share the cores) and pinned (server `taskset -c 0`, wrk
# `taskset -c 1`), beside the bare ES256 signs/s of the signing code in one process
# (`cargo bench --bench oidc`). A run with non-2xx responses is reported INVALID and the script
# exits non-zero.
#
# Knobs: BENCH_DURATION (20s), BENCH_CONNECTIONS (32), BENCH_THREADS (1),
# BENCH_MODES ("unpinned pinned"), BENCH_SIGNS (1; 0 skips the cargo bench).
# DATABASE_URL / REDIS_URL: used when set (a fresh database is created in that PostgreSQL and
# dropped at the end), else throwaway servers are started (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-20s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-1}
MODES=${BENCH_MODES:-unpinned pinned}
SIGNS=${BENCH_SIGNS:-1}
RSS_GOAL_MB=32
RATIO_GOAL=5
OP_DIR=bench/op
NODE=$OP_DIR/node_modules/.bin/node
BIN=target/release/portcullis-authserver

say() { printf 'bench-oidc: %s\n' "$*" >&2; }
die() {
  printf '\n*** bench-oidc FAILED: %s ***\n\n' "$*" >&2
  exit 1
}

# --- cleanup: every process this script starts, the bench database, the work dir ---------------
WORK=""
BENCH_DB=""
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$BENCH_DB" ]; then
    psql "$DATABASE_URL" -qtAX -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
  if declare -F services_stop >/dev/null; then services_stop; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {
  local pid=$1 kept=() p
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do
    if [ "$p" != "$pid" ]; then kept+=("$p"); fi
  done
  PIDS=("${kept[@]+"${kept[@]}"}")
}

# --- tools --------------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing wrk from Debian packages"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }; then
      die "apt-get install -y wrk failed; install wrk (https://github.com/wg/wrk) and run again"
    fi
  else
    die "wrk is not installed and this is not root with apt-get: install it (Debian: sudo apt-get install -y wrk) and run again"
  fi
fi
command -v npm >/dev/null || die "npm is not installed: the comparison provider (bench/op) needs it"
for tool in curl jq psql taskset awk; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
WRK_VERSION=$(wrk -v 2>&1 | head -n 1 | awk '{print $2}' || true)
CORES=$(nproc)
WORK=$(mktemp -d /tmp/portcullis-bench-oidc.XXXXXX)

# --- 1. bare ES256 signs/s of the signing code, in one process (before the load runs) -----------
SIGN_LINES=""
if [ "$SIGNS" = 1 ]; then
  say "cargo bench --bench oidc (bare ES256 signs/s of KeyRing, in one process)"
  cargo bench --locked -p portcullis-authserver --bench oidc | tee "$WORK/signs.out" \
    || die "cargo bench --bench oidc failed"
  SIGN_LINES=$(grep -iE 'ES256.*(sign|verif)' "$WORK/signs.out" || true)
  [ -n "$SIGN_LINES" ] || say "WARNING: no ES256 signing line in the cargo bench output (its format changed?)"
fi

# --- 2. the release server and the comparison provider -----------------------------------------
# After cargo bench: its bins may be built with the dev-dependencies' features; this puts the
# plain release binary back in place (both are cached, so nothing is rebuilt twice).
say "cargo build --release -p portcullis-authserver"
cargo build --release --locked -p portcullis-authserver || die "the release build failed"
COMMIT=$(git rev-parse --short HEAD)
# Which ES256 code the measured server signs with (plan §3.5: p256 through jsonwebtoken, or ring).
if grep -q '^use ring::signature' authserver/src/auth/tokens.rs 2>/dev/null; then
  SIGNER="ring"
else
  SIGNER="jsonwebtoken rust_crypto (p256)"
fi
if [ -n "$(git status --porcelain --untracked-files=no -- authserver crds Cargo.lock)" ]; then
  COMMIT="$COMMIT+uncommitted changes"
fi

say "npm ci in $OP_DIR (oidc-provider and its Node 22 from the npm registry)"
if ! cmp -s "$OP_DIR/package-lock.json" "$OP_DIR/node_modules/.bench-installed-lock" 2>/dev/null; then
  (cd "$OP_DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in $OP_DIR failed"
  cp "$OP_DIR/package-lock.json" "$OP_DIR/node_modules/.bench-installed-lock"
fi
[ -x "$NODE" ] || die "$NODE is missing after npm ci: the npm package node@22 did not install its binary (its preinstall script was not run?)"
NODE_VERSION=$("$NODE" --version) || die "$NODE does not run"
OP_VERSION=$(jq -r .version "$OP_DIR/node_modules/oidc-provider/package.json")
case $NODE_VERSION in
  v22.*) ;;
  *) die "$NODE is $NODE_VERSION, not Node 22 (oidc-provider $OP_VERSION needs it)" ;;
esac

# --- 3. throwaway services, a fresh database, the realm config and its secrets ------------------
# shellcheck source=scripts/services.sh
source scripts/services.sh
ensure_services || die "PostgreSQL and Redis could not be started (scripts/services.sh)"
trap cleanup EXIT # ensure_services set its own EXIT trap; cleanup calls services_stop too

BENCH_DB="portcullis_bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
psql "$DATABASE_URL" -qtAX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $BENCH_DB" >/dev/null \
  || die "cannot create database $BENCH_DB in DATABASE_URL"
BENCH_DB_URL="${DATABASE_URL%/*}/$BENCH_DB"

cat >"$WORK/realm.yaml" <<'EOF'
apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: bench}
spec:
  issuer: http://localhost
  database: {secretRef: {name: bench-postgres}}
  passwordPolicy: {breachCheck: {mode: Disabled}}
  emailVerification: {required: false}
---
apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {name: bench}
spec:
  realmRef: {name: bench}
  clientId: bench
  type: Confidential
  grantTypes: [client_credentials]
  scopes: [api]
EOF
"$BIN" keys generate --secrets-dir "$WORK/secrets" >"$WORK/keys.log" 2>&1 \
  || { cat "$WORK/keys.log" >&2; die "portcullis-authserver keys generate failed"; }
SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n') # 256 bits, URL-safe as it is
printf '%s\n' "$SECRET" >"$WORK/secrets/client-secret-bench"
# RFC 6749 §2.3.1: id and secret are form-urlencoded, then base64 (both are URL-safe here).
BASIC="Basic $(printf 'bench:%s' "$SECRET" | base64 -w0)"

# --- helpers ------------------------------------------------------------------------------------
declare -A RESULT RSS_PEAK RSS_HWM
INVALID=()
SERVER_PID=""

wait_until() { # wait_until SECONDS WHAT COMMAND...: polls until COMMAND succeeds or the server died
  local seconds=$1 what=$2 i
  shift 2
  for ((i = 0; i < seconds * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      cat "$WORK/server.log" >&2 || true
      die "$what exited before it was ready (its log is above)"
    fi
    sleep 0.1
  done
  cat "$WORK/server.log" >&2 || true
  die "$what was not ready after ${seconds}s (its log is above)"
}

pin_server() { if [ "$1" = pinned ]; then echo "taskset -c 0"; fi; }

start_portcullis() { # start_portcullis MODE; sets SERVER_PID and BASE
  local pin port admin metrics
  read -ra pin <<<"$(pin_server "$1")"
  port=$(services_free_port) || die "no free port"
  admin=$(services_free_port) || die "no free port"
  metrics=$(services_free_port) || die "no free port"
  RUST_LOG=warn DATABASE_URL=$BENCH_DB_URL REDIS_URL=$REDIS_URL \
    "${pin[@]+"${pin[@]}"}" "$BIN" serve --config "$WORK/realm.yaml" --secrets-dir "$WORK/secrets" \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --metrics-listen "127.0.0.1:$metrics" --mail-dir "$WORK/mail" \
    --termination-log "$WORK/termination-log" \
    >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  BASE="http://127.0.0.1:$port"
  wait_until 120 "portcullis-authserver" curl -fsS "http://127.0.0.1:$admin/readyz"
}

start_op() { # start_op MODE FORMAT; sets SERVER_PID and BASE
  local pin port
  read -ra pin <<<"$(pin_server "$1")"
  port=$(services_free_port) || die "no free port"
  BENCH_SECRET=$SECRET NODE_ENV=production \
    "${pin[@]+"${pin[@]}"}" "$NODE" "$OP_DIR/op.mjs" "$port" "$2" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  BASE="http://127.0.0.1:$port"
  wait_until 60 "oidc-provider ($2)" grep -q "^ready $port" "$WORK/server.log"
}

post() { # post URL BODY: prints the response body; fails unless 200
  local code
  code=$(curl -sS -o "$WORK/response" -w '%{http_code}' -X POST -H "Authorization: $BASIC" \
    -H 'Content-Type: application/x-www-form-urlencoded' --data "$2" "$1") || return 1
  cat "$WORK/response"
  [ "$code" = 200 ]
}

token() { # token PATH: a fresh access token
  local body
  body=$(post "$BASE$1" 'grant_type=client_credentials&scope=api') \
    || die "the client_credentials grant at $BASE$1 failed: $body"
  jq -er .access_token <<<"$body" || die "no access_token in: $body"
}

check_active() { # check_active PATH TOKEN WHEN: the token introspects as active
  local body
  body=$(post "$BASE$1" "token=$2") || die "introspection at $BASE$1 failed $3: $body"
  [ "$(jq -r .active <<<"$body")" = true ] \
    || die "the token is not active $3 (an inactive answer is cheaper, the figure would lie): $body"
}

sample_rss() { # sample_rss PID FILE: VmRSS in kB every 0.5 s while PID lives
  while [ -r "/proc/$1/status" ]; do
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status" >>"$2" 2>/dev/null || true
    sleep 0.5
  done
}

load1() { cut -d' ' -f1 /proc/loadavg; }

run_wrk() { # run_wrk KEY SCRIPT URL ARGS...: wrk under RSS sampling; stores RESULT[KEY]
  local key=$1 script=$2 url=$3 mode=${1%%/*} wrk_pin=() sampler wrk_pid json
  shift 3
  if [ "$mode" = pinned ]; then wrk_pin=(taskset -c 1); fi
  : >"$WORK/rss"
  sample_rss "$SERVER_PID" "$WORK/rss" &
  sampler=$!
  PIDS+=("$sampler")
  printf '\n--- %s: wrk -t%s -c%s -d%s --latency %s (load average before: %s)\n' \
    "$key" "$THREADS" "$CONNECTIONS" "$DURATION" "$url" "$(load1)"
  # In the background and waited for, so that a TERM stops the run at once (through cleanup).
  "${wrk_pin[@]+"${wrk_pin[@]}"}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s "$script" "$url" -- "$@" >"$WORK/wrk.out" 2>&1 &
  wrk_pid=$!
  PIDS+=("$wrk_pid")
  wait "$wrk_pid" || {
    cat "$WORK/wrk.out" >&2
    die "wrk failed ($key)"
  }
  stop_pid "$wrk_pid"
  stop_pid "$sampler"
  grep -v '^{"requests"' "$WORK/wrk.out"
  json=$(grep '^{"requests"' "$WORK/wrk.out" | tail -n 1) || die "no figures from wrk ($key)"
  RESULT[$key]=$(jq -r '"\(.rps) \(.p50_ms) \(.p99_ms) \(.non2xx) \(.socket_errors) \(.requests)"' <<<"$json")
  local server=${key%/*} peak
  peak=$(sort -n "$WORK/rss" | tail -n 1)
  if [ -n "$peak" ] && [ "$peak" -gt "${RSS_PEAK[$server]:-0}" ]; then RSS_PEAK[$server]=$peak; fi
  read -r _ _ _ non2xx sockets requests <<<"${RESULT[$key]}"
  if [ "$non2xx" != 0 ] || [ "$requests" = 0 ]; then
    INVALID+=("$key: $non2xx non-2xx responses of $requests")
    printf '\n!!! INVALID RUN %s: %s of %s responses were not 2xx: this figure measures errors !!!\n' \
      "$key" "$non2xx" "$requests" >&2
    echo "the server's log (RUST_LOG=warn), last 20 lines:" >&2
    tail -n 20 "$WORK/server.log" >&2 || true
  fi
  if [ "$sockets" != 0 ]; then
    printf '\n!!! %s: %s socket errors (connect, read, write, timeout) !!!\n' "$key" "$sockets" >&2
  fi
}

hwm() { # hwm SERVER: VmHWM in kB of the running server, at the end of its runs
  RSS_HWM[$1]=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")
}

# --- 4. the load runs ---------------------------------------------------------------------------
for mode in $MODES; do
  case $mode in unpinned | pinned) ;; *) die "BENCH_MODES: unknown mode $mode (unpinned, pinned)" ;; esac
  say "$mode: Portcullis $COMMIT"
  start_portcullis "$mode"
  token /oauth2/token >/dev/null # the whole grant path answers before wrk starts
  run_wrk "$mode/portcullis/grants" bench/wrk/client_credentials.lua "$BASE/oauth2/token" "$BASIC"
  # The token to introspect is taken after the grants: oidc-provider's in-memory adapter keeps
  # only the latest 1,000 tokens, and an unknown token is answered {"active": false}, cheaply.
  tok=$(token /oauth2/token)
  check_active /oauth2/introspect "$tok" "before the run"
  run_wrk "$mode/portcullis/introspections" bench/wrk/introspect.lua "$BASE/oauth2/introspect" "$BASIC" "$tok"
  check_active /oauth2/introspect "$tok" "after the run"
  hwm "$mode/portcullis"
  stop_pid "$SERVER_PID"

  for format in opaque jwt; do
    say "$mode: oidc-provider $OP_VERSION, $format access tokens"
    start_op "$mode" "$format"
    token /token >/dev/null
    run_wrk "$mode/op-$format/grants" bench/wrk/client_credentials.lua "$BASE/token" "$BASIC"
    if [ "$format" = opaque ]; then
      tok=$(token /token)
      check_active /token/introspection "$tok" "before the run"
      run_wrk "$mode/op-$format/introspections" bench/wrk/introspect.lua "$BASE/token/introspection" "$BASIC" "$tok"
      check_active /token/introspection "$tok" "after the run"
    fi
    hwm "$mode/op-$format"
    stop_pid "$SERVER_PID"
  done
done

# --- 5. the table -------------------------------------------------------------------------------
cell() { # cell KEY: "rps p50 p99" columns, or n/a
  if [ -n "${RESULT[$1]:-}" ]; then
    read -r rps p50 p99 non2xx _ <<<"${RESULT[$1]}"
    if [ "$non2xx" != 0 ]; then rps="INVALID"; fi
    awk -v r="$rps" -v a="$p50" -v b="$p99" 'BEGIN {
      printf "%10s %7.2f %7.2f", (r == "INVALID" ? r : sprintf("%.0f", r)), a, b }'
  else
    printf '%10s %7s %7s' n/a - -
  fi
}
mb() { if [ -n "${1:-}" ]; then awk -v k="$1" 'BEGIN {printf "%.1f MB", k / 1024}'; else echo n/a; fi; }
rps_of() { # rps_of KEY: requests/s of a valid run, else nothing
  if [ -n "${RESULT[$1]:-}" ]; then
    read -r rps _ _ non2xx _ <<<"${RESULT[$1]}"
    if [ "$non2xx" = 0 ]; then echo "$rps"; fi
  fi
}

echo
echo "================================================================================================"
echo "OpenID Connect benchmark: Portcullis $COMMIT (ES256 signing: $SIGNER)"
echo "vs oidc-provider $OP_VERSION on Node $NODE_VERSION"
echo "(npm node@22), wrk $WRK_VERSION -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $CORES cores,"
echo "release build, RUST_LOG=warn, NODE_ENV=production; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "================================================================================================"
printf '%-24s %10s %7s %7s %10s %7s %7s %11s %11s\n' "" grants/s p50ms p99ms intro/s p50ms p99ms "peak VmRSS" VmHWM
for mode in $MODES; do
  if [ "$mode" = pinned ]; then
    echo "pinned (server or node: taskset -c 0; wrk: taskset -c 1)"
  else
    echo "unpinned (server and wrk share the $CORES cores)"
  fi
  for server in portcullis op-opaque op-jwt; do
    case $server in
      portcullis) label="Portcullis" ;;
      op-opaque) label="oidc-provider opaque" ;;
      op-jwt) label="oidc-provider jwt ES256" ;;
    esac
    printf '  %-22s %s %s %11s %11s\n' "$label" "$(cell "$mode/$server/grants")" \
      "$(cell "$mode/$server/introspections")" "$(mb "${RSS_PEAK[$mode/$server]:-}")" \
      "$(mb "${RSS_HWM[$mode/$server]:-}")"
  done
done
echo "(p50/p99 in ms; peak VmRSS: the highest 0.5 s sample under load; VmHWM: the process's peak)"
echo
if [ -n "$SIGN_LINES" ]; then
  echo "bare signing, one process, one thread (cargo bench --bench oidc):"
  printf '%s\n' "$SIGN_LINES" | sed 's/^/  /'
else
  echo "bare signing: not measured (BENCH_SIGNS=0 or no ES256 line in the cargo bench output)"
fi
# The first ES256 signing figure of the cargo bench (the signing code the server runs).
SIGNS_PER_S=$(printf '%s\n' "$SIGN_LINES" | grep -iE 'ES256.*sign' | head -n 1 \
  | grep -oE '[0-9][0-9.]* */s' | head -n 1 | grep -oE '^[0-9.]+' || true)
echo
for mode in $MODES; do
  ours=$(rps_of "$mode/portcullis/grants")
  if [ -n "$ours" ] && [ -n "$SIGNS_PER_S" ]; then
    awk -v a="$ours" -v s="$SIGNS_PER_S" -v m="$mode" -v c="$([ "$mode" = pinned ] && echo 1 || echo "$CORES")" 'BEGIN {
      printf "%-9s Portcullis grants/s = %.2fx the bare one-thread signs/s (signing alone allows ~%dx on %d core%s)\n",
        m, a / s, c, c, (c == 1 ? "" : "s") }'
  fi
  theirs=$(rps_of "$mode/op-jwt/grants")
  if [ -n "$ours" ] && [ -n "$theirs" ] && [ "$theirs" != 0 ]; then
    awk -v a="$ours" -v b="$theirs" -v g="$RATIO_GOAL" -v m="$mode" 'BEGIN {
      r = a / b; printf "%-9s Portcullis grants/s / oidc-provider jwt grants/s = %.1fx (goal >= %dx: %s)\n",
        m, r, g, (r >= g ? "met" : "NOT met") }'
  fi
  peak=${RSS_PEAK[$mode/portcullis]:-}
  hwm_kb=${RSS_HWM[$mode/portcullis]:-}
  if [ -n "$peak" ]; then
    awk -v p="$peak" -v h="${hwm_kb:-0}" -v g="$RSS_GOAL_MB" -v m="$mode" 'BEGIN {
      printf "%-9s Portcullis peak VmRSS %.1f MB, VmHWM %.1f MB (goal < %d MB: %s)\n",
        m, p / 1024, h / 1024, g, (h / 1024 < g && p / 1024 < g ? "met" : "NOT met") }'
  fi
done
if [ "$(load1 | cut -d. -f1)" -ge 1 ]; then
  echo "NOTE: the load average was $(load1) at the end: other work shared the cores, the figures are noisy."
fi
if [ "${#INVALID[@]}" -gt 0 ]; then
  echo
  printf '!!! INVALID: %s\n' "${INVALID[@]}"
  die "${#INVALID[@]} run(s) had non-2xx responses; their figures are marked INVALID above"
fi
