"""rotation.client on moto, with the functional suite's in-memory database as the driver: what
it reads from Secrets Manager and when, through real rotations run by ``lambda_handler``.

Only the driver is fake (the secret's engine ``fake`` logs in through ``FakeAdapter``); the
client's reads, single flight, fallback and cooldown are the real ones. Real servers, TLS and
the libraries on top are tests/integration/test_client.py's."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest

import rotation.client
from rotation.adapters.base import AdapterOptions
from rotation.client import CredentialsRefusedError, RotatingCredentials
from rotation.credentials import DbCredentials, credentials_from_dict
from rotation.errors import ConfigError, ConnectError, LoginError, UnsupportedEngineError
from rotation.tools.local import ApiCallCounter
from tests.conftest import LeakScan, LogCapture
from tests.functional.fakes import FakeAdapter, FakeDatabase, FakeSession
from tests.rig import Rig


class FakeDriver:
    """The client's driver for engine ``fake``: FakeAdapter's login."""

    def __init__(self, ca_bundle: str | None) -> None:
        self.adapter = FakeAdapter(AdapterOptions(ca_bundle=ca_bundle))

    def kwargs(self, credentials: DbCredentials) -> dict[str, Any]:
        return {"user": credentials.username, "password": credentials.password}

    def connect(self, credentials: DbCredentials, extra: dict[str, Any]) -> FakeSession:
        return self.adapter.connect(credentials)


@pytest.fixture(autouse=True)
def fake_driver(monkeypatch: pytest.MonkeyPatch, db: FakeDatabase) -> None:
    monkeypatch.setitem(rotation.client._DRIVERS, "fake", FakeDriver)  # type: ignore[arg-type]


@pytest.fixture
def app_client(sm: Any) -> tuple[Any, ApiCallCounter]:
    """The application's own Secrets Manager client (same moto backend), with a call counter."""
    client = boto3.client("secretsmanager", region_name="us-east-1")
    return client, ApiCallCounter().attach(client)


@pytest.fixture
def creds_for(app_client: tuple[Any, ApiCallCounter]) -> Callable[[str], RotatingCredentials]:
    return lambda secret_id: RotatingCredentials(secret_id, client=app_client[0])


def connect_ok(creds: RotatingCredentials) -> str:
    conn = creds.connect()
    assert isinstance(conn, FakeSession)
    return conn.user


# -- the happy path --------------------------------------------------------------------------------

def test_one_read_then_no_call_on_the_happy_path(
        rig: Rig, creds_for: Callable[[str], RotatingCredentials],
        app_client: tuple[Any, ApiCallCounter]) -> None:
    # GIVEN an application's client
    creds = creds_for(rig.arn)
    # WHEN it opens 100 connections
    users = {connect_ok(creds) for _ in range(100)}
    # THEN Secrets Manager was read once, naming the stage
    assert users == {"app_user"}
    assert app_client[1].calls == {"GetSecretValue": 1}
    assert creds.stats()["secrets_manager_calls"] == 1


def test_a_finished_rotation_costs_one_refresh(
        rig: Rig, creds_for: Callable[[str], RotatingCredentials],
        app_client: tuple[Any, ApiCallCounter], db: FakeDatabase) -> None:
    # GIVEN a client that holds the current password
    creds = creds_for(rig.arn)
    connect_ok(creds)
    # WHEN a rotation finishes while it is idle
    assert rig.service.rotate(rig.arn, rig.invoke).succeeded
    failed_before = db.logins["failed"]
    # THEN the next connect is refused once, re-reads AWSCURRENT and logs in
    assert connect_ok(creds) == "app_user"
    assert connect_ok(creds) == "app_user"
    assert app_client[1].calls == {"GetSecretValue": 2}
    assert db.logins["failed"] - failed_before == 1
    assert creds.stats()["refreshes"] == 1


