"""Time bounds: a database or a Secrets Manager endpoint that accepts TCP but never answers must
fail the step with a clear timeout error, inside the configured timeouts and before Lambda would
kill the invocation (the function consults ``context.get_remaining_time_in_millis()``).

The "silent server" is a listening socket nobody reads from: the kernel completes the TCP
handshake (up to the backlog), then nothing is ever sent back.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from rotation import handler
from rotation.adapters import get_adapter
from rotation.adapters.base import AdapterOptions
from rotation.credentials import credentials_from_dict
from rotation.errors import DbTimeoutError, RotationError, RotationTimeoutError
from rotation.tools.local import LocalRotationService
from tests.conftest import FakeLambdaContext, LeakScan

MARGIN_S = 1.5  # scheduling and the driver's own bookkeeping


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never sends a byte."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(32)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (connection refused at once)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


class ShortContext(FakeLambdaContext):
    """A Lambda context with ``remaining_ms`` left when the invocation starts."""

    def __init__(self, remaining_ms: int) -> None:
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _timed(func: Any, *args: Any) -> tuple[BaseException, float]:
    started = time.monotonic()
    try:
        func(*args)
    except Exception as exc:
        return exc, time.monotonic() - started
    raise AssertionError("it did not fail")


# -- the database adapter's connect_timeout -------------------------------------------------------

ENGINES = ["postgres", "mariadb"]


def _credentials(engine: str, port: int) -> Any:
    return credentials_from_dict({"engine": engine, "host": "127.0.0.1", "port": port,
                                  "username": "app_user", "password": "Silent-Passw0rd-1",
                                  "dbname": "appdb"}, "arn:aws:secretsmanager:silent")


@pytest.mark.parametrize("engine", ENGINES)
def test_silent_database_fails_connect_within_connect_timeout(
        engine: str, silent_port: int, leak_scan: LeakScan) -> None:
    # GIVEN a database host that accepts TCP and never answers, and a 2 s connect timeout
    adapter = get_adapter(engine, AdapterOptions(connect_timeout=2.0))

    # WHEN the adapter logs in
    error, elapsed = _timed(adapter.connect, _credentials(engine, silent_port))

    # THEN it gives up within connect_timeout (plus a margin) -- not after the statement
    # timeout -- with a timeout error whose hint points at the network path
    leak_scan.add_text(str(error))
    assert isinstance(error, DbTimeoutError), repr(error)
    assert error.category == "timeout"
    assert elapsed <= 2.0 + MARGIN_S, (
        f"{engine}: connect to a silent host took {elapsed:.1f} s with connect_timeout=2 s")
    text = str(error).lower()
    assert "127.0.0.1" in text
    assert "security group" in text or "subnet" in text


@pytest.mark.parametrize("engine", ENGINES)
def test_refused_database_fails_at_once_naming_the_network(
        engine: str, closed_port: int, leak_scan: LeakScan) -> None:
    adapter = get_adapter(engine, AdapterOptions(connect_timeout=2.0))
    error, elapsed = _timed(adapter.connect, _credentials(engine, closed_port))
    leak_scan.add_text(str(error))
    assert isinstance(error, RotationError), repr(error)
    assert error.category == "network", repr(error)
    assert elapsed < 1.0
    assert f"127.0.0.1:{closed_port}" in str(error)


# -- the Lambda's remaining time bounds the database work -----------------------------------------

@pytest.fixture
def silent_db_rotation(sm: Any, silent_port: int) -> tuple[LocalRotationService, str, str]:
    """A PostgreSQL secret on a silent host, rotation staged and createSecret done."""
    arn = sm.create_secret(Name=f"silent-{uuid.uuid4().hex[:6]}", SecretString=json.dumps(
        {"engine": "postgres", "host": "127.0.0.1", "port": silent_port, "username": "app_user",
         "password": "Silent-Passw0rd-1", "dbname": "appdb"}))["ARN"]
    service = LocalRotationService(sm)
    service.enable_rotation(arn)
    token = str(uuid.uuid4())
    service.stage_pending(arn, token)
    handler.lambda_handler({"Step": "createSecret", "SecretId": arn,
                            "ClientRequestToken": token}, FakeLambdaContext())
    return service, arn, token


@pytest.mark.parametrize("remaining_ms", [4_000, 2_500, 1_000])
def test_set_secret_on_a_silent_database_ends_before_lambda_would(
        silent_db_rotation: tuple[LocalRotationService, str, str], remaining_ms: int,
        leak_scan: LeakScan) -> None:
    # GIVEN a silent database, and an invocation with little time left (the default
    # connect timeout alone, 5 s, is longer)
    _, arn, token = silent_db_rotation
    event = {"Step": "setSecret", "SecretId": arn, "ClientRequestToken": token}

    # WHEN setSecret runs
    error, elapsed = _timed(handler.lambda_handler, event, ShortContext(remaining_ms))

    # THEN it fails with a timeout error before Lambda would kill the invocation
    leak_scan.add_text(str(error))
    assert isinstance(error, RotationError), repr(error)
    assert error.category == "timeout", repr(error)
    assert elapsed < remaining_ms / 1000 - 0.3, (
        f"setSecret took {elapsed:.1f} s with {remaining_ms} ms left")


# -- Secrets Manager unreachable ------------------------------------------------------------------

@pytest.fixture
def endpoint_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Credentials for signing (no moto here: the requests really go to the endpoint)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return monkeypatch


ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"


def _event() -> dict[str, Any]:
    return {"Step": "createSecret", "SecretId": ARN,
            "ClientRequestToken": "11111111-2222-4333-8444-555555555555"}


def _assert_names_the_fix(error: BaseException) -> None:
    assert isinstance(error, RotationTimeoutError), repr(error)
    text = str(error)
    assert "VPC endpoint" in text, text
    assert "NAT" in text, text
    assert ARN in text


def test_refused_endpoint_fails_at_once_naming_vpc_endpoint_and_nat(
        endpoint_env: pytest.MonkeyPatch, closed_port: int, leak_scan: LeakScan) -> None:
    endpoint_env.setenv("SECRETS_MANAGER_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    error, elapsed = _timed(handler.lambda_handler, _event(), FakeLambdaContext())
    leak_scan.add_text(str(error))
    _assert_names_the_fix(error)
    assert elapsed < 3.0


def test_silent_endpoint_fails_within_the_client_timeouts(
        endpoint_env: pytest.MonkeyPatch, silent_port: int, leak_scan: LeakScan) -> None:
    # GIVEN a Secrets Manager endpoint that accepts TCP and never answers (a blackholed VPC
    # endpoint or NAT), and the client's own budget: every attempt may wait connect + read
    endpoint_env.setenv("SECRETS_MANAGER_ENDPOINT", f"http://127.0.0.1:{silent_port}")
    config = handler.get_app().secrets.client.meta.config
    attempts = (config.retries or {}).get("total_max_attempts") or \
        (config.retries or {}).get("max_attempts", 2) + 1
    budget = attempts * (config.connect_timeout + config.read_timeout)

    # WHEN a step runs
    error, elapsed = _timed(handler.lambda_handler, _event(), FakeLambdaContext())

    # THEN it fails inside that budget, naming the fix, and the budget fits the template's
    # default 30 s function timeout with room for the step's own work
    leak_scan.add_text(str(error))
    _assert_names_the_fix(error)
    assert elapsed <= budget + MARGIN_S, f"{elapsed:.1f} s, client budget {budget} s"
    assert budget <= 30 - 5, f"the client may wait {budget} s for one call"


def test_silent_endpoint_fails_before_a_short_lambda_timeout(
        endpoint_env: pytest.MonkeyPatch, silent_port: int, leak_scan: LeakScan) -> None:
    # GIVEN a silent Secrets Manager endpoint, and an invocation with 10 s left (the template's
    # smallest allowed function Timeout)
    endpoint_env.setenv("SECRETS_MANAGER_ENDPOINT", f"http://127.0.0.1:{silent_port}")

    # WHEN a step runs
    error, elapsed = _timed(handler.lambda_handler, _event(), ShortContext(10_000))

    # THEN it reports the timeout itself, before Lambda would kill it silently
    leak_scan.add_text(str(error))
    _assert_names_the_fix(error)
    assert elapsed < 10.0 - 0.5, f"the step took {elapsed:.1f} s with 10 s left"


@pytest.mark.parametrize("exception", [
    ReadTimeoutError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com"),
    ConnectTimeoutError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com"),
    EndpointConnectionError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com"),
    ConnectionClosedError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com"),
], ids=lambda e: type(e).__name__)
def test_each_network_failure_names_vpc_endpoint_and_nat(sm: Any, exception: Exception,
                                                         leak_scan: LeakScan) -> None:
    # GIVEN the function's client fails with one of botocore's network errors
    def fail(**_: Any) -> None:
        raise exception

    handler.get_app().secrets.client.meta.events.register_first(
        "before-call.secrets-manager.DescribeSecret", fail)

    # WHEN a step runs / THEN it is a RotationTimeoutError naming the secret and the fix
    error, _ = _timed(handler.lambda_handler, _event(), FakeLambdaContext())
    leak_scan.add_text(str(error))
    _assert_names_the_fix(error)
