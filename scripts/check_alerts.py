#!/usr/bin/env python3
"""Checks what promtool cannot: every rule of config/prometheus/alerts.yaml has a runbook_url
of the form <workspace repository>/blob/main/docs/runbooks/<alert>.md, that runbook exists with
the five sections, and config/prometheus/alerts_test.yaml has a case in which the alert fires
and one in which it is expected quiet (promtool passes a file that never mentions an alert).
Also refuses runbooks and test cases for alerts that do not exist, so none goes stale."""

import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "config/prometheus/alerts.yaml"
TESTS = ROOT / "config/prometheus/alerts_test.yaml"
RUNBOOKS = ROOT / "docs/runbooks"
SECTIONS = ["What it means", "How to confirm", "What to do", "How to recover and close", "Escalation"]


def runbook_base() -> str:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    return cargo["workspace"]["package"]["repository"].rstrip("/") + "/blob/main/docs/runbooks/"


def main() -> int:
    failures = []
    base = runbook_base()
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    names = [rule["alert"] for rule in rules if "alert" in rule]
    for name in sorted({n for n in names if names.count(n) > 1}):
        failures.append(f"{ALERTS.name}: alert {name} is defined more than once")

    for rule in rules:
        name = rule.get("alert")
        if name is None:
            continue
        url = (rule.get("annotations") or {}).get("runbook_url")
        expected = f"{base}{name}.md"
        if not url:
            failures.append(f"{ALERTS.name}: {name} has no runbook_url annotation")
        elif url != expected:
            failures.append(f"{ALERTS.name}: {name} runbook_url is {url}, expected {expected}")
        runbook = RUNBOOKS / f"{name}.md"
        if not runbook.is_file():
            failures.append(f"{name}: runbook {runbook.relative_to(ROOT)} does not exist")
            continue
        headings = re.findall(r"^## (.+?)\s*$", runbook.read_text(), re.MULTILINE)
        missing = [s for s in SECTIONS if s not in headings]
        if missing:
            failures.append(f"{runbook.relative_to(ROOT)}: missing section(s) {', '.join(missing)}")

    for runbook in sorted(RUNBOOKS.glob("*.md")):
        if runbook.name != "README.md" and runbook.stem not in names:
            failures.append(f"{runbook.relative_to(ROOT)}: no alert of that name in {ALERTS.name}")

    tests = yaml.safe_load(TESTS.read_text())
    if ALERTS.name not in (tests.get("rule_files") or []):
        failures.append(f"{TESTS.name}: rule_files does not load {ALERTS.name}")
    firing, quiet = set(), set()
    for group in tests.get("tests") or []:
        for case in group.get("alert_rule_test") or []:
            name = case.get("alertname")
            if name not in names:
                failures.append(f"{TESTS.name}: a case at {case.get('eval_time')} tests {name}, which is not an alert")
            (firing if case.get("exp_alerts") else quiet).add(name)
    for name in names:
        if name not in firing:
            failures.append(f"{TESTS.name}: no case expects {name} to fire")
        if name not in quiet:
            failures.append(f"{TESTS.name}: no case expects {name} to stay quiet (exp_alerts: [])")

    for failure in failures:
        print(f"check_alerts: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"check_alerts: {len(names)} alerts, each with a runbook, a firing case and a quiet case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
