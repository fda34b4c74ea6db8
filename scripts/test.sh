#!/usr/bin/env bash
# The whole test suite, as the README's Quickstart runs it and CI calls it. Starts throwaway
# PostgreSQL and Redis when DATABASE_URL / REDIS_URL are unset (scripts/services.sh), builds
# the binaries the black-box tests run, installs what the browser and Node tests need when it
# is missing (Debian's chromium, chromium-driver and fonts-dejavu-core as root; the e2e/node
# packages with npm ci), and gives the cluster suites (e2e/tests/cluster) a real control
# plane: the test cluster built from e2e/cluster with Go (scripts/testcluster.sh), started
# once for the whole run and stopped at exit. A KUBECONFIG set by the caller points
# the cluster suites at that cluster instead. Without Go the cluster suites skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
source scripts/testcluster.sh

test_cleanup() {
  testcluster_stop
  services_stop
}

ensure_services
trap test_cleanup EXIT

# The black-box tests in e2e/ run the real binaries, which cargo builds only on request.
cargo build --locked --workspace --bins

# Helm's engine renders the charts the RBAC test and the cluster suites apply.
if ! python3 -c 'import helm_python, yaml' 2>/dev/null; then
  echo "test: installing helm-python-sdk and pyyaml (PyPI)" >&2
  python3 -m pip install --quiet helm-python-sdk pyyaml
fi
# Python's `cryptography` is the independent Fernet implementation the sealed crate's
# interoperability test decrypts with (required under CI).
if ! python3 -c 'import cryptography.fernet' 2>/dev/null; then
  echo "test: installing cryptography (PyPI) for the Fernet interoperability test" >&2
  python3 -m pip install --quiet cryptography
fi

# The browser test (e2e/tests/browser) drives headless Chromium through chromedriver; without
# them it says SKIPPED and passes.
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ] ||
  ! [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing chromium, chromium-driver and fonts-dejavu-core (Debian) for the browser test" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null || true
  fi
  if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    echo "test: *** SKIPPED: no chromium/chromedriver (installing needs root and apt-get)${CI:+ in CI}: the browser test will pass without running ***" >&2
  fi
fi

# The NGINX test (e2e/tests/nginx.rs) runs a real NGINX, as the current user, in front of the
# auth server with the configuration `nginx-config` generates; without it that test says
# SKIPPED and passes. Only the binary is used: Debian's package would start its own service on
# port 80, which is stopped again (policy-rc.d usually forbids the start in containers anyway).
if ! [ -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing nginx (Debian) for the NGINX test" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null || true
    if command -v service >/dev/null; then service nginx stop >/dev/null 2>&1 || true; fi
  fi
  if ! [ -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null 2>&1; then
    echo "test: *** SKIPPED: no nginx (installing needs root and apt-get)${CI:+ in CI}: the NGINX test will pass without running ***" >&2
  fi
fi

# axe-core (the browser test's accessibility check), openid-client (the Node RP test) and
# oidc-provider with its Node 22 (the upstream provider of e2e/tests/upstream.rs), pinned by
# e2e/node/package-lock.json; without them those checks say SKIPPED.
if [ ! -f e2e/node/node_modules/.package-lock.json ] ||
  [ e2e/node/package-lock.json -nt e2e/node/node_modules/.package-lock.json ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "test: npm ci in e2e/node" >&2
    (cd e2e/node && npm ci --no-audit --no-fund --loglevel=error) ||
      echo "test: *** npm ci failed: the axe-core check and the Node RP and upstream tests will be SKIPPED ***" >&2
  else
    echo "test: *** no npm: the axe-core check and the Node RP and upstream tests will be SKIPPED ***" >&2
  fi
fi

if [ -n "${KUBECONFIG:-}" ]; then
  echo "test: cluster suites against the cluster of KUBECONFIG=$KUBECONFIG" >&2
else
  if ! command -v go >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: Go is missing; trying Debian's golang-go" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null || true
  fi
  status=0
  testcluster_build || status=$?
  case $status in
    0) testcluster_start ;;
    3) export PORTCULLIS_TESTCLUSTER_SKIP="no usable Go toolchain to build the test control plane (see the message above scripts/test.sh printed)" ;;
    *) exit "$status" ;;
  esac
fi

# --no-fail-fast: a CI log shows every failing suite, not only the first.
cargo test --locked --workspace --no-fail-fast
