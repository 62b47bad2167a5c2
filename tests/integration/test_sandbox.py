"""The throwaway servers themselves: TLS, secure auth, exact login counts, clean shutdown."""

from __future__ import annotations

import hashlib
import os
import ssl
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from rotation.tools.sandbox import LoginCounts, Sandbox, ServerHandle

pytestmark = pytest.mark.integration

ENGINES = ["pg_server", "mariadb_server"]


@pytest.fixture(params=ENGINES)
def server(request: pytest.FixtureRequest) -> ServerHandle:
    """Each TLS server in turn."""
    handle: ServerHandle = request.getfixturevalue(request.param)
    return handle


def unique(prefix: str = "u") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def tls_connect(server: ServerHandle, user: str, password: str) -> Any:
    """A login as ``user`` with full TLS verification (CA + hostname 127.0.0.1)."""
    if server.engine == "postgres":
        return psycopg.connect(
            host=server.host, port=server.port, user=user, password=password,
            dbname=server.dbname, sslmode="verify-full", sslrootcert=server.ca_file,
            gssencmode="disable", connect_timeout=10)
    context = ssl.create_default_context(cafile=server.ca_file)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    return pymysql.connect(host=server.host, port=server.port, user=user, password=password,
                           database=server.dbname, ssl=context, connect_timeout=10)


def login(server: ServerHandle, user: str, password: str) -> None:
    """One verified TLS login, closed at once."""
    tls_connect(server, user, password).close()


