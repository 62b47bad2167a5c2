"""ROTATION_STRATEGY=dual-password on the in-memory database (which holds two passwords per
user): the steps, their fallbacks, the refusal of engines with one password per user, the
deprecated ROTATION_MYSQL_DUAL_PASSWORD alias, and the adapter contract's dual-password part
run against the fake adapter. The fault matrix runs the strategy in test_fault_injection.py."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from rotation.errors import ConfigError, LoginError, PasswordRefusedError
from tests.conftest import LeakScan, LogCapture
from tests.functional.fakes import FakeDatabase
from tests.integration.adapter_contract import ContractTarget, DualPasswordContract
from tests.rig import Rig

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
MASTER, MASTER_PASSWORD = "admin", "master-Passw0rd!"


@pytest.fixture(autouse=True)
def dual_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATION_STRATEGY", "dual-password")


def logs_in(db: FakeDatabase, value: dict[str, Any]) -> bool:
    return db.accepts(value["username"], value["password"])


def start(rig: Rig, until: str) -> str:
    """A new rotation's token, run up to and including the step ``until``."""
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    for step in STEPS[: STEPS.index(until) + 1]:
        rig.invoke(rig.event(step, token))
    return token


# -- a clean rotation -----------------------------------------------------------------------------

def test_a_clean_rotation_costs_what_single_user_costs(rig: Rig, db: FakeDatabase) -> None:
    # GIVEN a secret rotated with dual passwords, warm container
    # WHEN one rotation runs
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN it made single-user's 7 calls and 2 logins, none failed, no window: AWSCURRENT
    # logged in at every point, and both versions log in afterwards
    assert report.succeeded, report.steps
    assert rig.calls.calls == {"DescribeSecret": 4, "GetSecretValue": 1, "PutSecretValue": 1,
                               "UpdateSecretVersionStage": 1}
    assert db.logins == {"ok": 2}
    assert db.statements == ["ADD PASSWORD app_user"]
    assert logs_in(db, rig.value(CURRENT))
    assert logs_in(db, rig.value(PREVIOUS))


@pytest.mark.parametrize("step", STEPS)
def test_rerunning_a_step_after_it_succeeded_changes_nothing(rig: Rig, db: FakeDatabase,
                                                             step: str) -> None:
    # GIVEN a second rotation (an older password is retained) run up to `step`
    assert rig.service.rotate(rig.arn, rig.invoke).succeeded
    token = start(rig, step)
    before = (rig.service.labels(rig.arn), dict(db.passwords),
              {u: set(p) for u, p in db.retained.items()})

    # WHEN the step runs again, warm and cold
    rig.invoke(rig.event(step, token))
    rig.invoke_cold(rig.event(step, token))

    # THEN labels and the database's passwords are as they were
    assert (rig.service.labels(rig.arn), dict(db.passwords),
            {u: set(p) for u, p in db.retained.items()}) == before


def test_set_secret_four_times_at_once_keeps_both_passwords(rig: Rig, db: FakeDatabase) -> None:
    # GIVEN a second rotation past createSecret
    assert rig.service.rotate(rig.arn, rig.invoke).succeeded
    token = start(rig, "createSecret")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            rig.invoke(rig.event("setSecret", token))
        except BaseException as exc:  # collected, and checked below
            errors.append(exc)

    # WHEN four setSecret invocations race
    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN none failed, and AWSCURRENT and AWSPENDING both log in
    assert errors == []
    assert logs_in(db, rig.value(CURRENT))
    assert logs_in(db, rig.value(PENDING))


# -- fallbacks: only a refused AWSCURRENT password makes setSecret try other versions ----------

def test_a_refused_current_falls_back_to_pending_and_restores_current(
        rig: Rig, db: FakeDatabase) -> None:
    # GIVEN a rotation whose pending password replaced the current one in the database (a
    # setSecret that ran under single-user before the strategy changed)
    token = start(rig, "createSecret")
    db.passwords["app_user"] = rig.value(PENDING)["password"]

    # WHEN setSecret runs
    result = rig.invoke(rig.event("setSecret", token))

    # THEN it logged in with AWSPENDING, added the password, and AWSCURRENT's works again
    assert result["Outcome"] == "set via AWSPENDING"
    assert db.logins == {"failed": 1, "ok": 1}
    assert logs_in(db, rig.value(CURRENT))
    assert logs_in(db, rig.value(PENDING))


