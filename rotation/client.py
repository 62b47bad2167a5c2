"""Database connections for applications, through every rotation of their secret.

Usage (see README, "Applications")::

    creds = RotatingCredentials("prod/app/postgres")   # one per secret per process
    with creds.connect() as conn:                      # psycopg / PyMySQL connection
        ...

How it keeps working while the rotation function changes the password:

* The secret is read once (``GetSecretValue`` naming ``AWSCURRENT``) and kept, by ``VersionId``:
  on the happy path a connection costs a login and no Secrets Manager call.
* Only a login refused for a wrong password (:class:`~rotation.errors.PasswordRefusedError`,
  the adapters' own mapping) makes the client look again: one refresh of ``AWSCURRENT`` shared
  by every thread (single flight); if that one is refused too, ``AWSPENDING``: with a single
  user, the database holds the new password from setSecret on, while ``AWSCURRENT`` moves only
  at finishSecret. With alternating users the refresh finds the other user. A network or TLS
  failure is raised at once: no other label would get further.
* When every label is refused, :class:`CredentialsRefusedError` names the secret and the labels
  tried, and for :attr:`RotatingCredentials.cooldown` seconds refused logins fail without asking
  Secrets Manager again (a wrong secret must not turn every connect into API calls).
* TLS exactly as the rotation function's: libpq's parameters from
  :func:`~rotation.adapters._tls.libpq_security_params`, PyMySQL's SSLContext from
  :func:`~rotation.adapters._tls.make_ssl_context`; ``verify-full`` unless the secret says
  otherwise, never a retry without TLS. Failed logins raise the adapters' error classes.

Nothing here imports a database driver until a connection is made, nor the function's logging
(Powertools): an application needs boto3 and its driver only. Log lines (logger
``rotation.client``) and :meth:`RotatingCredentials.stats` name versions, users and labels,
never a secret value.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from rotation.config import CA_BUNDLE
from rotation.credentials import DbCredentials, parse_secret
from rotation.errors import (
    AwsError,
    ConfigError,
    PasswordRefusedError,
    SecretFormatError,
    UnsupportedEngineError,
)
from rotation.secrets import (
    CURRENT,
    PENDING,
    _register_secret_values,
    _translate,
    aws_client,
)

if TYPE_CHECKING:

    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["CredentialsRefusedError", "RotatingCredentials"]

log = logging.getLogger(__name__)

#: seconds for TCP connect, TLS handshake and authentication, unless the caller passes its own
DEFAULT_CONNECT_TIMEOUT = 10
#: versions kept in memory; a rotation adds one
_KEPT_VERSIONS = 4


class CredentialsRefusedError(PasswordRefusedError):
    """The database refused every credential the secret holds (the labels tried are named)."""


@dataclass(frozen=True)
class _Version:
    version_id: str
    label: str  # the staging label it was read under
    credentials: DbCredentials

    def describe(self) -> str:
        return f"version {self.version_id[:8]}, user {self.credentials.username!r}"


class _Driver(Protocol):
    def kwargs(self, credentials: DbCredentials) -> dict[str, Any]: ...

    def connect(self, credentials: DbCredentials, extra: dict[str, Any]) -> Any: ...


class _Postgres:
    """psycopg 3, with the rotation adapter's TLS parameters and error mapping."""

    # what the secret decides; a caller may not override it
    _OWNED = frozenset({"host", "hostaddr", "port", "user", "password", "passfile", "dbname",
                        "service", "sslmode", "sslrootcert", "gssencmode",
                        "ssl_min_protocol_version", "require_auth"})

    def __init__(self, ca_bundle: str | None) -> None:
        import psycopg  # here, not at import: the application may use the other engine

        from rotation.adapters._tls import libpq_security_params
        from rotation.adapters.postgres import _connect_error

        self._psycopg = psycopg
        self._connect_error = _connect_error
        self._security = libpq_security_params
        self._ca_bundle = ca_bundle
        self._by_mode: dict[str, dict[str, str]] = {}  # default_ca_file() looked up once

    def kwargs(self, credentials: DbCredentials) -> dict[str, Any]:
        security = self._by_mode.get(credentials.sslmode)
        if security is None:
            security = self._security(credentials.sslmode, self._ca_bundle)
            self._by_mode[credentials.sslmode] = security
        return {"host": credentials.host, "port": credentials.port,
                "user": credentials.username, "password": credentials.password,
                "dbname": credentials.dbname or "postgres",
                "connect_timeout": DEFAULT_CONNECT_TIMEOUT, **security}

    def connect(self, credentials: DbCredentials, extra: dict[str, Any]) -> Any:
        _refuse_owned(extra, self._OWNED)
        params = {**self.kwargs(credentials), **extra}
        try:
            return self._psycopg.connect(**params)
        except self._psycopg.ProgrammingError:
            raise  # a bad keyword argument of the caller's, named by psycopg
        except self._psycopg.Error as exc:
            timeout = params.get("connect_timeout")
            error = self._connect_error(
                exc, credentials, timeout if isinstance(timeout, int | float) else None)
        raise error  # outside the except block: no driver exception in __context__


