"""Driver errors as the framework's errors, each with its fix (pure; PyMySQL only for
the greeting's capability flags).

Messages name the host, port and user, never a password or hash. Driver exceptions are
not chained (``__cause__`` and ``__context__`` stay empty): a server's message can quote the
statement (a syntax error quotes the text near the password), so the driver's text is only
included, scrubbed, for statements that carry no secret, and the error keeps the driver's class
name (``driver_error``) and the MySQL error number (``sqlstate``).

A refused login is a :class:`~rotation.errors.PasswordRefusedError` (the one refusal that makes
setSecret try other versions' passwords) only when the server said the password or user is
wrong: 1045, and on MariaDB 1698 (its answer to a wrong password when the account's plugin chain
ends in ``unix_socket``). Not when the secret disables TLS and the server offers it: MariaDB
before 11.4 under ``require_secure_transport``, and any account with ``REQUIRE SSL``, answer 1045
to the right password too (the server's greeting, read before the refusal, tells whether it
offers TLS). A locked or blocked account (3118, 4151, 4150, 3955), an expired password, a host
not allowed and exhausted connection limits are plain LoginError / ConnectError with their fix.
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from pymysql.constants import CLIENT

from rotation import _redact
from rotation.adapters.base import AdapterOptions
from rotation.adapters.mysql.server import Statement
from rotation.credentials import DbCredentials
from rotation.errors import (
    ConnectError,
    DatabaseError,
    DbTimeoutError,
    LoginError,
    PasswordRefusedError,
    PrivilegeError,
    TlsError,
)

TLS_HINT = ("set ROTATION_CA_BUNDLE to the CA that signed the server certificate (for RDS, the "
            "region's global bundle), or set sslmode in the secret")
NETWORK_HINT = ("check that the function's VPC subnets and security groups can reach the "
                "database port, and that `host` and `port` in the secret are right")
MASTER_PRIVILEGE_HINT = ("the master user needs CREATE USER, SELECT on mysql.*, and every "
                         "privilege it copies WITH GRANT OPTION (ADMIN OPTION for roles); on "
                         "MariaDB, copying a default role (SET DEFAULT ROLE ... FOR) also needs "
                         "UPDATE on mysql.*")


ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
ER_HOST_NOT_PRIVILEGED = 1130
ER_PASSWORD_NO_MATCH = 1133
ER_TABLEACCESS_DENIED = 1142
ER_COLUMNACCESS_DENIED = 1143
ER_USER_LIMIT_REACHED = 1226
ER_SPECIFIC_ACCESS_DENIED = 1227
ER_NOT_SUPPORTED_AUTH_MODE = 1251
ER_PROCACCESS_DENIED = 1370
ER_CANNOT_USER = 1396
ER_CANT_CREATE_USER_WITH_GRANT = 1410
ER_NONEXISTING_GRANT = 1141
ER_NO_PERMISSION_TO_CREATE_USER = 1211
ER_WRONG_STRING_LENGTH = 1470
ER_SYNTAX = 1064
ER_FUNCTION_NOT_EXISTS = 1305
ER_ACCESS_DENIED_NO_PASSWORD = 1698
ER_NOT_VALID_PASSWORD = 1819
ER_MUST_CHANGE_PASSWORD = 1820
ER_MUST_CHANGE_PASSWORD_LOGIN = 1862
ER_ACCOUNT_LOCKED = 3118
ER_SECURE_TRANSPORT_REQUIRED = 3159
ER_ROLE_NOT_GRANTED = 3530
ER_CREDENTIALS_CONTRADICT_TO_HISTORY = 3638
ER_INCORRECT_CURRENT_PASSWORD = 3891
ER_MISSING_CURRENT_PASSWORD = 3892
ER_PASSWORD_CANNOT_BE_RETAINED_ON_PLUGIN_CHANGE = 3894
ER_CURRENT_PASSWORD_CANNOT_BE_RETAINED = 3895
ER_MARIADB_ACCOUNT_LOCKED = 4151
ER_MARIADB_USER_BLOCKED = 4150  # max_password_errors reached
ER_ACCOUNT_BLOCKED_BY_PASSWORD_LOCK = 3955  # MySQL 8.0.19+ FAILED_LOGIN_ATTEMPTS
ER_CON_COUNT = 1040
ER_HOST_IS_BLOCKED = 1129
ER_SERVER_OFFLINE_MODE = 3032
CR_CONNECTION_ERROR = 2002
CR_CONN_HOST_ERROR = 2003
CR_UNKNOWN_HOST = 2005
CR_SERVER_GONE = 2006
CR_SERVER_LOST = 2013
CR_SSL_CONNECTION_ERROR = 2026
CR_AUTH_PLUGIN_CANNOT_LOAD = 2059
CR_AUTH_PLUGIN_ERR = 2061

PRIVILEGE_ERRNOS = frozenset({ER_DBACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_COLUMNACCESS_DENIED,
                              ER_SPECIFIC_ACCESS_DENIED, ER_PROCACCESS_DENIED,
                              ER_CANT_CREATE_USER_WITH_GRANT, ER_ROLE_NOT_GRANTED,
                              ER_NO_PERMISSION_TO_CREATE_USER})
_TIMEOUT_TEXT = re.compile(r"timed? ?out", re.IGNORECASE)
_TLS_TEXT = re.compile(r"\bSSL\b|\bTLS\b|certificate", re.IGNORECASE)


def errno_of(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return int(args[0])
    return None


def _driver_text(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    text = str(args[1]) if len(args) > 1 else str(exc)
    lines = text.strip().splitlines()
    return _redact.redact(lines[0] if lines else "")[:300]


def _kwargs(exc: BaseException) -> dict[str, Any]:
    errno = errno_of(exc)
    return {"driver_error": type(exc).__name__,
            "sqlstate": str(errno) if errno is not None else None}


@dataclass(frozen=True)
class Greeting:
    """What the server said before authentication: known even when the login fails."""

    version: str
    offers_tls: bool

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in self.version.lower()


def greeting_of(conn: Any) -> Greeting | None:
    """The greeting PyMySQL read (None when the connection failed before it)."""
    version = getattr(conn, "server_version", None)
    capabilities = getattr(conn, "server_capabilities", None)
    if not isinstance(version, str) or not isinstance(capabilities, int):
        return None
    return Greeting(version, bool(capabilities & CLIENT.SSL))


def _access_denied(errno: int, credentials: DbCredentials, greeting: Greeting | None,
                   kwargs: dict[str, Any]) -> DatabaseError:
    """1045 / 1698: PasswordRefusedError only where a wrong password is what the server can
    mean; otherwise a plain LoginError, since trying other passwords cannot help."""
    where = f"{credentials.host}:{credentials.port}"
    user = credentials.username
    if credentials.sslmode == "disable" and (greeting is None or greeting.offers_tls):
        # A server that requires TLS (MariaDB's require_secure_transport before 11.4, or an
        # account with REQUIRE SSL) refuses a plaintext login with this same answer, right
        # password or not: no other version's password would get further.
        return LoginError(
            f"access denied for user {user!r} at {where} over an unencrypted connection (the "
            "secret disables TLS, and the server offers it)",
            hint="servers with require_secure_transport=ON (MariaDB before 11.4) and accounts "
                 "with REQUIRE SSL refuse plaintext logins with this same error: remove `ssl: "
                 "false` / `sslmode: disable` from the secret; otherwise check the password and "
                 "user", **kwargs)
    if errno == ER_ACCESS_DENIED_NO_PASSWORD and not (greeting and greeting.is_mariadb):
        # MySQL: the account's plugin took no password (auth_socket and the like).
        return LoginError(f"access denied for user {user!r} at {where}: the account "
                          "authenticates without a password (auth_socket or a similar plugin)",
                          hint="rotate only accounts that log in with a password", **kwargs)
    extra = ""
    if errno == ER_ACCESS_DENIED_NO_PASSWORD:
        # MariaDB answers a wrong password so when the account's plugin chain ends in one
        # without a password ("... OR unix_socket"); a user name unknown for this host too.
        extra = ("; MariaDB gives this answer for a wrong password when the account's plugin "
                 "chain ends in one without a password (`... OR unix_socket`), and for a "
                 "socket-only account")
    return PasswordRefusedError(
        f"access denied for user {user!r} at {where}: wrong password or user name{extra}",
        hint="check the password in the secret, and that the account exists for the host the "
             "function connects from (an account that REQUIREs X509, ISSUER or SUBJECT needs "
             "a client certificate, which this function does not send, and gets the same "
             "answer)", **kwargs)


def map_connect_error(exc: BaseException, credentials: DbCredentials,
                      options: AdapterOptions | None = None, *,
                      greeting: Greeting | None = None) -> DatabaseError:
    """The framework error for a failed login (PyMySQL error, OSError or RuntimeError).
    ``greeting`` (the server's version and whether it offers TLS, read before the login was
    refused) tells a wrong password from a refusal no password fixes where the errno alone
    cannot."""
    where = f"{credentials.host}:{credentials.port}"
    user = credentials.username
    timeout = options.connect_timeout if options else None
    kwargs = _kwargs(exc)
    errno = errno_of(exc)
    original = getattr(exc, "original_exception", None)
    if isinstance(exc, OSError) and original is None:
        original = exc
    if isinstance(original, ssl.SSLCertVerificationError):
        reason = getattr(original, "verify_message", None) or "certificate verify failed"
        return TlsError(f"TLS certificate verification failed for {where}: {reason}",
                        hint=TLS_HINT, **kwargs)
    if isinstance(original, ssl.SSLError):
        reason = getattr(original, "reason", None) or original.strerror or type(original).__name__
        return TlsError(f"the TLS handshake with {where} failed: {reason}", hint=TLS_HINT,
                        **kwargs)
    if isinstance(original, TimeoutError):
        within = f" within {timeout:g}s" if timeout else ""
        return DbTimeoutError(f"no answer from {where}{within}", hint=NETWORK_HINT, **kwargs)
    if isinstance(original, ConnectionRefusedError):
        return ConnectError(f"{where} refused the connection", hint=NETWORK_HINT, **kwargs)
    if isinstance(original, socket.gaierror):
        return ConnectError(f"the host name {credentials.host!r} does not resolve",
                            hint="check `host` in the secret, and the VPC's DNS settings",
                            **kwargs)
    if isinstance(original, OSError):
        reason = original.strerror or type(original).__name__
        return ConnectError(f"cannot reach {where}: {reason}", hint=NETWORK_HINT, **kwargs)
    if isinstance(exc, RuntimeError) and "nacl" in str(exc).lower():
        return LoginError(f"user {user!r} at {where} authenticates with ed25519, which needs "
                          "the PyNaCl package", hint="add pynacl to the MySQL driver layer",
                          **kwargs)
    if errno in (ER_ACCESS_DENIED, ER_ACCESS_DENIED_NO_PASSWORD):
        return _access_denied(errno, credentials, greeting, kwargs)
    if errno == ER_SECURE_TRANSPORT_REQUIRED:
        return TlsError(f"{where} refuses unencrypted connections (require_secure_transport), "
                        "and the secret disables TLS",
                        hint="remove `ssl: false` / `sslmode: disable` from the secret", **kwargs)
    if errno == CR_SSL_CONNECTION_ERROR:
        return TlsError(f"{where} does not offer TLS, which sslmode {credentials.sslmode} "
                        "requires", hint="enable TLS on the server; " + TLS_HINT, **kwargs)
    if errno == ER_DBACCESS_DENIED:
        return PrivilegeError(f"user {user!r} may not use database {credentials.dbname!r} at "
                              f"{where}", hint="fix `dbname` in the secret, or grant the user "
                                               "access to it", **kwargs)
    if errno == ER_BAD_DB:
        return DatabaseError(f"database {credentials.dbname!r} does not exist at {where}",
                             hint="fix `dbname` in the secret", **kwargs)
    if errno == ER_HOST_NOT_PRIVILEGED:
        return LoginError(f"user {user!r} may not connect to {where} from the function's "
                          "address", hint="create the account for the function's host "
                                          "(for example 'user'@'%')", **kwargs)
    if errno in (ER_ACCOUNT_LOCKED, ER_MARIADB_ACCOUNT_LOCKED):
        return LoginError(f"the account of user {user!r} at {where} is locked",
                          hint="unlock it: ALTER USER ... ACCOUNT UNLOCK", **kwargs)
    if errno in (ER_MARIADB_USER_BLOCKED, ER_ACCOUNT_BLOCKED_BY_PASSWORD_LOCK):
        return LoginError(f"the account of user {user!r} at {where} is blocked after too many "
                          "failed logins", hint="find what logs in with a wrong password; "
                                                "unblock it with ALTER USER ... ACCOUNT UNLOCK "
                                                "(MariaDB: or FLUSH PRIVILEGES)", **kwargs)
    if errno in (ER_MUST_CHANGE_PASSWORD_LOGIN, ER_MUST_CHANGE_PASSWORD):
        return LoginError(f"the password of user {user!r} at {where} has expired",
                          hint="set a new password by hand, then put it in the secret",
                          **kwargs)
    if errno in (ER_NOT_SUPPORTED_AUTH_MODE, CR_AUTH_PLUGIN_CANNOT_LOAD):
        return LoginError(f"user {user!r} at {where} uses an authentication plugin PyMySQL "
                          "does not support", hint="use mysql_native_password or "
                                                   "caching_sha2_password", **kwargs)
    if errno == CR_AUTH_PLUGIN_ERR:
        return TlsError(f"the authentication plugin of user {user!r} at {where} needs a "
                        "secure connection", hint="do not disable TLS in the secret", **kwargs)
    if errno == ER_USER_LIMIT_REACHED:
        return ConnectError(f"user {user!r} at {where} has reached a resource limit: "
                            f"{_driver_text(exc)}",
                            hint="the account's MAX_USER_CONNECTIONS / MAX_CONNECTIONS_PER_HOUR "
                                 "(or max_user_connections) is used up: wait, or raise it with "
                                 "ALTER USER ... WITH ...", **kwargs)
    if errno == ER_CON_COUNT:
        return ConnectError(f"{where} refused the connection: {_driver_text(exc)}",
                            hint="the server's max_connections is reached: close idle "
                                 "connections or raise it", **kwargs)
    if errno == ER_HOST_IS_BLOCKED:
        return ConnectError(f"{where} refused the connection: {_driver_text(exc)}",
                            hint="the function's address is blocked after too many connection "
                                 "errors (max_connect_errors): FLUSH HOSTS", **kwargs)
    if errno == ER_SERVER_OFFLINE_MODE:
        return ConnectError(f"{where} is in offline mode", hint="wait for the server to leave "
                                                                "offline_mode", **kwargs)
    if errno in (CR_SERVER_LOST, CR_SERVER_GONE, CR_CONN_HOST_ERROR, CR_CONNECTION_ERROR,
                 CR_UNKNOWN_HOST):
        text = _driver_text(exc)
        if _TIMEOUT_TEXT.search(text):
            return DbTimeoutError(f"no answer from {where} in time", hint=NETWORK_HINT, **kwargs)
        if errno != CR_SERVER_LOST and _TLS_TEXT.search(text):
            return TlsError(f"TLS with {where} failed: {text}", hint=TLS_HINT, **kwargs)
        return ConnectError(f"lost the connection to {where} while logging in as {user!r}",
                            hint=NETWORK_HINT, **kwargs)
    return DatabaseError(f"login to {where} as {user!r} failed: {_driver_text(exc)}", **kwargs)


def map_statement_error(exc: BaseException, statement: Statement, where: str,
                        *, dual_password: bool = False) -> DatabaseError:
    """The framework error for a failed statement. The driver's text is included (scrubbed)
    only when the statement carries no secret."""
    kwargs = _kwargs(exc)
    errno = errno_of(exc)
    what = f"could not {statement.action or 'run a statement'} on {where}"
    detail = "" if statement.carries_secret else f": {_driver_text(exc)}"
    if errno in PRIVILEGE_ERRNOS or errno in (ER_ACCESS_DENIED, ER_ACCESS_DENIED_NO_PASSWORD):
        # MariaDB answers GRANT of a role without ADMIN OPTION with 1698 "access denied"
        hint = MASTER_PRIVILEGE_HINT
        if dual_password and errno == ER_SPECIFIC_ACCESS_DENIED:
            hint = ("with dual passwords, a user changing its own password needs the "
                    "APPLICATION_PASSWORD_ADMIN privilege: grant it, or add `masterarn` to the "
                    "secret so that a master user with CREATE USER changes it; or use "
                    "alternating users")
        return PrivilegeError(f"{what}: the logged-in user lacks a privilege{detail}",
                              hint=hint, **kwargs)
    if errno in (ER_PASSWORD_NO_MATCH, ER_NONEXISTING_GRANT):
        return DatabaseError(f"{what}: the account does not exist",
                             hint="check `username` in the secret", **kwargs)
    if errno == ER_NOT_VALID_PASSWORD:
        return DatabaseError(f"{what}: the new password does not satisfy the server's password "
                             "policy", hint="adjust PASSWORD_LENGTH / EXCLUDE_* so generated "
                                            "passwords satisfy validate_password", **kwargs)
    if errno == ER_CREDENTIALS_CONTRADICT_TO_HISTORY:
        if dual_password:
            return DatabaseError(
                f"{what}: the server's password history refuses setting the current password "
                "again, which dual passwords need when the account's stored passwords cannot "
                "be matched (caching_sha2_password, or a state changed outside rotation)",
                hint="exempt the account from password history (ALTER USER ... PASSWORD HISTORY "
                     "0 PASSWORD REUSE INTERVAL 0), or use mysql_native_password, or "
                     "ROTATION_STRATEGY=alternating-users", **kwargs)
        return DatabaseError(f"{what}: the server's password history refuses this password",
                             hint="the password was used before; let the rotation generate a "
                                  "new one", **kwargs)
    if errno in (ER_MISSING_CURRENT_PASSWORD, ER_INCORRECT_CURRENT_PASSWORD):
        return PrivilegeError(f"{what}: the account requires its current password to change it "
                              "(PASSWORD REQUIRE CURRENT)",
                              hint="ALTER USER ... PASSWORD REQUIRE CURRENT OPTIONAL, or let a "
                                   "master user change it (alternating users)", **kwargs)
    if errno in (ER_CURRENT_PASSWORD_CANNOT_BE_RETAINED,
                 ER_PASSWORD_CANNOT_BE_RETAINED_ON_PLUGIN_CHANGE):
        return DatabaseError(f"{what}: the server cannot retain the current password (it is "
                             "empty, or the plugin changes)",
                             hint="rotate this account with ROTATION_STRATEGY=single-user or "
                                  "alternating-users (dual passwords need a non-empty current "
                                  "password and an unchanged plugin)", **kwargs)
    if errno == ER_WRONG_STRING_LENGTH:
        return DatabaseError(f"{what}: a name is too long for this server (user names: 32 "
                             "characters on MySQL 5.7.8 and later, 16 before, 80 on MariaDB)",
                             hint="use a shorter user name", **kwargs)
    if errno == ER_MUST_CHANGE_PASSWORD:
        return LoginError(f"{what}: the password of the logged-in user has expired (the "
                          "server allows nothing but setting a new one)",
                          hint="set a new password by hand, then put it in the secret",
                          **kwargs)
    if errno == ER_USER_LIMIT_REACHED:
        return DatabaseError(f"{what}: the logged-in user has reached a resource limit "
                             "(MAX_QUERIES_PER_HOUR / MAX_UPDATES_PER_HOUR)",
                             hint="wait for the hour to pass, or raise the account's limit "
                                  "with ALTER USER ... WITH ...", **kwargs)
    if errno == ER_CANNOT_USER:
        return DatabaseError(f"{what}: the server refused the account change{detail}",
                             hint="check that the account exists (or not, for a new one)",
                             **kwargs)
    if errno == ER_SYNTAX:
        return DatabaseError(f"{what}: the server did not accept the statement's syntax{detail}",
                             hint="report this as a bug, with the server version", **kwargs)
    if errno in (CR_SERVER_LOST, CR_SERVER_GONE):
        text = _driver_text(exc)
        if _TIMEOUT_TEXT.search(text):
            return DbTimeoutError(f"{what}: no answer in time",
                                  hint="the statement timeout is AdapterOptions."
                                       "statement_timeout; check for locks on mysql.*",
                                  **kwargs)
        return ConnectError(f"{what}: the connection was lost", hint=NETWORK_HINT, **kwargs)
    return DatabaseError(f"{what}{detail}", **kwargs)


__all__ = [
    "MASTER_PRIVILEGE_HINT",
    "NETWORK_HINT",
    "PRIVILEGE_ERRNOS",
    "TLS_HINT",
    "Greeting",
    "errno_of",
    "greeting_of",
    "map_connect_error",
    "map_statement_error",
]
