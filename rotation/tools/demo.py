"""The embedded stack behind ``rotation invoke --local``, ``rotation rotate --local`` and
``rotation demo``: an in-process moto Secrets Manager, a throwaway database from the sandbox, a
database user and its secret, driven through the public ``lambda_handler``.

Nothing here prints: it returns reports that the CLI renders. Secret values stay in memory (the
proof logins read them from moto); reports carry version ids, labels, timings and counts only.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from unittest import mock

from rotation import _redact, handler
from rotation.adapters import load_adapter_class
from rotation.config import CA_BUNDLE, ENDPOINT, STRATEGY, PasswordPolicy
from rotation.credentials import ENGINE_FAMILIES, credentials_from_dict
from rotation.errors import RotationError, UnsupportedEngineError
from rotation.event import STEPS
from rotation.password import generate_password
from rotation.secrets import CURRENT
from rotation.tools.local import (
    DEFAULT_REGION,
    ApiCallCounter,
    LocalLambdaContext,
    LocalRotationService,
    RotationReport,
    StepReport,
    create_secret,
    local_stack,
    logs_in,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

ENGINES = ("postgres", "mariadb", "redis")
#: the sandbox server that stands in for each engine (MySQL engines run on MariaDB locally)
SANDBOX_SERVERS: Mapping[str, str] = {"postgres": "postgres", "mysql": "mariadb",
                                      "redis": "redis"}
#: the secret samples (not step events: those are in events/)
SAMPLES_DIR = Path("examples", "secrets")
SAMPLE_FILES: Mapping[str, str] = {
    "postgres": "secret-postgres.json",
    "aurora-postgresql": "secret-postgres.json",
    "mysql": "secret-mysql.json",
    "aurora-mysql": "secret-mysql.json",
    "mariadb": "secret-mariadb.json",
    "redis": "secret-redis.json",
}
DEFAULT_USERNAME = "app_user"


class LoginTally(Protocol):
    @property
    def succeeded(self) -> int: ...

    @property
    def failed(self) -> int: ...


class LocalServer(Protocol):
    """What the local runs need from a throwaway server
    (``rotation.tools.sandbox.ServerHandle``)."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def dbname(self) -> str: ...

    @property
    def admin_user(self) -> str: ...

    @property
    def admin_password(self) -> str: ...

    @property
    def ca_file(self) -> str | None: ...

    def create_login_user(self, username: str, password: str, *,
                          can_create_roles: bool = False) -> None: ...

    def log_position(self) -> int: ...

    def login_counts(self, since: int = 0) -> LoginTally: ...


ServerFactory = Callable[[str], AbstractContextManager[LocalServer]]


class LocalRunError(RotationError):
    """The embedded stack could not be set up (no server binary, no adapter, bad sample)."""

    category = "local stack"


@contextmanager
def sandbox_server(engine: str) -> Iterator[LocalServer]:
    """A throwaway server for ``engine`` from :mod:`rotation.tools.sandbox`, stopped on exit."""
    family = ENGINE_FAMILIES.get(engine, engine)
    kind = SANDBOX_SERVERS.get(family)
    if kind is None:
        raise LocalRunError(f"the sandbox has no throwaway server for engine {engine!r}",
                            hint="use --engine postgres, mariadb or redis")
    from rotation.tools.sandbox import Sandbox, SandboxError

    with Sandbox() as sandbox:
        try:
            server = {"postgres": sandbox.postgres, "mariadb": sandbox.mariadb,
                      "redis": sandbox.redis}[kind]()
        except SandboxError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LocalRunError(f"cannot start a throwaway {kind} server: {first}",
                                hint="install the server binaries: bash "
                                     "scripts/install-db-servers.sh") from None
        yield server


