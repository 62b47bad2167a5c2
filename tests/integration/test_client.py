"""Applications through rotations, on real PostgreSQL and MariaDB (TLS): rotation.client under
load while lambda_handler rotates the secret, directly and through psycopg_pool and SQLAlchemy
(the README's snippets, examples/applications/), a Lambda handler keeping its connection, and the
failures that must not be retried.

Each load scenario: 8 application threads open a connection, query and close it, continuously;
one long-lived connection keeps querying; meanwhile 5 single-user rotations, then 3 on an
alternating-users secret, run through ``lambda_handler``. Every query must succeed, and the
client's Secrets Manager calls (counted on its own boto3 client) must stay within 3 per rotation.
The figures are printed (``pytest -s``)."""

from __future__ import annotations

import contextlib
import importlib
import json
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from rotation import handler
from rotation.adapters import get_adapter
from rotation.client import CredentialsRefusedError, RotatingCredentials
from rotation.errors import ConnectError, TlsError
from rotation.tools.local import ApiCallCounter, LocalRotationService
from tests.conftest import LeakScan
from tests.rig import Rig

ENGINES = {"postgres": "pg_server", "mariadb": "mariadb_server"}
APP_THREADS = 8
SINGLE_USER_ROTATIONS = 5
ALTERNATING_ROTATIONS = 3
SETTLE_S = 0.2  # after each rotation: the threads connect with the new credential meanwhile
MAX_CALLS_PER_ROTATION = 3


# -- secrets on the sandbox servers ------------------------------------------------------------

@dataclass
class Apps:
    """Builds secrets (single-user, alternating users) for one engine, and the application's
    own Secrets Manager client with its call counter."""

    engine: str
    server: Any
    sm: Any
    leak_scan: LeakScan
    monkeypatch: pytest.MonkeyPatch
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.monkeypatch.setenv("ROTATION_CA_BUNDLE", self.server.ca_file)

    def _user(self, prefix: str, **options: Any) -> tuple[str, str]:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        password = "Init-" + secrets.token_urlsafe(18)
        self.leak_scan.add(password)
        self.server.create_login_user(name, password, **options)
        self.created.extend([name, get_adapter(self.engine).clone_username(name)])
        return name, password

    def secret(self, strategy: str = "single-user", **overrides: Any) -> Rig:
        """A user, its secret (rotation enabled) and the function set up for ``strategy``."""
        self.monkeypatch.setenv("ROTATION_STRATEGY", strategy)
        handler.reset()  # a new container: the strategy is read once per container
        user, password = self._user("app")
        value = {"engine": self.engine, "host": self.server.host, "port": self.server.port,
                 "username": user, "password": password, "dbname": self.server.dbname}
        if strategy == "alternating-users":
            master, master_password = self._user("master", can_create_roles=True)
            value["masterarn"] = self.sm.create_secret(Name=master, SecretString=json.dumps(
                {**value, "username": master, "password": master_password}))["ARN"]
        arn = self.sm.create_secret(Name=f"{user}-secret",
                                    SecretString=json.dumps({**value, **overrides}))["ARN"]
        service = LocalRotationService(self.sm)
        service.enable_rotation(arn)
        return Rig(self.sm, service, arn, self.server, ApiCallCounter())

    def client(self) -> tuple[Any, ApiCallCounter]:
        """The application's boto3 client: another client object on the same moto backend."""
        client = boto3.client("secretsmanager", region_name="us-east-1")
        return client, ApiCallCounter().attach(client)

    def drop_all(self) -> None:
        for name in reversed(self.created):
            self.server.drop_user(name)


@pytest.fixture(params=sorted(ENGINES))
def apps(request: pytest.FixtureRequest, sm: Any, leak_scan: LeakScan,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Apps]:
    engine: str = request.param
    built = Apps(engine, request.getfixturevalue(ENGINES[engine]), sm, leak_scan, monkeypatch)
    yield built
    built.drop_all()


@pytest.fixture
def pg_apps(sm: Any, leak_scan: LeakScan, monkeypatch: pytest.MonkeyPatch,
            pg_server: Any) -> Iterator[Apps]:
    built = Apps("postgres", pg_server, sm, leak_scan, monkeypatch)
    yield built
    built.drop_all()


