"""Redis adapter (redis-py; engine ``redis``): self-managed Redis 6+ with ACL users.

* Login: ``AUTH <user> <password>`` (RESP2, one attempt: redis-py's retries are off) over TLS,
  ``verify-full`` unless the secret says otherwise, with the same :class:`ssl.SSLContext` per
  sslmode as the MySQL adapter (:func:`rotation.adapters._tls.make_ssl_context`): the CA comes from
  ``ROTATION_CA_BUNDLE`` (then the only trust store) or the machine's store. ``disable`` is plain
  TCP and only when the secret says so; there is never a retry without TLS. The test of a login
  is ``PING``.
* Passwords reach the server only as SHA-256 hashes computed here: ``ACL SETUSER <user>
  resetpass #<hex>`` (single user), ``resetpass #<hex of the kept> #<hex of the new>`` (dual
  passwords: the one before is dropped at the next setSecret). So the plaintext is in no command
  the server sees: not in MONITOR, SLOWLOG, ACL LOG or a command log, on any Redis version.
* Alternating users: the clone gets the source's ACL rules (the source's ``ACL LIST`` line less
  its passwords) in one ``ACL SETUSER <clone> reset <rules...> #<hex>``, which Redis applies
  atomically: whatever the clone held before, its rules then equal the source's, both ways.
* Every argument is a protocol argument of its own (redis-py's ``send_command``), never a
  string built from user input. User names with whitespace or control characters are refused
  (Redis refuses spaces; ``ACL SETUSER`` would otherwise create a user by accident).
* Waits are bounded: the TCP connect, TLS handshake and ``AUTH`` by ``connect_timeout``, each
  command by ``statement_timeout``, both cut to what is left of the invocation.

What the users need (Redis has no command that changes only one's own password):

* single user and dual passwords: the user changes itself, so it needs ``+acl|setuser`` (and
  ``+ping``), which lets it change any user: give the application a user of its own, or rotate
  it with alternating users from a master;
* alternating users: the master needs ``+acl|setuser``, ``+acl|list`` and ``+acl|getuser``
  (``+@admin`` holds them); the users need ``+ping``.

ACL users are per server: with replicas, Sentinel or Cluster every node has its own ACL, and
this adapter changes the node at ``host`` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar

import redis.connection
import redis.exceptions

from rotation import _redact
from rotation.adapters._tls import SslContexts
from rotation.adapters.base import AdapterOptions, time_left
from rotation.credentials import DbCredentials, SslMode
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

log = logging.getLogger(__name__)

CLONE_SUFFIX = "_clone"
#: Redis sets no limit on user names; this keeps them within what a secret may hold
#: (rotation.credentials.MAX_NAME_LENGTH) and leaves room for ``_clone``.
MAX_USERNAME_LENGTH = 128
#: Rules of an ``ACL LIST`` line that hold or reset passwords: never copied to a clone.
PASSWORD_RULES = ("nopass", "resetpass")
PASSWORD_PREFIXES = ("#", "!", ">", "<")

_TLS_HINT = ("set ROTATION_CA_BUNDLE to the PEM of the CA that signed the server certificate "
             "(tls-ca-cert-file on the server), or set `sslmode` in the secret")
_NETWORK_HINT = ("check that the function's subnets and security groups can reach the Redis "
                 "port, and that `host` and `port` in the secret are right (the TLS port: "
                 "tls-port)")
_REFUSED_HINT = ("Redis says the user name or password is wrong, or the user is off (Redis "
                 "answers the same for both): check the secret against the server's ACL "
                 "(ACL GETUSER); the password may have been changed outside rotation")
_SETUSER_HINT = ("the logged-in user needs `+acl|setuser` to change passwords (Redis has no "
                 "command for one's own password only): ACL SETUSER {user} +acl|setuser, or "
                 "rotate with alternating users from a master user")
_MASTER_HINT = ("the master user needs `+acl|setuser`, `+acl|list` and `+acl|getuser` "
                "(+@admin holds them)")
_PING_HINT = ("the user needs `+ping` (or +@connection) for the login test: ACL SETUSER {user} "
              "+ping")
_RETRIED = "; Secrets Manager retries the step"


# --------------------------------------------------------------------------------------------
# Names, hashes and ACL rules (no I/O)
# --------------------------------------------------------------------------------------------

def password_hash(password: str) -> str:
    """What Redis stores for ``password``: the hex SHA-256 of its UTF-8 bytes. ``#<hex>`` adds
    it to a user, ``!<hex>`` removes it; the server never needs the plaintext."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def check_username(username: str, what: str = "username") -> None:
    """Refuse a user name Redis would refuse (spaces, NUL), or that could not be told apart in
    ``ACL LIST`` (any whitespace or control character), before anything is sent."""
    if not username:
        raise SecretFormatError(f"the {what} is empty", key="username",
                                hint="set `username` in the secret")
    bad = [c for c in username if c.isspace() or ord(c) < 32 or ord(c) == 127]
    if bad:
        raise SecretFormatError(
            f"the {what} {username[:40]!r} contains whitespace or a control character, which "
            "Redis user names cannot hold", key="username",
            hint="use a Redis user name without spaces or control characters")
    if len(username) > MAX_USERNAME_LENGTH:
        raise SecretFormatError(
            f"the {what} {username[:20]!r}... is longer than {MAX_USERNAME_LENGTH} characters",
            key="username", hint="use a shorter user name")


