"""template.yaml's side of the remote diagnosis (``rotation doctor --remote``): the RemoteDiagnosis
parameter, the environment variable it sets, and that switching it on opens nothing else (who may
invoke stays Lambda's resource policy plus the caller's IAM)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rotation import handler
from rotation.diagnosis import remote
from tests.conftest import ROOT, FakeLambdaContext
from tests.unit.test_template import (
    SECRET_ARN,
    TEMPLATE,
    deployed,
    failed_rules,
    findings,
    parameter_set,
    with_defaults,
)


def test_the_parameter_is_off_by_default_and_says_what_it_does() -> None:
    # GIVEN the RemoteDiagnosis parameter
    spec = TEMPLATE["Parameters"]["RemoteDiagnosis"]

    # WHEN its definition is read / THEN it is a true/false switch, off unless asked for, whose
    # description says what it enables, that it changes nothing, and who may invoke
    assert spec["Type"] == "String"
    assert spec["AllowedValues"][:2] == ["true", "false"]
    assert spec["Default"] == "false"
    description = " ".join(spec["Description"].split())
    for said in ("rotation doctor SECRET_ID --remote", "verdicts and fixes only",
                 "never a secret value", "It changes nothing", "lambda:InvokeFunction"):
        assert said in description, said


def test_the_parameter_is_in_a_console_group() -> None:
    # GIVEN the console's parameter groups / WHEN searched / THEN RemoteDiagnosis is in one
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    holding = [g["Label"]["default"] for g in groups if "RemoteDiagnosis" in g["Parameters"]]
    assert holding == ["Schedule, logs and alarms"]


#: the template's spellings of yes (its flag parameters share one AllowedValues list)
YES = {"true", "yes", "y", "1"}


@pytest.mark.parametrize("value", TEMPLATE["Parameters"]["RemoteDiagnosis"]["AllowedValues"])
def test_the_function_gets_the_switch_and_reads_it_as_meant(value: str) -> None:
    # GIVEN a stack deployed with RemoteDiagnosis=value
    resources = deployed(SecretArns=SECRET_ARN, RemoteDiagnosis=value)["Resources"]
    variables = resources["RotationFunction"]["Properties"]["Environment"]["Variables"]

    # WHEN the function's environment is read / THEN it passes the parameter through, and the
    # code reads each allowed value as the parameter means it
    assert variables[remote.ENABLE] == {"Ref": remote.TEMPLATE_PARAMETER}
    assert remote.enabled({remote.ENABLE: value}) is (value.lower() in YES)


def test_switching_it_on_opens_no_other_door() -> None:
    # GIVEN the stack with RemoteDiagnosis off and on
    off = deployed(SecretArns=SECRET_ARN)["Resources"]
    on = deployed(SecretArns=SECRET_ARN, RemoteDiagnosis="true")["Resources"]

    # WHEN their resources are compared (the function's environment aside)
    def without_env(resources: dict[str, Any]) -> str:
        copy = json.loads(json.dumps(resources))
        copy["RotationFunction"]["Properties"]["Environment"]["Variables"].pop(remote.ENABLE)
        return json.dumps(copy, sort_keys=True)

    # THEN they are the same: the one invoke permission (Secrets Manager), the same role
    assert without_env(on) == without_env(off)
    permissions = [r["Properties"] for r in on.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert [p["Principal"] for p in permissions] == ["secretsmanager.amazonaws.com"]


def test_the_template_lints_clean_with_it_on() -> None:
    # GIVEN a copy of the template with RemoteDiagnosis=true (and a VPC: the function's seat)
    values = {**parameter_set("postgres", "single-user", True, 0), "RemoteDiagnosis": "true"}

    # WHEN cfn-lint checks it and the Rules are evaluated / THEN nothing is reported
    assert findings(with_defaults(**values)) == []
    assert failed_rules(**values) == []


def test_the_sample_event_is_a_diagnosis_event(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN examples/events/diagnosis.json (for `sam local invoke -e`) and the switch off
    sample = ROOT / "examples" / "events" / "diagnosis.json"
    event = json.loads(sample.read_text(encoding="utf-8"))
    monkeypatch.delenv(remote.ENABLE, raising=False)

    # WHEN the handler gets it
    answer = handler.lambda_handler(event, FakeLambdaContext())

    # THEN it is taken for a diagnosis (refused: off), with nothing built to read with
    assert set(event) == {"RotationDiagnosis"}
    assert answer["RotationDiagnosis"]["error"]["type"] == remote.REFUSED
    assert handler._app is None
