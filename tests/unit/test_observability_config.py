"""The template's alarm and Logs Insights queries match what the code emits and what the
repository ships (observability/*.logsinsights)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode_str

from rotation.metrics import DEFAULT_NAMESPACE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    data, matches = decode_str((ROOT / "template.yaml").read_text())
    assert not matches
    return dict(data)


def test_queries_in_template_are_the_shipped_files(template: dict[str, Any]) -> None:
    shipped = {p.stem: p.read_text() for p in (ROOT / "observability").glob("*.logsinsights")}
    in_template = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Logs::QueryDefinition":
            name = resource["Properties"]["Name"]["Fn::Sub"].split("/", 1)[1]
            in_template[name] = resource["Properties"]["QueryString"]
    assert in_template == shipped
    assert len(shipped) >= 3


def test_queries_use_fields_the_logs_carry() -> None:
    # Fields the dispatcher writes on every step line (rotation/dispatcher.py).
    logged = {"secret_arn", "step", "outcome", "token_prefix", "cause", "fix", "error_class",
              "duration_ms", "engine", "strategy"}
    for path in (ROOT / "observability").glob("*.logsinsights"):
        fields = set(re.findall(r"\b([a-z]+_[a-z_]+|step|outcome|cause|fix|engine|strategy)\b",
                                path.read_text()))
        aliases = set(re.findall(r"\bas ([a-z_]+)", path.read_text()))
        assert fields - aliases - logged == set(), path.name


def test_failure_alarm_watches_the_metric_the_code_emits(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["RotationFailedAlarm"]["Properties"]
    assert alarm["MetricName"] == "RotationFailed"
    assert alarm["Namespace"] == {"Ref": "MetricsNamespace"}
    assert template["Parameters"]["MetricsNamespace"]["Default"] == DEFAULT_NAMESPACE
    env = template["Resources"]["RotationFunction"]["Properties"]["Environment"]["Variables"]
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}
    assert alarm["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]