def current_user(server: ServerHandle, user: str, password: str) -> str:
    conn = tls_connect(server, user, password)
    try:
        cursor = conn.cursor()
        if server.engine == "postgres":
            cursor.execute("SELECT current_user")
        else:
            cursor.execute("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
        row = cursor.fetchone()
        cursor.close()
    finally:
        conn.close()
    assert row is not None
    return str(row[0])


def failed_login_error(server: ServerHandle) -> type[Exception]:
    return psycopg.OperationalError if server.engine == "postgres" else pymysql.err.OperationalError


def process_running(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        return stat.read_text().rpartition(")")[2].split()[0] != "Z"
    return True


# --------------------------------------------------------------------------------------------
# Logins over verified TLS; plaintext refused
# --------------------------------------------------------------------------------------------


def test_created_user_logs_in_over_verified_tls(server: ServerHandle) -> None:
    # GIVEN a user created through the handle
    user, password = unique(), "Pw-" + uuid.uuid4().hex
    server.create_login_user(user, password)
    # WHEN it logs in with full verification (CA file, host 127.0.0.1 matched by the IP SAN)
    name = current_user(server, user, password)
    # THEN the server sees that user
    assert name == user
    server.drop_user(user)


def test_postgres_session_is_encrypted(pg_server: ServerHandle) -> None:
    # GIVEN a verified TLS connection as the admin
    with pg_server.admin_connect() as conn:
        # WHEN we ask the server about our own backend
        row = conn.execute(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    # THEN the server agrees the session uses TLS
    assert row == (True,)


def test_mariadb_session_is_encrypted(mariadb_server: ServerHandle) -> None:
    # GIVEN a verified TLS connection as the admin
    conn = mariadb_server.admin_connect()
    try:
        with conn.cursor() as cursor:
            # WHEN we ask for the session's cipher and the server's transport policy
            cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            cipher = cursor.fetchone()
            cursor.execute("SELECT @@require_secure_transport")
            required = cursor.fetchone()
    finally:
        conn.close()
    # THEN a cipher is in use and plaintext is not allowed
    assert cipher is not None
    assert cipher[1]
    assert required == (1,)


def test_postgres_refuses_plaintext(pg_server: ServerHandle) -> None:
    # GIVEN the admin's correct password
    # WHEN a client connects without TLS
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(host=pg_server.host, port=pg_server.port, user=pg_server.admin_user,
                        password=pg_server.admin_password, dbname=pg_server.dbname,
                        sslmode="disable", gssencmode="disable", connect_timeout=10)
    # THEN it is refused (hostssl-only pg_hba.conf)


def test_mariadb_refuses_plaintext(mariadb_server: ServerHandle) -> None:
    # GIVEN the admin's correct password
    # WHEN a client connects with TLS switched off
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql.connect(host=mariadb_server.host, port=mariadb_server.port,
                        user=mariadb_server.admin_user, password=mariadb_server.admin_password,
                        ssl_disabled=True, connect_timeout=10)
    # THEN require_secure_transport refuses it (MariaDB answers "Access denied", 1045)
    assert caught.value.args[0] == 1045


def test_tls_server_certificate_does_not_match_other_names(pg_server: ServerHandle) -> None:
    # GIVEN the server certificate, issued for localhost and 127.0.0.1 only
    # WHEN a client verifies it under another name (hostaddr keeps the real address)
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(host="db.example.invalid", hostaddr=pg_server.host, port=pg_server.port,
                        user=pg_server.admin_user, password=pg_server.admin_password,
                        dbname=pg_server.dbname, sslmode="verify-full",
                        sslrootcert=pg_server.ca_file, gssencmode="disable", connect_timeout=10)
    # THEN verification fails: the IP SAN is what makes 127.0.0.1 work, not a lax check


def test_server_without_tls_makes_verifying_clients_fail_closed(
        pg_server_notls: ServerHandle) -> None:
    # GIVEN the server started with ssl=off (its admin can still log in without TLS)
    with pg_server_notls.admin_connect() as conn:
        assert conn.execute("SHOW ssl").fetchone() == ("off",)
    # WHEN a client insists on verified TLS
    # THEN it refuses to log in instead of falling back to plaintext
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        psycopg.connect(host=pg_server_notls.host, port=pg_server_notls.port,
                        user=pg_server_notls.admin_user,
                        password=pg_server_notls.admin_password, dbname=pg_server_notls.dbname,
                        sslmode="verify-full", sslrootcert=pg_server_notls.ca_file,
                        gssencmode="disable", connect_timeout=10)


# --------------------------------------------------------------------------------------------
# Secure password storage, no plaintext in logs
# --------------------------------------------------------------------------------------------


def test_postgres_stores_a_scram_verifier(pg_server: ServerHandle) -> None:
    # GIVEN a user created with a plaintext password
    user, password = unique(), "Pw-" + uuid.uuid4().hex
    pg_server.create_login_user(user, password)
    # WHEN we read what the server stored
    with pg_server.admin_connect() as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                           (user,)).fetchone()
        admin_row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                 (pg_server.admin_user,)).fetchone()
    # THEN it is a SCRAM-SHA-256 verifier, for the admin too
    assert row is not None
    assert row[0].startswith("SCRAM-SHA-256$")
    assert admin_row is not None
    assert admin_row[0].startswith("SCRAM-SHA-256$")
    pg_server.drop_user(user)


def test_mariadb_stores_a_native_password_hash(mariadb_server: ServerHandle) -> None:
    # GIVEN a user created with a plaintext password
    user, password = unique(), "Pw-" + uuid.uuid4().hex
    mariadb_server.create_login_user(user, password)
    # WHEN we read the stored authentication string
    conn = mariadb_server.admin_connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT JSON_VALUE(Priv, '$.plugin'), "
                           "JSON_VALUE(Priv, '$.authentication_string') "
                           "FROM mysql.global_priv WHERE User = %s AND Host = '%%'", (user,))
            row = cursor.fetchone()
    finally:
        conn.close()
    # THEN it is the mysql_native_password hash: "*" + HEX(SHA1(SHA1(password)))
    inner = hashlib.sha1(password.encode(), usedforsecurity=False).digest()
    expected = "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()
    assert row == ("mysql_native_password", expected)
    mariadb_server.drop_user(user)


def test_password_never_reaches_the_log(server: ServerHandle) -> None:
    # GIVEN a user created with a distinctive password, who then logs in and works
    user, password = unique(), "Leak-" + uuid.uuid4().hex
    server.create_login_user(user, password)
    assert current_user(server, user, password) == user
    server.drop_user(user)
    # WHEN we read the whole log (statements are logged: log_statement=all / general_log)
    text = server.log_text()
    # THEN the statements are there, the plaintext is not (nor the admin's)
    assert user in text
    assert password not in text
    assert server.admin_password not in text


def test_admin_password_is_not_in_repr(server: ServerHandle) -> None:
    # GIVEN a running server WHEN it is printed THEN its admin password is not shown
    assert server.admin_password not in repr(server)
    assert str(server.port) in repr(server)


# --------------------------------------------------------------------------------------------
# Exact login counts
# --------------------------------------------------------------------------------------------


