"""The ``rotation`` command line, in-process: moto for Secrets Manager, the in-memory database for
the engine, no servers. Every test hands the output it captured to the leak scan."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

import rotation.adapters
import rotation.tools.cli
import rotation.tools.demo
from rotation.config import Settings
from rotation.errors import ConnectError, DatabaseError, DbTimeoutError, LoginError, TlsError
from rotation.event import STEPS
from rotation.tools.cli import build_parser, main, subcommands
from rotation.tools.doctor import PYTHON_RUNTIME_DEPRECATION, run_doctor
from tests.conftest import EVENTS, ROOT, LeakScan, LogCapture
from tests.functional.conftest import FAKE_ENGINE
from tests.functional.fake_local_stack import FakeServer, install_fake_stack
from tests.functional.fakes import FakeDatabase
from tests.rig import Rig

STEP_EVENTS = sorted(p.name for p in EVENTS.glob("*Secret*.json"))
SECRET_SAMPLES = ROOT / "examples" / "secrets"


def output(capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> tuple[str, str]:
    """What the command printed, registered with the leak scan."""
    out, err = capsys.readouterr()
    leak_scan.add_text(out)
    leak_scan.add_text(err)
    return out, err


# -- the embedded stack on the in-memory database --------------------------------------------

@pytest.fixture
def fake_stack(db: FakeDatabase, monkeypatch: pytest.MonkeyPatch) -> FakeDatabase:
    """Every engine runs on the in-memory database; the 'sandbox' starts a FakeServer."""
    return install_fake_stack(db, monkeypatch)


# -- help and usage ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", sorted(subcommands(build_parser())))
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str],
                                   leak_scan: LeakScan) -> None:
    # GIVEN / WHEN --help on a subcommand
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])

    # THEN it exits 0 with its usage
    out, _ = output(capsys, leak_scan)
    assert info.value.code == 0
    assert f"usage: rotation {command}" in out


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                        leak_scan: LeakScan) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    output(capsys, leak_scan)
    assert info.value.code == 2


@pytest.mark.parametrize("command", ["rotate", "doctor"])
def test_no_secret_id_without_local_is_a_usage_error(
        command: str, capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> None:
    with pytest.raises(SystemExit) as info:
        main([command])
    _, err = output(capsys, leak_scan)
    assert info.value.code == 2
    assert f"usage: rotation {command}" in err
    assert "SECRET_ID is required (or pass --local)" in err


# -- invoke --local ------------------------------------------------------------------------------

@pytest.mark.parametrize("event_file", STEP_EVENTS)
def test_invoke_local_replays_each_step_event(event_file: str, fake_stack: FakeDatabase,
                                              capsys: pytest.CaptureFixture[str],
                                              leak_scan: LeakScan) -> None:
    # GIVEN a sample step event
    event = json.loads((EVENTS / event_file).read_text())

    # WHEN it is replayed on the embedded stack
    code = main(["invoke", "--local", str(EVENTS / event_file)])

    # THEN its step ran after the steps before it, and the labels are shown
    out, err = output(capsys, leak_scan)
    assert code == 0, out + err
    step = event["Step"]
    assert f"> ok  {step}" in out
    for earlier in STEPS[:STEPS.index(step)]:
        assert f"ok  {earlier}" in out
    assert "secret rotation-demo-postgres" in out
    assert "labels after" in out
    if step == "finishSecret":
        assert f"{event['ClientRequestToken'][:8]} AWSCURRENT" in out
        assert "AWSPENDING" not in out.split("labels after")[1]
    else:
        assert f"{event['ClientRequestToken'][:8]} AWSPENDING" in out
    if "RotationToken" in event:
        leak_scan.add(event["RotationToken"])


def test_invoke_local_keeps_the_events_rotation_token(fake_stack: FakeDatabase,
                                                      capsys: pytest.CaptureFixture[str],
                                                      leak_scan: LeakScan,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a spy on every PutSecretValue the function makes
    event = json.loads((EVENTS / "createSecret.json").read_text())
    seen: list[dict[str, Any]] = []
    real_invoke = rotation.tools.demo.LocalTarget.invoke

    def spying_invoke(self: rotation.tools.demo.LocalTarget, ev: dict[str, Any]) -> dict[str, Any]:
        client = rotation.handler.get_app().secrets.client
        if not getattr(client, "_spied", False):
            client.meta.events.register(
                "before-parameter-build.secrets-manager.PutSecretValue",
                lambda params, **_: seen.append(dict(params)))
            client._spied = True
        return real_invoke(self, ev)

    monkeypatch.setattr(rotation.tools.demo.LocalTarget, "invoke", spying_invoke)

    # WHEN createSecret.json is replayed
    assert main(["invoke", "--local", str(EVENTS / "createSecret.json")]) == 0

    # THEN the put carried the event's RotationToken, and the output does not show it
    output(capsys, leak_scan)
    leak_scan.add(event["RotationToken"])
    assert [p.get("RotationToken") for p in seen] == [event["RotationToken"]]
    assert [p["ClientRequestToken"] for p in seen] == [event["ClientRequestToken"]]


def test_invoke_local_alternating_sample(fake_stack: FakeDatabase,
                                         capsys: pytest.CaptureFixture[str],
                                         leak_scan: LeakScan) -> None:
    # GIVEN the alternating-users sample (it names a master secret)
    # WHEN the finishSecret event is replayed with it
    code = main(["invoke", "--local", "--secret",
                 str(SECRET_SAMPLES / "secret-postgres-alternating.json"),
                 str(EVENTS / "finishSecret.json")])

    # THEN the clone user was created by the master and the rotation finished
    out, err = output(capsys, leak_scan)
    assert code == 0, out + err
    assert "alternating-users" in out
    assert "app_user_clone" in fake_stack.passwords


def test_invoke_local_reports_a_failing_step(fake_stack: FakeDatabase,
                                             capsys: pytest.CaptureFixture[str],
                                             leak_scan: LeakScan) -> None:
    # GIVEN a database that refuses the next password change
    from rotation.errors import PrivilegeError

    fake_stack.fail_next["set_password"] = PrivilegeError("permission denied to alter role")

    # WHEN setSecret is replayed
    code = main(["invoke", "--local", str(EVENTS / "setSecret.json")])

    # THEN the command fails and says why
    out, _ = output(capsys, leak_scan)
    assert code == 1
    assert "ERR setSecret" in out
    assert "PrivilegeError" in out


def test_invoke_local_rejects_a_bad_event_file(tmp_path: Path, fake_stack: FakeDatabase,
                                               capsys: pytest.CaptureFixture[str],
                                               leak_scan: LeakScan) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Step": "rotateEverything", "SecretId": "x",
                               "ClientRequestToken": str(uuid.uuid4())}))
    assert main(["invoke", "--local", str(bad)]) == 2
    _, err = output(capsys, leak_scan)
    assert "valid steps are createSecret" in err


# -- invoke (AWS) --------------------------------------------------------------------------------

def test_invoke_against_the_service(rig: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    leak_scan: LeakScan) -> None:
    # GIVEN a secret whose rotation the service started (AWSPENDING staged)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    event_file = tmp_path / "createSecret.json"
    event_file.write_text(json.dumps(rig.event("createSecret", token)))

    # WHEN the event is invoked without --local (moto plays AWS here)
    code = main(["invoke", str(event_file), "--region", "us-east-1"])

    # THEN the step ran against that secret
    out, err = output(capsys, leak_scan)
    assert code == 0, err
    assert "createSecret: done" in out
    assert rig.has_value(token)


def test_invoke_against_the_service_reports_the_error(sm: Any, capsys: pytest.CaptureFixture[str],
                                                      leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a sample event names a secret that does not exist
    code = main(["invoke", str(EVENTS / "setSecret.json")])

    # THEN the command fails with the function's error and no traceback
    _, err = output(capsys, leak_scan)
    assert code == 1
    assert "error: setSecret failed: DescribeSecret" in err
    assert "Traceback" not in err


# -- rotate --local ------------------------------------------------------------------------------

def test_rotate_local_text(fake_stack: FakeDatabase, capsys: pytest.CaptureFixture[str],
                           leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a local rotation, output piped (not a TTY)
    code = main(["rotate", "--local"])

    # THEN one plain line per step, then labels, calls, logins and the proof
    out, _ = output(capsys, leak_scan)
    assert code == 0, out
    assert "\r" not in out
    for step in STEPS:
        assert f"ok  {step}" in out
    assert "Secrets Manager calls: 7" in out
    assert "database logins: 2 succeeded, 0 failed" in out
    assert "old credential is refused, new credential logs in" in out


def test_rotate_local_json(fake_stack: FakeDatabase, capsys: pytest.CaptureFixture[str],
                           leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a local rotation with --json
    code = main(["rotate", "--local", "--json", "my-secret"])

    # THEN stdout is exactly one JSON document with what scripts need
    out, _ = output(capsys, leak_scan)
    assert code == 0
    doc = json.loads(out)
    assert doc["secret"] == "my-secret"
    assert doc["succeeded"] is True
    assert [s["step"] for s in doc["steps"]] == list(STEPS)
    assert all(s["outcome"] == "done" and s["duration_ms"] >= 0 for s in doc["steps"])
    assert doc["api_calls"] == {"DescribeSecret": 4, "GetSecretValue": 1, "PutSecretValue": 1,
                                "UpdateSecretVersionStage": 1}
    assert doc["db_logins"] == {"succeeded": 2, "failed": 0}
    assert list(doc["labels_after"].values()).count(["AWSCURRENT"]) == 1
    assert doc["new_password_works"] is True
    assert doc["old_password_works"] is False


def test_rotate_local_live_display_on_a_tty(fake_stack: FakeDatabase,
                                            capsys: pytest.CaptureFixture[str],
                                            leak_scan: LeakScan,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN stdout is a terminal
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)

    # WHEN a local rotation runs
    assert main(["rotate", "--local"]) == 0

    # THEN each step first shows as running, then is replaced by its result
    out, _ = output(capsys, leak_scan)
    assert "... createSecret  running" in out
    assert "\r\033[K  ok  createSecret" in out


# -- rotate (AWS) --------------------------------------------------------------------------------

@dataclass
class ScriptedService:
    """Plays Secrets Manager's part behind a second client: RotateSecret stages AWSPENDING, then
    each DescribeSecret poll lets the service run one more step of the function."""

    rig: Rig
    client: Any
    token: str
    steps_left: list[str]

    def rotate_secret(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        self.rig.service.stage_pending(self.rig.arn, self.token)
        return AWSResponse("https://local", 200, {}, None), {
            "ARN": self.rig.arn, "Name": self.rig.arn.split(":")[-1], "VersionId": self.token}

    def describe_secret(self, **_: Any) -> None:
        if self.steps_left:
            step = self.steps_left.pop(0)
            # the function's own output goes to its log in AWS, never to the CLI's stdout
            with contextlib.redirect_stdout(io.StringIO()):
                self.rig.invoke(self.rig.event(step, self.token))
            if step == "finishSecret":
                self.rig.service.unstage_pending(self.rig.arn, self.token)


@pytest.fixture
def scripted(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ScriptedService]:
    import boto3

    # The function runs in this process only for the test: its metric documents are not the
    # CLI's output (in AWS they go to the function's own log).
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    def build(steps: tuple[str, ...] = STEPS) -> ScriptedService:
        client = boto3.client("secretsmanager", region_name="us-east-1")
        script = ScriptedService(rig, client, str(uuid.uuid4()), list(steps))
        client.meta.events.register("before-call.secrets-manager.RotateSecret",
                                    script.rotate_secret)
        client.meta.events.register("before-call.secrets-manager.DescribeSecret",
                                    script.describe_secret)
        monkeypatch.setattr(rotation.tools.cli, "secrets_client", lambda *_: client)
        return script

    return build


def test_rotate_follows_the_service_until_done(scripted: Callable[..., ScriptedService],
                                               capsys: pytest.CaptureFixture[str],
                                               leak_scan: LeakScan) -> None:
    # GIVEN the service will run the four steps while the CLI polls
    script = scripted()

    # WHEN the CLI starts the rotation and follows it
    code = main(["rotate", script.rig.arn, "--interval", "0.01"])

    # THEN it shows the inferred progress and ends when AWSPENDING left the new version
    out, err = output(capsys, leak_scan)
    assert code == 0, err
    lines = out.splitlines()
    assert any("rotation started" in line for line in lines)
    assert any("AWSPENDING staged" in line for line in lines)
    assert any("AWSCURRENT moved" in line for line in lines)
    assert any("rotation complete" in line for line in lines)
    assert f"{script.token[:8]} AWSCURRENT" in out
    assert script.rig.value("AWSCURRENT")["password"] == script.rig.db.passwords["app_user"]


def test_rotate_json_against_the_service(scripted: Callable[..., ScriptedService],
                                         capsys: pytest.CaptureFixture[str],
                                         leak_scan: LeakScan) -> None:
    script = scripted()
    assert main(["rotate", script.rig.arn, "--json", "--interval", "0.01"]) == 0
    out, _ = output(capsys, leak_scan)
    doc = json.loads(out)
    assert doc["succeeded"] is True
    assert doc["version"] == script.token
    assert doc["labels_after"][script.token] == ["AWSCURRENT"]


def test_rotate_times_out_and_points_at_doctor(scripted: Callable[..., ScriptedService],
                                               capsys: pytest.CaptureFixture[str],
                                               leak_scan: LeakScan) -> None:
    # GIVEN a rotation that stops after createSecret (the function keeps failing)
    script = scripted(steps=("createSecret",))

    # WHEN the CLI follows it with a short timeout
    code = main(["rotate", script.rig.arn, "--timeout", "0.2", "--interval", "0.01"])

    # THEN it fails, says where the rotation stands, and names the next command
    _, err = output(capsys, leak_scan)
    assert code == 1
    assert "did not finish within 0.2 s (AWSPENDING staged" in err
    assert "rotation doctor" in err


def test_rotate_refused_by_the_service(rig: Rig, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str],
                                       leak_scan: LeakScan) -> None:
    # GIVEN the service refuses RotateSecret because a previous rotation is stuck
    import boto3

    client = boto3.client("secretsmanager", region_name="us-east-1")
    client.meta.events.register(
        "before-call.secrets-manager.RotateSecret",
        lambda **_: (AWSResponse("https://local", 400, {}, None), {"Error": {
            "Code": "InvalidRequestException",
            "Message": "A previous rotation isn't complete. That rotation will be reattempted."}}))
    monkeypatch.setattr(rotation.tools.cli, "secrets_client", lambda *_: client)

    # WHEN the CLI tries to rotate
    code = main(["rotate", rig.arn])

    # THEN it fails with the service's reason and the fix
    _, err = output(capsys, leak_scan)
    assert code == 1
    assert "A previous rotation isn't complete" in err
    assert "--fix" in err


# -- demo ----------------------------------------------------------------------------------------

def test_demo_rotates_n_times_and_proves_each(fake_stack: FakeDatabase,
                                              capsys: pytest.CaptureFixture[str],
                                              leak_scan: LeakScan) -> None:
    # GIVEN / WHEN the demo runs two rotations
    code = main(["demo", "--rotations", "2"])

    # THEN both are shown with labels, calls, logins and proof, and the demo exits 0
    out, _ = output(capsys, leak_scan)
    assert code == 0, out
    assert "rotation 1/2" in out
    assert "rotation 2/2" in out
    assert out.count("old credential is refused, new credential logs in") == 2
    assert "all 2 rotation(s) proven" in out
    assert "AWSPREVIOUS" in out


def test_demo_json(fake_stack: FakeDatabase, capsys: pytest.CaptureFixture[str],
                   leak_scan: LeakScan) -> None:
    assert main(["demo", "--rotations", "3", "--json"]) == 0
    out, _ = output(capsys, leak_scan)
    doc = json.loads(out)
    assert doc["succeeded"] is True
    assert [r["rotation"] for r in doc["rotations"]] == [1, 2, 3]
    # warm container: the first rotation reads the current value, later ones have it cached
    assert [r["api_calls_total"] for r in doc["rotations"]] == [7, 6, 6]
    assert all(r["db_logins"] == {"succeeded": 2, "failed": 0} for r in doc["rotations"])


def test_demo_without_the_engines_adapter_fails_clearly(
        fake_stack: FakeDatabase, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> None:
    # GIVEN the MariaDB adapter cannot be imported
    monkeypatch.setitem(rotation.adapters.BUILTIN, "mariadb", "rotation.adapters.nope:Missing")

    # WHEN the demo is asked for MariaDB
    code = main(["demo", "--engine", "mariadb"])

    # THEN it could not run (exit 3), with the reason, not a traceback
    _, err = output(capsys, leak_scan)
    assert code == 3
    assert "engine 'mariadb' is not available" in err
    assert "Traceback" not in err


def test_demo_stops_its_server_on_ctrl_c(db: FakeDatabase, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         leak_scan: LeakScan) -> None:
    # GIVEN a server that records being stopped, and a Ctrl-C during the first rotation
    fake = FAKE_ENGINE["fake"]
    monkeypatch.setattr(rotation.adapters, "BUILTIN", {**rotation.adapters.BUILTIN,
                                                       "postgres": fake})
    stopped: list[bool] = []

    @contextmanager
    def fake_server(engine: str) -> Iterator[FakeServer]:
        try:
            yield FakeServer(db)
        finally:
            stopped.append(True)

    monkeypatch.setattr(rotation.tools.demo, "sandbox_server", fake_server)
    db.fail_next["set_password"] = KeyboardInterrupt()  # type: ignore[assignment]

    # WHEN the demo runs
    code = main(["demo"])

    # THEN it exits 130 and the server was stopped
    _, err = output(capsys, leak_scan)
    assert code == 130
    assert stopped == [True]
    assert "interrupted" in err


def test_demo_treats_sigterm_like_ctrl_c(fake_stack: FakeDatabase,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         leak_scan: LeakScan) -> None:
    # GIVEN the process gets SIGTERM during testSecret
    import os
    import signal

    from tests.functional.fakes import FakeSession

    monkeypatch.setattr(FakeSession, "ping", lambda self: os.kill(os.getpid(), signal.SIGTERM))
    previous = signal.getsignal(signal.SIGTERM)

    # WHEN the demo runs
    code = main(["demo"])

    # THEN it stops as on Ctrl-C, and the SIGTERM handler is restored afterwards
    _, err = output(capsys, leak_scan)
    assert code == 130
    assert "interrupted" in err
    assert signal.getsignal(signal.SIGTERM) == previous


# -- doctor --------------------------------------------------------------------------------------

@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port something listens on (the in-memory database's stand-in address)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def drig(rig_factory: Callable[..., Rig], listener: int) -> Rig:
    """A rig whose secret points at a listening local port."""
    return rig_factory(host="127.0.0.1", port=listener)


def statuses(report: Any) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_doctor_clean_secret_passes(drig: Rig, capsys: pytest.CaptureFixture[str],
                                    leak_scan: LeakScan) -> None:
    # GIVEN a healthy secret
    # WHEN the doctor runs (no Lambda access)
    code = main(["doctor", drig.arn, "--no-function"])

    # THEN nothing fails, and each check has a line
    out, _ = output(capsys, leak_scan)
    assert code == 0, out
    for name in ("secrets-manager-endpoint", "rotation-configured", "kms-decrypt",
                 "secret-format", "db-network", "db-tls", "db-login", "staging-labels"):
        assert f"ok    {name}" in out
    assert "skip  lambda-runtime" in out
    assert "0 fail" in out


def test_doctor_json(drig: Rig, capsys: pytest.CaptureFixture[str],
                     leak_scan: LeakScan) -> None:
    assert main(["doctor", drig.arn, "--json", "--no-function"]) == 0
    out, _ = output(capsys, leak_scan)
    doc = json.loads(out)
    assert doc["ok"] is True
    assert doc["secret_arn"] == drig.arn
    assert {c["status"] for c in doc["checks"]} <= {"ok", "warn", "skip"}
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in doc["checks"])


@pytest.mark.parametrize(("missing", "overrides"), [
    ("host", {"host": None}),
    ("username", {"username": None}),
    ("password", {"password": None}),
    ("engine", {"engine": None}),
])
def test_doctor_missing_key(missing: str, overrides: dict[str, Any],
                            rig_factory: Callable[..., Rig], listener: int,
                            capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> None:
    # GIVEN a secret without one required key
    rig = rig_factory(**{"host": "127.0.0.1", "port": listener, **overrides})

    # WHEN the doctor runs
    code = main(["doctor", rig.arn, "--no-function"])

    # THEN secret-format fails naming the key, and the database checks are skipped
    out, _ = output(capsys, leak_scan)
    assert code == 1
    assert "FAIL  secret-format" in out
    assert f"key `{missing}` is missing" in out
    assert "skip  db-login" in out


def test_doctor_alternating_users_needs_masterarn(drig: Rig) -> None:
    # GIVEN / WHEN the function's strategy is alternating users but the secret has no masterarn
    report = run_doctor(drig.sm, drig.arn, Settings(), strategy="alternating-users")

    # THEN secret-format fails on `masterarn`
    assert report.check("secret-format").status == "fail"
    assert "`masterarn` is missing" in report.check("secret-format").detail


def test_doctor_masterarn_checks_the_master(sm: Any, rig_factory: Callable[..., Rig],
                                            listener: int, db: FakeDatabase) -> None:
    # GIVEN an alternating-users secret whose master secret (RDS's shape) holds a working admin
    db.passwords["master_user"] = "master-Passw0rd!"
    db.members["master_user"] = {"master"}
    master_arn = sm.create_secret(Name="master", SecretString=json.dumps(
        {"username": "master_user", "password": "master-Passw0rd!"}))["ARN"]
    rig = rig_factory(host="127.0.0.1", port=listener, masterarn=master_arn)

    # WHEN the doctor runs; then again after the master's password changed
    ok = run_doctor(sm, rig.arn, Settings())
    db.passwords["master_user"] = "changed-elsewhere-1"
    broken = run_doctor(sm, rig.arn, Settings())

    # THEN the strategy is inferred from masterarn, and the master login is checked
    assert "inferred from `masterarn`" in ok.check("secret-format").detail
    assert ok.check("master-secret").status == "ok"
    assert broken.check("master-secret").status == "fail"
    assert "login fails" in broken.check("master-secret").detail


def test_doctor_stuck_pending_is_reported(drig: Rig) -> None:
    # GIVEN a rotation that stopped after createSecret
    token = str(uuid.uuid4())
    drig.service.rotate(drig.arn, drig.invoke, token=token, steps=("createSecret",))

    # WHEN the doctor runs without --fix
    report = run_doctor(drig.sm, drig.arn, Settings())

    # THEN it fails on the stuck label, names --fix, and changes nothing
    check = report.check("staging-labels")
    assert check.status == "fail"
    assert f"AWSPENDING is on version {token[:8]}" in check.detail
    assert "--fix" in check.fix
    assert "AWSPENDING" in drig.service.labels(drig.arn)[token]


def test_doctor_fix_clears_a_stuck_pending_after_current_logs_in(
        drig: Rig, capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> None:
    # GIVEN a rotation stuck after createSecret (the database still uses AWSCURRENT)
    token = str(uuid.uuid4())
    drig.service.rotate(drig.arn, drig.invoke, token=token, steps=("createSecret",))
    current = drig.value("AWSCURRENT")

    # WHEN the doctor runs with --fix
    code = main(["doctor", drig.arn, "--fix", "--no-function"])

    # THEN the label is gone, the current credential is untouched, and a rotation can start
    out, _ = output(capsys, leak_scan)
    assert code == 0, out
    assert f"fixed: removed AWSPENDING from version {token[:8]}" in out
    assert "AWSPENDING" not in drig.service.labels(drig.arn).get(token, [])
    assert drig.value("AWSCURRENT") == current
    assert drig.db.passwords["app_user"] == current["password"]
    assert drig.service.rotate(drig.arn, drig.invoke).succeeded


def test_doctor_fix_refuses_when_only_pending_logs_in(drig: Rig) -> None:
    # GIVEN setSecret changed the database password, and finishSecret never ran
    token = str(uuid.uuid4())
    drig.service.rotate(drig.arn, drig.invoke, token=token,
                        steps=("createSecret", "setSecret"))
    before = drig.service.labels(drig.arn)

    # WHEN the doctor runs with --fix
    report = run_doctor(drig.sm, drig.arn, Settings(), fix=True)

    # THEN it refuses, explains, and points at finishing the rotation instead
    check = report.check("staging-labels")
    assert check.status == "fail"
    assert "AWSCURRENT does not log in but AWSPENDING does" in check.detail
    assert f"--move-to-version-id {token}" in check.fix
    assert drig.service.labels(drig.arn) == before
    assert report.check("db-login").status == "fail"


def test_doctor_fix_refuses_when_nothing_logs_in(drig: Rig) -> None:
    token = str(uuid.uuid4())
    drig.service.rotate(drig.arn, drig.invoke, token=token, steps=("createSecret",))
    drig.db.passwords["app_user"] = "changed-by-hand-42"
    report = run_doctor(drig.sm, drig.arn, Settings(), fix=True)
    assert report.check("staging-labels").status == "fail"
    assert "neither AWSCURRENT nor AWSPENDING logs in" in report.check("staging-labels").detail
    assert "AWSPENDING" in drig.service.labels(drig.arn)[token]


def test_doctor_finished_rotation_with_pending_on_current_is_fine(drig: Rig) -> None:
    # GIVEN moto's way of finishing: AWSPENDING left on the new AWSCURRENT version
    token = str(uuid.uuid4())
    drig.service.rotate(drig.arn, drig.invoke, token=token, steps=STEPS[:3])
    drig.invoke(drig.event("finishSecret", token))

    report = run_doctor(drig.sm, drig.arn, Settings())

    assert report.check("staging-labels").status == "ok"
    assert "finished rotation" in report.check("staging-labels").detail


def test_doctor_unreachable_port(rig_factory: Callable[..., Rig], closed_port: int) -> None:
    # GIVEN a secret whose port nothing listens on
    rig = rig_factory(host="127.0.0.1", port=closed_port)

    report = run_doctor(rig.sm, rig.arn, Settings(), timeout=1)

    # THEN db-network fails with the network hint, and the login is not attempted
    check = report.check("db-network")
    assert check.status == "fail"
    assert "refused the connection" in check.detail
    assert "security group" in check.fix
    assert statuses(report)["db-login"] == "skip"
    assert rig.db.logins == Counter()


def test_doctor_unresolvable_host(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(host="no-such-host.invalid")
    report = run_doctor(rig.sm, rig.arn, Settings(), timeout=1)
    assert report.check("db-network").status == "fail"
    assert "cannot resolve host" in report.check("db-network").detail


def test_doctor_wrong_current_password(drig: Rig) -> None:
    # GIVEN the database password was changed outside rotation
    drig.db.passwords["app_user"] = "changed-by-hand-42"

    report = run_doctor(drig.sm, drig.arn, Settings())

    assert report.check("db-login").status == "fail"
    assert "refused the login" in report.check("db-login").detail
    assert report.check("db-tls").status == "ok"


def test_doctor_rotation_not_configured(rig_factory: Callable[..., Rig], listener: int) -> None:
    rig = rig_factory(enable=False, host="127.0.0.1", port=listener)
    report = run_doctor(rig.sm, rig.arn, Settings())
    assert report.check("rotation-configured").status == "fail"
    assert "no rotation function" in report.check("rotation-configured").detail


def test_doctor_secret_not_found(sm: Any) -> None:
    report = run_doctor(sm, "no-such-secret", Settings())
    assert report.check("secrets-manager-endpoint").status == "ok"
    assert report.check("secret-describe").status == "fail"
    assert "ResourceNotFoundException" in report.check("secret-describe").detail
    assert report.failed


def test_doctor_endpoint_unreachable(closed_port: int) -> None:
    # GIVEN a Secrets Manager endpoint nothing answers on
    import boto3

    client = boto3.client("secretsmanager", region_name="us-east-1",
                          endpoint_url=f"http://127.0.0.1:{closed_port}",
                          aws_access_key_id="testing", aws_secret_access_key="testing")

    report = run_doctor(client, "any-secret", Settings())

    # THEN the endpoint check fails with the VPC endpoint / NAT hint
    check = report.check("secrets-manager-endpoint")
    assert check.status == "fail"
    assert "VPC endpoint" in check.fix
    assert "NAT" in check.fix
    assert statuses(report)["db-login"] == "skip"


@pytest.mark.parametrize(("error", "detail"), [
    (DbTimeoutError("connecting to 127.0.0.1 timed out"), "did not finish within 1 s"),
    (ConnectError("the server closed the connection during the login"), "closed the connection"),
    (DatabaseError("the server answered something unexpected"), "unexpected"),
])
def test_doctor_login_that_cannot_complete_is_a_failure(
        drig: Rig, error: DatabaseError, detail: str, capsys: pytest.CaptureFixture[str],
        leak_scan: LeakScan) -> None:
    # GIVEN a plug-in engine (no protocol probe) whose login cannot complete past a working
    # TCP path
    drig.db.fail_next["connect"] = error

    # WHEN the doctor runs
    code = main(["doctor", drig.arn, "--json", "--no-function", "--timeout", "1"])

    # THEN db-login fails with the error (no verdict on something the rotation needs is not
    # a pass), TLS is not judged, and the command exits non-zero
    out, _ = output(capsys, leak_scan)
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert code == 1, out
    assert checks["db-login"]["status"] == "fail", checks["db-login"]
    assert detail in checks["db-login"]["detail"]
    assert checks["db-tls"]["status"] == "skip"
    assert "see db-login" in checks["db-tls"]["detail"]
    assert [n for n, c in checks.items() if c["status"] == "fail"] == ["db-login"]


@pytest.mark.parametrize(("message", "ca_bundle", "detail", "fix"), [
    ('server certificate for "db.example.com" does not match host name "10.0.0.5"', "ca.pem",
     "does not name host", "`host`"),
    ("SSL error: certificate verify failed", None, "this machine's trust store", "--ca-bundle"),
    ("SSL error: certificate verify failed", "ca.pem", "not signed by a CA in", "--ca-bundle"),
])
def test_doctor_names_the_tls_cause(drig: Rig, tmp_path: Path, message: str,
                                    ca_bundle: str | None, detail: str, fix: str) -> None:
    # GIVEN a TLS failure of the login (the CA bundle itself is a readable PEM)
    bundle = None
    if ca_bundle:
        import trustme

        bundle = str(tmp_path / ca_bundle)
        trustme.CA().cert_pem.write_to_path(bundle)
    drig.db.fail_next["connect"] = TlsError(f"TLS to 10.0.0.5:5432 failed: {message}")

    # WHEN the doctor runs
    report = run_doctor(drig.sm, drig.arn, Settings(ca_bundle=bundle))

    # THEN db-tls fails, naming that cause, and the login is not judged
    check = report.check("db-tls")
    assert check.status == "fail"
    assert detail in check.detail
    assert fix in check.fix
    if detail == "not signed by a CA in":
        assert f"not signed by a CA in {bundle}" in check.detail
    assert report.check("db-login").status == "skip"


@pytest.mark.parametrize("error_class", [TlsError, LoginError])
def test_doctor_a_pg_hba_refusal_over_tls_is_a_login_failure(
        drig: Rig, error_class: type[DatabaseError]) -> None:
    # GIVEN pg_hba.conf has no line for this user over TLS (the PostgreSQL adapter has called
    # that refusal a TLS error, because its text says "SSL encryption")
    drig.db.fail_next["connect"] = error_class(
        'the database refused the login: FATAL:  no pg_hba.conf entry for host "10.0.0.9", '
        'user "app_user", database "appdb", SSL encryption')

    # WHEN the doctor runs
    report = run_doctor(drig.sm, drig.arn, Settings())

    # THEN it is the login that fails, with the pg_hba.conf fix; TLS itself worked
    assert [c.name for c in report.checks if c.status == "fail"] == ["db-login"]
    assert "pg_hba.conf" in report.check("db-login").fix
    assert report.check("db-tls").status == "ok"


def test_doctor_a_master_given_only_to_diagnose_does_not_fail_the_run(
        drig: Rig, sm: Any, db: FakeDatabase) -> None:
    # GIVEN a single-user secret, and a --master-secret whose password no longer works
    master_arn = sm.create_secret(Name="diagnose-master", SecretString=json.dumps(
        {"username": "master_user", "password": "stale-Passw0rd-1"}))["ARN"]
    db.passwords["master_user"] = "changed-elsewhere-1"

    # WHEN the doctor runs with it
    report = run_doctor(sm, drig.arn, Settings(), master_secret_id=master_arn)

    # THEN the master's login failure is a warning (the rotation never uses it), not a failure
    check = report.check("master-secret")
    assert check.status == "warn"
    assert "the rotation does not use it" in check.detail
    assert not report.failed


@pytest.mark.parametrize(("code", "message", "fix"), [
    ("DecryptionFailure", "Secrets Manager can't decrypt the protected secret text using the "
     "provided KMS key.", "kms:Decrypt"),
    ("AccessDeniedException", "Access to KMS is not allowed", "kms:Decrypt"),
    ("AccessDeniedException", "not authorized to perform: secretsmanager:GetSecretValue",
     "secretsmanager:GetSecretValue"),
])
def test_doctor_kms_decrypt_denied(drig: Rig, code: str, message: str, fix: str) -> None:
    # GIVEN GetSecretValue is refused (KMS or IAM)
    drig.sm.meta.events.register(
        "before-call.secrets-manager.GetSecretValue",
        lambda **_: (AWSResponse("https://local", 400, {}, None),
                     {"Error": {"Code": code, "Message": message}}))

    report = run_doctor(drig.sm, drig.arn, Settings())

    check = report.check("kms-decrypt")
    assert check.status == "fail"
    assert fix in check.fix
    assert report.check("secret-format").status == "skip"


# -- doctor: the rotation function ---------------------------------------------------------------

class FakeLambda:
    def __init__(self, runtime: str = "python3.12", reserved: int | None = None,
                 missing: bool = False, strategy: str | None = None,
                 denied: tuple[str, ...] = ()) -> None:
        self.runtime, self.reserved, self.missing, self.strategy = (runtime, reserved, missing,
                                                                    strategy)
        self.denied = denied  # operations answered with AccessDeniedException
        self.asked: list[str] = []

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:
        self.asked.append(FunctionName)
        if self.missing:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException",
                                         "Message": "Function not found"}},
                              "GetFunctionConfiguration")
        self._maybe_deny("GetFunctionConfiguration")
        env = {"ROTATION_STRATEGY": self.strategy} if self.strategy else {}
        return {"FunctionName": FunctionName, "Runtime": self.runtime, "PackageType": "Zip",
                "Environment": {"Variables": env}}

    def get_function_concurrency(self, FunctionName: str) -> dict[str, Any]:
        self._maybe_deny("GetFunctionConcurrency")
        return {} if self.reserved is None else {"ReservedConcurrentExecutions": self.reserved}

    def _maybe_deny(self, operation: str) -> None:
        if operation in self.denied:
            raise ClientError({"Error": {"Code": "AccessDeniedException",
                                         "Message": f"not authorized to perform: lambda:"
                                                    f"{operation}"}}, operation)


class FakeLogs:
    def __init__(self, lines: list[str], denied: bool = False) -> None:
        self.lines, self.denied = lines, denied
        self.asked: list[dict[str, Any]] = []

    def filter_log_events(self, **kwargs: Any) -> dict[str, Any]:
        self.asked.append(kwargs)
        if self.denied:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                              "FilterLogEvents")
        return {"events": [{"timestamp": 1_700_000_000_000 + i, "message": line}
                           for i, line in enumerate(self.lines)]}


@pytest.mark.parametrize(("runtime", "status"), [
    ("python3.13", "ok"),
    ("python3.12", "ok"),
    ("python3.9", "warn"),
    ("python3.8", "warn"),
    ("python3.7", "warn"),
    ("nodejs22.x", "warn"),
])
def test_doctor_lambda_runtime(drig: Rig, runtime: str, status: str) -> None:
    lam = FakeLambda(runtime=runtime)
    report = run_doctor(drig.sm, drig.arn, Settings(), lambda_client=lam)
    check = report.check("lambda-runtime")
    assert check.status == status, check
    assert lam.asked[0].endswith(":function:rotation")  # the secret's RotationLambdaARN
    if runtime in PYTHON_RUNTIME_DEPRECATION and status == "warn":
        assert "deprecated" in check.detail


@pytest.mark.parametrize(("reserved", "status"), [(None, "ok"), (100, "ok"), (10, "ok"),
                                                  (5, "warn"), (0, "fail")])
def test_doctor_lambda_concurrency(drig: Rig, reserved: int | None, status: str) -> None:
    report = run_doctor(drig.sm, drig.arn, Settings(),
                        lambda_client=FakeLambda(reserved=reserved), function_name="rotation")
    assert report.check("lambda-concurrency").status == status


def test_doctor_missing_function_fails(drig: Rig) -> None:
    report = run_doctor(drig.sm, drig.arn, Settings(), lambda_client=FakeLambda(missing=True))
    assert report.check("lambda-runtime").status == "fail"
    assert "does not exist" in report.check("lambda-runtime").detail
    assert report.check("lambda-concurrency").status == "skip"


@pytest.mark.parametrize(("denied", "check", "permission"), [
    ("GetFunctionConfiguration", "lambda-runtime", "lambda:GetFunctionConfiguration"),
    ("GetFunctionConcurrency", "lambda-concurrency", "lambda:GetFunctionConcurrency"),
])
def test_doctor_a_function_it_cannot_read_is_not_a_pass(drig: Rig, denied: str, check: str,
                                                        permission: str) -> None:
    # GIVEN the caller may not read the function's configuration (or its concurrency)
    lam = FakeLambda(denied=(denied,))

    # WHEN the doctor runs
    report = run_doctor(drig.sm, drig.arn, Settings(), lambda_client=lam)

    # THEN that check fails, naming the permission and the way to leave the function unchecked
    result = report.check(check)
    assert result.status == "fail", result
    assert permission in result.fix
    assert "--no-function" in result.fix
    assert [c.name for c in report.checks if c.status == "fail"] == [check]


def test_doctor_reads_the_strategy_from_the_function(drig: Rig) -> None:
    # GIVEN the function is configured for alternating users; the secret has no masterarn
    report = run_doctor(drig.sm, drig.arn, Settings(),
                        lambda_client=FakeLambda(strategy="alternating-users"))
    # THEN the secret is checked for that strategy
    assert report.check("secret-format").status == "fail"
    assert "the function's env" in report.check("secret-format").detail


def test_doctor_last_rotation_from_the_functions_logs(drig: Rig, log_capture: LogCapture) -> None:
    # GIVEN a rotation that failed at setSecret, logged by the function as JSON lines
    drig.db.passwords["app_user"] = "changed-by-hand-42"
    report_ = drig.service.rotate(drig.arn, drig.invoke)
    assert not report_.succeeded
    logs = FakeLogs(log_capture.text.splitlines())

    # WHEN the doctor reads those lines back from CloudWatch Logs
    report = run_doctor(drig.sm, drig.arn, Settings(), lambda_client=FakeLambda(),
                        logs_client=logs)

    # THEN it names the steps reached and the error, with the function's fix
    check = report.check("last-rotation")
    assert check.status == "warn"
    assert f"version {report_.token[:8]}" in check.detail
    assert "createSecret done" in check.detail
    assert "stopped at setSecret on PasswordRefusedError (authentication)" in check.detail
    assert "rotate again" in check.fix
    assert logs.asked[0]["logGroupName"] == "/aws/lambda/rotation"
    assert drig.arn in logs.asked[0]["filterPattern"]


def test_doctor_last_rotation_finished(drig: Rig, log_capture: LogCapture) -> None:
    assert drig.service.rotate(drig.arn, drig.invoke).succeeded
    report = run_doctor(drig.sm, drig.arn, Settings(), lambda_client=FakeLambda(),
                        logs_client=FakeLogs(log_capture.text.splitlines()))
    check = report.check("last-rotation")
    assert check.status == "ok"
    assert "finishSecret done" in check.detail


def test_doctor_last_rotation_unreadable_logs_skip(drig: Rig) -> None:
    report = run_doctor(drig.sm, drig.arn, Settings(), lambda_client=FakeLambda(),
                        logs_client=FakeLogs([], denied=True))
    assert report.check("last-rotation").status == "skip"
    assert "AccessDeniedException" in report.check("last-rotation").detail


def test_doctor_cli_uses_lambda_and_logs_clients(drig: Rig, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 leak_scan: LeakScan) -> None:
    # GIVEN the CLI's Lambda and Logs clients
    lam, logs = FakeLambda(runtime="python3.9", reserved=2), FakeLogs([])
    monkeypatch.setattr(rotation.tools.cli, "aws_client",
                        lambda aws, service, config=None: lam if service == "lambda" else logs)

    # WHEN the doctor runs with --function-name
    code = main(["doctor", drig.arn, "--function-name", "my-rotation"])

    # THEN the function checks ran against that function and warn, without failing the run
    out, _ = output(capsys, leak_scan)
    assert code == 0, out
    assert lam.asked == ["my-rotation"]
    assert "WARN  lambda-runtime" in out
    assert "WARN  lambda-concurrency" in out
    assert logs.asked[0]["logGroupName"] == "/aws/lambda/my-rotation"
