"""Shared fixtures: sample events, a fake Lambda context, the local Secrets Manager stack, log
capture, and the leak scan that fails any test whose output shows a secret value."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotation import handler
from rotation.logs import logger
from rotation.tools.local import LocalLambdaContext

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    """One of the sample events in events/ (the files `sam local invoke -e` takes)."""
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


# The local runs' Lambda context (rotation.tools.local), under the name the tests use.
FakeLambdaContext = LocalLambdaContext


class LogCapture:
    """The framework logger's exact output (Powertools JSON lines), for one test."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def log_capture() -> Iterator[LogCapture]:
    capture = LogCapture()
    handler_ = logger.registered_handler
    original = handler_.stream  # type: ignore[attr-defined]
    handler_.stream = capture.stream  # type: ignore[attr-defined]
    try:
        yield capture
    finally:
        handler_.stream = original  # type: ignore[attr-defined]


class LeakScan:
    """Collects secret values a test handled; at teardown, none may appear in any output."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.texts: list[str] = []

    def add(self, *values: str | None) -> None:
        self.values.update(v for v in values if v and len(v) >= 6)

    def add_secret_json(self, value: str | None) -> None:
        try:
            data = json.loads(value or "")
        except (ValueError, RecursionError):
            return
        if isinstance(data, dict):
            self.add(*(v for k, v in data.items() if "password" in k.lower() and
                       isinstance(v, str)))

    def add_text(self, text: str) -> None:
        """Text the test produced that must be clean too (exception messages, CLI output)."""
        self.texts.append(text)

    def find(self, text: str) -> list[str]:
        return [v for v in self.values if v in text]


def _moto_secret_values(scan: LeakScan) -> None:
    """Every password and RotationToken-free value stored in moto during the test."""
    try:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.secretsmanager.models import secretsmanager_backends
    except ImportError:  # pragma: no cover - moto is a test dependency
        return
    for region, backend in secretsmanager_backends[DEFAULT_ACCOUNT_ID].items():
        del region
        for secret in list(backend.secrets.values()):
            for version in secret.versions.values():
                scan.add_secret_json(version.get("secret_string"))


@pytest.fixture(autouse=True)
def leak_scan(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str],
              caplog: pytest.LogCaptureFixture, log_capture: LogCapture) -> Iterator[LeakScan]:
    scan = LeakScan()
    yield scan
    out, err = capsys.readouterr()
    _moto_secret_values(scan)
    from rotation import _redact

    scan.add(*_redact._values)  # every value the framework itself registered as secret
    # The framework's JSON lines, stdout/stderr, every record that reached the root logger
    # (CloudWatch gets those too), and texts the test handed over (exceptions, CLI output).
    # Records of other loggers (pytest also hooks the framework's logger, whose real output,
    # after the redacting formatter, is log_capture's).
    propagated = [f"{r.getMessage()} {r.exc_text or ''}" for phase in ("setup", "call")
                  for r in caplog.get_records(phase)  # type: ignore[arg-type]
                  if r.name != logger.name]
    haystack = "\n".join([log_capture.text, out, err, *propagated, *scan.texts])
    leaked = scan.find(haystack)
    # Give the output back so failures stay readable, with any leaked value masked.
    for value in leaked:
        out = out.replace(value, "***")
    print(out, end="")
    if leaked:
        # pytest.fail, not assert: assertion rewriting would print the values themselves.
        pytest.fail(f"{len(leaked)} secret value(s) appeared in logs/output/errors",
                    pytrace=False)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts like a fresh container with default settings."""
    for name in ("SECRETS_MANAGER_ENDPOINT", "ROTATION_STRATEGY", "ROTATION_CA_BUNDLE",
                 "PASSWORD_LENGTH", "EXCLUDE_CHARACTERS", "EXCLUDE_NUMBERS",
                 "EXCLUDE_PUNCTUATION", "EXCLUDE_UPPERCASE", "EXCLUDE_LOWERCASE",
                 "REQUIRE_EACH_INCLUDED_TYPE", "ROTATION_MYSQL_DUAL_PASSWORD",
                 "ROTATION_DB_CONNECT_TIMEOUT", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    handler.reset()
    yield
    handler.reset()


@pytest.fixture
def sm(leak_scan: LeakScan) -> Iterator[Any]:
    """A moto Secrets Manager client (in-process), with the service's version immutability."""
    from rotation.tools.local import local_stack

    with local_stack() as client:
        yield client
        _moto_secret_values(leak_scan)


TOKEN_RE = re.compile(r"^[a-zA-Z0-9-]{36,256}$")
