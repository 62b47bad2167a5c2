"""``rotation doctor``: preflight checks for one secret, from the caller's machine.

The checks that depend on network and identity (Secrets Manager, KMS, the secret's format and
labels, the database path, the master secret) live in the runtime, :mod:`rotation.diagnosis`, so
the deployed function can run them from its own seat too (``rotation doctor --remote``, see
:mod:`rotation.tools.remote_doctor`). This module runs them with the caller's network and
credentials, and adds what only the caller can read or do:

* the rotation function's configuration (``lambda-runtime``, ``lambda-concurrency``; its
  ``ROTATION_STRATEGY`` decides which keys the secret needs) and its CloudWatch logs
  (``last-rotation``);
* ``--fix``, the only change the doctor ever makes: it removes a stuck ``AWSPENDING`` label,
  once a login proved that ``AWSCURRENT`` is the credential in use.

Any failure makes ``rotation doctor`` exit non-zero. ``run_doctor(client, secret_id, settings,
...)`` takes the Secrets Manager client, so the tests run it against an in-process moto; the
CLI builds a real client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from rotation import diagnosis
from rotation.adapters import AdapterRegistry
from rotation.adapters.base import AdapterOptions
from rotation.config import Settings
from rotation.diagnosis import CHECKS as DIAGNOSIS_CHECKS
from rotation.diagnosis import STATUSES, CheckResult, DoctorReport, Status, run_checks
from rotation.diagnosis.database import ensure_login, login_diagnosis
from rotation.diagnosis.report import client_error_code, client_error_text, result
from rotation.diagnosis.secret import check_secret_format as shared_secret_format
from rotation.diagnosis.secret import check_staging_labels as shared_staging_labels
from rotation.diagnosis.secret import stuck_pending
from rotation.diagnosis.state import LoginOutcome
from rotation.errors import LoginError, PasswordRefusedError, RotationError
from rotation.secrets import CURRENT, PENDING, SecretsManager

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

#: Lambda's Python runtimes and the day each is (or is planned to be) deprecated. After that day
#: the runtime gets no security patches; some weeks later Lambda blocks creating and then updating
#: functions on it. Source: docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html
PYTHON_RUNTIME_DEPRECATION: Mapping[str, date] = {
    "python2.7": date(2021, 7, 15),
    "python3.6": date(2022, 7, 18),
    "python3.7": date(2023, 12, 4),
    "python3.8": date(2024, 10, 14),
    "python3.9": date(2025, 12, 15),
    "python3.10": date(2026, 6, 30),
    "python3.11": date(2026, 6, 30),
    "python3.12": date(2028, 10, 31),
    "python3.13": date(2029, 6, 30),
    "python3.14": date(2029, 6, 30),
}
DEPRECATION_WARNING_DAYS = 180
MIN_RESERVED_CONCURRENCY = 10  # Secrets Manager retries and overlapping rotations need headroom
LOG_LOOKBACK_DAYS = 14


@dataclass
class Doctor(diagnosis.Doctor):
    """The shared checks' state, plus what the caller's machine adds: the function's
    configuration (through the Lambda API), its logs, and ``--fix``."""

    fix: bool = False
    function_name: str | None = None
    lambda_client: Any | None = None
    logs_client: Any | None = None
    function_config: dict[str, Any] | None = None
    function_error: CheckResult | None = None


# -- the secret's checks, with what the caller adds ----------------------------------------------

def check_secret_format(d: Doctor) -> CheckResult:
    """The shared check, once the function's environment (its ROTATION_STRATEGY) is known."""
    load_function(d)
    if d.function_config is not None:
        d.function_env = (d.function_config.get("Environment") or {}).get("Variables") or {}
    return shared_secret_format(d)


