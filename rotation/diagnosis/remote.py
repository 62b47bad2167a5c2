"""The diagnosis from the function's own seat: ``rotation doctor --remote`` invokes the deployed
rotation function with ``{"RotationDiagnosis": {"SecretId": ..., "Timeout": ...}}`` and the
function runs the checks that depend on network and identity with *its* subnets, security
groups, role, CA bundle and driver layer.

It changes nothing: no PutSecretValue, no UpdateSecretVersionStage, no database write (a stuck
AWSPENDING is reported, never fixed). It answers verdicts and fixes, never a value: every detail
is scrubbed of the values read (registered for redaction as they are read). It is refused
unless ROTATION_REMOTE_DIAGNOSIS (the template's RemoteDiagnosis) is on, before anything is
read. Who may invoke it is Lambda's to decide: the function's resource policy and the caller's
IAM (lambda:InvokeFunction).

Errors are answers, not exceptions: a refused or malformed diagnosis is an operator's request,
and must not count in the function's Errors metric (the template alarms on it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rotation import _redact
from rotation.adapters.base import DEADLINE
from rotation.diagnosis.report import DoctorReport
from rotation.diagnosis.run import CHECKS, run_checks
from rotation.diagnosis.state import Doctor
from rotation.errors import EventError, RotationError, RotationTimeoutError
from rotation.event import MAX_SECRET_ID
from rotation.logs import logger

if TYPE_CHECKING:
    from rotation.dispatcher import Rotation

EVENT_KEY = "RotationDiagnosis"
ENABLE = "ROTATION_REMOTE_DIAGNOSIS"
TEMPLATE_PARAMETER = "RemoteDiagnosis"
ENABLED_VALUES = frozenset({"true", "1", "yes", "y"})
#: the ``type`` of the error answer when the diagnosis is switched off
REFUSED = "RemoteDiagnosisDisabled"
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.5, 60.0
#: database checks that may each wait a full timeout, one after the other (TCP, the protocol
#: probe, the login, the master's login): together they must fit in the invocation
SEQUENTIAL_WAITS = 4
_USAGE = ('invoke with {"RotationDiagnosis": {"SecretId": "<secret name or ARN>", '
          '"Timeout": 5}} (Timeout optional, in seconds)')


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(ENABLE, "").strip().lower() in ENABLED_VALUES


def diagnose(event: Mapping[str, Any], context: Any,
             get_app: Callable[[], Rotation]) -> dict[str, Any]:
    """Answer a diagnosis event (``lambda_handler`` sends it here; ``get_app`` builds the app
    only once the diagnosis is allowed)."""
    logger.clear_state()
    function = _function_arn(context)
    logger.append_keys(diagnosis=True, function=function)
    if not enabled():
        logger.warning(f"remote diagnosis refused: {ENABLE} is off",
                       extra={"cause": "configuration"})
        return _error(REFUSED, f"remote diagnosis is disabled on this function ({ENABLE} is "
                      f"{os.environ.get(ENABLE, '')[:16]!r}, not true)",
                      f"deploy the stack with the template parameter {TEMPLATE_PARAMETER}=true "
                      f"(or set {ENABLE}=true on the function); who may invoke it is the "
                      "function's resource policy and the caller's lambda:InvokeFunction")
    try:
        secret_id, timeout = _parse(event.get(EVENT_KEY))
        logger.append_keys(secret_id=secret_id)
        report, timeout = _run(get_app(), secret_id, timeout, context, function)
    except RotationError as exc:
        logger.error(f"remote diagnosis failed: {exc}",
                     extra={"cause": exc.category, "error_class": type(exc).__name__})
        return _error(type(exc).__name__, exc.message, exc.hint)
    except Exception as exc:  # a bug: say so, without the exception's text (it may hold values)
        logger.exception(f"remote diagnosis failed with an unexpected {type(exc).__name__}",
                         extra={"cause": "internal"})
        return _error("InternalError", f"the diagnosis failed with an unexpected "
                      f"{type(exc).__name__}", "see the function's log for the traceback")
    summary = report.summary()
    logger.info(f"diagnosis of secret {report.secret_arn or secret_id}: "
                + ", ".join(f"{n} {s}" for s, n in summary.items()),
                extra={"summary": summary, "secret_arn": report.secret_arn})
    return {EVENT_KEY: {**report.to_dict(), "timeout": timeout}}


def _run(app: Rotation, secret_id: str, timeout: float, context: Any,
         function: str | None) -> tuple[DoctorReport, float]:
    """The checks, bounded like a step; returns the report and the timeout they used."""
    from rotation.dispatcher import MIN_BUDGET_S, SAFETY_MARGIN_S, _remaining_seconds

    remaining = _remaining_seconds(context)
    deadline = None
    if remaining is not None:
        budget = remaining - SAFETY_MARGIN_S
        if budget < MIN_BUDGET_S:
            raise RotationTimeoutError(
                f"only {remaining:.1f} s of the Lambda timeout are left for the diagnosis",
                hint="raise the function's Timeout (30 s or more)")
        timeout = min(timeout, budget / SEQUENTIAL_WAITS)
        deadline = time.monotonic() + budget
    options = app.adapters.options
    adapters = app.adapters.with_options(replace(
        options, connect_timeout=timeout,
        statement_timeout=min(options.statement_timeout, timeout)))
    doctor = Doctor(app.secrets, secret_id, app.settings, adapters, timeout=timeout,
                    strategy_override=app.settings.strategy,
                    strategy_override_source="this function's settings", remote=True,
                    this_function=function)
    # The same bounds as a step: no Secrets Manager request and no database wait outlives the
    # invocation. The app's client is shared with the steps: restore its deadline after.
    previous = app.secrets.deadline
    app.secrets.deadline = deadline
    token = DEADLINE.set(deadline)
    try:
        report = run_checks(doctor, CHECKS)
    finally:
        DEADLINE.reset(token)
        app.secrets.deadline = previous
    report.function = function
    return report, timeout


def _parse(body: object) -> tuple[str, float]:
    if not isinstance(body, Mapping):
        raise EventError(f"event key `{EVENT_KEY}` must be a JSON object", hint=_USAGE)
    secret_id = body.get("SecretId")
    if not isinstance(secret_id, str) or not secret_id.strip():
        raise EventError(f"`{EVENT_KEY}.SecretId` must be a non-empty string", hint=_USAGE)
    if len(secret_id) > MAX_SECRET_ID:
        raise EventError(f"`{EVENT_KEY}.SecretId` is longer than {MAX_SECRET_ID} characters",
                         hint=_USAGE)
    raw = body.get("Timeout")
    if raw is None:
        return secret_id, 5.0
    if isinstance(raw, bool) or not isinstance(raw, int | float) \
            or not MIN_TIMEOUT_S <= raw <= MAX_TIMEOUT_S:
        raise EventError(f"`{EVENT_KEY}.Timeout` must be a number of seconds from "
                         f"{MIN_TIMEOUT_S:g} to {MAX_TIMEOUT_S:g}", hint=_USAGE)
    return secret_id, float(raw)


def _function_arn(context: Any) -> str | None:
    arn = getattr(context, "invoked_function_arn", None)
    return arn if isinstance(arn, str) and arn else None


def _error(kind: str, message: str, fix: str) -> dict[str, Any]:
    return {EVENT_KEY: {"error": {"type": kind, "message": _redact.redact(message),
                                  "fix": _redact.redact(fix)}}}


__all__ = ["ENABLE", "ENABLED_VALUES", "EVENT_KEY", "REFUSED", "TEMPLATE_PARAMETER", "diagnose",
           "enabled"]
