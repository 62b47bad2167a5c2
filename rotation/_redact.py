"""Scrub secret values from text: a registry of values plus a logging filter.

Every password, verifier and RotationToken the process handles is registered here as soon as it is
read or made; the filter (installed on the framework's logger) replaces them in every log record, a
last line of defence behind code that never logs them in the first place.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

MASK = "***"
_MIN_LENGTH = 4  # shorter values would mask ordinary words; passwords are far longer
# A warm container may rotate many secrets; keep the newest values so scrubbing a log line stays
# cheap (each rotation registers a handful). Older ones are long out of any code path.
MAX_VALUES = 1024
_lock = threading.Lock()
_values: dict[str, None] = {}  # insertion-ordered set
_by_length: tuple[str, ...] = ()


def register(*values: str | None) -> None:
    """Remember values that must never be shown."""
    global _by_length
    with _lock:
        changed = False
        for value in values:
            if value and len(value) >= _MIN_LENGTH:
                changed |= value not in _values
                _values.pop(value, None)
                _values[value] = None
        while len(_values) > MAX_VALUES:
            del _values[next(iter(_values))]
            changed = True
        if changed:
            _by_length = tuple(sorted(_values, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every registered value replaced by ``***`` (longest first)."""
    for value in _by_length:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """Replaces registered secret values in a record's message, arguments and extra fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _values:
            record.msg = _scrub(record.getMessage() if record.args else record.msg)
            record.args = None
            for key, value in list(vars(record).items()):
                if key not in ("msg", "args", "exc_info") and isinstance(value, str | dict):
                    setattr(record, key, _scrub(value))
            if record.exc_info and record.exc_info[1] is not None:
                # Render the traceback now, scrubbed, so no formatter renders the raw one.
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True
