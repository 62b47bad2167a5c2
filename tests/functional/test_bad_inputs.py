"""Bad input through lambda_handler, on moto and the in-memory database: every row fails with a
specific error naming the key and the secret, and writes nothing (no PutSecretValue, no
UpdateSecretVersionStage by the function, no statement on the database, no password changed)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from rotation import handler
from rotation.errors import (
    ConfigError,
    EventError,
    RotationError,
    SecretFormatError,
    UnknownStepError,
    UnsupportedEngineError,
)
from rotation.tools.local import ApiCallCounter
from tests.conftest import FakeLambdaContext, LeakScan
from tests.functional.conftest import make_secret
from tests.functional.fakes import FakeDatabase
from tests.rig import Rig

PASSWORD = "initial-Passw0rd!"


class Outcome:
    def __init__(self, error: BaseException, calls: ApiCallCounter) -> None:
        self.error, self.calls = error, calls

    @property
    def writes(self) -> dict[str, int]:
        return {k: v for k, v in self.calls.calls.items()
                if k in ("PutSecretValue", "UpdateSecretVersionStage")}


def fail(rig: Rig, event: Any, leak_scan: LeakScan) -> Outcome:
    """Invoke the handler in a fresh container; it must raise. Counts the function's calls."""
    handler.reset()
    calls = ApiCallCounter()
    try:
        app = handler.get_app()
        calls.attach(app.secrets.client)
        handler.lambda_handler(event, FakeLambdaContext())
    except Exception as exc:
        leak_scan.add_text(str(exc))
        return Outcome(exc, calls)
    raise AssertionError(f"the invocation succeeded: {event}")


def assert_named(error: BaseException, key: str | None, arn: str | None) -> None:
    text = str(error)
    if key is not None:
        assert key in text, f"the message does not name {key}: {text}"
    if arn is not None:
        assert arn in text, f"the message does not name the secret {arn}: {text}"


def db_state(db: FakeDatabase) -> tuple[dict[str, str], list[str]]:
    return dict(db.passwords), list(db.statements)


# -- events ----------------------------------------------------------------------------------------

EVENT_ROWS: list[tuple[str, Callable[[str, str], Any], type[RotationError], str | None, bool]] = [
    # (id, event from (arn, token), error, key named, names the ARN)
    ("not an object", lambda arn, token: [arn, token], EventError, None, False),
    ("Step missing", lambda arn, token: {"SecretId": arn, "ClientRequestToken": token},
     EventError, "`Step`", True),
    ("Step unknown", lambda arn, token: {"Step": "rotateSecret", "SecretId": arn,
                                         "ClientRequestToken": token},
     UnknownStepError, "finishSecret", True),
    ("SecretId a number", lambda arn, token: {"Step": "createSecret", "SecretId": 7,
                                              "ClientRequestToken": token},
     EventError, "`SecretId`", False),
    ("token too short", lambda arn, token: {"Step": "createSecret", "SecretId": arn,
                                            "ClientRequestToken": token[:8]},
     EventError, "`ClientRequestToken`", True),
    ("RotationToken oversized", lambda arn, token: {
        "Step": "createSecret", "SecretId": arn, "ClientRequestToken": token,
        "RotationToken": "R" * 1000}, EventError, "`RotationToken`", True),
]


@pytest.mark.parametrize(("make", "error", "key", "names_arn"),
                         [row[1:] for row in EVENT_ROWS], ids=[row[0] for row in EVENT_ROWS])
def test_bad_event_makes_no_call_at_all(rig: Rig, leak_scan: LeakScan,
                                        make: Callable[[str, str], Any],
                                        error: type[RotationError], key: str | None,
                                        names_arn: bool) -> None:
    # GIVEN a staged rotation and a malformed event for it
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    before = db_state(rig.db)

    # WHEN the handler receives it
    outcome = fail(rig, make(rig.arn, token), leak_scan)

    # THEN it is refused before any call to Secrets Manager or the database
    assert type(outcome.error) is error, repr(outcome.error)
    assert_named(outcome.error, key, rig.arn if names_arn else None)
    assert outcome.calls.total() == 0, outcome.calls.calls
    assert db_state(rig.db) == before


# -- secret values, caught by createSecret --------------------------------------------------------

def _binary(rig_factory: Callable[..., Rig], sm: Any) -> Rig:
    rig = rig_factory()
    sm.put_secret_value(SecretId=rig.arn, SecretBinary=b"\x00\x01binary")
    return rig


