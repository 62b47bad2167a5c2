"""PostgreSQL adapter (psycopg 3, engines ``postgres`` and ``aurora-postgresql``).

* TLS: ``verify-full`` unless the secret says otherwise; the CA comes from ``ROTATION_CA_BUNDLE``
  or libpq's ``sslrootcert=system``. libpq never retries without TLS here: ``prefer``/``allow``
  are not offered.
* Passwords are sent as SCRAM-SHA-256 verifiers computed client-side, so the plaintext never
  reaches the server or its logs.
* SQL is composed with ``psycopg.sql`` (DDL does not take bound parameters).
"""

from __future__ import annotations

import hashlib
import math
import re
from types import TracebackType
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from rotation import _redact
from rotation.adapters.base import AdapterOptions
from rotation.credentials import DbCredentials
from rotation.errors import (
    ConnectError,
    DatabaseError,
    DbTimeoutError,
    LoginError,
    PrivilegeError,
    SecretFormatError,
    TlsError,
)

CLONE_SUFFIX = "_clone"
NAMEDATALEN = 63  # bytes; longer identifiers are silently truncated by the server

_TLS_HINT = ("set ROTATION_CA_BUNDLE to the PEM of the CA that signed the server certificate "
             "(for RDS, the region's global bundle), or set `sslmode` in the secret")
_NETWORK_HINT = ("check that the function's subnets and security groups can reach the database "
                 "port, and that `host` and `port` in the secret are right")
_TLS_PATTERNS = re.compile(
    r"certificate|SSL|TLS|no encryption|does not support SSL|sslmode|handshake", re.IGNORECASE)
_TIMEOUT_PATTERNS = re.compile(r"timeout expired|timed out", re.IGNORECASE)
_AUTH_PATTERNS = re.compile(
    r"password authentication failed|authentication failed|role .* does not exist|"
    r"not permitted to log in|no password supplied|password is expired", re.IGNORECASE)


class PostgresSession:
    """An authenticated psycopg connection (autocommit)."""

    def __init__(self, conn: psycopg.Connection[Any], credentials: DbCredentials) -> None:
        self._conn = conn
        self._where = f"{credentials.host}:{credentials.port}"

    def __repr__(self) -> str:
        return f"<PostgresSession {self._where}>"

    def ping(self) -> None:
        self._execute(sql.SQL("SELECT 1"))

    def set_password(self, username: str, password: str) -> None:
        _check_name(username)
        self._refuse_iam_role(username)
        self._execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
            sql.Identifier(username), sql.Literal(self._verifier(username, password))))

    def sync_clone(self, source_username: str, clone_username: str, password: str) -> None:
        _check_name(source_username)
        _check_name(clone_username)
        self._refuse_iam_role(source_username)
        verifier = sql.Literal(self._verifier(clone_username, password))
        exists = self._execute(sql.SQL("SELECT 1 FROM pg_roles WHERE rolname = {}").format(
            sql.Literal(clone_username)))
        if exists:
            self._execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(clone_username), verifier))
        else:
            self._execute(sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(clone_username), verifier))
        # As AWS's alternating-users sample: the clone is a member of the original user, so it
        # holds the original's privileges now and any granted later. Re-run on every rotation.
        member = self._execute(sql.SQL(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = {} AND u.rolname = {}"
        ).format(sql.Literal(source_username), sql.Literal(clone_username)))
        if not member:
            self._execute(sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(source_username), sql.Identifier(clone_username)))

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
        try:
            with self._conn.cursor() as cur:
                cur.execute(query)
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise _statement_error(exc, self._where) from None