def samples_dir() -> Path | None:
    """``examples/secrets/`` of the current directory or the source tree, if there is one."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / SAMPLES_DIR).is_dir():
            return root / SAMPLES_DIR
    return None


def load_sample(engine: str | None, path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The secret sample: ``path``, else ``examples/secrets/secret-<engine>.json``, else a
    built-in one."""
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise LocalRunError(f"cannot read the secret sample {path}: {type(exc).__name__}",
                                hint=f"pass a JSON file such as {SAMPLES_DIR}/"
                                     "secret-postgres.json") from None
        if not isinstance(data, dict):
            raise LocalRunError(f"the secret sample {path} is not a JSON object")
        return data
    engine = engine or "postgres"
    directory = samples_dir()
    name = SAMPLE_FILES.get(engine)
    if directory is not None and name is not None and (directory / name).is_file():
        data = json.loads((directory / name).read_text())
        if isinstance(data, dict):
            data["engine"] = engine
            return data
    return {"engine": engine, "host": "localhost", "username": DEFAULT_USERNAME,
            "password": "placeholder", "sslmode": "verify-full"}


def secret_name_from_id(secret_id: str) -> str:
    """The secret name in an ARN (without Secrets Manager's 6-character suffix), or the id."""
    if not secret_id.startswith("arn:"):
        return secret_id
    name = secret_id.split(":secret:", 1)[-1]
    head, sep, suffix = name.rpartition("-")
    return head if sep and len(suffix) == 6 else name


def region_from_id(secret_id: str) -> str | None:
    parts = secret_id.split(":")
    return parts[3] if secret_id.startswith("arn:") and len(parts) > 3 and parts[3] else None


@dataclass
class LocalTarget:
    """A secret on the embedded stack, its server, and the function's API-call counter."""

    client: SecretsManagerClient
    service: LocalRotationService
    server: LocalServer
    arn: str
    name: str
    engine: str
    username: str
    strategy: str
    calls: ApiCallCounter = field(default_factory=ApiCallCounter)
    _counted: set[int] = field(default_factory=set)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """One Lambda invocation through the public handler (a warm container)."""
        client = handler.get_app().secrets.client
        if id(client) not in self._counted:
            self.calls.attach(client)
            self._counted.add(id(client))
        return handler.lambda_handler(event, LocalLambdaContext())

    def labels(self) -> dict[str, list[str]]:
        return self.service.labels(self.arn)

    def value(self, stage: str) -> dict[str, Any]:
        """The secret JSON of the version holding ``stage`` (in memory only)."""
        version_id = next(v for v, stages in self.labels().items() if stage in stages)
        raw = self.client.get_secret_value(SecretId=self.arn, VersionId=version_id,
                                           VersionStage=stage)["SecretString"]
        data: dict[str, Any] = json.loads(raw)
        return data

    def logs_in(self, secret: Mapping[str, Any]) -> bool:
        """Whether the credential in ``secret`` logs in (a LoginError means no)."""
        return logs_in(credentials_from_dict(secret, self.arn), self.server.ca_file)


def check_engine(engine: str) -> None:
    """Fail early, with the adapter's own message, when the engine's adapter cannot load."""
    try:
        load_adapter_class(engine)
    except UnsupportedEngineError as exc:
        raise LocalRunError(f"engine {engine!r} is not available: {exc.message}",
                            hint=exc.hint) from None


