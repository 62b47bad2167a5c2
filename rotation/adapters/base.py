"""The adapter interface every database engine implements.

Contract (checked by the shared suite in ``tests/integration/adapter_contract.py``):

* ``connect`` is the login. It either returns an authenticated session over the TLS the
  credential asks for, or raises: :class:`~rotation.errors.PasswordRefusedError` when the server
  said the user name or password is wrong, :class:`~rotation.errors.LoginError` when it refused
  the login for another reason (no LOGIN, account locked, password expired, host not allowed),
  :class:`~rotation.errors.TlsError` when TLS could not be set up or verified,
  :class:`~rotation.errors.ConnectError` / :class:`~rotation.errors.DbTimeoutError` when the host
  cannot be reached in time. It never retries without TLS.
* Every wait ends within the options' timeouts, and within :data:`DEADLINE` when it is set
  (:func:`time_left`), so a step fails with a timeout error before Lambda kills it.
* Session methods are idempotent: running one again with the same arguments changes nothing more.
* No method lets a password or verifier reach a log line, an exception message or a repr; where the
  engine allows it, the password is hashed client-side so the plaintext never reaches the server.
* SQL is composed with the driver's quoting, never with string formatting.
* Optional members, looked up with ``getattr`` so that older plug-ins keep working: the class
  attribute ``username_length_unit`` and the method ``username_limit(engine, strategy)`` (see
  :class:`DatabaseAdapter`); createSecret refuses a longer user name before anything is written.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Protocol, runtime_checkable

from rotation.credentials import DbCredentials
from rotation.errors import DbTimeoutError

#: ``time.monotonic()`` by which the current invocation's database work must be over (the
#: Lambda's remaining time less a safety margin; set by the dispatcher, None outside it). A step
#: runs several statements: each one's timeout is cut to what is left (:func:`time_left`), so
#: their sum stays inside the invocation whatever the server's pace.
DEADLINE: ContextVar[float | None] = ContextVar("rotation_db_deadline", default=None)


def time_left(limit: float, what: str) -> float:
    """``limit`` seconds, or fewer when the invocation's :data:`DEADLINE` is nearer. Raises
    DbTimeoutError when no time is left for ``what`` (say, "a statement on host:port")."""
    deadline = DEADLINE.get()
    if deadline is None:
        return limit
    left = deadline - time.monotonic()
    if left <= 0.05:
        raise DbTimeoutError(f"no time is left in this invocation for {what}",
                             hint="raise the function's Timeout (30 s or more); Secrets Manager "
                                  "retries the step")
    return min(limit, left)


@dataclass(frozen=True)
class AdapterOptions:
    """What every adapter needs from the settings."""

    ca_bundle: str | None = None  # PEM file; None means the system trust store
    connect_timeout: float = 5.0  # seconds, for the TCP connect and the TLS handshake
    statement_timeout: float = 10.0  # seconds, for each statement


@runtime_checkable
class DatabaseSession(Protocol):
    """An open, authenticated connection. Use it as a context manager; ``close`` is idempotent."""

    def ping(self) -> None:
        """Run a trivial query, proving the login can do work (AWS's samples run SELECT NOW())."""

    def set_password(self, username: str, password: str) -> None:
        """Set ``username``'s password. Setting the password it already has succeeds."""

    def sync_clone(self, source_username: str, clone_username: str, password: str) -> None:
        """Alternating users: create ``clone_username`` if absent, set its password, and make its
        privileges (role memberships, grants) match ``source_username``'s now. Idempotent."""

    def discard_old_password(self, username: str) -> None:
        """Drop a retained secondary password (MySQL dual passwords); a no-op where none exists.
        The default steps no longer call it: ``add_password`` drops the older password."""

    # Optional, for ROTATION_STRATEGY=dual-password (engines that hold two passwords per user):
    # ``add_password(self, username: str, password: str, keep: str) -> None``. Afterwards exactly
    # ``keep`` (the password in use) and ``password`` log in as ``username``; any other password
    # (the one retained by the rotation before) is dropped. Idempotent: running it again after
    # it succeeded, or after it failed half-way, changes nothing more and never invalidates
    # ``keep``. Where the engine hashes passwords, only hashes computed here reach the server.

    def close(self) -> None: ...

    def __enter__(self) -> DatabaseSession: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class DatabaseAdapter(Protocol):
    """One database engine family. Constructed once per container with the settings' options."""

    #: engine family, e.g. "postgres" or "mysql"
    family: ClassVar[str]
    #: longest user name the engine accepts, in characters (or in bytes where an adapter sets
    #: the optional class attribute ``username_length_unit = "bytes"``, as PostgreSQL does);
    #: clone names are made to fit it. An adapter serving engines with different limits may
    #: add the optional method ``username_limit(engine: str, strategy: str) -> int`` (MySQL:
    #: 32 for ``mysql``, 80 for ``mariadb``): it then bounds a secret's own user name instead
    max_username_length: ClassVar[int]

    def __init__(self, options: AdapterOptions) -> None: ...

    def connect(self, credentials: DbCredentials) -> DatabaseSession:
        """Log in with ``credentials``; raise LoginError / TlsError / ConnectError as above."""
        ...

    def clone_username(self, username: str) -> str:
        """The alternate user's name: AWS's ``_clone`` suffix, shortened to the engine's limit."""
        ...

    # Optional: ``supports_dual_password(self, engine: str) -> bool``: whether ``engine`` can hold
    # two passwords per user (then its sessions have ``add_password``). Absent means no: the
    # dual-password strategy refuses the secret at createSecret, before any write.

    # Optional: ``prepare(self) -> None``, called in Lambda's init phase for the function's
    # engine (ROTATION_ENGINE), builds what every login needs (a TLS context) ahead of the
    # first step. It must not connect, and may raise (the first invocation then reports it).
