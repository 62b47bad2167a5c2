"""The ``rotation`` console script: ``invoke``, ``rotate``, ``doctor`` and ``demo``.

Output is for people on a terminal (a live step display when stdout is a TTY, plain lines when
piped) or, with ``--json``, one JSON document for scripts. The function's own JSON log lines go
to stderr. No subcommand prints a secret value or a RotationToken: reports carry version ids,
labels, timings and counts, and every line passes through the redaction registry on its way out.

Exit status: 0 when the command did what it says, 1 when it failed (a step failed, a check
failed, a rotation timed out), 2 for usage errors, 130 on Ctrl-C.
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
from typing import TYPE_CHECKING, Any, TextIO
from unittest import mock

from rotation import __version__, _redact
from rotation.config import ENDPOINT, STRATEGIES
from rotation.errors import RotationError
from rotation.event import STEPS
from rotation.secrets import CURRENT, PENDING, PREVIOUS

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from rotation.tools.demo import ReplayReport, RotationRun
    from rotation.tools.doctor import CheckResult, DoctorReport
    from rotation.tools.local import StepReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_STAGE_ORDER = {CURRENT: 0, PENDING: 1, PREVIOUS: 2}


# -- output --------------------------------------------------------------------------------------

class Printer:
    """Every line the CLI writes goes through here and is scrubbed of registered secrets."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.live = bool(getattr(self.out, "isatty", lambda: False)())
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

    def json(self, document: Mapping[str, Any]) -> None:
        self.out.write(_redact.redact(json.dumps(document, indent=2, default=str)) + "\n")
        self.out.flush()

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


@contextmanager
def aws_env(region: str | None, endpoint_url: str | None) -> Iterator[None]:
    """``--region`` / ``--endpoint-url`` as the environment the function reads, for this run."""
    env = {}
    if region:
        env["AWS_DEFAULT_REGION"] = region
    if endpoint_url:
        env[ENDPOINT] = endpoint_url
    with mock.patch.dict(os.environ, env):
        yield


def botocore_hint(exc: Exception) -> str:
    """What to do about a client-side AWS error (no request reached the service)."""
    name = type(exc).__name__
    if "Credentials" in name or "Token" in name:
        return "configure AWS credentials: AWS_PROFILE, `aws configure` or `aws sso login`"
    if name == "NoRegionError":
        return "pass --region or set AWS_DEFAULT_REGION"
    return ("check the network path to Secrets Manager (in a VPC: an interface VPC endpoint or "
            "a NAT gateway) and --endpoint-url")


def secrets_client(region: str | None, endpoint_url: str | None) -> SecretsManagerClient:
    """The Secrets Manager client the commands use (default credential chain)."""
    from rotation.config import Settings
    from rotation.dispatcher import make_client

    with aws_env(region, endpoint_url):
        return make_client(Settings.from_env())


