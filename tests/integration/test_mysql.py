"""The MySQL adapter against a real, throwaway MariaDB (TLS, require_secure_transport=ON, general
log on), plus scripted fake servers for what MariaDB cannot show (no TLS offered, a certificate
for another host name, a server that never answers)."""

from __future__ import annotations

import importlib.util
import socket
import ssl
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
import trustme

from rotation.adapters.base import AdapterOptions
from rotation.adapters.mysql import (
    Account,
    MySQLAdapter,
    MySQLSession,
    ed25519_password_hash,
    native_password_hash,
    rewrite_grants,
)
from rotation.credentials import DbCredentials, credentials_from_dict
from rotation.errors import (
    ConfigError,
    ConnectError,
    DatabaseError,
    DbTimeoutError,
    LoginError,
    PasswordRefusedError,
    PrivilegeError,
    TlsError,
)
from tests.conftest import LeakScan

pytestmark = pytest.mark.integration

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:test"


def new_password() -> str:
    return "Pw-" + uuid.uuid4().hex


def unique(prefix: str = "my") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def credentials(server: Any, username: str, password: str, **extra: Any) -> DbCredentials:
    value = {"engine": "mariadb", "host": server.host, "port": server.port,
             "username": username, "password": password, "dbname": server.dbname, **extra}
    return credentials_from_dict(value, ARN)


def admin_sql(server: Any, sql: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    conn = server.admin_connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())
    finally:
        conn.close()


def can_login(server: Any, username: str, password: str) -> bool:
    context = ssl.create_default_context(cafile=server.ca_file)
    try:
        pymysql.connect(host=server.host, port=server.port, user=username,
                        password=password.encode(), ssl=context, connect_timeout=5).close()
    except pymysql.err.OperationalError:
        return False
    return True