@contextmanager
def local_target(*, engine: str | None = None, sample: str | os.PathLike[str] | None = None,
                 secret_name: str | None = None, region: str | None = None,
                 server_factory: ServerFactory | None = None) -> Iterator[LocalTarget]:
    """Start the embedded stack and create one database user and its secret.

    The sample's host, port, dbname and placeholder password are replaced by the throwaway
    server's and a fresh random password. A sample with ``masterarn`` gets a master secret (the
    server's admin, in RDS's managed-secret shape) and the alternating-users strategy."""
    data = load_sample(engine, sample)
    engine = engine or str(data.get("engine") or "postgres")
    data["engine"] = engine
    check_engine(engine)
    username = str(data.get("username") or DEFAULT_USERNAME)
    name = secret_name or f"rotation-demo-{engine}"
    region = region or DEFAULT_REGION
    factory = server_factory or sandbox_server
    with ExitStack() as stack:
        server = stack.enter_context(factory(engine))
        _redact.register(server.admin_password)
        password = generate_password(PasswordPolicy())
        server.create_login_user(username, password)
        client = stack.enter_context(local_stack(region))
        secret = {**data, "host": server.host, "port": server.port, "dbname": server.dbname,
                  "username": username, "password": password}
        strategy = "single-user"
        if data.get("masterarn"):
            strategy = "alternating-users"
            master_name = secret_name_from_id(str(data["masterarn"]))
            secret["masterarn"] = create_secret(client, master_name, json.dumps(
                {"username": server.admin_user, "password": server.admin_password}))
        service = LocalRotationService(client)
        arn = create_secret(client, name, json.dumps(secret))
        service.enable_rotation(arn)
        env = {CA_BUNDLE: server.ca_file or "", STRATEGY: strategy,
               "AWS_DEFAULT_REGION": region}
        stack.enter_context(mock.patch.dict(os.environ, env))
        os.environ.pop(ENDPOINT, None)  # restored by patch.dict on exit
        if not server.ca_file:
            os.environ.pop(CA_BUNDLE, None)
        handler.reset()
        stack.callback(handler.reset)
        yield LocalTarget(client, service, server, arn, name, engine, username, strategy)


# -- invoke --local ------------------------------------------------------------------------------

@dataclass
class ReplayReport:
    step: str
    secret_name: str
    prepared: list[StepReport]
    result: StepReport
    labels_after: dict[str, list[str]]
    api_calls: Counter[str]
    engine: str
    server: str
    strategy: str

    @property
    def succeeded(self) -> bool:
        return self.result.error is None and all(s.error is None for s in self.prepared)


def replay_event(event: Mapping[str, Any], *, engine: str | None = None,
                 sample: str | os.PathLike[str] | None = None,
                 server_factory: ServerFactory | None = None,
                 on_step: Callable[[StepReport], None] | None = None) -> ReplayReport:
    """Replay one step event on the embedded stack, after the steps that must precede it.

    Every invocation is the event itself with its ``Step`` set and ``SecretId`` rewritten to the
    local secret's ARN: the ClientRequestToken, and the RotationToken or its absence, are the
    event's."""
    step = event.get("Step")
    if step not in STEPS:
        raise LocalRunError(f"the event's Step {str(step)[:64]!r} is not a rotation step",
                            hint="valid steps are " + ", ".join(STEPS))
    secret_id = str(event.get("SecretId") or "rotation-demo-postgres")
    token = str(event.get("ClientRequestToken") or uuid.uuid4())
    if isinstance(event.get("RotationToken"), str):
        _redact.register(event["RotationToken"])
    with local_target(engine=engine, sample=sample, secret_name=secret_name_from_id(secret_id),
                      region=region_from_id(secret_id), server_factory=server_factory) as t:

        def invoke(step_event: dict[str, Any]) -> dict[str, Any]:
            if step_event["Step"] == step:
                t.calls.calls.clear()  # count the replayed step alone
            return t.invoke({**event, "Step": step_event["Step"], "SecretId": t.arn,
                             "ClientRequestToken": token})

        report = t.service.rotate(t.arn, invoke, token=token,
                                  steps=STEPS[:STEPS.index(step) + 1], on_step=on_step)
        *prepared, last = report.steps
        if last.step != step:  # an earlier step failed: the event's step did not run
            prepared.append(last)
            last = StepReport(step, "not run", 0.0, "an earlier step failed")
        return ReplayReport(step, t.name, prepared, last, report.labels_after,
                            Counter(t.calls.calls), t.engine,
                            f"{t.server.host}:{t.server.port}", t.strategy)


# -- rotate --local and demo ---------------------------------------------------------------------

