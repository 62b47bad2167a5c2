"""Secrets on the local stack and rotations through ``lambda_handler``, measured.

A :class:`Harness` owns nothing: the caller opens ``local_stack()`` and a ``Sandbox`` and hands
them in. :meth:`Harness.rotate` runs one rotation through the local service driver and returns
what it cost: Secrets Manager calls made by the *function's* client (by operation), database
logins and failed authentications from the server's own log, and the duration of each step.

Modes
    ``warm``: a fresh container (``handler.reset()``) whose app is built before the rotation
    starts and shared by the four steps, as when one Lambda container serves the whole rotation.
    ``cold``: ``handler.reset()`` before every step, as when each step lands on a new container.
    ``shared``: the app is kept across rotations (many secrets rotated by one container).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets as _random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from rotation import handler
from rotation.tools.local import (
    ApiCallCounter,
    LocalLambdaContext,
    LocalRotationService,
    RotationReport,
)
from rotation.tools.sandbox import ServerHandle

Mode = Literal["warm", "cold", "shared"]
ENGINES: tuple[str, ...] = ("postgres", "mariadb", "redis")
STRATEGIES: tuple[str, ...] = ("single-user", "alternating-users")
OPERATIONS: tuple[str, ...] = ("DescribeSecret", "GetSecretValue", "ListSecretVersionIds",
                               "PutSecretValue", "UpdateSecretVersionStage")


LambdaContext = LocalLambdaContext


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Send the framework's log lines to /dev/null (still formatted: that cost is real)."""
    from rotation.logs import logger

    log_handler = logger.registered_handler
    original = getattr(log_handler, "stream", None)
    with open(os.devnull, "w") as sink:
        log_handler.stream = sink  # type: ignore[attr-defined]
        try:
            yield
        finally:
            log_handler.stream = original  # type: ignore[attr-defined]


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Swallow what the function prints during a rotation (its EMF metric documents)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or with None, unset) environment variables for the duration of the block."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Target:
    """One secret whose rotation is enabled, and the server its user lives on."""

    engine: str
    strategy: str
    arn: str
    server: ServerHandle
    username: str


@dataclass
class Measured:
    """What one rotation cost."""

    target: Target
    mode: Mode
    direction: str
    report: RotationReport
    calls: Counter[str]
    logins: int
    failed_logins: int
    wall_ms: float

    @property
    def ok(self) -> bool:
        return self.report.succeeded

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def step_ms(self) -> dict[str, float]:
        return {s.step: s.duration_ms for s in self.report.steps}

    @property
    def steps_ms(self) -> float:
        return sum(s.duration_ms for s in self.report.steps)

    def error(self) -> str:
        failed = [s for s in self.report.steps if s.error]
        return f"{failed[0].step}: {failed[0].error}" if failed else ""


@dataclass
class FunctionInvoker:
    """Invokes ``lambda_handler`` the way a mode says and counts the function's API calls.

    The counter is attached to the client of every app the function builds (after each
    ``handler.reset()``), never to the local service driver's client. Clients are kept
    referenced so that an id is never reused for a new, unattached client.
    """

    cold: bool = False
    counter: ApiCallCounter = field(default_factory=ApiCallCounter)
    _clients: list[Any] = field(default_factory=list)
    _context: LambdaContext = field(default_factory=LambdaContext)

    def attach(self) -> None:
        client = handler.get_app().secrets.client
        if not any(client is seen for seen in self._clients):
            self.counter.attach(client)
            self._clients.append(client)

    def __call__(self, event: dict[str, Any]) -> Any:
        if self.cold:
            handler.reset()
        self.attach()
        return handler.lambda_handler(event, self._context)

    def release(self) -> None:
        self._clients.clear()


class Harness:
    """Creates secrets (and their database users) and rotates them, measuring each rotation."""

    def __init__(self, sm: Any, servers: dict[str, ServerHandle], ca_file: str) -> None:
        self.sm = sm
        self.servers = servers
        self.ca_file = ca_file
        self.service = LocalRotationService(sm)
        self._shared = FunctionInvoker()

    # -- secrets -------------------------------------------------------------------------------

    def new_target(self, engine: str, strategy: str = "single-user") -> Target:
        """A database user and its secret; for alternating users also a master and its secret."""
        server = self.servers[engine]
        suffix = uuid.uuid4().hex[:10]
        username = f"bench_{suffix}"
        password = "Init-" + _random.token_urlsafe(18)
        server.create_login_user(username, password)
        value: dict[str, Any] = {"engine": engine, "host": server.host, "port": server.port,
                                 "username": username, "password": password,
                                 "dbname": server.dbname}
        if strategy == "alternating-users":
            master_user = f"bmaster_{suffix}"
            master_password = "Master-" + _random.token_urlsafe(18)
            server.create_login_user(master_user, master_password, can_create_roles=True)
            master = {**value, "username": master_user, "password": master_password}
            value["masterarn"] = self.sm.create_secret(
                Name=f"{master_user}-master", SecretString=json.dumps(master))["ARN"]
        arn = self.sm.create_secret(Name=f"{username}-{strategy}",
                                    SecretString=json.dumps(value))["ARN"]
        self.service.enable_rotation(arn)
        return Target(engine, strategy, arn, server, username)

    # -- rotations -----------------------------------------------------------------------------

    def rotate(self, target: Target, mode: Mode = "warm") -> Measured:
        with environment(ROTATION_STRATEGY=target.strategy, ROTATION_CA_BUNDLE=self.ca_file):
            if mode == "shared":
                invoker = self._shared
                before = Counter(invoker.counter.calls)
                invoker.attach()
            else:
                handler.reset()
                invoker = FunctionInvoker(cold=mode == "cold")
                before = Counter()
                if mode == "warm":
                    invoker.attach()  # the container exists before the rotation starts
            user_before = self.current_user(target)
            mark = target.server.log_position()
            with quiet_stdout():
                started = time.perf_counter()
                report = self.service.rotate(target.arn, invoker)
                wall_ms = (time.perf_counter() - started) * 1000
            logins = target.server.login_counts(since=mark)
            calls = Counter(invoker.counter.calls)
            calls.subtract(before)
            calls = +calls  # drop zero counts
            if mode != "shared":
                invoker.release()
                handler.reset()
        return Measured(target, mode, self._direction(target, user_before), report, calls,
                        logins.succeeded, logins.failed, round(wall_ms, 1))

    def current_user(self, target: Target) -> str:
        """The user in the AWSCURRENT version (read with the driver's client, not counted)."""
        raw = self.sm.get_secret_value(SecretId=target.arn,
                                       VersionStage="AWSCURRENT")["SecretString"]
        return str(json.loads(raw)["username"])

    @staticmethod
    def _direction(target: Target, user_before: str) -> str:
        """Alternating users: which way this rotation goes (the clean paths differ)."""
        if target.strategy != "alternating-users":
            return "—"
        return "original → clone" if user_before == target.username else "clone → original"

    def reset_shared(self) -> None:
        """Start a new long-lived container for ``shared`` rotations."""
        handler.reset()
        self._shared = FunctionInvoker()
