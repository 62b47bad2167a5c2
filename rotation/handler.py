"""The Lambda entry point: ``rotation.handler.lambda_handler``.

The app (settings, boto3 client, the adapter registry's engine table) is built once per
container. On Lambda that happens in the init phase, when the runtime imports this module
(:func:`init`): a secret rotates every few days, so nearly every rotation starts in a new
container, and the init phase is where Lambda expects that work (it runs before the first
invocation, outside the step's own timeout). Anywhere else (tests, the command line) importing
this module does no work. Either way no database driver is imported until an engine is used.

A diagnosis event (``{"RotationDiagnosis": {...}}``, no ``Step``) goes to
:mod:`rotation.diagnosis.remote` instead, imported only then.
"""

from __future__ import annotations

import os
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
    if isinstance(event, dict) and "RotationDiagnosis" in event and "Step" not in event:
        # An operator's diagnosis request (rotation doctor --remote): its code is imported
        # here only, so a rotation step never pays for it.
        from rotation.diagnosis.remote import diagnose

        return diagnose(event, context, get_app)
    return get_app().resolve(event, context)


def init() -> None:
    """Lambda's init phase: build the app and read the engine table; with ``ROTATION_ENGINE``
    (the template sets it to its Engine) also load that engine's adapter and driver and let it
    prepare (its TLS context). A failure here (say, a bad setting) is left for the first
    invocation, which raises it with the step's log line and metrics instead of a bare init
    error."""
    from rotation.config import ENGINE_HINT

    try:
        app = get_app()
        app.adapters.engines()
        engine = os.environ.get(ENGINE_HINT, "").strip()
        if engine:
            prepare = getattr(app.adapters.get(engine), "prepare", None)
            if callable(prepare):
                prepare()
    except Exception:  # reported by the first invocation, which builds the app again
        reset()


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and os.environ.get("AWS_EXECUTION_ENV"):
    init()
