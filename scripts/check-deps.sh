#!/usr/bin/env bash
# One TLS stack: rustls with ring. Fails when the lock file pulls in another one.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='^name = "(openssl|openssl-sys|native-tls|aws-lc-rs|aws-lc-sys|boring|boring-sys)"$'
if found=$(grep -E "$forbidden" Cargo.lock); then
  echo "check-deps: forbidden TLS crates in Cargo.lock (use rustls with ring):" >&2
  echo "$found" >&2
  echo "see which crate pulls them in with: cargo tree -i <name>" >&2
  exit 1
fi
echo "check-deps: one TLS stack (rustls + ring)"
