#!/usr/bin/env bash
# Schema-driven fuzzing of the auth server's public API: schemathesis reads /openapi.json from a
# running server, sends what the document allows and what it forbids, and checks that every
# answer is one the document names, in its media type and shape, and never a 5xx.
#
#   scripts/schemathesis.sh BASE_URL [EXAMPLES]      e.g. scripts/schemathesis.sh http://127.0.0.1:8080 10
#
# A first pass runs without credentials over every operation (authenticated ones must refuse
# it). With SCHEMATHESIS_BEARER set, a second pass sends `Authorization: Bearer ...` to the
# caller's own routes (/api/v1/me*, /api/v1/csrf), leaving out logout and password change,
# which would end the very session it uses. SCHEMATHESIS_SEED (default 1) makes the runs
# repeatable. The pinned schemathesis is installed from PyPI into target/schemathesis-venv on
# first use.
#
# Exit status: 0 when every check passed, 1 when one failed, 3 when python3 or the install is
# unavailable (callers skip, saying so).
#
# Not checked: positive_data_acceptance. The document cannot express the realm's password
# policy or address rules, so well-typed data the server refuses by those rules is not a
# disagreement. Nor negative_data_rejection at POST /oauth2/logout (see below).
set -uo pipefail

SCHEMATHESIS_VERSION=4.32.5
base=${1:?usage: scripts/schemathesis.sh BASE_URL [EXAMPLES]}
examples=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${SCHEMATHESIS_VENV:-$root/target/schemathesis-venv}

unavailable() { echo "schemathesis unavailable: $*" >&2; exit 3; }

command -v python3 >/dev/null 2>&1 || unavailable "python3 not found"
if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$venv" >/dev/null 2>&1 || unavailable "cannot create a venv in $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    || unavailable "pip could not install schemathesis $SCHEMATHESIS_VERSION"
fi

# schemathesis keeps a cache in the working directory: keep it under target/.
work=$root/target/schemathesis-work
mkdir -p "$work" && cd "$work" || unavailable "cannot use $work"

# One worker: with two, hypothesis sometimes fails inside schemathesis with "AST constructor
# recursion depth mismatch" (Python's ast module used from two threads), a tool error the
# test would report as a disagreement. The run takes no longer.
run() {
  "$venv/bin/st" run "$base/openapi.json" \
    --url "$base" \
    --max-examples "$examples" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --request-timeout 10 \
    --workers 1 \
    --no-color \
    "$@"
}

failed=0
echo "== schemathesis: every operation, no credentials"
run --exclude-name "POST /oauth2/logout" --exclude-checks positive_data_acceptance || failed=1
# RP-initiated logout takes only optional parameters and ignores unknown ones (OpenID Connect
# RP-Initiated Logout 1.0 §2), so no form body is invalid there: negative_data_rejection cannot
# apply. Every other check runs.
echo "== schemathesis: the end-session endpoint"
run --include-name "POST /oauth2/logout" \
  --exclude-checks positive_data_acceptance,negative_data_rejection || failed=1
if [ -n "${SCHEMATHESIS_BEARER:-}" ]; then
  echo "== schemathesis: the caller's own routes, with a bearer token"
  # ignored_auth is left out here: the fixed bearer token is valid, whatever else is sent.
  run --header "Authorization: Bearer $SCHEMATHESIS_BEARER" \
    --generation-with-security-parameters false \
    --include-path-regex '^/api/v1/(me|csrf)' \
    --exclude-path /api/v1/me/password \
    --exclude-checks positive_data_acceptance,ignored_auth || failed=1
fi
exit "$failed"
