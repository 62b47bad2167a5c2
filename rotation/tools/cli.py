"""The ``rotation`` console script: ``invoke``, ``rotate``, ``doctor``, ``demo``, ``policy`` and
``consumers``.

Output is for people on a terminal (a live step display when stdout is a TTY, plain lines when
piped) or, with ``--json``, one JSON document for scripts. The function's own JSON log lines go
to stderr. No subcommand prints a secret value or a RotationToken: reports carry version ids,
labels, timings and counts, and every line passes through the redaction registry on its way out.

Global options mean the same in every subcommand, before or after its name
(``rotation --profile p doctor X`` is ``rotation doctor X --profile p``): ``--profile`` (one boto3
session for every client the command builds), ``--region`` (else the region of a full ARN given
as SECRET_ID or function, else the profile's or the environment's), ``--endpoint-url`` (the
Secrets Manager endpoint) and ``--json``. Commands on the embedded stack (``demo``, ``--local``)
make no AWS calls and ignore the AWS options, saying so on stderr.

``--json``: stdout holds exactly one JSON document. When the command reached a verdict (exit 0,
or 1 because what it examined failed) it is the command's result; otherwise (a usage error, could
not run, interrupted, or an error before any verdict) it is ``{"error": ..., "fix": ...,
"exit_code": ...}``, with ``"result"`` when the command had a partial one. Errors also go to
stderr as ``error:`` and ``fix:`` lines, with or without ``--json``.

Exit status (``EXIT_*``):

* 0: ok;
* 1: a check, a step or a rotation failed: the thing was examined and is wrong;
* 2: usage error: bad options, or a file that is not what the option takes (a secret sample
  given as a step event, or the reverse);
* 3: could not run: no credentials, no region, an unknown profile, an unreachable endpoint,
  AccessDenied on the command's own call (not inside a step ``invoke`` runs: that is the step's
  failure), throttled after retries, or the embedded stack could not start;
* 130: interrupted (Ctrl-C or SIGTERM); everything the command started was stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from unittest import mock

from rotation import __version__, _redact
from rotation.config import ENDPOINT, STRATEGIES
from rotation.errors import RotationError
from rotation.event import STEPS
from rotation.secrets import CURRENT, PENDING, PREVIOUS
from rotation.tools.aws_options import AwsOptions, Blocked, blocked_by

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from rotation.config import Settings
    from rotation.tools.demo import ReplayReport, RotationRun
    from rotation.tools.doctor import CheckResult, DoctorReport
    from rotation.tools.local import StepReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANNOT_RUN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
LOCAL_ENGINES = ("postgres", "aurora-postgresql", "mysql", "mariadb", "aurora-mysql", "redis")
SAMPLES_DIR = "examples/secrets"
_STAGE_ORDER = {CURRENT: 0, PENDING: 1, PREVIOUS: 2}


class UsageError(Exception):
    """A usage error found once the command runs (a file that is not what its option takes)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


# -- output --------------------------------------------------------------------------------------