def test_a_refused_current_falls_back_to_previous(rig: Rig, db: FakeDatabase) -> None:
    # GIVEN a second rotation, and a database that holds only AWSPREVIOUS's password (the
    # secret's AWSCURRENT was written without changing the database)
    previous = rig.value(CURRENT)
    assert rig.service.rotate(rig.arn, rig.invoke).succeeded
    db.passwords["app_user"], db.retained["app_user"] = previous["password"], set()
    token = start(rig, "createSecret")

    # WHEN setSecret runs
    result = rig.invoke(rig.event("setSecret", token))

    # THEN AWSCURRENT and AWSPENDING were refused, AWSPREVIOUS added the new password and made
    # AWSCURRENT's work
    assert result["Outcome"] == "set via AWSPREVIOUS"
    assert logs_in(db, rig.value(CURRENT))
    assert logs_in(db, rig.value(PENDING))


def test_no_working_credential_names_the_fix(rig: Rig, db: FakeDatabase,
                                             leak_scan: LeakScan) -> None:
    # GIVEN a password changed outside rotation
    token = start(rig, "createSecret")
    db.passwords["app_user"] = "changed-by-hand-0"
    leak_scan.add("changed-by-hand-0")

    # WHEN setSecret runs THEN it fails naming the secret and the fix, having changed nothing
    with pytest.raises(PasswordRefusedError) as info:
        rig.invoke(rig.event("setSecret", token))
    leak_scan.add_text(str(info.value))
    assert rig.arn in str(info.value)
    assert "changed outside rotation" in str(info.value)
    assert db.statements == []


def test_a_locked_account_is_reported_at_once(rig: Rig, db: FakeDatabase) -> None:
    # GIVEN a locked account WHEN setSecret runs THEN one refused login, no fallback
    token = start(rig, "createSecret")
    db.locked.add("app_user")
    with pytest.raises(LoginError) as info:
        rig.invoke(rig.event("setSecret", token))
    assert not isinstance(info.value, PasswordRefusedError)
    assert db.logins == {"failed": 1}


# -- masterarn: the master changes the user (MySQL accounts without APPLICATION_PASSWORD_ADMIN) -

@pytest.fixture
def master_rig(rig_factory: Callable[..., Rig], sm: Any, db: FakeDatabase) -> Rig:
    db.passwords[MASTER] = MASTER_PASSWORD
    db.members[MASTER] = {"master"}
    master_arn = sm.create_secret(Name="dual-master", SecretString=json.dumps(
        {"username": MASTER, "password": MASTER_PASSWORD}))["ARN"]
    return rig_factory(masterarn=master_arn)


def test_with_masterarn_the_master_adds_the_password(master_rig: Rig, db: FakeDatabase) -> None:
    # GIVEN a dual-password secret with `masterarn` (RDS's managed master secret shape)
    rig = master_rig

    # WHEN two rotations run
    for _ in range(2):
        report = rig.service.rotate(rig.arn, rig.invoke)
        assert report.succeeded, report.steps

    # THEN the master's login made the change (the user logged in only for testSecret), and
    # exactly AWSCURRENT and AWSPREVIOUS log in
    assert db.logins == {"ok": 4}
    assert db.statements == ["ADD PASSWORD app_user"] * 2
    assert logs_in(db, rig.value(CURRENT))
    assert logs_in(db, rig.value(PREVIOUS))
    assert len({db.passwords["app_user"], *db.retained["app_user"]}) == 2


def test_a_refused_master_is_not_answered_with_the_users_passwords(
        master_rig: Rig, db: FakeDatabase) -> None:
    # GIVEN a master whose password the database refuses
    rig = master_rig
    token = start(rig, "createSecret")
    db.passwords[MASTER] = "master-changed-0"

    # WHEN setSecret runs THEN it fails on the master's login alone
    with pytest.raises(PasswordRefusedError):
        rig.invoke(rig.event("setSecret", token))
    assert db.logins == {"failed": 1}
    assert logs_in(db, rig.value(CURRENT))


# -- engines with one password per user are refused before any write ----------------------------

@pytest.mark.parametrize("engine", ["postgres", "aurora-postgresql", "mariadb"])
def test_an_engine_without_dual_passwords_is_refused_before_any_write(
        rig_factory: Callable[..., Rig], leak_scan: LeakScan, engine: str) -> None:
    # GIVEN a secret of an engine whose users hold one password (nothing listens at its host)
    rig = rig_factory(engine=engine, host="unreachable.invalid", dbname="postgres")
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)

    # WHEN createSecret runs under the dual-password strategy
    with pytest.raises(ConfigError) as info:
        rig.invoke(rig.event("createSecret", token))

    # THEN it names the key, the secret and the alternatives, and wrote nothing
    message = str(info.value)
    leak_scan.add_text(message)
    for words in ("`engine`", rig.arn, f"`{engine}`", "single-user", "alternating-users"):
        assert words in message
    assert rig.calls.calls["PutSecretValue"] == 0
    assert not rig.has_value(token)


