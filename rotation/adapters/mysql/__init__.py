"""MySQL, MariaDB and Aurora MySQL (PyMySQL; engines ``mysql``, ``mariadb``, ``aurora-mysql``).

:class:`MySQLAdapter` logs in and hands out a :class:`MySQLSession`, which sets passwords
(keeping each account's authentication plugin), creates and syncs the clone of alternating
users, and adds a second password for the dual-password strategy (MySQL 8.0.14+; its decision
table is :func:`~rotation.adapters.mysql.server.plan_add_password`). The parts it is made of
(none does I/O):

* :mod:`~rotation.adapters.mysql.auth`: the authentication plugins, and the password hashes
  computed client-side.
* :mod:`~rotation.adapters.mysql.names`: account names, their quoting, user name limits and
  clone names.
* :mod:`~rotation.adapters.mysql.server`: what the server is (``VERSION()``,
  ``@@version_comment``, ``AURORA_VERSION()``) and the statement each server gets, with the
  table of how a password is set for each plugin (the README copies it).
* :mod:`~rotation.adapters.mysql.grants`: SHOW GRANTS / SHOW CREATE USER, read and replayed onto
  a clone.
* :mod:`~rotation.adapters.mysql.failures`: driver errors mapped to the framework's, with their
  fix.
* :func:`rotation.adapters._tls.make_ssl_context`: the SSLContext for each sslmode (shared).

TLS
    ``verify-full`` unless the secret says otherwise. The CA comes from ``ROTATION_CA_BUNDLE``
    (``AdapterOptions.ca_bundle``) or the system trust store. A verifying :class:`ssl.SSLContext`
    is always passed to PyMySQL: with no ``ssl`` options PyMySQL would negotiate TLS *without*
    verifying the certificate. There is never a fallback from TLS to plaintext.

The account's plugin comes from ``mysql.user``; an account that may not read it (single user)
reads its own ``SHOW CREATE USER``. Driver exceptions are never chained to the framework's errors
(see :mod:`~rotation.adapters.mysql.failures`): they are raised outside the ``except`` block.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar

import pymysql
import pymysql.connections

from rotation import _redact
from rotation.adapters._tls import SslContexts, make_ssl_context
from rotation.adapters.base import AdapterOptions, time_left
from rotation.adapters.mysql.auth import (
    NATIVE,
    ed25519_password_hash,
    native_password_hash,
    normalize_plugin,
)
from rotation.adapters.mysql.failures import (
    ER_SPECIFIC_ACCESS_DENIED,
    MASTER_PRIVILEGE_HINT,
    Greeting,
    greeting_of,
    map_connect_error,
    map_statement_error,
)
from rotation.adapters.mysql.grants import (
    AccountOptions,
    GrantLine,
    GrantParseError,
    build_account_options,
    parse_create_user,
    parse_grant,
    plan_grant_additions,
    plan_grant_sync,
    rewrite_grants,
    split_account_options,
)
from rotation.adapters.mysql.names import (
    ENGINE_USERNAME_LIMITS,
    MAX_USERNAME_LENGTH,
    Account,
    check_username,
    clone_username,
)
from rotation.adapters.mysql.server import (
    PROBE,
    AddPlan,
    ServerInfo,
    Statement,
    build_account_query,
    build_accounts_query,
    build_add_password,
    build_create_user,
    build_default_roles_query,
    build_discard_old_password,
    build_dual_account_query,
    build_dual_accounts_query,
    build_set_default_roles,
    build_set_password,
    build_show_create_user,
    build_show_grants,
    check_dual_password_support,
    describe_add_plan,
    plan_add_password,
    stored_as,
)
from rotation.credentials import DbCredentials, SslMode
from rotation.errors import DatabaseError, PasswordRefusedError, PrivilegeError, SecretFormatError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountInfo:
    """An account, its authentication plugin and stored hash (never shown in ``repr``)."""

    account: Account
    plugin: str
    auth_string: str | None = field(default=None, repr=False)
    own: bool = False  # the logged-in account itself
    #: the secondary password (MySQL 8.0.14+ ``additional_password``): "" when there is none,
    #: None when it could not be read
    secondary: str | None = field(default=None, repr=False)


#: a login as ``username`` with ``password``, on a second connection to the same server:
#: True when it succeeds, False when the password is refused (other errors are raised)
Probe = Callable[[str, str], bool]


# --------------------------------------------------------------------------------------------
# Session and adapter
# --------------------------------------------------------------------------------------------

class MySQLSession:
    """An authenticated PyMySQL connection (autocommit). See the module docstring."""

    def __init__(self, conn: Any, credentials: DbCredentials, options: AdapterOptions,
                 probe: Probe | None = None) -> None:
        self._conn: Any = conn
        self._login_user = credentials.username
        # which password this session logged in with, as a digest: add_password compares it
        # with ``keep`` (a login with keep proves keep is valid) without holding the password
        self._login_digest = _digest(credentials.password)
        self._engine = credentials.engine
        self._where = f"{credentials.host}:{credentials.port}"
        self._options = options
        self._probe = probe
        self._server: ServerInfo | None = None

    def __repr__(self) -> str:
        return f"<MySQLSession {self._login_user!r} at {self._where}>"

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> MySQLSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(pymysql.err.Error, OSError):
            conn.close()  # sends COM_QUIT; closes the socket whatever happens

    # -- the DatabaseSession methods ---------------------------------------------------------

    def ping(self) -> None:
        self._run(Statement("SELECT 1", action="run SELECT 1"))

    def set_password(self, username: str, password: str) -> None:
        """Set ``username``'s password, keeping each account's plugin (see the table in
        :mod:`rotation.adapters.mysql.server`).

        The logged-in user changes its own account (``CURRENT_USER()``); on MySQL, an account
        without CREATE USER may only do that with ``IDENTIFIED BY`` (plaintext over TLS), which
        is used when the pre-hashed form is refused. Another user's name may exist with several
        host parts (``'app'@'%'``, ``'app'@'10.0.%'``): every one of them gets the new password
        (a master needs CREATE USER for this). A secondary password (MySQL dual passwords) is
        left as it is."""
        check_username(username)
        server = self.server
        for info in self._accounts(username):
            self._set(server, info, password)

    def add_password(self, username: str, password: str, keep: str) -> None:
        """Dual passwords (MySQL 8.0.14+): afterwards ``password`` is the primary password of
        every account of ``username`` and ``keep`` the secondary; the secondary retained
        before is dropped. Idempotent, and ``keep`` stays valid at every point.

        Which statements run is decided per account from its stored passwords (see
        :func:`~rotation.adapters.mysql.server.plan_add_password`): nothing when the account
        already is in that state (a retry), ``ALTER USER ... RETAIN CURRENT PASSWORD`` with the
        new password when the primary is ``keep`` (a first run), else ``keep`` again and then
        the new password. For ``caching_sha2_password``/``sha256_password`` (salted hashes) a
        user changing itself whose account holds a secondary logs in once more, with the new
        password, to tell a retry from a first run: that login fails on a first run (it counts
        towards FAILED_LOGIN_ATTEMPTS). The server version is checked before any change
        (ConfigError on MariaDB and MySQL before 8.0.14). Privileges: a user changing itself
        needs APPLICATION_PASSWORD_ADMIN; a master changing another account needs CREATE USER
        and SELECT on ``mysql.user``."""
        check_username(username)
        for value in (password, keep):
            if value == "":
                raise SecretFormatError("refusing an empty password", key="password",
                                        hint="rotate to a generated, non-empty password")
        _redact.register(password, keep)
        server = self.server
        check_dual_password_support(server)
        plans: list[tuple[AccountInfo, AddPlan]] = []
        for info in self._dual_accounts(username):
            plan = self._plan(info, password, keep)
            build_add_password(server, info.account, info.plugin, plan, password, keep,
                               own=info.own)  # refuses a plugin before any account changes
            plans.append((info, plan))
        for info, plan in plans:
            log.info("account %s: %s", info.account, describe_add_plan(plan))
            for which in plan:
                self._set(server, info, password if which == "password" else keep, dual=True)

    def _plan(self, info: AccountInfo, password: str, keep: str) -> AddPlan:
        primary = stored_as(info.plugin, info.auth_string, password, keep)
        secondary = stored_as(info.plugin, info.secondary, password, keep, secondary=True)
        keep_logs_in = info.own and hmac.compare_digest(self._login_digest, _digest(keep))
        password_logs_in: bool | None = None
        if info.own and hmac.compare_digest(self._login_digest, _digest(password)):
            password_logs_in = True
        plan = plan_add_password(primary, secondary, keep_logs_in=keep_logs_in,
                                 password_logs_in=password_logs_in)
        if plan == PROBE:
            if self._probe is None:
                plan = ("keep", "password")  # no way to log in again: the sequence safe always
            else:
                log.info("account %s: its passwords cannot be compared (%s); logging in with "
                         "the new password to tell whether it is set", info.account, info.plugin)
                plan = plan_add_password(primary, secondary, keep_logs_in=keep_logs_in,
                                         password_logs_in=self._probe(info.account.user,
                                                                      password))
        assert plan != PROBE
        return plan

    def _set(self, server: ServerInfo, info: AccountInfo, password: str, *,
             dual: bool = False) -> None:
        """One account's password (with ``dual``: retaining the current one)."""
        statement = build_set_password(server, info.account, info.plugin, password,
                                       retain_current=dual, own=info.own)
        _redact.register(password, *statement.args)
        try:
            self._run(statement, dual=dual)
            return
        except PrivilegeError as exc:
            # MySQL lets an account without CREATE USER change itself only with
            # IDENTIFIED BY: fall back to it (plaintext over TLS) for its own account.
            fallback = (info.own and not server.is_mariadb and info.plugin == NATIVE
                        and exc.sqlstate == str(ER_SPECIFIC_ACCESS_DENIED))
            if not fallback:
                raise
        log.info("account %s may not set a pre-hashed password on itself; sending it "
                 "with IDENTIFIED BY over TLS", info.account)
        self._run(build_set_password(server, info.account, info.plugin, password,
                                     retain_current=dual, own=True, hashed=False), dual=dual)

    def sync_clone(self, source_username: str, clone_username: str, password: str) -> None:
        """Create ``clone_username`` for every host part of ``source_username`` (same plugin),
        set its password, and make its privileges match the source's now. An existing clone's
        privileges are synced before its password is set, so a sync that fails leaves it as
        it was.

        Grants: ``SHOW GRANTS`` of the source is rewritten to the clone (the grantee token is
        replaced; ``IDENTIFIED ...`` clauses are dropped). When the clone's grants already
        match, nothing runs. Otherwise, first the source's lines the clone lacks are granted:
        this takes nothing away, so a privilege the master may not grant fails here
        (PrivilegeError) with the clone's privileges intact. Only if the clone still holds
        more than the source are the role and PROXY grants no longer wanted revoked, then
        ``REVOKE ALL PRIVILEGES, GRANT OPTION``, and the source's lines replayed (all of them
        just proved grantable), so grants removed from the source disappear; there is a short
        window between REVOKE ALL and the replay. Role grants (MySQL 8, MariaDB) are copied
        like any grant; default roles too (MariaDB: from SHOW GRANTS, which needs UPDATE on
        mysql.*; MySQL 8: from mysql.default_roles).

        Account options: on MariaDB the TLS requirement and resource limits (``REQUIRE``,
        ``MAX_..._PER_HOUR``, ``MAX_USER_CONNECTIONS``, ``MAX_STATEMENT_TIME``) of the global
        SHOW GRANTS line are set with ``ALTER USER`` (CREATE USER suffices; the same clauses
        on GRANT need UPDATE on mysql.*), and removed again when the source drops them.

        Limits: MySQL 5.7+ account options that SHOW GRANTS does not show (REQUIRE, resource
        limits), and password expiry and account lock everywhere, are not copied. Clone
        accounts on hosts the source lacks are left alone.
        """
        check_username(source_username, what="source username")
        check_username(clone_username, what="clone username")
        if source_username == clone_username:
            raise SecretFormatError("the clone user has the same name as the source user",
                                    key="username", hint="use a different name for the clone")
        server = self.server
        sources = self._accounts(source_username, as_other=True)
        existing = {info.account.host.lower(): info
                    for info in self._lookup_accounts(clone_username)}
        if len(existing) < len(sources) and len(clone_username) > server.max_username_length:
            raise SecretFormatError(
                f"the clone user name {clone_username!r} is {len(clone_username)} characters "
                f"long; {server.describe()} allows {server.max_username_length}",
                key="username", hint="use single-user rotation, or a user name short enough "
                                     "for `name_clone` to fit")
        for source in sources:
            target = Account(clone_username, source.account.host)
            current = existing.get(target.host.lower())
            if current is None:
                statement = build_create_user(server, target, source.plugin, password)
                _redact.register(password, *statement.args)
                self._run(statement)
                self._sync_privileges(source.account, target)
                continue
            # An existing clone is the previous user, possibly still in use: its privileges are
            # synced before its password changes, so a privilege the master lacks fails the
            # sync with the clone untouched.
            target = current.account
            self._sync_privileges(source.account, target)
            statement = build_set_password(server, target, source.plugin, password,
                                           current_plugin=current.plugin)
            _redact.register(password, *statement.args)
            self._run(statement)

    def discard_old_password(self, username: str) -> None:
        """Drop the secondary password of every account of ``username`` (``DISCARD OLD
        PASSWORD``); a no-op on servers without dual passwords (MariaDB, MySQL before
        8.0.14). The default steps no longer call it: :meth:`add_password` drops the older
        password itself."""
        check_username(username)
        server = self.server
        if not server.supports_dual_passwords:
            return
        for info in self._accounts(username):
            self._run(build_discard_old_password(server, info.account), dual=True)

    # -- server and accounts -----------------------------------------------------------------

    @property
    def server(self) -> ServerInfo:
        """What the server is (queried once per session)."""
        if self._server is None:
            rows = self._run(Statement("SELECT VERSION(), @@version_comment",
                                       action="read the server version"))
            version, comment = (str(rows[0][0] or ""), str(rows[0][1] or "")) if rows else ("", "")
            aurora: str | None = None
            if self._engine == "aurora-mysql" or "aurora" in version.lower():
                try:
                    found = self._run(Statement("SELECT AURORA_VERSION()",
                                                action="read the Aurora version"))
                    aurora = str(found[0][0]) if found else None
                except DatabaseError:
                    aurora = None
            self._server = ServerInfo.parse(version, comment, aurora)
        return self._server

    def _accounts(self, username: str, *, as_other: bool = False) -> list[AccountInfo]:
        """The accounts ``username`` names: the logged-in account for the logged-in user,
        every host part for another user. Raises when there is none."""
        if username == self._login_user and not as_other:
            return [self._current_account()]
        accounts = self._lookup_accounts(username)
        if not accounts:
            raise DatabaseError(f"user {username!r} does not exist at {self._where}",
                                hint="check `username` in the secret")
        return accounts

    def _dual_accounts(self, username: str) -> list[AccountInfo]:
        """As :meth:`_accounts`, with each account's secondary password (MySQL 8.0.14+). The
        logged-in user's own account falls back to SHOW CREATE USER (secondary unknown) when it
        may not read ``mysql.user``."""
        if username == self._login_user:
            return [self._current_account(dual=True)]
        try:
            rows = self._run(build_dual_accounts_query(self.server, username))
        except PrivilegeError as exc:
            exc.hint = MASTER_PRIVILEGE_HINT
            raise
        if not rows:
            raise DatabaseError(f"user {username!r} does not exist at {self._where}",
                                hint="check `username` in the secret")
        return [_dual_info(row, username) for row in rows]

    def _lookup_accounts(self, username: str) -> list[AccountInfo]:
        try:
            rows = self._run(build_accounts_query(self.server, username))
        except PrivilegeError as exc:
            exc.hint = MASTER_PRIVILEGE_HINT
            raise
        return [AccountInfo(Account(username, _text(row[0])), normalize_plugin(_text(row[1])),
                            _text(row[2])) for row in rows]

    def _current_account(self, *, dual: bool = False) -> AccountInfo:
        """The logged-in account (CURRENT_USER()), its plugin and stored hash from
        ``mysql.user``; with ``dual`` its secondary password too (MySQL 8.0.14+). An account
        that may not read ``mysql.user`` reads its own SHOW CREATE USER (no secondary)."""
        rows = self._run(Statement("SELECT CURRENT_USER()", action="read CURRENT_USER()"))
        current = _text(rows[0][0]) if rows else ""
        prefix = self._login_user + "@"
        if not current.startswith(prefix):
            raise DatabaseError(
                f"logged in as {self._login_user!r}, but the server maps the login to the "
                f"account {current!r}", hint="create a dedicated account for the user (an "
                                             "anonymous or proxy account cannot be rotated)")
        account = Account(self._login_user, current[len(prefix):])
        try:
            rows = self._run(build_dual_account_query(account) if dual
                             else build_account_query(account))
        except PrivilegeError:
            rows = []
        if rows:
            if dual:
                return _dual_info(rows[0], account.user, own=True)
            return AccountInfo(account, normalize_plugin(_text(rows[0][1])), _text(rows[0][2]),
                               own=True)
        # No SELECT on mysql.user: a user may read its own definition.
        rows = self._run(build_show_create_user(account))
        plugin, auth = parse_create_user(_text(rows[0][0]) if rows else "")
        return AccountInfo(account, plugin, auth, own=True)

    # -- grants ------------------------------------------------------------------------------

    def _show_grants(self, account: Account) -> list[str]:
        return [_text(row[0]) for row in self._run(build_show_grants(account))]

    def _grants_of(self, account: Account, target: Account) -> tuple[list[str], AccountOptions]:
        """``account``'s grants written for ``target``, and its REQUIRE / resource limits
        apart where ALTER USER can set them."""
        lines = rewrite_grants(self._show_grants(account), account, target)
        if not self.server.has_alter_user_options:
            return lines, AccountOptions()
        return split_account_options(lines)

    def _sync_privileges(self, source: Account, target: Account) -> None:
        self._sync_grants(source, target)
        if self.server.has_default_roles_table:
            self._sync_default_roles(source, target)

    def _sync_grants(self, source: Account, target: Account) -> None:
        desired, wanted = self._grants_of(source, target)
        current, options = self._grants_of(target, target)
        if wanted != options:
            self._run(build_account_options(self.server, target, wanted))
        additions = plan_grant_additions(desired, current, target)
        for statement in additions:
            try:
                self._run(statement)
            except DatabaseError as exc:
                raise _noted(exc, f"nothing was revoked from {target}") from None
        if additions:
            current, _ = self._grants_of(target, target)
        revoked = False
        for statement in plan_grant_sync(desired, current, target):
            try:
                self._run(statement)
            except DatabaseError as exc:
                if not revoked:
                    raise
                # Every replayed line was granted a moment ago: only a concurrent change
                # (or a lost connection) gets here. Say what state the clone is in.
                raise _noted(exc, f"{target} was left with part of the privileges of "
                                  f"{source}; the next sync restores them") from None
            revoked = revoked or statement.sql.startswith("REVOKE ALL PRIVILEGES")

    def _sync_default_roles(self, source: Account, target: Account) -> None:
        wanted = [Account(_text(r[0]), _text(r[1]))
                  for r in self._run(build_default_roles_query(source))]
        have = [Account(_text(r[0]), _text(r[1]))
                for r in self._run(build_default_roles_query(target))]
        if sorted(wanted) != sorted(have):
            self._run(build_set_default_roles(target, wanted))

    # -- execution ---------------------------------------------------------------------------

    def _run(self, statement: Statement, *, dual: bool = False) -> list[tuple[Any, ...]]:
        if self._conn is None:
            raise DatabaseError(f"the session to {self._where} is closed",
                                hint="open a new session")
        # Each read and write of this statement: the statement timeout, cut to what is left of
        # the invocation (PyMySQL applies these before every socket operation).
        timeout = time_left(self._options.statement_timeout, f"a statement on {self._where}")
        self._conn._read_timeout = self._conn._write_timeout = timeout
        try:
            with self._conn.cursor() as cursor:
                cursor.execute(statement.sql, statement.args if statement.args else None)
                rows = [tuple(row) for row in cursor.fetchall()]
        except (pymysql.err.Error, OSError, UnicodeDecodeError) as exc:
            error = map_statement_error(exc, statement, self._where, dual_password=dual)
        else:
            return rows
        raise error  # outside the except block: no driver exception in __context__