class Printer:
    """Every line the CLI writes goes through here and is scrubbed of registered secrets."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, *,
                 json_mode: bool = False) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.live = bool(getattr(self.out, "isatty", lambda: False)())
        self.json_mode = json_mode
        self.document_written = False
        self._pending_line = False

    def line(self, text: str = "") -> None:
        self._end_live()
        self.out.write(_redact.redact(text) + "\n")
        self.out.flush()

    def status(self, text: str) -> None:
        """A transient line (TTY only), replaced by the next one."""
        if self.live:
            self.out.write("\r\033[K" + _redact.redact(text))
            self.out.flush()
            self._pending_line = True

    def error(self, text: str, hint: str = "") -> None:
        self._end_live()
        self.err.write(_redact.redact(f"error: {text}") + "\n")
        if hint:
            self.err.write(_redact.redact(f"fix: {hint}") + "\n")
        self.err.flush()

    def note(self, text: str) -> None:
        self._end_live()
        self.err.write(_redact.redact(f"note: {text}") + "\n")
        self.err.flush()

    def json(self, document: Mapping[str, Any]) -> None:
        self.out.write(_redact.redact(json.dumps(document, indent=2, default=str)) + "\n")
        self.out.flush()
        self.document_written = True

    def fail(self, text: str, hint: str, code: int,
             result: Mapping[str, Any] | None = None) -> int:
        """Report an error on stderr and, with --json and no document written yet, as the error
        document on stdout; returns ``code``."""
        self.error(text, hint)
        if self.json_mode and not self.document_written:
            self.json({"error": text, "fix": hint, "exit_code": code,
                       **({"result": result} if result is not None else {})})
        return code

    def _end_live(self) -> None:
        if self._pending_line:
            self.out.write("\r\033[K")
            self._pending_line = False


def labels_text(labels: Mapping[str, Sequence[str]]) -> str:
    """``3f8a2c4e AWSCURRENT | 1a2b3c4d AWSPREVIOUS``: version id prefixes and their labels."""
    rows = sorted(((vid, sorted(stages, key=lambda s: _STAGE_ORDER.get(s, 9)))
                   for vid, stages in labels.items() if stages),
                  key=lambda row: min(_STAGE_ORDER.get(s, 9) for s in row[1]))
    return " | ".join(f"{vid[:8]} {','.join(stages)}" for vid, stages in rows) or "(none)"


def _step_line(report: StepReport, lead: str = "  ") -> str:
    mark = "ok " if report.error is None else "ERR"
    line = f"{lead}{mark} {report.step:<13} {report.outcome:<20} {report.duration_ms:>8.1f} ms"
    return line + (f"\n      {report.error}" if report.error else "")


def _step_dict(report: StepReport) -> dict[str, Any]:
    return {"step": report.step, "outcome": report.outcome, "duration_ms": report.duration_ms,
            **({"error": report.error} if report.error else {})}


def _calls_text(calls: Mapping[str, int]) -> str:
    total = sum(calls.values())
    detail = ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
    return f"{total} ({detail})" if detail else "0"


class StepDisplay:
    """Steps as they run: a transient "running" line on a TTY, one line per finished step."""

    def __init__(self, printer: Printer) -> None:
        self.printer = printer

    def started(self, step: str) -> None:
        self.printer.status(f"  ... {step:<13} running")

    def finished(self, report: StepReport) -> None:
        self.printer.line(_step_line(report))


@contextmanager
def function_logs(verbose: bool) -> Iterator[None]:
    """Keep stdout for the CLI: the function's JSON log lines, and anything it prints (its EMF
    metric documents), go to stderr. ``verbose``: all of them; otherwise warnings and errors
    only, and no metric documents."""
    from rotation.logs import logger

    handler_ = logger.registered_handler
    stream = getattr(handler_, "stream", None)
    moved = stream is sys.__stdout__ or stream is sys.stdout
    level = logger.log_level
    if moved:
        handler_.stream = sys.stderr  # type: ignore[attr-defined]
    logger.setLevel("INFO" if verbose else "WARNING")
    quiet_metrics = {} if verbose else {"POWERTOOLS_METRICS_DISABLED": "true"}
    try:
        with redirect_stdout(sys.stderr), mock.patch.dict(os.environ, quiet_metrics):
            yield
    finally:
        logger.setLevel(level)
        if moved:
            handler_.stream = stream  # type: ignore[attr-defined]


# -- AWS: the clients a command builds (seams for the tests) --------------------------------------

def secrets_client(aws: AwsOptions) -> SecretsManagerClient:
    """The Secrets Manager client of a command (its session; --endpoint-url)."""
    return aws.secrets_client()


def aws_client(aws: AwsOptions, service: str, config: Any = None) -> Any:
    """A client for another service (Lambda, CloudWatch Logs, ECS, ...), from the same session."""
    return aws.client(service, config)


def _note_local(args: argparse.Namespace, printer: Printer) -> None:
    """The embedded stack makes no AWS calls: say so when AWS options were given anyway."""
    given = [flag for flag, value in (("--profile", args.profile), ("--region", args.region),
                                      ("--endpoint-url", args.endpoint_url)) if value]
    if given:
        printer.note(f"{', '.join(given)} not used: the embedded stack makes no AWS calls")


# -- files: step events and secret samples -------------------------------------------------------

_EVENT_KEYS = frozenset({"Step", "SecretId", "ClientRequestToken"})
_SECRET_KEYS = frozenset({"engine", "host", "port", "username", "password", "dbname",
                          "masterarn"})


def is_secret_sample(data: Mapping[str, Any]) -> bool:
    """A secret's JSON (engine, host, username, password...), not a step event."""
    return not (_EVENT_KEYS & data.keys()) and bool(_SECRET_KEYS & data.keys())


def is_step_event(data: Mapping[str, Any]) -> bool:
    return bool({"Step", "ClientRequestToken"} & data.keys())


def _read_json_object(path: str, what: str, example: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the {what} {path}: {type(exc).__name__}",
                         f"pass a JSON file such as {example}") from None
    if not isinstance(data, dict):
        raise UsageError(f"the {what} {path} does not hold a JSON object",
                         f"pass a JSON file such as {example}")
    for key in ("RotationToken", "password"):
        if isinstance(data.get(key), str):
            _redact.register(data[key])
    return data


def load_event(path: str) -> dict[str, Any]:
    """A step event; a secret sample is refused (usage error)."""
    data = _read_json_object(path, "event file", "events/setSecret.json")
    if is_secret_sample(data):
        raise UsageError(f"{path} is a secret sample, not a step event: pass it with --local "
                         "--secret FILE, or use events/<step>.json",
                         f"rotation invoke --local --secret {path} -e events/setSecret.json")
    return data


def check_secret_sample(path: str | None) -> None:
    """``--secret FILE`` must be a secret sample; a step event is refused (usage error)."""
    if path is None:
        return
    data = _read_json_object(path, "secret sample", f"{SAMPLES_DIR}/secret-postgres.json")
    if is_step_event(data):
        raise UsageError(f"{path} is a step event, not a secret sample: pass it as the event "
                         f"(-e {path}), and a secret sample such as "
                         f"{SAMPLES_DIR}/secret-postgres.json with --secret",
                         f"the secret samples are in {SAMPLES_DIR}/, the step events in "
                         "events/")


# -- invoke --------------------------------------------------------------------------------------