SECRET_ROWS: list[tuple[str, dict[str, Any], type[RotationError], str | None]] = [
    # (id, overrides of the fake secret (... removes a key), error, key the message names)
    ("engine missing", {"engine": None}, SecretFormatError, "`engine`"),
    ("engine unknown", {"engine": "oracle"}, UnsupportedEngineError, "oracle"),
    ("engine a list", {"engine": ["postgres"]}, SecretFormatError, "`engine`"),
    ("host missing", {"host": None}, SecretFormatError, "`host`"),
    ("host with NUL", {"host": "db\x00evil"}, SecretFormatError, "`host`"),
    ("username missing", {"username": None}, SecretFormatError, "`username`"),
    ("username with NUL", {"username": "app\x00"}, SecretFormatError, "`username`"),
    ("username a number", {"username": 42}, SecretFormatError, "`username`"),
    ("password missing", {"password": None}, SecretFormatError, "`password`"),
    ("port out of range", {"port": 70000}, SecretFormatError, "`port`"),
    ("port not a number", {"port": "fivefourthreetwo"}, SecretFormatError, "`port`"),
    ("port missing for a plug-in engine", {"port": None}, SecretFormatError, "`port`"),
    ("dbname a number", {"dbname": 3}, SecretFormatError, "`dbname`"),
    ("sslmode unknown", {"sslmode": "prefer"}, SecretFormatError, "`sslmode`"),
    ("postgres user name over 63 bytes", {"engine": "postgres", "username": "é" * 40},
     SecretFormatError, "username"),
    ("mysql user name over 32 characters", {"engine": "mysql", "username": "u" * 40},
     SecretFormatError, "username"),
]


@pytest.mark.parametrize(("overrides", "error", "key"), [row[1:] for row in SECRET_ROWS],
                         ids=[row[0] for row in SECRET_ROWS])
def test_bad_secret_fails_create_secret_with_no_write(
        rig_factory: Callable[..., Rig], leak_scan: LeakScan, overrides: dict[str, Any],
        error: type[RotationError], key: str | None) -> None:
    # GIVEN a secret with a bad value as AWSCURRENT, and a staged rotation
    rig = rig_factory(**overrides)
    if "password" not in overrides:
        rig.db.passwords.setdefault("app_user", PASSWORD)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    before = db_state(rig.db)

    # WHEN createSecret runs
    outcome = fail(rig, rig.event("createSecret", token), leak_scan)

    # THEN it fails naming the key and the secret, before any write
    assert isinstance(outcome.error, error), repr(outcome.error)
    assert_named(outcome.error, key, rig.arn)
    assert outcome.writes == {}, f"createSecret wrote {outcome.writes} before failing"
    assert not rig.has_value(token)
    assert db_state(rig.db) == before


@pytest.mark.parametrize("value", ["not json at all", "[1, 2]", "null", '"just a string"',
                                   '{"engine": ' + "[" * 20_000 + "]" * 20_000 + "}"],
                         ids=["not JSON", "JSON array", "JSON null", "JSON string",
                              "deeply nested JSON"])
def test_unparseable_secret_fails_create_secret_with_no_write(
        rig: Rig, leak_scan: LeakScan, value: str) -> None:
    # GIVEN AWSCURRENT holds a value that is no JSON object
    version = rig.sm.put_secret_value(SecretId=rig.arn, SecretString=value)["VersionId"]
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    try:
        # WHEN createSecret runs
        outcome = fail(rig, rig.event("createSecret", token), leak_scan)

        # THEN a SecretFormatError names the secret; nothing is written
        assert isinstance(outcome.error, SecretFormatError), repr(outcome.error)
        assert_named(outcome.error, None, rig.arn)
        assert outcome.writes == {}
    finally:
        # The leak scan (tests/conftest.py) json.loads every stored value and only expects
        # ValueError: take the deeply nested one out of moto's store once checked.
        rig.service._backend_secret(rig.arn).versions[version]["secret_string"] = "{}"


def test_binary_secret_fails_as_a_format_error_with_no_write(
        rig_factory: Callable[..., Rig], sm: Any, leak_scan: LeakScan) -> None:
    # GIVEN AWSCURRENT holds only a SecretBinary
    rig = _binary(rig_factory, sm)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)

    # WHEN createSecret runs
    outcome = fail(rig, rig.event("createSecret", token), leak_scan)

    # THEN it is a secret format problem (not an AWS one), naming the secret; nothing written
    assert isinstance(outcome.error, SecretFormatError), repr(outcome.error)
    assert_named(outcome.error, "SecretString", rig.arn)
    assert outcome.writes == {}