def check_staging_labels(d: Doctor) -> CheckResult:
    """The shared check (a stuck AWSPENDING fails); with ``fix``, remove that label, only once
    a login proved that AWSCURRENT is the credential in use."""
    reported = shared_staging_labels(d)
    stuck_id = stuck_pending(d.state) if d.state is not None else None
    if not d.fix or stuck_id is None:
        return reported
    assert d.state is not None
    name, where = reported.name, reported.detail
    current_id = d.state.version_with(CURRENT)
    login = ensure_login(d)
    if login is not None and login.ok and current_id is not None:
        try:
            d.secrets.move_stage(d.arn, PENDING, to_version=None, from_version=stuck_id)
        except RotationError as exc:
            return result(name, "fail", f"{where}; removing the label failed: {exc.message}",
                          exc.hint or "allow secretsmanager:UpdateSecretVersionStage")
        return result(name, "ok", f"fixed: removed AWSPENDING from version {stuck_id[:8]} "
                      "after AWSCURRENT logged in; the next rotation can start")
    return _refuse_fix(d, name, where, stuck_id, current_id, login)


def _refuse_fix(d: Doctor, name: str, where: str, stuck_id: str, current_id: str | None,
                login: LoginOutcome | None) -> CheckResult:
    """Why the label stays: AWSCURRENT could not be shown to work."""
    cause = login_diagnosis(d)
    if (login is None or login.error is None or d.db_blocker is not None
            or cause is None or not isinstance(login.error, LoginError)):
        owner = d.db_blocker or (cause.check if cause else None)
        return result(name, "fail", where + "; not fixed: cannot confirm that AWSCURRENT works "
                      "(the database could not be reached, or the secret is unusable), so the "
                      "labels stay as they are",
                      f"fix what {owner or 'secret-format'} reports, then run `rotation doctor "
                      "--fix` again")
    if _pending_logs_in(d, stuck_id):
        return result(name, "fail", where + "; not fixed: AWSCURRENT does not log in but "
                      "AWSPENDING does, so the database already uses the pending password "
                      "(setSecret ran, finishSecret did not). Removing AWSPENDING would lose "
                      "the working credential",
                      "finish the rotation instead: aws secretsmanager "
                      f"update-secret-version-stage --secret-id {d.arn} --version-stage "
                      f"AWSCURRENT --move-to-version-id {stuck_id} --remove-from-version-id "
                      f"{current_id or '<current>'}")
    why = ("the password was changed outside rotation"
           if isinstance(login.error, PasswordRefusedError) else "see db-login")
    return result(name, "fail", where + "; not fixed: neither AWSCURRENT nor AWSPENDING logs "
                  f"in ({why})",
                  "set the database password to the AWSCURRENT value, then run `rotation "
                  "doctor --fix` again")


def _pending_logs_in(d: Doctor, stuck_id: str) -> bool:
    """Whether the pending version's credential logs in (False when it holds no usable value,
    as the service's value-less placeholder)."""
    try:
        pending = d.step_context(stuck_id).pending()
    except RotationError:
        return False
    return d.try_login(pending).ok


# -- the rotation function -----------------------------------------------------------------------

def _function_name(d: Doctor) -> str | None:
    return d.function_name or (d.description or {}).get("RotationLambdaARN") or None


def load_function(d: Doctor) -> None:
    """GetFunctionConfiguration once; the checks below and the strategy read it."""
    name = _function_name(d)
    if d.lambda_client is None or name is None or d.function_config is not None:
        return
    try:
        d.function_config = dict(d.lambda_client.get_function_configuration(FunctionName=name))
    except ClientError as exc:
        code = client_error_code(exc)
        if code == "ResourceNotFoundException":
            d.function_error = result("lambda-runtime", "fail",
                                      f"the rotation function {name} does not exist",
                                      "deploy the function, or point rotation at the right ARN")
        else:  # the function could not be checked: that is not a pass
            d.function_error = result("lambda-runtime", "fail",
                                      f"cannot read the configuration of {name}: "
                                      f"{client_error_text(exc)}",
                                      "allow lambda:GetFunctionConfiguration on the function "
                                      "for the caller, or pass --no-function to leave the "
                                      "function unchecked")
    except BotoCoreError as exc:
        d.function_error = result("lambda-runtime", "fail",
                                  f"cannot reach the Lambda API: {type(exc).__name__}",
                                  "check the region and the network path to Lambda, or pass "
                                  "--no-function to leave the function unchecked")


