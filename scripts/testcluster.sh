#!/usr/bin/env bash
# The test control plane (e2e/cluster, `portcullis-testcluster`): build it, start it in the
# background, stop it. Sourced by scripts/test.sh for the cluster suites; run directly for
# manual use:
#
#   scripts/testcluster.sh build          build target/testcluster/portcullis-testcluster
#   scripts/testcluster.sh run [ARGS...]  build, then run it in the foreground (Ctrl-C stops)
#
# Functions (sourced):
#   testcluster_build   builds with Go's build cache (a warm build takes seconds); returns 3,
#                       after a loud message, when Go is missing or too old for e2e/cluster/go.mod
#   testcluster_start [ARGS...]
#                       starts it with a run dir under a new temp dir, waits up to 120 s for it
#                       to be ready, exports KUBECONFIG and PORTCULLIS_TESTCLUSTER_DIR; on failure
#                       prints the tail of the component logs and returns 1
#   testcluster_stop    SIGTERM, wait, SIGKILL as a last resort; removes the temp dir and
#                       restores KUBECONFIG

TESTCLUSTER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESTCLUSTER_BIN="$TESTCLUSTER_ROOT/target/testcluster/portcullis-testcluster"
# The image the operator's pods use (operator/src/resources/workload.rs DEFAULT_IMAGE); its
# run-to-completion pods (the retention Jobs) run this binary.
TESTCLUSTER_IMAGE="ghcr.io/portcullis-dev/portcullis"
TESTCLUSTER_AUTHSERVER="$TESTCLUSTER_ROOT/target/debug/portcullis-authserver"
TESTCLUSTER_READY_TIMEOUT=120

testcluster_log() { echo "testcluster: $*" >&2; }

testcluster_loud() {
  {
    echo "################################################################################"
    echo "## testcluster: $*"
    echo "## The cluster suites need Go to build e2e/cluster (the test control plane)."
    echo "################################################################################"
  } >&2
}