def clone_username(username: str) -> str:
    """``username + "_clone"`` (AWS's suffix), or past the length limit the start of the name,
    ``_``, 6 hex digits of its SHA-256 and ``_clone``: distinct for long names sharing a prefix."""
    name = username + CLONE_SUFFIX
    if len(name) <= MAX_USERNAME_LENGTH:
        return name
    digest = hashlib.sha256(username.encode()).hexdigest()[:6]
    keep = MAX_USERNAME_LENGTH - len(CLONE_SUFFIX) - 1 - len(digest)
    return f"{username[:keep]}_{digest}{CLONE_SUFFIX}"


def split_acl_rules(text: str) -> list[str]:
    """The rules of an ``ACL LIST`` line (or of its part after the user name), split the way
    Redis splits an ACL file line: on spaces, with a selector ``(...)`` kept as one rule."""
    rules: list[str] = []
    selector: list[str] | None = None
    for token in text.split(" "):
        if not token:
            continue
        if selector is not None:
            selector.append(token)
            if token.endswith(")"):
                rules.append(" ".join(selector))
                selector = None
        elif token.startswith("(") and not token.endswith(")"):
            selector = [token]
        else:
            rules.append(token)
    if selector is not None:
        rules.append(" ".join(selector))
    return rules


def acl_line_rules(lines: Sequence[str], username: str) -> list[str] | None:
    """The rules of ``username`` in ``ACL LIST`` output (``user <name> <rules...>``), or None
    when there is no such user."""
    prefix = f"user {username} "
    for line in lines:
        if line.startswith(prefix) or line == prefix.rstrip():
            return split_acl_rules(line[len(prefix):])
    return None


def without_passwords(rules: Sequence[str]) -> list[str]:
    """``rules`` less every rule that holds or resets a password (``#<hex>``, ``>pw``, ``nopass``
    ...): what a clone copies from its source."""
    return [rule for rule in rules
            if rule not in PASSWORD_RULES and not rule.startswith(PASSWORD_PREFIXES)]


def clone_setuser_args(clone: str, source_rules: Sequence[str], clone_hash: str) -> list[str]:
    """``ACL SETUSER`` arguments that make ``clone`` exactly the source (``reset``, then the
    source's rules less its passwords) with the password whose hash is ``clone_hash``."""
    return ["ACL", "SETUSER", clone, "reset", *without_passwords(source_rules), f"#{clone_hash}"]


# --------------------------------------------------------------------------------------------
# The connection: redis-py's, with this adapter's TLS context
# --------------------------------------------------------------------------------------------