class _MySQL:
    """PyMySQL, with the rotation adapter's SSLContext and error mapping."""

    # PyMySQL builds its own SSL settings from any ssl_* argument, dropping the context
    _OWNED = frozenset({"host", "port", "user", "password", "passwd", "database", "db",
                        "unix_socket", "defer_connect", "read_default_file",
                        "read_default_group", "ssl", "ssl_disabled", "ssl_ca", "ssl_cert",
                        "ssl_key", "ssl_key_password", "ssl_verify_cert", "ssl_verify_identity"})

    def __init__(self, ca_bundle: str | None) -> None:
        import pymysql.connections

        from rotation.adapters._tls import SslContexts
        from rotation.adapters.mysql.failures import greeting_of, map_connect_error

        self._pymysql = pymysql
        self._map = map_connect_error
        self._greeting = greeting_of
        self._contexts = SslContexts(ca_bundle)  # the CA file loaded once

    def kwargs(self, credentials: DbCredentials) -> dict[str, Any]:
        context = self._contexts.get(credentials.sslmode)
        kwargs: dict[str, Any] = {
            "host": credentials.host, "port": credentials.port, "user": credentials.username,
            # bytes: PyMySQL encodes a str password as Latin-1, the adapter sends UTF-8
            "password": credentials.password.encode("utf-8"),
            "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
        }
        if credentials.dbname:
            kwargs["database"] = credentials.dbname
        if context is None:
            kwargs["ssl_disabled"] = True
        else:
            kwargs["ssl"] = context
        return kwargs

    def connect(self, credentials: DbCredentials, extra: dict[str, Any]) -> Any:
        _refuse_owned(extra, self._OWNED)
        conn: Any = None
        try:
            # Deferred, as the adapter does: the greeting read before a refusal tells a wrong
            # password from a refusal that no other password gets past.
            conn = self._pymysql.connections.Connection(
                defer_connect=True, **{**self.kwargs(credentials), **extra})
            conn.connect()
        except (self._pymysql.err.Error, OSError, RuntimeError) as exc:
            error = self._map(exc, credentials, greeting=self._greeting(conn))
        else:
            return conn
        raise error  # outside the except block: no driver exception in __context__


_DRIVERS: dict[str, type[_Postgres] | type[_MySQL]] = {"postgres": _Postgres, "mysql": _MySQL}


def _refuse_owned(extra: dict[str, Any], owned: frozenset[str]) -> None:
    clash = owned.intersection(extra)
    if clash:
        raise TypeError(f"connect() got {', '.join(sorted(clash))}: the secret decides the "
                        "server, the user, the password, the database and TLS")


