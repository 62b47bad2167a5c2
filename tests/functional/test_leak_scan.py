"""The autouse leak scan (tests/conftest.py) fails a test that shows a secret, in every channel.

A small test file, one test per channel, runs in a separate pytest process against the real
conftest; each outer test reads how its inner test ended: ``ERROR`` at teardown with "secret
value(s) appeared" means the scan caught the leak, ``PASSED`` means nothing was shown (or, for
the channels where that is the point, that the framework's formatter masked it).
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.rig import Rig

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Leaky-Passw0rd-7f3a9c"

INNER = textwrap.dedent(f'''
    import logging
    import sys

    from rotation import _redact
    from rotation.logs import logger

    PASSWORD = {PASSWORD!r}


    def test_stdout(leak_scan):
        leak_scan.add(PASSWORD)
        print(f"connecting with {{PASSWORD}}")


    def test_stderr(leak_scan):
        leak_scan.add(PASSWORD)
        sys.stderr.write(f"password={{PASSWORD}}\\n")


    def test_plain_handler_bypasses_the_formatter(leak_scan):
        # a handler of the application's own: the framework's redacting formatter is not on it
        leak_scan.add(PASSWORD)
        _redact.register(PASSWORD)
        plain = logging.getLogger("app.plain")
        handler = logging.StreamHandler(sys.stdout)
        plain.addHandler(handler)
        plain.propagate = False
        try:
            plain.warning("login with %s", PASSWORD)
        finally:
            plain.removeHandler(handler)


    def test_plain_logging_to_the_root_logger(leak_scan):
        # no handler of its own: the record goes to the root logger (in Lambda: CloudWatch;
        # under pytest: the "Captured log" section of the report)
        leak_scan.add(PASSWORD)
        logging.getLogger("app.rootward").warning("login with %s", PASSWORD)


    def test_framework_logger_masks_registered_values(leak_scan, log_capture):
        leak_scan.add(PASSWORD)
        _redact.register(PASSWORD)
        logger.info(f"login with {{PASSWORD}}")
        assert "login with ***" in log_capture.text


    def test_framework_logger_cannot_mask_an_unregistered_value(leak_scan, log_capture):
        leak_scan.add("Unregistered-Secret-4c1d")
        logger.info("login with Unregistered-Secret-4c1d")


    def test_exception_text(leak_scan):
        leak_scan.add(PASSWORD)
        try:
            raise RuntimeError(f"login failed for password {{PASSWORD}}")
        except RuntimeError as exc:
            leak_scan.add_text(str(exc))


    def test_password_stored_in_moto_is_known_unasked(sm, leak_scan):
        sm.create_secret(Name="leaky", SecretString='{{"password": "Moto-Stored-Passw0rd"}}')
        print("Moto-Stored-Passw0rd")


    def test_registered_rotation_token(leak_scan):
        from rotation.tools.local import new_rotation_token

        print(new_rotation_token())


    def test_clean(leak_scan, log_capture):
        leak_scan.add(PASSWORD)
        logger.info("nothing secret here")
        print("nothing secret here either")
''')

#: inner test -> how it must end ("caught": the scan failed it; "passed": nothing shown)
CHANNELS = {
    "test_stdout": "caught",
    "test_stderr": "caught",
    "test_plain_handler_bypasses_the_formatter": "caught",
    "test_plain_logging_to_the_root_logger": "caught",
    "test_framework_logger_masks_registered_values": "passed",
    "test_framework_logger_cannot_mask_an_unregistered_value": "caught",
    "test_exception_text": "caught",
    "test_password_stored_in_moto_is_known_unasked": "caught",
    "test_registered_rotation_token": "caught",
    "test_clean": "passed",
}


@pytest.fixture(scope="module")
def inner_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], list[str]]:
    """Run the inner file once; return each test's ending and the lines of the report."""
    base = tmp_path_factory.mktemp("leak_scan")
    (base / "conftest.py").write_text('pytest_plugins = ["tests.conftest"]\n')
    (base / "test_inner.py").write_text(INNER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1",
           "COLUMNS": "1000"}  # the short summary keeps each line whole
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "no:randomly", "-W", "error", "-o", "addopts=", "test_inner.py"],
        cwd=base, env=env, capture_output=True, text=True, timeout=120, check=False)
    lines = proc.stdout.splitlines()
    endings: dict[str, str] = {}
    for line in lines:
        match = re.match(r"^(PASSED|FAILED|ERROR) test_inner\.py::(\w+)(.*)$", line)
        if match:
            status, name, rest = match.groups()
            if status == "ERROR" and "secret value(s) appeared" in rest:
                endings[name] = "caught"
            elif status == "PASSED":
                endings.setdefault(name, "passed")
            else:
                endings[name] = f"{status.lower()}: {rest.strip()[:200]}"
    assert endings, f"the inner run reported nothing (exit {proc.returncode}): {proc.stderr[-500:]}"
    return endings, lines


@pytest.mark.parametrize(("name", "expected"), sorted(CHANNELS.items()))
def test_the_scan_catches_each_channel(inner_run: tuple[dict[str, str], list[str]], name: str,
                                       expected: str) -> None:
    endings, _ = inner_run
    assert endings.get(name) == expected, (
        f"{name}: expected {expected}, got {endings.get(name)}")


def test_a_caught_leak_is_not_repeated_in_the_failure_report(
        inner_run: tuple[dict[str, str], list[str]]) -> None:
    # The scan's own failure message must say how many values leaked, not show them again (the
    # report of a CI run is one more place a password must not land).
    _, lines = inner_run
    failure_lines = [line for line in lines if "secret value(s) appeared" in line]
    assert failure_lines
    shown = sum(PASSWORD in line for line in failure_lines)
    assert shown == 0, f"the leak scan's failure report prints the leaked password ({shown} times)"


# -- a channel outside the framework's logger: the AWS SDK's own debug logging ---------------------

def test_sdk_debug_logging_shows_no_password(rig: Rig) -> None:
    # GIVEN the root logger at DEBUG with a handler, as Lambda sets it up for
    # ApplicationLogLevel=DEBUG (advanced logging controls), or as a custom step or plug-in
    # calling logging.basicConfig(level=logging.DEBUG) / boto3.set_stream_logger("") does
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        # WHEN a rotation runs
        report = rig.service.rotate(rig.arn, rig.invoke)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    # THEN no log line shows the old or the new password (botocore logs request parameters and
    # response bodies at DEBUG: PutSecretValue's SecretString, GetSecretValue's answer)
    assert report.succeeded, report.steps
    text = stream.getvalue()
    # the framework keeps the SDK's own loggers at INFO even under a DEBUG root logger
    assert logging.getLogger("botocore").getEffectiveLevel() >= logging.INFO
    shown = [label for label, value in (("the old password", rig.value("AWSPREVIOUS")),
                                        ("the new password", rig.value("AWSCURRENT")))
             if value["password"] in text]
    assert not shown, f"{' and '.join(shown)} in the DEBUG log of the AWS SDK"