def test_the_single_user_window_is_bridged_by_awspending(
        rig: Rig, creds_for: Callable[[str], RotatingCredentials],
        app_client: tuple[Any, ApiCallCounter], log_capture: LogCapture,
        caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a rotation stopped between setSecret and finishSecret (the database already has the
    # new password, AWSCURRENT still the old one)
    creds = creds_for(rig.arn)
    connect_ok(creds)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    for step in ("createSecret", "setSecret"):
        rig.invoke(rig.event(step, token))

    # WHEN the application connects, from 8 threads at once
    with caplog.at_level("INFO", logger="rotation.client"):
        results = run_threads(8, lambda: connect_ok(creds))

    # THEN every connect succeeded with AWSPENDING, after one refresh and one fallback read
    assert results == ["app_user"] * 8
    assert app_client[1].calls == {"GetSecretValue": 3}
    assert creds.stats()["fallbacks"] == 1
    assert any("AWSPENDING" in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records)

    # ... and once finishSecret moved AWSCURRENT there, nothing more is read
    for step in ("testSecret", "finishSecret"):
        rig.invoke(rig.event(step, token))
    rig.service.unstage_pending(rig.arn, token)
    assert [connect_ok(creds) for _ in range(5)] == ["app_user"] * 5
    assert app_client[1].calls == {"GetSecretValue": 3}


def test_alternating_users_switch_user_with_the_version(
        rig_factory: Callable[..., Rig], sm: Any, db: FakeDatabase,
        creds_for: Callable[[str], RotatingCredentials],
        app_client: tuple[Any, ApiCallCounter], monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN alternating users
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    db.passwords["admin"] = "master-Passw0rd!"
    db.members["admin"] = {"master"}
    master_arn = sm.create_secret(Name="master", SecretString=json.dumps(
        {"engine": "fake", "host": "db.example.internal", "username": "admin",
         "password": "master-Passw0rd!"}))["ARN"]
    rig = rig_factory(masterarn=master_arn)
    creds = creds_for(rig.arn)
    users = [connect_ok(creds)]

    # WHEN four rotations run, the application connecting after each
    for _ in range(4):
        assert rig.service.rotate(rig.arn, rig.invoke).succeeded
        users.append(connect_ok(creds))
    # THEN the credential in hand kept working until the rotation after next changed its
    # password; then one read found AWSCURRENT, the same user again with its new password
    assert users == ["app_user"] * 5
    assert app_client[1].calls["GetSecretValue"] == 3

    # WHEN three rotations run while the application is idle
    for _ in range(3):
        assert rig.service.rotate(rig.arn, rig.invoke).succeeded
    # THEN one read finds the other user
    assert connect_ok(creds) == "app_user_clone"
    assert app_client[1].calls["GetSecretValue"] == 4


def test_single_flight_under_concurrency(
        rig: Rig, creds_for: Callable[[str], RotatingCredentials],
        app_client: tuple[Any, ApiCallCounter]) -> None:
    # GIVEN 16 threads connecting continuously
    creds = creds_for(rig.arn)
    connect_ok(creds)
    stop = threading.Event()
    failures: list[BaseException] = []

    def work() -> None:
        while not stop.wait(0.002):  # a real login takes milliseconds: leave moto the GIL
            try:
                connect_ok(creds)
            except Exception as exc:
                failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    # WHEN five rotations run meanwhile
    per_rotation = []
    try:
        for _ in range(5):
            before = app_client[1].total()
            assert rig.service.rotate(rig.arn, rig.invoke).succeeded
            time.sleep(0.05)
            per_rotation.append(app_client[1].total() - before)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    # THEN no connect failed, and each rotation cost the process at most 3 reads
    print(f"Secrets Manager calls per rotation with 16 threads: {per_rotation}")
    assert failures == []
    assert all(1 <= calls <= 3 for calls in per_rotation), per_rotation


# -- giving up, and not hammering Secrets Manager ------------------------------------------------

def test_a_wrong_secret_names_the_labels_tried_and_cools_down(
        rig: Rig, db: FakeDatabase, creds_for: Callable[[str], RotatingCredentials],
        app_client: tuple[Any, ApiCallCounter], leak_scan: LeakScan) -> None:
    # GIVEN a secret whose password the database does not have (changed outside rotation)
    db.passwords["app_user"] = "changed-by-hand-Passw0rd"
    leak_scan.add("changed-by-hand-Passw0rd")
    creds = creds_for(rig.arn)
    creds.cooldown = 1.0

    # WHEN 50 connects come in a burst from 10 threads
    errors: list[BaseException] = []

    def burst() -> None:
        for _ in range(5):
            try:
                creds.connect()
            except CredentialsRefusedError as exc:
                errors.append(exc)

    run_threads(10, burst)

    # THEN each failed with an error naming the secret and the labels tried
    assert len(errors) == 50
    first = str(errors[0])
    leak_scan.add_text("\n".join(str(e) for e in errors))
    assert rig.arn in first
    assert "AWSCURRENT" in first
    assert "AWSPENDING" in first
    # ... and Secrets Manager was asked once to load and once (3 reads) to recover
    assert app_client[1].calls == {"GetSecretValue": 4}
    stats = creds.stats()
    assert (stats["gave_up"], stats["cooldown_refusals"]) == (1, 49)

    # WHEN the cooldown is over (and the secret still wrong)
    time.sleep(1.0)
    with pytest.raises(CredentialsRefusedError):
        creds.connect()
    # THEN one more recovery was tried
    assert app_client[1].calls == {"GetSecretValue": 7}


def test_a_fixed_secret_is_found_after_the_cooldown(
        rig: Rig, db: FakeDatabase, sm: Any, creds_for: Callable[[str], RotatingCredentials],
        app_client: tuple[Any, ApiCallCounter]) -> None:
    # GIVEN a client that gave up on a wrong secret
    db.passwords["app_user"] = "changed-by-hand-Passw0rd"
    creds = creds_for(rig.arn)
    creds.cooldown = 0.2
    with pytest.raises(CredentialsRefusedError):
        creds.connect()
    # WHEN someone puts the database's password in the secret
    value = rig.value("AWSCURRENT")
    sm.put_secret_value(SecretId=rig.arn, SecretString=json.dumps(
        {**value, "password": "changed-by-hand-Passw0rd"}))
    # THEN the cooldown still answers at once, and after it the fixed secret is read
    with pytest.raises(CredentialsRefusedError, match=r"less than 0\.2 s ago"):
        creds.connect()
    time.sleep(0.25)
    assert connect_ok(creds) == "app_user"


@pytest.mark.parametrize(("fault", "error"), [
    ("unreachable", ConnectError),
    ("locked", LoginError),
])
def test_other_failures_are_not_retried_with_other_labels(
        rig_factory: Callable[..., Rig], db: FakeDatabase,
        creds_for: Callable[[str], RotatingCredentials],
        app_client: tuple[Any, ApiCallCounter], fault: str, error: type[Exception]) -> None:
    # GIVEN a host that cannot be reached, or an account locked whatever the password
    rig = rig_factory(**({"host": "unreachable.invalid"} if fault == "unreachable" else {}))
    if fault == "locked":
        db.locked.add("app_user")
    creds = creds_for(rig.arn)
    # WHEN the application connects
    with pytest.raises(error) as caught:
        creds.connect()
    # THEN the failure is raised as it is, after the first read only
    assert type(caught.value) is error
    assert app_client[1].calls == {"GetSecretValue": 1}
    assert db.logins["failed"] == (1 if fault == "locked" else 0)


def test_awspending_removed_between_the_reads(
        rig: Rig, sm: Any, creds_for: Callable[[str], RotatingCredentials],
        app_client: tuple[Any, ApiCallCounter]) -> None:
    # GIVEN a client refused during the window, whose AWSPENDING read comes just after
    # finishSecret moved AWSCURRENT and the service removed AWSPENDING
    creds = creds_for(rig.arn)
    connect_ok(creds)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    for step in ("createSecret", "setSecret"):
        rig.invoke(rig.event(step, token))

    def finish_first(params: dict[str, Any], **_: Any) -> None:
        if params.get("VersionStage") == "AWSPENDING" and rig.has_value(token):
            for step in ("testSecret", "finishSecret"):
                rig.invoke(rig.event(step, token))
            rig.service.unstage_pending(rig.arn, token)

    app_client[0].meta.events.register("before-parameter-build.secrets-manager.GetSecretValue",
                                       finish_first)
    # WHEN it connects
    user = connect_ok(creds)
    # THEN one more look at AWSCURRENT found the new version
    assert user == "app_user"
    assert app_client[1].calls == {"GetSecretValue": 4}
    assert creds.stats()["refreshes"] == 1


# -- connection_kwargs -----------------------------------------------------------------------------

def test_connection_kwargs_are_fresh_and_proven(
        rig: Rig, db: FakeDatabase, creds_for: Callable[[str], RotatingCredentials],
        app_client: tuple[Any, ApiCallCounter]) -> None:
    # GIVEN a client
    creds = creds_for(rig.arn)
    # WHEN a pool asks for keyword arguments twice in a row
    first, second = creds.connection_kwargs(), creds.connection_kwargs()
    # THEN they are equal but separate dicts, and one login proved them
    assert first == second == {"user": "app_user", "password": rig.value("AWSCURRENT")["password"]}
    assert first is not second
    assert db.logins["ok"] == 1

    # WHEN a rotation finishes and the pool asks again later
    assert rig.service.rotate(rig.arn, rig.invoke).succeeded
    time.sleep(creds.proof_interval)
    renewed = creds.connection_kwargs()
    # THEN the proof login was refused, and the answer is the new credential
    assert renewed["password"] == rig.value("AWSCURRENT")["password"] != first["password"]
    assert app_client[1].calls == {"GetSecretValue": 2}


# -- set-up errors ---------------------------------------------------------------------------------

def test_construction_errors(monkeypatch: pytest.MonkeyPatch, sm: Any, tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="secret name or ARN"):
        RotatingCredentials("  ", client=sm)
    with pytest.raises(ConfigError, match="ca_bundle names"):
        RotatingCredentials("s", client=sm, ca_bundle=str(tmp_path / "missing.pem"))
    monkeypatch.setenv("ROTATION_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="ROTATION_CA_BUNDLE names"):
        RotatingCredentials("s", client=sm)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("ROTATION_CA_BUNDLE", str(bundle))
    assert RotatingCredentials("s", client=sm).ca_bundle == str(bundle)


def test_an_engine_it_cannot_serve_is_named(sm: Any) -> None:
    arn = sm.create_secret(Name="redis", SecretString=json.dumps(
        {"engine": "redis", "host": "cache.internal", "port": 6379, "username": "app",
         "password": "redis-Passw0rd-123"}))["ARN"]
    with pytest.raises(UnsupportedEngineError, match="'redis'"):
        RotatingCredentials(arn, client=sm).connect()


def test_the_secret_decides_server_user_and_tls(sm: Any) -> None:
    # GIVEN a PostgreSQL secret (the real driver: psycopg)
    arn = sm.create_secret(Name="pg", SecretString=json.dumps(
        {"engine": "postgres", "host": "127.0.0.1", "port": 1, "username": "app",
         "password": "pg-Passw0rd-123"}))["ARN"]
    creds = RotatingCredentials(arn, client=sm, ca_bundle=__file__)
    # WHEN a caller tries to override what the secret decides
    for key in ("sslmode", "password", "host", "sslrootcert"):
        with pytest.raises(TypeError, match=key):
            creds.connect(**{key: "x"})
    # THEN it is refused; and the driver's arguments carry the rotation function's TLS and
    # authentication parameters, none of its session settings (autocommit, application_name)
    credentials = credentials_from_dict(json.loads(sm.get_secret_value(
        SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]), arn)
    assert creds._driver(credentials).kwargs(credentials) == {
        "host": "127.0.0.1", "port": 1, "user": "app", "password": "pg-Passw0rd-123",
        "dbname": "postgres", "connect_timeout": 10, "sslmode": "verify-full",
        "sslrootcert": __file__, "gssencmode": "disable", "ssl_min_protocol_version": "TLSv1.2",
        "require_auth": "scram-sha-256,md5"}


# -- what it imports -------------------------------------------------------------------------------

def run_threads(count: int, target: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = target()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


BLOCKED = ("aws_lambda_powertools", "rotation.logs", "rotation.metrics", "rotation.handler")


def test_importing_the_client_loads_no_driver_and_no_powertools() -> None:
    code = ("import sys, rotation.client\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('psycopg', 'pymysql', 'aws_lambda_powertools', 'moto')\n"
            "             or m in ('rotation.logs', 'rotation.metrics')))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"


def test_usable_without_the_functions_dependencies() -> None:
    # GIVEN a process where Powertools (and the function's logging) cannot be imported
    code = f"""
import json, socket, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "aws_lambda_powertools" or name in {BLOCKED!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import boto3
from botocore.stub import Stubber
from rotation.client import RotatingCredentials
from rotation.errors import ConnectError
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
sm = boto3.client("secretsmanager", region_name="us-east-1", aws_access_key_id="x",
                  aws_secret_access_key="x")
stub = Stubber(sm)
value = {{"engine": "postgres", "host": "127.0.0.1", "port": port, "username": "app",
          "password": "Stubbed-Passw0rd-1", "sslmode": "require"}}
stub.add_response("get_secret_value", {{"ARN": "arn:aws:secretsmanager:us-east-1:1:secret:s",
    "Name": "s", "VersionId": "v" * 32, "SecretString": json.dumps(value),
    "VersionStages": ["AWSCURRENT"]}}, {{"SecretId": "s", "VersionStage": "AWSCURRENT"}})
stub.activate()
try:
    RotatingCredentials("s", client=sm).connect()
except ConnectError as exc:
    print("ConnectError")
print(sorted(m for m in sys.modules if m.split(".")[0] == "aws_lambda_powertools"))
"""
    # WHEN it connects (to a closed port) through the client
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    # THEN the driver's failure is the adapter's error, and nothing of the function was needed
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["ConnectError", "[]"]
