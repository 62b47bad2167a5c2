"""PostgreSQL adapter (psycopg 3, engines ``postgres`` and ``aurora-postgresql``).

* TLS: ``verify-full`` unless the secret says otherwise; the CA comes from ``ROTATION_CA_BUNDLE``
  or else the machine's trust store, passed to libpq as a file (``rotation.adapters._tls``):
  psycopg-binary's libpq finds no roots with ``sslrootcert=system``. libpq never retries without
  TLS here: ``prefer``/``allow`` are not offered, GSSAPI encryption (which would replace TLS) is
  off, and the password is never sent in cleartext (``require_auth``).
* Every wait is bounded: the login by ``connect_timeout``, each statement by a server-side
  ``SET LOCAL statement_timeout`` and a client-side deadline that closes the socket when the
  network or the server stops answering (where the server-side timeout cannot fire).
* No startup parameter that PgBouncer or RDS Proxy refuse (no ``options``), and nothing set on
  the session that would outlive a transaction on a pooled server connection.
* Passwords are sent as SCRAM-SHA-256 verifiers computed client-side, so the plaintext never
  reaches the server or its logs.
* SQL is composed with ``psycopg.sql`` (DDL does not take bound parameters).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import math
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from rotation import _redact
from rotation.adapters._tls import default_ca_file, libpq_security_params
from rotation.adapters.base import AdapterOptions, time_left
from rotation.credentials import DbCredentials
from rotation.errors import (
    ConnectError,
    DatabaseError,
    DbTimeoutError,
    LoginError,
    PasswordRefusedError,
    PrivilegeError,
    SecretFormatError,
    TlsError,
)

CLONE_SUFFIX = "_clone"
NAMEDATALEN = 63  # bytes; longer identifiers are silently truncated by the server

# The client-side deadline of a statement is its statement_timeout plus this: a server that
# answers gets to report its own timeout (a clean error, the session still usable) first.
CLIENT_GRACE_S = 0.5

_TLS_HINT = ("set ROTATION_CA_BUNDLE to the PEM of the CA that signed the server certificate "
             "(for RDS, the region's global bundle), or set `sslmode` in the secret")
_NETWORK_HINT = ("check that the function's subnets and security groups can reach the database "
                 "port, and that `host` and `port` in the secret are right")
_TLS_PATTERNS = re.compile(
    r"certificate|SSL|TLS|no encryption|does not support SSL|sslmode|handshake", re.IGNORECASE)
_TIMEOUT_PATTERNS = re.compile(r"timeout expired|timed out", re.IGNORECASE)


class PostgresSession:
    """An authenticated psycopg connection (autocommit). Each statement is bounded by
    ``statement_timeout`` seconds (see :meth:`_execute`)."""

    def __init__(self, conn: psycopg.Connection[Any], credentials: DbCredentials,
                 statement_timeout: float = AdapterOptions.statement_timeout) -> None:
        self._conn = conn
        self._where = f"{credentials.host}:{credentials.port}"
        self._login_user = credentials.username
        self._statement_timeout = statement_timeout

    def __repr__(self) -> str:
        return f"<PostgresSession {self._where}>"

    def ping(self) -> None:
        self._execute(sql.SQL("SELECT 1"))

    def set_password(self, username: str, password: str) -> None:
        _check_name(username)
        if username != self._login_user:
            # A role that just logged in with its password holds no rds_iam (RDS refuses those
            # password logins): the check, one round trip, is for a master changing another.
            self._refuse_iam_role(username)
        self._execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
            sql.Identifier(username), sql.Literal(self._verifier(username, password))))

    def sync_clone(self, source_username: str, clone_username: str, password: str) -> None:
        """Create or update the clone, set its password, and make its attributes, memberships
        and per-role settings match the source's (rotation/adapters/_pg_roles.py says how).

        Everything is read and the master's privileges checked first: a missing privilege
        raises PrivilegeError before any change. The changes then run in one transaction, so
        the clone is never half synced. When the clone already matches, only the password
        changes."""
        from rotation.adapters import _pg_roles  # kept beside sync_clone, which alone uses it

        _check_name(source_username)
        _check_name(clone_username)
        self._refuse_iam_role(source_username)
        plan = _pg_roles.read_plan(self._execute, source_username, clone_username, self._where)
        verifier = sql.Literal(self._verifier(clone_username, password))
        with self._transaction():
            for statement in plan.statements(verifier):
                self._execute(statement)
        _pg_roles.log_plan(plan)

    def fetch(self, query: sql.Composed | sql.SQL) -> list[tuple[Any, ...]]:
        """Run one read-only query, bounded like every statement (``rotation doctor``)."""
        return self._execute(query)

    def discard_old_password(self, username: str) -> None:
        """PostgreSQL keeps one password per role: nothing to discard."""

    def close(self) -> None:
        if not self._conn.closed:
            self._conn.close()

    def __enter__(self) -> PostgresSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _verifier(self, username: str, password: str) -> str:
        """The SCRAM-SHA-256 verifier of ``password``, computed here: the server stores it as
        is and never sees the plaintext. The iteration count is the server's (PostgreSQL 16+
        reports ``scram_iterations``), as libpq would use."""
        reported = self._conn.pgconn.parameter_status(b"scram_iterations")
        iterations = int(reported) if reported and reported.isdigit() else SCRAM_ITERATIONS
        verifier = scram_verifier(password, iterations)
        if verifier is None:  # not printable ASCII: libpq applies SASLprep first
            verifier = self._conn.pgconn.encrypt_password(
                password.encode(), username.encode(), b"scram-sha-256").decode()
        _redact.register(password, verifier)
        return verifier

    def _refuse_iam_role(self, username: str) -> None:
        iam = self._execute(sql.SQL(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = 'rds_iam' AND u.rolname = {}"
        ).format(sql.Literal(username)))
        if iam:
            raise DatabaseError(
                f"role {username!r} on {self._where} is granted rds_iam, so RDS refuses its "
                "password logins", hint="revoke rds_iam from the role, or use IAM database "
                "authentication for it instead of password rotation")

    def _execute(self, query: sql.Composed | sql.SQL) -> list[tuple[Any, ...]]:
        """Run one statement within the session's budget; its rows (``[]`` if none).

        Server side: one Query message ``SET LOCAL statement_timeout = N; <query>`` (psycopg
        uses the simple protocol when nothing is bound). PostgreSQL runs it as one implicit
        transaction, so the timeout bounds this statement, lock waits included, and ends with
        it: nothing is left on a server connection that a transaction-pooling PgBouncer hands
        to another client, unlike a session-wide SET, and no extra round trip.
        Client side: a deadline closes the socket if no answer comes, which the server-side
        timeout cannot do when the network or the server stopped answering. Both are cut to
        what is left of the invocation (base.time_left)."""
        timeout = time_left(self._statement_timeout, f"a statement on {self._where}")
        set_timeout = sql.SQL("SET LOCAL statement_timeout = {}; ").format(
            sql.Literal(max(1, int(timeout * 1000))))
        return self._send(sql.Composed([set_timeout, query]), timeout, skip_results=1)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN`` ... ``COMMIT`` around the block's :meth:`_execute` calls, each bounded like
        a statement (psycopg's ``Connection.transaction()`` waits for them without a deadline).
        The SET LOCAL in front of ``BEGIN`` then holds for the whole transaction."""
        self._execute(sql.SQL("BEGIN"))
        try:
            yield
        except BaseException:
            if not self._conn.closed:
                with contextlib.suppress(DatabaseError):
                    # Nothing in front: an aborted transaction takes only ROLLBACK.
                    self._send(sql.SQL("ROLLBACK"), time_left(
                        self._statement_timeout, f"a ROLLBACK on {self._where}"))
            raise
        self._execute(sql.SQL("COMMIT"))

    def _send(self, query: sql.Composed | sql.SQL, timeout: float,
              skip_results: int = 0) -> list[tuple[Any, ...]]:
        """One Query message, its answer awaited ``timeout`` seconds (and a grace); the rows of
        the result after the first ``skip_results`` ones."""
        bound = timeout + CLIENT_GRACE_S
        rows: list[tuple[Any, ...]] = []
        failure: psycopg.Error | None = None
        watchdog: _Watchdog | None = None
        try:
            watchdog = _Watchdog(self._conn.fileno(), bound)
            with watchdog, self._conn.cursor() as cur:
                cur.execute(query)
                for _ in range(skip_results):
                    cur.nextset()
                rows = cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            failure = exc
        if watchdog is not None and watchdog.fired:
            self.close()
            raise DbTimeoutError(
                f"no answer from {self._where} within {bound:g} s of a statement: the network "
                "or the server stopped answering after the login; the connection was closed",
                hint="check the network path to the database (security groups, NAT, proxies) "
                     "and the server's load; Secrets Manager retries the step",
                driver_error=f"psycopg.{type(failure).__name__}" if failure else "")
        if failure is not None:
            raise _statement_error(failure, self._where, timeout) from None
        return rows


