#!/usr/bin/env bash
# Starts the auth server locally with everything it needs: throwaway PostgreSQL and Redis when
# DATABASE_URL / REDIS_URL are unset, dev secrets generated into .portcullis/secrets, mail
# written to .portcullis/mail, and the dev realm in config/dev/realm.yaml. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services

cargo build --locked -p portcullis-authserver
target/debug/portcullis-authserver serve --dev \
  --config config/dev/realm.yaml \
  --listen "${PORTCULLIS_LISTEN:-127.0.0.1:8080}" \
  --admin-listen "${PORTCULLIS_ADMIN_LISTEN:-127.0.0.1:9090}" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; services_stop' EXIT INT TERM
wait $server
