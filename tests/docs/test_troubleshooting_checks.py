"""Checks the troubleshooting guide cites that no other test made fire."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from rotation.config import Settings
from rotation.tools.doctor import run_doctor
from rotation.tools.local import LocalRotationService


def test_pg_libpq_check_fails_below_libpq_10(sm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a PostgreSQL secret, and a psycopg whose libpq is 9.6 (AWS's old psycopg2 layers)
    import psycopg

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    arn = sm.create_secret(Name="old-libpq", SecretString=json.dumps(
        {"engine": "postgres", "host": "127.0.0.1", "port": port, "username": "app_user",
         "password": "Init-Passw0rd-123"}))["ARN"]
    LocalRotationService(sm).enable_rotation(arn)
    monkeypatch.setattr(psycopg.pq, "version", lambda: 90600)

    # WHEN the doctor runs
    report = run_doctor(sm, arn, Settings(), timeout=1)

    # THEN pg-libpq fails, saying SCRAM cannot work, and names the fix
    check = report.check("pg-libpq")
    assert check.status == "fail"
    assert "cannot do SCRAM-SHA-256" in check.detail
    assert "psycopg[binary]" in check.fix
