"""``rotation doctor --remote``, the function's half, on a real PostgreSQL: a diagnosis event
through ``rotation.handler.lambda_handler`` on moto, against the session's throwaway server (TLS,
scram-sha-256, ``hostssl``-only, every statement logged).

The function answers verdicts with fixes, never a value (every password scanned for in the
answer and the logs); it writes nothing (Secrets Manager calls counted on its own client, the
labels compared before and after, the server's statement log read for writes); it refuses,
before reading anything, unless ROTATION_REMOTE_DIAGNOSIS is on; a wrong password and a closed
port fail with the fix for each.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from rotation import handler
from rotation.config import PasswordPolicy
from rotation.password import generate_password
from rotation.tools.local import ApiCallCounter, LocalRotationService
from rotation.tools.sandbox import ServerHandle
from tests.conftest import FakeLambdaContext, LeakScan

pytestmark = pytest.mark.integration

READS = {"DescribeSecret", "GetSecretValue"}
# What a write looks like in PostgreSQL's statement log (log_statement = all)
_WRITE = re.compile(r"\b(ALTER|CREATE|DROP|GRANT|REVOKE|INSERT|UPDATE|DELETE|TRUNCATE|COMMENT|"
                    r"SECURITY LABEL|REASSIGN|COPY)\b", re.IGNORECASE)
_STATEMENT = re.compile(r"(?:statement|execute [^:]*): (.*)")


@dataclass
class Seat:
    """The function on the local stack, a secret per test, and what it did."""

    sm: Any
    server: ServerHandle
    leak_scan: LeakScan
    users: list[str]
    calls: ApiCallCounter | None = None

    def secret(self, *, password: str | None = None, real_password: str | None = None,
               port: int | None = None, **extra: Any) -> str:
        """A user on the server (with ``real_password``, default ``password``) and its secret
        on moto, whose rotation names the function; returns the ARN."""
        username = f"seat_{uuid.uuid4().hex[:10]}"
        password = password or generate_password(PasswordPolicy())
        real = real_password or password
        self.server.create_login_user(username, real)
        self.users.append(username)
        self.leak_scan.add(password, real)
        value = {"engine": "postgres", "host": self.server.host,
                 "port": port or self.server.port, "username": username, "password": password,
                 "dbname": self.server.dbname, **extra}
        arn: str = self.sm.create_secret(Name=f"{username}-secret",
                                         SecretString=json.dumps(value))["ARN"]
        LocalRotationService(self.sm).enable_rotation(arn)
        return arn

    def master(self) -> str:
        """The server's admin as an RDS-managed master secret (username and password only)."""
        arn: str = self.sm.create_secret(
            Name=f"master-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(
                {"username": self.server.admin_user, "password": self.server.admin_password}))[
            "ARN"]
        return arn

    def diagnose(self, secret_id: str) -> dict[str, Any]:
        """One diagnosis invocation through the public handler, counting the function's calls."""
        if self.calls is None:
            self.calls = ApiCallCounter().attach(handler.get_app().secrets.client)
        answer: dict[str, Any] = handler.lambda_handler(
            {"RotationDiagnosis": {"SecretId": secret_id, "Timeout": 2}}, FakeLambdaContext())
        self.leak_scan.add_text(json.dumps(answer))
        return answer["RotationDiagnosis"]

    def labels(self, arn: str) -> dict[str, list[str]]:
        return dict(self.sm.describe_secret(SecretId=arn)["VersionIdsToStages"])

    def statements_since(self, position: int) -> list[str]:
        text = self.server.log_file.read_bytes()[position:].decode("utf-8", "replace")
        return [m.group(1) for m in _STATEMENT.finditer(text)]


@pytest.fixture
def seat(pg_server: ServerHandle, sm: Any, monkeypatch: pytest.MonkeyPatch,
         leak_scan: LeakScan) -> Iterator[Seat]:
    monkeypatch.setenv("ROTATION_CA_BUNDLE", pg_server.ca_file)
    monkeypatch.setenv("ROTATION_REMOTE_DIAGNOSIS", "true")
    leak_scan.add(pg_server.admin_password)
    seat_ = Seat(sm, pg_server, leak_scan, [])
    yield seat_
    for user in seat_.users:
        pg_server.drop_user(user)


def verdicts(answer: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in answer["checks"]}


def no_value_in(answer: dict[str, Any], leak_scan: LeakScan) -> bool:
    text = json.dumps(answer)
    return not any(value in text for value in leak_scan.values)


