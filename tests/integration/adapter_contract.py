"""The conformance suite every database adapter must pass (see rotation/adapters/base.py).

Use it by subclassing ``AdapterContract`` in a test module and providing two fixtures:
``target`` (a ``ContractTarget``: the engine name, the server and how to create a user on it).
``tests/integration/test_adapter_contract.py`` runs it for PostgreSQL and MariaDB.

An adapter whose ``supports_dual_password(engine)`` is true for the target's engine also passes
``DualPasswordContract`` (the dual-password strategy's ``add_password``): subclass both,
``class TestMine(AdapterContract, DualPasswordContract)``. ``AdapterContract`` checks that the
two go together: an adapter that declares dual passwords without running their contract fails
it, and so does a suite that runs it for an engine without them (which the strategy refuses).
So a test class serves engines of one kind: give the others a class of their own.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from rotation import strategies
from rotation.adapters import get_adapter
from rotation.adapters.base import AdapterOptions, DatabaseAdapter, DatabaseSession
from rotation.credentials import DbCredentials, credentials_from_dict
from rotation.errors import ConfigError, ConnectError, LoginError, TlsError
from tests.conftest import LeakScan

HOSTILE_NAMES = ["o'brien", 'dq"name', "semi;colon", "back\\slash", "pct%name", "ünïcødé",
                 "space name", "x'); DROP TABLE t; --"]


@dataclass
class ContractTarget:
    engine: str
    server: Any  # rotation.tools.sandbox.ServerHandle (host, port, dbname, ca_file, log_text, ...)
    create_user: Callable[[str, str], None]
    drop_user: Callable[[str], None]


class _ContractFixtures:
    """The fixtures both suites use: the adapter under test and fresh users on the server."""

    @pytest.fixture
    def adapter(self, target: ContractTarget) -> DatabaseAdapter:
        return get_adapter(target.engine, AdapterOptions(ca_bundle=target.server.ca_file,
                                                         connect_timeout=5))

    @pytest.fixture
    def user(self, target: ContractTarget,
             leak_scan: LeakScan) -> Iterator[Callable[..., DbCredentials]]:
        made: list[str] = []

        def make(name: str | None = None, **extra: Any) -> DbCredentials:
            username = name or f"c_{uuid.uuid4().hex[:10]}"
            password = "Pw-" + secrets.token_urlsafe(16)
            leak_scan.add(password)
            target.create_user(username, password)
            made.append(username)
            return credentials_from_dict(
                {"engine": target.engine, "host": target.server.host,
                 "port": target.server.port, "username": username, "password": password,
                 "dbname": target.server.dbname, **extra}, "arn:aws:secretsmanager:contract")

        yield make
        for username in made:
            target.drop_user(username)

    def _logs_in(self, adapter: DatabaseAdapter, creds: DbCredentials) -> bool:
        try:
            with adapter.connect(creds) as session:
                session.ping()
        except LoginError:
            return False
        return True

    def _admin(self, target: ContractTarget) -> DbCredentials:
        """The server's admin, playing the master user (``masterarn``)."""
        return credentials_from_dict(
            {"engine": target.engine, "host": target.server.host, "port": target.server.port,
             "username": target.server.admin_user, "password": target.server.admin_password,
             "dbname": target.server.dbname}, "arn:aws:secretsmanager:contract-master")