@dataclass
class RotationRun:
    """One rotation on the embedded stack, with what it cost and the proof it worked."""

    index: int
    report: RotationReport
    logins_succeeded: int
    logins_failed: int
    old_password_works: bool | None = None
    new_password_works: bool | None = None
    single_user: bool = True

    @property
    def proven(self) -> bool:
        """The rotation finished and the new password logs in; with a single user the old one
        no longer does (alternating users keep the previous user working on purpose)."""
        return (self.report.succeeded and self.new_password_works is True
                and (self.old_password_works is False or not self.single_user))

    def to_dict(self) -> dict[str, Any]:
        report = self.report
        return {
            "rotation": self.index,
            "version": report.token,
            "succeeded": report.succeeded,
            "duration_ms": report.duration_ms,
            "steps": [{"step": s.step, "outcome": s.outcome, "duration_ms": s.duration_ms,
                       **({"error": s.error} if s.error else {})} for s in report.steps],
            "api_calls": dict(sorted(report.api_calls.items())),
            "api_calls_total": sum(report.api_calls.values()),
            "db_logins": {"succeeded": self.logins_succeeded, "failed": self.logins_failed},
            "old_password_works": self.old_password_works,
            "new_password_works": self.new_password_works,
            "labels_after": report.labels_after,
        }


def rotate_once(target: LocalTarget, index: int = 1, *, prove: bool = True,
                on_step: Callable[[StepReport], None] | None = None,
                on_start: Callable[[str], None] | None = None) -> RotationRun:
    """One full rotation through ``lambda_handler``; API calls and logins are measured for the
    rotation alone, then (``prove``) the old and new passwords are tried."""
    old = target.value(CURRENT)
    target.calls.calls.clear()
    mark = target.server.log_position()

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        if on_start:
            on_start(str(event["Step"]))
        return target.invoke(event)

    report = target.service.rotate(target.arn, invoke, on_step=on_step)
    report.api_calls = Counter(target.calls.calls)
    counts = target.server.login_counts(mark)
    run = RotationRun(index, report, counts.succeeded, counts.failed,
                      single_user=target.strategy == "single-user")
    if prove and report.succeeded:  # after measuring: these logins are not the rotation's
        new = target.value(CURRENT)
        run.new_password_works = target.logs_in(new)
        run.old_password_works = target.logs_in(old)
    return run


@dataclass
class DemoReport:
    engine: str
    secret_name: str
    server: str
    rotations: list[RotationRun] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def succeeded(self) -> bool:
        return bool(self.rotations) and all(r.proven for r in self.rotations)

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "secret": self.secret_name, "server": self.server,
                "succeeded": self.succeeded, "duration_s": round(self.duration_s, 2),
                "rotations": [r.to_dict() for r in self.rotations]}


def run_demo(*, engine: str = "postgres", rotations: int = 3,
             server_factory: ServerFactory | None = None,
             on_ready: Callable[[LocalTarget], None] | None = None,
             on_step: Callable[[StepReport], None] | None = None,
             on_start: Callable[[str], None] | None = None,
             on_rotation: Callable[[RotationRun], None] | None = None) -> DemoReport:
    """Rotate a fresh secret ``rotations`` times in one warm container; everything started is
    stopped on return, on error and on Ctrl-C."""
    started = time.perf_counter()
    with local_target(engine=engine, server_factory=server_factory) as target:
        if on_ready:
            on_ready(target)
        demo = DemoReport(engine, target.name, f"{target.server.host}:{target.server.port}")
        for index in range(1, rotations + 1):
            run = rotate_once(target, index, on_step=on_step, on_start=on_start)
            demo.rotations.append(run)
            if on_rotation:
                on_rotation(run)
            if not run.report.succeeded:
                break
        demo.duration_s = time.perf_counter() - started
        return demo


__all__ = ["ENGINES", "DemoReport", "LocalRunError", "LocalServer", "LocalTarget",
           "ReplayReport", "RotationRun", "load_sample", "local_target", "replay_event",
           "rotate_once", "run_demo", "sandbox_server", "secret_name_from_id"]