testcluster_elapsed() {
  # Seconds since $1 (an EPOCHREALTIME value), one decimal.
  awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

testcluster_build() {
  if ! command -v go >/dev/null 2>&1 || ! go version >/dev/null 2>&1; then
    testcluster_loud "Go is not installed (no working 'go' on PATH)"
    return 3
  fi
  local need have
  need=$(sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$TESTCLUSTER_ROOT/e2e/cluster/go.mod")
  have=$(GOTOOLCHAIN=local go env GOVERSION | sed 's/^go//; s/[^0-9.].*//')
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
    testcluster_loud "Go $have is older than the $need that e2e/cluster/go.mod needs"
    return 3
  fi
  local began=$EPOCHREALTIME version ldflags
  # The release this binary reports on /version, as the Kubernetes build stamps it.
  version=$(cd "$TESTCLUSTER_ROOT/e2e/cluster" && GOTOOLCHAIN=local go list -m -f '{{.Version}}' k8s.io/kubernetes) || return 1
  local minor=${version#v1.}
  minor=${minor%%.*}
  ldflags="-X k8s.io/component-base/version.gitVersion=$version"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  mkdir -p "$(dirname "$TESTCLUSTER_BIN")"
  testcluster_log "building portcullis-testcluster (Kubernetes $version, Go $have)"
  if ! (cd "$TESTCLUSTER_ROOT/e2e/cluster" &&
        GOTOOLCHAIN=local go build -trimpath -ldflags "$ldflags" -o "$TESTCLUSTER_BIN" .); then
    testcluster_log "build failed"
    return 1
  fi
  testcluster_log "built $TESTCLUSTER_BIN in $(testcluster_elapsed "$began")s"
}

testcluster_logs_tail() {
  local dir=$1 f
  for f in "$TESTCLUSTER_TMP/stderr" "$dir"/apiserver.log "$dir"/controller-manager.log \
           "$dir"/etcd.log "$dir"/node.log; do
    [ -s "$f" ] || continue
    echo "---- tail of $f" >&2
    tail -n 20 "$f" >&2
  done
}

testcluster_start() {
  if [ ! -x "$TESTCLUSTER_BIN" ]; then
    testcluster_log "$TESTCLUSTER_BIN is not built (testcluster_build)"
    return 1
  fi
  if [ -n "${TESTCLUSTER_PID:-}" ]; then
    testcluster_log "already running (pid $TESTCLUSTER_PID)"
    return 1
  fi
  TESTCLUSTER_TMP=$(mktemp -d /tmp/portcullis-testcluster.XXXXXX)
  local dir="$TESTCLUSTER_TMP/run" began=$EPOCHREALTIME
  if [ ! -x "$TESTCLUSTER_AUTHSERVER" ]; then
    testcluster_log "note: $TESTCLUSTER_AUTHSERVER is not built yet; Jobs of $TESTCLUSTER_IMAGE fail to start until it is"
  fi
  "$TESTCLUSTER_BIN" --dir "$dir" --image-binary "$TESTCLUSTER_IMAGE=$TESTCLUSTER_AUTHSERVER" "$@" \
    >"$TESTCLUSTER_TMP/stdout" 2>"$TESTCLUSTER_TMP/stderr" &
  TESTCLUSTER_PID=$!
  local line="" deadline=$((SECONDS + TESTCLUSTER_READY_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    line=$(grep -m 1 '^portcullis-testcluster ready kubeconfig=' "$TESTCLUSTER_TMP/stdout" || true)
    [ -n "$line" ] && break
    kill -0 "$TESTCLUSTER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$line" ]; then
    if kill -0 "$TESTCLUSTER_PID" 2>/dev/null; then
      testcluster_log "not ready within ${TESTCLUSTER_READY_TIMEOUT}s"
    else
      testcluster_log "exited before it was ready"
    fi
    testcluster_logs_tail "$dir"
    testcluster_stop
    return 1
  fi
  TESTCLUSTER_PREVIOUS_KUBECONFIG=${KUBECONFIG-__unset__}
  export KUBECONFIG="${line#*kubeconfig=}"
  export PORTCULLIS_TESTCLUSTER_DIR="$dir"
  testcluster_log "ready after $(testcluster_elapsed "$began")s (pid $TESTCLUSTER_PID, KUBECONFIG=$KUBECONFIG)"
}

testcluster_stop() {
  if [ -z "${TESTCLUSTER_PID:-}" ]; then
    return 0
  fi
  local pid=$TESTCLUSTER_PID
  unset TESTCLUSTER_PID
  if kill -TERM "$pid" 2>/dev/null; then
    local i
    for ((i = 0; i < 300; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      testcluster_log "still running 30s after SIGTERM; killing pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  if [ -n "${TESTCLUSTER_TMP:-}" ]; then
    rm -rf "$TESTCLUSTER_TMP"
    unset TESTCLUSTER_TMP
  fi
  unset PORTCULLIS_TESTCLUSTER_DIR
  if [ -n "${TESTCLUSTER_PREVIOUS_KUBECONFIG:-}" ]; then
    if [ "$TESTCLUSTER_PREVIOUS_KUBECONFIG" = __unset__ ]; then
      unset KUBECONFIG
    else
      export KUBECONFIG="$TESTCLUSTER_PREVIOUS_KUBECONFIG"
    fi
    unset TESTCLUSTER_PREVIOUS_KUBECONFIG
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    build)
      testcluster_build
      ;;
    run)
      shift
      testcluster_build
      exec "$TESTCLUSTER_BIN" --image-binary "$TESTCLUSTER_IMAGE=$TESTCLUSTER_AUTHSERVER" "$@"
      ;;
    *)
      echo "usage: $0 build | run [--dir DIR] [--image-binary IMAGE=PATH]... [--node-name NAME] [-v]" >&2
      exit 2
      ;;
  esac
fi
