"""The causes docs/troubleshooting.md sends the person on call to that tests/functional/
test_observability.py does not make fire: a Secrets Manager error that is no permission problem,
a database statement that fails, a bug, a secret without rotation, a token that is no version of
the secret, and a malformed event. Each gives one ERROR line naming the error class and its cause
(and, from a step, a failed-rotation metric with the same cause)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rotation import handler
from rotation.errors import DatabaseError, RotationError
from tests.conftest import LeakScan, LogCapture
from tests.functional.test_observability import emf_documents, metric_names
from tests.rig import Rig


def _secrets_manager_refuses(rig: Rig) -> None:
    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "InvalidRequestException",
                                     "Message": "the secret is scheduled for deletion"}},
                          "GetSecretValue")

    handler.get_app().secrets.client.meta.events.register_first(
        "before-call.secrets-manager.GetSecretValue", refuse)


CASES: list[tuple[str, str, str, Any]] = [
    # (cause in the log, error class, step, how to make it fail)
    ("aws", "AwsError", "createSecret", _secrets_manager_refuses),
    ("database", "DatabaseError", "setSecret", lambda rig: rig.db.fail_next.update(
        set_password=DatabaseError("a statement on db:5432 failed: read-only transaction",
                                   hint="point `host` at the writer endpoint",
                                   driver_error="psycopg.errors.ReadOnlySqlTransaction",
                                   sqlstate="25006"))),
    ("internal", "RuntimeError", "setSecret", lambda rig: rig.db.fail_next.update(
        set_password=RuntimeError("an unmapped driver error"))),
    ("staging labels", "RotationNotEnabledError", "createSecret", "rotation-not-enabled"),
    ("staging labels", "UnknownTokenError", "setSecret", "unknown-token"),
    ("event", "UnknownStepError", "deleteSecret", "bad-step"),
]


@pytest.mark.parametrize(("cause", "error_class", "step", "breaker"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_every_cause_in_the_guide_is_named_in_the_log(
        rig_factory: Any, cause: str, error_class: str, step: str, breaker: Any,
        log_capture: LogCapture, capsys: pytest.CaptureFixture[str],
        leak_scan: LeakScan) -> None:
    # GIVEN a rotation set up to fail for `cause`
    rig: Rig = rig_factory(enable=breaker != "rotation-not-enabled")
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    handler.get_app()
    if callable(breaker):
        breaker(rig)
    if step == "setSecret" and breaker != "unknown-token":
        handler.lambda_handler(rig.event("createSecret", token), None)
    event = rig.event(step, str(uuid.uuid4()) if breaker == "unknown-token" else token)
    capsys.readouterr()

    # WHEN the failing step runs
    with pytest.raises((RotationError, RuntimeError)) as info:
        handler.lambda_handler(event, None)
    out = capsys.readouterr().out
    leak_scan.add_text(out + str(info.value))

    # THEN one ERROR line names the error class and the cause the troubleshooting table lists
    errors = [r for r in log_capture.records() if r["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert (errors[0]["error_class"], errors[0]["cause"]) == (error_class, cause)
    assert type(info.value).__name__ == error_class
    assert errors[0]["outcome"] == "failed"
    # ... and a step that started counts the failure with the same cause (an event that is not a
    # rotation step is rejected before any step starts)
    failed = [d for d in emf_documents(out) if "RotationFailed" in metric_names(d)]
    assert [d["cause"] for d in failed] == ([] if cause == "event" else [cause])