def check_lambda_runtime(d: Doctor) -> CheckResult:
    """The function's runtime is a supported Python (deprecation table above)."""
    name = "lambda-runtime"
    if d.lambda_client is None:
        return result(name, "skip", "no Lambda client")
    fname = _function_name(d)
    if fname is None:
        return result(name, "skip", "no function: pass --function-name, or configure rotation")
    if d.function_error is not None:
        return d.function_error
    config = d.function_config or {}
    runtime = str(config.get("Runtime") or "")
    if not runtime:
        return result(name, "ok" if config.get("PackageType") == "Image" else "warn",
                      f"{fname} is a container image; its Python is not visible here"
                      if config.get("PackageType") == "Image" else
                      f"{fname} reports no runtime")
    deprecated = PYTHON_RUNTIME_DEPRECATION.get(runtime)
    if not runtime.startswith("python"):
        return result(name, "warn", f"{fname} runs {runtime}, not Python",
                      "deploy the template (python3.12 or newer)")
    if deprecated is None:
        return result(name, "ok", f"{fname} runs {runtime}")
    today = datetime.now(UTC).date()
    if deprecated <= today:
        return result(name, "warn", f"{fname} runs {runtime}, deprecated since {deprecated}: "
                      "no more security patches, and Lambda blocks updates to it soon after",
                      "move to python3.12 or newer (and its matching driver layers)")
    if deprecated - today <= timedelta(days=DEPRECATION_WARNING_DAYS):
        return result(name, "warn", f"{fname} runs {runtime}, deprecated on {deprecated}",
                      "plan the move to python3.12 or newer")
    return result(name, "ok", f"{fname} runs {runtime} (supported until {deprecated})")


def check_lambda_concurrency(d: Doctor) -> CheckResult:
    """Reserved concurrency: 0 stops the function; below 10 throttles rotations."""
    name = "lambda-concurrency"
    fname = _function_name(d)
    if d.lambda_client is None or fname is None or d.function_config is None:
        return result(name, "skip", "the function's configuration is not available")
    try:
        response = d.lambda_client.get_function_concurrency(FunctionName=fname)
    except (ClientError, BotoCoreError) as exc:  # 0 would stop every rotation: not a pass
        text = client_error_text(exc) if isinstance(exc, ClientError) else type(exc).__name__
        return result(name, "fail", f"cannot read the reserved concurrency of {fname}: {text}",
                      "allow lambda:GetFunctionConcurrency on the function for the caller, or "
                      "pass --no-function to leave the function unchecked")
    reserved = response.get("ReservedConcurrentExecutions")
    if reserved is None:
        return result(name, "ok", "no reserved concurrency (uses the account's pool)")
    if reserved == 0:
        return result(name, "fail", "reserved concurrency is 0: the function never runs",
                      f"raise it to at least {MIN_RESERVED_CONCURRENCY}, or remove it")
    if reserved < MIN_RESERVED_CONCURRENCY:
        return result(name, "warn", f"reserved concurrency is {reserved}: rotations of "
                      "several secrets, and Secrets Manager's retries, get throttled",
                      f"raise it to at least {MIN_RESERVED_CONCURRENCY}, or remove it")
    return result(name, "ok", f"reserved concurrency {reserved}")


@dataclass
class _StepSeen:
    outcome: str
    error: dict[str, Any] | None = None


def check_last_rotation(d: Doctor) -> CheckResult:
    """From the function's CloudWatch logs: which steps the last rotation of this secret reached,
    and the error it stopped on (our JSON log lines: step, outcome, error_class, cause, fix)."""
    name = "last-rotation"
    fname = _function_name(d)
    if d.logs_client is None:
        return result(name, "skip", "no CloudWatch Logs client")
    if fname is None:
        return result(name, "skip", "no function: pass --function-name, or configure rotation")
    short = fname.split(":function:")[-1].split(":")[0]
    group = ((d.function_config or {}).get("LoggingConfig") or {}).get("LogGroup") \
        or f"/aws/lambda/{short}"
    try:
        events = list(_log_events(d.logs_client, group, d.arn))
    except ClientError as exc:
        return result(name, "skip", f"cannot read log group {group}: {client_error_text(exc)}")
    except BotoCoreError as exc:
        return result(name, "skip", f"cannot reach CloudWatch Logs: {type(exc).__name__}")
    if not events:
        return result(name, "skip", f"no rotation of this secret logged in {group} in the "
                      f"last {LOG_LOOKBACK_DAYS} days")
    return _summarize_rotation(name, events)