class PostgresAdapter:
    family: ClassVar[str] = "postgres"
    max_username_length: ClassVar[int] = NAMEDATALEN
    username_length_unit: ClassVar[str] = "bytes"

    def __init__(self, options: AdapterOptions) -> None:
        self.options = options

    def __repr__(self) -> str:
        return f"<PostgresAdapter ca_bundle={self.options.ca_bundle!r}>"

    def connect(self, credentials: DbCredentials) -> PostgresSession:
        _check_name(credentials.username)
        _redact.register(credentials.password)
        params = self.connection_params(credentials)
        try:
            conn = psycopg.connect(password=credentials.password, **params)
        except psycopg.Error as exc:
            raise _connect_error(exc, credentials) from None
        return PostgresSession(conn, credentials)

    def connection_params(self, credentials: DbCredentials) -> dict[str, Any]:
        """libpq parameters for ``credentials``, without the password."""
        params: dict[str, Any] = {
            "host": credentials.host,
            "port": credentials.port,
            "user": credentials.username,
            "dbname": credentials.dbname or "postgres",
            "sslmode": credentials.sslmode,
            "connect_timeout": max(2, math.ceil(self.options.connect_timeout)),
            "application_name": "rotation",
            "options": f"-c statement_timeout={int(self.options.statement_timeout * 1000)}",
            "autocommit": True,
        }
        if credentials.sslmode in ("verify-full", "verify-ca"):
            # libpq 16+ understands "system": the OS trust store.
            params["sslrootcert"] = self.options.ca_bundle or "system"
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


def _check_name(username: str) -> None:
    if len(username.encode()) > NAMEDATALEN:
        raise SecretFormatError(
            f"user name {username[:20]!r}... is longer than PostgreSQL's {NAMEDATALEN} bytes",
            key="username", hint="PostgreSQL would truncate it and change another role; use a "
                                 "shorter user name")


def _driver_text(exc: psycopg.Error) -> str:
    return _redact.redact(str(exc).strip().splitlines()[-1] if str(exc).strip() else "")[:300]


def _connect_error(exc: psycopg.Error, credentials: DbCredentials) -> DatabaseError:
    text = str(exc)
    who = f"{credentials.username!r} on {credentials.host}:{credentials.port}"
    detail = _driver_text(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    kwargs: dict[str, Any] = {"driver_error": f"psycopg.{type(exc).__name__}",
                              "sqlstate": sqlstate}
    if _AUTH_PATTERNS.search(text) or sqlstate in ("28P01",):
        return LoginError(f"the database refused the login of {who}: {detail}",
                          hint="check the secret's password; it may have been changed outside "
                               "rotation", **kwargs)
    if _TLS_PATTERNS.search(text):
        return TlsError(f"TLS to {credentials.host}:{credentials.port} failed "
                        f"(sslmode {credentials.sslmode}): {detail}", hint=_TLS_HINT, **kwargs)
    if _TIMEOUT_PATTERNS.search(text):
        return DbTimeoutError(f"connecting to {credentials.host}:{credentials.port} timed out",
                              hint=_NETWORK_HINT, **kwargs)
    if sqlstate and sqlstate.startswith("28"):
        return LoginError(f"the database refused the login of {who}: {detail}",
                          hint="check the user name, its LOGIN attribute and pg_hba.conf",
                          **kwargs)
    return ConnectError(f"cannot connect to {credentials.host}:{credentials.port}: {detail}",
                        hint=_NETWORK_HINT, **kwargs)


def _statement_error(exc: psycopg.Error, where: str) -> DatabaseError:
    sqlstate = getattr(exc, "sqlstate", None)
    detail = _driver_text(exc)
    kwargs: dict[str, Any] = {"driver_error": f"psycopg.{type(exc).__name__}",
                              "sqlstate": sqlstate}
    if sqlstate == "42501" or isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return PrivilegeError(f"permission denied on {where}: {detail}",
                              hint="grant the logged-in user the privilege (CREATEROLE for "
                                   "alternating users)", **kwargs)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return DbTimeoutError(f"a statement on {where} exceeded the statement timeout",
                              hint="check for locks on the role (pg_stat_activity)", **kwargs)
    return DatabaseError(f"a statement on {where} failed: {detail}", **kwargs)