def test_set_secret_refuses_such_an_engine_before_logging_in(
        rig_factory: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a pending version created under single-user for a PostgreSQL secret
    rig = rig_factory(engine="postgres", host="unreachable.invalid", dbname="postgres")
    monkeypatch.setenv("ROTATION_STRATEGY", "single-user")
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.invoke_cold(rig.event("createSecret", token))

    # WHEN the function is switched to dual-password and setSecret runs
    monkeypatch.setenv("ROTATION_STRATEGY", "dual-password")
    with pytest.raises(ConfigError) as info:
        rig.invoke_cold(rig.event("setSecret", token))

    # THEN the refusal comes before any login (the host would have been a ConnectError)
    assert "dual-password" in str(info.value)


# -- the deprecated ROTATION_MYSQL_DUAL_PASSWORD --------------------------------------------------

def test_the_deprecated_variable_is_the_strategy_with_one_warning_per_container(
        rig: Rig, db: FakeDatabase, monkeypatch: pytest.MonkeyPatch,
        log_capture: LogCapture) -> None:
    # GIVEN the old setting of a single-user MySQL function with dual passwords
    monkeypatch.setenv("ROTATION_STRATEGY", "single-user")
    monkeypatch.setenv("ROTATION_MYSQL_DUAL_PASSWORD", "true")

    # WHEN a rotation runs in one container
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN it rotated with dual passwords, and said once that the variable is deprecated
    assert report.succeeded, report.steps
    assert logs_in(db, rig.value(PREVIOUS))
    warnings = [r for r in log_capture.records() if "deprecated" in r["message"]]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "WARNING"
    assert "ROTATION_STRATEGY=dual-password" in warnings[0]["message"]
    steps = [r for r in log_capture.records() if "finished" in r.get("message", "")]
    assert {r["strategy"] for r in steps} == {"dual-password"}


def test_the_deprecated_variable_beside_alternating_users_is_refused(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a contradiction: alternating users, and the alias of dual passwords
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    monkeypatch.setenv("ROTATION_MYSQL_DUAL_PASSWORD", "true")
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)

    # WHEN a step runs THEN it is refused naming both variables
    with pytest.raises(ConfigError) as info:
        rig.invoke(rig.event("createSecret", token))
    assert "ROTATION_MYSQL_DUAL_PASSWORD" in str(info.value)
    assert "ROTATION_STRATEGY=alternating-users" in str(info.value)
    assert not rig.has_value(token)


# -- rotation doctor ------------------------------------------------------------------------------

class _Function:
    """A Lambda client whose function has ``env``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:
        return {"FunctionName": FunctionName, "Runtime": "python3.12", "PackageType": "Zip",
                "Environment": {"Variables": self.env}}

    def get_function_concurrency(self, FunctionName: str) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize(("engine", "env", "status", "words"), [
    ("postgres", {"ROTATION_STRATEGY": "dual-password"}, "fail", "`engine`"),
    ("fake", {"ROTATION_STRATEGY": "single-user", "ROTATION_MYSQL_DUAL_PASSWORD": "true"}, "ok",
     "strategy dual-password (the function's env (deprecated ROTATION_MYSQL_DUAL_PASSWORD))"),
], ids=["engine without dual passwords", "deprecated variable"])
def test_doctor_reads_the_strategy_as_the_function_does(
        rig_factory: Callable[..., Rig], engine: str, env: dict[str, str], status: str,
        words: str) -> None:
    from rotation.config import Settings
    from rotation.tools.doctor import run_doctor

    # GIVEN a secret, and a function whose environment asks for dual passwords
    rig = rig_factory(engine=engine, host="127.0.0.1", port=9, dbname="postgres")

    # WHEN the doctor runs against them
    report = run_doctor(rig.sm, rig.arn, Settings(), lambda_client=_Function(env))

    # THEN secret-format judges the secret under the function's strategy
    check = report.check("secret-format")
    assert check.status == status, check
    assert words in check.detail


# -- the adapter contract's dual-password part, on the fake adapter -------------------------------

@dataclass
class FakeServer:
    """What the contract reads of a server, for the in-memory database."""

    db: FakeDatabase
    host: str = "db.example.internal"
    port: int = 5432
    dbname: str = "appdb"
    ca_file: str | None = None
    admin_user: str = MASTER
    admin_password: str = MASTER_PASSWORD

    def log_text(self) -> str:
        return "\n".join(self.db.statements)


@pytest.fixture
def target(db: FakeDatabase) -> ContractTarget:
    db.passwords[MASTER] = MASTER_PASSWORD
    db.members[MASTER] = {"master"}

    def create_user(username: str, password: str) -> None:
        db.passwords[username] = password

    def drop_user(username: str) -> None:
        db.passwords.pop(username, None)
        db.retained.pop(username, None)

    return ContractTarget(engine="fake", server=FakeServer(db), create_user=create_user,
                          drop_user=drop_user)


class TestFakeAdapterDualPasswordContract(DualPasswordContract):
    """The contract's dual-password tests, proved runnable (and passing) on the fake."""
