"""A stand-in for the sandbox behind the CLI's embedded stack (``invoke --local``, ``rotate
--local``, ``doctor --local``, ``demo``): every engine runs on the in-memory database, and the
'throwaway server' is a :class:`FakeServer` over it. No server starts."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import rotation.adapters
import rotation.tools.demo
from rotation.tools.sandbox import LoginCounts
from tests.functional.conftest import FAKE_ENGINE
from tests.functional.fakes import FakeDatabase


class FakeServer:
    """The sandbox server's interface over the in-memory database."""

    engine = "fake"
    host = "127.0.0.1"
    dbname = "appdb"
    admin_user = "fake_admin"
    ca_file = None

    def __init__(self, db: FakeDatabase, port: int = 5432) -> None:
        self.db = db
        self.port = port
        self.admin_password = "admin-" + secrets.token_urlsafe(16)
        db.passwords[self.admin_user] = self.admin_password
        db.members[self.admin_user] = {"master"}
        self._marks: list[Counter[str]] = []

    def create_login_user(self, username: str, password: str, *,
                          can_create_roles: bool = False) -> None:
        self.db.passwords[username] = password

    def log_position(self) -> int:
        self._marks.append(Counter(self.db.logins))
        return len(self._marks) - 1

    def login_counts(self, since: int = 0) -> LoginCounts:
        base = self._marks[since] if self._marks else Counter()
        return LoginCounts(self.db.logins["ok"] - base["ok"],
                           self.db.logins["failed"] - base["failed"])


def install_fake_stack(db: FakeDatabase, monkeypatch: pytest.MonkeyPatch,
                       port: int = 5432) -> FakeDatabase:
    """Every engine's adapter is the fake one; the 'sandbox' starts a FakeServer on ``port``."""
    fake = FAKE_ENGINE["fake"]
    monkeypatch.setattr(rotation.adapters, "BUILTIN", {
        **{engine: fake for engine in rotation.adapters.BUILTIN}, **FAKE_ENGINE})

    @contextmanager
    def fake_server(engine: str) -> Iterator[FakeServer]:
        yield FakeServer(db, port)

    monkeypatch.setattr(rotation.tools.demo, "sandbox_server", fake_server)
    return db