def run_as(server: Any, username: str, password: str, sql: str) -> int | None:
    """Run ``sql`` as ``username``; None on success, else the MySQL error number."""
    context = ssl.create_default_context(cafile=server.ca_file)
    conn = pymysql.connect(host=server.host, port=server.port, user=username,
                           password=password.encode(), ssl=context, connect_timeout=5,
                           autocommit=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    except pymysql.err.MySQLError as exc:
        return int(exc.args[0])
    finally:
        conn.close()
    return None


def grants(server: Any, account: Account) -> list[str]:
    rows = admin_sql(server, "SHOW GRANTS FOR %s@%s", (account.user, account.host))
    return [str(row[0]) for row in rows]


@pytest.fixture
def adapter(mariadb_server: Any) -> MySQLAdapter:
    return MySQLAdapter(AdapterOptions(ca_bundle=mariadb_server.ca_file))


@pytest.fixture
def users(mariadb_server: Any, leak_scan: LeakScan) -> Iterator[Callable[..., tuple[str, str]]]:
    """Makes login users (SELECT on appdb) and drops them, and their clones, afterwards."""
    created: list[str] = []

    def make(name: str | None = None) -> tuple[str, str]:
        username = name or unique()
        password = new_password()
        leak_scan.add(password)
        mariadb_server.create_login_user(username, password)
        created.extend([username, username + "_clone"])
        return username, password

    yield make
    for username in created:
        admin_sql(mariadb_server, "DROP USER IF EXISTS %s@'%%', %s@'127.0.0.1'",
                  (username, username))


@pytest.fixture
def admin(mariadb_server: Any, adapter: MySQLAdapter) -> Iterator[MySQLSession]:
    session = adapter.connect(credentials(mariadb_server, mariadb_server.admin_user,
                                          mariadb_server.admin_password))
    with session:
        yield session


def test_a_step_of_several_statements_ends_by_the_invocation_deadline(
        mariadb_server: Any, users: Callable[..., tuple[str, str]]) -> None:
    # GIVEN a live but slow server (each statement takes 0.8 s, under the 1 s statement
    # timeout) and an invocation whose database work must be over 2 s from now
    import time

    from rotation.adapters.base import DEADLINE
    from rotation.adapters.mysql.server import Statement

    adapter = MySQLAdapter(AdapterOptions(ca_bundle=mariadb_server.ca_file,
                                          statement_timeout=1.0))
    with adapter.connect(credentials(mariadb_server, *users())) as session:
        token = DEADLINE.set(time.monotonic() + 2.0)
        started = time.monotonic()

        def slow_step() -> None:
            for _ in range(5):
                session._run(Statement("SELECT SLEEP(0.8)", action="wait"))

        try:
            # WHEN the step runs one slow statement after another
            with pytest.raises(DbTimeoutError):
                slow_step()
        finally:
            DEADLINE.reset(token)
        elapsed = time.monotonic() - started

    # THEN the statement that would outlast the deadline is cut short (before: 5 x 0.8 s)
    assert elapsed < 2.6, elapsed


# --------------------------------------------------------------------------------------------
# Login and TLS
# --------------------------------------------------------------------------------------------

def test_verify_full_login_works_over_tls(mariadb_server: Any, adapter: MySQLAdapter,
                                          users: Callable[..., tuple[str, str]]) -> None:
    # GIVEN a user and the CA that signed the server's certificate
    username, password = users()
    mark = mariadb_server.log_position()
    # WHEN the adapter logs in (verify-full, the default) and runs a query
    with adapter.connect(credentials(mariadb_server, username, password)) as session:
        session.ping()
        server = session.server
    # THEN it was exactly one successful login, over TLS, to a server known as MariaDB
    counts = mariadb_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (1, 0)
    assert f"{username}@127.0.0.1 on {mariadb_server.dbname} using SSL/TLS" in \
        mariadb_server.log_text()
    assert server.is_mariadb
    assert server.version >= (10, 0, 0)


@pytest.mark.parametrize("sslmode", ["verify-ca", "require"])
def test_weaker_sslmodes_still_encrypt(mariadb_server: Any, adapter: MySQLAdapter,
                                       users: Callable[..., tuple[str, str]],
                                       sslmode: str) -> None:
    username, password = users()
    with adapter.connect(credentials(mariadb_server, username, password,
                                     sslmode=sslmode)) as session:
        session.ping()
    assert f"{username}@127.0.0.1 on {mariadb_server.dbname} using SSL/TLS" in \
        mariadb_server.log_text()


def test_wrong_ca_is_a_tls_error_before_any_login(mariadb_server: Any,
                                                  users: Callable[..., tuple[str, str]],
                                                  tmp_path: Any, leak_scan: LeakScan) -> None:
    # GIVEN a CA bundle from another authority
    username, password = users()
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    adapter = MySQLAdapter(AdapterOptions(ca_bundle=str(other_ca)))
    mark = mariadb_server.log_position()
    # WHEN the adapter connects
    with pytest.raises(TlsError) as info:
        adapter.connect(credentials(mariadb_server, username, password))
    leak_scan.add_text(str(info.value))
    # THEN the error says what to do, and no login happened at all
    assert "ROTATION_CA_BUNDLE" in str(info.value)
    assert "certificate" in str(info.value)
    assert info.value.__context__ is None
    assert mariadb_server.login_counts(mark).succeeded == 0


def test_disabled_tls_against_require_secure_transport(mariadb_server: Any,
                                                       adapter: MySQLAdapter,
                                                       users: Callable[..., tuple[str, str]],
                                                       leak_scan: LeakScan) -> None:
    # GIVEN a secret that opts out of TLS, and a server that requires it
    username, password = users()
    mark = mariadb_server.log_position()
    # WHEN the adapter connects
    with pytest.raises(DatabaseError) as info:
        adapter.connect(credentials(mariadb_server, username, password, ssl=False))
    leak_scan.add_text(str(info.value))
    # THEN the login is refused, and the error points at TLS (MariaDB 10.11 answers "access
    # denied"; MySQL and MariaDB 11.4+ answer 3159, mapped to TlsError), and it is no password
    # refusal: the password is right, so setSecret must not go on to try other versions'
    assert isinstance(info.value, LoginError | TlsError)
    assert not isinstance(info.value, PasswordRefusedError)
    assert "TLS" in str(info.value)
    assert "require_secure_transport" in str(info.value)
    assert password not in str(info.value)
    assert mariadb_server.login_counts(mark).succeeded == 0


def test_wrong_password_is_a_login_error_without_the_password(
        mariadb_server: Any, adapter: MySQLAdapter, users: Callable[..., tuple[str, str]],
        leak_scan: LeakScan) -> None:
    # GIVEN a wrong password
    username, _ = users()
    wrong = new_password()
    leak_scan.add(wrong)
    mark = mariadb_server.log_position()
    # WHEN the adapter logs in with it
    with pytest.raises(LoginError) as info:
        adapter.connect(credentials(mariadb_server, username, wrong))
    leak_scan.add_text(str(info.value) + repr(info.value))
    # THEN one failed login, a password refusal (the one refusal worth another version's
    # password), and the error names user and host but not the password
    counts = mariadb_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (0, 1)
    assert isinstance(info.value, PasswordRefusedError)
    assert repr(username) in str(info.value)
    assert f"{mariadb_server.host}:{mariadb_server.port}" in str(info.value)
    assert wrong not in str(info.value)
    assert info.value.sqlstate == "1045"
    assert info.value.__context__ is None


def test_a_locked_account_is_no_password_refusal(mariadb_server: Any, adapter: MySQLAdapter,
                                                 users: Callable[..., tuple[str, str]],
                                                 leak_scan: LeakScan) -> None:
    # GIVEN a locked account, and its right password
    username, password = users()
    admin_sql(mariadb_server, "ALTER USER %s@'%%' ACCOUNT LOCK", (username,))
    # WHEN the adapter logs in
    with pytest.raises(LoginError) as info:
        adapter.connect(credentials(mariadb_server, username, password))
    leak_scan.add_text(str(info.value))
    # THEN it is a LoginError that says "locked", not a password refusal: no other version's
    # password would get in, and each try counts towards lock-outs
    assert not isinstance(info.value, PasswordRefusedError)
    assert info.value.sqlstate == "4151"
    assert "is locked" in str(info.value)
    assert "ACCOUNT UNLOCK" in str(info.value)


def test_an_account_blocked_by_wrong_passwords_is_no_password_refusal(
        mariadb_server: Any, adapter: MySQLAdapter, users: Callable[..., tuple[str, str]],
        leak_scan: LeakScan) -> None:
    # GIVEN MariaDB blocking an account after 2 wrong passwords (max_password_errors)
    username, password = users()
    wrong = new_password()
    leak_scan.add(wrong)
    admin_sql(mariadb_server, "SET GLOBAL max_password_errors = 2")
    try:
        refusals = []
        for _ in range(2):
            with pytest.raises(LoginError) as info:
                adapter.connect(credentials(mariadb_server, username, wrong))
            refusals.append(info.value)
        # WHEN the right password is tried next
        with pytest.raises(LoginError) as info:
            adapter.connect(credentials(mariadb_server, username, password))
    finally:
        admin_sql(mariadb_server, "SET GLOBAL max_password_errors = DEFAULT")
        admin_sql(mariadb_server, "FLUSH PRIVILEGES")  # unblocks
    # THEN the wrong passwords were password refusals, the block is not
    assert all(isinstance(error, PasswordRefusedError) for error in refusals)
    assert not isinstance(info.value, PasswordRefusedError)
    assert info.value.sqlstate == "4150"
    assert "blocked after too many failed logins" in str(info.value)
    assert can_login(mariadb_server, username, password)


def test_a_wrong_password_on_a_unix_socket_chain_is_a_password_refusal(
        mariadb_server: Any, adapter: MySQLAdapter, users: Callable[..., tuple[str, str]],
        leak_scan: LeakScan) -> None:
    # GIVEN an account whose plugin chain ends in unix_socket: MariaDB answers a wrong password
    # with 1698, not 1045
    username, password = users()
    admin_sql(mariadb_server, "ALTER USER %s@'%%' IDENTIFIED VIA mysql_native_password USING "
                              "%s OR unix_socket", (username, native_password_hash(password)))
    wrong = new_password()
    leak_scan.add(wrong)
    # WHEN the adapter logs in with a wrong password
    with pytest.raises(LoginError) as info:
        adapter.connect(credentials(mariadb_server, username, wrong))
    # THEN it is a password refusal (a retried setSecret must still find the password it set)
    assert isinstance(info.value, PasswordRefusedError)
    assert info.value.sqlstate == "1698"
    # ... and the right one logs in
    adapter.connect(credentials(mariadb_server, username, password)).close()


# --------------------------------------------------------------------------------------------
# set_password
# --------------------------------------------------------------------------------------------

def test_single_user_sets_its_own_password(mariadb_server: Any, adapter: MySQLAdapter,
                                           users: Callable[..., tuple[str, str]],
                                           leak_scan: LeakScan) -> None:
    # GIVEN a user logged in as itself
    username, old = users()
    new = new_password()
    leak_scan.add(new)
    # WHEN it sets a new password, twice (a retried setSecret)
    with adapter.connect(credentials(mariadb_server, username, old)) as session:
        session.set_password(username, new)
        session.set_password(username, new)
    # THEN the new password logs in and the old one does not
    assert can_login(mariadb_server, username, new)
    assert not can_login(mariadb_server, username, old)
    # ... the server stored the client-side hash and never saw the plaintext
    stored = admin_sql(mariadb_server, "SELECT authentication_string FROM mysql.user "
                                       "WHERE User = %s", (username,))
    assert stored == [(native_password_hash(new),)]
    assert new not in mariadb_server.log_text()


def test_master_sets_every_host_of_another_user(mariadb_server: Any, admin: MySQLSession,
                                                users: Callable[..., tuple[str, str]],
                                                leak_scan: LeakScan) -> None:
    # GIVEN a user with two accounts: 'u'@'%' and 'u'@'127.0.0.1'
    username, old = users()
    admin_sql(mariadb_server, "CREATE USER %s@'127.0.0.1' IDENTIFIED BY PASSWORD %s",
              (username, native_password_hash(old)))
    new = new_password()
    leak_scan.add(new)
    # WHEN the master sets its password
    admin.set_password(username, new)
    # THEN both accounts have it
    rows = admin_sql(mariadb_server, "SELECT Host, authentication_string FROM mysql.user "
                                     "WHERE User = %s ORDER BY Host", (username,))
    assert rows == [("%", native_password_hash(new)), ("127.0.0.1", native_password_hash(new))]
    assert can_login(mariadb_server, username, new)
    assert new not in mariadb_server.log_text()


@pytest.mark.parametrize("name", [
    "o'brien",
    'dq"uote',
    "back\\slash",
    "pct%_under",
    "semi;colon -- x",
    "tick`name",
    "ünïcødé",
    "a@b",
    "{0}{1}",
])
def test_hostile_usernames(mariadb_server: Any, adapter: MySQLAdapter, admin: MySQLSession,
                           users: Callable[..., tuple[str, str]], leak_scan: LeakScan,
                           name: str) -> None:
    # GIVEN a user whose name is full of quoting traps
    username, old = users(name)
    new, clone_pw = new_password(), new_password()
    leak_scan.add(new, clone_pw)
    # WHEN it sets its own password, and the master syncs a clone of it
    with adapter.connect(credentials(mariadb_server, username, old)) as session:
        session.set_password(username, new)
    admin.sync_clone(username, username + "_clone", clone_pw)
    # THEN exactly that user changed, and the clone exists with the same grants
    assert can_login(mariadb_server, username, new)
    assert can_login(mariadb_server, username + "_clone", clone_pw)
    source, clone = Account(username, "%"), Account(username + "_clone", "%")
    assert sorted(rewrite_grants(grants(mariadb_server, source), source, clone)) == \
        sorted(rewrite_grants(grants(mariadb_server, clone), clone, clone))


def test_dual_password_on_mariadb_is_a_clear_error(mariadb_server: Any,
                                                   users: Callable[..., tuple[str, str]],
                                                   leak_scan: LeakScan) -> None:
    # GIVEN a MariaDB server behind `"engine": "mysql"` (the strategy's first check passes)
    username, old = users()
    new = new_password()
    leak_scan.add(new)
    adapter = MySQLAdapter(AdapterOptions(ca_bundle=mariadb_server.ca_file))
    assert adapter.supports_dual_password("mysql")
    # WHEN setSecret adds a second password
    with adapter.connect(credentials(mariadb_server, username, old, engine="mysql")) as session, \
            pytest.raises(ConfigError) as info:
        session.add_password(username, new, old)
    # THEN the error says MariaDB has none and what to use, and nothing changed
    assert "MariaDB has no dual passwords" in str(info.value)
    assert "ROTATION_STRATEGY=alternating-users" in str(info.value)
    assert can_login(mariadb_server, username, old)
    assert not can_login(mariadb_server, username, new)


def test_discard_old_password_is_a_no_op_without_dual_passwords(
        mariadb_server: Any, adapter: MySQLAdapter,
        users: Callable[..., tuple[str, str]]) -> None:
    username, password = users()
    with adapter.connect(credentials(mariadb_server, username, password)) as session:
        session.discard_old_password(username)
    assert can_login(mariadb_server, username, password)


def test_ed25519_accounts_get_a_client_side_hash(mariadb_server: Any, admin: MySQLSession,
                                                 adapter: MySQLAdapter,
                                                 users: Callable[..., tuple[str, str]],
                                                 leak_scan: LeakScan) -> None:
    # GIVEN MariaDB's ed25519 plugin and an account using it (created from our own hash)
    installed = admin_sql(mariadb_server, "SELECT COUNT(*) FROM information_schema.PLUGINS "
                                          "WHERE PLUGIN_NAME = 'ed25519'")
    if installed == [(0,)]:
        admin_sql(mariadb_server, "INSTALL SONAME 'auth_ed25519'")
    username, _ = users()
    old, new = new_password(), new_password()
    leak_scan.add(old, new)
    admin_sql(mariadb_server, "ALTER USER %s@'%%' IDENTIFIED VIA ed25519 USING %s",
              (username, ed25519_password_hash(old)))
    # ... and the server's own hash of a throwaway password, to compare with ours
    probe_user, probe = unique("probe"), "probe-" + uuid.uuid4().hex
    admin_sql(mariadb_server, "CREATE USER %s@'%%' IDENTIFIED VIA ed25519 USING PASSWORD(%s)",
              (probe_user, probe))
    try:
        server_hash = admin_sql(mariadb_server, "SELECT authentication_string FROM mysql.user "
                                                "WHERE User = %s", (probe_user,))
    finally:
        admin_sql(mariadb_server, "DROP USER %s@'%%'", (probe_user,))
    assert server_hash == [(ed25519_password_hash(probe),)]
    # WHEN the master sets the ed25519 account's password
    admin.set_password(username, new)
    # THEN the plugin is kept, the stored key is ours, and the plaintext never reached the server
    rows = admin_sql(mariadb_server, "SELECT plugin, authentication_string FROM mysql.user "
                                     "WHERE User = %s", (username,))
    assert rows == [("ed25519", ed25519_password_hash(new))]
    assert new not in mariadb_server.log_text()
    # ... and a login says what PyMySQL needs for ed25519 (or works, where PyNaCl is installed)
    if importlib.util.find_spec("nacl") is None:
        with pytest.raises(LoginError, match="PyNaCl"):
            adapter.connect(credentials(mariadb_server, username, new))
    else:  # pragma: no cover - PyNaCl is not a test dependency
        adapter.connect(credentials(mariadb_server, username, new)).close()


# --------------------------------------------------------------------------------------------
# sync_clone
# --------------------------------------------------------------------------------------------

def test_sync_clone_follows_the_source(mariadb_server: Any, admin: MySQLSession,
                                       users: Callable[..., tuple[str, str]],
                                       leak_scan: LeakScan) -> None:
    # GIVEN a source user with a table grant, a role and a default role
    source, _ = users()
    clone = source + "_clone"
    role, table = unique("role"), unique("t")
    admin_sql(mariadb_server, f"CREATE TABLE `{mariadb_server.dbname}`.`{table}` (id INT)")
    admin_sql(mariadb_server, f"CREATE ROLE `{role}`")
    admin_sql(mariadb_server, f"GRANT UPDATE ON `{mariadb_server.dbname}`.`{table}` "
                              f"TO `{role}`")
    admin_sql(mariadb_server, f"GRANT `{role}` TO %s@'%%'", (source,))
    admin_sql(mariadb_server, f"SET DEFAULT ROLE `{role}` FOR %s@'%%'", (source,))
    first, second = new_password(), new_password()
    leak_scan.add(first, second)
    try:
        # WHEN the clone is synced
        admin.sync_clone(source, clone, first)
        # THEN it logs in, with the source's grants, role and default role
        assert can_login(mariadb_server, clone, first)
        clone_grants = grants(mariadb_server, Account(clone, "%"))
        assert f"GRANT `{role}` TO `{clone}`@`%`" in clone_grants
        assert f"SET DEFAULT ROLE `{role}` FOR `{clone}`@`%`" in clone_grants
        assert first not in mariadb_server.log_text()

        # WHEN a grant is added to the source and the clone synced again
        admin_sql(mariadb_server, f"GRANT INSERT ON `{mariadb_server.dbname}`.`{table}` "
                                  "TO %s@'%%'", (source,))
        admin.sync_clone(source, clone, second)
        # THEN the clone can use it, with its new password
        insert = f"INSERT INTO `{mariadb_server.dbname}`.`{table}` VALUES (1)"  # noqa: S608
        assert run_as(mariadb_server, clone, second, insert) is None
        assert not can_login(mariadb_server, clone, first)

        # WHEN the grant and the role are revoked from the source and the clone synced
        admin_sql(mariadb_server, f"REVOKE INSERT ON `{mariadb_server.dbname}`.`{table}` "
                                  "FROM %s@'%%'", (source,))
        admin_sql(mariadb_server, f"REVOKE `{role}` FROM %s@'%%'", (source,))
        admin.sync_clone(source, clone, second)
        # THEN the clone lost them too
        assert run_as(mariadb_server, clone, second, insert) == 1142
        clone_grants = grants(mariadb_server, Account(clone, "%"))
        assert not any(role in line for line in clone_grants)

        # WHEN nothing changed and the clone is synced again
        mark = mariadb_server.log_position()
        admin.sync_clone(source, clone, second)
        # THEN no privilege is touched (no window without grants)
        assert b"REVOKE" not in mariadb_server.log_file.read_bytes()[mark:]
    finally:
        admin_sql(mariadb_server, f"DROP ROLE IF EXISTS `{role}`")
        admin_sql(mariadb_server, f"DROP TABLE IF EXISTS `{mariadb_server.dbname}`.`{table}`")


def test_least_privilege_master(mariadb_server: Any, adapter: MySQLAdapter,
                                users: Callable[..., tuple[str, str]],
                                leak_scan: LeakScan) -> None:
    # GIVEN a master with CREATE USER, SELECT on mysql.* and grantable rights on appdb only
    # (no UPDATE on the mysql schema, which SET PASSWORD FOR another account would need)
    master, master_pw = unique("master"), new_password()
    leak_scan.add(master_pw)
    mariadb_server.create_login_user(master, master_pw, can_create_roles=True)
    username, old = users()
    new, clone_pw = new_password(), new_password()
    leak_scan.add(new, clone_pw)
    try:
        # WHEN it sets a user's password and syncs the user's clone
        with adapter.connect(credentials(mariadb_server, master, master_pw)) as session:
            session.set_password(username, new)
            session.sync_clone(username, username + "_clone", clone_pw)
    finally:
        mariadb_server.drop_user(master)
    # THEN both worked, and no plaintext reached the server
    assert can_login(mariadb_server, username, new)
    assert not can_login(mariadb_server, username, old)
    assert can_login(mariadb_server, username + "_clone", clone_pw)
    log = mariadb_server.log_text()
    assert new not in log
    assert clone_pw not in log


@pytest.fixture
def documented_master(mariadb_server: Any, adapter: MySQLAdapter,
                      leak_scan: LeakScan) -> Iterator[tuple[str, Callable[[], MySQLSession]]]:
    """A master with exactly what MASTER_PRIVILEGE_HINT documents: CREATE USER, SELECT on
    mysql.*, and grantable rights on appdb (what the users hold)."""
    master, master_pw = unique("master"), new_password()
    leak_scan.add(master_pw)
    mariadb_server.create_login_user(master, master_pw, can_create_roles=True)

    def connect() -> MySQLSession:
        return adapter.connect(credentials(mariadb_server, master, master_pw))

    yield master, connect
    mariadb_server.drop_user(master)


@pytest.fixture
def table(mariadb_server: Any) -> Iterator[str]:
    name = f"`{mariadb_server.dbname}`.`{unique('t')}`"
    admin_sql(mariadb_server, f"CREATE TABLE {name} (id INT)")
    yield name
    admin_sql(mariadb_server, f"DROP TABLE IF EXISTS {name}")


def create_options(server: Any, account: Account) -> str:
    rows = admin_sql(server, "SHOW CREATE USER %s@%s", (account.user, account.host))
    text = str(rows[0][0])
    return text[text.index(" IDENTIFIED"):] if " IDENTIFIED" in text else text


def test_documented_master_copies_require_ssl_and_resource_limits(
        mariadb_server: Any, documented_master: tuple[str, Callable[[], MySQLSession]],
        users: Callable[..., tuple[str, str]], table: str, leak_scan: LeakScan) -> None:
    # GIVEN a source user and its clone, synced once by a master with the documented
    # privileges (CREATE USER, SELECT on mysql.*, grantable rights on appdb)
    _, connect = documented_master
    source, _ = users()
    clone = source + "_clone"
    first, second, third = new_password(), new_password(), new_password()
    leak_scan.add(first, second, third)
    with connect() as session:
        session.sync_clone(source, clone, first)
    query = f"SELECT COUNT(*) FROM {table}"  # noqa: S608 - a generated name
    assert run_as(mariadb_server, clone, first, query) is None
    # ... then the source gets REQUIRE SSL and a resource limit
    admin_sql(mariadb_server, "ALTER USER %s@'%%' REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 1000",
              (source,))

    # WHEN the same master syncs the clone (MariaDB refuses GRANT ... REQUIRE / WITH MAX_...
    # without UPDATE on mysql.*: replayed after REVOKE ALL, that left the clone with nothing)
    with connect() as session:
        session.sync_clone(source, clone, second)
    # THEN the clone has the options and kept its grants
    options = create_options(mariadb_server, Account(clone, "%"))
    assert "REQUIRE SSL" in options
    assert "MAX_QUERIES_PER_HOUR 1000" in options
    assert run_as(mariadb_server, clone, second, query) is None

    # WHEN the source drops them again and the clone is synced
    admin_sql(mariadb_server, "ALTER USER %s@'%%' REQUIRE NONE WITH MAX_QUERIES_PER_HOUR 0",
              (source,))
    with connect() as session:
        session.sync_clone(source, clone, third)
    # THEN the clone drops them too
    options = create_options(mariadb_server, Account(clone, "%"))
    assert "REQUIRE" not in options
    assert "MAX_QUERIES_PER_HOUR" not in options
    assert run_as(mariadb_server, clone, third, query) is None


def test_a_grant_the_master_may_not_give_leaves_the_clone_untouched(
        mariadb_server: Any, documented_master: tuple[str, Callable[[], MySQLSession]],
        users: Callable[..., tuple[str, str]], table: str, leak_scan: LeakScan) -> None:
    # GIVEN a synced clone that holds one grant too many, and a source that gained a grant on
    # a database the master has no grant option on
    _, connect = documented_master
    source, _ = users()
    clone = source + "_clone"
    first, second = new_password(), new_password()
    leak_scan.add(first, second)
    with connect() as session:
        session.sync_clone(source, clone, first)
    other = unique("otherdb")
    admin_sql(mariadb_server, f"CREATE DATABASE `{other}`")
    try:
        admin_sql(mariadb_server, f"GRANT INSERT ON {table} TO %s@'%%'", (clone,))
        admin_sql(mariadb_server, f"GRANT SELECT ON `{other}`.* TO %s@'%%'", (source,))
        before = sorted(grants(mariadb_server, Account(clone, "%")))
        mark = mariadb_server.log_position()
        # WHEN the master syncs the clone
        with connect() as session, pytest.raises(PrivilegeError) as info:
            session.sync_clone(source, clone, second)
        leak_scan.add_text(str(info.value))
        # THEN it fails naming the grant and what a master needs, before anything was revoked
        # and before the clone (the previous user, maybe in use) got a new password
        text = str(info.value)
        assert f"copy 'GRANT SELECT ON `{other}`.*' to '{clone}'@'%'" in text
        assert "nothing was revoked" in text
        assert "WITH GRANT OPTION" in text
        assert b"REVOKE" not in mariadb_server.log_file.read_bytes()[mark:]
        assert sorted(grants(mariadb_server, Account(clone, "%"))) == before
        assert can_login(mariadb_server, clone, first)
        assert not can_login(mariadb_server, clone, second)
    finally:
        admin_sql(mariadb_server, f"DROP DATABASE IF EXISTS `{other}`")


def test_a_default_role_needs_update_on_mysql_as_documented(
        mariadb_server: Any, documented_master: tuple[str, Callable[[], MySQLSession]],
        users: Callable[..., tuple[str, str]], leak_scan: LeakScan) -> None:
    # GIVEN a source with a role as its default role, and a master holding the role WITH ADMIN
    # OPTION but not UPDATE on mysql.* (MariaDB's SET DEFAULT ROLE ... FOR needs it)
    master, connect = documented_master
    source, _ = users()
    clone = source + "_clone"
    role = unique("role")
    password = new_password()
    leak_scan.add(password)
    admin_sql(mariadb_server, f"CREATE ROLE `{role}`")
    try:
        admin_sql(mariadb_server, f"GRANT `{role}` TO %s@'%%' WITH ADMIN OPTION", (master,))
        admin_sql(mariadb_server, f"GRANT `{role}` TO %s@'%%'", (source,))
        admin_sql(mariadb_server, f"SET DEFAULT ROLE `{role}` FOR %s@'%%'", (source,))
        # WHEN it syncs the clone THEN the error names what is missing
        with connect() as session, pytest.raises(PrivilegeError) as info:
            session.sync_clone(source, clone, password)
        assert "UPDATE on mysql.*" in str(info.value)
        assert "nothing was revoked" in str(info.value)
        # WHEN the master gets it THEN the sync completes, default role included
        admin_sql(mariadb_server, "GRANT UPDATE ON `mysql`.* TO %s@'%%'", (master,))
        with connect() as session:
            session.sync_clone(source, clone, password)
        assert f"SET DEFAULT ROLE `{role}` FOR `{clone}`@`%`" in \
            grants(mariadb_server, Account(clone, "%"))
    finally:
        admin_sql(mariadb_server, f"DROP ROLE IF EXISTS `{role}`")


def test_sync_clone_of_a_missing_source_is_an_error(admin: MySQLSession) -> None:
    with pytest.raises(DatabaseError, match="does not exist"):
        admin.sync_clone(unique("ghost"), unique("ghost") + "_clone", new_password())


def test_sync_clone_needs_master_privileges(mariadb_server: Any, adapter: MySQLAdapter,
                                            users: Callable[..., tuple[str, str]],
                                            leak_scan: LeakScan) -> None:
    # GIVEN a plain user that may not read mysql.user or create users
    username, password = users()
    target, _ = users()
    # WHEN it tries to sync a clone
    with adapter.connect(credentials(mariadb_server, username, password)) as session, \
            pytest.raises(DatabaseError) as info:
        session.sync_clone(target, target + "_clone", new_password())
    # THEN the error is a privilege error that says what the master needs
    assert info.value.category == "privilege"
    assert "CREATE USER" in str(info.value)


# --------------------------------------------------------------------------------------------
# Scripted servers: what a real MariaDB cannot show here
# --------------------------------------------------------------------------------------------

CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000


def handshake(tls: bool) -> bytes:
    """A MySQL protocol-10 greeting, offering TLS or not."""
    caps = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
    if tls:
        caps |= CLIENT_SSL
    payload = (b"\x0a" + b"8.0.36-fake\x00" + struct.pack("<I", 7) + b"abcdefgh" + b"\x00"
               + struct.pack("<H", caps & 0xFFFF) + bytes([45]) + struct.pack("<H", 2)
               + struct.pack("<H", caps >> 16) + bytes([21]) + b"\x00" * 10
               + b"ijklmnopqrst\x00" + b"mysql_native_password\x00")
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


class ScriptedServer:
    """One-connection TCP server on 127.0.0.1: ``mode`` is ``silent`` (never speaks),
    ``no-tls`` (greets without TLS) or ``tls`` (greets with TLS, then presents ``cert``).
    ``received`` is everything the client sent (after decryption, for ``tls``)."""

    def __init__(self, mode: str, context: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.context = context
        self.received = b""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                if self.mode == "silent":
                    self.done.wait(10)
                    return
                conn.sendall(handshake(tls=self.mode == "tls"))
                if self.mode == "tls" and self.context is not None:
                    self.received += conn.recv(36)  # the SSL request packet
                    with self.context.wrap_socket(conn, server_side=True) as secure:
                        self.received += secure.recv(4096)
                    return
                self.received += conn.recv(4096)
            except (OSError, ssl.SSLError):
                return

    def close(self) -> None:
        self.done.set()
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(mode: str, context: ssl.SSLContext | None = None) -> ScriptedServer:
        server = ScriptedServer(mode, context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def scripted_credentials(port: int, password: str, **extra: Any) -> DbCredentials:
    return credentials_from_dict({"engine": "mysql", "host": "127.0.0.1", "port": port,
                                  "username": "app", "password": password, **extra}, ARN)


def test_a_server_without_tls_gets_no_password(scripted: Callable[..., ScriptedServer],
                                               leak_scan: LeakScan) -> None:
    # GIVEN a server that does not offer TLS
    server = scripted("no-tls")
    password = new_password()
    leak_scan.add(password)
    # WHEN the adapter connects (verify-full)
    with pytest.raises(TlsError, match="does not offer TLS"):
        MySQLAdapter(AdapterOptions()).connect(scripted_credentials(server.port, password))
    server.close()
    # THEN it gave up before sending anything: no fallback to plaintext
    assert server.received == b""


@pytest.mark.parametrize(("sslmode", "outcome"), [("verify-full", TlsError),
                                                  ("verify-ca", ConnectError)])
def test_verify_ca_skips_only_the_host_name(scripted: Callable[..., ScriptedServer],
                                            tmp_path: Any, leak_scan: LeakScan,
                                            sslmode: str, outcome: type[Exception]) -> None:
    # GIVEN a server whose certificate, from a trusted CA, names another host
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("db.other.example").configure_cert(context)
    server = scripted("tls", context)
    password = new_password()
    leak_scan.add(password)
    # WHEN the adapter connects with verify-full, or verify-ca
    adapter = MySQLAdapter(AdapterOptions(ca_bundle=str(ca_file), statement_timeout=2))
    with pytest.raises(outcome) as info:
        adapter.connect(scripted_credentials(server.port, password, sslmode=sslmode))
    server.close()
    # THEN verify-full refuses the name before sending credentials; verify-ca accepts the
    # chain and sends its (scrambled, never plaintext) login, which this server drops
    if sslmode == "verify-full":
        assert "certificate" in str(info.value)
        assert b"app\x00" not in server.received
    else:
        assert b"app\x00" in server.received
    assert password.encode() not in server.received


def test_a_silent_server_times_out(scripted: Callable[..., ScriptedServer],
                                   leak_scan: LeakScan) -> None:
    # GIVEN a server that accepts the connection and never answers
    server = scripted("silent")
    password = new_password()
    leak_scan.add(password)
    adapter = MySQLAdapter(AdapterOptions(connect_timeout=1.0, statement_timeout=0.5))
    # WHEN the adapter connects THEN it gives up in time, with a network hint
    with pytest.raises(DbTimeoutError) as info:
        adapter.connect(scripted_credentials(server.port, password))
    assert "security groups" in str(info.value)


def test_nothing_listening_is_a_connect_error(leak_scan: LeakScan) -> None:
    # GIVEN a port nobody listens on
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    password = new_password()
    leak_scan.add(password)
    # WHEN the adapter connects THEN the error says the connection was refused
    with pytest.raises(ConnectError, match="refused") as info:
        MySQLAdapter(AdapterOptions()).connect(scripted_credentials(port, password))
    assert not isinstance(info.value, DbTimeoutError)
