"""The fault matrix of tests/functional/test_fault_injection.py, reduced, against the real
PostgreSQL (TLS, scram-sha-256) and MariaDB (TLS, require_secure_transport) servers: the
database faults come from a wrapper around the real adapter, the Secrets Manager faults from
botocore handlers on the function's client, and every invariant is checked by real logins.

Run with ``-rP`` to see the table and the count of injection points.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import pytest

import rotation.adapters
from rotation import handler
from rotation.adapters import get_adapter
from rotation.adapters.base import AdapterOptions, DatabaseSession
from rotation.adapters.mysql import MySQLAdapter
from rotation.adapters.postgres import PostgresAdapter
from rotation.credentials import DbCredentials, credentials_from_dict
from rotation.errors import LoginError
from rotation.tools.local import LocalRotationService
from tests.conftest import LeakScan
from tests.fault_harness import (
    DB_FAULTS,
    Harness,
    Point,
    Tracer,
    run_matrix,
    summary,
    table,
    violations,
)

#: the database operations of the real adapter, observed by the running harness
OBSERVERS: list[Callable[[str], None]] = []


def _observe(operation: str) -> None:
    for observer in list(OBSERVERS):
        observer(operation)


class TracedSession:
    """The real session; each operation is announced first (a fault raises there)."""

    def __init__(self, inner: DatabaseSession) -> None:
        self._inner = inner

    def ping(self) -> None:
        _observe("ping")
        self._inner.ping()

    def set_password(self, username: str, password: str) -> None:
        _observe("set_password")
        self._inner.set_password(username, password)
        _observe("after_set_password")

    def sync_clone(self, source_username: str, clone_username: str, password: str) -> None:
        _observe("sync_clone")
        self._inner.sync_clone(source_username, clone_username, password)
        _observe("after_sync_clone")

    def discard_old_password(self, username: str) -> None:
        _observe("discard_old_password")
        self._inner.discard_old_password(username)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> TracedSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class TracedPostgresAdapter(PostgresAdapter):
    def connect(self, credentials: DbCredentials) -> TracedSession:  # type: ignore[override]
        _observe("connect")
        return TracedSession(super().connect(credentials))


class TracedMySQLAdapter(MySQLAdapter):
    def connect(self, credentials: DbCredentials) -> TracedSession:  # type: ignore[override]
        _observe("connect")
        return TracedSession(super().connect(credentials))


TRACED = {"postgres": "TracedPostgresAdapter", "mariadb": "TracedMySQLAdapter"}
SERVERS = {"postgres": "pg_server", "mariadb": "mariadb_server"}


def log_since(server: Any, mark: int) -> str:
    """The server log after byte offset ``mark`` (log_position() counts bytes; the log holds
    non-ASCII role names, so slicing the decoded text by it would start too late)."""
    data: bytes = server.log_file.read_bytes()[mark:]
    return data.decode("utf-8", errors="replace")


def can_login(engine: str, server: Any, username: str, password: str) -> bool:
    """A verified TLS login through the untraced built-in adapter."""
    creds = credentials_from_dict({"engine": engine, "host": server.host, "port": server.port,
                                   "username": username, "password": password,
                                   "dbname": server.dbname}, "arn:check")
    # the untraced built-in adapter, not the traced one the BUILTIN patch installs
    adapter = (PostgresAdapter if engine == "postgres" else MySQLAdapter)(
        AdapterOptions(ca_bundle=server.ca_file))
    try:
        adapter.connect(creds).close()
    except LoginError:
        return False
    return True


class RealBench:
    """Secrets on moto, users on a real database server."""

    def __init__(self, sm: Any, engine: str, server: Any, strategy: str,
                 leak_scan: LeakScan) -> None:
        self.sm, self.server, self.strategy, self.leak_scan = sm, server, strategy, leak_scan
        self.engine = engine
        self.service = LocalRotationService(sm)
        self.tracer = Tracer()
        self.created: list[str] = []
        self.master_arn: str | None = None
        if strategy == "alternating-users":
            master, password = self._user("fim"), "Master-" + secrets.token_urlsafe(18)
            leak_scan.add(password)
            server.create_login_user(master, password, can_create_roles=True)
            self.master_arn = sm.create_secret(Name=master, SecretString=json.dumps(
                {**self._base(), "username": master, "password": password}))["ARN"]

    def _user(self, prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.created.extend([name, get_adapter(self.engine).clone_username(name)])
        return name

    def _base(self) -> dict[str, Any]:
        return {"engine": self.engine, "host": self.server.host, "port": self.server.port,
                "dbname": self.server.dbname}

    def fresh(self) -> str:
        username, password = self._user("fi"), "Init-" + secrets.token_urlsafe(18)
        self.leak_scan.add(password)
        self.server.create_login_user(username, password)
        value = {**self._base(), "username": username, "password": password}
        if self.master_arn:
            value["masterarn"] = self.master_arn
        arn: str = self.sm.create_secret(Name=username, SecretString=json.dumps(value))["ARN"]
        self.service.enable_rotation(arn)
        handler.reset()
        return arn

    def logs_in(self, username: str, password: str) -> bool:
        return can_login(self.engine, self.server, username, password)

    def drop_users(self) -> None:
        for name in reversed(self.created):
            self.server.drop_user(name)


@pytest.fixture(params=sorted(SERVERS))
def traced(request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """(engine, server), with the engine's adapter replaced by its traced subclass."""
    engine: str = request.param
    server = request.getfixturevalue(SERVERS[engine])
    monkeypatch.setattr(rotation.adapters, "BUILTIN", {
        **rotation.adapters.BUILTIN, engine: f"{__name__}:{TRACED[engine]}"})
    monkeypatch.setenv("ROTATION_CA_BUNDLE", server.ca_file)
    yield engine, server
    OBSERVERS.clear()