class _Watchdog:
    """Ends a wait on a connection that outlives ``seconds`` by shutting its socket down, so
    psycopg's wait returns with an error: nothing else interrupts a blocking wait on a peer
    that still ACKs but never answers (TCP keepalives and ``tcp_user_timeout`` do not fire).

    One daemon thread per process watches every armed statement (:class:`_Watchman`): arming
    costs a lock and a notify, not a thread start per statement."""

    def __init__(self, fileno: int, seconds: float) -> None:
        self.fired = False
        self.fileno = fileno
        self.seconds = seconds
        self.due = 0.0

    def __enter__(self) -> _Watchdog:
        self.due = time.monotonic() + self.seconds
        _WATCHMAN.arm(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _WATCHMAN.disarm(self)

    def fire(self) -> None:
        """Called by the watchman, under its lock (so never after :meth:`__exit__`)."""
        self.fired = True
        # shutdown() acts on the socket, so a duplicate descriptor is enough, and closing the
        # duplicate leaves psycopg's own descriptor to psycopg.
        try:
            with socket.socket(fileno=os.dup(self.fileno)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Watchman:
    """The thread behind every :class:`_Watchdog`: sleeps until the earliest one is due."""

    def __init__(self) -> None:
        self._armed: set[_Watchdog] = set()
        self._wake = threading.Condition()  # a disarmed watchdog must not fire: one lock
        self._thread: threading.Thread | None = None

    def arm(self, dog: _Watchdog) -> None:
        with self._wake:
            self._armed.add(dog)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="rotation-pg-watchdog",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def disarm(self, dog: _Watchdog) -> None:
        with self._wake:
            self._armed.discard(dog)

    def _watch(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for dog in [d for d in self._armed if d.due <= now]:
                    self._armed.discard(dog)
                    dog.fire()
                due = min((d.due for d in self._armed), default=None)
                self._wake.wait(None if due is None else max(0.0, due - now))


_WATCHMAN = _Watchman()


class PostgresAdapter:
    family: ClassVar[str] = "postgres"
    max_username_length: ClassVar[int] = NAMEDATALEN
    username_length_unit: ClassVar[str] = "bytes"

    def __init__(self, options: AdapterOptions) -> None:
        self.options = options

    def __repr__(self) -> str:
        return f"<PostgresAdapter ca_bundle={self.options.ca_bundle!r}>"

    def prepare(self) -> None:
        """Lambda's init phase: find the trust store's CA file now (libpq reads the file itself
        at each login, so there is nothing else to build)."""
        if self.options.ca_bundle is None:
            default_ca_file()

    def connect(self, credentials: DbCredentials) -> PostgresSession:
        _check_name(credentials.username)
        _redact.register(credentials.password)
        params = self.connection_params(credentials)
        # Cut to what is left of the invocation (libpq counts whole seconds, at least 2; the
        # dispatcher's safety margin covers the rounding).
        params["connect_timeout"] = max(2, math.ceil(time_left(
            self.options.connect_timeout, f"a login to {credentials.host}:{credentials.port}")))
        try:
            conn = psycopg.connect(password=credentials.password, **params)
        except psycopg.Error as exc:
            raise _connect_error(exc, credentials, params["connect_timeout"]) from None
        return PostgresSession(conn, credentials, self.options.statement_timeout)

    def connection_params(self, credentials: DbCredentials) -> dict[str, Any]:
        """libpq parameters (and psycopg's ``autocommit`` and ``prepare_threshold``) for
        ``credentials``, without the password. Raises TlsError when a verifying sslmode has no
        CA file to verify with."""
        params: dict[str, Any] = {
            "host": credentials.host,
            "port": credentials.port,
            "user": credentials.username,
            "dbname": credentials.dbname or "postgres",
            "sslmode": credentials.sslmode,
            # The whole login (TCP, TLS, authentication); 2 s is libpq's and psycopg's minimum.
            "connect_timeout": max(2, math.ceil(self.options.connect_timeout)),
            "application_name": "rotation",  # a startup parameter PgBouncer and RDS Proxy pass
            # No `options` startup parameter: PgBouncer and RDS Proxy refuse the login with it.
            # Empty sends none, and overrides a PGOPTIONS in the environment.
            "options": "",
            # TLS and authentication, shared with the applications' client (rotation.client)
            **libpq_security_params(credentials.sslmode, self.options.ca_bundle),
            "autocommit": True,
            # No server-side prepared statements: a transaction pooler loses them.
            "prepare_threshold": None,
        }
        return params

    def clone_username(self, username: str) -> str:
        """``username + "_clone"`` when it fits in 63 bytes. Otherwise the first 50 bytes of
        ``username`` (cut at a character boundary), ``_``, 6 hex digits of SHA-256(username) and
        ``_clone``: within the limit, and distinct for long names sharing a prefix."""
        name = username + CLONE_SUFFIX
        if len(name.encode()) <= NAMEDATALEN:
            return name
        digest = hashlib.sha256(username.encode()).hexdigest()[:6]
        budget = NAMEDATALEN - len(CLONE_SUFFIX) - 1 - len(digest)
        base = username.encode()[:budget].decode(errors="ignore")
        return f"{base}_{digest}{CLONE_SUFFIX}"


SCRAM_ITERATIONS = 4096  # libpq's and the server's default
SCRAM_SALT_BYTES = 16  # libpq's


def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS,
                   salt: bytes | None = None) -> str | None:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (RFC 5802/7677, as
    PostgreSQL stores it), or None when ``password`` is not printable ASCII.

    The same computation as libpq's ``PQencryptPasswordConn``, with the PBKDF2 of Python's
    ``hashlib`` (OpenSSL's), which takes half the time of libpq's own loop: a few milliseconds
    of every rotation. Printable ASCII is what SASLprep leaves unchanged; any other password
    goes to libpq, which normalises it first (the tests compare both on the same salt)."""
    if not password or any(not " " <= char <= "~" for char in password):
        return None
    salt = salt if salt is not None else os.urandom(SCRAM_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("ascii"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    encode = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{encode(salt).decode()}$"
            f"{encode(stored_key).decode()}:{encode(server_key).decode()}")


def _check_name(username: str) -> None:
    if len(username.encode()) > NAMEDATALEN:
        raise SecretFormatError(
            f"user name {username[:20]!r}... is longer than PostgreSQL's {NAMEDATALEN} bytes",
            key="username", hint="PostgreSQL would truncate it and change another role; use a "
                                 "shorter user name")


def _driver_text(exc: psycopg.Error) -> str:
    return _redact.redact(str(exc).strip().splitlines()[-1] if str(exc).strip() else "")[:300]


@dataclass(frozen=True)
class _Refusal:
    """A failed login, told by its words: libpq hands psycopg no SQLSTATE for a failed login
    (``exc.sqlstate`` is None), so the server's (PostgreSQL's, PgBouncer's) and libpq's messages
    are matched, first match wins. ``sqlstate`` is what the server sends with those words."""

    pattern: re.Pattern[str]
    error: type[DatabaseError]
    sqlstate: str | None
    hint: str


def _refusal(pattern: str, error: type[DatabaseError], sqlstate: str | None,
             hint: str) -> _Refusal:
    return _Refusal(re.compile(pattern, re.IGNORECASE), error, sqlstate, hint)


_RETRIED = "; Secrets Manager retries the step"
_REFUSED_HINT = ("the server says the user name or password is wrong; PostgreSQL answers the "
                 "same for a password past the role's VALID UNTIL date. Check the secret "
                 "against the database: the password may have been changed outside rotation")
_REFUSALS = (
    # Only these mean "the password is wrong" (PgBouncer: "SASL authentication failed").
    _refusal(r"password authentication failed", PasswordRefusedError, "28P01", _REFUSED_HINT),
    _refusal(r"SASL authentication failed", PasswordRefusedError, None, _REFUSED_HINT),
    _refusal(r"is not permitted to log in", LoginError, "28000",
             "the role lacks the LOGIN attribute: ALTER ROLE {user} LOGIN"),
    _refusal(r"no pg_hba\.conf entry for .*no encryption", TlsError, "28000",
             "the server takes this login only over TLS: remove `ssl: false` / "
             "`sslmode: disable` from the secret"),
    _refusal(r"no pg_hba\.conf entry for", LoginError, "28000",
             "pg_hba.conf has no line for this client address, user and database: add a "
             "hostssl line with scram-sha-256, or check `username` and `dbname` in the secret"),
    _refusal(r"pg_hba\.conf rejects connection", LoginError, "28000",
             "a `reject` line in pg_hba.conf matches this client address, user and database"),
    _refusal(r"PAM authentication failed", LoginError, "28000",
             "the server checks this role with PAM; on RDS that means the role is granted "
             "rds_iam, which turns password logins off: revoke rds_iam or use IAM "
             "authentication"),
    _refusal(r"(LDAP|RADIUS|Ident|peer|certificate|GSSAPI|SSPI) authentication failed",
             LoginError, "28000",
             "pg_hba.conf checks this role with a method other than its password: use "
             "scram-sha-256 for it"),
    _refusal(r'database ".*" does not exist', LoginError, "3D000",
             "check `dbname` in the secret"),
    _refusal(r"no such database", LoginError, None,  # PgBouncer
             "check `dbname` in the secret and the pooler's [databases] section"),
    _refusal(r"no such user", LoginError, None,  # PgBouncer (auth_file / auth_query)
             "the pooler knows no such login user: check `username` in the secret, that the "
             "role has LOGIN, and the pooler's auth_file or auth_query"),
    _refusal(r"permission denied for database|does not have CONNECT privilege", LoginError,
             "42501", "GRANT CONNECT ON DATABASE <dbname> TO {user}"),
    _refusal(r'role ".*" does not exist', LoginError, "28000",
             "check `username` in the secret"),
    _refusal(r"too many connections for role", ConnectError, "53300",
             "the role's CONNECTION LIMIT is reached: wait for its sessions to end or raise "
             "it (ALTER ROLE {user} CONNECTION LIMIT n)" + _RETRIED),
    _refusal(r"too many connections for database", ConnectError, "53300",
             "the database's CONNECTION LIMIT is reached: wait for its sessions to end or "
             "raise it (ALTER DATABASE ... CONNECTION LIMIT n)" + _RETRIED),
    _refusal(r"too many clients already|remaining connection slots are reserved",
             ConnectError, "53300",
             "the server is at max_connections: see who holds them (pg_stat_activity) or "
             "raise the limit" + _RETRIED),
    _refusal(r"no more connections allowed", ConnectError, None,  # PgBouncer
             "the pooler is at max_client_conn: raise it or find who holds them" + _RETRIED),
    _refusal(r"the database system is (starting up|shutting down|in recovery mode|"
             r"not yet accepting connections|not accepting connections)", ConnectError,
             "57P03", "the server is starting, stopping or recovering: try again" + _RETRIED),
    _refusal(r"authentication method requirement .*cleartext password", LoginError, None,
             "the server asked for the password in cleartext; the adapter logs in only with "
             "scram-sha-256 or md5, which never send it: use scram-sha-256 in pg_hba.conf "
             "(PgBouncer: auth_type = scram-sha-256)"),
    _refusal(r"authentication method requirement .*did not complete authentication",
             LoginError, None,
             "the server let the user in without checking any password (trust), so the login "
             "would prove nothing: use scram-sha-256 in pg_hba.conf"),
    _refusal(r"authentication method requirement", LoginError, None,
             "the server asked for an authentication method the adapter does not use (it "
             "uses scram-sha-256 or md5): use scram-sha-256 in pg_hba.conf"),
    _refusal(r"no password supplied", LoginError, None, "the secret's `password` is empty"),
    _refusal(r"unsupported startup parameter", ConnectError, None,
             "a connection pooler refused a startup parameter; the adapter sends none that "
             "PgBouncer refuses, so look for PG* variables (PGOPTIONS) in the function's "
             "environment, or the pooler's ignore_startup_parameters"),
    _refusal(r"server login has been failing|pgbouncer cannot connect to server|"
             r"no server connection", ConnectError, None,
             "the pooler cannot log in to or reach PostgreSQL behind it: check the pooler's "
             "log and its own server credentials" + _RETRIED),
    _refusal(r"does not support SSL", TlsError, None,
             "the server offers no TLS: turn ssl on in the server; the adapter logs in without "
             "TLS only when the secret says `sslmode: disable`"),
    _refusal(_TLS_PATTERNS.pattern, TlsError, None, _TLS_HINT),
    # Any other refusal the server sent: the login reached it, the network is not the cause.
    _refusal(r"\bFATAL:", LoginError, None,
             "the server refused the session; its own words above say why"),
)


def _connect_error(exc: psycopg.Error, credentials: DbCredentials,
                   timeout: float | None = None) -> DatabaseError:
    text = str(exc)
    where = f"{credentials.host}:{credentials.port}"
    who = f"{credentials.username!r} on {where}"
    detail = _driver_text(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    driver_error = f"psycopg.{type(exc).__name__}"
    if isinstance(exc, psycopg.errors.ConnectionTimeout) or _TIMEOUT_PATTERNS.search(text):
        within = f" within {timeout:g} s" if timeout else ""
        return DbTimeoutError(f"no answer from {where} to the login{within}",
                              hint=_NETWORK_HINT + ", and that the server is not overloaded",
                              driver_error=driver_error, sqlstate=sqlstate)
    for refusal in _REFUSALS:
        if refusal.pattern.search(text):
            error = refusal.error
            if issubclass(error, TlsError):
                message = f"TLS to {where} failed (sslmode {credentials.sslmode}): {detail}"
            elif issubclass(error, LoginError):
                message = f"the database refused the login of {who}: {detail}"
            else:
                message = f"cannot log in to {where}: {detail}"
            return error(message, hint=refusal.hint.replace("{user}", credentials.username),
                         driver_error=driver_error, sqlstate=sqlstate or refusal.sqlstate)
    return ConnectError(f"cannot connect to {where}: {detail}", hint=_NETWORK_HINT,
                        driver_error=driver_error, sqlstate=sqlstate)


def _statement_error(exc: psycopg.Error, where: str,
                     timeout: float | None = None) -> DatabaseError:
    sqlstate = getattr(exc, "sqlstate", None)
    detail = _driver_text(exc)
    kwargs: dict[str, Any] = {"driver_error": f"psycopg.{type(exc).__name__}",
                              "sqlstate": sqlstate}
    if sqlstate == "42501" or isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return PrivilegeError(f"permission denied on {where}: {detail}",
                              hint="grant the logged-in user the privilege (CREATEROLE for "
                                   "alternating users)", **kwargs)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        within = f" ({timeout:g} s)" if timeout else ""
        return DbTimeoutError(f"a statement on {where} exceeded the statement timeout{within}",
                              hint="check for locks on the role (pg_locks, pg_stat_activity)",
                              **kwargs)
    if sqlstate == "25006":  # read_only_sql_transaction
        return DatabaseError(f"a statement on {where} failed: {detail}",
                             hint="the session is read-only: `host` is a replica or reader "
                                  "endpoint (or the role has default_transaction_read_only); "
                                  "use the writer / primary endpoint", **kwargs)
    if sqlstate in ("57P01", "57P02", "57P03"):  # admin / crash shutdown, cannot connect now
        return ConnectError(f"the server at {where} ended the session: {detail}",
                            hint="the server is restarting or failing over" + _RETRIED, **kwargs)
    if sqlstate is None and isinstance(exc, psycopg.OperationalError):
        return ConnectError(f"the connection to {where} was lost during a statement: {detail}",
                            hint=_NETWORK_HINT, **kwargs)
    return DatabaseError(f"a statement on {where} failed: {detail}", **kwargs)