def cmd_invoke(args: argparse.Namespace, printer: Printer) -> int:
    path = args.event or args.event_file
    event = load_event(path)
    if args.local:
        return _invoke_local(args, path, event, printer)
    from rotation import handler
    from rotation.tools.local import LocalLambdaContext

    secret_id = str(event.get("SecretId") or "")
    aws = AwsOptions.from_args(args, secret_id)
    document: dict[str, Any] = {"step": event.get("Step"), "secret_id": secret_id}
    with aws.as_default(), function_logs(True):
        handler.reset()
        started = time.perf_counter()
        try:
            result = handler.lambda_handler(event, LocalLambdaContext())
        except RotationError as exc:
            document.update(succeeded=False, outcome="failed", error=exc.message, fix=exc.hint,
                            cause=exc.category)
            failure: RotationError | None = exc
        else:
            document.update(succeeded=True, outcome=result.get("Outcome"))
            failure = None
        finally:
            handler.reset()
            document["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    if failure is not None:
        # AccessDenied inside the step is the step's failure; no credentials, no region, an
        # unreachable endpoint or throttling mean it could not run.
        blocked = _step_blocked(aws)
        if blocked is not None:
            return printer.fail(blocked.message, blocked.fix, EXIT_CANNOT_RUN, document)
        if args.json:
            printer.json(document)
        return printer.fail(f"{event.get('Step')} failed: {failure.message}", failure.hint,
                            EXIT_FAILED)
    if args.json:
        printer.json(document)
    else:
        printer.line(f"{document['step']}: {document['outcome']} "
                     f"({document['duration_ms']:.1f} ms)")
    return EXIT_OK


def _step_blocked(aws: AwsOptions) -> Blocked | None:
    blocked = aws.watch.blocked()
    return None if blocked is None or blocked.kind == "denied" else blocked


def _invoke_local(args: argparse.Namespace, path: str, event: dict[str, Any],
                  printer: Printer) -> int:
    from rotation.tools.demo import replay_event

    step = event.get("Step")
    if step not in STEPS:
        raise UsageError(f"the event's Step {str(step)[:64]!r} is not a rotation step",
                         "valid steps are " + ", ".join(STEPS))
    check_secret_sample(args.secret)
    _note_local(args, printer)
    display = StepDisplay(printer)
    quiet = args.json
    if not quiet:
        printer.line(f"replaying {step} from {path} on the embedded stack "
                     "(moto + a throwaway database)")

    def on_step(report: StepReport) -> None:
        if report.step != step and not quiet:
            display.finished(report)

    with function_logs(args.verbose):
        result = replay_event(event, engine=args.engine, sample=args.secret, on_step=on_step)
    if quiet:
        printer.json(_replay_dict(result))
    else:
        _print_replay(result, printer)
    return EXIT_OK if result.succeeded else EXIT_FAILED


def _replay_dict(result: ReplayReport) -> dict[str, Any]:
    return {"step": result.step, "secret": result.secret_name, "engine": result.engine,
            "server": result.server, "strategy": result.strategy,
            "succeeded": result.succeeded, "result": _step_dict(result.result),
            "prepared": [_step_dict(s) for s in result.prepared],
            "labels_after": result.labels_after, "api_calls": dict(sorted(
                result.api_calls.items()))}


def _print_replay(result: ReplayReport, printer: Printer) -> None:
    printer.line(_step_line(result.result, lead="  > "))
    printer.line(f"secret {result.secret_name} ({result.engine} at {result.server}, "
                 f"{result.strategy})")
    printer.line(f"labels after {result.step}: {labels_text(result.labels_after)}")
    printer.line(f"Secrets Manager calls by {result.step}: {_calls_text(result.api_calls)}")


# -- rotate --------------------------------------------------------------------------------------

@dataclass
class FollowReport:
    """A rotation Secrets Manager ran, as seen from its versions and labels."""

    secret_id: str
    arn: str = ""
    version_id: str = ""
    succeeded: bool = False
    events: list[tuple[float, str]] = field(default_factory=list)
    labels_after: dict[str, list[str]] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    hint: str = ""
    #: set when RotateSecret could not run (credentials, access, endpoint, throttling)
    blocked: Blocked | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"secret_id": self.secret_id, "arn": self.arn, "version": self.version_id,
                "succeeded": self.succeeded, "duration_s": round(self.duration_s, 2),
                "events": [{"at_s": round(t, 2), "event": e} for t, e in self.events],
                "labels_after": self.labels_after, "error": self.error, "fix": self.hint}


