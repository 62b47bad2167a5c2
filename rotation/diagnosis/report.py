"""A check's verdict and the report that collects them: what both doctors return.

Every ``detail`` and ``fix`` passes through the redaction registry (:func:`result`), a last line of
defence behind checks that never put a secret value in them in the first place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError

from rotation import _redact

Status = Literal["ok", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skip")


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. ``detail`` says what was seen, ``fix`` what to do about it."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class DoctorReport:
    secret_id: str
    secret_arn: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    #: the function whose seat the checks ran from (a remote diagnosis); None: the caller's
    function: str | None = None

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def summary(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in STATUSES}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"secret_id": self.secret_id, "secret_arn": self.secret_arn}
        if self.function is not None:
            data["function"] = self.function
        data.update({"ok": not self.failed, "summary": self.summary(),
                     "checks": [c.to_dict() for c in self.checks]})
        return data


def result(name: str, status: Status, detail: str, fix: str = "") -> CheckResult:
    """A verdict, scrubbed of every registered secret value."""
    return CheckResult(name, status, _redact.redact(detail), _redact.redact(fix))


def client_error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def client_error_text(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'Unknown')}: {_redact.redact(str(error.get('Message', '')))[:200]}"
