"""Rotation through a pooler: PgBouncer (transaction pooling) in front of the sandbox PostgreSQL,
TLS verified on both sides, users looked up per login with ``auth_query`` (SCRAM).

The secret's ``host``/``port`` are PgBouncer's, so every login of the rotation goes through the
pooler; users and passwords live in PostgreSQL, whose log is checked for leaks.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rotation.adapters import get_adapter
from rotation.tools import sandbox as sandbox_module
from rotation.tools.local import ApiCallCounter, LocalRotationService
from rotation.tools.sandbox import Sandbox, SandboxError, ServerHandle
from tests.conftest import LeakScan, LogCapture
from tests.rig import Rig, pg_can_login


def _connect(server: ServerHandle, username: str, password: str, **kwargs: Any) -> Any:
    params: dict[str, Any] = {"sslmode": "verify-full", "sslrootcert": server.ca_file,
                              "connect_timeout": 5, **kwargs}
    return psycopg.connect(host=server.host, port=server.port, user=username, password=password,
                           dbname=server.dbname, **params)


def _set_password(pg: ServerHandle, username: str, password: str) -> None:
    """ALTER ROLE on PostgreSQL itself (not through the pooler), with a client-side verifier."""
    from psycopg import sql

    with pg.admin_connect() as conn:
        verifier = conn.pgconn.encrypt_password(
            password.encode(), username.encode(), b"scram-sha-256").decode()
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(username), sql.Literal(verifier)))


@pytest.fixture
def pooled_user(pgbouncer_server: ServerHandle, leak_scan: LeakScan) -> Iterator[tuple[str, str]]:
    username = f"pooled_{uuid.uuid4().hex[:10]}"
    password = "Pool-" + secrets.token_urlsafe(18)
    leak_scan.add(password)
    pgbouncer_server.create_login_user(username, password)
    yield username, password
    pgbouncer_server.drop_user(username)


# ---------------------------------------------------------------------------------------------
# (a) the sandbox's PgBouncer
# ---------------------------------------------------------------------------------------------


def test_verified_tls_login_through_the_pooler(pgbouncer_server: ServerHandle,
                                               pg_server: ServerHandle,
                                               pooled_user: tuple[str, str]) -> None:
    username, password = pooled_user
    mark = pgbouncer_server.log_position()
    # WHEN a client connects to PgBouncer with verify-full against the sandbox CA
    with _connect(pgbouncer_server, username, password) as conn:
        # THEN it runs a query, over TLS, on a server connection PgBouncer opened with TLS
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.pgconn.ssl_in_use
        who, server_port, server_ssl = conn.execute(
            "SELECT current_user, inet_server_port(), ssl FROM pg_stat_ssl "
            "WHERE pid = pg_backend_pid()").fetchone()
    assert (who, server_port, server_ssl) == (username, pg_server.port, True)
    # ... and PgBouncer logged exactly that one login
    counts = pgbouncer_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (1, 0)
    # ... it started fast, and its repr names no password
    assert pgbouncer_server.startup_seconds < 10
    assert pgbouncer_server.admin_password not in repr(pgbouncer_server)


def test_plaintext_client_is_refused(pgbouncer_server: ServerHandle,
                                     pooled_user: tuple[str, str]) -> None:
    username, password = pooled_user
    mark = pgbouncer_server.log_position()
    # WHEN a client offers no TLS
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        _connect(pgbouncer_server, username, password, sslmode="disable")
    # THEN PgBouncer refused it, and counts one failed login
    counts = pgbouncer_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (0, 1)


def test_password_change_on_postgres_applies_at_the_next_pooled_login(
        pgbouncer_server: ServerHandle, pg_server: ServerHandle, pooled_user: tuple[str, str],
        leak_scan: LeakScan) -> None:
    username, old = pooled_user
    new = "Changed-" + secrets.token_urlsafe(18)
    leak_scan.add(new)
    # GIVEN a pooled server connection already logged in with the old password
    with _connect(pgbouncer_server, username, old) as conn:
        conn.execute("SELECT 1")

    # WHEN the password changes on PostgreSQL (PgBouncer is not told)
    _set_password(pg_server, username, new)
    mark = pgbouncer_server.log_position()

    # THEN the new password logs in through the pooler, and the old one is refused
    with _connect(pgbouncer_server, username, new) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (username,)
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        _connect(pgbouncer_server, username, old)
    counts = pgbouncer_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (1, 1)
    assert new not in pg_server.log_text()


def test_superusers_are_not_looked_up(pgbouncer_server: ServerHandle) -> None:
    # The lookup function hides superusers: the sandbox admin cannot log in through the pool.
    with pytest.raises(psycopg.OperationalError, match="no such user"):
        _connect(pgbouncer_server, pgbouncer_server.admin_user, pgbouncer_server.admin_password)


_T = "2026-12-01 03:45:19.322 UTC [13761]"


@pytest.mark.parametrize(("lines", "expected"), [
    pytest.param([f"{_T} LOG C-0x5a: appdb/u@127.0.0.1:38006 login attempt: db=appdb user=u "
                  "tls=TLSv1.3/TLS_AES_256_GCM_SHA384",
                  f"{_T} LOG S-0x5b: appdb/u@127.0.0.1:43525 new connection to server "
                  "(from 127.0.0.1:36568)"], (1, 0), id="login, then its server connection"),
    pytest.param([f"{_T} LOG C-0x5a: appdb/u@127.0.0.1:38006 login attempt: db=appdb user=u "
                  "tls=TLSv1.3/TLS_AES_256_GCM_SHA384",
                  f"{_T} ERROR C-0x5a: appdb/u@127.0.0.1:38006 password authentication failed",
                  f"{_T} WARNING C-0x5a: appdb/u@127.0.0.1:38006 pooler error: SASL "
                  "authentication failed"], (0, 1), id="wrong password: one failure"),
    pytest.param([f"{_T} WARNING C-0x5a: (nodb)/(nouser)@127.0.0.1:38014 pooler error: SSL "
                  "required"], (0, 1), id="no TLS"),
    pytest.param([f"{_T} WARNING C-0x5a: (nodb)/(nouser)@127.0.0.1:38028 unsupported startup "
                  "parameter: options=-c statement_timeout=1000",
                  f"{_T} WARNING C-0x5a: (nodb)/(nouser)@127.0.0.1:38028 pooler error: "
                  "unsupported startup parameter: options"], (0, 1), id="options refused"),
    pytest.param([f"{_T} LOG C-0x5a: appdb/(nouser)@127.0.0.1:57638 login failed: db=appdb",
                  f"{_T} WARNING C-0x5a: appdb/(nouser)@127.0.0.1:57638 pooler error: no such "
                  "user"], (0, 1), id="unknown user"),
    pytest.param([f"{_T} LOG C-0x5a: appdb/u v@127.0.0.1:1 login attempt: db=appdb user=u v",
                  f"{_T} LOG C-0x5a: appdb/u v@127.0.0.1:2 login attempt: db=appdb user=u v",
                  f"{_T} WARNING C-0x5a: appdb/u v@127.0.0.1:2 pooler error: SASL "
                  "authentication failed"], (1, 1),
                 id="a reused C-0x slot: the client port tells the attempts apart"),
])
def test_pgbouncer_log_login_counting(lines: list[str], expected: tuple[int, int]) -> None:
    counts = sandbox_module._count_pgbouncer_logins("\n".join(lines) + "\n")
    assert (counts.succeeded, counts.failed) == expected


def test_missing_binary_names_the_install_script(sandbox: Sandbox, pg_server: ServerHandle,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no pgbouncer on PATH nor in the sbin directories
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sandbox_module, "_SBIN_DIRS", (str(tmp_path),))
    # WHEN a pooler is asked for (a mode not started yet, so nothing is cached)
    with pytest.raises(SandboxError) as info:
        sandbox.pgbouncer(pg_server, pool_mode="statement")
    # THEN the error names the fix
    assert "PgBouncer not found" in str(info.value)
    assert "scripts/install-db-servers.sh" in str(info.value)


# ---------------------------------------------------------------------------------------------
# (b)-(d) rotations whose secret points at PgBouncer
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def pooled_rig(server_rigs: Any, pgbouncer_server: ServerHandle,
               monkeypatch: pytest.MonkeyPatch) -> Callable[[], Rig]:
    monkeypatch.setenv("ROTATION_CA_BUNDLE", pgbouncer_server.ca_file)

    def build() -> Rig:
        rig: Rig = server_rigs.build(pgbouncer_server, "postgres", prefix="pooled")
        return rig

    return build


def _assert_no_leak(password: str, *servers: ServerHandle) -> None:
    for server in servers:
        # pytest.fail, not assert: assertion rewriting would print the log, password included
        if password in server.log_text():
            pytest.fail(f"the new password is in the {server.engine} log", pytrace=False)


def test_single_user_rotation_through_the_pooler(
        pooled_rig: Callable[[], Rig], pgbouncer_server: ServerHandle, pg_server: ServerHandle,
        log_capture: LogCapture) -> None:
    # GIVEN a secret whose host and port are PgBouncer's
    rig = pooled_rig()
    old = rig.value("AWSCURRENT")
    assert (old["host"], old["port"]) == (pgbouncer_server.host, pgbouncer_server.port)
    mark = pgbouncer_server.log_position()

    # WHEN Secrets Manager rotates it
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN it succeeded with two logins through the pooler and no failed one
    assert report.succeeded, report.steps
    counts = pgbouncer_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (2, 0)
    # ... AWSCURRENT logs in through the pooler, the old password does not
    new = rig.value("AWSCURRENT")
    assert new["password"] != old["password"]
    assert pg_can_login(pgbouncer_server, new["username"], new["password"])
    assert not pg_can_login(pgbouncer_server, old["username"], old["password"])
    # ... and neither PostgreSQL nor PgBouncer ever saw the plaintext
    _assert_no_leak(new["password"], pg_server, pgbouncer_server)
    assert new["password"] not in log_capture.text


def test_alternating_users_through_the_pooler(
        sm: Any, pgbouncer_server: ServerHandle, pg_server: ServerHandle,
        monkeypatch: pytest.MonkeyPatch, leak_scan: LeakScan) -> None:
    monkeypatch.setenv("ROTATION_CA_BUNDLE", pgbouncer_server.ca_file)
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    # GIVEN a user and a master user (CREATEROLE), both secrets pointing at PgBouncer
    suffix = uuid.uuid4().hex[:8]
    master, master_pw = f"pmaster_{suffix}", "Master-" + secrets.token_urlsafe(16)
    user, user_pw = f"palt_{suffix}", "Init-" + secrets.token_urlsafe(16)
    leak_scan.add(master_pw, user_pw)
    clone = get_adapter("postgres").clone_username(user)
    pgbouncer_server.create_login_user(master, master_pw, can_create_roles=True)
    pgbouncer_server.create_login_user(user, user_pw)
    try:
        base = {"engine": "postgres", "host": pgbouncer_server.host,
                "port": pgbouncer_server.port, "dbname": pgbouncer_server.dbname}
        master_arn = sm.create_secret(Name=master, SecretString=json.dumps(
            {**base, "username": master, "password": master_pw}))["ARN"]
        arn = sm.create_secret(Name=f"{user}-secret", SecretString=json.dumps(
            {**base, "username": user, "password": user_pw, "masterarn": master_arn}))["ARN"]
        service = LocalRotationService(sm)
        service.enable_rotation(arn)
        rig = Rig(sm, service, arn, pgbouncer_server, ApiCallCounter())

        users = []
        for _ in range(3):
            # WHEN it rotates
            mark = pgbouncer_server.log_position()
            report = rig.service.rotate(rig.arn, rig.invoke)
            # THEN the master and the pending user logged in through the pooler, none failed
            assert report.succeeded, report.steps
            counts = pgbouncer_server.login_counts(mark)
            assert (counts.succeeded, counts.failed) == (2, 0)
            current, previous = rig.value("AWSCURRENT"), rig.value("AWSPREVIOUS")
            users.append(current["username"])
            # ... the new credential logs in through the pooler, and the previous one still does
            assert pg_can_login(pgbouncer_server, current["username"], current["password"])
            assert pg_can_login(pgbouncer_server, previous["username"], previous["password"])
            _assert_no_leak(current["password"], pg_server, pgbouncer_server)
        assert users == [clone, user, clone]
    finally:
        for name in (clone, user, master):
            pgbouncer_server.drop_user(name)


def test_back_to_back_rotations_through_the_pooler(
        pooled_rig: Callable[[], Rig], pgbouncer_server: ServerHandle,
        pg_server: ServerHandle) -> None:
    # GIVEN a secret behind the pooler, rotated once (PgBouncer keeps that user's server
    # connection, logged in with the first password, in its pool)
    rig = pooled_rig()
    passwords = [rig.value("AWSCURRENT")["password"]]
    assert rig.service.rotate(rig.arn, rig.invoke).succeeded
    passwords.append(rig.value("AWSCURRENT")["password"])

    # WHEN it is rotated again at once
    mark = pgbouncer_server.log_position()
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN the second rotation logs in with the first rotation's password, and succeeds
    assert report.succeeded, report.steps
    counts = pgbouncer_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (2, 0)
    current = rig.value("AWSCURRENT")
    assert current["password"] not in passwords
    # ... only the newest password logs in through the pooler
    assert pg_can_login(pgbouncer_server, current["username"], current["password"])
    for stale in passwords:
        assert not pg_can_login(pgbouncer_server, current["username"], stale)
    _assert_no_leak(current["password"], pg_server, pgbouncer_server)