# -- the application ---------------------------------------------------------------------------

Query = Callable[[], Any]
Session = Callable[[int], contextlib.AbstractContextManager[Query]]


def run_select(engine: str, conn: Any) -> Any:
    if engine == "postgres":
        return conn.execute("SELECT 1").fetchone()
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()


def client_sessions(engine: str, creds: RotatingCredentials) -> Session:
    """Plain driver connections from ``creds.connect()``."""
    @contextlib.contextmanager
    def session(_: int) -> Iterator[Query]:
        conn = creds.connect()
        try:
            yield lambda: run_select(engine, conn)
        finally:
            conn.close()
    return session


def pool_sessions(pool: Any) -> Session:
    """psycopg_pool connections; every 4th is closed, so the pool keeps opening new ones."""
    @contextlib.contextmanager
    def session(n: int) -> Iterator[Query]:
        with pool.connection() as conn:
            yield lambda: conn.execute("SELECT 1").fetchone()
            if n % 4 == 0:
                conn.close()
    return session


def engine_sessions(engine: Any) -> Session:
    """SQLAlchemy connections; every 4th is invalidated, so the pool keeps opening new ones."""
    from sqlalchemy import text

    @contextlib.contextmanager
    def session(n: int) -> Iterator[Query]:
        with engine.connect() as conn:
            yield lambda: conn.execute(text("SELECT 1")).scalar()
            if n % 4 == 0:
                conn.invalidate()
    return session


@dataclass
class Figures:
    label: str
    queries: int = 0
    long_lived_queries: int = 0
    sessions: int = 0
    failures: list[str] = field(default_factory=list)
    calls_per_rotation: list[int] = field(default_factory=list)
    first_read_calls: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (f"{self.label}: {self.queries} queries in {self.sessions} sessions + "
                f"{self.long_lived_queries} on the long-lived connection, "
                f"{len(self.failures)} failed; Secrets Manager calls: {self.first_read_calls} "
                f"first read, per rotation {self.calls_per_rotation}; client {self.stats}")


def under_rotations(label: str, rig: Rig, rotations: int, session: Session,
                    long_lived: Query, counter: ApiCallCounter,
                    creds: RotatingCredentials) -> Figures:
    """APP_THREADS threads run ``session`` continuously, the long-lived connection queries,
    while ``rotations`` rotations run; every thread stops by itself when they are done."""
    figures = Figures(label)
    figures.first_read_calls = counter.total()
    stop = threading.Event()
    lock = threading.Lock()

    def app_thread() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                with session(n) as query:
                    for _ in range(3):
                        query()
                        with lock:
                            figures.queries += 1
                with lock:
                    figures.sessions += 1
            except Exception as exc:
                with lock:
                    figures.failures.append(f"{type(exc).__name__}: {exc}")
            stop.wait(0.001)

    def long_lived_thread() -> None:
        while not stop.wait(0.005):
            try:
                long_lived()
                with lock:
                    figures.long_lived_queries += 1
            except Exception as exc:
                with lock:
                    figures.failures.append(f"long-lived: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=app_thread, name=f"app-{i}", daemon=True)
               for i in range(APP_THREADS)]
    threads.append(threading.Thread(target=long_lived_thread, name="long-lived", daemon=True))
    for thread in threads:
        thread.start()
    try:
        time.sleep(SETTLE_S)
        for _ in range(rotations):
            before = counter.total()
            report = rig.service.rotate(rig.arn, rig.invoke)
            assert report.succeeded, report.steps
            time.sleep(SETTLE_S)
            figures.calls_per_rotation.append(counter.total() - before)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    figures.stats = creds.stats()
    return figures


def check(figures: Figures, leak_scan: LeakScan, rotations: int) -> None:
    print(figures.line())
    leak_scan.add_text("\n".join(figures.failures))
    assert figures.failures == [], figures.failures[:5]
    assert figures.queries >= 3 * APP_THREADS * rotations
    assert figures.long_lived_queries >= rotations
    assert figures.first_read_calls == 1
    assert len(figures.calls_per_rotation) == rotations
    assert max(figures.calls_per_rotation) <= MAX_CALLS_PER_ROTATION, figures.calls_per_rotation


