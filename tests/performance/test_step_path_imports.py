"""A rotation step never pays for the remote diagnosis: its code (rotation.diagnosis) is imported
for a diagnosis event only. Checked in fresh interpreters, through the public handler."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

_RUN = """
import json, os, sys
os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing",
                  AWS_SECRET_ACCESS_KEY="testing", ROTATION_REMOTE_DIAGNOSIS="true")
from rotation.tools.local import LocalLambdaContext, LocalRotationService, local_stack
from rotation import handler

with local_stack() as sm:
    arn = sm.create_secret(Name="s", SecretString=json.dumps(
        {"engine": "postgres", "host": "127.0.0.1", "port": 1, "username": "u",
         "password": "Passw0rd-for-an-import-test"}))["ARN"]
    LocalRotationService(sm).enable_rotation(arn)
    current = next(v for v, s in sm.describe_secret(SecretId=arn)["VersionIdsToStages"].items()
                   if "AWSCURRENT" in s)
    before = "rotation.diagnosis" in sys.modules
    # a whole step (the guard finds the token AWSCURRENT: nothing to do)
    handler.lambda_handler({"Step": "testSecret", "SecretId": arn,
                            "ClientRequestToken": current}, LocalLambdaContext())
    after_step = "rotation.diagnosis" in sys.modules
    %s
    print(json.dumps([before, after_step, "rotation.diagnosis" in sys.modules]))
"""


def _run(extra: str) -> list[bool]:
    import json

    out = subprocess.run([sys.executable, "-c", _RUN % extra], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    result: list[bool] = json.loads(out.strip().splitlines()[-1])
    return result


def test_a_step_does_not_import_the_diagnosis() -> None:
    # GIVEN a fresh interpreter / WHEN a step runs through lambda_handler
    before, after_step, _ = _run("")

    # THEN rotation.diagnosis was never imported
    assert (before, after_step) == (False, False)


def test_a_diagnosis_event_does() -> None:
    # GIVEN the same / WHEN a diagnosis event follows the step
    _, after_step, after_diagnosis = _run(
        'handler.lambda_handler({"RotationDiagnosis": {"SecretId": arn, "Timeout": 1}}, '
        "LocalLambdaContext())")

    # THEN the diagnosis code came in with it, and only then (the check above can fail)
    assert (after_step, after_diagnosis) == (False, True)