def _noted(error: DatabaseError, note: str) -> DatabaseError:
    """``error`` again (same class, errno and hint) with ``note`` added to its message."""
    noted = type(error)(f"{error.message}; {note}", hint=error.hint,
                        driver_error=error.driver_error, sqlstate=error.sqlstate)
    return noted


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode("utf-8")).digest()


def _dual_info(row: tuple[Any, ...], username: str, *, own: bool = False) -> AccountInfo:
    """An AccountInfo from a row of the dual accounts query (Host, plugin,
    authentication_string, additional_password; a NULL secondary means none)."""
    secondary = "" if row[3] is None else _text(row[3])
    return AccountInfo(Account(username, _text(row[0])), normalize_plugin(_text(row[1])),
                       _text(row[2]), own=own, secondary=secondary)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


class MySQLAdapter:
    """Engines ``mysql``, ``mariadb`` and ``aurora-mysql`` through PyMySQL."""

    family: ClassVar[str] = "mysql"
    #: MySQL's 32 characters: what clone names are made to fit. A secret's own user may be as
    #: long as its engine allows (:meth:`username_limit`: MariaDB's 80 for ``mariadb``).
    max_username_length: ClassVar[int] = MAX_USERNAME_LENGTH

    def __init__(self, options: AdapterOptions) -> None:
        self.options = options
        self._contexts = SslContexts(options.ca_bundle)

    def __repr__(self) -> str:
        return f"<MySQLAdapter ca_bundle={self.options.ca_bundle!r}>"

    def prepare(self) -> None:
        """Lambda's init phase: build the verify-full TLS context (loading a CA bundle of a few
        hundred certificates takes tens of milliseconds) before the first step needs it."""
        self.ssl_context("verify-full")

    def ssl_context(self, sslmode: SslMode) -> ssl.SSLContext | None:
        """The (cached) SSLContext for ``sslmode``; None for ``disable``."""
        return self._contexts.get(sslmode)

    def connect_kwargs(self, credentials: DbCredentials) -> dict[str, Any]:
        """PyMySQL's connect() arguments for ``credentials`` (the password as UTF-8 bytes)."""
        kwargs: dict[str, Any] = {
            "host": credentials.host,
            "port": credentials.port,
            "user": credentials.username,
            "password": credentials.password.encode("utf-8"),
            "charset": "utf8mb4",
            "autocommit": True,
            "connect_timeout": self.options.connect_timeout,
            # The greeting, TLS handshake and authentication are reads: bound them by the
            # connect timeout too (connect() switches to the statement timeout after login).
            "read_timeout": min(self.options.connect_timeout, self.options.statement_timeout),
            "write_timeout": self.options.statement_timeout,
        }
        if credentials.dbname:
            kwargs["database"] = credentials.dbname
        context = self.ssl_context(credentials.sslmode)
        if context is None:
            kwargs["ssl_disabled"] = True
        else:
            kwargs["ssl"] = context
        return kwargs

    def connect(self, credentials: DbCredentials) -> MySQLSession:
        """Log in; PasswordRefusedError (wrong password or user) / LoginError (any other
        refusal) / TlsError / ConnectError / DbTimeoutError on failure. No retry and never a
        retry without TLS."""
        _redact.register(credentials.password)
        # A secret that disables TLS is warned about by the steps (StepContext), not here.
        kwargs = self.connect_kwargs(credentials)
        login = time_left(self.options.connect_timeout,
                          f"a login to {credentials.host}:{credentials.port}")
        kwargs["connect_timeout"] = login
        kwargs["read_timeout"] = min(kwargs["read_timeout"], login)
        # Deferred, so that the greeting (version, TLS offered) is still at hand when the login
        # is refused: it tells a wrong password from a refusal no other password fixes.
        conn: Any = None
        try:
            conn = pymysql.connections.Connection(defer_connect=True, **kwargs)
            conn.connect()
        except (pymysql.err.Error, OSError, RuntimeError) as exc:
            error = map_connect_error(exc, credentials, self.options, greeting=greeting_of(conn))
        else:
            # PyMySQL re-applies _read_timeout before each read; it has no public setter.
            conn._read_timeout = self.options.statement_timeout
            return MySQLSession(conn, credentials, self.options,
                                probe=lambda user, password: self._logs_in(
                                    credentials.with_user(user, password)))
        raise error  # outside the except block: no driver exception in __context__

    def _logs_in(self, credentials: DbCredentials) -> bool:
        """A login with ``credentials`` on a connection of its own: True, or False when the
        password is refused (any other failure is raised)."""
        try:
            self.connect(credentials).close()
        except PasswordRefusedError:
            return False
        return True

    def supports_dual_password(self, engine: str) -> bool:
        """MySQL (8.0.14+; the server's version is checked at setSecret, before any change) and
        Aurora MySQL 3 hold two passwords per account; MariaDB has none."""
        return engine in ("mysql", "aurora-mysql")

    def clone_username(self, username: str) -> str:
        """``username + "_clone"``, or, past 32 characters, see :func:`clone_username`."""
        return clone_username(username, self.max_username_length)

    def username_limit(self, engine: str, strategy: str) -> int:
        """The longest user name a secret of ``engine`` may hold: 80 characters for
        ``mariadb``, 32 for ``mysql`` and ``aurora-mysql``. The same under every strategy: an
        alternating pair's clone name is shortened to 32 whatever the original's length."""
        del strategy  # see above
        return ENGINE_USERNAME_LIMITS.get(engine, MAX_USERNAME_LENGTH)


__all__ = [
    "Account",
    "AccountInfo",
    "AccountOptions",
    "GrantLine",
    "GrantParseError",
    "Greeting",
    "MySQLAdapter",
    "MySQLSession",
    "ServerInfo",
    "Statement",
    "build_account_options",
    "build_add_password",
    "build_create_user",
    "build_discard_old_password",
    "build_set_password",
    "clone_username",
    "ed25519_password_hash",
    "make_ssl_context",
    "map_connect_error",
    "map_statement_error",
    "native_password_hash",
    "parse_create_user",
    "parse_grant",
    "plan_add_password",
    "plan_grant_additions",
    "plan_grant_sync",
    "rewrite_grants",
    "split_account_options",
]