def test_binary_pending_is_not_taken_for_a_configuration_check(
        rig: Rig, leak_scan: LeakScan) -> None:
    # GIVEN an AWSPENDING version that holds a SecretBinary (not "no value")
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.sm.put_secret_value(SecretId=rig.arn, ClientRequestToken=token,
                            SecretBinary=b"\x00not a credential", VersionStages=["AWSPENDING"])

    # WHEN testSecret runs
    outcome = fail(rig, rig.event("testSecret", token), leak_scan)

    # THEN it fails: the value-less check ("tested AWSCURRENT") is only for a version with no
    # value at all; a binary value is a bad secret
    assert isinstance(outcome.error, SecretFormatError), repr(outcome.error)
    assert_named(outcome.error, None, rig.arn)


# -- alternating users: masterarn and the master secret, caught by createSecret / setSecret -------

def _alternating(rig_factory: Callable[..., Rig], sm: Any, monkeypatch: pytest.MonkeyPatch,
                 master_value: str | None, *, master_exists: bool = True) -> Rig:
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    if not master_exists:
        master_arn: str | None = \
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-master-AbCdEf"
    elif master_value is None:
        master_arn = None
    else:
        master_arn = sm.create_secret(Name=f"master-{uuid.uuid4().hex[:6]}",
                                      SecretString=master_value)["ARN"]
    return rig_factory(masterarn=master_arn)


MASTER = "master secret"  # the message names it so, or by the key that points at it
MASTER_ROWS: list[tuple[str, str | None, bool, str, tuple[str, ...]]] = [
    # (id, master secret value, it exists, step that must fail, the message names one of)
    ("masterarn missing", None, True, "createSecret", ("`masterarn`",)),
    ("master secret does not exist", "{}", False, "setSecret", ("`masterarn`", MASTER)),
    ("master secret not JSON", "master-password", True, "setSecret", ("`masterarn`", MASTER)),
    ("master secret a JSON list", '["master_user"]', True, "setSecret",
     ("`masterarn`", MASTER)),
    ("master secret without password", json.dumps({"username": "master_user"}), True,
     "setSecret", ("`password`",)),
    ("master secret without username", json.dumps({"password": "master-Passw0rd!"}), True,
     "setSecret", ("`username`",)),
    ("master secret password a number", json.dumps({"username": "master_user",
                                                    "password": 1234567}), True,
     "setSecret", ("`password`",)),
]


@pytest.mark.parametrize(("master_value", "exists", "step", "names"),
                         [row[1:] for row in MASTER_ROWS], ids=[row[0] for row in MASTER_ROWS])
def test_bad_master_secret_fails_with_no_write(
        rig_factory: Callable[..., Rig], sm: Any, monkeypatch: pytest.MonkeyPatch,
        leak_scan: LeakScan, master_value: str | None, exists: bool, step: str,
        names: tuple[str, ...]) -> None:
    # GIVEN alternating users, and a missing or bad master secret
    rig = _alternating(rig_factory, sm, monkeypatch, master_value, master_exists=exists)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    if step == "setSecret":
        rig.invoke(rig.event("createSecret", token))
    before = db_state(rig.db)

    # WHEN `step` runs
    outcome = fail(rig, rig.event(step, token), leak_scan)

    # THEN it fails as a secret format problem, naming the key (or the master secret) and a
    # secret ARN (the user's, or the master's when that is the bad one), before any login with
    # a credential pieced together from two secrets; nothing is written
    text = str(outcome.error)
    assert isinstance(outcome.error, SecretFormatError), repr(outcome.error)
    assert any(name in text for name in names), f"the message names none of {names}: {text}"
    assert rig.arn in text or "secret:master-" in text or "gone-master" in text, text
    assert rig.db.logins["failed"] == 0, "a login was tried with a mixed-up credential"
    assert outcome.writes == {}
    assert db_state(rig.db) == before


# -- a bad AWSPENDING, caught by setSecret --------------------------------------------------------

PENDING_ROWS: list[tuple[str, Callable[[dict[str, Any]], str], str | None]] = [
    ("pending not JSON", lambda cur: "garbage", None),
    ("pending for another host", lambda cur: json.dumps({**cur, "host": "elsewhere.example",
                                                         "password": "Other-Passw0rd!"}),
     "`host`"),
    ("pending for another port", lambda cur: json.dumps({**cur, "port": 6543,
                                                         "password": "Other-Passw0rd!"}),
     "`port`"),
    ("pending for another user", lambda cur: json.dumps({**cur, "username": "postgres",
                                                         "password": "Other-Passw0rd!"}),
     "`username`"),
    ("pending without password", lambda cur: json.dumps({k: v for k, v in cur.items()
                                                         if k != "password"}), "`password`"),
]


