"""Secret values never reach a log line: the registry, the formatter, exceptions."""

from __future__ import annotations

from rotation import _redact
from rotation.logs import logger
from tests.conftest import LeakScan, LogCapture


def test_redact_replaces_registered_values_longest_first() -> None:
    _redact.register("abcd-1234-secret", "abcd-1234")
    assert _redact.redact("x abcd-1234-secret y abcd-1234 z") == "x *** y *** z"


def test_short_values_are_not_registered() -> None:
    _redact.register("ab")
    assert _redact.redact("ab cd") == "ab cd"


def test_logger_masks_a_registered_value_even_if_code_logs_it(log_capture: LogCapture) -> None:
    # GIVEN a password the framework has registered
    _redact.register("Plaintext-Pw-987")
    # WHEN some code logs it by mistake, in the message and in an extra field
    logger.info("oops Plaintext-Pw-987", extra={"detail": "Plaintext-Pw-987"})
    # THEN the emitted JSON line shows neither
    assert "Plaintext-Pw-987" not in log_capture.text
    assert log_capture.records()[-1]["detail"] == "***"


def test_logger_masks_exception_tracebacks(log_capture: LogCapture) -> None:
    _redact.register("Tb-Secret-Value-42")
    try:
        raise ValueError("boom Tb-Secret-Value-42")
    except ValueError:
        logger.exception("failed")
    assert "Tb-Secret-Value-42" not in log_capture.text
    assert "boom ***" in log_capture.text


def test_leak_scan_finds_a_leak() -> None:
    # The scan itself must be able to fail, or it proves nothing.
    scan = LeakScan()
    scan.add("leaky-password-1")
    assert scan.find("log line with leaky-password-1 inside") == ["leaky-password-1"]
    assert scan.find("clean line") == []


def test_a_json_scalar_secret_value_is_not_registered() -> None:
    # GIVEN a secret whose value is a JSON scalar (a bad secret the tests feed on purpose)
    from rotation.secrets import _register_secret_values

    # WHEN its value is registered
    _register_secret_values("null")

    # THEN `null` in later output stays readable (it once masked a CLI's JSON `"error": null`)
    assert _redact.redact('{"error": null}') == '{"error": null}'
