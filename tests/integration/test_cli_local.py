"""The ``rotation`` command line against real throwaway servers (TLS, scram-sha-256).

``rotation demo`` starts its own sandbox here, as it does for a user. ``invoke --local`` and
``rotate --local`` are given the session's servers instead (same code path from there on, and
no server start per test). The doctor runs against the local stack: moto plus the servers."""

from __future__ import annotations

import hashlib
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from psycopg import sql

import rotation.tools.demo
from rotation import handler
from rotation.config import PasswordPolicy, Settings
from rotation.credentials import credentials_from_dict
from rotation.event import STEPS
from rotation.password import generate_password
from rotation.tools.cli import main
from rotation.tools.doctor import DoctorReport, run_doctor
from rotation.tools.local import LocalRotationService, logs_in
from rotation.tools.sandbox import ServerHandle
from tests.conftest import EVENTS, ROOT, FakeLambdaContext, LeakScan

pytestmark = pytest.mark.integration

STEP_EVENTS = sorted(p.name for p in EVENTS.glob("*Secret*.json"))
SECRET_SAMPLES = ROOT / "examples" / "secrets"
SERVERS = {"postgres": "pg_server", "mariadb": "mariadb_server"}


def output(capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> tuple[str, str]:
    out, err = capsys.readouterr()
    leak_scan.add_text(out)
    leak_scan.add_text(err)
    return out, err


@pytest.fixture
def use_session_server(monkeypatch: pytest.MonkeyPatch) -> Callable[[ServerHandle], None]:
    """Make the local commands use a session server; the users they create are dropped after."""

    def use(server: ServerHandle) -> None:
        @contextmanager
        def session_server(engine: str) -> Iterator[ServerHandle]:
            try:
                yield server
            finally:
                for user in ("app_user_clone", "app_user"):
                    server.drop_user(user)

        monkeypatch.setattr(rotation.tools.demo, "sandbox_server", session_server)

    return use


# -- demo (its own sandbox) ----------------------------------------------------------------------

def test_demo_completes_on_postgres(capsys: pytest.CaptureFixture[str],
                                    leak_scan: LeakScan) -> None:
    # GIVEN nothing running: the demo starts moto and a throwaway PostgreSQL itself
    # WHEN it rotates three times
    code = main(["demo"])

    # THEN every rotation is shown and proven, and it exits 0
    out, err = output(capsys, leak_scan)
    assert code == 0, out + err
    assert "rotation 3/3" in out
    assert out.count("old credential is refused, new credential logs in") == 3
    assert out.count("database logins: 2 succeeded, 0 failed") == 3
    assert "all 3 rotation(s) proven" in out


def test_demo_json_on_mariadb(capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> None:
    # GIVEN / WHEN the MariaDB demo with --json
    code = main(["demo", "--engine", "mariadb", "--rotations", "2", "--json"])

    # THEN one JSON document: both rotations proven, with logins measured from the server log
    out, err = output(capsys, leak_scan)
    assert code == 0, out + err
    doc = json.loads(out)
    assert doc["engine"] == "mariadb"
    assert doc["succeeded"] is True
    for rotation_ in doc["rotations"]:
        assert rotation_["db_logins"] == {"succeeded": 2, "failed": 0}
        assert rotation_["old_password_works"] is False
        assert rotation_["new_password_works"] is True


# -- invoke --local ------------------------------------------------------------------------------

@pytest.mark.parametrize("event_file", STEP_EVENTS)
def test_invoke_local_replays_every_step_event(event_file: str, pg_server: ServerHandle,
                                               use_session_server: Callable[..., None],
                                               capsys: pytest.CaptureFixture[str],
                                               leak_scan: LeakScan) -> None:
    # GIVEN a sample step event and a real PostgreSQL
    use_session_server(pg_server)
    step = json.loads((EVENTS / event_file).read_text())["Step"]

    # WHEN it is replayed locally
    code = main(["invoke", "--local", str(EVENTS / event_file)])

    # THEN the event's step succeeded after the steps before it
    out, err = output(capsys, leak_scan)
    assert code == 0, out + err
    assert f"> ok  {step}" in out
    assert "(postgres at 127.0.0.1:" in out


@pytest.mark.parametrize(("engine", "sample"), [
    ("postgres", "secret-postgres-alternating.json"),
    ("mariadb", "secret-mariadb.json"),
    ("mysql", "secret-mysql.json"),
    ("mysql", "secret-mysql-alternating.json"),
])
def test_invoke_local_with_each_secret_sample(engine: str, sample: str, request: Any,
                                              use_session_server: Callable[..., None],
                                              capsys: pytest.CaptureFixture[str],
                                              leak_scan: LeakScan) -> None:
    # GIVEN a secret sample and the server that stands in for its engine
    use_session_server(request.getfixturevalue(
        SERVERS["postgres" if engine == "postgres" else "mariadb"]))

    # WHEN the finishSecret event (all four steps) is replayed with it
    code = main(["invoke", "--local", "--engine", engine, "--secret", str(SECRET_SAMPLES / sample),
                 str(EVENTS / "finishSecret.json")])

    # THEN the rotation finished
    out, err = output(capsys, leak_scan)
    assert code == 0, out + err
    assert "> ok  finishSecret" in out
    assert ("alternating-users" in out) == ("alternating" in sample)


# -- rotate --local ------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", sorted(SERVERS))
def test_rotate_local_json(engine: str, request: Any, use_session_server: Callable[..., None],
                           capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> None:
    # GIVEN a real server
    use_session_server(request.getfixturevalue(SERVERS[engine]))

    # WHEN one local rotation runs with --json
    code = main(["rotate", "--local", "--engine", engine, "--json"])

    # THEN the document parses and shows the four steps, the calls and the logins
    out, err = output(capsys, leak_scan)
    assert code == 0, out + err
    doc = json.loads(out)
    assert [s["step"] for s in doc["steps"]] == list(STEPS)
    assert doc["api_calls_total"] == 7
    assert doc["db_logins"] == {"succeeded": 2, "failed": 0}
    assert doc["new_password_works"] is True


# -- doctor on the local stack -------------------------------------------------------------------

@dataclass
class DoctorRig:
    sm: Any
    server: ServerHandle
    service: LocalRotationService
    engine: str
    created: list[str]

    def secret(self, *, name: str | None = None, username: str | None = None,
               password: str | None = None, create_user: bool = True,
               **overrides: Any) -> str:
        """A user on the server and its secret in moto (rotation enabled); returns the ARN."""
        username = username or f"doc_{uuid.uuid4().hex[:10]}"
        password = password or generate_password(PasswordPolicy())
        if create_user:
            self.server.create_login_user(username, password)
            self.created.append(username)
        value = {"engine": self.engine, "host": self.server.host, "port": self.server.port,
                 "username": username, "password": password, "dbname": self.server.dbname,
                 **overrides}
        arn: str = self.sm.create_secret(
            Name=name or f"{username}-secret",
            SecretString=json.dumps({k: v for k, v in value.items() if v is not None}))["ARN"]
        self.service.enable_rotation(arn)
        return arn

    def master(self) -> str:
        """The server's admin as an RDS-managed master secret (username and password only)."""
        arn: str = self.sm.create_secret(
            Name=f"master-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(
                {"username": self.server.admin_user,
                 "password": self.server.admin_password}))["ARN"]
        return arn

    def settings(self, ca_bundle: str | None = None) -> Settings:
        return Settings(ca_bundle=ca_bundle or self.server.ca_file)

    def doctor(self, arn: str, **kwargs: Any) -> DoctorReport:
        settings = kwargs.pop("settings", None) or self.settings()
        return run_doctor(self.sm, arn, settings, timeout=2, **kwargs)

    def invoke(self, event: dict[str, Any]) -> Any:
        return handler.lambda_handler(event, FakeLambdaContext())

    def logs_in(self, arn: str, stage: str = "AWSCURRENT") -> bool:
        raw = self.sm.get_secret_value(SecretId=arn, VersionStage=stage)["SecretString"]
        return logs_in(credentials_from_dict(json.loads(raw), arn), self.server.ca_file)


@pytest.fixture
def pg_drig(pg_server: ServerHandle, sm: Any, monkeypatch: pytest.MonkeyPatch,
            leak_scan: LeakScan) -> Iterator[DoctorRig]:
    monkeypatch.setenv("ROTATION_CA_BUNDLE", pg_server.ca_file)
    leak_scan.add(pg_server.admin_password)
    rig = DoctorRig(sm, pg_server, LocalRotationService(sm), "postgres", [])
    yield rig
    for user in rig.created:
        pg_server.drop_user(user)


def statuses(report: DoctorReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_doctor_clean_secret(drig: DoctorRig) -> None:
    # GIVEN a working user and its secret
    arn = drig.secret()

    # WHEN the doctor runs
    report = drig.doctor(arn)

    # THEN nothing fails; the database path is checked end to end
    assert not report.failed, report.checks
    for name in ("db-network", "db-tls", "db-login", "staging-labels", "secret-format"):
        assert report.check(name).status == "ok", report.check(name)
    assert "certificate verified" in report.check("db-tls").detail


def test_doctor_cli_on_the_local_stack(drig: DoctorRig, capsys: pytest.CaptureFixture[str],
                                       leak_scan: LeakScan) -> None:
    # GIVEN a working secret; WHEN `rotation doctor --json` runs (its own client, on moto)
    arn = drig.secret()
    code = main(["doctor", arn, "--json", "--no-function", "--ca-bundle", drig.server.ca_file])

    # THEN it exits 0 and the document parses
    out, _ = output(capsys, leak_scan)
    assert code == 0, out
    doc = json.loads(out)
    assert doc["ok"] is True
    assert {c["name"]: c["status"] for c in doc["checks"]}["db-login"] == "ok"


def test_doctor_missing_key(drig: DoctorRig) -> None:
    # GIVEN a secret without `host`
    arn = drig.secret(host=None)

    report = drig.doctor(arn)

    # THEN secret-format fails naming the key; nothing touches the database
    assert report.check("secret-format").status == "fail"
    assert "key `host` is missing" in report.check("secret-format").detail
    assert report.check("db-login").status == "skip"


def test_doctor_stuck_pending_and_fix(drig: DoctorRig) -> None:
    # GIVEN a rotation that stopped after createSecret (the database still uses AWSCURRENT)
    arn = drig.secret()
    token = str(uuid.uuid4())
    assert drig.service.rotate(arn, drig.invoke, token=token, steps=("createSecret",)).succeeded \
        is False  # only one of four steps
    assert "AWSPENDING" in drig.service.labels(arn)[token]

    # WHEN the doctor runs, then runs with --fix
    found = drig.doctor(arn)
    fixed = drig.doctor(arn, fix=True)

    # THEN it found the stuck label, removed it after AWSCURRENT logged in, and a new rotation
    # goes through; the current credential kept working throughout
    assert found.check("staging-labels").status == "fail"
    assert fixed.check("staging-labels").status == "ok"
    assert "fixed: removed AWSPENDING" in fixed.check("staging-labels").detail
    assert "AWSPENDING" not in drig.service.labels(arn).get(token, [])
    assert drig.logs_in(arn)
    assert drig.service.rotate(arn, drig.invoke).succeeded
    assert drig.logs_in(arn)


def test_doctor_fix_refuses_when_the_pending_password_is_in_use(drig: DoctorRig) -> None:
    # GIVEN setSecret changed the password in the database, and finishSecret never ran
    arn = drig.secret()
    token = str(uuid.uuid4())
    drig.service.rotate(arn, drig.invoke, token=token, steps=("createSecret", "setSecret"))
    before = drig.service.labels(arn)

    # WHEN the doctor runs with --fix
    report = drig.doctor(arn, fix=True)

    # THEN it refuses to drop the label that holds the working password
    check = report.check("staging-labels")
    assert check.status == "fail"
    assert "AWSCURRENT does not log in but AWSPENDING does" in check.detail
    assert drig.service.labels(arn) == before
    assert drig.logs_in(arn, "AWSPENDING")


def test_doctor_unreachable_database_port(drig: DoctorRig) -> None:
    # GIVEN a secret whose port nothing listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    arn = drig.secret(port=port)

    report = drig.doctor(arn)

    assert report.check("db-network").status == "fail"
    assert "refused the connection" in report.check("db-network").detail
    assert "security group" in report.check("db-network").fix
    assert report.check("db-login").status == "skip"


def test_doctor_tls_verification_failure(drig: DoctorRig, tmp_path: Path) -> None:
    # GIVEN a CA bundle that did not sign the server's certificate
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    arn = drig.secret()

    report = drig.doctor(arn, settings=drig.settings(str(other_ca)))

    # THEN the TLS check fails with the CA hint, and the login is not judged
    check = report.check("db-tls")
    assert check.status == "fail", report.checks
    assert "ROTATION_CA_BUNDLE" in check.fix
    assert report.check("db-login").status == "skip"
    assert report.check("db-network").status == "ok"


def test_doctor_wrong_current_password(drig: DoctorRig) -> None:
    # GIVEN a secret whose password is not the user's
    username = f"doc_{uuid.uuid4().hex[:10]}"
    drig.server.create_login_user(username, generate_password(PasswordPolicy()))
    drig.created.append(username)
    arn = drig.secret(username=username, password=generate_password(PasswordPolicy()),
                      create_user=False)

    report = drig.doctor(arn)

    # THEN TLS passed, the login failed, and the doctor says so
    assert report.check("db-tls").status == "ok"
    assert report.check("db-login").status == "fail"
    assert "AWSCURRENT does not log in" in report.check("db-login").detail


def test_doctor_md5_stored_postgres_password(pg_drig: DoctorRig, leak_scan: LeakScan) -> None:
    # GIVEN a role whose password was stored as md5 (pg_hba.conf allows only scram-sha-256)
    username = f"md5_{uuid.uuid4().hex[:10]}"
    password = generate_password(PasswordPolicy())
    md5 = "md5" + hashlib.md5((password + username).encode()).hexdigest()  # noqa: S324
    leak_scan.add(md5)
    with pg_drig.server.admin_connect() as conn:
        conn.execute("SET password_encryption = 'md5'")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(username), sql.Literal(md5)))
    pg_drig.created.append(username)
    arn = pg_drig.secret(username=username, password=password, create_user=False)

    # WHEN the doctor runs without, then with a superuser credential to read pg_authid
    blind = pg_drig.doctor(arn)
    seeing = pg_drig.doctor(arn, master_secret_id=pg_drig.master())

    # THEN without it: the login fails and the md5 cause is named as a possibility; with no
    # login to read pg_authid with, the storage check does not apply (and says how to run it)
    assert blind.check("db-login").status == "fail"
    assert "md5" in blind.check("db-login").fix
    assert blind.check("pg-stored-method").status == "skip"
    assert "no login" in blind.check("pg-stored-method").detail
    assert "--master-secret" in blind.check("pg-stored-method").detail
    # and with it: the md5 verifier is found and explained as why the login fails
    check = seeing.check("pg-stored-method")
    assert check.status == "fail"
    assert "md5-stored password" in check.detail
    assert "allows only scram-sha-256" in check.detail
    assert "scram-sha-256" in check.fix


def test_doctor_postgres_checks_on_a_scram_role(pg_drig: DoctorRig) -> None:
    # GIVEN a scram role; WHEN the doctor runs as the role, then with a superuser
    arn = pg_drig.secret()
    as_user = pg_drig.doctor(arn)
    as_admin = pg_drig.doctor(arn, master_secret_id=pg_drig.master())

    # THEN the role cannot read pg_authid (a warning, not a failure); the superuser can
    assert as_user.check("pg-password-encryption").status == "ok"
    assert as_user.check("pg-stored-method").status == "warn"
    assert "cannot read pg_authid" in as_user.check("pg-stored-method").detail
    assert as_admin.check("pg-stored-method").status == "ok"
    assert as_user.check("pg-libpq").status == "ok"
    assert not as_user.failed


def test_doctor_alternating_users_master(pg_drig: DoctorRig) -> None:
    # GIVEN an alternating-users secret whose masterarn is the admin (RDS-managed shape)
    arn = pg_drig.secret(masterarn=pg_drig.master())

    report = pg_drig.doctor(arn)

    assert report.check("master-secret").status == "ok"
    assert "alternating-users" in report.check("secret-format").detail