def follow_rotation(client: SecretsManagerClient, secret_id: str, *, timeout: float = 300.0,
                    interval: float = 2.0, on_event: Callable[[str], None] | None = None,
                    on_wait: Callable[[str], None] | None = None,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> FollowReport:
    """``RotateSecret`` (immediately), then poll DescribeSecret until AWSCURRENT moved to the new
    version and AWSPENDING left it (done), or until ``timeout`` (failed). The steps are inferred
    from the labels: pending staged -> current moved -> pending removed."""
    from botocore.exceptions import BotoCoreError, ClientError

    report = FollowReport(secret_id)
    started = clock()

    def event(text: str) -> None:
        report.events.append((clock() - started, text))
        if on_event:
            on_event(text)

    try:
        response = client.rotate_secret(SecretId=secret_id, RotateImmediately=True)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        report.blocked = blocked_by(exc)
        report.error = (f"RotateSecret on {secret_id} failed: {error.get('Code')}: "
                        f"{_redact.redact(str(error.get('Message', '')))[:300]}")
        report.hint = report.blocked.fix if report.blocked else (
            "a previous rotation is stuck: run `rotation doctor "
            f"{secret_id}` (--fix clears it)"
            if "previous rotation" in str(error.get("Message", "")).lower() else
            f"run `rotation doctor {secret_id}` to check the setup")
        return report
    except BotoCoreError as exc:
        report.blocked = blocked_by(exc)
        report.error = f"RotateSecret on {secret_id} failed: {type(exc).__name__}"
        report.hint = report.blocked.fix if report.blocked else ""
        return report
    report.arn, report.version_id = response["ARN"], response["VersionId"]
    token = report.version_id
    event(f"rotation started: new version {token[:8]}")
    seen: set[str] = set()
    moved_at: float | None = None
    while True:
        labels = {vid: list(stages) for vid, stages in client.describe_secret(
            SecretId=report.arn).get("VersionIdsToStages", {}).items()}
        report.labels_after = labels
        stages = labels.get(token, [])
        if PENDING in stages and "pending" not in seen:
            seen.add("pending")
            event(f"AWSPENDING staged on {token[:8]} (createSecret .. testSecret running)")
        if CURRENT in stages and "current" not in seen:
            seen.add("current")
            moved_at = clock()
            event(f"AWSCURRENT moved to {token[:8]} (finishSecret done)")
        if CURRENT in stages and PENDING not in stages:
            event("AWSPENDING removed: rotation complete")
            report.succeeded = True
            break
        if moved_at is not None and clock() - moved_at >= 3 * interval:
            # The service usually removes AWSPENDING itself; both labels on the new version
            # is a finished rotation all the same.
            event("AWSPENDING left on the new AWSCURRENT version: rotation complete")
            report.succeeded = True
            break
        if clock() - started >= timeout:
            where = "AWSCURRENT moved" if moved_at else (
                "AWSPENDING staged" if "pending" in seen else "nothing staged yet")
            report.error = (f"the rotation did not finish within {timeout:g} s ({where}; "
                            f"labels: {labels_text(labels)})")
            report.hint = (f"run `rotation doctor {secret_id}`: last-rotation shows the step "
                           "and error from the function's logs")
            break
        if on_wait:
            on_wait(f"waiting for the rotation ({clock() - started:.0f} s; "
                    f"{labels_text(labels)})")
        sleep(interval)
    report.duration_s = clock() - started
    return report


def cmd_rotate(args: argparse.Namespace, printer: Printer) -> int:
    if args.local:
        return _rotate_local(args, printer)
    client = secrets_client(AwsOptions.from_args(args, args.secret_id))
    if not args.json:
        printer.line(f"rotating {args.secret_id} (RotateSecret, then following its labels)")
    report = follow_rotation(
        client, args.secret_id, timeout=args.timeout, interval=args.interval,
        on_event=None if args.json else lambda text: printer.line(f"  {text}"),
        on_wait=None if args.json else printer.status)
    if report.blocked is not None:
        return printer.fail(report.blocked.message, report.blocked.fix, EXIT_CANNOT_RUN,
                            report.to_dict())
    if args.json:
        printer.json(report.to_dict())
    elif report.succeeded:
        printer.line(f"done in {report.duration_s:.1f} s; labels: "
                     f"{labels_text(report.labels_after)}")
    if report.error:
        return printer.fail(report.error, report.hint, EXIT_FAILED)
    return EXIT_OK if report.succeeded else EXIT_FAILED


def _rotate_local(args: argparse.Namespace, printer: Printer) -> int:
    from rotation.tools.demo import local_target, rotate_once

    check_secret_sample(args.secret)
    _note_local(args, printer)
    display = StepDisplay(printer)
    quiet = args.json
    with function_logs(args.verbose), local_target(
            engine=args.engine, sample=args.secret, secret_name=args.secret_id) as target:
        if not quiet:
            printer.line(f"rotating {target.name} on the embedded stack: moto + a throwaway "
                         f"{target.engine} at {target.server.host}:{target.server.port}")
        run = rotate_once(target, on_step=None if quiet else display.finished,
                          on_start=None if quiet else display.started)
        document = {"secret": target.name, "engine": target.engine,
                    "strategy": target.strategy, **run.to_dict()}
    if quiet:
        printer.json(document)
    else:
        _print_run_summary(run, printer)
    return EXIT_OK if run.proven else EXIT_FAILED


def _print_run_summary(run: RotationRun, printer: Printer) -> None:
    report = run.report
    printer.line(f"  labels: {labels_text(report.labels_after)}")
    printer.line(f"  Secrets Manager calls: {_calls_text(report.api_calls)}")
    printer.line(f"  database logins: {run.logins_succeeded} succeeded, "
                 f"{run.logins_failed} failed")
    if run.new_password_works is not None:
        old = "is refused" if not run.old_password_works else (
            "still logs in" if run.single_user else "still logs in (alternating users: "
                                                    "the previous user stays valid)")
        new = "logs in" if run.new_password_works else "is REFUSED"
        printer.line(f"  proof: old credential {old}, new credential {new}")


# -- doctor --------------------------------------------------------------------------------------

_STATUS_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def _check_line(result: CheckResult) -> str:
    line = f"  {_STATUS_MARK[result.status]}  {result.name:<24} {result.detail}"
    if result.fix and result.status in ("warn", "fail"):
        line += f"\n        fix: {result.fix}"
    return line


def _doctor_settings(args: argparse.Namespace) -> Settings:
    """The function's settings from the environment, ``--ca-bundle`` replacing
    ROTATION_CA_BUNDLE. The bundle is not checked here: db-tls reports a bundle that is missing,
    not a PEM or not the server's CA, naming the flag and the file."""
    from rotation.config import Settings

    with mock.patch.dict(os.environ, {}) as env:
        if args.ca_bundle:
            env.pop("ROTATION_CA_BUNDLE", None)
        settings = Settings.from_env()
    return replace(settings, ca_bundle=args.ca_bundle) if args.ca_bundle else settings


def cmd_doctor(args: argparse.Namespace, printer: Printer) -> int:
    if args.remote:
        return _doctor_remote(args, printer)
    if args.local:
        return _doctor_local(args, printer)
    from rotation.tools.doctor import run_doctor

    settings = _doctor_settings(args)
    aws = AwsOptions.from_args(args, args.secret_id, args.function_name)
    client = secrets_client(aws)
    lambda_client = None if args.no_function else aws_client(aws, "lambda")
    logs_client = None if args.no_function else aws_client(aws, "logs")
    if not args.json:
        printer.line(f"rotation doctor: {args.secret_id}" + (" (--fix)" if args.fix else ""))
    report = run_doctor(
        client, args.secret_id, settings, fix=args.fix, timeout=args.timeout,
        strategy=args.strategy,
        function_name=args.function_name, master_secret_id=args.master_secret,
        lambda_client=lambda_client, logs_client=logs_client,
        on_result=None if args.json else lambda r: printer.line(_check_line(r)))
    # The doctor's first call, DescribeSecret, is its own: when that could not run, no verdict
    # on the secret was reached.
    return _doctor_exit(report, printer, blocked=aws.watch.blocked("DescribeSecret"))


def _doctor_local(args: argparse.Namespace, printer: Printer) -> int:
    """The doctor's checks on a secret of the embedded stack (moto + a throwaway database),
    with the settings the local function runs with (the server's CA)."""
    from rotation.tools.demo import local_target
    from rotation.tools.doctor import run_doctor

    check_secret_sample(args.secret)
    _note_local(args, printer)
    with function_logs(False), local_target(
            engine=args.engine, sample=args.secret, secret_name=args.secret_id) as target:
        if not args.json:
            printer.line(f"rotation doctor: {target.name} on the embedded stack (moto + a "
                         f"throwaway {target.engine} at {target.server.host}:"
                         f"{target.server.port})" + (" (--fix)" if args.fix else ""))
        report = run_doctor(
            target.client, target.arn, _doctor_settings(args), fix=args.fix,
            timeout=args.timeout, strategy=args.strategy, master_secret_id=args.master_secret,
            on_result=None if args.json else lambda r: printer.line(_check_line(r)))
    return _doctor_exit(report, printer)


def _doctor_remote(args: argparse.Namespace, printer: Printer) -> int:
    """The checks run inside the deployed function (its network, its role); verdicts only.
    Finding the function is the secret's business (a missing secret or function: exit 1); once
    it is known, anything that keeps the verdicts from arriving means the doctor could not run."""
    from rotation.tools.remote_doctor import (
        RemoteDoctorError,
        client_config,
        default_function_name,
        run_remote_doctor,
    )

    aws = AwsOptions.from_args(args, args.secret_id, args.function_name)
    try:
        function_name = args.function_name or default_function_name(secrets_client(aws),
                                                                     args.secret_id)
    except RemoteDoctorError as exc:
        blocked = aws.watch.blocked("DescribeSecret")
        return printer.fail(exc.message, exc.hint,
                            EXIT_CANNOT_RUN if blocked is not None else EXIT_FAILED)
    if not args.json:
        printer.line(f"rotation doctor: {args.secret_id} (--remote: inside {function_name})")
    try:
        report = run_remote_doctor(aws_client(aws, "lambda", client_config()), function_name,
                                   args.secret_id, timeout=args.timeout)
    except RemoteDoctorError as exc:
        return printer.fail(exc.message, exc.hint, EXIT_CANNOT_RUN)
    if not args.json:
        for result in report.checks:
            printer.line(_check_line(result))
    return _doctor_exit(report, printer)


def _doctor_exit(report: DoctorReport, printer: Printer, *,
                 blocked: Blocked | None = None) -> int:
    if blocked is not None:
        return printer.fail(blocked.message, blocked.fix, EXIT_CANNOT_RUN, report.to_dict())
    if printer.json_mode:
        printer.json(report.to_dict())
    else:
        summary = report.summary()
        printer.line("summary: " + ", ".join(f"{n} {s}" for s, n in summary.items()))
    return EXIT_FAILED if report.failed else EXIT_OK


# -- demo ----------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace, printer: Printer) -> int:
    from rotation.tools.demo import LocalTarget, run_demo

    _note_local(args, printer)
    display = StepDisplay(printer)
    quiet = args.json

    def on_ready(target: LocalTarget) -> None:
        if quiet:
            return
        printer.line(f"demo: moto Secrets Manager (in-process) + a throwaway {target.engine} "
                     f"at {target.server.host}:{target.server.port} (TLS verified against "
                     "its own CA)")
        printer.line(f"secret {target.name} for database user {target.username!r}, strategy "
                     f"{target.strategy}; {args.rotations} rotation(s) in one warm container")

    runs: list[RotationRun] = []

    def on_start(step: str) -> None:
        if step == STEPS[0]:
            printer.line("")
            printer.line(f"rotation {len(runs) + 1}/{args.rotations}")
        display.started(step)

    def on_rotation(run: RotationRun) -> None:
        runs.append(run)
        if not quiet:
            printer.line(f"  version {run.report.token[:8]}, "
                         f"{run.report.duration_ms:.1f} ms in the four steps")
            _print_run_summary(run, printer)

    with function_logs(args.verbose):
        demo = run_demo(engine=args.engine, rotations=args.rotations,
                        on_ready=on_ready, on_step=None if quiet else display.finished,
                        on_start=None if quiet else on_start, on_rotation=on_rotation)
    if quiet:
        printer.json(demo.to_dict())
        return EXIT_OK if demo.succeeded else EXIT_FAILED
    printer.line("")
    calls = [sum(r.report.api_calls.values()) for r in demo.rotations]
    logins = [r.logins_succeeded + r.logins_failed for r in demo.rotations]
    printer.line(f"{'all' if demo.succeeded else 'NOT all'} {len(demo.rotations)} rotation(s) "
                 f"proven in {demo.duration_s:.1f} s; per rotation: Secrets Manager calls "
                 f"{min(calls)}-{max(calls)}, database logins {min(logins)}-{max(logins)}, "
                 f"failed logins {sum(r.logins_failed for r in demo.rotations)} in total")
    printer.line("stopped the throwaway server and the in-process Secrets Manager")
    return EXIT_OK if demo.succeeded else EXIT_FAILED


# -- policy --------------------------------------------------------------------------------------

def cmd_policy(args: argparse.Namespace, printer: Printer) -> int:
    from botocore.exceptions import ClientError

    from rotation.tools.policy import PolicyInputError, describe_kind, policy_for

    aws = AwsOptions.from_args(args, args.secret_id)
    region = aws.region
    try:
        clients: dict[str, Any] = {}
        if not args.offline:  # --offline makes no AWS call, so it needs no session either
            clients["secrets_client"] = secrets_client(aws)
            region = region or aws.region_name
            clients["kms_client"] = aws_client(aws, "kms")
        document = policy_for(args.secret_id, args.kind, region=region, account=args.account,
                              kms_key=args.kms_key, describe=args.describe, **clients)
    except PolicyInputError as exc:
        return printer.fail(str(exc), "see `rotation policy --help`", EXIT_USAGE)
    except ClientError as exc:
        blocked = blocked_by(exc)
        if blocked is not None:
            return printer.fail(blocked.message, blocked.fix + "; without access to the "
                                "secret: --offline --region R --account A", EXIT_CANNOT_RUN)
        error = exc.response.get("Error", {})
        return printer.fail(f"{error.get('Code')}: {error.get('Message', '')}",
                            "without access to the secret: --offline --region R --account A",
                            EXIT_FAILED)
    printer.err.write(_redact.redact(describe_kind(args.kind)) + "\n")
    printer.json(document)  # the policy is the output, with or without --json
    return EXIT_OK


# -- consumers -----------------------------------------------------------------------------------

def cmd_consumers(args: argparse.Namespace, printer: Printer) -> int:
    from rotation.tools.consumers import SecretNotFound, find_consumers, table_lines

    aws = AwsOptions.from_args(args, args.secret_id)
    client = secrets_client(aws)
    region = aws.region_name
    try:
        report = find_consumers(client, args.secret_id, ecs=aws_client(aws, "ecs"),
                                batch=aws_client(aws, "batch"),
                                lambda_=aws_client(aws, "lambda"),
                                iam=aws_client(aws, "iam"), kms=aws_client(aws, "kms"))
    except SecretNotFound:
        return printer.fail(f"no secret {args.secret_id} in {region}",
                            "pass the secret's name or ARN, and --region for its region",
                            EXIT_USAGE)
    if not args.json:
        for line in table_lines(report):
            printer.line(line)
    if report.incomplete and not report.failed:
        return printer.fail("some consumer checks could not run (the sources or permissions "
                            "marked \"not checked\" or \"could not check\")",
                            "give your credentials read access to them (--profile), then run "
                            "it again", EXIT_CANNOT_RUN, report.to_dict())
    if args.json:
        printer.json(report.to_dict())
    return EXIT_FAILED if report.failed else EXIT_OK


# -- the parser ----------------------------------------------------------------------------------

class UsageExit(SystemExit):
    """argparse's exit 2, with the message kept for the JSON error document."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(EXIT_USAGE)
        self.prog, self.message = prog, message


Check = Callable[[argparse.Namespace], "str | None"]


class _Parser(argparse.ArgumentParser):
    """argparse, plus checks across options (``--remote`` with ``--local``, ...) that run as
    part of parsing, so every usage error exits 2 with the subcommand's usage line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}
        self.checks: dict[str, Check] = {}

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise UsageExit(self.prog, message)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        subparser = self.commands.get(getattr(parsed, "command", None) or "")
        if subparser is not None:  # the subcommand's usage line, not the root's
            if extras:
                subparser.error(f"unrecognized arguments: {' '.join(extras)}")
            check = self.checks.get(parsed.command)
            if check is not None and (problem := check(parsed)):
                subparser.error(problem)
        return parsed, extras


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text[:100]!r} is not an http(s) URL")
    return text


