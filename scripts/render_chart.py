#!/usr/bin/env python3
"""Prints a Helm chart rendered by Helm's own engine (PyPI helm-python-sdk, no helm binary) as
one multi-document YAML, templates in name order: what `helm template` would print. The tests
apply these objects to the test cluster, so the RBAC the operator runs with is the chart's.

usage: render_chart.py CHART_DIR [--values FILE] [--release NAME] [--namespace NS]"""

import argparse
import sys

import helm_python as helm
import yaml


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart")
    parser.add_argument("--values", help="a values file (default: the chart's defaults)")
    parser.add_argument("--release", default="portcullis")
    parser.add_argument("--namespace", default="portcullis-system")
    args = parser.parse_args()
    values = {}
    if args.values:
        with open(args.values, encoding="utf-8") as file:
            values = yaml.safe_load(file) or {}
    with helm.Chart.load(args.chart) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name=args.release, namespace=args.namespace)
    for template in sorted(manifests):
        text = manifests[template].strip()
        if text:
            print(f"---\n# Source: {template}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