def both_strategies(apps: Apps, leak_scan: LeakScan, mode: str,
                    sessions: Callable[[RotatingCredentials], Session]) -> None:
    for strategy, rotations in (("single-user", SINGLE_USER_ROTATIONS),
                                ("alternating-users", ALTERNATING_ROTATIONS)):
        rig = apps.secret(strategy)
        client, counter = apps.client()
        creds = RotatingCredentials(rig.arn, client=client)
        long_lived = creds.connect()
        try:
            figures = under_rotations(
                f"{apps.engine} {mode} {strategy}", rig, rotations, sessions(creds),
                lambda conn=long_lived: run_select(apps.engine, conn), counter, creds)
        finally:
            long_lived.close()
        check(figures, leak_scan, rotations)


# -- the load scenarios ------------------------------------------------------------------------

def test_threads_and_a_long_lived_connection_through_rotations(
        apps: Apps, leak_scan: LeakScan) -> None:
    # GIVEN / WHEN 8 threads connect through the client while the secret rotates
    # THEN no query failed and the client read Secrets Manager at most 3 times per rotation
    both_strategies(apps, leak_scan, "connect()",
                    lambda creds: client_sessions(apps.engine, creds))


def test_a_psycopg_pool_through_rotations(pg_apps: Apps, leak_scan: LeakScan) -> None:
    from examples.applications.libraries import postgres_pool

    pools: list[Any] = []

    def sessions(creds: RotatingCredentials) -> Session:
        pools.append(postgres_pool(creds))  # the README's snippet: kwargs=creds.connection_kwargs
        return pool_sessions(pools[-1])

    try:
        both_strategies(pg_apps, leak_scan, "psycopg_pool", sessions)
    finally:
        for pool in pools:
            pool.close()


def test_a_sqlalchemy_engine_through_rotations(apps: Apps, leak_scan: LeakScan) -> None:
    from examples.applications.libraries import mysql_engine, postgres_engine

    engines: list[Any] = []

    def sessions(creds: RotatingCredentials) -> Session:
        # PostgreSQL: `creator`; MariaDB: the `do_connect` event (the README's snippets)
        make = postgres_engine if apps.engine == "postgres" else mysql_engine
        engines.append(make(creds))
        return engine_sessions(engines[-1])

    try:
        both_strategies(apps, leak_scan, "SQLAlchemy", sessions)
    finally:
        for engine in engines:
            engine.dispose()


# -- a Lambda handler keeping its connection ---------------------------------------------------

def test_a_lambda_handler_keeps_its_connection_across_invocations(
        pg_apps: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the README's Zappa-style handler, loaded as Lambda's init phase would
    rig = pg_apps.secret("single-user")
    monkeypatch.setenv("DB_SECRET_ID", rig.arn)
    monkeypatch.delitem(sys.modules, "examples.applications.lambda_handler", raising=False)
    app = importlib.import_module("examples.applications.lambda_handler")
    counter = ApiCallCounter().attach(app.creds._client)
    try:
        first = app.handler({}, None)
        backends = {first["backend"]}
        # WHEN invocations and rotations alternate
        for _ in range(3):
            assert rig.service.rotate(rig.arn, rig.invoke).succeeded
            backends.add(app.handler({}, None)["backend"])
        # THEN the one connection served them all, after one Secrets Manager read in all
        assert backends == {first["backend"]}
        assert counter.total() == 1

        # WHEN the server ends the session while the container is frozen
        with pg_apps.server.admin_connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first["backend"],))
        again = app.handler({}, None)
        # THEN the next invocation opens a new one with the rotated password (one refresh)
        assert again["backend"] != first["backend"]
        assert again["user"] == first["user"]
        assert counter.total() == 2
    finally:
        if app.connection is not None:
            app.connection.close()


# -- PyMySQL directly, and the keyword arguments with the real drivers -------------------------

