"""Single-user rotation through lambda_handler against moto and a real MariaDB with TLS,
require_secure_transport=ON and the general log on: the same figures as PostgreSQL."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rotation.adapters.mysql import clone_username
from rotation.credentials import credentials_from_dict
from rotation.tools.local import ApiCallCounter, LocalRotationService, logs_in
from tests.conftest import LeakScan, LogCapture
from tests.rig import Rig


def can_login(server: Any, username: str, password: str) -> bool:
    creds = credentials_from_dict({"engine": "mariadb", "host": server.host,
                                   "port": server.port, "username": username,
                                   "password": password}, "arn:check")
    return logs_in(creds, server.ca_file)


@pytest.fixture
def maria_rig(server_rigs: Any, mariadb_server: Any,
              monkeypatch: pytest.MonkeyPatch) -> Callable[..., Rig]:
    monkeypatch.setenv("ROTATION_CA_BUNDLE", mariadb_server.ca_file)

    def build(engine: str = "mariadb", prefix: str = "app") -> Rig:
        rig: Rig = server_rigs.build(mariadb_server, engine, prefix)
        return rig

    return build


@pytest.mark.parametrize("engine", ["mariadb", "mysql"])
def test_clean_rotation_warm(maria_rig: Callable[..., Rig], mariadb_server: Any, engine: str,
                             log_capture: LogCapture) -> None:
    # GIVEN a user whose secret is AWSCURRENT (engine `mysql` too: same adapter, same server)
    rig = maria_rig(engine)
    old = rig.value("AWSCURRENT")
    mark = mariadb_server.log_position()

    # WHEN Secrets Manager rotates it, the four steps sharing one container
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN 2 logins, 0 failed, at most 7 API calls
    assert report.succeeded, report.steps
    counts = mariadb_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (2, 0)
    assert rig.calls.total() <= 7, rig.calls.calls
    # ... the new password logs in, the old one does not, labels are right
    new = rig.value("AWSCURRENT")
    assert rig.value("AWSPREVIOUS")["password"] == old["password"]
    assert can_login(mariadb_server, new["username"], new["password"])
    assert not can_login(mariadb_server, old["username"], old["password"])
    # ... and the plaintext reached neither the general log nor ours
    assert new["password"] not in mariadb_server.log_text()
    assert new["password"] not in log_capture.text


def test_clean_rotation_cold(maria_rig: Callable[..., Rig], mariadb_server: Any) -> None:
    rig = maria_rig()
    mark = mariadb_server.log_position()
    report = rig.service.rotate(rig.arn, rig.invoke_cold)
    assert report.succeeded, report.steps
    assert rig.calls.total() == 12, rig.calls.calls  # test_cost_counts.py says which
    counts = mariadb_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (2, 0)


def test_interrupted_rotation_converges(maria_rig: Callable[..., Rig],
                                        mariadb_server: Any) -> None:
    # GIVEN setSecret already changed the password but its result was lost
    rig = maria_rig()
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.invoke(rig.event("createSecret", token))
    rig.invoke(rig.event("setSecret", token))
    # WHEN the service retries from createSecret in fresh containers
    outcomes = [rig.invoke_cold(rig.event(step, token))["Outcome"]
                for step in ("createSecret", "setSecret", "testSecret", "finishSecret")]
    # THEN it converges and AWSCURRENT logs in
    assert outcomes[:2] == ["kept", "already set"]
    new = rig.value("AWSCURRENT")
    assert can_login(mariadb_server, new["username"], new["password"])


# --------------------------------------------------------------------------------------------
# User names past MySQL's 32 characters (MariaDB allows 80)
# --------------------------------------------------------------------------------------------

def test_single_user_with_a_60_character_name(maria_rig: Callable[..., Rig],
                                              mariadb_server: Any) -> None:
    # GIVEN a 60-character MariaDB user, in a secret with engine `mariadb`
    rig = maria_rig("mariadb", prefix="u" * 49)
    old = rig.value("AWSCURRENT")
    assert len(old["username"]) == 60
    # WHEN it rotates
    report = rig.service.rotate(rig.arn, rig.invoke)
    # THEN it succeeds (no clone name is needed): the new password logs in, the old does not
    assert report.succeeded, report.steps
    new = rig.value("AWSCURRENT")
    assert new["username"] == old["username"]
    assert can_login(mariadb_server, new["username"], new["password"])
    assert not can_login(mariadb_server, old["username"], old["password"])


def test_a_mariadb_length_name_under_engine_mysql_is_refused_before_any_write(
        maria_rig: Callable[..., Rig], mariadb_server: Any) -> None:
    # GIVEN a 40-character MariaDB user in a secret that says engine `mysql` (common)
    rig = maria_rig("mysql", prefix="u" * 29)
    assert len(rig.value("AWSCURRENT")["username"]) == 40
    mark = mariadb_server.log_position()
    # WHEN it rotates
    report = rig.service.rotate(rig.arn, rig.invoke)
    # THEN createSecret refuses it before writing anything or logging in, and says what to do
    assert not report.succeeded
    assert report.steps[0].step == "createSecret"
    error = report.steps[0].error or ""
    assert "engine `mysql` allows 32" in error
    assert "set `engine` to `mariadb`" in error
    assert rig.calls.calls.get("PutSecretValue", 0) == 0
    counts = mariadb_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (0, 0)


@pytest.fixture
def alternating(sm: Any, mariadb_server: Any, monkeypatch: pytest.MonkeyPatch,
                leak_scan: LeakScan) -> Iterator[Callable[[str], Rig]]:
    """Alternating-users rigs on MariaDB: a master (the documented privileges) and a user."""
    monkeypatch.setenv("ROTATION_CA_BUNDLE", mariadb_server.ca_file)
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    created: list[str] = []

    def build(username: str) -> Rig:
        master, master_pw = f"master_{uuid.uuid4().hex[:8]}", "M-" + secrets.token_urlsafe(16)
        user_pw = "Init-" + secrets.token_urlsafe(16)
        leak_scan.add(master_pw, user_pw)
        mariadb_server.create_login_user(master, master_pw, can_create_roles=True)
        mariadb_server.create_login_user(username, user_pw)
        created.extend([master, username, clone_username(username)])
        where = {"engine": "mariadb", "host": mariadb_server.host, "port": mariadb_server.port,
                 "dbname": mariadb_server.dbname}
        master_arn = sm.create_secret(Name=master, SecretString=json.dumps(
            {**where, "username": master, "password": master_pw}))["ARN"]
        arn = sm.create_secret(Name=f"{username}-secret", SecretString=json.dumps(
            {**where, "username": username, "password": user_pw, "masterarn": master_arn}))["ARN"]
        service = LocalRotationService(sm)
        service.enable_rotation(arn)
        return Rig(sm, service, arn, mariadb_server, ApiCallCounter())

    yield build
    for name in created:
        mariadb_server.drop_user(name)


def test_alternating_users_with_a_60_character_original(
        alternating: Callable[[str], Rig], mariadb_server: Any) -> None:
    # GIVEN a 60-character original user on MariaDB: its clone's name is shortened to 32
    name = "a" * 49 + "_" + uuid.uuid4().hex[:10]
    rig = alternating(name)
    clone = clone_username(name)
    assert len(clone) == 32
    # WHEN it rotates three times
    users = []
    for _ in range(3):
        report = rig.service.rotate(rig.arn, rig.invoke)
        assert report.succeeded, report.steps
        users.append(rig.value("AWSCURRENT")["username"])
        # THEN the current and the previous credential both log in
        for stage in ("AWSCURRENT", "AWSPREVIOUS"):
            value = rig.value(stage)
            assert can_login(mariadb_server, value["username"], value["password"])
    # ... alternating between exactly the two names
    assert users == [clone, name, clone]
