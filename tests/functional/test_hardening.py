"""Step-level defects found by the first-contact review, each pinned by a test that failed before
its fix: a value-less AWSPENDING made AWSCURRENT, dual passwords that a retried setSecret could
lose (and that finishSecret discarded, so AWSPREVIOUS stopped working), a master secret
connecting in plaintext without a warning, non-password login refusals answered with more
failed logins, and log lines without the engine. (The cold-container compare-and-set lives with
the other races in test_races.py.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from rotation import handler
from rotation.errors import (
    LoginError,
    PasswordRefusedError,
    SecretFormatError,
)
from tests.conftest import LeakScan, LogCapture
from tests.functional.fakes import FakeDatabase
from tests.rig import Rig

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"


def labels(rig: Rig) -> dict[str, list[str]]:
    return rig.service.labels(rig.arn)


# -- finishSecret never moves AWSCURRENT to a version without a value -----------------------------

@pytest.mark.parametrize("container", ["warm", "cold"])
def test_finish_refuses_a_pending_version_without_a_value(rig: Rig, container: str) -> None:
    # GIVEN an AWSPENDING version that holds no value (a replayed finishSecret event, or a
    # custom createSecret that stored nothing)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    before = labels(rig)
    invoke = rig.invoke_cold if container == "cold" else rig.invoke

    # WHEN finishSecret runs for it
    with pytest.raises(SecretFormatError) as info:
        invoke(rig.event("finishSecret", token))

    # THEN it refuses, naming the secret and the fix, and AWSCURRENT did not move
    assert rig.arn in str(info.value)
    assert "holds no value" in str(info.value)
    assert labels(rig) == before
    assert rig.calls.calls["UpdateSecretVersionStage"] == 0


# -- dual passwords: only setSecret changes the database, and never drops the password in use ----

def logs_in(db: FakeDatabase, value: dict[str, Any]) -> bool:
    return db.accepts(value["username"], value["password"])


@pytest.mark.parametrize("env", [{"ROTATION_STRATEGY": "dual-password"},
                                 {"ROTATION_MYSQL_DUAL_PASSWORD": "true"}],
                         ids=["strategy", "deprecated alias"])
def test_after_finish_secret_current_and_previous_both_log_in(
        rig: Rig, db: FakeDatabase, monkeypatch: pytest.MonkeyPatch,
        env: dict[str, str]) -> None:
    # GIVEN dual passwords (by the strategy, or by the deprecated variable)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    # WHEN a rotation runs, finishSecret in a new container
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    for step in STEPS[:3]:
        rig.invoke(rig.event(step, token))
    logins = dict(db.logins)
    rig.invoke_cold(rig.event("finishSecret", token))

    # THEN finishSecret only moved the label (before the fix it logged in and discarded the
    # old password, so AWSPREVIOUS stopped working), and both versions log in
    assert db.logins == logins
    assert CURRENT in labels(rig)[token]
    assert logs_in(db, rig.value(CURRENT))
    assert logs_in(db, rig.value(PREVIOUS))
    assert not any(s.startswith("DISCARD") for s in db.statements)


@pytest.mark.parametrize("container", ["warm", "cold"])
def test_a_retried_set_secret_keeps_awscurrent_working(
        rig: Rig, db: FakeDatabase, monkeypatch: pytest.MonkeyPatch, container: str) -> None:
    # GIVEN dual passwords and a setSecret that went through but whose answer was lost
    monkeypatch.setenv("ROTATION_STRATEGY", "dual-password")
    first = rig.service.rotate(rig.arn, rig.invoke)  # so that an older password is retained
    assert first.succeeded, first.steps
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.invoke(rig.event("createSecret", token))
    rig.invoke(rig.event("setSecret", token))
    invoke = rig.invoke_cold if container == "cold" else rig.invoke

    # WHEN Secrets Manager retries setSecret, twice
    results = [invoke(rig.event("setSecret", token)) for _ in range(2)]

    # THEN the retries are clean logins with AWSCURRENT (no failed login), and AWSCURRENT and
    # AWSPENDING both still log in (ROTATION_MYSQL_DUAL_PASSWORD's retry retained the new
    # password and dropped the one in use)
    assert [r["Outcome"] for r in results] == ["done", "done"]
    assert "failed" not in db.logins
    assert logs_in(db, rig.value(CURRENT))
    assert logs_in(db, rig.value(PENDING))


def test_the_next_rotation_drops_the_older_password(rig: Rig, db: FakeDatabase,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN dual passwords and a finished rotation: the initial password is AWSPREVIOUS
    monkeypatch.setenv("ROTATION_STRATEGY", "dual-password")
    initial = rig.value(CURRENT)
    first = rig.service.rotate(rig.arn, rig.invoke)
    assert first.succeeded, first.steps
    assert logs_in(db, initial)

    # WHEN the next rotation runs, up to setSecret
    second = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, second)
    for step in STEPS[:2]:
        rig.invoke(rig.event(step, second))

    # THEN its setSecret dropped the initial password; the current and the new one log in
    assert not logs_in(db, initial)
    assert logs_in(db, rig.value(CURRENT))
    assert logs_in(db, rig.value(PENDING))
    # ... and after its finishSecret, exactly AWSCURRENT and AWSPREVIOUS do
    rig.invoke(rig.event("testSecret", second))
    rig.invoke(rig.event("finishSecret", second))
    assert logs_in(db, rig.value(CURRENT))
    assert logs_in(db, rig.value(PREVIOUS))
    assert not logs_in(db, initial)


# -- every plaintext connection is warned about, the master's included ---------------------------

def test_master_secret_without_tls_is_warned_about(
        rig_factory: Callable[..., Rig], sm: Any, db: FakeDatabase, log_capture: LogCapture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN alternating users whose master secret says "ssl": false (the user's secret does not)
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    db.passwords["admin"] = "master-Passw0rd!"
    db.members["admin"] = {"master"}
    master_arn = sm.create_secret(Name="master-plain", SecretString=json.dumps(
        {"engine": "fake", "host": "db.example.internal", "port": 5432, "username": "admin",
         "password": "master-Passw0rd!", "ssl": False}))["ARN"]
    rig = rig_factory(masterarn=master_arn)

    # WHEN it rotates
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN the master's plaintext login was logged as a warning naming the master secret
    assert report.succeeded, report.steps
    warnings = [r for r in log_capture.records()
                if r["level"] == "WARNING" and r.get("cause") == "tls"]
    assert [(r["step"], r["username"]) for r in warnings] == [("setSecret", "admin")]
    assert "master secret" in warnings[0]["message"]


# -- only a wrong password makes a step try other versions' passwords -----------------------------

def test_a_locked_account_is_reported_at_once_without_more_failed_logins(
        rig: Rig, db: FakeDatabase, leak_scan: LeakScan) -> None:
    # GIVEN a rotation whose user is locked on the server (refused whatever the password)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.invoke(rig.event("createSecret", token))
    db.locked.add("app_user")

    # WHEN setSecret runs
    with pytest.raises(LoginError) as info:
        rig.invoke(rig.event("setSecret", token))
    leak_scan.add_text(str(info.value))

    # THEN the server's own refusal is reported, after one login attempt (before the fix: three,
    # then "the password was changed outside rotation")
    assert not isinstance(info.value, PasswordRefusedError)
    assert "locked" in str(info.value)
    assert db.logins == {"failed": 1}


def test_a_wrong_password_still_falls_back_to_pending(rig: Rig, db: FakeDatabase) -> None:
    # GIVEN setSecret already set the pending password (a retry after a lost response)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.invoke(rig.event("createSecret", token))
    db.passwords["app_user"] = rig.value(PENDING)["password"]

    # WHEN setSecret runs again
    result = rig.invoke(rig.event("setSecret", token))

    # THEN AWSCURRENT's wrong password led to the AWSPENDING check, which settled it
    assert result["Outcome"] == "already set"
    assert db.logins == {"failed": 1, "ok": 1}


# -- every step's log line and metrics name the engine --------------------------------------------

@pytest.mark.parametrize("container", ["warm", "cold"])
def test_every_step_reports_the_engine(rig: Rig, log_capture: LogCapture, leak_scan: LeakScan,
                                       capsys: pytest.CaptureFixture[str],
                                       container: str) -> None:
    # GIVEN / WHEN a rotation, then a duplicate finishSecret ("already current")
    invoke = rig.invoke_cold if container == "cold" else rig.invoke
    report = rig.service.rotate(rig.arn, invoke)
    assert report.succeeded, report.steps
    rig.invoke(rig.event("finishSecret", report.token))

    # THEN every step's closing line and metrics document says engine "fake"
    finished = [r for r in log_capture.records() if "finished" in r.get("message", "")]
    assert [r["step"] for r in finished] == [*STEPS, "finishSecret"]
    assert {r["engine"] for r in finished} == {"fake"}
    out = capsys.readouterr().out
    leak_scan.add_text(out)
    step_metrics = [doc for doc in map(json.loads, out.splitlines()) if "step" in doc]
    assert [(d["step"], d["engine"]) for d in step_metrics] == \
        [(step, "fake") for step in (*STEPS, "finishSecret")]
    handler.reset()
