"""Fault injection for whole rotations: fail each Secrets Manager call and each database
operation of a rotation in turn, retry the way Secrets Manager does, and check that no working
credential is ever lost.

The injection points are not listed by hand: a clean rotation is recorded first (every API call
the function's client makes and every database operation, in order, with the step it belongs to),
then the i-th of them is made to fail, for each i and each fault kind.

Secrets Manager faults are raised from botocore event handlers on the function's own client:

* ``ClientError``: a 500 from the service, before the request is sent;
* ``ReadTimeout`` / ``ConnectTimeout``: botocore's timeout errors, before the request is sent;
* ``lost-response``: the request reaches the service and is applied, then the response is lost
  (a read timeout botocore itself retries, as on a flaky network);
* ``crash-after``: the call went through, then the function stopped abruptly (a Lambda timeout or
  a killed container) before it could act on the answer.

Database faults are raised when an operation starts (``connect``, ``ping``, ``set_password``,
``sync_clone``, ``add_password``, ...); ``after_set_password`` / ``after_sync_clone`` /
``after_add_password`` come right after the password changed, so a ``crash`` there is "stopped
abruptly after the database changed".

With ``strategy == "dual-password"`` the invariants are stronger: AWSCURRENT logs in after every
invocation (there is no window), after a finished rotation AWSPREVIOUS logs in too, and the
password AWSPREVIOUS held before the rotation no longer does.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

from rotation import handler
from rotation.errors import (
    AwsError,
    ConnectError,
    DatabaseError,
    DbTimeoutError,
    PasswordRefusedError,
    PrivilegeError,
    RotationError,
    RotationTimeoutError,
)
from rotation.tools.local import LocalRotationService, new_rotation_token
from tests.conftest import FakeLambdaContext, LeakScan

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
ENDPOINT = "https://secretsmanager.us-east-1.amazonaws.com"

SM_FAULTS = ("ClientError", "ReadTimeout", "lost-response", "crash-after")
#: ``ConnectTimeout`` takes the same path as ``ReadTimeout`` (raised before the call, mapped by
#: class name); it is checked on its own, outside the matrix.
SM_EXTRA_FAULTS = ("ConnectTimeout",)
#: error: ConnectError on connect, DatabaseError on a statement (DbTimeoutError is a
#: ConnectError: same path); refused: PasswordRefusedError on connect (the steps' fallbacks
#: catch it), PrivilegeError on a statement; crash: the function stops there.
DB_FAULTS = ("error", "refused", "crash")
DB_EXTRA_FAULTS = ("timeout",)
#: The ways Secrets Manager (and Lambda) try again after a failed step:
#: resume/warm: the same token, from the step that failed, in the same container;
#: restart/warm: the same token, from createSecret, in the same container;
#: restart/cold: the same token, from createSecret, a fresh container for every invocation.
MODES = ("resume/warm", "restart/warm", "restart/cold")
MAX_ROUNDS = 3  # Secrets Manager retries a failed rotation a few times


class Crash(Exception):
    """The function stopped abruptly right here (Lambda timeout, out of memory, killed)."""


@dataclass(frozen=True)
class Point:
    """One operation of a clean rotation: where a fault can be injected."""

    index: int
    step: str
    layer: str  # "sm" (a Secrets Manager call) or "db" (a database operation)
    operation: str
    occurrence: int  # the n-th time this operation runs within this step

    @property
    def label(self) -> str:
        return f"{self.step:<12} {self.layer}:{self.operation}#{self.occurrence}"


def _db_fault(kind: str, operation: str) -> Exception:
    connecting = operation == "connect"
    if kind == "error":
        return (ConnectError("injected: connection refused") if connecting
                else DatabaseError("injected: server closed the connection unexpectedly"))
    if kind == "timeout":
        return DbTimeoutError("injected: the database did not answer in time")
    if kind == "refused":
        return (PasswordRefusedError("injected: the database refused the password") if connecting
                else PrivilegeError("injected: permission denied"))
    return Crash(f"injected: the function stopped at {operation}")


class Tracer:
    """Records the operations of a rotation and fails the one it is armed for."""

    def __init__(self) -> None:
        self.step = ""
        self.events: list[tuple[str, str, str]] = []
        self.fault: tuple[int, str] | None = None
        self.fired: tuple[str, str, str] | None = None
        self.recording = False
        self._lose_next_send = False
        self._crash_after: str | None = None

    # -- arming ---------------------------------------------------------------------------------
    def start(self, fault: tuple[int, str] | None = None) -> None:
        self.events, self.fault, self.fired, self.recording = [], fault, None, True
        self._lose_next_send, self._crash_after = False, None

    def stop(self) -> None:
        self.recording, self.fault = False, None
        self._lose_next_send, self._crash_after = False, None

    def points(self) -> list[Point]:
        seen: Counter[tuple[str, str, str]] = Counter()
        points = []
        for index, event in enumerate(self.events):
            seen[event] += 1
            points.append(Point(index, *event, seen[event]))
        return points

    def _event(self, layer: str, operation: str) -> str | None:
        if not self.recording:
            return None
        index = len(self.events)
        self.events.append((self.step, layer, operation))
        if self.fault is not None and self.fault[0] == index:
            self.fired = (self.step, layer, operation)
            return self.fault[1]
        return None

    # -- Secrets Manager --------------------------------------------------------------------------
    def attach(self, client: Any) -> None:
        """Hook the function's client (once per client, i.e. once per container)."""
        if getattr(client, "_fault_tracer", None) is self:
            return
        client._fault_tracer = self
        events = client.meta.events
        events.register_first("before-call.secrets-manager", self._before_call)
        events.register_first("before-send.secrets-manager", self._before_send)
        events.register_first("after-call.secrets-manager", self._after_call)

    def _before_call(self, model: Any, **_: Any) -> None:
        kind = self._event("sm", model.name)
        if kind == "ClientError":
            raise ClientError({"Error": {"Code": "InternalServiceError",
                                         "Message": "injected: an internal error occurred"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, model.name)
        if kind == "ReadTimeout":
            raise ReadTimeoutError(endpoint_url=ENDPOINT)
        if kind == "ConnectTimeout":
            raise ConnectTimeoutError(endpoint_url=ENDPOINT)
        if kind == "lost-response":
            self._lose_next_send = True
        if kind == "crash-after":
            self._crash_after = model.name

    def _before_send(self, request: Any, event_name: str, **_: Any) -> None:
        if not self._lose_next_send:
            return
        self._lose_next_send = False
        from moto.core.models import botocore_stubber

        botocore_stubber(event_name=event_name, request=request)  # the service applies it ...
        raise ReadTimeoutError(endpoint_url=request.url)  # ... and the answer never arrives

    def _after_call(self, model: Any, **_: Any) -> None:
        if self._crash_after == model.name:
            self._crash_after = None
            raise Crash(f"injected: the function stopped right after {model.name} went through")

    # -- database --------------------------------------------------------------------------------
    def on_db(self, operation: str) -> None:
        kind = self._event("db", operation)
        if kind is not None:
            raise _db_fault(kind, operation)


class Bench(Protocol):
    """One kind of secret to rotate, on some database, through lambda_handler."""

    sm: Any
    service: LocalRotationService
    tracer: Tracer
    strategy: str

    def fresh(self) -> str:
        """A new secret whose AWSCURRENT logs in, a clean database state and a fresh container;
        the tracer observes the database. Returns the secret's ARN."""
        ...

    def logs_in(self, username: str, password: str) -> bool:
        """Whether the database accepts this credential right now (without side effects on the
        state under test)."""
        ...


@dataclass
class Row:
    scenario: str
    point: Point
    kind: str
    mode: str
    outcome: str = ""
    violations: list[str] = field(default_factory=list)


@dataclass
class Harness:
    bench: Bench
    leak_scan: LeakScan
    scenario: str
    warmups: int = 0  # clean rotations before the one under test (1: AWSPREVIOUS exists)
    checks: int = 0

    # -- driving the function ---------------------------------------------------------------------
    def invoke(self, arn: str, step: str, token: str, rotation_token: str, *,
               cold: bool) -> dict[str, Any]:
        if cold:
            handler.reset()
        app = handler.get_app()
        self.bench.tracer.attach(app.secrets.client)
        self.bench.tracer.step = step
        event = {"Step": step, "SecretId": arn, "ClientRequestToken": token,
                 "RotationToken": rotation_token}
        return handler.lambda_handler(event, FakeLambdaContext())

    def clean_rotation(self, arn: str) -> None:
        token, rotation_token = str(uuid.uuid4()), new_rotation_token()
        self.bench.service.stage_pending(arn, token)
        for step in STEPS:
            self.invoke(arn, step, token, rotation_token, cold=False)
        self.bench.service.unstage_pending(arn, token)

    def record(self) -> list[Point]:
        """The operations of one clean rotation, in order."""
        arn = self.bench.fresh()
        for _ in range(self.warmups):
            self.clean_rotation(arn)
        handler.reset()
        self.bench.tracer.start()
        try:
            self.clean_rotation(arn)
        finally:
            self.bench.tracer.stop()
        return self.bench.tracer.points()

    # -- what must hold ---------------------------------------------------------------------------
    def labels(self, arn: str) -> dict[str, list[str]]:
        return self.bench.service.labels(arn)

    def credential(self, arn: str, stage: str) -> tuple[str, str] | None:
        """The user and password stored under ``stage`` (read from moto's backend directly: the
        checks run thousands of times and must not touch the function's client)."""
        secret = self.bench.service._backend_secret(arn)
        for version in secret.versions.values():
            if stage in version["version_stages"]:
                raw = version.get("secret_string")
                if raw is None:
                    return None  # the value-less AWSPENDING the service stages first
                data = json.loads(raw)
                return data["username"], data["password"]
        return None

    def works(self, arn: str, stage: str) -> bool:
        credential = self.credential(arn, stage)
        return credential is not None and self.bench.logs_in(*credential)

    def check_some_credential_works(self, arn: str, when: str, row: Row) -> None:
        self.checks += 1
        if self.bench.strategy == "dual-password":
            # no window with dual passwords: the credential in use logs in at every point
            if not self.works(arn, CURRENT):
                row.violations.append(f"{when}: dual passwords: AWSCURRENT does not log in")
            return
        if not (self.works(arn, CURRENT) or self.works(arn, PENDING)):
            row.violations.append(f"{when}: neither AWSCURRENT nor AWSPENDING logs in")

    def check_converged(self, arn: str, token: str, row: Row,
                        dropped: tuple[str, str] | None = None) -> None:
        """``dropped``: with dual passwords, the AWSPREVIOUS credential from before the rotation,
        which the rotation must have dropped (only the two newest log in)."""
        self.checks += 1
        labels = self.labels(arn)
        current = [v for v, s in labels.items() if CURRENT in s]
        pending = [v for v, s in labels.items() if PENDING in s]
        if current != [token]:
            row.violations.append(f"AWSCURRENT is on {current}, not on the rotation's version")
        if pending not in ([], current):
            row.violations.append(f"AWSPENDING is left on {pending} (AWSCURRENT on {current})")
        if not self.works(arn, CURRENT):
            row.violations.append("after the retry, AWSCURRENT does not log in")
        if self.bench.strategy == "alternating-users" and not self.works(arn, PREVIOUS):
            row.violations.append("alternating users: AWSPREVIOUS no longer logs in")
        if self.bench.strategy == "dual-password":
            if not self.works(arn, PREVIOUS):
                row.violations.append("dual passwords: AWSPREVIOUS no longer logs in")
            kept = {self.credential(arn, CURRENT), self.credential(arn, PREVIOUS)}
            if dropped is not None and dropped not in kept and self.bench.logs_in(*dropped):
                row.violations.append("dual passwords: the password retained by the rotation "
                                      "before still logs in")

    # -- one row of the matrix ------------------------------------------------------------------
    def run(self, point: Point, kind: str, mode: str) -> Row:
        row = Row(self.scenario, point, kind, mode)
        resume, cold = mode.startswith("resume"), mode.endswith("cold")
        arn = self.bench.fresh()
        for _ in range(self.warmups):
            self.clean_rotation(arn)
        handler.reset()  # the rotation under test starts in a new container, as 30 days later
        dropped = self.credential(arn, PREVIOUS)
        token, rotation_token = str(uuid.uuid4()), new_rotation_token()
        self.bench.service.stage_pending(arn, token)

        # The first attempt, in one container, with the fault armed.
        tracer = self.bench.tracer
        tracer.start((point.index, kind))
        failed: tuple[int, BaseException] | None = None
        try:
            for i, step in enumerate(STEPS):
                try:
                    self.invoke(arn, step, token, rotation_token, cold=False)
                except Exception as exc:
                    failed = (i, exc)
                    break
                finally:
                    self.check_some_credential_works(arn, f"after {step}", row)
        finally:
            tracer.stop()
        if tracer.fired != (point.step, point.layer, point.operation):
            row.violations.append(f"the fault did not fire where recorded (fired at "
                                  f"{tracer.fired}); the clean sequence is not deterministic")
        if failed is None:
            self.bench.service.unstage_pending(arn, token)
            row.outcome = "absorbed"
            self.check_converged(arn, token, row, dropped)
            return row

        first_step, error = failed
        self.leak_scan.add_text(f"{type(error).__name__}: {error}")
        expected = _expected_error(point.layer, kind)
        if expected is not None and not isinstance(error, expected):
            row.violations.append(f"{kind} surfaced as {type(error).__name__}, expected "
                                  f"{expected.__name__}: {error}")
        outcome = [f"{type(error).__name__}@{STEPS[first_step]}"]

        # Secrets Manager retries: from the failed step, or the whole rotation.
        start = first_step if resume else 0
        for round_ in range(1, MAX_ROUNDS + 1):
            results: list[str] = []
            retry_failed: tuple[int, BaseException] | None = None
            for i in range(start, len(STEPS)):
                try:
                    result = self.invoke(arn, STEPS[i], token, rotation_token, cold=cold)
                    results.append(str(result["Outcome"]))
                except Exception as exc:
                    retry_failed = (i, exc)
                    self.leak_scan.add_text(f"{type(exc).__name__}: {exc}")
                    break
                finally:
                    self.check_some_credential_works(arn, f"retry {round_} {STEPS[i]}", row)
            if retry_failed is None:
                self.bench.service.unstage_pending(arn, token)
                outcome.append(f"ok[{round_}]" if round_ > 1 else "ok")
                break
            step_index, retry_error = retry_failed
            outcome.append(f"{type(retry_error).__name__}@{STEPS[step_index]}")
            start = step_index
        else:
            row.violations.append(f"no convergence after {MAX_ROUNDS} retries: "
                                  + " -> ".join(outcome))
            row.outcome = " > ".join(outcome)
            return row
        row.outcome = "→".join(outcome)
        self.check_converged(arn, token, row, dropped)
        return row


def _expected_error(layer: str, kind: str) -> type[BaseException] | None:
    if layer == "sm":
        return {"ClientError": AwsError, "ReadTimeout": RotationTimeoutError,
                "ConnectTimeout": RotationTimeoutError, "crash-after": Crash}.get(kind)
    if kind == "crash":
        return Crash
    return RotationError


def run_matrix(harness: Harness, kinds: Callable[[Point], Sequence[str]],
               modes: Sequence[str] = MODES, *,
               rotate_modes: bool = False) -> tuple[list[Point], list[Row]]:
    """Record a clean rotation, then fail each of its operations with each of ``kinds(point)``,
    retrying in every one of ``modes`` (or, with ``rotate_modes``, in one of them, taken in turn,
    for a reduced matrix that still covers every mode)."""
    points = harness.record()
    rows: list[Row] = []
    turn = 0
    for point in points:
        for kind in kinds(point):
            if rotate_modes:
                rows.append(harness.run(point, kind, modes[turn % len(modes)]))
                turn += 1
            else:
                rows.extend(harness.run(point, kind, mode) for mode in modes)
    return points, rows


def default_kinds(point: Point) -> Sequence[str]:
    return SM_FAULTS if point.layer == "sm" else DB_FAULTS


def table(rows: Sequence[Row], modes: Sequence[str] = MODES) -> str:
    """One line per (injection point, fault kind), one column per retry mode."""
    cells: dict[tuple[str, int, str], dict[str, str]] = {}
    labels: dict[tuple[str, int, str], str] = {}
    for row in rows:
        key = (row.scenario, row.point.index, row.kind)
        labels[key] = (f"{row.scenario:<22} {row.point.index:>2} {row.point.label:<42} "
                       f"{row.kind:<15}")
        mark = " !!" if row.violations else ""
        cells.setdefault(key, {})[row.mode] = row.outcome + mark
    width = max([len(v) for c in cells.values() for v in c.values()] + [12]) + 2
    header = (f"{'scenario':<22} {'#':>2} {'step / injection point':<42} {'fault':<15} "
              + "".join(f"{m:<{width}}" for m in modes))
    lines = [header, "-" * len(header)]
    for key in sorted(cells):
        lines.append(labels[key] + "".join(f"{cells[key].get(m, '-'):<{width}}" for m in modes))
    return "\n".join(lines)


def summary(points: Sequence[Point], rows: Sequence[Row]) -> str:
    outcomes = Counter("violated" if r.violations else
                       ("absorbed" if r.outcome == "absorbed" else "failed, then converged")
                       for r in rows)
    layers = Counter(p.layer for p in points)
    return (f"{len(points)} injection points ({layers['sm']} Secrets Manager calls, "
            f"{layers['db']} database operations), {len(rows)} faulted rotations: "
            + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())))


def violations(rows: Sequence[Row]) -> list[str]:
    return [f"{r.scenario} #{r.point.index} {r.point.label.strip()} / {r.kind} / {r.mode}: "
            f"{'; '.join(r.violations)} (outcome {r.outcome})" for r in rows if r.violations]


@contextmanager
def tracing_db(observers: list[Callable[[str], None]], tracer: Tracer) -> Iterator[None]:
    observers.append(tracer.on_db)
    try:
        yield
    finally:
        if tracer.on_db in observers:
            observers.remove(tracer.on_db)