class AdapterContract(_ContractFixtures):
    """Every test: GIVEN a fresh user on a TLS server, WHEN the adapter acts, THEN the contract."""

    def test_connect_is_a_verified_tls_login(self, adapter: DatabaseAdapter,
                                             user: Callable[..., DbCredentials]) -> None:
        creds = user()
        session = adapter.connect(creds)
        assert isinstance(session, DatabaseSession)
        session.ping()
        session.close()
        session.close()  # idempotent
        assert creds.password not in repr(session)
        assert creds.password not in repr(adapter)

    def test_set_password_is_idempotent_and_takes_effect(
            self, adapter: DatabaseAdapter, user: Callable[..., DbCredentials],
            leak_scan: LeakScan) -> None:
        creds = user()
        new_password = "New-" + secrets.token_urlsafe(16)
        leak_scan.add(new_password)
        with adapter.connect(creds) as session:
            session.set_password(creds.username, new_password)
            session.set_password(creds.username, new_password)
        assert self._logs_in(adapter, creds.with_user(creds.username, new_password))
        assert not self._logs_in(adapter, creds)

    def test_wrong_password_raises_login_error_without_the_password(
            self, adapter: DatabaseAdapter, user: Callable[..., DbCredentials],
            leak_scan: LeakScan) -> None:
        creds = user()
        wrong = creds.with_user(creds.username, "Wrong-" + secrets.token_urlsafe(12))
        leak_scan.add(wrong.password)
        with pytest.raises(LoginError) as info:
            adapter.connect(wrong)
        leak_scan.add_text(str(info.value))
        assert creds.username in str(info.value)
        assert info.value.driver_error

    def test_wrong_ca_fails_closed(self, target: ContractTarget,
                                   user: Callable[..., DbCredentials], tmp_path: Any) -> None:
        creds = user()
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        mark = target.server.log_position()
        adapter = get_adapter(target.engine, AdapterOptions(ca_bundle=str(other)))
        with pytest.raises(TlsError) as info:
            adapter.connect(creds)
        assert "ROTATION_CA_BUNDLE" in str(info.value)
        assert target.server.login_counts(mark).succeeded == 0

    def test_closed_port_is_a_connect_error(self, adapter: DatabaseAdapter,
                                            user: Callable[..., DbCredentials]) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free_port = probe.getsockname()[1]
        creds = user()
        unreachable = credentials_from_dict({**creds.to_secret_dict(), "port": free_port},
                                            "arn:aws:secretsmanager:contract")
        with pytest.raises(ConnectError):
            adapter.connect(unreachable)

    @pytest.mark.parametrize("name", HOSTILE_NAMES)
    def test_hostile_user_names_are_quoted(self, adapter: DatabaseAdapter,
                                           user: Callable[..., DbCredentials], name: str,
                                           leak_scan: LeakScan) -> None:
        creds = user(name=name + uuid.uuid4().hex[:4])
        new_password = "New-" + secrets.token_urlsafe(16)
        leak_scan.add(new_password)
        with adapter.connect(creds) as session:
            session.set_password(creds.username, new_password)
        assert self._logs_in(adapter, creds.with_user(creds.username, new_password))

    def test_plaintext_never_reaches_the_server_log(
            self, target: ContractTarget, adapter: DatabaseAdapter,
            user: Callable[..., DbCredentials], leak_scan: LeakScan) -> None:
        creds = user()
        new_password = "Plain-" + secrets.token_urlsafe(16)
        leak_scan.add(new_password)
        with adapter.connect(creds) as session:
            session.set_password(creds.username, new_password)
        assert new_password not in target.server.log_text()

    def test_clone_is_created_synced_and_idempotent(
            self, target: ContractTarget, adapter: DatabaseAdapter,
            user: Callable[..., DbCredentials], leak_scan: LeakScan) -> None:
        base = user()
        clone_name = adapter.clone_username(base.username)
        password = "Clone-" + secrets.token_urlsafe(16)
        leak_scan.add(password)
        # the server's admin plays the master user of alternating-users rotation
        admin = self._admin(target)
        try:
            with adapter.connect(admin) as session:
                session.sync_clone(base.username, clone_name, password)
                session.sync_clone(base.username, clone_name, password)
            assert self._logs_in(adapter, base.with_user(clone_name, password))
        finally:
            target.drop_user(clone_name)

    def test_discard_old_password_is_a_no_op_without_dual_passwords(
            self, adapter: DatabaseAdapter, user: Callable[..., DbCredentials]) -> None:
        creds = user()
        with adapter.connect(creds) as session:
            session.discard_old_password(creds.username)
        assert self._logs_in(adapter, creds)

    def test_dual_password_support_goes_with_its_contract(
            self, target: ContractTarget, adapter: DatabaseAdapter) -> None:
        # GIVEN what the adapter says about dual passwords for the target's engine
        supported = strategies.supports_dual_password(adapter, target.engine)
        # WHEN / THEN an adapter that has them runs their contract too (and only then) ...
        assert supported is isinstance(self, DualPasswordContract), (
            f"{type(adapter).__name__}.supports_dual_password({target.engine!r}) is {supported}: "
            + ("mix DualPasswordContract into this test class" if supported else
               "DualPasswordContract runs for an engine without dual passwords"))
        # ... and for one without them the dual-password strategy refuses the engine
        if not supported:
            with pytest.raises(ConfigError) as info:
                strategies.check_dual_password_support(adapter, target.engine,
                                                       "arn:aws:secretsmanager:contract")
            assert "single-user" in str(info.value)
            assert "alternating-users" in str(info.value)