def test_a_working_secret_checks_out_from_the_functions_seat(seat: Seat,
                                                            leak_scan: LeakScan) -> None:
    # GIVEN a working user, its secret, and the server's log position
    arn = seat.secret()
    labels_before = seat.labels(arn)
    position = seat.server.log_position()

    # WHEN the function gets a diagnosis event
    answer = seat.diagnose(arn)

    # THEN every check of the database path passes, as the function sees it
    checks = verdicts(answer)
    assert answer["ok"] is True, answer["checks"]
    assert answer["function"] == FakeLambdaContext.invoked_function_arn
    for name in ("secrets-manager-endpoint", "secret-describe", "rotation-configured",
                 "kms-decrypt", "secret-format", "db-network", "db-protocol", "db-tls",
                 "db-login", "staging-labels", "pg-libpq", "pg-password-encryption"):
        assert checks[name]["status"] == "ok", checks[name]
    assert "PostgreSQL answers" in checks["db-protocol"]["detail"]
    assert "TLS offered" in checks["db-protocol"]["detail"]
    assert f"certificate verified against {seat.server.ca_file}" in checks["db-tls"]["detail"]
    # ... it changed nothing: reads only, the same labels, no write statement on the server
    assert seat.calls is not None
    assert set(seat.calls.calls) <= READS, seat.calls.calls
    assert seat.labels(arn) == labels_before
    statements = seat.statements_since(position)
    assert statements, "the server logged no statement: the log check would prove nothing"
    assert [s for s in statements if _WRITE.search(s)] == []
    assert seat.server.login_counts(position).failed == 0
    # ... and the answer holds no value (the leak scan covers the logs)
    assert no_value_in(answer, leak_scan)


def test_the_master_secret_is_read_and_logs_in(seat: Seat, monkeypatch: pytest.MonkeyPatch,
                                               leak_scan: LeakScan) -> None:
    # GIVEN an alternating-users function and a secret whose `masterarn` is the server's admin
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    arn = seat.secret(masterarn=seat.master())
    position = seat.server.log_position()

    # WHEN the function diagnoses it
    answer = seat.diagnose(arn)

    # THEN the master secret was read with the function's role and its login works; nothing
    # of the admin's credential is in the answer
    checks = verdicts(answer)
    assert checks["master-secret"]["status"] == "ok", checks["master-secret"]
    assert "alternating-users (this function's settings)" in checks["secret-format"]["detail"]
    assert checks["pg-stored-method"]["status"] == "ok", checks["pg-stored-method"]
    assert seat.server.login_counts(position).failed == 0
    assert [s for s in seat.statements_since(position) if _WRITE.search(s)] == []
    assert no_value_in(answer, leak_scan)


def test_a_wrong_password_fails_db_login_with_its_fix(seat: Seat, leak_scan: LeakScan) -> None:
    # GIVEN a secret whose password is not the user's (changed outside rotation)
    arn = seat.secret(password="Stale-" + uuid.uuid4().hex,
                      real_password="Real-" + uuid.uuid4().hex)
    position = seat.server.log_position()

    # WHEN the function diagnoses it
    answer = seat.diagnose(arn)

    # THEN db-login fails on the password, with the fix; TLS is judged fine; one failed login
    checks = verdicts(answer)
    assert [n for n, c in checks.items() if c["status"] == "fail"] == ["db-login"]
    assert "password authentication failed" in checks["db-login"]["detail"]
    assert "set the database password to the AWSCURRENT value" in checks["db-login"]["fix"]
    assert checks["db-tls"]["status"] == "ok"
    assert seat.server.login_counts(position).failed == 1
    assert no_value_in(answer, leak_scan)


def test_a_closed_port_fails_db_network_with_its_fix(seat: Seat, leak_scan: LeakScan) -> None:
    # GIVEN a secret whose port has nothing listening
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    arn = seat.secret(port=closed)

    # WHEN the function diagnoses it
    answer = seat.diagnose(arn)

    # THEN db-network fails, naming the security groups; what needs the database skips,
    # naming db-network
    checks = verdicts(answer)
    assert checks["db-network"]["status"] == "fail"
    assert "refused the connection" in checks["db-network"]["detail"]
    assert "security group" in checks["db-network"]["fix"]
    for name in ("db-protocol", "db-tls", "db-login"):
        assert checks[name] == {"name": name, "status": "skip",
                                "detail": "not tried: see db-network", "fix": ""}
    assert no_value_in(answer, leak_scan)


def test_refused_when_disabled_and_nothing_is_read(seat: Seat,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a function deployed with RemoteDiagnosis=false, and a working secret
    monkeypatch.setenv("ROTATION_REMOTE_DIAGNOSIS", "false")
    arn = seat.secret()
    position = seat.server.log_position()

    # WHEN it gets a diagnosis event
    answer = seat.diagnose(arn)

    # THEN it refuses, naming the template parameter; no Secrets Manager call, no login
    assert answer["error"]["type"] == "RemoteDiagnosisDisabled"
    assert "RemoteDiagnosis" in answer["error"]["fix"]
    assert seat.calls is not None
    assert seat.calls.total() == 0
    counts = seat.server.login_counts(position)
    assert (counts.succeeded, counts.failed) == (0, 0)
