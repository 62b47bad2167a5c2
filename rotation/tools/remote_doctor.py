"""``rotation doctor SECRET_ID --remote``: the doctor's checks run by the deployed rotation
function itself, from its subnets, with its role, CA bundle and driver layer.

This is the caller's half: one Lambda ``Invoke`` (RequestResponse) with the diagnosis event
``{"RotationDiagnosis": {"SecretId": ..., "Timeout": ...}}``, and the verdicts it answers turned
back into a :class:`~rotation.diagnosis.DoctorReport`. The function's half is
:mod:`rotation.diagnosis.remote` (refused unless the stack's ``RemoteDiagnosis`` is ``true``).

Everything that keeps the verdicts from arriving is a :class:`RemoteDoctorError` subclass that
says what happened and what to do: the caller may not invoke the function, the function does not
exist, it crashed or timed out, it refused, or it answered something that is not a diagnosis.

The function may take up to its own Timeout to answer (a database that drops packets costs a few
``Timeout`` waits): build the Lambda client with :func:`client_config`, whose read timeout
outlasts any Lambda invocation (botocore's default, 60 s, does not).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from rotation import _redact
from rotation.diagnosis import STATUSES, CheckResult, DoctorReport
from rotation.diagnosis.remote import EVENT_KEY, REFUSED, TEMPLATE_PARAMETER
from rotation.diagnosis.report import client_error_code, client_error_text
from rotation.errors import RotationError

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_secretsmanager import SecretsManagerClient

#: Lambda runs an invocation for at most 900 s; the answer may take that long to arrive
INVOKE_READ_TIMEOUT_S = 910
_MAX_SHOWN = 300  # characters of a function's error message worth showing


class RemoteDoctorError(RotationError):
    """The remote diagnosis could not be obtained."""

    category = "aws"


class NoRotationFunctionError(RemoteDoctorError):
    """The secret names no rotation function to ask."""

    category = "configuration"


class InvokeDeniedError(RemoteDoctorError):
    """The caller may not invoke the function (IAM, or the function's resource policy)."""

    category = "aws permission"


class FunctionNotFoundError(RemoteDoctorError):
    """No such function (name, region or account)."""


class DiagnosisRefusedError(RemoteDoctorError):
    """The function refuses diagnosis events (the stack's RemoteDiagnosis is false)."""

    category = "configuration"


class RemoteFunctionError(RemoteDoctorError):
    """The function failed on the diagnosis event (an exception, a timeout, an init error)."""

    category = "internal"


class NotADiagnosisError(RemoteDoctorError):
    """The function answered, but not with a diagnosis: another kind of function, or a version
    of this one without remote diagnosis."""

    category = "configuration"


def client_config() -> Config:
    """botocore settings for the Lambda client that invokes the diagnosis: a read timeout that
    outlasts the invocation, and no retry of a timed-out invoke (it would run the checks again)."""
    from botocore.config import Config

    return Config(read_timeout=INVOKE_READ_TIMEOUT_S,
                  retries={"mode": "standard", "total_max_attempts": 1})


def default_function_name(secrets_client: SecretsManagerClient, secret_id: str) -> str:
    """The secret's rotation function (its RotationLambdaARN): the function to ask."""
    try:
        description = secrets_client.describe_secret(SecretId=secret_id)
    except ClientError as exc:
        code, text = client_error_code(exc), client_error_text(exc)
        if code == "ResourceNotFoundException":
            raise RemoteDoctorError(f"secret {secret_id} does not exist: {text}",
                                    hint="check the secret name or ARN, and the region "
                                         "(--region)") from None
        if "AccessDenied" in code:
            raise InvokeDeniedError(f"DescribeSecret on secret {secret_id} was denied: {text}",
                                    hint="allow secretsmanager:DescribeSecret on the secret for "
                                         "your role, or name the function with "
                                         "--function-name") from None
        raise RemoteDoctorError(f"DescribeSecret on secret {secret_id} failed: {text}",
                                hint="name the function with --function-name") from None
    except BotoCoreError as exc:
        raise RemoteDoctorError(f"cannot reach Secrets Manager to find the rotation function of "
                                f"secret {secret_id} ({type(exc).__name__})",
                                hint="check the region and the network, or name the function "
                                     "with --function-name") from None
    function = description.get("RotationLambdaARN")
    if not function:
        raise NoRotationFunctionError(
            f"secret {description.get('ARN', secret_id)} has no rotation function configured, "
            "so there is no function to run the diagnosis in",
            hint="name the function with --function-name, or configure rotation (RotateSecret "
                 "with --rotation-lambda-arn; the template's RotationScheduleExpression does it)")
    return function


def run_remote_doctor(lambda_client: Any, function_name: str, secret_id: str, *,
                      timeout: float = 5.0) -> DoctorReport:
    """Ask ``function_name`` to diagnose ``secret_id`` from its own seat; ``timeout`` bounds each
    of its network waits (the function caps it to fit its remaining time)."""
    event = {EVENT_KEY: {"SecretId": secret_id, "Timeout": timeout}}
    try:
        response = lambda_client.invoke(FunctionName=function_name,
                                        InvocationType="RequestResponse",
                                        Payload=json.dumps(event).encode())
    except ClientError as exc:
        raise _invoke_error(function_name, exc) from None
    except BotoCoreError as exc:
        raise RemoteDoctorError(
            f"no answer from the Lambda API for function {function_name} "
            f"({type(exc).__name__})",
            hint="check the region and the network; a read timeout means the client gave up "
                 "before the function answered (build it with "
                 "rotation.tools.remote_doctor.client_config())") from None
    body = _payload(response)
    if response.get("FunctionError"):
        raise _function_error(function_name, str(response["FunctionError"]), body)
    answer = body.get(EVENT_KEY) if isinstance(body, Mapping) else None
    if not isinstance(answer, Mapping):
        raise _not_a_diagnosis(function_name, "its answer has no RotationDiagnosis object")
    if "error" in answer:
        raise _refusal(function_name, answer["error"])
    return _report(function_name, secret_id, answer)


def _payload(response: Mapping[str, Any]) -> Any:
    stream = response.get("Payload")
    raw = stream.read() if stream is not None else b""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _invoke_error(function: str, exc: ClientError) -> RemoteDoctorError:
    code, text = client_error_code(exc), client_error_text(exc)
    if code == "AccessDeniedException" or "AccessDenied" in code:
        return InvokeDeniedError(
            f"you may not invoke function {function}: {text}",
            hint=f"allow lambda:InvokeFunction on {function} for your role (IAM); from another "
                 "account the function's resource policy must allow it too (this template's "
                 "allows Secrets Manager only)")
    if code == "ResourceNotFoundException":
        return FunctionNotFoundError(
            f"function {function} does not exist: {text}",
            hint="check --function-name and --region (by default the function is the secret's "
                 "RotationLambdaARN)")
    if code == "TooManyRequestsException":
        return RemoteDoctorError(f"Lambda throttled the invocation of {function}: {text}",
                                 hint="try again; check the function's reserved concurrency")
    return RemoteDoctorError(f"Lambda could not run function {function}: {text}",
                             hint="see the error code in Lambda's Invoke documentation; the "
                                  "function's own log may say more")


def _function_error(function: str, kind: str, body: Any) -> RemoteFunctionError:
    error_type = message = ""
    if isinstance(body, Mapping):
        error_type = str(body.get("errorType") or "")
        message = _redact.redact(str(body.get("errorMessage") or ""))[:_MAX_SHOWN]
    said = ": ".join(part for part in (error_type, message) if part) or "no error message"
    if "timed out" in message.lower():
        hint = ("the diagnosis outlived the function's Timeout: pass a smaller --timeout, or "
                "raise the function's Timeout")
    elif error_type in ("EventError", "UnknownStepError") or "`Step`" in message:
        hint = ("this function treats the diagnosis as a rotation step: it predates remote "
                f"diagnosis; deploy this version of the rotation function with "
                f"{TEMPLATE_PARAMETER}=true")
    else:
        hint = "see the function's log in CloudWatch for the traceback"
    return RemoteFunctionError(f"function {function} failed on the diagnosis event ({kind}): "
                               f"{said}", hint=hint)


def _refusal(function: str, error: Any) -> RemoteDoctorError:
    if not isinstance(error, Mapping):
        return _not_a_diagnosis(function, "its error answer is not an object")
    kind = str(error.get("type") or "")
    message = _redact.redact(str(error.get("message") or ""))[:_MAX_SHOWN]
    fix = _redact.redact(str(error.get("fix") or ""))[:_MAX_SHOWN]
    if kind == REFUSED:
        return DiagnosisRefusedError(f"function {function} refuses remote diagnosis: {message}",
                                     hint=fix or f"deploy the stack with {TEMPLATE_PARAMETER}="
                                                 "true")
    return RemoteDoctorError(f"function {function} could not run the diagnosis: {kind}: "
                             f"{message}", hint=fix)


def _report(function: str, secret_id: str, answer: Mapping[str, Any]) -> DoctorReport:
    checks = answer.get("checks")
    if not isinstance(checks, list) or not checks:
        raise _not_a_diagnosis(function, "it lists no checks")
    results = []
    for check in checks:
        fields = ("name", "status", "detail", "fix")
        if not isinstance(check, Mapping) or not all(isinstance(check.get(f), str)
                                                     for f in fields):
            raise _not_a_diagnosis(function, "a check is not {name, status, detail, fix}")
        status = next((s for s in STATUSES if s == check["status"]), None)
        if status is None:
            raise _not_a_diagnosis(function,
                                   f"a check has the unknown status {check['status'][:20]!r}")
        results.append(CheckResult(check["name"], status, check["detail"], check["fix"]))
    arn = answer.get("secret_arn")
    seat = answer.get("function")
    return DoctorReport(secret_id, secret_arn=arn if isinstance(arn, str) else None,
                        checks=results, function=seat if isinstance(seat, str) else function)


def _not_a_diagnosis(function: str, why: str) -> NotADiagnosisError:
    return NotADiagnosisError(
        f"function {function} answered, but not with a diagnosis ({why})",
        hint="name this framework's rotation function with --function-name (by default, the "
             "secret's RotationLambdaARN), deployed at a version with remote diagnosis")


__all__ = ["INVOKE_READ_TIMEOUT_S", "DiagnosisRefusedError", "FunctionNotFoundError",
           "InvokeDeniedError", "NoRotationFunctionError", "NotADiagnosisError",
           "RemoteDoctorError", "RemoteFunctionError", "client_config", "default_function_name",
           "run_remote_doctor"]