@pytest.mark.parametrize(("make", "key"), [row[1:] for row in PENDING_ROWS],
                         ids=[row[0] for row in PENDING_ROWS])
def test_bad_pending_fails_set_secret_with_no_database_write(
        rig: Rig, leak_scan: LeakScan, make: Callable[[dict[str, Any]], str],
        key: str | None) -> None:
    # GIVEN an AWSPENDING version someone else stored with the rotation's token
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.sm.put_secret_value(SecretId=rig.arn, ClientRequestToken=token,
                            SecretString=make(rig.value("AWSCURRENT")),
                            VersionStages=["AWSPENDING"])
    before = db_state(rig.db)

    # WHEN setSecret runs
    outcome = fail(rig, rig.event("setSecret", token), leak_scan)

    # THEN it fails naming the key and the secret; the database is untouched
    assert isinstance(outcome.error, SecretFormatError), repr(outcome.error)
    assert_named(outcome.error, key, rig.arn)
    assert outcome.writes == {}
    assert db_state(rig.db) == before


# -- settings, caught when the container starts ---------------------------------------------------

SETTINGS_ROWS: list[tuple[str, dict[str, str], str]] = [
    ("unknown strategy", {"ROTATION_STRATEGY": "both"}, "ROTATION_STRATEGY"),
    ("password length too short", {"PASSWORD_LENGTH": "6"}, "PASSWORD_LENGTH"),
    ("every character excluded", {"EXCLUDE_CHARACTERS": "".join(map(chr, range(33, 127)))},
     "EXCLUDE_CHARACTERS"),
    ("CA bundle missing", {"ROTATION_CA_BUNDLE": "/nonexistent.pem"}, "ROTATION_CA_BUNDLE"),
    ("connect timeout not a number", {"ROTATION_DB_CONNECT_TIMEOUT": "5s"},
     "ROTATION_DB_CONNECT_TIMEOUT"),
    ("endpoint without a scheme", {"SECRETS_MANAGER_ENDPOINT": "localhost:4566"},
     "SECRETS_MANAGER_ENDPOINT"),
    ("endpoint not a URL", {"SECRETS_MANAGER_ENDPOINT": "secrets manager"},
     "SECRETS_MANAGER_ENDPOINT"),
]


@pytest.mark.parametrize(("env", "name"), [row[1:] for row in SETTINGS_ROWS],
                         ids=[row[0] for row in SETTINGS_ROWS])
def test_bad_setting_fails_before_any_call(rig: Rig, leak_scan: LeakScan,
                                           monkeypatch: pytest.MonkeyPatch,
                                           env: dict[str, str], name: str) -> None:
    # GIVEN a function whose environment has a bad value
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    before = db_state(rig.db)

    # WHEN it is invoked
    outcome = fail(rig, rig.event("createSecret", token), leak_scan)

    # THEN a ConfigError names the variable, and nothing was called or written
    assert isinstance(outcome.error, ConfigError), repr(outcome.error)
    assert_named(outcome.error, name, None)
    assert outcome.calls.total() == 0
    assert db_state(rig.db) == before


# -- hostile but legal names: rotate exactly that user ---------------------------------------------

@pytest.mark.parametrize("username", [
    "o'brien", 'say "hi"', "app; DROP ROLE postgres; --", "ünïcødé_用户", "tab\tname",
    "back\\slash", "$1 %s {}", "x" * 63])
@pytest.mark.parametrize("dbname", ["app'db", 'a"; DROP DATABASE x; --', "données"])
def test_hostile_names_rotate_exactly_that_user(rig_factory: Callable[..., Rig],
                                                username: str, dbname: str) -> None:
    # GIVEN a user and a database with hostile but legal names, and a bystander user
    rig = rig_factory(username=username, dbname=dbname)
    rig.db.passwords["bystander"] = "bystander-Passw0rd!"

    # WHEN the secret rotates
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN exactly that user changed, and the new value kept both names byte for byte
    assert report.succeeded, report.steps
    current = rig.value("AWSCURRENT")
    assert (current["username"], current["dbname"]) == (username, dbname)
    assert rig.db.passwords[username] == current["password"]
    assert rig.db.passwords["bystander"] == "bystander-Passw0rd!"
    assert set(rig.db.passwords) == {username, "bystander"}
    assert make_secret()["engine"] == current["engine"]
