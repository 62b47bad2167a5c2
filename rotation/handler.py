"""The Lambda entry point: ``rotation.handler.lambda_handler``.

The app (settings, boto3 client, adapters) is built on the first invocation and kept for the
container; importing this module does no work and imports no database driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotation.dispatcher import Rotation

_app: Rotation | None = None


def get_app() -> Rotation:
    global _app
    if _app is None:
        from rotation.dispatcher import Rotation

        _app = Rotation()
    return _app


def reset() -> None:
    """Forget the app, as a fresh container would (tests and the local driver use this)."""
    global _app
    _app = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return get_app().resolve(event, context)
