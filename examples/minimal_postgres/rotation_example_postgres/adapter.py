"""A deliberately small PostgreSQL adapter: every method of the adapter Protocol, nothing more.

Engine name ``example-postgres``. It passes the same contract suite as the built-in adapters
(``tests/integration/test_example_adapter.py``). What it shows, in order of importance:

* TLS is never optional: ``sslmode`` comes from the secret (``verify-full`` unless it says
  otherwise), the CA from ``ROTATION_CA_BUNDLE`` or else the machine's trust store as a file
  (``default_ca_file()``; libpq's ``sslrootcert=system`` finds no roots with psycopg-binary);
  libpq never retries without TLS.
* The password reaches the server only as a SCRAM-SHA-256 verifier computed here.
* SQL is composed with ``psycopg.sql.Identifier`` / ``Literal``, never with string formatting.
* Driver errors become PasswordRefusedError (only for a wrong password: the steps then try
  another version's password) / LoginError / TlsError / ConnectError / DbTimeoutError, naming
  the user and host but never the password.
* No ``options`` startup parameter (PgBouncer and RDS Proxy refuse it): the statement timeout
  is a ``SET LOCAL`` sent with each statement.

What the built-in ``rotation/adapters/postgres.py`` adds: refusing ``rds_iam`` roles, digest-
shortened clone names, clone attributes and settings kept equal to the original's, a client-side
deadline on every statement, redaction registration, and a finer error mapping.
"""

from __future__ import annotations

import math
import re
from types import TracebackType
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from rotation.adapters import default_ca_file
from rotation.adapters.base import AdapterOptions
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

NAMEDATALEN = 63  # PostgreSQL silently truncates longer names: refuse them instead
_TLS = re.compile(r"SSL|TLS|certificate|no encryption", re.IGNORECASE)
_WRONG_PASSWORD = re.compile(r"password authentication failed", re.IGNORECASE)


class MinimalPostgresSession:
    """One authenticated connection (autocommit). A context manager; ``close`` is idempotent."""

    def __init__(self, conn: psycopg.Connection[Any], where: str, timeout_ms: int) -> None:
        self._conn = conn
        self._where = where
        # Sent in the same message as each statement: it ends with the statement's implicit
        # transaction, so nothing outlives it on a pooled server connection.
        self._timeout = sql.SQL("SET LOCAL statement_timeout = {}; ").format(
            sql.Literal(timeout_ms))

    def __repr__(self) -> str:
        return f"<MinimalPostgresSession {self._where}>"

    def ping(self) -> None:
        self._run(sql.SQL("SELECT 1"))

    def set_password(self, username: str, password: str) -> None:
        verifier = sql.Literal(self._verifier(username, password))
        self._run(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
            sql.Identifier(_checked(username)), verifier), carries_secret=True)

    def sync_clone(self, source_username: str, clone_username: str, password: str) -> None:
        clone = sql.Identifier(_checked(clone_username))
        verifier = sql.Literal(self._verifier(clone_username, password))
        exists = self._run(sql.SQL("SELECT 1 FROM pg_roles WHERE rolname = {}").format(
            sql.Literal(clone_username)))
        statement = "ALTER ROLE {} WITH LOGIN PASSWORD {}" if exists else \
            "CREATE ROLE {} WITH LOGIN PASSWORD {}"
        self._run(sql.SQL(statement).format(clone, verifier), carries_secret=True)
        # As AWS's sample: the clone is a member of the original, so it holds its privileges.
        member = self._run(sql.SQL(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = {} AND u.rolname = {}"
        ).format(sql.Literal(source_username), sql.Literal(clone_username)))
        if not member:
            self._run(sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(_checked(source_username)), clone))

    def discard_old_password(self, username: str) -> None:
        """PostgreSQL keeps one password per role: nothing to discard."""

    def close(self) -> None:
        if not self._conn.closed:
            self._conn.close()

    def __enter__(self) -> MinimalPostgresSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _verifier(self, username: str, password: str) -> str:
        # libpq computes the verifier; the server stores it as is and never sees the plaintext.
        return self._conn.pgconn.encrypt_password(
            password.encode(), username.encode(), b"scram-sha-256").decode()

    def _run(self, query: sql.Composed | sql.SQL, *, carries_secret: bool = False) -> list[Any]:
        try:
            with self._conn.cursor() as cur:
                cur.execute(sql.Composed([self._timeout, query]))
                cur.nextset()  # past the SET's result, to the statement's
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            # The server's text may quote the statement: left out where it holds a verifier.
            detail = "" if carries_secret else f": {str(exc).strip()[:200]}"
            kwargs: dict[str, Any] = {"driver_error": f"psycopg.{type(exc).__name__}",
                                      "sqlstate": exc.sqlstate}
            if isinstance(exc, psycopg.errors.InsufficientPrivilege):
                raise PrivilegeError(f"permission denied on {self._where}{detail}",
                                     hint="grant the logged-in user CREATEROLE", **kwargs) \
                    from None
            raise DatabaseError(f"a statement on {self._where} failed{detail}", **kwargs) \
                from None