def test_plain_pymysql_with_the_drivers_own_arguments(
        sm: Any, leak_scan: LeakScan, monkeypatch: pytest.MonkeyPatch,
        mariadb_server: Any) -> None:
    from examples.applications.libraries import mysql_connection

    apps = Apps("mariadb", mariadb_server, sm, leak_scan, monkeypatch)
    try:
        rig = apps.secret()
        creds = RotatingCredentials(rig.arn, client=apps.client()[0])
        conn = mysql_connection(creds)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT CURRENT_USER() AS who, @@ssl_cipher AS cipher")
                row = cursor.fetchone()
            with conn.cursor() as cursor:
                cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
                tls = cursor.fetchone()
        finally:
            conn.close()
        assert row["who"].startswith(rig.value("AWSCURRENT")["username"] + "@")
        assert tls["Value"].startswith("TLSv1.")
    finally:
        apps.drop_all()


def test_connection_kwargs_work_with_the_driver_itself(apps: Apps) -> None:
    import psycopg
    import pymysql

    # GIVEN a client whose secret just rotated
    rig = apps.secret()
    creds = RotatingCredentials(rig.arn, client=apps.client()[0])
    creds.connect().close()
    assert rig.service.rotate(rig.arn, rig.invoke).succeeded
    time.sleep(creds.proof_interval)
    # WHEN the keyword arguments go to the driver directly
    kwargs = creds.connection_kwargs()
    if apps.engine == "postgres":
        with psycopg.connect(**kwargs) as conn:
            row = conn.execute("SELECT current_user, ssl FROM pg_stat_ssl "
                               "WHERE pid = pg_backend_pid()").fetchone()
        # THEN they log in, over verified TLS, as the rotated credential
        assert row == (rig.value("AWSCURRENT")["username"], True)
        assert kwargs["sslmode"] == "verify-full"
    else:
        conn = pymysql.connect(**kwargs)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
                tls = cursor.fetchone()
        finally:
            conn.close()
        assert tls[1].startswith("TLSv1.")
        assert kwargs["ssl"].check_hostname


# -- failures: a wrong secret, TLS, a closed port ----------------------------------------------

def test_a_wrong_secret_fails_clearly_and_cools_down(apps: Apps, leak_scan: LeakScan) -> None:
    # GIVEN a secret whose password the database does not have
    wrong = "Wrong-" + secrets.token_urlsafe(18)
    leak_scan.add(wrong)
    rig = apps.secret(password=wrong)
    client, counter = apps.client()
    creds = RotatingCredentials(rig.arn, client=client)
    mark = apps.server.log_position()

    # WHEN 50 connects come in a burst from 10 threads
    errors: list[Exception] = []

    def burst() -> None:
        for _ in range(5):
            try:
                creds.connect().close()
            except CredentialsRefusedError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=burst) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN each fails with an error naming the secret and the labels tried, no value
    leak_scan.add_text("\n".join(str(e) for e in errors))
    assert len(errors) == 50
    text = str(errors[0])
    for needle in (rig.arn, "AWSCURRENT", "AWSPENDING"):
        assert needle in text
    # ... and Secrets Manager was read once to load, and at most 3 times to recover
    print(f"{apps.engine}: wrong secret, 50 connects: Secrets Manager calls {counter.calls}, "
          f"database logins {apps.server.login_counts(mark)}, client {creds.stats()}")
    assert counter.total() <= 1 + MAX_CALLS_PER_ROTATION
    assert creds.stats()["gave_up"] == 1


def test_a_tls_failure_is_not_retried_with_other_labels(
        apps: Apps, tmp_path: Any) -> None:
    import trustme

    # GIVEN a client that trusts another CA than the one that signed the server's certificate
    rig = apps.secret()
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(trustme.CA().cert_pem.bytes())
    client, counter = apps.client()
    creds = RotatingCredentials(rig.arn, client=client, ca_bundle=str(other_ca))
    mark = apps.server.log_position()
    # WHEN it connects
    with pytest.raises(TlsError):
        creds.connect()
    # THEN one read, one attempt, no login reached the server
    assert counter.calls == {"GetSecretValue": 1}
    assert apps.server.login_counts(mark).succeeded == 0
    assert creds.stats()["refused"] == 0


def test_a_closed_port_is_not_retried_with_other_labels(apps: Apps) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rig = apps.secret(port=port)
    client, counter = apps.client()
    creds = RotatingCredentials(rig.arn, client=client)
    with pytest.raises(ConnectError):
        creds.connect()
    assert counter.calls == {"GetSecretValue": 1}
