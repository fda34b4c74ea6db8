#!/usr/bin/env bash
# Benchmarks that print figures (never assert timings). Starts throwaway PostgreSQL and Redis
# when DATABASE_URL / REDIS_URL are unset.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services
cargo bench --locked -p portcullis-ratelimit --bench ratelimit
cargo bench --locked -p portcullis-authserver --bench login
cargo bench --locked -p portcullis-authserver --bench ratelimit
cargo bench --locked -p portcullis-operator --bench realms
# OIDC grants and introspections under wrk, beside Node's oidc-provider (installs wrk, npm ci).
scripts/bench-oidc.sh
