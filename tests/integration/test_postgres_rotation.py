"""Single-user rotation through lambda_handler against moto and a real PostgreSQL with TLS,
scram-sha-256, hostssl-only pg_hba.conf and log_statement=all."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import trustme

from rotation.errors import LoginError
from tests.conftest import LeakScan, LogCapture
from tests.rig import Rig, pg_can_login


@pytest.fixture
def pg_rig(server_rigs: Any, pg_server: Any,
           monkeypatch: pytest.MonkeyPatch) -> Callable[..., Rig]:
    monkeypatch.setenv("ROTATION_CA_BUNDLE", pg_server.ca_file)

    def build(server: Any = pg_server, **overrides: Any) -> Rig:
        rig: Rig = server_rigs.build(server, "postgres", **overrides)
        return rig

    return build


def test_clean_rotation_warm(pg_rig: Callable[..., Rig], pg_server: Any,
                             log_capture: LogCapture) -> None:
    # GIVEN a user whose secret is AWSCURRENT
    rig = pg_rig()
    old = rig.value("AWSCURRENT")
    mark = pg_server.log_position()

    # WHEN Secrets Manager rotates it, the four steps sharing one container
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN the rotation cost 2 logins, 0 failures and at most 7 API calls
    assert report.succeeded, report.steps
    counts = pg_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (2, 0)
    assert rig.calls.total() <= 7, rig.calls.calls
    # ... the new password logs in, the old one does not, labels are right
    new = rig.value("AWSCURRENT")
    assert rig.value("AWSPREVIOUS")["password"] == old["password"]
    assert pg_can_login(pg_server, new["username"], new["password"])
    assert not pg_can_login(pg_server, old["username"], old["password"])
    # ... the server stored a SCRAM verifier and never saw the plaintext
    with pg_server.admin_connect() as admin:
        stored = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                               (new["username"],)).fetchone()[0]
    assert stored.startswith("SCRAM-SHA-256$")
    server_log = pg_server.log_text()
    assert new["password"] not in server_log
    assert "ALTER ROLE" in server_log  # the statement was logged, with the verifier only
    assert new["password"] not in log_capture.text


def test_clean_rotation_cold(pg_rig: Callable[..., Rig], pg_server: Any) -> None:
    # GIVEN / WHEN each step runs in a fresh container
    rig = pg_rig()
    mark = pg_server.log_position()
    report = rig.service.rotate(rig.arn, rig.invoke_cold)

    # THEN 12 API calls (test_cost_counts.py says which), still 2 logins and no failure
    assert report.succeeded, report.steps
    assert rig.calls.total() == 12, rig.calls.calls
    counts = pg_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (2, 0)


def test_interrupted_set_secret_converges(pg_rig: Callable[..., Rig], pg_server: Any) -> None:
    # GIVEN a rotation whose setSecret changed the password but whose result was lost
    rig = pg_rig()
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.invoke(rig.event("createSecret", token))
    rig.invoke(rig.event("setSecret", token))

    # WHEN Secrets Manager retries everything from createSecret, each in a fresh container
    outcomes = [rig.invoke_cold(rig.event(step, token))["Outcome"]
                for step in ("createSecret", "setSecret", "testSecret", "finishSecret")]

    # THEN it converges on the same pending value, and AWSCURRENT logs in
    assert outcomes[:2] == ["kept", "already set"]
    new = rig.value("AWSCURRENT")
    assert pg_can_login(pg_server, new["username"], new["password"])


def test_server_without_tls_fails_closed(pg_rig: Callable[..., Rig],
                                         pg_server_notls: Any) -> None:
    # GIVEN a secret pointing at a server that offers no TLS
    rig = pg_rig(server=pg_server_notls)
    mark = pg_server_notls.log_position()

    # WHEN setSecret tries to log in
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN it fails naming TLS and the fix, and no login reached the server
    assert not report.succeeded
    failed = report.steps[-1]
    assert failed.step == "setSecret"
    assert "TlsError" in (failed.error or "")
    assert "offers no TLS" in (failed.error or "")  # the fix is on the server, not a CA bundle
    counts = pg_server_notls.login_counts(mark)
    assert counts.succeeded == 0
    assert "connection authorized" not in pg_server_notls.log_text().encode()[mark:].decode()


def test_wrong_ca_bundle_fails_closed(pg_rig: Callable[..., Rig], pg_server: Any,
                                      tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a CA bundle that did not sign the server's certificate
    rig = pg_rig()
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    monkeypatch.setenv("ROTATION_CA_BUNDLE", str(other_ca))
    mark = pg_server.log_position()

    # WHEN the rotation runs
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN setSecret fails with a TLS error and the server saw no login
    assert not report.succeeded
    assert "TlsError" in (report.steps[-1].error or "")
    assert pg_server.login_counts(mark).succeeded == 0


def test_ssl_false_opts_out_with_a_warning(pg_rig: Callable[..., Rig], pg_server_notls: Any,
                                           log_capture: LogCapture) -> None:
    # GIVEN a secret that explicitly says "ssl": false, against a server without TLS
    rig = pg_rig(server=pg_server_notls, ssl=False)

    # WHEN it rotates
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN it works, and every step that connected logged a TLS warning
    assert report.succeeded, report.steps
    warnings = [r for r in log_capture.records()
                if r["level"] == "WARNING" and "TLS is disabled" in r["message"]]
    assert {r["step"] for r in warnings} == {"setSecret", "testSecret"}  # the two logins


def test_adapter_errors_carry_no_password(pg_server: Any, leak_scan: LeakScan) -> None:
    # GIVEN a wrong password
    from rotation.adapters import get_adapter
    from rotation.adapters.base import AdapterOptions
    from rotation.credentials import credentials_from_dict

    wrong = "Wrong-" + secrets.token_urlsafe(12)
    leak_scan.add(wrong)
    creds = credentials_from_dict({"engine": "postgres", "host": pg_server.host,
                                   "port": pg_server.port, "username": pg_server.admin_user,
                                   "password": wrong}, "arn:test")
    adapter = get_adapter("postgres", AdapterOptions(ca_bundle=pg_server.ca_file))

    # WHEN it logs in
    with pytest.raises(LoginError) as info:
        adapter.connect(creds)

    # THEN the error names the user and host, carries the driver and SQLSTATE, not the password
    text = str(info.value)
    leak_scan.add_text(text)
    assert pg_server.admin_user in text
    assert "psycopg.OperationalError" in text
    assert wrong not in text
    assert info.value.__cause__ is None