class RotatingCredentials:
    """Connections to the database of one Secrets Manager secret, through its rotations.

    ``secret_id``: the secret's name or ARN. ``client``: a boto3 Secrets Manager client (default:
    one built from the environment: region, credentials, ``AWS_ENDPOINT_URL_SECRETS_MANAGER``).
    ``ca_bundle``: PEM file of the CA(s) that verify the database's certificate (default:
    ``ROTATION_CA_BUNDLE``, else the machine's trust store). Thread-safe: make one per secret
    per process (after a fork, in the child), and share it.
    """

    #: seconds after every credential was refused during which refused logins fail without a
    #: Secrets Manager call
    cooldown: float = 10.0
    #: :meth:`connection_kwargs` logs in first when no login proved the credential this recently
    proof_interval: float = 0.5

    def __init__(self, secret_id: str, *, client: SecretsManagerClient | None = None,
                 ca_bundle: str | None = None) -> None:
        if not isinstance(secret_id, str) or not secret_id.strip():
            raise ConfigError("RotatingCredentials needs a secret name or ARN",
                              hint="pass the secret's name or ARN, e.g. prod/app/postgres")
        self.secret_id = secret_id
        self.ca_bundle = _ca_bundle(ca_bundle)
        self._client = client if client is not None else _default_client()
        self._lock = threading.Lock()  # reads of Secrets Manager and recoveries: one at a time
        self._prove_lock = threading.Lock()
        self._current: _Version | None = None
        self._versions: dict[str, _Version] = {}
        self._proven_at = -math.inf  # time.monotonic() of the last login that succeeded
        self._quiet_until = -math.inf
        self._gave_up: CredentialsRefusedError | None = None
        self._drivers: dict[str, _Driver] = {}
        self._stats: Counter[str] = Counter()

    def __repr__(self) -> str:
        current = self._current
        where = current.describe() if current else "not read yet"
        return f"<RotatingCredentials {self.secret_id} ({where})>"

    # -- the public API ------------------------------------------------------------------------

    def connect(self, **driver_kwargs: Any) -> Any:
        """An open DB-API connection for the secret's engine: a ``psycopg.Connection`` for
        ``postgres`` / ``aurora-postgresql``, a ``pymysql.connections.Connection`` for ``mysql``
        / ``mariadb`` / ``aurora-mysql``. ``driver_kwargs`` go to the driver (``autocommit``,
        ``row_factory``, ``cursorclass``, ``connect_timeout``, ...), except what the secret
        decides (host, user, password, database, TLS: TypeError).

        Raises the adapters' errors: :class:`~rotation.errors.TlsError`,
        :class:`~rotation.errors.ConnectError`, :class:`~rotation.errors.LoginError`,
        :class:`CredentialsRefusedError` when every label's password was refused, and
        :class:`~rotation.errors.AwsError` when Secrets Manager cannot be read."""
        version = self._current or self._load()
        try:
            conn = self._login(version, driver_kwargs)
        except PasswordRefusedError as exc:
            refusal = exc
        else:
            self._proven_at = time.monotonic()
            return conn
        return self._recover(version, refusal, driver_kwargs)

    def connection_kwargs(self) -> dict[str, Any]:
        """The driver's keyword arguments for the credential that logs in now (password
        included; PyMySQL's as UTF-8 bytes, with its ``ssl`` context), a new dict on each call:
        for pools and ORMs that take a callable (``psycopg_pool.ConnectionPool(kwargs=...)``).

        A pool cannot tell the client that a login with these was refused, so when no login
        proved the credential in the last :attr:`proof_interval` seconds, the client logs in
        once itself (refreshing, or falling back to ``AWSPENDING``, as :meth:`connect` does)
        before answering: a pool that retries a refused connection gets the credential that
        works. A pool opens connections rarely; so are these logins. Raises as :meth:`connect`.
        """
        if time.monotonic() - self._proven_at > self.proof_interval:
            self._prove()
        version = self._current or self._load()
        return self._driver(version.credentials).kwargs(version.credentials)

    def stats(self) -> dict[str, int]:
        """Counters since construction: ``secrets_manager_calls``, ``refreshes`` (a new
        ``AWSCURRENT`` adopted), ``fallbacks`` (``AWSPENDING`` adopted), ``refused`` (logins
        refused for a wrong password), ``gave_up`` and ``cooldown_refusals``."""
        with self._lock:
            return {name: self._stats[name] for name in (
                "secrets_manager_calls", "refreshes", "fallbacks", "refused", "gave_up",
                "cooldown_refusals")}

    # -- logging in ----------------------------------------------------------------------------

    def _driver(self, credentials: DbCredentials) -> _Driver:
        driver = self._drivers.get(credentials.family)
        if driver is None:
            factory = _DRIVERS.get(credentials.family)
            if factory is None:
                raise UnsupportedEngineError(
                    f"secret {self.secret_id} has engine {credentials.engine!r}, which "
                    "rotation.client cannot connect to",
                    hint="it connects to postgres, aurora-postgresql, mysql, mariadb and "
                         "aurora-mysql secrets")
            driver = self._drivers.setdefault(credentials.family, factory(self.ca_bundle))
        return driver

    def _login(self, version: _Version, driver_kwargs: dict[str, Any]) -> Any:
        return self._driver(version.credentials).connect(version.credentials, driver_kwargs)

    def _prove(self) -> None:
        with self._prove_lock:  # one proof at a time; the others use its result
            if time.monotonic() - self._proven_at <= self.proof_interval:
                return
            conn = self.connect()
            with contextlib.suppress(Exception):  # the login is what was to be proven
                conn.close()

    def _recover(self, refused: _Version, refusal: PasswordRefusedError,
                 driver_kwargs: dict[str, Any]) -> Any:
        """After ``refused``'s password was refused: another thread's newer credential, else
        (once per cooldown) AWSCURRENT re-read, then AWSPENDING. Returns a connection."""
        with self._lock:
            self._stats["refused"] += 1
            current = self._current
            if current is not None and current.version_id != refused.version_id:
                # Another thread moved on while this one logged in: no Secrets Manager call.
                conn, again = self._try(current, driver_kwargs)
                if again is None:
                    return conn
                refused, refusal = current, again
            if time.monotonic() < self._quiet_until and self._gave_up is not None:
                self._stats["cooldown_refusals"] += 1
                gave_up = self._gave_up
                raise CredentialsRefusedError(
                    f"{gave_up.message} (less than {self.cooldown:g} s ago; Secrets Manager is "
                    "not asked again before then)", hint=gave_up.hint,
                    driver_error=gave_up.driver_error, sqlstate=gave_up.sqlstate)
            tried = [f"{refused.label} ({refused.describe()}): refused"]
            seen = {refused.version_id}

            fresh = self._read(CURRENT)
            if fresh is not None and fresh.version_id not in seen:
                seen.add(fresh.version_id)
                conn, again = self._try(fresh, driver_kwargs)
                if again is None:
                    return self._adopt(fresh, conn, "refreshes")
                refusal = again
                tried.append(f"{CURRENT} re-read ({fresh.describe()}): refused")
            else:
                tried.append(f"{CURRENT} re-read: still version {refused.version_id[:8]}")

            pending = self._read(PENDING)
            if pending is None:
                tried.append(f"{PENDING}: none with a value")
                # finishSecret may have moved AWSCURRENT since the read above (the service
                # removes AWSPENDING right after it): one more look.
                fresh = self._read(CURRENT)
                if fresh is not None and fresh.version_id not in seen:
                    conn, again = self._try(fresh, driver_kwargs)
                    if again is None:
                        return self._adopt(fresh, conn, "refreshes")
                    refusal = again
                    tried.append(f"{CURRENT} re-read ({fresh.describe()}): refused")
            elif pending.version_id in seen:
                tried.append(f"{PENDING}: on version {pending.version_id[:8]}, already tried")
            else:
                conn, again = self._try(pending, driver_kwargs)
                if again is None:
                    return self._adopt(pending, conn, "fallbacks")
                refusal = again
                tried.append(f"{PENDING} ({pending.describe()}): refused")
            raise self._give_up(tried, refusal)

    def _try(self, version: _Version,
             driver_kwargs: dict[str, Any]) -> tuple[Any, PasswordRefusedError | None]:
        """(connection, None), or (None, the refusal) when the password was refused; any
        other failure raises: no other credential would get further."""
        try:
            conn = self._login(version, driver_kwargs)
        except PasswordRefusedError as exc:
            self._stats["refused"] += 1
            return None, exc
        self._proven_at = time.monotonic()
        return conn, None

    def _adopt(self, version: _Version, conn: Any, how: str) -> Any:
        self._current = version
        self._stats[how] += 1
        self._quiet_until = -math.inf
        if how == "fallbacks":
            log.warning("secret %s: AWSCURRENT was refused and AWSPENDING (%s) logs in: a "
                        "single-user rotation is between setSecret and finishSecret; using "
                        "AWSPENDING", self.secret_id, version.describe())
        else:
            log.info("secret %s: refreshed to AWSCURRENT %s", self.secret_id, version.describe())
        return conn

    def _give_up(self, tried: list[str], last: PasswordRefusedError) -> CredentialsRefusedError:
        error = CredentialsRefusedError(
            f"the database refused every credential of secret {self.secret_id}: "
            + "; ".join(tried) + f". Last answer: {last.message}",
            hint="check that the secret's password is the database's (changed outside "
                 "rotation?) and that the last rotation finished; `rotation doctor "
                 f"{self.secret_id}` checks both",
            driver_error=last.driver_error, sqlstate=last.sqlstate)
        self._stats["gave_up"] += 1
        self._gave_up = error
        self._quiet_until = time.monotonic() + self.cooldown
        log.warning("secret %s: every credential was refused (%s); no Secrets Manager call "
                    "for %g s", self.secret_id, "; ".join(tried), self.cooldown)
        return error

    # -- Secrets Manager -----------------------------------------------------------------------

    def _load(self) -> _Version:
        """The first read of AWSCURRENT (single flight)."""
        with self._lock:
            if self._current is None:
                version = self._read(CURRENT)
                if version is None:  # pragma: no cover - AWSCURRENT always has a value
                    raise SecretFormatError(f"secret {self.secret_id} has no AWSCURRENT value",
                                            secret_arn=self.secret_id)
                self._driver(version.credentials)  # an engine it cannot serve fails here
                self._current = version
                log.info("secret %s: read AWSCURRENT %s", self.secret_id, version.describe())
            return self._current

    def _read(self, stage: str) -> _Version | None:
        """The version holding ``stage`` (None for an AWSPENDING without a usable value).
        Called with the lock held."""
        self._stats["secrets_manager_calls"] += 1
        try:
            response = self._client.get_secret_value(SecretId=self.secret_id,
                                                     VersionStage=stage)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if stage == PENDING and code == "ResourceNotFoundException":
                return None  # no AWSPENDING, or the service's value-less placeholder
            error = _translate("GetSecretValue", self.secret_id, exc)
        except BotoCoreError as exc:
            error = AwsError(f"GetSecretValue on secret {self.secret_id} failed "
                             f"({type(exc).__name__})", code=type(exc).__name__,
                             hint="check the network path to Secrets Manager (VPC endpoint or "
                                  "NAT) and the AWS region")
        else:
            return self._version(stage, response)
        raise error  # outside the except block: no botocore exception in __context__

    def _version(self, stage: str, response: Mapping[str, Any]) -> _Version | None:
        version_id = str(response["VersionId"])
        known = self._versions.get(version_id)
        if known is not None:  # versions are immutable: parsed once
            if known.label != stage:  # labels move (AWSPENDING becomes AWSCURRENT)
                known = self._versions[version_id] = replace(known, label=stage)
            return known
        value = response.get("SecretString")
        arn = str(response.get("ARN") or self.secret_id)
        if value is None:
            if stage == PENDING:
                return None
            raise SecretFormatError(f"secret {self.secret_id} holds SecretBinary, not a JSON "
                                    "SecretString", secret_arn=arn,
                                    hint="store the credential as a JSON SecretString")
        _register_secret_values(value)
        try:
            credentials = parse_secret(value, arn)
        except SecretFormatError:
            if stage == PENDING:  # a broken pending value is no way out, but not the cause
                return None
            raise
        if credentials.sslmode == "disable":
            log.warning("secret %s disables TLS (%s): its connections are not encrypted",
                        self.secret_id, "ssl: false" if credentials.ssl_opt_out
                        else "sslmode disable")
        version = _Version(version_id, stage, credentials)
        self._versions[version_id] = version
        for old in list(self._versions)[:-_KEPT_VERSIONS]:
            if self._current is None or old != self._current.version_id:
                del self._versions[old]
        return version


def _ca_bundle(explicit: str | None) -> str | None:
    ca_bundle = explicit if explicit is not None else os.environ.get(CA_BUNDLE, "").strip()
    if not ca_bundle:
        return None
    if not os.path.isfile(ca_bundle):
        source = "ca_bundle" if explicit is not None else CA_BUNDLE
        raise ConfigError(f"{source} names {ca_bundle!r}, which is not a readable file",
                          hint="point it at the PEM bundle of the CA that signed the database "
                               "certificate (for RDS, the region's global bundle)")
    return ca_bundle


def _default_client() -> SecretsManagerClient:
    # The function's timeouts: Secrets Manager answers in milliseconds, and a refresh happens
    # while the application waits for a connection.
    client: SecretsManagerClient = aws_client("secretsmanager")
    return client

