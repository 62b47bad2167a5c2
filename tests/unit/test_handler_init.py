"""Lambda's init phase: on Lambda, importing the handler module builds the app (settings,
boto3 client, engine table), so the first rotation step does not pay for it; a bad setting does
not break the import, it fails the first invocation with its own error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
import rotation.handler as h
built = h._app is not None
engines = bool(built and h._app.adapters._engines)
error = None
try:
    h.lambda_handler({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": "t" * 36},
                     None)
except Exception as exc:
    error = type(exc).__name__
print(json.dumps({"built": built, "engines": engines, "error": error,
                  "drivers": sorted(m for m in ("psycopg", "pymysql") if m in sys.modules)}))
"""


def run(**env: str) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "ROTATION_", "SECRETS_MANAGER"))}
    base.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
                 # nothing listens there: the probe's invocation fails fast, as intended
                 "SECRETS_MANAGER_ENDPOINT": "http://127.0.0.1:9"})
    base.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=base, check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "rotation", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12"}


@pytest.mark.parametrize(("env", "built"), [(LAMBDA, True), ({}, False)],
                         ids=["on Lambda", "elsewhere"])
def test_the_app_is_built_at_import_only_on_lambda(env: dict[str, str], built: bool) -> None:
    # GIVEN / WHEN a fresh interpreter imports the handler, on Lambda or not
    result = run(**env)

    # THEN on Lambda the app and its engine table exist before any invocation; elsewhere the
    # import does no work; no database driver is imported either way
    assert result["built"] is built
    assert result["engines"] is built
    assert result["drivers"] == []


def test_a_bad_setting_fails_the_first_invocation_not_the_import() -> None:
    # GIVEN Lambda's environment with an unknown strategy
    # WHEN the handler module is imported (init) and then invoked
    result = run(**LAMBDA, ROTATION_STRATEGY="round-robin")

    # THEN the import went through, and the invocation raised the configuration error
    assert result["built"] is False
    assert result["error"] == "ConfigError"


@pytest.mark.parametrize(("engine", "driver"), [("postgres", "psycopg"), ("mariadb", "pymysql")])
def test_the_functions_engine_is_loaded_in_the_init_phase(engine: str, driver: str) -> None:
    # GIVEN Lambda's environment naming the function's engine (the template's Engine)
    # WHEN the handler module is imported
    result = run(**LAMBDA, ROTATION_ENGINE=engine)

    # THEN that engine's driver is loaded already (the first step does not pay for it), and
    # only that one
    assert result["built"] is True
    assert result["drivers"] == [driver]


def test_an_engine_hint_that_cannot_load_does_not_stop_the_function() -> None:
    # GIVEN a hint naming an engine nobody provides / WHEN imported and invoked
    result = run(**LAMBDA, ROTATION_ENGINE="oracle")

    # THEN the import went through, and the invocation built the app and went on to call
    # Secrets Manager (unreachable here: a timeout error), as it would for any secret: the hint
    # only warms a cache
    assert result["built"] is False
    assert result["error"] == "RotationTimeoutError"