def test_one_good_login_counts_one_success(server: ServerHandle) -> None:
    # GIVEN a user and a mark in the log
    user, password = unique(), "Pw-" + uuid.uuid4().hex
    server.create_login_user(user, password)
    mark = server.log_position()
    # WHEN it logs in once
    login(server, user, password)
    # THEN exactly one successful login is counted
    assert server.login_counts(since=mark) == LoginCounts(succeeded=1, failed=0)
    server.drop_user(user)


def test_one_bad_password_counts_one_failure(server: ServerHandle) -> None:
    # GIVEN a user and a mark in the log
    user, password = unique(), "Pw-" + uuid.uuid4().hex
    server.create_login_user(user, password)
    mark = server.log_position()
    # WHEN it tries once with a wrong password
    with pytest.raises(failed_login_error(server)):
        login(server, user, password + "-wrong")
    # THEN exactly one failed login is counted, and no success
    assert server.login_counts(since=mark) == LoginCounts(succeeded=0, failed=1)
    server.drop_user(user)


def test_mixed_logins_are_counted_exactly(server: ServerHandle) -> None:
    # GIVEN a user and a mark in the log
    user, password = unique(), "Pw-" + uuid.uuid4().hex
    server.create_login_user(user, password)
    mark = server.log_position()
    # WHEN it logs in twice, fails twice, and an unknown user fails once
    login(server, user, password)
    for wrong in ("x-wrong", "y-wrong"):
        with pytest.raises(failed_login_error(server)):
            login(server, user, wrong)
    with pytest.raises(failed_login_error(server)):
        login(server, unique("nobody"), password)
    login(server, user, password)
    # THEN the counts are exact
    assert server.login_counts(since=mark) == LoginCounts(succeeded=2, failed=3)
    server.drop_user(user)


def test_admin_logins_count_like_any_other(server: ServerHandle) -> None:
    # GIVEN a mark in the log
    mark = server.log_position()
    # WHEN the handle's admin connection is opened once
    server.admin_connect().close()
    # THEN it is one successful login (callers mark the log after their own setup)
    assert server.login_counts(since=mark) == LoginCounts(succeeded=1, failed=0)


@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
def test_fresh_server_log_shows_only_the_readiness_login(engine: str) -> None:
    # GIVEN a freshly started server
    with Sandbox() as fresh:
        handle = fresh.postgres() if engine == "postgres" else fresh.mariadb()
        # WHEN we count logins over its whole log
        counts = handle.login_counts()
    # THEN start-up made exactly one login: the admin's TLS readiness check, no failures
    assert counts == LoginCounts(succeeded=1, failed=0)


def test_plaintext_attempt_counts_as_failed(pg_server: ServerHandle,
                                            mariadb_server: ServerHandle) -> None:
    # GIVEN marks in both logs
    pg_mark, my_mark = pg_server.log_position(), mariadb_server.log_position()
    # WHEN the admin tries once without TLS on each server
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=pg_server.host, port=pg_server.port, user=pg_server.admin_user,
                        password=pg_server.admin_password, dbname=pg_server.dbname,
                        sslmode="disable", gssencmode="disable", connect_timeout=10)
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host=mariadb_server.host, port=mariadb_server.port,
                        user=mariadb_server.admin_user,
                        password=mariadb_server.admin_password, ssl_disabled=True)
    # THEN each counts one failed login
    assert pg_server.login_counts(since=pg_mark) == LoginCounts(succeeded=0, failed=1)
    assert mariadb_server.login_counts(since=my_mark) == LoginCounts(succeeded=0, failed=1)


def test_libpq_sslmode_prefer_retries_a_refused_login(pg_server: ServerHandle) -> None:
    # GIVEN a mark in the log
    mark = pg_server.log_position()
    # WHEN a client with sslmode=prefer (libpq's default) uses a wrong password
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=pg_server.host, port=pg_server.port, user=pg_server.admin_user,
                        password="wrong-password", dbname=pg_server.dbname, sslmode="prefer",
                        gssencmode="disable", connect_timeout=10)
    # THEN the server saw two failed logins: over TLS, then libpq's plaintext retry
    assert pg_server.login_counts(since=mark) == LoginCounts(succeeded=0, failed=2)