def _global_options(parser: argparse.ArgumentParser, *, subcommand: bool) -> None:
    """The options every subcommand takes, before or after its name. On a subcommand their
    default is SUPPRESS, so a value given before the name is not reset by the subparser."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if subcommand else value

    aws = parser.add_argument_group(
        "AWS options", "the same before or after the subcommand; the embedded stack (demo, "
                       "--local) makes no AWS calls and ignores them")
    aws.add_argument("--profile", metavar="NAME", default=default(None),
                     help="named profile of the AWS config file for every AWS client the "
                          "command builds (default: AWS_PROFILE, else the default chain)")
    aws.add_argument("--region", metavar="REGION", default=default(None),
                     help="AWS region (default: the region of a full ARN given as SECRET_ID "
                          "or function, else the profile's or AWS_DEFAULT_REGION)")
    aws.add_argument("--endpoint-url", metavar="URL", type=_url, default=default(None),
                     help=f"Secrets Manager endpoint (for the function: {ENDPOINT}), e.g. a "
                          "VPC endpoint")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", default=default(False),
                     help='print one JSON document on stdout: the result, or {"error", "fix", '
                          '"exit_code"} when there is none')


def _local_options(parser: argparse.ArgumentParser, *, verbose: bool = True) -> None:
    group = parser.add_argument_group("embedded stack (--local)")
    group.add_argument("--engine", choices=LOCAL_ENGINES,
                       help="database engine of the local secret (default: the sample's, else "
                            "postgres); MySQL engines run on a throwaway MariaDB")
    group.add_argument("--secret", metavar="FILE",
                       help=f"secret sample (default {SAMPLES_DIR}/secret-<engine>.json); its "
                            "host, port, dbname and password are replaced by the throwaway "
                            "server's")
    if verbose:
        group.add_argument("-v", "--verbose", action="store_true",
                           help="show the function's INFO log lines (on stderr)")


def _only_local(args: argparse.Namespace) -> str | None:
    if not args.local and (args.secret or args.engine):
        return "--secret and --engine only apply with --local"
    return None


def _check_invoke(args: argparse.Namespace) -> str | None:
    if args.event and args.event_file:
        return "give the event once: EVENT.json or -e EVENT.json, not both"
    if not (args.event or args.event_file):
        return "an event file is required: -e EVENT.json (e.g. events/setSecret.json)"
    return _only_local(args)


def _check_rotate(args: argparse.Namespace) -> str | None:
    if not args.local and not args.secret_id:
        return "SECRET_ID is required (or pass --local)"
    return _only_local(args)


def _check_doctor(args: argparse.Namespace) -> str | None:
    if args.remote and (args.local or args.fix):
        return "--remote runs the checks in the deployed function: not with --local or --fix"
    if args.local and args.function_name:
        return "--function-name does not apply with --local (the embedded stack has no function)"
    if not args.local and not args.secret_id:
        return "SECRET_ID is required (or pass --local)"
    return _only_local(args)


def _common_parent() -> _Parser:
    parent = _Parser(add_help=False)
    _global_options(parent, subcommand=True)
    return parent


EPILOG = """\
Global options (--profile, --region, --endpoint-url, --json) go before or after the subcommand.

