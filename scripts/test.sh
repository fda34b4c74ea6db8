#!/usr/bin/env bash
# The whole test suite, as the README's Quickstart runs it and CI calls it. Starts throwaway
# PostgreSQL and Redis when DATABASE_URL / REDIS_URL are unset (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services

# The black-box tests in e2e/ run the real binaries, which cargo builds only on request.
cargo build --locked --workspace --bins
cargo test --locked --workspace
