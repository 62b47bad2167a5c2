"""The function's half of ``rotation doctor --remote``: a diagnosis event through
``lambda_handler`` on moto, with the in-memory database behind a real listening loopback port.

The function answers verdicts only (no value), changes nothing (no Secrets Manager write, no
label move, no database statement), refuses unless ROTATION_REMOTE_DIAGNOSIS is on (before it
reads anything), answers a malformed request with an error instead of raising (a raise would
count in the function's Errors alarm), and keeps its network waits inside the invocation."""

from __future__ import annotations

import json
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.client import BaseClient

from rotation import handler
from rotation.diagnosis import CHECKS
from rotation.errors import EventError
from tests.conftest import FakeLambdaContext, LeakScan
from tests.functional.fakes import FakeDatabase
from tests.rig import Rig

FUNCTION = FakeLambdaContext.invoked_function_arn
READS = {"DescribeSecret", "GetSecretValue"}


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the fake database's address)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATION_REMOTE_DIAGNOSIS", "true")


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every AWS API call any client makes during the test, by operation."""
    calls: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counting(self: Any, operation_name: str, api_params: Any) -> Any:
        calls[operation_name] += 1
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    return calls


@pytest.fixture
def seat_rig(rig_factory: Callable[..., Rig], listening_port: int, leak_scan: LeakScan) -> Rig:
    rig = rig_factory(host="127.0.0.1", port=listening_port,
                      password="Fn-Seat-" + uuid.uuid4().hex)
    leak_scan.add(rig.value("AWSCURRENT")["password"])
    return rig


class Context(FakeLambdaContext):
    def __init__(self, remaining_ms: int = 30_000, arn: str = FUNCTION) -> None:
        super().__init__(remaining_ms)
        self.invoked_function_arn = arn


def diagnose(body: Any, context: Any = None) -> dict[str, Any]:
    answer: dict[str, Any] = handler.lambda_handler({"RotationDiagnosis": body},
                                                    context or Context())
    return answer["RotationDiagnosis"]


def statuses(answer: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in answer["checks"]}


def check(answer: dict[str, Any], name: str) -> dict[str, str]:
    found: dict[str, str] = next(c for c in answer["checks"] if c["name"] == name)
    return found


def test_a_diagnosis_answers_verdicts_from_the_functions_seat(
        seat_rig: Rig, db: FakeDatabase, enabled: None, leak_scan: LeakScan) -> None:
    # GIVEN a working secret whose rotation names this function; the function's API calls counted
    seat_rig.calls.attach(handler.get_app().secrets.client)
    labels_before = seat_rig.service.labels(seat_rig.arn)

    # WHEN the function gets a diagnosis event
    answer = diagnose({"SecretId": seat_rig.arn, "Timeout": 2})

    # THEN it answers the shared checks' verdicts, seen from the function, and nothing fails
    assert answer["function"] == FUNCTION
    assert answer["secret_arn"] == seat_rig.arn
    assert answer["ok"] is True, answer["checks"]
    assert [c["name"] for c in answer["checks"]] == [
        "secrets-manager-endpoint", "secret-describe", "rotation-configured", "kms-decrypt",
        "secret-format", "db-network", "db-protocol", "db-tls", "db-login", "staging-labels",
        "pg-libpq", "pg-password-encryption", "pg-stored-method", "master-secret"]
    assert len(answer["checks"]) == len(CHECKS)
    seen = list(statuses(answer).values())
    assert answer["summary"] == {s: seen.count(s) for s in ("ok", "warn", "fail", "skip")}
    assert "(this function)" in check(answer, "rotation-configured")["detail"]
    assert "the function role's permissions" in check(answer, "kms-decrypt")["detail"]
    assert "(this function's settings)" in check(answer, "secret-format")["detail"]
    assert "from the rotation function" in check(answer, "db-network")["detail"]
    assert statuses(answer)["db-login"] == "ok"
    # ... it changed nothing: reads only, the labels as they were, no database statement
    assert set(seat_rig.calls.calls) <= READS, seat_rig.calls.calls
    assert seat_rig.calls.calls == Counter({"DescribeSecret": 1, "GetSecretValue": 1})
    assert seat_rig.service.labels(seat_rig.arn) == labels_before
    assert db.statements == []
    assert db.logins == Counter({"ok": 1})
    # ... and no value is in the answer (the leak scan checks the logs too)
    text = json.dumps(answer)
    leak_scan.add_text(text)
    assert not any(value in text for value in leak_scan.values)


def test_a_stuck_pending_label_is_reported_and_left_alone(
        seat_rig: Rig, enabled: None, aws_calls: Counter[str]) -> None:
    # GIVEN a rotation that stopped after the service staged AWSPENDING
    seat_rig.service.stage_pending(seat_rig.arn, str(uuid.uuid4()))
    labels_before = seat_rig.service.labels(seat_rig.arn)

    # WHEN the function diagnoses the secret
    answer = diagnose({"SecretId": seat_rig.arn})

    # THEN staging-labels fails, pointing at the laptop's --fix, and the labels did not move
    labels = check(answer, "staging-labels")
    assert labels["status"] == "fail"
    assert "A previous rotation isn't complete" in labels["detail"]
    assert "--fix" in labels["fix"]
    assert seat_rig.service.labels(seat_rig.arn) == labels_before
    assert set(aws_calls) <= READS, aws_calls  # the test's own reads included


@pytest.mark.parametrize("value", [None, "", "false", "0", "no", "off", "n0pe"])
def test_refused_unless_enabled_and_nothing_is_read(
        seat_rig: Rig, db: FakeDatabase, monkeypatch: pytest.MonkeyPatch, aws_calls: Counter[str],
        value: str | None) -> None:
    # GIVEN a function whose ROTATION_REMOTE_DIAGNOSIS is unset or not a yes
    if value is None:
        monkeypatch.delenv("ROTATION_REMOTE_DIAGNOSIS", raising=False)
    else:
        monkeypatch.setenv("ROTATION_REMOTE_DIAGNOSIS", value)

    # WHEN it gets a diagnosis event
    answer = diagnose({"SecretId": seat_rig.arn})

    # THEN it answers a refusal naming the template parameter, and read nothing at all: no AWS
    # call, no app built (no client), no login
    error = answer["error"]
    assert error["type"] == "RemoteDiagnosisDisabled"
    assert "ROTATION_REMOTE_DIAGNOSIS" in error["message"]
    assert "RemoteDiagnosis=true" in error["fix"]
    assert "lambda:InvokeFunction" in error["fix"]
    assert "checks" not in answer
    assert sum(aws_calls.values()) == 0
    assert handler._app is None
    assert db.logins == Counter()


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "Y", " y "])
def test_every_yes_spelling_enables_it(seat_rig: Rig, monkeypatch: pytest.MonkeyPatch,
                                       value: str) -> None:
    # GIVEN ROTATION_REMOTE_DIAGNOSIS spelled one of the accepted ways
    monkeypatch.setenv("ROTATION_REMOTE_DIAGNOSIS", value)

    # WHEN the function gets a diagnosis event / THEN it answers verdicts
    answer = diagnose({"SecretId": seat_rig.arn})
    assert "error" not in answer
    assert statuses(answer)["secret-describe"] == "ok"


@pytest.mark.parametrize(("body", "named"), [
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:x", "`RotationDiagnosis`"),
    ({}, "SecretId"),
    ({"SecretId": ""}, "SecretId"),
    ({"SecretId": 42}, "SecretId"),
    ({"SecretId": "x" * 2049}, "SecretId"),
    ({"SecretId": "s", "Timeout": 0}, "Timeout"),
    ({"SecretId": "s", "Timeout": 61}, "Timeout"),
    ({"SecretId": "s", "Timeout": True}, "Timeout"),
    ({"SecretId": "s", "Timeout": "5"}, "Timeout"),
])
def test_a_malformed_request_is_answered_not_raised(
        enabled: None, aws_calls: Counter[str], body: Any, named: str) -> None:
    # GIVEN a diagnosis event with a bad body / WHEN the function gets it
    answer = diagnose(body)

    # THEN it answers an EventError naming the key and the usage (a raise would count in the
    # Errors alarm), without calling AWS
    assert answer["error"]["type"] == "EventError"
    assert named in answer["error"]["message"]
    assert "RotationDiagnosis" in answer["error"]["fix"]
    assert sum(aws_calls.values()) == 0


def test_a_step_event_is_never_taken_for_a_diagnosis(enabled: None) -> None:
    # GIVEN a step event that also carries a RotationDiagnosis key
    event = {"Step": "testSecret", "SecretId": "arn:aws:secretsmanager:us-east-1:"
             "123456789012:secret:x-AbCdEf", "RotationDiagnosis": {"SecretId": "x"}}

    # WHEN the handler gets it / THEN the step path judges it (no ClientRequestToken)
    with pytest.raises(EventError, match="ClientRequestToken"):
        handler.lambda_handler(event, Context())


@pytest.mark.parametrize(("remaining_ms", "asked", "used"), [
    (30_000, 2.0, 2.0),   # fits: as asked
    (10_000, 5.0, 2.0),   # (10 s - 2 s margin) / 4 waits
])
def test_the_network_timeout_fits_the_invocation(seat_rig: Rig, enabled: None, remaining_ms: int,
                                                 asked: float, used: float) -> None:
    # GIVEN an invocation with this much time left / WHEN a diagnosis asks for `asked` seconds
    answer = diagnose({"SecretId": seat_rig.arn, "Timeout": asked}, Context(remaining_ms))

    # THEN each network wait gets at most a quarter of what is left after the safety margin
    # (a Secrets Manager request needs 5 s of it: botocore's connect + read timeouts)
    assert answer["timeout"] == pytest.approx(used)
    assert statuses(answer)["db-login"] == "ok"


def test_too_little_time_is_an_answer(seat_rig: Rig, enabled: None,
                                      aws_calls: Counter[str]) -> None:
    # GIVEN an invocation with 2.5 s left (2 s margin, 1 s minimum)
    # WHEN a diagnosis comes / THEN it answers a timeout error without calling AWS
    answer = diagnose({"SecretId": seat_rig.arn}, Context(2_500))
    assert answer["error"]["type"] == "RotationTimeoutError"
    assert "Timeout" in answer["error"]["fix"]
    assert sum(aws_calls.values()) == 0


@pytest.mark.parametrize(("invoked", "status"), [
    (FUNCTION + ":live", "ok"),  # this function, through an alias
    ("arn:aws:lambda:local:000000000000:function:rotation-next", "warn"),
])
def test_rotation_must_name_this_function(seat_rig: Rig, enabled: None, invoked: str,
                                          status: str) -> None:
    # GIVEN a secret whose rotation runs FUNCTION / WHEN `invoked` diagnoses it
    answer = diagnose({"SecretId": seat_rig.arn}, Context(arn=invoked))

    # THEN rotation-configured says whether the verdicts are the rotating function's
    configured = check(answer, "rotation-configured")
    assert configured["status"] == status
    if status == "warn":
        assert FUNCTION in configured["detail"]
        assert invoked in configured["detail"]
        assert "--rotation-lambda-arn" in configured["fix"]


def test_a_bad_setting_is_an_answer(seat_rig: Rig, enabled: None,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a function with a bad ROTATION_STRATEGY / WHEN a diagnosis comes
    monkeypatch.setenv("ROTATION_STRATEGY", "round-robin")
    answer = diagnose({"SecretId": seat_rig.arn})

    # THEN it answers the ConfigError and its fix
    assert answer["error"]["type"] == "ConfigError"
    assert "ROTATION_STRATEGY" in answer["error"]["message"]
    assert "alternating-users" in answer["error"]["fix"]


def test_a_crash_is_an_answer_without_its_text(seat_rig: Rig, enabled: None,
                                               monkeypatch: pytest.MonkeyPatch,
                                               log_capture: Any) -> None:
    # GIVEN a diagnosis that crashes on a bug whose message holds a value
    import rotation.diagnosis.remote as remote

    def crash(*_: Any, **__: Any) -> Any:
        raise ValueError("boom: internal detail")

    monkeypatch.setattr(remote, "run_checks", crash)

    # WHEN the function gets the event
    answer = diagnose({"SecretId": seat_rig.arn})

    # THEN it answers InternalError, names the class only, and logs the traceback
    assert answer["error"]["type"] == "InternalError"
    assert "ValueError" in answer["error"]["message"]
    assert "boom" not in json.dumps(answer)
    assert "boom: internal detail" in log_capture.text


def test_no_time_for_secrets_manager_is_a_verdict(seat_rig: Rig, enabled: None) -> None:
    # GIVEN an invocation with 6 s left: past the 2 s margin, less than the 5 s one Secrets
    # Manager request may take
    # WHEN a diagnosis comes
    answer = diagnose({"SecretId": seat_rig.arn}, Context(6_000))

    # THEN the endpoint check fails on the deadline and names the fix; what needs the secret
    # skips
    endpoint = check(answer, "secrets-manager-endpoint")
    assert endpoint["status"] == "fail"
    assert "Lambda's time" in endpoint["detail"]
    assert "Timeout" in endpoint["fix"]
    assert statuses(answer)["secret-describe"] == "skip"
    assert statuses(answer)["db-login"] == "skip"