def aws_client(service: str, region: str | None) -> Any:
    """A boto3 client for another service (Lambda, CloudWatch Logs), or None when boto3 cannot
    build one here (no region configured)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.client(service, region_name=region,
                            config=Config(connect_timeout=5, read_timeout=10,
                                          retries={"max_attempts": 2, "mode": "standard"}))
    except BotoCoreError:
        return None


# -- invoke --------------------------------------------------------------------------------------

def _load_event(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RotationError(f"cannot read the event file {path}: {type(exc).__name__}",
                            hint="pass a JSON event such as events/setSecret.json") from None
    if not isinstance(data, dict):
        raise RotationError(f"the event file {path} does not hold a JSON object")
    if isinstance(data.get("RotationToken"), str):
        _redact.register(data["RotationToken"])
    return data


def cmd_invoke(args: argparse.Namespace, printer: Printer) -> int:
    event = _load_event(args.event)
    if args.local:
        return _invoke_local(args, event, printer)
    if args.secret or args.engine:
        printer.error("--secret and --engine only apply with --local")
        return EXIT_USAGE
    from rotation import handler
    from rotation.tools.local import LocalLambdaContext

    with aws_env(args.region, args.endpoint_url), function_logs(True):
        handler.reset()
        started = time.perf_counter()
        try:
            result = handler.lambda_handler(event, LocalLambdaContext())
        except RotationError as exc:
            printer.error(f"{event.get('Step')} failed: {exc.message}", exc.hint)
            return EXIT_FAILED
        finally:
            handler.reset()
    printer.line(f"{result.get('Step')}: {result.get('Outcome')} "
                 f"({(time.perf_counter() - started) * 1000:.1f} ms)")
    return EXIT_OK


def _invoke_local(args: argparse.Namespace, event: dict[str, Any], printer: Printer) -> int:
    from rotation.tools.demo import replay_event

    display = StepDisplay(printer)
    step = event.get("Step")
    printer.line(f"replaying {step} from {args.event} on the embedded stack "
                 "(moto + a throwaway database)")

    def on_step(report: StepReport) -> None:
        if report.step != step:
            display.finished(report)

    with function_logs(args.verbose):
        result = replay_event(event, engine=args.engine, sample=args.secret, on_step=on_step)
    _print_replay(result, printer)
    return EXIT_OK if result.succeeded else EXIT_FAILED


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
        report.error = (f"RotateSecret on {secret_id} failed: {error.get('Code')}: "
                        f"{_redact.redact(str(error.get('Message', '')))[:300]}")
        report.hint = ("a previous rotation is stuck: run `rotation doctor "
                       f"{secret_id}` (--fix clears it)"
                       if "previous rotation" in str(error.get("Message", "")).lower() else
                       f"run `rotation doctor {secret_id}` to check the setup")
        return report
    except BotoCoreError as exc:
        report.error = f"RotateSecret on {secret_id} failed: {type(exc).__name__}"
        report.hint = botocore_hint(exc)
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
    if not args.secret_id:
        printer.error("SECRET_ID is required (or pass --local)")
        return EXIT_USAGE
    client = secrets_client(args.region, args.endpoint_url)
    if not args.json:
        printer.line(f"rotating {args.secret_id} (RotateSecret, then following its labels)")
    report = follow_rotation(
        client, args.secret_id, timeout=args.timeout, interval=args.interval,
        on_event=None if args.json else lambda text: printer.line(f"  {text}"),
        on_wait=None if args.json else printer.status)
    if args.json:
        printer.json(report.to_dict())
    elif report.succeeded:
        printer.line(f"done in {report.duration_s:.1f} s; labels: "
                     f"{labels_text(report.labels_after)}")
    if report.error:
        printer.error(report.error, report.hint)
    return EXIT_OK if report.succeeded else EXIT_FAILED


def _rotate_local(args: argparse.Namespace, printer: Printer) -> int:
    from rotation.tools.demo import local_target, rotate_once

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


def cmd_doctor(args: argparse.Namespace, printer: Printer) -> int:
    from rotation.config import Settings
    from rotation.tools.doctor import run_doctor

    # --ca-bundle replaces ROTATION_CA_BUNDLE. It is not checked here: db-tls reports a bundle
    # that is missing, not a PEM or not the server's CA, naming the flag and the file.
    with mock.patch.dict(os.environ, {}) as env:
        if args.ca_bundle:
            env.pop("ROTATION_CA_BUNDLE", None)
        settings = Settings.from_env()
    if args.ca_bundle:
        settings = replace(settings, ca_bundle=args.ca_bundle)
    client = secrets_client(args.region, args.endpoint_url)
    region = args.region or client.meta.region_name
    lambda_client = None if args.no_function else aws_client("lambda", region)
    logs_client = None if args.no_function else aws_client("logs", region)
    if not args.json:
        printer.line(f"rotation doctor: {args.secret_id}" + (" (--fix)" if args.fix else ""))
    report = run_doctor(
        client, args.secret_id, settings, fix=args.fix, timeout=args.timeout,
        strategy=args.strategy,
        function_name=args.function_name, master_secret_id=args.master_secret,
        lambda_client=lambda_client, logs_client=logs_client,
        on_result=None if args.json else lambda r: printer.line(_check_line(r)))
    _print_doctor_summary(report, printer, as_json=args.json)
    return EXIT_FAILED if report.failed else EXIT_OK


def _print_doctor_summary(report: DoctorReport, printer: Printer, *, as_json: bool) -> None:
    if as_json:
        printer.json(report.to_dict())
        return
    summary = report.summary()
    printer.line("summary: " + ", ".join(f"{n} {s}" for s, n in summary.items()))


# -- demo ----------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace, printer: Printer) -> int:
    from rotation.tools.demo import LocalTarget, run_demo

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

    from rotation.tools.policy import PolicyInputError, describe_kind, parse_secret_arn, policy_for

    try:
        region = args.region or (parse_secret_arn(args.secret_id).region
                                 if args.secret_id.startswith("arn:") else None)
        clients: dict[str, Any] = {}
        if not args.offline:
            clients["secrets_client"] = secrets_client(region, args.endpoint_url)
            region = region or clients["secrets_client"].meta.region_name
            clients["kms_client"] = aws_client("kms", region)
        document = policy_for(args.secret_id, args.kind, region=region, account=args.account,
                              kms_key=args.kms_key, describe=args.describe, **clients)
    except PolicyInputError as exc:
        printer.error(str(exc))
        return EXIT_USAGE
    except ClientError as exc:
        error = exc.response.get("Error", {})
        printer.error(f"{error.get('Code')}: {error.get('Message', '')}",
                      "without access to the secret: --offline --region R --account A")
        return EXIT_FAILED
    printer.err.write(_redact.redact(describe_kind(args.kind)) + "\n")
    printer.json(document)
    return EXIT_OK


# -- consumers -----------------------------------------------------------------------------------

def cmd_consumers(args: argparse.Namespace, printer: Printer) -> int:
    from rotation.tools.consumers import SecretNotFound, find_consumers, table_lines

    parts = args.secret_id.split(":")
    region = args.region or (parts[3] if args.secret_id.startswith("arn:") and len(parts) > 6
                             else None)
    client = secrets_client(region, args.endpoint_url)
    region = region or client.meta.region_name
    try:
        report = find_consumers(client, args.secret_id, ecs=aws_client("ecs", region),
                                batch=aws_client("batch", region),
                                lambda_=aws_client("lambda", region))
    except SecretNotFound:
        printer.error(f"no secret {args.secret_id} in {region}",
                      "pass the secret's name or ARN, and --region for its region")
        return EXIT_USAGE
    if args.json:
        printer.json(report.to_dict())
    else:
        for line in table_lines(report):
            printer.line(line)
    return EXIT_FAILED if report.failed else EXIT_OK


# -- the parser ----------------------------------------------------------------------------------

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


def _aws_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("AWS")
    group.add_argument("--region", help="AWS region (default: the AWS CLI's configuration)")
    group.add_argument("--endpoint-url", metavar="URL",
                       help=f"Secrets Manager endpoint (sets {ENDPOINT}), e.g. a VPC endpoint")


def _local_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("embedded stack (--local)")
    group.add_argument("--engine", choices=("postgres", "aurora-postgresql", "mysql", "mariadb",
                                            "aurora-mysql", "redis"),
                       help="database engine of the local secret (default: the sample's, else "
                            "postgres); MySQL engines run on a throwaway MariaDB")
    group.add_argument("--secret", metavar="SECRET.json",
                       help="secret sample (default events/secret-<engine>.json); its host, port, "
                            "dbname and password are replaced by the throwaway server's")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the function's INFO log lines (on stderr)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rotation",
        description="Secrets Manager rotation for PostgreSQL, MySQL/MariaDB and Redis: replay a "
                    "step, run or follow a rotation, check a secret's setup, or see it all "
                    "work locally.")
    parser.add_argument("--version", action="version", version=f"rotation {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    invoke = sub.add_parser(
        "invoke", help="run lambda_handler once with an event file",
        description="Run rotation.handler.lambda_handler once with EVENT.json. Without --local "
                    "it acts on the secret named in the event, in AWS (default credentials). "
                    "With --local it replays the event on an embedded stack: moto, a throwaway "
                    "database, a user and its secret, the steps that precede the event's step, "
                    "then the event's step itself.")
    invoke.add_argument("event", metavar="EVENT.json", help="a step event, e.g. "
                        "events/setSecret.json")
    invoke.add_argument("--local", action="store_true",
                        help="replay on the embedded stack instead of AWS")
    _local_options(invoke)
    _aws_options(invoke)
    invoke.set_defaults(func=cmd_invoke)

    rotate = sub.add_parser(
        "rotate", help="rotate a secret and follow it step by step",
        description="Against AWS: RotateSecret (immediately), then follow the rotation by its "
                    "versions and labels until AWSCURRENT moved to the new version (exit 0) or "
                    "the timeout (exit 1). With --local: one full rotation on the embedded "
                    "stack, all four steps through lambda_handler.")
    rotate.add_argument("secret_id", metavar="SECRET_ID", nargs="?",
                        help="secret name or ARN (with --local: the local secret's name, "
                             "default rotation-demo-<engine>)")
    rotate.add_argument("--local", action="store_true",
                        help="rotate on the embedded stack instead of AWS")
    rotate.add_argument("--json", action="store_true", help="print one JSON document")
    rotate.add_argument("--timeout", type=_seconds, default=300.0, metavar="S",
                        help="give up following after S seconds (default 300)")
    rotate.add_argument("--interval", type=_seconds, default=2.0, metavar="S",
                        help=argparse.SUPPRESS)
    _local_options(rotate)
    _aws_options(rotate)
    rotate.set_defaults(func=cmd_rotate)

    doctor = sub.add_parser(
        "doctor", help="preflight checks for a secret's rotation",
        description="Check what a rotation of SECRET_ID needs: Secrets Manager and KMS access, "
                    "the rotation configuration, the secret's keys, stuck labels, the database "
                    "network path, TLS and login, PostgreSQL's password storage, the master "
                    "secret, and the rotation function (runtime, concurrency, last rotation in "
                    "its logs). Exit 1 when a check fails.")
    doctor.add_argument("secret_id", metavar="SECRET_ID", help="secret name or ARN")
    doctor.add_argument("--fix", action="store_true",
                        help="remove a stuck AWSPENDING label, only after a login proved that "
                             "AWSCURRENT is the credential in use")
    doctor.add_argument("--json", action="store_true", help="print one JSON document")
    doctor.add_argument("--function-name", metavar="NAME",
                        help="rotation function to check (default: the secret's "
                             "RotationLambdaARN)")
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
                        help="network and database connect timeout (default 5)")
    _aws_options(doctor)
    doctor.set_defaults(func=cmd_doctor)

    demo = sub.add_parser(
        "demo", help="rotate a throwaway database's password on the embedded stack",
        description="Start moto and a throwaway PostgreSQL (or MariaDB, or Redis), create a user "
                    "and its secret, rotate it N times through lambda_handler in one warm "
                    "container, and show per rotation: versions and labels, step timings, "
                    "Secrets Manager calls, database logins, and proof that the old password "
                    "stops working and the new one works. Everything started is stopped at the "
                    "end, or on Ctrl-C.")
    demo.add_argument("--engine", choices=("postgres", "mariadb", "redis"), default="postgres",
                      help="database engine (default postgres)")
    demo.add_argument("--rotations", type=_positive_int, default=3, metavar="N",
                      help="how many rotations (default 3)")
    demo.add_argument("--json", action="store_true", help="print one JSON document")
    demo.add_argument("-v", "--verbose", action="store_true",
                      help="show the function's INFO log lines (on stderr)")
    demo.set_defaults(func=cmd_demo)

    policy = sub.add_parser(
        "policy", help="print the IAM policy a consumer of a secret needs",
        description="Print the least-privilege IAM policy (JSON, on stdout) that a consumer of "
                    "SECRET_ID needs: secretsmanager:GetSecretValue on the secret's ARN and, for "
                    "a customer managed key, kms:Decrypt through Secrets Manager only "
                    "(kms:ViaService). Which role gets it is printed on stderr. Without "
                    "--offline, DescribeSecret (and KMS DescribeKey) give the ARN and key.")
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
    _aws_options(policy)
    policy.set_defaults(func=cmd_policy)

    consumers = sub.add_parser(
        "consumers", help="find the ECS services, Batch jobs and Lambda functions reading a secret",
        description="Find the consumers of SECRET_ID in its region: ECS task definitions in use "
                    "by services (container secrets and repositoryCredentials), active Batch job "
                    "definitions, Lambda functions whose environment names the secret. For each: "
                    "how it references the secret and whether that form resolves, which role "
                    "reads it, Copilot's tag rule, and what a rotation means for it. IAM and KMS "
                    "permissions are not checked yet. Exit 1 when a consumer cannot read the "
                    "secret.")
    consumers.add_argument("secret_id", metavar="SECRET_ID", help="secret name or ARN")
    consumers.add_argument("--json", action="store_true", help="print one JSON document")
    _aws_options(consumers)
    consumers.set_defaults(func=cmd_consumers)
    return parser


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
    parser = build_parser()
    args = parser.parse_args(argv)
    printer = Printer()
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
        printer.error("interrupted; everything this command started was stopped")
        return EXIT_INTERRUPTED
    except RotationError as exc:
        printer.error(exc.message, exc.hint)
        return EXIT_FAILED
    except Exception as exc:  # no traceback that could carry a value; the type and message
        from botocore.exceptions import BotoCoreError

        printer.error(f"{type(exc).__name__}: {exc}",
                      botocore_hint(exc) if isinstance(exc, BotoCoreError) else "")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
