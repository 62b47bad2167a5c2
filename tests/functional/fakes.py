"""An in-memory database behind the adapter Protocol, for the functional suite.

It keeps users and passwords, counts logins (and failed ones) as a server log would, and can be
told to fail an operation, so the four steps can be driven end to end without a server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import ClassVar

from rotation.adapters.base import AdapterOptions
from rotation.credentials import DbCredentials
from rotation.errors import (
    ConnectError,
    DatabaseError,
    LoginError,
    PasswordRefusedError,
    PrivilegeError,
)


class FakeDatabase:
    def __init__(self) -> None:
        self.passwords: dict[str, str] = {}
        #: further valid passwords per user (the dual-password strategy's retained one)
        self.retained: dict[str, set[str]] = {}
        self.members: dict[str, set[str]] = {}
        self.logins: Counter[str] = Counter()  # "ok" / "failed"
        self.locked: set[str] = set()  # accounts refused whatever the password
        self.fail_next: dict[str, Exception] = {}  # operation -> error raised once
        self.statements: list[str] = []
        # Called with each operation's name before it runs (connect, ping, set_password,
        # after_set_password, sync_clone, after_sync_clone, add_password, after_add_password,
        # discard_old_password): the fault
        # injection harness records a clean rotation's operations with it, and raises from it to
        # fail the n-th one.
        self.observers: list[Callable[[str], None]] = []

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def accepts(self, username: str, password: str) -> bool:
        """Whether ``password`` logs in as ``username``: the password, or the retained one."""
        return password == self.passwords.get(username) or \
            password in self.retained.get(username, set())

    def maybe_fail(self, operation: str) -> None:
        for observer in list(self.observers):
            observer(operation)
        error = self.fail_next.pop(operation, None)
        if error is not None:
            raise error


DB = FakeDatabase()


class FakeSession:
    def __init__(self, db: FakeDatabase, user: str) -> None:
        self.db = db
        self.user = user

    def ping(self) -> None:
        self.db.maybe_fail("ping")

    def set_password(self, username: str, password: str) -> None:
        self.db.maybe_fail("set_password")
        if username != self.user and not self.db.members.get(self.user, set()) >= {"master"}:
            raise DatabaseError("only the master may change other users")
        self.db.passwords[username] = password
        self.db.retained.pop(username, None)
        self.db.statements.append(f"ALTER ROLE {username}")
        self.db.maybe_fail("after_set_password")

    def add_password(self, username: str, password: str, keep: str) -> None:
        """Dual passwords: afterwards exactly ``keep`` and ``password`` log in (one atomic
        change, as Redis's ACL SETUSER; MySQL's statement sequence is unit-tested)."""
        self.db.maybe_fail("add_password")
        if username != self.user and not self.db.members.get(self.user, set()) >= {"master"}:
            raise PrivilegeError(f"permission denied: {self.user!r} may not change "
                                 f"{username!r}")
        self.db.passwords[username] = password
        self.db.retained[username] = {keep}
        self.db.statements.append(f"ADD PASSWORD {username}")
        self.db.maybe_fail("after_add_password")

    def sync_clone(self, source_username: str, clone_username: str, password: str) -> None:
        self.db.maybe_fail("sync_clone")
        if not self.db.members.get(self.user, set()) >= {"master"}:
            raise PrivilegeError(f"permission denied: {self.user!r} may not create roles")
        self.db.passwords[clone_username] = password
        self.db.members[clone_username] = {source_username}
        self.db.statements.append(f"CREATE OR ALTER ROLE {clone_username}")
        self.db.maybe_fail("after_sync_clone")

    def discard_old_password(self, username: str) -> None:
        self.db.maybe_fail("discard_old_password")
        self.db.statements.append(f"DISCARD OLD PASSWORD {username}")

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class FakeAdapter:
    family: ClassVar[str] = "fake"
    max_username_length: ClassVar[int] = 63

    def __init__(self, options: AdapterOptions) -> None:
        self.options = options
        self.db = DB

    def connect(self, credentials: DbCredentials) -> FakeSession:
        self.db.maybe_fail("connect")
        if credentials.host == "unreachable.invalid":
            raise ConnectError(f"cannot connect to {credentials.host}")
        if credentials.username in self.db.locked:
            self.db.logins["failed"] += 1
            raise LoginError(f"the account of {credentials.username!r} is locked")
        if not self.db.accepts(credentials.username, credentials.password):
            self.db.logins["failed"] += 1
            raise PasswordRefusedError(
                f"the database refused the login of {credentials.username!r}")
        self.db.logins["ok"] += 1
        return FakeSession(self.db, credentials.username)

    def clone_username(self, username: str) -> str:
        return username + "_clone"

    def supports_dual_password(self, engine: str) -> bool:
        return engine == "fake"
