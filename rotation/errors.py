"""One small error hierarchy. Every error says what is wrong and what to do.

Messages never carry a secret value: they name keys, secret ARNs, hosts and users. A ``category``
on each class tells the person on call which kind of fix to look for (network, TLS, ...).
"""

from __future__ import annotations

from typing import ClassVar


class RotationError(Exception):
    """Base class: ``message`` says what is wrong, ``hint`` what to do about it."""

    category: ClassVar[str] = "internal"

    def __init__(self, message: str, *, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        if not self.hint:
            return self.message
        ends = "" if self.message.rstrip().endswith((".", "?", "!")) else "."
        return f"{self.message.rstrip()}{ends} {self.hint}"


class ConfigError(RotationError):
    """A setting (environment variable) has a bad value."""

    category = "configuration"


class EventError(RotationError):
    """The invocation event is malformed."""

    category = "event"


class UnknownStepError(EventError):
    """The event names a step this function does not know."""


class SecretFormatError(RotationError):
    """A secret's value cannot be used: not JSON, a key missing or of the wrong type."""

    category = "secret format"

    def __init__(self, message: str, *, key: str | None = None, secret_arn: str = "",
                 hint: str = "") -> None:
        self.key = key
        self.secret_arn = secret_arn
        super().__init__(message, hint=hint)


class StageError(RotationError):
    """The secret's versions and staging labels do not allow this step."""

    category = "staging labels"


class RotationNotEnabledError(StageError):
    """Rotation is not enabled on the secret."""


class UnknownTokenError(StageError):
    """The ClientRequestToken is not a version of the secret."""


class NotPendingError(StageError):
    """The token's version is not staged as AWSPENDING."""


class ConcurrentUpdateError(StageError):
    """Another writer changed the secret's labels while this rotation ran."""


class UnsupportedEngineError(RotationError):
    """No adapter is registered for the secret's engine."""

    category = "secret format"


class AdapterLoadError(UnsupportedEngineError):
    """The engine's adapter is registered but cannot be imported (its driver layer is missing,
    or was built for another architecture or Python: then the message names both)."""

    category = "configuration"


class AwsError(RotationError):
    """Secrets Manager refused or failed a call."""

    category = "aws"

    def __init__(self, message: str, *, code: str = "", hint: str = "") -> None:
        self.code = code
        super().__init__(message, hint=hint)


class AwsPermissionError(AwsError):
    """The function's role may not make a call (IAM or KMS)."""

    category = "aws permission"


class RotationTimeoutError(RotationError):
    """An operation did not finish inside its time budget."""

    category = "timeout"


class DatabaseError(RotationError):
    """A database operation failed. Carries the driver's error class and SQLSTATE / errno."""

    category = "database"

    def __init__(self, message: str, *, hint: str = "", driver_error: str = "",
                 sqlstate: str | None = None) -> None:
        self.driver_error = driver_error
        self.sqlstate = sqlstate
        super().__init__(message, hint=hint)

    def __str__(self) -> str:
        detail = ", ".join(
            part for part in (self.driver_error, f"sqlstate {self.sqlstate}" if self.sqlstate
                              else "") if part
        )
        base = super().__str__()
        return f"{base} [{detail}]" if detail else base


class LoginError(DatabaseError):
    """The database refused the login: wrong password, or a refusal that no password fixes
    (login not allowed, account locked, password expired, host not allowed)."""

    category = "authentication"


class PasswordRefusedError(LoginError):
    """The server said the user name or password is wrong (PostgreSQL 28P01, MySQL 1045).

    Only this refusal makes a step try another version's password: a locked account or a role
    without LOGIN is refused whatever the password, and more attempts can trip a lock-out
    (``FAILED_LOGIN_ATTEMPTS``)."""


class TlsError(DatabaseError):
    """The TLS handshake or certificate verification failed, or the server offers no TLS."""

    category = "tls"


class ConnectError(DatabaseError):
    """The database host could not be reached."""

    category = "network"


class DbTimeoutError(ConnectError):
    """The database did not answer in time."""

    category = "timeout"


class PrivilegeError(DatabaseError):
    """The logged-in user lacks a privilege the operation needs."""

    category = "privilege"


__all__ = [
    "AdapterLoadError",
    "AwsError",
    "AwsPermissionError",
    "ConcurrentUpdateError",
    "ConfigError",
    "ConnectError",
    "DatabaseError",
    "DbTimeoutError",
    "EventError",
    "LoginError",
    "NotPendingError",
    "PasswordRefusedError",
    "PrivilegeError",
    "RotationError",
    "RotationNotEnabledError",
    "RotationTimeoutError",
    "SecretFormatError",
    "StageError",
    "TlsError",
    "UnknownStepError",
    "UnknownTokenError",
    "UnsupportedEngineError",
]
