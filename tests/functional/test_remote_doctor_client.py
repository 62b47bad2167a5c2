"""The caller's half of ``rotation doctor --remote`` (rotation.tools.remote_doctor).

Lambda's ``Invoke`` is stubbed with botocore's Stubber (moto would run the function in Docker):
each answer the function or Lambda may give becomes a report or a RotationError subclass with a
message and a fix. One round trip feeds the event to the real ``lambda_handler`` on moto, so both
halves agree on the event and the answer. The secret's rotation function comes from moto.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from rotation import handler
from rotation.diagnosis import DoctorReport
from rotation.errors import RotationError
from rotation.tools.remote_doctor import (
    DiagnosisRefusedError,
    FunctionNotFoundError,
    InvokeDeniedError,
    NoRotationFunctionError,
    NotADiagnosisError,
    RemoteDoctorError,
    RemoteFunctionError,
    client_config,
    default_function_name,
    run_remote_doctor,
)
from tests.conftest import FakeLambdaContext, LeakScan
from tests.rig import Rig

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:rotation-postgres"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/app-AbCdEf"
CHECK = {"name": "db-login", "status": "fail", "detail": "AWSCURRENT does not log in as 'app'",
         "fix": "set the database password to the AWSCURRENT value"}


def answer(**fields: Any) -> dict[str, Any]:
    return {"RotationDiagnosis": {
        "secret_id": SECRET, "secret_arn": SECRET, "function": FUNCTION, "ok": False,
        "summary": {"ok": 1, "warn": 0, "fail": 1, "skip": 0}, "timeout": 3.0,
        "checks": [{"name": "secret-describe", "status": "ok", "detail": "2 version(s)",
                    "fix": ""}, CHECK], **fields}}


def payload(body: Any) -> StreamingBody:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


@pytest.fixture
def lam() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")  # Stubber: nothing is sent
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def expect_invoke(stub: Stubber, response: dict[str, Any], timeout: float = 3.0) -> None:
    event = {"RotationDiagnosis": {"SecretId": SECRET, "Timeout": timeout}}
    stub.add_response("invoke", {"StatusCode": 200, **response},
                      {"FunctionName": FUNCTION, "InvocationType": "RequestResponse",
                       "Payload": json.dumps(event).encode()})


def test_the_verdicts_come_back_as_a_report(lam: tuple[Any, Stubber]) -> None:
    # GIVEN a function that answers a diagnosis
    client, stub = lam
    expect_invoke(stub, {"Payload": payload(answer())})

    # WHEN the caller asks it (the stub checks the event: function, RequestResponse, payload)
    report = run_remote_doctor(client, FUNCTION, SECRET, timeout=3.0)

    # THEN the report holds the function's verdicts, and says whose seat they come from
    assert isinstance(report, DoctorReport)
    assert report.function == FUNCTION
    assert report.secret_arn == SECRET
    assert [c.to_dict() for c in report.checks][1] == CHECK
    assert report.failed
    assert report.to_dict()["function"] == FUNCTION


@pytest.mark.parametrize(("error", "said", "fix"), [
    ({"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: 1 Error: Task timed out "
      "after 30.03 seconds"}, "Task timed out", "--timeout"),
    ({"errorType": "EventError", "errorMessage": "event key `Step` is missing"},
     "`Step` is missing", "RemoteDiagnosis=true"),
    ({"errorType": "Runtime.ImportModuleError", "errorMessage": "No module named 'psycopg'"},
     "Runtime.ImportModuleError", "log"),
    (None, "no error message", "log"),
])
def test_a_function_error_says_what_failed(lam: tuple[Any, Stubber], error: dict[str, str] | None,
                                           said: str, fix: str) -> None:
    # GIVEN a function that fails on the event (Lambda's FunctionError, its error document)
    client, stub = lam
    expect_invoke(stub, {"FunctionError": "Unhandled",
                         "Payload": payload(error if error is not None else b"")})

    # WHEN the caller asks / THEN RemoteFunctionError names the function, the error and a fix
    with pytest.raises(RemoteFunctionError) as caught:
        run_remote_doctor(client, FUNCTION, SECRET, timeout=3.0)
    assert FUNCTION in caught.value.message
    assert said in caught.value.message
    assert fix in caught.value.hint


def test_a_refusal_names_the_parameter(lam: tuple[Any, Stubber]) -> None:
    # GIVEN a function deployed with RemoteDiagnosis=false
    client, stub = lam
    expect_invoke(stub, {"Payload": payload({"RotationDiagnosis": {"error": {
        "type": "RemoteDiagnosisDisabled",
        "message": "remote diagnosis is disabled on this function",
        "fix": "deploy the stack with the template parameter RemoteDiagnosis=true"}}})})

    # WHEN the caller asks / THEN DiagnosisRefusedError carries the function's fix
    with pytest.raises(DiagnosisRefusedError) as caught:
        run_remote_doctor(client, FUNCTION, SECRET, timeout=3.0)
    assert "refuses remote diagnosis" in caught.value.message
    assert "RemoteDiagnosis=true" in caught.value.hint
    assert caught.value.category == "configuration"


def test_another_error_answer_is_passed_on(lam: tuple[Any, Stubber]) -> None:
    # GIVEN a function whose settings are broken
    client, stub = lam
    expect_invoke(stub, {"Payload": payload({"RotationDiagnosis": {"error": {
        "type": "ConfigError", "message": "ROTATION_STRATEGY has the unknown value 'x'",
        "fix": "set it to single-user"}}})})

    # WHEN the caller asks / THEN the error, its type and fix reach the caller
    with pytest.raises(RemoteDoctorError, match="ConfigError: ROTATION_STRATEGY") as caught:
        run_remote_doctor(client, FUNCTION, SECRET, timeout=3.0)
    assert caught.value.hint == "set it to single-user"


@pytest.mark.parametrize(("code", "error_class", "fix"), [
    ("AccessDeniedException", InvokeDeniedError, "lambda:InvokeFunction"),
    ("ResourceNotFoundException", FunctionNotFoundError, "--function-name"),
    ("TooManyRequestsException", RemoteDoctorError, "try again"),
])
def test_lambda_refusing_the_invoke_says_what_to_do(lam: tuple[Any, Stubber], code: str,
                                                     error_class: type[RotationError],
                                                     fix: str) -> None:
    # GIVEN Lambda answering Invoke with an error
    client, stub = lam
    stub.add_client_error("invoke", service_error_code=code, service_message="nope",
                          http_status_code=403 if "Denied" in code else 404)

    # WHEN the caller asks / THEN the error class says which, and the fix what to do
    with pytest.raises(error_class) as caught:
        run_remote_doctor(client, FUNCTION, SECRET)
    assert type(caught.value) is error_class
    assert FUNCTION in caught.value.message
    assert code in caught.value.message
    assert fix in caught.value.hint


@pytest.mark.parametrize("body", [
    b"null",
    b"not json",
    {"Step": "testSecret", "Outcome": "already current"},
    {"RotationDiagnosis": "yes"},
    {"RotationDiagnosis": {"checks": []}},
    {"RotationDiagnosis": {"checks": [{"name": "x", "status": "ok"}]}},
    {"RotationDiagnosis": {"checks": [{"name": "x", "status": "great", "detail": "",
                                       "fix": ""}]}},
    {"RotationDiagnosis": {"error": "no"}},
], ids=["null", "not-json", "a-step-answer", "not-an-object", "no-checks", "check-fields",
        "check-status", "error-shape"])
def test_an_answer_that_is_not_a_diagnosis_is_refused(lam: tuple[Any, Stubber],
                                                      body: Any) -> None:
    # GIVEN a function that answers something else
    client, stub = lam
    expect_invoke(stub, {"Payload": payload(body)})

    # WHEN the caller asks / THEN NotADiagnosisError says to name the right function
    with pytest.raises(NotADiagnosisError) as caught:
        run_remote_doctor(client, FUNCTION, SECRET, timeout=3.0)
    assert "not with a diagnosis" in caught.value.message
    assert "--function-name" in caught.value.hint


def test_the_client_config_outlasts_any_invocation() -> None:
    # GIVEN / WHEN the recommended client settings / THEN their read timeout outlasts Lambda's
    # 900 s maximum, and a timed-out invoke is not sent again
    config = client_config()
    assert config.read_timeout > 900
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}


# -- the function to ask, and a round trip through the real handler --------------------------------

def test_the_default_function_is_the_secrets_rotation_function(
        rig_factory: Callable[..., Rig]) -> None:
    # GIVEN a secret whose rotation is configured (local driver: the local function ARN)
    rig = rig_factory()

    # WHEN the caller looks for the function to ask / THEN it is RotationLambdaARN
    assert default_function_name(rig.sm, rig.arn) == FakeLambdaContext.invoked_function_arn


def test_no_rotation_function_is_a_clear_error(rig_factory: Callable[..., Rig]) -> None:
    # GIVEN a secret without rotation / WHEN the caller looks for its function
    rig = rig_factory(enable=False)
    with pytest.raises(NoRotationFunctionError) as caught:
        default_function_name(rig.sm, rig.arn)

    # THEN the error names the secret and both ways out
    assert rig.arn in caught.value.message
    assert "--function-name" in caught.value.hint
    assert "RotateSecret" in caught.value.hint


def test_a_missing_secret_is_a_clear_error(sm: Any) -> None:
    with pytest.raises(RemoteDoctorError, match="does not exist") as caught:
        default_function_name(sm, "no-such-secret")
    assert "--region" in caught.value.hint


class HandlerLambda:
    """A Lambda client whose Invoke runs the real handler in-process, as Lambda would."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, *, FunctionName: str, InvocationType: str,
               Payload: bytes) -> dict[str, Any]:
        assert InvocationType == "RequestResponse"
        event = json.loads(Payload)
        self.events.append(event)
        context = FakeLambdaContext()
        context.invoked_function_arn = FunctionName
        return {"StatusCode": 200, "Payload": payload(handler.lambda_handler(event, context))}


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_a_round_trip_through_the_handler(rig_factory: Callable[..., Rig], listening_port: int,
                                          monkeypatch: pytest.MonkeyPatch,
                                          leak_scan: LeakScan) -> None:
    # GIVEN a working secret and its function, with remote diagnosis on
    monkeypatch.setenv("ROTATION_REMOTE_DIAGNOSIS", "true")
    rig = rig_factory(host="127.0.0.1", port=listening_port)
    lam = HandlerLambda()
    function = default_function_name(rig.sm, rig.arn)

    # WHEN the caller asks the function through its Lambda client
    report = run_remote_doctor(lam, function, rig.arn, timeout=2)

    # THEN the event had the contract's shape, and the report is the function's verdicts
    assert lam.events == [{"RotationDiagnosis": {"SecretId": rig.arn, "Timeout": 2}}]
    assert report.function == function
    assert report.secret_arn == rig.arn
    assert not report.failed, report.checks
    assert report.check("db-login").status == "ok"
    assert report.check("rotation-configured").status == "ok"
    leak_scan.add_text(json.dumps(report.to_dict()))


def test_a_round_trip_to_a_disabled_function_is_refused(
        rig_factory: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a function deployed with RemoteDiagnosis=false
    monkeypatch.setenv("ROTATION_REMOTE_DIAGNOSIS", "false")
    rig = rig_factory()

    # WHEN the caller asks it / THEN the refusal arrives as DiagnosisRefusedError, with the fix
    with pytest.raises(DiagnosisRefusedError, match="ROTATION_REMOTE_DIAGNOSIS") as caught:
        run_remote_doctor(HandlerLambda(), FakeLambdaContext.invoked_function_arn, rig.arn)
    assert "RemoteDiagnosis=true" in caught.value.hint