class _Connection(redis.connection.Connection):
    """A redis-py connection whose TLS comes from the adapter's :class:`ssl.SSLContext` (None:
    plain TCP). redis-py's own SSLConnection builds a context that trusts the machine's store
    *besides* a given CA file; ``ROTATION_CA_BUNDLE`` must be the only trust store."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None, **kwargs: Any) -> None:
        self.ssl_context = ssl_context
        self.tcp_connected = False
        self.tls_failure: ssl.SSLError | None = None
        self.wire: socket.socket | None = None
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    def _connect(self) -> socket.socket:
        sock: socket.socket = super()._connect()  # type: ignore[no-untyped-call]
        self.tcp_connected = True
        if self.ssl_context is None:
            self.wire = sock
            return sock
        try:
            wrapped = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLError as exc:
            sock.close()
            self.tls_failure = exc
            raise
        except OSError:
            sock.close()
            raise
        self.wire = wrapped
        return wrapped

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        self.wire = None
        super().disconnect(*args, **kwargs)  # type: ignore[no-untyped-call]

    def set_timeout(self, seconds: float) -> None:
        """Bound the next reads and writes (redis-py reads the socket's own timeout)."""
        if self.wire is not None:
            self.wire.settimeout(seconds)


# --------------------------------------------------------------------------------------------
# Session and adapter
# --------------------------------------------------------------------------------------------

class RedisSession:
    """An authenticated connection. Each command is bounded by ``statement_timeout`` seconds,
    cut to what is left of the invocation."""

    def __init__(self, conn: _Connection, credentials: DbCredentials,
                 statement_timeout: float = AdapterOptions.statement_timeout) -> None:
        self._conn: _Connection | None = conn
        self._where = f"{credentials.host}:{credentials.port}"
        self._login_user = credentials.username
        self._statement_timeout = statement_timeout

    def __repr__(self) -> str:
        return f"<RedisSession {self._login_user!r} at {self._where}>"

    def __enter__(self) -> RedisSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                conn.disconnect()

    # -- the DatabaseSession methods ---------------------------------------------------------

    def ping(self) -> None:
        answer = self.command("PING")
        if _text(answer) != "PONG":
            raise DatabaseError(f"PING on {self._where} answered {_text(answer)[:40]!r}",
                                hint="check that `host` and `port` are a Redis server")

    def set_password(self, username: str, password: str) -> None:
        """``ACL SETUSER <user> resetpass #<hex>``: afterwards ``password`` is the user's only
        password. Idempotent. Another user than the logged-in one must exist (ACL SETUSER would
        create it)."""
        check_username(username)
        self._require_user(username)
        digest = password_hash(password)
        _redact.register(password, digest)
        self.command("ACL", "SETUSER", username, "resetpass", f"#{digest}")

    def add_password(self, username: str, password: str, keep: str) -> None:
        """Dual passwords: ``ACL SETUSER <user> resetpass #<hex of keep> #<hex of password>``,
        one atomic command. Afterwards exactly ``keep`` and ``password`` log in; the password
        retained by the rotation before is gone. Running it again changes nothing, and ``keep``
        works throughout."""
        check_username(username)
        self._require_user(username)
        kept, added = password_hash(keep), password_hash(password)
        _redact.register(password, keep, kept, added)
        hashes = [f"#{kept}"] if kept == added else [f"#{kept}", f"#{added}"]
        self.command("ACL", "SETUSER", username, "resetpass", *hashes)

    def sync_clone(self, source_username: str, clone_username: str, password: str) -> None:
        """Create or update ``clone_username`` with the source's ACL rules (commands, keys,
        channels, selectors, on/off) and the hash of ``password``, in one atomic ``ACL
        SETUSER <clone> reset <rules...> #<hex>``: rules the clone held and the source does not
        are gone, and a failed command changes nothing. When the clone already has the source's
        rules, only its password is set (``resetpass #<hex>``). Idempotent."""
        check_username(source_username, "source username")
        check_username(clone_username, "clone username")
        if source_username == clone_username:
            raise SecretFormatError("the clone user has the same name as the source user",
                                    key="username", hint="use a different name for the clone")
        lines = [_text(line) for line in self._master_command("ACL", "LIST") or []]
        source = acl_line_rules(lines, source_username)
        if source is None:
            raise DatabaseError(f"user {source_username!r} does not exist at {self._where}",
                                hint="check `username` in the secret (ACL LIST)")
        digest = password_hash(password)
        _redact.register(password, digest)
        clone = acl_line_rules(lines, clone_username)
        if clone is not None and without_passwords(clone) == without_passwords(source):
            self._master_command("ACL", "SETUSER", clone_username, "resetpass", f"#{digest}")
            return
        self._master_command(*clone_setuser_args(clone_username, source, digest))
        log.info("user %s %s with the ACL rules of %s", clone_username,
                 "created" if clone is None else "synced", source_username)

    def discard_old_password(self, username: str) -> None:
        """Nothing to do: with dual passwords the retained one is dropped by the next
        :meth:`add_password`."""

    # -- commands ------------------------------------------------------------------------------

    def command(self, *args: str) -> Any:
        """Run one command (each argument a protocol argument of its own) within the session's
        budget; its reply. Raises the framework's errors, never a driver's."""
        conn = self._conn
        what = " ".join(args[:2]) if args[0] == "ACL" else args[0]
        if conn is None or not conn.is_connected:
            raise DatabaseError(f"the session to {self._where} is closed",
                                hint="open a new session" + _RETRIED)
        timeout = time_left(self._statement_timeout, f"a command on {self._where}")
        try:
            conn.set_timeout(timeout)
            conn.send_command(*args, check_health=False)  # type: ignore[no-untyped-call]
            reply = conn.read_response()
        except (redis.exceptions.RedisError, OSError) as exc:
            error = _command_error(exc, what, self._where, self._login_user, timeout)
        else:
            return reply
        if isinstance(error, ConnectError):
            self.close()
        raise error  # outside the except block: no driver exception in __context__

    def _master_command(self, *args: str) -> Any:
        try:
            return self.command(*args)
        except PrivilegeError as exc:
            exc.hint = _MASTER_HINT
            raise

    def _require_user(self, username: str) -> None:
        if username == self._login_user:
            return  # it just logged in
        if self._master_command("ACL", "GETUSER", username) is None:
            raise DatabaseError(f"user {username!r} does not exist at {self._where}",
                                hint="check `username` in the secret (ACL LIST)")


class RedisAdapter:
    """Engine ``redis``: Redis 6+ ACL users (and servers that speak the same ACL commands)."""

    family: ClassVar[str] = "redis"
    max_username_length: ClassVar[int] = MAX_USERNAME_LENGTH

    def __init__(self, options: AdapterOptions) -> None:
        self.options = options
        self._contexts = SslContexts(options.ca_bundle)

    def __repr__(self) -> str:
        return f"<RedisAdapter ca_bundle={self.options.ca_bundle!r}>"

    def prepare(self) -> None:
        """Lambda's init phase: build the verify-full TLS context before the first step."""
        self.ssl_context("verify-full")

    def ssl_context(self, sslmode: SslMode) -> ssl.SSLContext | None:
        """The (cached) SSLContext for ``sslmode``; None for ``disable``."""
        return self._contexts.get(sslmode)

    def connect(self, credentials: DbCredentials) -> RedisSession:
        """One ``AUTH`` over TLS; PasswordRefusedError (WRONGPASS) / LoginError / TlsError /
        ConnectError / DbTimeoutError on failure. No retry, and never a retry without TLS."""
        check_username(credentials.username)
        _redact.register(credentials.password)
        where = f"{credentials.host}:{credentials.port}"
        login = time_left(self.options.connect_timeout, f"a login to {where}")
        conn = _Connection(
            ssl_context=self.ssl_context(credentials.sslmode),
            host=credentials.host, port=credentials.port,
            username=credentials.username, password=credentials.password,
            socket_connect_timeout=login, socket_timeout=login,
            protocol=2,  # AUTH <user> <password>, not HELLO 3 AUTH
            driver_info=None,  # no CLIENT SETINFO after the login
            retry=None, retry_on_error=[], retry_on_timeout=False, health_check_interval=0)
        try:
            conn.connect()  # type: ignore[no-untyped-call]
        except (redis.exceptions.RedisError, OSError) as exc:
            error = _connect_error(exc, conn, credentials, login)
        else:
            conn.password = None  # kept by redis-py for reconnects, which never happen here
            return RedisSession(conn, credentials, self.options.statement_timeout)
        conn.disconnect()
        raise error  # outside the except block: no driver exception in __context__

    def clone_username(self, username: str) -> str:
        return clone_username(username)

    def supports_dual_password(self, engine: str) -> bool:
        """Every Redis with ACLs holds several passwords per user."""
        del engine
        return True


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _driver_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return _redact.redact(text[-1] if text else type(exc).__name__)[:300]


def _driver_name(exc: BaseException) -> str:
    module = "ssl" if isinstance(exc, ssl.SSLError) else \
        "redis" if isinstance(exc, redis.exceptions.RedisError) else "socket"
    return f"{module}.{type(exc).__name__}"


def _connect_error(exc: BaseException, conn: _Connection, credentials: DbCredentials,
                   timeout: float) -> DatabaseError:
    where = f"{credentials.host}:{credentials.port}"
    who = f"{credentials.username!r} on {where}"
    driver_error = _driver_name(exc)
    if conn.tls_failure is not None:
        failure = conn.tls_failure
        reason = getattr(failure, "verify_message", None) or getattr(failure, "reason", None) \
            or _driver_text(failure)
        hint = _TLS_HINT
        if "WRONG_VERSION_NUMBER" in str(failure).upper():
            hint = ("the port answered without TLS: point `port` at the server's tls-port, or "
                    "turn TLS on in the server; the adapter logs in without TLS only when the "
                    "secret says `sslmode: disable`")
        return TlsError(f"TLS to {where} failed (sslmode {credentials.sslmode}): {reason}",
                        hint=hint, driver_error=_driver_name(failure))
    if isinstance(exc, redis.exceptions.AuthenticationError):
        text = _driver_text(exc)
        if "NOAUTH" in text.upper() or "NOAUTH" in str(getattr(exc, "status_code", "")):
            return LoginError(f"the database refused the login of {who}: {text}",
                              hint="the server asks for a password before AUTH: check that it "
                                   "is Redis 6 or newer with ACL users",
                              driver_error=driver_error, sqlstate="NOAUTH")
        return PasswordRefusedError(f"the database refused the login of {who}: {text}",
                                    hint=_REFUSED_HINT, driver_error=driver_error,
                                    sqlstate="WRONGPASS")
    if isinstance(exc, redis.exceptions.TimeoutError | socket.timeout):
        return DbTimeoutError(f"no answer from {where} to the login within {timeout:g} s",
                              hint=_NETWORK_HINT + ", and that the server is not overloaded",
                              driver_error=driver_error)
    if isinstance(exc, redis.exceptions.ResponseError):
        return LoginError(f"the database refused the login of {who}: {_driver_text(exc)}",
                          hint="the server refused AUTH <user> <password>: it needs Redis 6 "
                               "or newer with ACL users", driver_error=driver_error)
    if credentials.sslmode == "disable" and conn.tcp_connected:
        return TlsError(f"{where} closed the connection at the login without TLS: "
                        f"{_driver_text(exc)}",
                        hint="the server takes TLS connections only: remove `ssl: false` / "
                             "`sslmode: disable` from the secret and use its tls-port",
                        driver_error=driver_error)
    if conn.tcp_connected:
        return ConnectError(f"the connection to {where} was lost during the login: "
                            f"{_driver_text(exc)}", hint=_NETWORK_HINT + _RETRIED,
                            driver_error=driver_error)
    return ConnectError(f"cannot connect to {where}: {_driver_text(exc)}", hint=_NETWORK_HINT,
                        driver_error=driver_error)


def _command_error(exc: BaseException, what: str, where: str, user: str,
                   timeout: float) -> DatabaseError:
    detail = _driver_text(exc)
    driver_error = _driver_name(exc)
    if isinstance(exc, redis.exceptions.NoPermissionError):
        hint = _PING_HINT if what == "PING" else _SETUSER_HINT if what == "ACL SETUSER" \
            else _MASTER_HINT
        return PrivilegeError(f"permission denied on {where} for {what} as {user!r}: {detail}",
                              hint=hint.replace("{user}", user), driver_error=driver_error,
                              sqlstate="NOPERM")
    if isinstance(exc, redis.exceptions.TimeoutError | socket.timeout):
        return DbTimeoutError(
            f"no answer from {where} within {timeout:g} s of {what}: the network or the server "
            "stopped answering; the connection was closed",
            hint="check the network path to the server and its load" + _RETRIED,
            driver_error=driver_error)
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return DatabaseError(f"{what} on {where} failed: {detail}",
                             hint="`host` is a replica: use the primary", driver_error=driver_error,
                             sqlstate="READONLY")
    if isinstance(exc, redis.exceptions.ConnectionError | OSError):
        return ConnectError(f"the connection to {where} was lost during {what}: {detail}",
                            hint=_NETWORK_HINT + _RETRIED, driver_error=driver_error)
    return DatabaseError(f"{what} on {where} failed: {detail}", driver_error=driver_error)


__all__ = ["MAX_USERNAME_LENGTH", "RedisAdapter", "RedisSession", "acl_line_rules",
           "check_username", "clone_setuser_args", "clone_username", "password_hash",
           "split_acl_rules", "without_passwords"]
