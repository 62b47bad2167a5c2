"""The conformance suite every database adapter must pass (see rotation/adapters/base.py).

Use it by subclassing ``AdapterContract`` in a test module and providing two fixtures:
``target`` (a ``ContractTarget``: the engine name, the server and how to create a user on it).
``tests/integration/test_adapter_contract.py`` runs it for PostgreSQL and MariaDB.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from rotation.adapters import get_adapter
from rotation.adapters.base import AdapterOptions, DatabaseAdapter, DatabaseSession
from rotation.credentials import DbCredentials, credentials_from_dict
from rotation.errors import ConnectError, LoginError, TlsError
from tests.conftest import LeakScan

HOSTILE_NAMES = ["o'brien", 'dq"name', "semi;colon", "back\\slash", "pct%name", "ünïcødé",
                 "space name", "x'); DROP TABLE t; --"]


@dataclass
class ContractTarget:
    engine: str
    server: Any  # rotation.tools.sandbox.ServerHandle (host, port, dbname, ca_file, log_text, ...)
    create_user: Callable[[str, str], None]
    drop_user: Callable[[str], None]


class AdapterContract:
    """Every test: GIVEN a fresh user on a TLS server, WHEN the adapter acts, THEN the contract."""

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
        admin = credentials_from_dict(
            {"engine": target.engine, "host": target.server.host, "port": target.server.port,
             "username": target.server.admin_user, "password": target.server.admin_password,
             "dbname": target.server.dbname}, "arn:aws:secretsmanager:contract-master")
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