def _kinds(point: Point) -> tuple[str, ...]:
    # Every point with the faults that behave differently: a service error before the call, a
    # response lost after the call went through, a crash right after it; a database error and a
    # crash (after_set_password: right after the real ALTER ROLE committed).
    return ("ClientError", "lost-response", "crash-after") if point.layer == "sm" else DB_FAULTS


MODES = ("resume/warm", "restart/cold")


@pytest.mark.parametrize("strategy", ["single-user", "alternating-users"])
def test_every_fault_converges_on_a_real_server(sm: Any, traced: tuple[str, Any],
                                               leak_scan: LeakScan,
                                               monkeypatch: pytest.MonkeyPatch,
                                               strategy: str) -> None:
    # GIVEN secrets for real database users, rotated by `strategy`
    engine, server = traced
    monkeypatch.setenv("ROTATION_STRATEGY", strategy)
    bench = RealBench(sm, engine, server, strategy, leak_scan)
    OBSERVERS.append(bench.tracer.on_db)
    harness = Harness(bench, leak_scan, f"{engine} {strategy}")
    mark = server.log_position()
    try:
        # WHEN each operation of a clean rotation fails in turn, with each fault kind, and the
        # rotation is retried (each row in one retry mode, the modes taken in turn)
        points, rows = run_matrix(harness, _kinds, MODES, rotate_modes=True)
    finally:
        bench.drop_users()

    # THEN (table printed for -rP) every invariant held, checked by real logins
    print(f"\n{summary(points, rows)}; {harness.checks} invariant checks by real logins")
    print(table(rows, MODES))
    assert {p.operation for p in points if p.layer == "db"} >= {"connect", "ping"}
    assert len(points) >= 12
    problems = violations(rows)
    assert not problems, f"{len(problems)} of {len(rows)} rows broke an invariant:\n" + \
        "\n".join(problems[:40])
    # ... and the server never received a password in plaintext (its log has every statement;
    # it shows SCRAM verifiers, which are not secrets the leak scan should flag)
    server_log = log_since(server, mark)
    passwords = [p for p in _stored_passwords(sm) if p in server_log]
    assert not passwords, f"{len(passwords)} password(s) in plaintext in the server log"


def _stored_passwords(sm: Any) -> set[str]:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.secretsmanager.models import secretsmanager_backends

    backend = secretsmanager_backends[DEFAULT_ACCOUNT_ID][sm.meta.region_name]
    found = set()
    for secret in backend.secrets.values():
        for version in secret.versions.values():
            raw = version.get("secret_string")
            if raw:
                found.add(json.loads(raw)["password"])
    return found