class DualPasswordContract(_ContractFixtures):
    """``add_password(username, password, keep)``, for adapters with dual passwords: afterwards
    exactly ``keep`` and ``password`` log in, idempotently, and ``keep`` survives any retry.
    Each test runs twice: the user changing itself (logged in with ``keep``, as setSecret does
    without ``masterarn``) and the server's admin changing it (``masterarn``)."""

    @pytest.fixture(params=["self", "master"])
    def changer(self, request: pytest.FixtureRequest,
                target: ContractTarget) -> Callable[[DbCredentials], DbCredentials]:
        """Who logs in to add the password: the user with the given credential, or the admin."""
        if request.param == "self":
            return lambda creds: creds
        admin = self._admin(target)
        return lambda creds: admin

    def _new(self, creds: DbCredentials, leak_scan: LeakScan) -> DbCredentials:
        password = "Dual-" + secrets.token_urlsafe(16)
        leak_scan.add(password)
        return creds.with_user(creds.username, password)

    def _add(self, adapter: DatabaseAdapter, login: DbCredentials, username: str,
             password: str, keep: str) -> None:
        with adapter.connect(login) as session:
            _add_password(session, username, password, keep)

    def test_the_engine_has_dual_passwords(self, target: ContractTarget,
                                           adapter: DatabaseAdapter) -> None:
        # GIVEN / WHEN the adapter is asked / THEN it says yes for the target's engine
        assert strategies.supports_dual_password(adapter, target.engine)

    def test_add_password_makes_both_log_in_idempotently(
            self, adapter: DatabaseAdapter, user: Callable[..., DbCredentials],
            changer: Callable[[DbCredentials], DbCredentials], leak_scan: LeakScan) -> None:
        # GIVEN a user and a new password
        keep = user()
        new = self._new(keep, leak_scan)
        # WHEN the new password is added, twice in one session
        with adapter.connect(changer(keep)) as session:
            _add_password(session, keep.username, new.password, keep.password)
            _add_password(session, keep.username, new.password, keep.password)
        # THEN both log in
        assert self._logs_in(adapter, keep)
        assert self._logs_in(adapter, new)

    def test_add_password_drops_the_one_retained_before(
            self, adapter: DatabaseAdapter, user: Callable[..., DbCredentials],
            changer: Callable[[DbCredentials], DbCredentials], leak_scan: LeakScan) -> None:
        # GIVEN a user whose first rotation added p1 beside p0
        p0 = user()
        p1, p2 = self._new(p0, leak_scan), self._new(p0, leak_scan)
        self._add(adapter, changer(p0), p0.username, p1.password, p0.password)
        assert self._logs_in(adapter, p0)
        # WHEN the next rotation adds p2, keeping p1
        self._add(adapter, changer(p1), p0.username, p2.password, p1.password)
        # THEN exactly p1 and p2 log in
        assert self._logs_in(adapter, p1)
        assert self._logs_in(adapter, p2)
        assert not self._logs_in(adapter, p0)

    def test_a_retry_after_success_keeps_keep(
            self, adapter: DatabaseAdapter, user: Callable[..., DbCredentials],
            changer: Callable[[DbCredentials], DbCredentials], leak_scan: LeakScan) -> None:
        # GIVEN a second rotation whose add_password succeeded (p0 retained before, p1 kept)
        p0 = user()
        p1, p2 = self._new(p0, leak_scan), self._new(p0, leak_scan)
        self._add(adapter, changer(p0), p0.username, p1.password, p0.password)
        self._add(adapter, changer(p1), p0.username, p2.password, p1.password)
        # WHEN setSecret is retried: logged in with keep (a new session), and logged in with
        # the new password (the fallback when keep's login was refused)
        self._add(adapter, changer(p1), p0.username, p2.password, p1.password)
        self._add(adapter, changer(p2), p0.username, p2.password, p1.password)
        # THEN keep still logs in, and so does the new password; the older one stays dropped
        assert self._logs_in(adapter, p1)
        assert self._logs_in(adapter, p2)
        assert not self._logs_in(adapter, p0)

    def test_add_password_keeps_plaintext_out_of_the_server_log(
            self, target: ContractTarget, adapter: DatabaseAdapter,
            user: Callable[..., DbCredentials],
            changer: Callable[[DbCredentials], DbCredentials], leak_scan: LeakScan) -> None:
        # GIVEN a user WHEN a password is added beside its own
        keep = user()
        new = self._new(keep, leak_scan)
        self._add(adapter, changer(keep), keep.username, new.password, keep.password)
        # THEN neither password is in the server's log
        log = target.server.log_text()
        assert new.password not in log
        assert keep.password not in log


def _add_password(session: DatabaseSession, username: str, password: str, keep: str) -> None:
    add = getattr(session, "add_password", None)
    assert callable(add), f"{type(session).__name__} has no add_password"
    add(username, password, keep)
