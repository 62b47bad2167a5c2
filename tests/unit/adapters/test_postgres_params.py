"""PostgreSQL adapter without a server: libpq parameters (no pooler-refused startup parameter,
an explicit CA file, nothing that weakens TLS) and the mapping of refused logins."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rotation.adapters._tls import default_ca_file
from rotation.adapters.base import AdapterOptions
from rotation.adapters.postgres import PostgresAdapter, _connect_error, _statement_error
from rotation.credentials import DbCredentials
from rotation.errors import (
    ConnectError,
    DbTimeoutError,
    LoginError,
    PasswordRefusedError,
    TlsError,
)


def _creds(sslmode: str = "verify-full") -> DbCredentials:
    return DbCredentials(engine="postgres", host="db.example", port=5432, username="app",
                         password="Pw-unit-secret-1", dbname="appdb", sslmode=sslmode)


def test_no_startup_parameter_a_pooler_refuses() -> None:
    # PgBouncer answers "unsupported startup parameter: options" (RDS Proxy refuses it too).
    # An empty value sends nothing, and also overrides a PGOPTIONS in the environment.
    params = PostgresAdapter(AdapterOptions(ca_bundle="/ca.pem")).connection_params(_creds())
    assert not params.get("options")
    assert params["application_name"] == "rotation"  # PgBouncer tracks this one


def test_tls_cannot_be_weakened_by_libpq_defaults() -> None:
    params = PostgresAdapter(AdapterOptions(ca_bundle="/ca.pem")).connection_params(_creds())
    assert params["gssencmode"] == "disable"  # GSSAPI encryption would replace TLS entirely
    assert params["ssl_min_protocol_version"] == "TLSv1.2"  # not PGSSLMINPROTOCOLVERSION's
    assert params["require_auth"] == "scram-sha-256,md5"  # never a cleartext password
    assert params["prepare_threshold"] is None  # no server-side prepared statements (poolers)


@pytest.mark.parametrize("sslmode", ["verify-full", "verify-ca"])
def test_without_a_bundle_the_machine_ca_file_is_passed(
        sslmode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store.pem"
    store.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    params = PostgresAdapter(AdapterOptions()).connection_params(_creds(sslmode))
    assert params["sslrootcert"] == str(store)


@pytest.mark.parametrize("sslmode", ["require", "disable"])
def test_modes_that_do_not_verify_get_no_ca(sslmode: str) -> None:
    params = PostgresAdapter(AdapterOptions()).connection_params(_creds(sslmode))
    assert "sslrootcert" not in params


def test_a_bundle_wins_over_the_machine_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/nowhere.pem")
    params = PostgresAdapter(AdapterOptions(ca_bundle="/ca.pem")).connection_params(_creds())
    assert params["sslrootcert"] == "/ca.pem"


def test_default_ca_file_is_what_python_ssl_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    expected = ssl.get_default_verify_paths().cafile
    if expected is None:
        with pytest.raises(TlsError):
            default_ca_file()
    else:
        assert default_ca_file() == expected


def test_missing_trust_store_file_raises_naming_what_was_tried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "gone.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    with pytest.raises(TlsError) as info:
        PostgresAdapter(AdapterOptions()).connection_params(_creds("verify-ca"))
    text = str(info.value)
    assert "SSL_CERT_FILE" in text
    assert str(missing) in text
    assert "ROTATION_CA_BUNDLE" in text


# The servers' and libpq's own words (PostgreSQL 15 with lc_messages=C; libpq 18), as psycopg
# raises them: a connection failure carries no SQLSTATE, only this text.
PREFIX = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
LOGIN_CASES: list[tuple[str, type[Exception], tuple[type[Exception], ...], str]] = [
    ('FATAL:  password authentication failed for user "app"',
     PasswordRefusedError, (), "VALID UNTIL"),
    ('FATAL:  role "app" is not permitted to log in',
     LoginError, (PasswordRefusedError,), "LOGIN"),
    ('FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "app", database "appdb", '
     'SSL encryption', LoginError, (PasswordRefusedError, TlsError), "pg_hba.conf"),
    ('FATAL:  pg_hba.conf rejects connection for host "10.0.0.9", user "app", database '
     '"appdb", SSL encryption', LoginError, (PasswordRefusedError, TlsError), "pg_hba.conf"),
    ('FATAL:  PAM authentication failed for user "app"',
     LoginError, (PasswordRefusedError,), "rds_iam"),
    ('FATAL:  database "appdb" does not exist', LoginError, (PasswordRefusedError,), "dbname"),
    ("FATAL:  sorry, too many clients already", ConnectError, (LoginError,), "max_connections"),
    ('FATAL:  too many connections for role "app"', ConnectError, (LoginError,),
     "CONNECTION LIMIT"),
    ("FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute",
     ConnectError, (LoginError,), "max_connections"),
    ("FATAL:  the database system is starting up", ConnectError, (LoginError,), "again"),
    ('authentication method requirement "scram-sha-256,md5" failed: server requested a '
     "cleartext password", LoginError, (PasswordRefusedError,), "scram-sha-256"),
    ('authentication method requirement "scram-sha-256,md5" failed: server did not complete '
     "authentication", LoginError, (PasswordRefusedError,), "trust"),
    ("SSL error: certificate verify failed", TlsError, (), "ROTATION_CA_BUNDLE"),
    ("server does not support SSL, but SSL was required", TlsError, (), "sslmode"),
    ('FATAL:  unsupported startup parameter: options', ConnectError, (LoginError,), "pooler"),
    # PgBouncer 1.18's words
    ("FATAL:  SASL authentication failed", PasswordRefusedError, (), "VALID UNTIL"),
    ("FATAL:  no such user", LoginError, (PasswordRefusedError,), "LOGIN"),
    ("FATAL:  no such database: appdb", LoginError, (PasswordRefusedError,), "dbname"),
    ("FATAL:  no more connections allowed (max_client_conn)", ConnectError, (LoginError,),
     "max_client_conn"),
]


@pytest.mark.parametrize(("text", "expected", "not_expected", "hint_word"), LOGIN_CASES)
def test_refused_logins_name_the_real_cause(text: str, expected: type[Exception],
                                            not_expected: tuple[type[Exception], ...],
                                            hint_word: str) -> None:
    error = _connect_error(psycopg.OperationalError(PREFIX + text), _creds())
    assert isinstance(error, expected), (type(error), str(error))
    assert not isinstance(error, not_expected), (type(error), str(error))
    assert hint_word in error.hint
    if not isinstance(error, PasswordRefusedError):
        assert "check the secret's password" not in error.hint


def test_connection_timeout_is_a_timeout(monkeypatch: Any) -> None:
    error = _connect_error(psycopg.errors.ConnectionTimeout("connection timeout expired"),
                           _creds())
    assert isinstance(error, DbTimeoutError)


def test_a_connection_lost_mid_statement_is_a_connect_error() -> None:
    error = _statement_error(psycopg.OperationalError(
        "consuming input failed: server closed the connection unexpectedly"), "db:5432")
    assert isinstance(error, ConnectError)
    assert "lost" in str(error)


def test_a_read_only_session_names_the_writer() -> None:
    error = _statement_error(psycopg.errors.ReadOnlySqlTransaction(
        "cannot execute ALTER ROLE in a read-only transaction"), "db:5432")
    assert error.sqlstate == "25006"
    assert "writer" in error.hint
