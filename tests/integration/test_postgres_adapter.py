"""The PostgreSQL adapter on the sandbox server: trust store without ROTATION_CA_BUNDLE, bounded
waits when the network stops answering, statement_timeout without the `options` startup
parameter, and precise diagnosis of refused logins."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from psycopg import sql

from rotation import handler
from rotation.adapters.base import AdapterOptions
from rotation.adapters.postgres import PostgresAdapter, PostgresSession
from rotation.credentials import DbCredentials, credentials_from_dict
from rotation.errors import (
    ConnectError,
    DatabaseError,
    DbTimeoutError,
    LoginError,
    PasswordRefusedError,
    TlsError,
)
from tests.conftest import FakeLambdaContext, LeakScan
from tests.netfaults import BlackholeProxy, SilentServer
from tests.rig import pg_can_login

pytestmark = pytest.mark.integration

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pg-adapter"


@pytest.fixture
def pg_user(pg_server: Any, leak_scan: LeakScan) -> Iterator[Callable[..., DbCredentials]]:
    """Makes a login user on the sandbox PostgreSQL (``attributes`` are extra ALTER ROLE
    options, e.g. ``NOLOGIN``); drops them afterwards."""
    made: list[str] = []

    def make(*, attributes: str = "", **secret: Any) -> DbCredentials:
        username = f"pa_{uuid.uuid4().hex[:10]}"
        password = "Pw-" + secrets.token_urlsafe(16)
        leak_scan.add(password)
        pg_server.create_login_user(username, password)
        made.append(username)
        if attributes:
            with pg_server.admin_connect() as admin:
                admin.execute(sql.SQL("ALTER ROLE {} " + attributes).format(
                    sql.Identifier(username)))
        return credentials_from_dict(
            {"engine": "postgres", "host": pg_server.host, "port": pg_server.port,
             "username": username, "password": password, "dbname": pg_server.dbname,
             **secret}, ARN)

    yield make
    for username in made:
        pg_server.drop_user(username)


def _adapter(pg_server: Any, **options: Any) -> PostgresAdapter:
    return PostgresAdapter(AdapterOptions(**{"ca_bundle": pg_server.ca_file, **options}))


# -- 1. trust store: no ROTATION_CA_BUNDLE -------------------------------------------------------

@pytest.mark.parametrize("sslmode", ["verify-full", "verify-ca"])
def test_machine_trust_store_verifies_without_a_ca_bundle(
        pg_server: Any, pg_user: Callable[..., DbCredentials], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, sslmode: str) -> None:
    # GIVEN a machine trust store (SSL_CERT_FILE, as Python's ssl reads it) that holds the
    # server's CA among others, and no ROTATION_CA_BUNDLE
    store = tmp_path / "store.pem"
    store.write_bytes(trustme.CA().cert_pem.bytes() + Path(pg_server.ca_file).read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    creds = pg_user(sslmode=sslmode)
    adapter = PostgresAdapter(AdapterOptions(ca_bundle=None))

    # WHEN the adapter logs in with a verifying sslmode
    with adapter.connect(creds) as session:
        session.ping()

    # THEN it verified against that store (libpq got the file, not "system")
    assert adapter.connection_params(creds)["sslrootcert"] == str(store)


def test_trust_store_without_the_ca_fails_closed(
        pg_server: Any, pg_user: Callable[..., DbCredentials], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a machine trust store that does not hold the server's CA
    store = tmp_path / "store.pem"
    trustme.CA().cert_pem.write_to_path(str(store))
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    creds = pg_user()
    mark = pg_server.log_position()

    # WHEN the adapter logs in, THEN TLS verification fails, naming the fix; no login happened
    with pytest.raises(TlsError) as info:
        PostgresAdapter(AdapterOptions()).connect(creds)
    assert "ROTATION_CA_BUNDLE" in str(info.value)
    assert pg_server.login_counts(mark).succeeded == 0


def test_no_trust_store_file_fails_before_connecting(
        pg_server: Any, pg_user: Callable[..., DbCredentials], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN SSL_CERT_FILE naming a file that does not exist (so there is no CA file at all)
    missing = tmp_path / "no-such-bundle.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    creds = pg_user()
    mark = pg_server.log_position()

    # WHEN the adapter logs in
    with pytest.raises(TlsError) as info:
        PostgresAdapter(AdapterOptions()).connect(creds)

    # THEN it says what it tried and what to set, and never reached the server
    text = str(info.value)
    assert "SSL_CERT_FILE" in text
    assert str(missing) in text
    assert "ROTATION_CA_BUNDLE" in text
    assert "connection received" not in pg_server.log_text().encode()[mark:].decode()


# -- 2. every wait is bounded ---------------------------------------------------------------------

@pytest.mark.parametrize("operation", ["ping", "set_password"])
def test_statement_on_a_blackholed_connection_times_out(
        pg_server: Any, pg_user: Callable[..., DbCredentials], leak_scan: LeakScan,
        operation: str) -> None:
    # GIVEN a session whose network stops answering after the login (TCP still ACKs)
    creds = pg_user()
    adapter = _adapter(pg_server, connect_timeout=5, statement_timeout=1.0)
    with BlackholeProxy(pg_server.host, pg_server.port, lifetime=20) as proxy:
        via_proxy = credentials_from_dict({**creds.to_secret_dict(), "port": proxy.port}, ARN)
        session = adapter.connect(via_proxy)
        proxy.blackhole()
        new_password = "New-" + secrets.token_urlsafe(16)
        leak_scan.add(new_password)

        # WHEN a statement runs
        started = time.monotonic()
        run: Callable[[], None] = (
            session.ping if operation == "ping"
            else lambda: session.set_password(creds.username, new_password))
        with pytest.raises(DbTimeoutError) as info:
            run()
        elapsed = time.monotonic() - started
        session.close()

    # THEN it fails as a timeout within about statement_timeout, not when Lambda kills it
    assert elapsed < 1.0 + 4, elapsed
    assert "no answer" in str(info.value)
    leak_scan.add_text(str(info.value))
    print(f"blackholed {operation} failed after {elapsed:.2f} s")


def test_rotation_step_fails_with_a_timeout_before_the_lambda_timeout(
        server_rigs: Any, pg_server: Any, monkeypatch: pytest.MonkeyPatch,
        log_capture: Any) -> None:
    # GIVEN a secret whose database connection goes silent right after the login
    monkeypatch.setenv("ROTATION_CA_BUNDLE", pg_server.ca_file)
    with BlackholeProxy(pg_server.host, pg_server.port, lifetime=20) as proxy:
        rig = server_rigs.build(pg_server, "postgres", port=proxy.port)
        token = str(uuid.uuid4())
        rig.service.stage_pending(rig.arn, token)
        rig.invoke(rig.event("createSecret", token))
        real_connect = PostgresAdapter.connect

        def connect_then_blackhole(self: PostgresAdapter,
                                   credentials: DbCredentials) -> PostgresSession:
            session = real_connect(self, credentials)
            proxy.blackhole()
            return session

        monkeypatch.setattr(PostgresAdapter, "connect", connect_then_blackhole)
        context = FakeLambdaContext(remaining_ms=8_000)

        # WHEN setSecret runs through the Lambda handler with 8 s left
        started = time.monotonic()
        with pytest.raises(DbTimeoutError):
            handler.lambda_handler(rig.event("setSecret", token), context)
        elapsed = time.monotonic() - started

    # THEN it failed as a timeout well before Lambda would have killed it
    assert elapsed < 8.0 - 2.0, elapsed
    failures = [r for r in log_capture.records() if r["level"] == "ERROR"]
    assert failures
    assert failures[-1]["cause"] == "timeout"
    print(f"setSecret through the blackhole failed after {elapsed:.2f} s of 8 s")


def test_login_to_a_server_that_never_answers_is_bounded(
        pg_user: Callable[..., DbCredentials]) -> None:
    # GIVEN a port that accepts TCP and never answers (the startup packet is ACKed, nothing more)
    creds = pg_user()
    with SilentServer() as silent:
        target = credentials_from_dict({**creds.to_secret_dict(), "port": silent.port}, ARN)
        adapter = PostgresAdapter(AdapterOptions(connect_timeout=2))

        # WHEN the adapter logs in
        started = time.monotonic()
        with pytest.raises(DbTimeoutError):
            adapter.connect(target)
        elapsed = time.monotonic() - started

    # THEN libpq's connect_timeout ended it
    assert elapsed < 2 + 4, elapsed
    print(f"login to a silent server failed after {elapsed:.2f} s (connect_timeout 2 s)")


def test_commit_on_a_blackholed_connection_times_out(
        pg_server: Any, pg_user: Callable[..., DbCredentials]) -> None:
    # GIVEN a transaction whose network stops answering before its COMMIT
    creds = pg_user()
    adapter = _adapter(pg_server, statement_timeout=1.0)
    with BlackholeProxy(pg_server.host, pg_server.port, lifetime=20) as proxy:
        via_proxy = credentials_from_dict({**creds.to_secret_dict(), "port": proxy.port}, ARN)
        session = adapter.connect(via_proxy)

        def block() -> None:
            with session._transaction():
                session.ping()
                proxy.blackhole()

        # WHEN the block ends, THEN the COMMIT is bounded like any statement
        started = time.monotonic()
        with pytest.raises(DbTimeoutError):
            block()
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 4, elapsed
    assert session._conn.closed


def test_transaction_commits_or_rolls_back_within_its_budget(
        pg_server: Any, pg_user: Callable[..., DbCredentials]) -> None:
    creds = pg_user()
    adapter = _adapter(pg_server, statement_timeout=0.5)
    with adapter.connect(creds) as session:
        # a failed statement rolls the whole block back; the session stays usable
        def failing_block() -> None:
            with session._transaction():
                session._execute(sql.SQL("CREATE TEMP TABLE t_first (x int)"))
                session._execute(sql.SQL("SELECT 1/0"))

        with pytest.raises(DatabaseError):
            failing_block()
        # a good block commits, with the statement timeout in force throughout
        with session._transaction():
            session._execute(sql.SQL("CREATE TEMP TABLE t_second (x int)"))
            shown = session._conn.execute("SHOW statement_timeout").fetchone()
        after = session._conn.execute("SHOW statement_timeout").fetchone()
        tables = session._execute(sql.SQL(
            "SELECT to_regclass('pg_temp.t_first') IS NULL, "
            "to_regclass('pg_temp.t_second') IS NOT NULL"))
    assert tables == [(True, True)]
    assert shown == ("500ms",)
    assert after == ("0",)


# -- 3. statement_timeout without the `options` startup parameter ---------------------------------

def test_statement_timeout_is_in_force_and_does_not_outlive_the_statement(
        pg_server: Any, pg_user: Callable[..., DbCredentials]) -> None:
    # GIVEN a session with a 0.5 s statement timeout
    adapter = _adapter(pg_server, statement_timeout=0.5)
    with adapter.connect(pg_user()) as session:
        # WHEN statements run
        shown = session._execute(sql.SQL("SHOW statement_timeout"))
        started = time.monotonic()
        with pytest.raises(DbTimeoutError) as info:
            session._execute(sql.SQL("SELECT pg_sleep(5)"))
        elapsed = time.monotonic() - started
        session.ping()  # the server cancelled the statement; the session is still good
        # (a raw statement, outside the adapter's own transaction)
        after = session._conn.execute("SHOW statement_timeout").fetchone()

    # THEN the server enforced the timeout on the statement, and the setting ended with it:
    # nothing is left on the connection (which a transaction pooler hands to other clients)
    assert shown == [("500ms",)]
    assert info.value.sqlstate == "57014"
    assert elapsed < 3, elapsed
    assert after == ("0",)


def test_a_step_of_several_statements_ends_by_the_invocation_deadline(
        pg_server: Any, pg_user: Callable[..., DbCredentials]) -> None:
    # GIVEN a live but slow server (each statement takes 0.8 s, under the 1 s statement
    # timeout) and an invocation whose database work must be over 2 s from now
    from rotation.adapters.base import DEADLINE

    adapter = _adapter(pg_server, statement_timeout=1.0)
    with adapter.connect(pg_user()) as session:
        token = DEADLINE.set(time.monotonic() + 2.0)
        started = time.monotonic()
        try:
            # WHEN the step runs one slow statement after another
            def slow_step() -> None:
                for _ in range(5):
                    session._execute(sql.SQL("SELECT pg_sleep(0.8)"))

            with pytest.raises(DbTimeoutError):
                slow_step()
        finally:
            DEADLINE.reset(token)
        elapsed = time.monotonic() - started

    # THEN the statement that would outlast the deadline is cut short: the step ends near the
    # deadline (before this fix, each statement got its full timeout: 5 x 0.8 s)
    assert elapsed < 2.6, elapsed


def test_a_master_refuses_to_set_the_password_of_an_rds_iam_role(
        pg_server: Any, pg_user: Callable[..., DbCredentials]) -> None:
    # GIVEN a role granted rds_iam (RDS then refuses its password logins), and a master
    with pg_server.admin_connect() as admin:
        admin.execute("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                      "'rds_iam') THEN CREATE ROLE rds_iam NOLOGIN; END IF; END$$")
    iam_user, master = pg_user(), pg_user(attributes="CREATEROLE")
    with pg_server.admin_connect() as admin:
        admin.execute(sql.SQL("GRANT rds_iam TO {}").format(sql.Identifier(iam_user.username)))
    adapter = _adapter(pg_server)

    # WHEN the master sets its password
    with adapter.connect(master) as session, pytest.raises(DatabaseError) as info:
        session.set_password(iam_user.username, "Next-" + secrets.token_urlsafe(16))

    # THEN it refuses, naming rds_iam, and the role's password still works
    assert "rds_iam" in str(info.value)
    assert pg_can_login(pg_server, iam_user.username, iam_user.password)


@pytest.mark.parametrize("password", ["Plain ASCII-pw~!{}", "x" * 128, "pässwörd-ÜNICODE"])
def test_the_scram_verifier_is_libpqs(pg_server: Any, pg_user: Callable[..., DbCredentials],
                                      password: str, leak_scan: LeakScan) -> None:
    # GIVEN libpq's verifier of a password (random salt), and ours on the same salt
    import base64

    from rotation.adapters.postgres import scram_verifier

    leak_scan.add(password)
    user = pg_user()
    with _adapter(pg_server).connect(user) as session:
        libpq = session._conn.pgconn.encrypt_password(
            password.encode(), user.username.encode(), b"scram-sha-256").decode()
        iterations, salt = libpq.split("$")[1].split(":")
        ours = scram_verifier(password, int(iterations), base64.b64decode(salt))

        # WHEN the session sets the password (its own verifier, or libpq's for non-ASCII)
        session.set_password(user.username, password)
    leak_scan.add(libpq)

    # THEN ours equals libpq's for printable ASCII (None otherwise: libpq's SASLprep then
    # applies), and the password logs in
    assert ours == (libpq if password.isascii() else None)
    assert pg_can_login(pg_server, user.username, password)


# -- 4. refused logins: say the real cause --------------------------------------------------------

def test_wrong_password_is_a_password_refusal(
        pg_server: Any, pg_user: Callable[..., DbCredentials], leak_scan: LeakScan) -> None:
    creds = pg_user()
    wrong = creds.with_user(creds.username, "Wrong-" + secrets.token_urlsafe(12))
    leak_scan.add(wrong.password)
    with pytest.raises(PasswordRefusedError) as info:
        _adapter(pg_server).connect(wrong)
    leak_scan.add_text(str(info.value))
    assert creds.username in str(info.value)


def test_expired_password_is_refused_like_a_wrong_one(
        pg_server: Any, pg_user: Callable[..., DbCredentials]) -> None:
    # PostgreSQL answers a password past VALID UNTIL exactly as a wrong one (28P01, same text):
    # the client cannot tell them apart, so the hint names both.
    creds = pg_user(attributes="VALID UNTIL '2001-01-01'")
    with pytest.raises(PasswordRefusedError) as info:
        _adapter(pg_server).connect(creds)
    assert "VALID UNTIL" in info.value.hint


def test_role_without_login_is_not_a_password_refusal(
        pg_server: Any, pg_user: Callable[..., DbCredentials]) -> None:
    creds = pg_user(attributes="NOLOGIN")
    with pytest.raises(LoginError) as info:
        _adapter(pg_server).connect(creds)
    assert not isinstance(info.value, PasswordRefusedError)
    assert "not permitted to log in" in str(info.value)
    assert "LOGIN" in info.value.hint
    assert "password" not in info.value.hint.lower()


def test_connection_limit_is_a_connect_error_naming_the_limit(
        pg_server: Any, pg_user: Callable[..., DbCredentials]) -> None:
    creds = pg_user(attributes="CONNECTION LIMIT 0")
    with pytest.raises(ConnectError) as info:
        _adapter(pg_server).connect(creds)
    assert not isinstance(info.value, LoginError)
    assert "CONNECTION LIMIT" in info.value.hint


def test_missing_database_names_dbname(pg_server: Any,
                                       pg_user: Callable[..., DbCredentials]) -> None:
    creds = pg_user(dbname="no_such_db")
    with pytest.raises(LoginError) as info:
        _adapter(pg_server).connect(creds)
    assert not isinstance(info.value, PasswordRefusedError)
    assert "`dbname`" in info.value.hint


def test_plaintext_login_to_a_tls_only_server_names_the_tls_opt_out(
        pg_server: Any, pg_user: Callable[..., DbCredentials]) -> None:
    # GIVEN a secret with "ssl": false against a server whose pg_hba.conf has only hostssl lines
    creds = pg_user(ssl=False)
    with pytest.raises(TlsError) as info:
        _adapter(pg_server).connect(creds)
    assert "no pg_hba.conf entry" in str(info.value)
    assert "ssl: false" in info.value.hint


def test_read_only_session_names_the_writer(
        pg_server: Any, pg_user: Callable[..., DbCredentials], leak_scan: LeakScan) -> None:
    # GIVEN a login whose transactions are read-only (as on a replica / reader endpoint)
    creds = pg_user(attributes="SET default_transaction_read_only = on")
    new_password = "New-" + secrets.token_urlsafe(16)
    leak_scan.add(new_password)
    with _adapter(pg_server).connect(creds) as session, \
            pytest.raises(DatabaseError) as info:
        session.set_password(creds.username, new_password)
    assert info.value.sqlstate == "25006"
    assert "writer" in info.value.hint
    assert pg_can_login(pg_server, creds.username, creds.password)
