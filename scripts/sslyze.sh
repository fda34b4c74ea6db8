#!/usr/bin/env bash
# TLS scan of a running server with sslyze: every protocol from SSL 2.0 to TLS 1.3 is tried
# with every cipher suite sslyze knows, and the result is judged as the public listener
# promises: nothing below TLS 1.2 accepted, and every accepted suite forward secret ((EC)DHE)
# with an AEAD cipher (no CBC, no RSA key exchange, no NULL, EXPORT, RC4, DES or 3DES, no
# anonymous suites). Prints a summary either way.
#
#   scripts/sslyze.sh HOST:PORT          e.g. scripts/sslyze.sh 127.0.0.1:8443
#
# The pinned sslyze is installed from PyPI into target/sslyze-venv on first use (it brings its
# own OpenSSL builds, legacy protocols included, in nassl: nothing of it reaches our binaries).
#
# Exit status: 0 when the scan found nothing weak, 1 when it did (or could not scan the
# server), 3 when python3 or the install is unavailable (callers skip, saying so).
set -uo pipefail

SSLYZE_VERSION=6.3.1
target=${1:?usage: scripts/sslyze.sh HOST:PORT}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${SSLYZE_VENV:-$root/target/sslyze-venv}

unavailable() { echo "sslyze unavailable: $*" >&2; exit 3; }

command -v python3 >/dev/null 2>&1 || unavailable "python3 not found"
if ! "$venv/bin/python" -m sslyze --help >/dev/null 2>&1 \
  || ! "$venv/bin/pip" show sslyze 2>/dev/null | grep -qx "Version: $SSLYZE_VERSION"; then
  python3 -m venv "$venv" >/dev/null 2>&1 || unavailable "cannot create a venv in $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "sslyze==$SSLYZE_VERSION" \
    || unavailable "pip could not install sslyze $SSLYZE_VERSION"
fi

json=$(mktemp "${TMPDIR:-/tmp}/sslyze.XXXXXX.json")
trap 'rm -f "$json"' EXIT
"$venv/bin/python" -m sslyze --quiet --mozilla_config=disable \
  --sslv2 --sslv3 --tlsv1 --tlsv1_1 --tlsv1_2 --tlsv1_3 \
  --json_out="$json" "$target" \
  || { echo "sslyze could not scan $target" >&2; exit 1; }

"$venv/bin/python" - "$json" <<'PY'
import json, re, sys

report = json.load(open(sys.argv[1]))
results = report.get("server_scan_results") or []
if len(results) != 1 or results[0].get("scan_status") != "COMPLETED":
    print(f"no completed scan: {[r.get('scan_status') for r in results]}")
    sys.exit(1)
scan = results[0]["scan_result"]
legacy = ["ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"]
current = ["tls_1_2", "tls_1_3"]
findings, accepted_total = [], 0

def weak(name, ephemeral):
    reasons = []
    if re.search(r"NULL|EXPORT|RC4|_DES_|3DES|_anon_|_CBC", name):
        reasons.append("weak cipher")
    if not re.search(r"_GCM_|CHACHA20_POLY1305|_CCM", name):
        reasons.append("not AEAD")
    if not (name.startswith("TLS_AES_") or name.startswith("TLS_CHACHA20_")
            or name.startswith("TLS_ECDHE_") or name.startswith("TLS_DHE_")):
        reasons.append("no ephemeral key exchange")
    if ephemeral is None and not name.startswith(("TLS_AES_", "TLS_CHACHA20_")):
        reasons.append("no ephemeral key seen")
    return reasons

for protocol in legacy + current:
    attempt = scan.get(f"{protocol}_cipher_suites") or {}
    if attempt.get("status") != "COMPLETED":
        findings.append(f"{protocol}: not scanned ({attempt.get('status')}: {attempt.get('error_reason')})")
        continue
    accepted = attempt["result"]["accepted_cipher_suites"]
    accepted_total += len(accepted)
    names = [a["cipher_suite"]["name"] for a in accepted]
    print(f"{protocol}: {len(names)} accepted {names}")
    for a in accepted:
        name = a["cipher_suite"]["name"]
        if protocol in legacy:
            findings.append(f"{protocol} accepted ({name})")
        else:
            for reason in weak(name, a.get("ephemeral_key")):
                findings.append(f"{protocol} {name}: {reason}")
if accepted_total == 0:
    findings.append("no suite accepted at all: the scan did not reach a TLS server")
if findings:
    print("FINDINGS:")
    for f in findings:
        print(f"  - {f}")
    sys.exit(1)
print("sslyze: nothing below TLS 1.2, every accepted suite forward secret with an AEAD cipher")
PY