class MinimalPostgresAdapter:
    family: ClassVar[str] = "example-postgres"
    max_username_length: ClassVar[int] = NAMEDATALEN

    def __init__(self, options: AdapterOptions) -> None:
        self.options = options

    def connect(self, credentials: DbCredentials) -> MinimalPostgresSession:
        params: dict[str, Any] = {
            "host": credentials.host, "port": credentials.port,
            "user": _checked(credentials.username), "dbname": credentials.dbname or "postgres",
            "sslmode": credentials.sslmode,  # verify-full, verify-ca, require or disable
            "connect_timeout": max(2, math.ceil(self.options.connect_timeout)),
            "autocommit": True,
        }
        if credentials.sslmode in ("verify-full", "verify-ca"):
            params["sslrootcert"] = self.options.ca_bundle or default_ca_file()
        try:
            conn = psycopg.connect(password=credentials.password, **params)
        except psycopg.Error as exc:
            raise _connect_error(exc, credentials) from None
        return MinimalPostgresSession(conn, f"{credentials.host}:{credentials.port}",
                                      int(self.options.statement_timeout * 1000))

    def clone_username(self, username: str) -> str:
        return _checked(username + "_clone")


def _checked(username: str) -> str:
    if len(username.encode()) > NAMEDATALEN:
        raise SecretFormatError(f"user name {username[:20]!r}... is longer than {NAMEDATALEN} "
                                "bytes", key="username", hint="use a shorter user name")
    return username


def _connect_error(exc: psycopg.Error, creds: DbCredentials) -> DatabaseError:
    text, where = str(exc), f"{creds.host}:{creds.port}"
    kwargs: dict[str, Any] = {"driver_error": f"psycopg.{type(exc).__name__}",
                              "sqlstate": exc.sqlstate}
    refused = f"the database refused the login of {creds.username!r} on {where}"
    if _WRONG_PASSWORD.search(text):
        return PasswordRefusedError(refused, hint="check the secret's password", **kwargs)
    if _TLS.search(text):  # after the login check: "no encryption" is pg_hba.conf's TLS refusal
        return TlsError(f"TLS to {where} failed (sslmode {creds.sslmode})",
                        hint="set ROTATION_CA_BUNDLE to the CA that signed the server "
                             "certificate, or `sslmode` in the secret", **kwargs)
    if "FATAL" in text:  # any other refusal (no LOGIN, pg_hba.conf, ...): no password fixes it
        return LoginError(refused, hint="the server's words above say why", **kwargs)
    if "timeout expired" in text:
        return DbTimeoutError(f"connecting to {where} timed out",
                              hint="check security groups and subnets", **kwargs)
    return ConnectError(f"cannot connect to {where}", hint="check `host` and `port`", **kwargs)
