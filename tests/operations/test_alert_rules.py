"""The Prometheus alerting rules in deploy/: well-formed, and naming only metrics Falcon exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from falcon import metrics

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus-rules.yml"


def exported() -> set[str]:
    names = {"falcon_runs_in_progress"}  # read from the database at scrape time
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            base = value._name
            if value._type == "counter":
                names.add(f"{base}_total")
            elif value._type == "histogram":
                names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
            else:
                names.add(base)
    return names


def test_every_rule_is_complete_and_names_real_metrics():
    document = yaml.safe_load(RULES.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert len(rules) >= 10
    known = exported()
    alerts = set()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Falcon[A-Za-z]+", rule["alert"]), rule["alert"]
        assert rule["alert"] not in alerts
        alerts.add(rule["alert"])
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])
        used = set(re.findall(r"\bfalcon_[a-z_]+", rule["expr"]))
        assert used, rule["alert"]
        assert used <= known, (rule["alert"], used - known)
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    # the families the issue names each have an alert
    named = " ".join(rule["expr"] for rule in rules)
    for family in ("runs_finished", "queue_wait", "llm_calls", "webhook", "sweeper", "notification"):
        assert f"falcon_{family}" in named or family in named, family
