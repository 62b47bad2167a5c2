"""What the person on call finds in CloudWatch: one JSON log line per failure naming the cause
category and the fix, and EMF metric documents for every step, failed or not."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rotation import handler
from rotation.errors import (
    ConnectError,
    DbTimeoutError,
    PrivilegeError,
    RotationError,
    TlsError,
)
from tests.conftest import LeakScan, LogCapture
from tests.rig import Rig


def emf_documents(out: str) -> list[dict[str, Any]]:
    docs = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def metric_names(doc: dict[str, Any]) -> list[str]:
    return [m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]


def test_successful_rotation_emits_one_outcome_metric_per_step_and_rotation(
        rig: Rig, capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a clean rotation
    report = rig.service.rotate(rig.arn, rig.invoke)
    out = capsys.readouterr().out
    leak_scan.add_text(out)

    # THEN each step emitted StepSucceeded once, and the rotation RotationSucceeded once
    assert report.succeeded
    docs = emf_documents(out)
    names = [name for doc in docs for name in metric_names(doc)]
    assert names.count("StepSucceeded") == 4
    assert names.count("RotationSucceeded") == 1
    assert "StepFailed" not in names
    assert "RotationFailed" not in names
    steps = sorted(doc["step"] for doc in docs if "StepSucceeded" in metric_names(doc))
    assert steps == sorted(["createSecret", "setSecret", "testSecret", "finishSecret"])
    step_doc = next(doc for doc in docs if "StepSucceeded" in metric_names(doc))
    assert step_doc["engine"] == "fake"
    assert step_doc["strategy"] == "single-user"
    assert step_doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "SecretsRotation"
    assert step_doc["secret_arn"] == rig.arn


class _Ctx:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def _fail_with_access_denied(rig: Rig) -> None:
    def deny(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException",
                                     "Message": "not authorized"}}, "GetSecretValue")

    handler.get_app().secrets.client.meta.events.register_first(
        "before-call.secrets-manager.GetSecretValue", deny)


CAUSES: list[tuple[str, str, Any]] = [
    # (cause category in the log, step that fails, how to make it fail)
    ("network", "setSecret", lambda rig: rig.db.fail_next.update(
        connect=ConnectError("cannot connect to db:5432", hint="check security groups"))),
    ("timeout", "setSecret", lambda rig: rig.db.fail_next.update(
        connect=DbTimeoutError("connecting to db:5432 timed out", hint="check the subnets"))),
    ("tls", "setSecret", lambda rig: rig.db.fail_next.update(
        connect=TlsError("TLS to db:5432 failed", hint="set ROTATION_CA_BUNDLE"))),
    ("authentication", "setSecret", lambda rig: rig.db.passwords.update(app_user="elsewhere-1")),
    ("privilege", "setSecret", lambda rig: rig.db.fail_next.update(
        set_password=PrivilegeError("permission denied", hint="grant it"))),
    ("aws permission", "createSecret", _fail_with_access_denied),
    ("secret format", "createSecret", "bad-secret"),
    ("staging labels", "setSecret", "not-pending"),
    ("timeout", "createSecret", "no-time"),
]


@pytest.mark.parametrize(("cause", "step", "breaker"), CAUSES,
                         ids=[f"{c[0]}-{c[1]}" for c in CAUSES])
def test_each_failure_cause_is_named_with_its_fix(
        rig_factory: Any, cause: str, step: str, breaker: Any, log_capture: LogCapture,
        capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> None:
    # GIVEN a rotation set up to fail for `cause`
    rig = rig_factory(host=None) if breaker == "bad-secret" else rig_factory()
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    handler.get_app()
    if callable(breaker):
        breaker(rig)
    event = rig.event(step, token)
    if breaker == "not-pending":
        # a finished rotation; its previous version is neither pending nor current
        report = rig.service.rotate(rig.arn, rig.invoke, token=token)
        assert report.succeeded, report.steps
        capsys.readouterr()
        event["ClientRequestToken"] = next(
            v for v, s in rig.service.labels(rig.arn).items() if "AWSPREVIOUS" in s)
    context = _Ctx(1500) if breaker == "no-time" else _Ctx(30_000)

    # WHEN the failing step runs
    if step == "setSecret" and breaker != "not-pending":
        handler.lambda_handler(rig.event("createSecret", token), _Ctx(30_000))
    with pytest.raises(RotationError) as info:
        handler.lambda_handler(event, context)
    out = capsys.readouterr().out
    leak_scan.add_text(out + str(info.value))

    # THEN one ERROR line names the step, the error class, the cause and a fix
    errors = [r for r in log_capture.records() if r["level"] == "ERROR"]
    assert len(errors) == 1, errors
    line = errors[0]
    assert line["cause"] == cause
    assert line["step"] == step
    assert line["error_class"] == type(info.value).__name__
    assert line["fix"]
    assert line["outcome"] == "failed"
    assert line["token_prefix"] == event["ClientRequestToken"][:8]
    # ... and the EMF documents count the failure, for the step and for the rotation
    names = [n for doc in emf_documents(out) for n in metric_names(doc)]
    assert names.count("StepFailed") == 1
    assert names.count("RotationFailed") == 1
    failed_doc = next(d for d in emf_documents(out) if "RotationFailed" in metric_names(d))
    assert failed_doc["cause"] == cause


def test_short_remaining_time_caps_database_timeouts(rig: Rig) -> None:
    # GIVEN an invocation with 6 s left and the default 5 s connect + 10 s statement timeouts
    app = handler.get_app()
    # WHEN the adapters for it are chosen
    capped = app._adapters_within(6.0, "setSecret")
    # THEN the database work fits in the 4 s before the safety margin
    assert capped.options.connect_timeout + capped.options.statement_timeout <= 4.0
    assert app._adapters_within(60.0, "setSecret") is app.adapters