def _log_events(logs: Any, group: str, arn: str) -> Iterator[tuple[int, dict[str, Any]]]:
    start = int((time.time() - LOG_LOOKBACK_DAYS * 86400) * 1000)
    kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start,
                              "filterPattern": json.dumps(arn)}
    for _ in range(20):  # at most 20 pages: the last two weeks of one secret's rotations
        response = logs.filter_log_events(**kwargs)
        for event in response.get("events", []):
            try:
                record = json.loads(event.get("message", ""))
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("step") and \
                    arn in (record.get("secret_arn"), record.get("secret_id")):
                yield int(event.get("timestamp", 0)), record
        token = response.get("nextToken")
        if not token:
            return
        kwargs["nextToken"] = token


def _summarize_rotation(name: str, events: list[tuple[int, dict[str, Any]]]) -> CheckResult:
    events.sort(key=lambda e: e[0])
    last_token = next((r.get("token_prefix") for _, r in reversed(events)
                       if r.get("token_prefix")), None)
    mine = [(t, r) for t, r in events if r.get("token_prefix") == last_token]
    steps: dict[str, _StepSeen] = {}
    last_error: dict[str, Any] | None = None
    for _, record in mine:
        outcome = record.get("outcome")
        if not outcome:
            continue
        seen = _StepSeen(str(outcome), record if outcome == "failed" else None)
        steps[str(record["step"])] = seen
        if outcome == "failed":
            last_error = record
    when = datetime.fromtimestamp(mine[-1][0] / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    reached = ", ".join(f"{step} {seen.outcome}" for step, seen in steps.items()) or "no step"
    head = f"last rotation (version {last_token}, {when}): {reached}"
    finished = steps.get("finishSecret")
    if finished is not None and finished.outcome != "failed":
        return result(name, "ok", head)
    if last_error is not None and steps.get(str(last_error["step"]), _StepSeen("")).error:
        cause = last_error.get("cause", "")
        message = str(last_error.get("message", ""))
        return result(name, "warn", f"{head}; stopped at {last_error['step']} on "
                      f"{last_error.get('error_class', 'an error')} ({cause}): {message}",
                      str(last_error.get("fix") or ""))
    return result(name, "warn", f"{head}; it did not reach finishSecret (still running, or "
                  "the function timed out)", "check the function's timeout and the log "
                  "stream for REPORT lines with 'Status: timeout'")


# -- running -------------------------------------------------------------------------------------

#: the shared checks this module extends
_EXTENDED: Mapping[diagnosis.Check, Callable[[Doctor], CheckResult]] = {
    shared_secret_format: check_secret_format,
    shared_staging_labels: check_staging_labels,
}
CHECKS: tuple[Callable[[Doctor], CheckResult], ...] = (
    *(_EXTENDED.get(check, check) for check in DIAGNOSIS_CHECKS),
    check_lambda_runtime,
    check_lambda_concurrency,
    check_last_rotation,
)


def run_doctor(client: SecretsManagerClient, secret_id: str, settings: Settings | None = None,
               *, fix: bool = False, timeout: float = 5.0, strategy: str | None = None,
               function_name: str | None = None, master_secret_id: str | None = None,
               lambda_client: Any | None = None, logs_client: Any | None = None,
               on_result: Callable[[CheckResult], None] | None = None) -> DoctorReport:
    """Run every check against ``secret_id`` and return the report (never raises for a finding).

    ``settings`` supplies the CA bundle and strategy the function would use (default: from the
    environment); ``lambda_client``/``logs_client`` enable the function checks (skipped
    without them)."""
    settings = settings or Settings.from_env()
    adapters = AdapterRegistry(AdapterOptions(ca_bundle=settings.ca_bundle,
                                              connect_timeout=timeout))
    doctor = Doctor(SecretsManager(client), secret_id, settings, adapters, timeout=timeout,
                    strategy_override=strategy, master_secret_id=master_secret_id, fix=fix,
                    function_name=function_name, lambda_client=lambda_client,
                    logs_client=logs_client)
    return run_checks(doctor, CHECKS, on_result=on_result)


__all__ = ["CHECKS", "PYTHON_RUNTIME_DEPRECATION", "STATUSES", "CheckResult", "Doctor",
           "DoctorReport", "Status", "run_doctor"]
