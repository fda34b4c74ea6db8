#!/usr/bin/env python3
"""Renders the Helm charts with Helm's own engine (PyPI helm-python-sdk, no helm binary) with
default and full values, lints them, checks the values against values.schema.json, and
validates every rendered object strictly against the Kubernetes OpenAPI schema of the version
we pin (PyPI kubernetes-validate). Objects of CRDs Kubernetes does not know (ServiceMonitor)
are checked for their identity fields only, and said so."""

import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

KUBERNETES = "1.33.0"
ROOT = Path(__file__).resolve().parent.parent
CHARTS = {
    "portcullis-operator": {
        "default": {},
        "full": yaml.safe_load((ROOT / "charts/portcullis-operator/ci/full-values.yaml").read_text()),
    },
    "portcullis-crds": {"default": {}},
}
FOREIGN_KINDS = {"ServiceMonitor"}


def main() -> int:
    failures = []
    for chart_name, cases in CHARTS.items():
        path = ROOT / "charts" / chart_name
        lint = helm.lint(str(path))
        failures += [f"{chart_name}: lint: {e}" for e in lint.get("errors", [])]
        for case, values in cases.items():
            with helm.Chart.load(str(path)) as chart:
                chart.validate_schema(values)
                manifests = chart.render(values, name="portcullis", namespace="portcullis-system")
            objects = 0
            for template, text in manifests.items():
                for document in yaml.safe_load_all(text):
                    if not document:
                        continue
                    objects += 1
                    kind = document.get("kind")
                    name = document.get("metadata", {}).get("name")
                    where = f"{chart_name} ({case}) {template}: {kind} {name}"
                    if not (document.get("apiVersion") and kind and name):
                        failures.append(f"{where}: apiVersion, kind and metadata.name are required")
                    elif kind in FOREIGN_KINDS:
                        print(f"check-chart: {where}: {kind} is not a Kubernetes kind; identity checked only")
                    else:
                        try:
                            kubernetes_validate.validate(document, KUBERNETES, strict=True)
                        except kubernetes_validate.ValidationError as error:
                            failures.append(f"{where}: {error.message} at {'.'.join(map(str, error.path))}")
            print(f"check-chart: {chart_name} ({case} values): {objects} objects rendered and validated")
            if objects == 0:
                failures.append(f"{chart_name} ({case}): rendered nothing")
    for failure in failures:
        print(f"check-chart: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
