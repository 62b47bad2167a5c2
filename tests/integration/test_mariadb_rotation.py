"""Single-user rotation through lambda_handler against moto and a real MariaDB with TLS,
require_secure_transport=ON and the general log on: the same figures as PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from rotation.credentials import credentials_from_dict
from rotation.local import logs_in
from tests.conftest import LogCapture
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

    def build(engine: str = "mariadb") -> Rig:
        rig: Rig = server_rigs.build(mariadb_server, engine)
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