exit status:
  0    ok
  1    a check, a step or a rotation failed (what was examined is wrong)
  2    usage error (bad options, or a file that is not what its option takes)
  3    could not run: no credentials or region, unknown profile, unreachable endpoint,
       access denied to the command's own call, throttled, or the embedded stack did not start
  130  interrupted (Ctrl-C or SIGTERM); what the command started was stopped

With --json, stdout holds one JSON document: the result when the command reached a verdict
(exit 0 or 1), else {"error", "fix", "exit_code"} (with "result" when there is a partial one).
Errors also go to stderr."""


class _Formatter(argparse.HelpFormatter):
    """Wraps one-paragraph texts; keeps a text with line breaks (the exit status table) as is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "\n".join(indent + line if line else line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rotation", formatter_class=_Formatter, epilog=EPILOG,
        description="Secrets Manager rotation for PostgreSQL, MySQL/MariaDB and Redis: replay a "
                    "step, run or follow a rotation, check a secret's setup, see it all work "
                    "locally, and find and grant its consumers.")
    parser.add_argument("--version", action="version", version=f"rotation {__version__}")
    _global_options(parser, subcommand=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = _common_parent()

    def command(name: str, func: Callable[[argparse.Namespace, Printer], int], *,
                check: Check | None = None, **kwargs: Any) -> argparse.ArgumentParser:
        subparser = sub.add_parser(name, parents=[parent], **kwargs)
        subparser.set_defaults(func=func)
        parser.commands[name] = subparser
        if check is not None:
            parser.checks[name] = check
        return subparser

    invoke = command(
        "invoke", cmd_invoke, check=_check_invoke,
        help="run lambda_handler once with a step event",
        description="Run rotation.handler.lambda_handler once with a step event (as `sam local "
                    "invoke -e`). Without --local it acts on the secret named in the event, in "
                    "AWS. With --local it replays the event on an embedded stack: moto, a "
                    "throwaway database, a user and its secret, the steps that precede the "
                    "event's step, then the event's step itself. A secret sample is not an "
                    "event: pass it with --local --secret.")
    invoke.add_argument("event", metavar="EVENT.json", nargs="?",
                        help="a step event, e.g. events/setSecret.json (or -e)")
    invoke.add_argument("-e", "--event", dest="event_file", metavar="EVENT.json",
                        help="the step event, as SAM CLI spells it")
    invoke.add_argument("--local", action="store_true",
                        help="replay on the embedded stack instead of AWS")
    _local_options(invoke)

    rotate = command(
        "rotate", cmd_rotate, check=_check_rotate,
        help="rotate a secret and follow it step by step",
        description="Against AWS: RotateSecret (immediately), then follow the rotation by its "
                    "versions and labels until AWSCURRENT moved to the new version (exit 0) or "
                    "the timeout (exit 1). With --local: one full rotation on the embedded "
                    "stack, all four steps through lambda_handler.")
    rotate.add_argument("secret_id", metavar="SECRET_ID", nargs="?",
                        help="secret name or ARN (with --local: the local secret's name, "
                             "default rotation-demo-<engine>)")
    rotate.add_argument("--local", action="store_true",
                        help="rotate on the embedded stack instead of AWS")
    rotate.add_argument("--timeout", type=_seconds, default=300.0, metavar="S",
                        help="seconds to wait for the rotation to finish before giving up "
                             "(default 300)")
    rotate.add_argument("--interval", type=_seconds, default=2.0, metavar="S",
                        help=argparse.SUPPRESS)
    _local_options(rotate)

    doctor = command(
        "doctor", cmd_doctor, check=_check_doctor,
        help="preflight checks for a secret's rotation",
        description="Check what a rotation of SECRET_ID needs: Secrets Manager and KMS access, "
                    "the rotation configuration, the secret's keys, stuck labels, the database "
                    "network path, TLS and login, PostgreSQL's password storage, the master "
                    "secret, and the rotation function (runtime, concurrency, last rotation in "
                    "its logs). It runs from here, with your credentials; --remote runs the "
                    "checks inside the deployed function instead; --local checks a secret on "
                    "the embedded stack. Exit 1 when a check fails.")
    doctor.add_argument("secret_id", metavar="SECRET_ID", nargs="?",
                        help="secret name or ARN (with --local: the local secret's name, "
                             "default rotation-demo-<engine>)")
    doctor.add_argument("--local", action="store_true",
                        help="check a secret on the embedded stack instead of AWS")
    doctor.add_argument("--remote", action="store_true",
                        help="run the checks inside the deployed rotation function (its network "
                             "and role): verdicts only")
    doctor.add_argument("--fix", action="store_true",
                        help="remove a stuck AWSPENDING label, only after a login proved that "
                             "AWSCURRENT is the credential in use")
    doctor.add_argument("--function-name", metavar="NAME",
                        help="rotation function to check, or with --remote to run the checks "
                             "in (default: the secret's RotationLambdaARN)")
    doctor.add_argument("--no-function", action="store_true",
                        help="skip the Lambda and CloudWatch Logs checks")
    doctor.add_argument("--master-secret", metavar="SECRET_ID",
                        help="a secret with a privileged database user, used read-only to "
                             "diagnose (default: the secret's masterarn)")
    doctor.add_argument("--ca-bundle", metavar="PEM",
                        help="CA bundle for the database's TLS (default: ROTATION_CA_BUNDLE, "
                             "else the system trust store)")
    doctor.add_argument("--strategy", choices=STRATEGIES,
                        help="rotation strategy (default: the function's ROTATION_STRATEGY, "
                             "else inferred from masterarn)")
    doctor.add_argument("--timeout", type=_seconds, default=5.0, metavar="S",
                        help="seconds to wait for each network connection and database login "
                             "(default 5; with --remote, inside the function)")
    _local_options(doctor, verbose=False)  # the doctor runs no step: no function log lines

    demo = command(
        "demo", cmd_demo,
        help="rotate a throwaway database's password on the embedded stack",
        description="Start moto and a throwaway PostgreSQL (or MariaDB, or Redis), create a user "
                    "and its secret, rotate it N times through lambda_handler in one warm "
                    "container, and show per rotation: versions and labels, step timings, "
                    "Secrets Manager calls, database logins, and proof that the old password "
                    "stops working and the new one works. Everything started is stopped at the "
                    "end, or on Ctrl-C.")
    demo.add_argument("--engine", choices=LOCAL_ENGINES, default="postgres",
                      help="database engine of the local secret (default postgres); MySQL "
                           "engines run on a throwaway MariaDB")
    demo.add_argument("--rotations", type=_positive_int, default=3, metavar="N",
                      help="how many rotations (default 3)")
    demo.add_argument("-v", "--verbose", action="store_true",
                      help="show the function's INFO log lines (on stderr)")

    policy = command(
        "policy", cmd_policy,
        help="print the IAM policy a consumer of a secret needs",
        description="Print the least-privilege IAM policy (JSON, on stdout, with or without "
                    "--json) that a consumer of SECRET_ID needs: secretsmanager:GetSecretValue "
                    "on the secret's ARN and, for a customer managed key, kms:Decrypt through "
                    "Secrets Manager only (kms:ViaService). Which role gets it is printed on "
                    "stderr. Without --offline, DescribeSecret (and KMS DescribeKey) give the "
                    "ARN and key.")
    policy.add_argument("secret_id", metavar="SECRET_ID", help="secret name or ARN")
    policy.add_argument("--for", dest="kind", required=True,
                        choices=("ecs-execution", "ecs-task", "lambda", "batch"),
                        help="the consumer: ECS task execution role (`secrets`), ECS task role "
                             "(reads at runtime), Lambda execution role, Batch job execution role")
    policy.add_argument("--offline", action="store_true",
                        help="no AWS calls: build the ARN from SECRET_ID, --region and --account")
    policy.add_argument("--account", metavar="ID",
                        help="account id, to build the ARN from a name with --offline")
    policy.add_argument("--kms-key", metavar="KEY",
                        help="the secret's KMS key ARN or id (default: DescribeSecret's "
                             "KmsKeyId; with --offline, the AWS managed aws/secretsmanager)")
    policy.add_argument("--describe", action="store_true",
                        help="also allow secretsmanager:DescribeSecret (AWS's caching libraries "
                             "call it; rotation.client does not)")

    consumers = command(
        "consumers", cmd_consumers,
        help="find the ECS services, Batch jobs and Lambda functions reading a secret",
        description="Find the consumers of SECRET_ID in its region: ECS task definitions in use "
                    "by services (container secrets and repositoryCredentials), active Batch job "
                    "definitions, Lambda functions whose environment names the secret. For each: "
                    "how it references the secret and whether that form resolves, which role "
                    "reads it and whether its IAM policy and the secret's KMS key let it, "
                    "Copilot's tag rule, and what a rotation means for it. Exit 1 when a "
                    "consumer cannot read the secret, 3 when a check could not run.")
    consumers.add_argument("secret_id", metavar="SECRET_ID", help="secret name or ARN")
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers by name, in the order they were added."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    choices: dict[str, argparse.ArgumentParser] = action.choices
    return dict(choices)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while a command runs, so what it started is stopped too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageExit as exc:
        if "--json" in argv:
            Printer(json_mode=True).json({"error": exc.message,
                                          "fix": f"see `{exc.prog} --help`",
                                          "exit_code": EXIT_USAGE})
        raise
    printer = Printer(json_mode=args.json)
    func: Callable[[argparse.Namespace, Printer], int] = args.func
    try:
        with terminate_as_interrupt():
            return func(args, printer)
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say
        # As the Python docs recommend: point stdout at devnull so the final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        return printer.fail("interrupted; everything this command started was stopped", "",
                            EXIT_INTERRUPTED)
    except UsageError as exc:
        return printer.fail(exc.message, exc.hint, EXIT_USAGE)
    except RotationError as exc:
        from rotation.tools.demo import LocalRunError

        code = EXIT_CANNOT_RUN if isinstance(exc, LocalRunError) else EXIT_FAILED
        return printer.fail(exc.message, exc.hint, code)
    except Exception as exc:  # no traceback that could carry a value; the type and message
        blocked = blocked_by(exc)
        if blocked is not None:
            return printer.fail(blocked.message, blocked.fix, EXIT_CANNOT_RUN)
        return printer.fail(f"{type(exc).__name__}: {_redact.redact(str(exc))[:300]}", "",
                            EXIT_FAILED)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