def test_mariadb_unknown_database_counts_as_failed(mariadb_server: ServerHandle) -> None:
    # GIVEN a user with access to appdb only, and a mark in the log
    user, password = unique(), "Pw-" + uuid.uuid4().hex
    mariadb_server.create_login_user(user, password)
    mark = mariadb_server.log_position()
    context = ssl.create_default_context(cafile=mariadb_server.ca_file)
    # WHEN it logs in with the right password to a database it may not use
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql.connect(host=mariadb_server.host, port=mariadb_server.port, user=user,
                        password=password, database="mysql", ssl=context)
    # THEN that is one failed login (logged as "Init DB  Access denied"), not a success
    assert caught.value.args[0] == 1044
    assert mariadb_server.login_counts(since=mark) == LoginCounts(succeeded=0, failed=1)
    mariadb_server.drop_user(user)


# --------------------------------------------------------------------------------------------
# Hostile user names, privileges, drop
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "we\"ird'; DROP",
    "robert'); DROP TABLE students;--",
    "back\\slash\\'",
    "pct%_wild*",
    "ünïcødé-名前",
])
def test_hostile_usernames_are_quoted(server: ServerHandle, name: str) -> None:
    # GIVEN a user name full of quotes, semicolons, wildcards or non-ASCII letters
    user = f"{name}-{uuid.uuid4().hex[:6]}"
    password = "Pw-" + uuid.uuid4().hex
    # WHEN the handle creates it
    server.create_login_user(user, password)
    # THEN exactly that user can log in
    assert current_user(server, user, password) == user
    # AND drop_user removes it again (a second drop is a no-op)
    server.drop_user(user)
    server.drop_user(user)
    with pytest.raises(failed_login_error(server)):
        login(server, user, password)


def test_can_create_roles_lets_the_user_manage_users(server: ServerHandle) -> None:
    # GIVEN a user created with can_create_roles=True
    user, password = unique("mgr"), "Pw-" + uuid.uuid4().hex
    other = unique("clone")
    server.create_login_user(user, password, can_create_roles=True)
    # WHEN it creates another user itself
    conn = tls_connect(server, user, password)
    try:
        cursor = conn.cursor()
        if server.engine == "postgres":
            cursor.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(
                psycopg.sql.Identifier(other)))
            conn.commit()
        else:
            cursor.execute("CREATE USER %s@'%%'", (other,))
        cursor.close()
    finally:
        conn.close()
    # THEN that worked, and both can be dropped
    server.drop_user(other)
    server.drop_user(user)


def test_plain_user_cannot_create_roles(server: ServerHandle) -> None:
    # GIVEN a user created without can_create_roles
    user, password = unique(), "Pw-" + uuid.uuid4().hex
    server.create_login_user(user, password)
    conn = tls_connect(server, user, password)
    # WHEN it tries to create a user THEN the server refuses
    try:
        cursor = conn.cursor()
        if server.engine == "postgres":
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                cursor.execute(psycopg.sql.SQL("CREATE ROLE {}").format(
                    psycopg.sql.Identifier(unique())))
        else:
            with pytest.raises(pymysql.err.OperationalError):
                cursor.execute("CREATE USER %s@'%%'", (unique(),))
        cursor.close()
    finally:
        conn.close()
    server.drop_user(user)


# --------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------


def test_close_stops_every_server_and_removes_the_directory() -> None:
    # GIVEN a sandbox of its own with all three kinds of server running
    sandbox = Sandbox()
    handles = [sandbox.postgres(), sandbox.postgres(tls=False), sandbox.mariadb()]
    assert sandbox.postgres() is handles[0]  # cached
    pids = [handle.pid for handle in handles]
    assert all(process_running(pid) for pid in pids)
    # WHEN it is closed (twice: close is idempotent)
    sandbox.close()
    sandbox.close()
    # THEN no server process is left and the directory is gone
    assert [pid for pid in pids if process_running(pid)] == []
    assert not any(handle.running for handle in handles)
    assert not sandbox.root.exists()


def test_stopped_server_is_restarted_on_next_use() -> None:
    # GIVEN a sandbox whose PostgreSQL server was stopped through its handle
    with Sandbox() as sandbox:
        first = sandbox.postgres()
        first.stop()
        first.stop()  # idempotent
        assert not first.running
        # WHEN the server is asked for again
        second = sandbox.postgres()
        # THEN a new one runs, on its own port and directory
        assert second.running
        assert second is not first
        second.admin_connect().close()


def test_startup_is_fast(pg_server: ServerHandle, mariadb_server: ServerHandle) -> None:
    # GIVEN servers started by this session
    # WHEN we look at their start-up time (initialisation to first admin TLS login)
    # THEN each took a few seconds at most
    assert 0 < pg_server.startup_seconds < 15
    assert 0 < mariadb_server.startup_seconds < 15
