"""A framework for AWS Secrets Manager rotation Lambda functions.

Importing this package imports no database driver: adapters load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotation.errors import (
    ConfigError,
    DatabaseError,
    LoginError,
    PasswordRefusedError,
    RotationError,
    SecretFormatError,
    StageError,
    TlsError,
    UnsupportedEngineError,
)
from rotation.event import RotationEvent

if TYPE_CHECKING:
    from rotation.adapters import get_adapter
    from rotation.dispatcher import Rotation

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy: the dispatcher pulls in the logger and boto's exceptions; keep `import rotation` light.
    if name == "Rotation":
        from rotation.dispatcher import Rotation

        return Rotation
    if name == "get_adapter":
        from rotation.adapters import get_adapter

        return get_adapter
    raise AttributeError(name)


__all__ = [
    "ConfigError",
    "DatabaseError",
    "LoginError",
    "PasswordRefusedError",
    "Rotation",
    "RotationError",
    "RotationEvent",
    "SecretFormatError",
    "StageError",
    "TlsError",
    "UnsupportedEngineError",
    "get_adapter",
]
