"""Every step is safe to run again: after success, and after an interruption midway."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from rotation.errors import (
    ConcurrentUpdateError,
    LoginError,
    NotPendingError,
    RotationNotEnabledError,
    UnknownStepError,
    UnknownTokenError,
)
from tests.rig import Rig

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


def _snapshot(rig: Rig) -> tuple[Any, ...]:
    labels = rig.service.labels(rig.arn)
    values = {vid: rig.sm.get_secret_value(SecretId=rig.arn, VersionId=vid)
              .get("SecretString") for vid in labels if rig.has_value(vid)}
    return labels, values, dict(rig.db.passwords)


@pytest.mark.parametrize("step", STEPS)
def test_rerunning_a_step_after_it_succeeded_changes_nothing(rig: Rig, step: str) -> None:
    # GIVEN a rotation that ran up to and including `step`
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    for s in STEPS[: STEPS.index(step) + 1]:
        rig.invoke(rig.event(s, token))
    before = _snapshot(rig)

    # WHEN the same step is invoked again, warm and cold
    rig.invoke(rig.event(step, token))
    rig.invoke_cold(rig.event(step, token))

    # THEN labels, values and the database are unchanged
    assert _snapshot(rig) == before


def test_create_secret_retry_in_fresh_container_keeps_pending_value(rig: Rig) -> None:
    # GIVEN createSecret stored a pending value, then setSecret put it in the database
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.invoke(rig.event("createSecret", token))
    rig.invoke(rig.event("setSecret", token))
    pending = rig.value("AWSPENDING")["password"]

    # WHEN the service retries the whole rotation from createSecret in a new container
    result = rig.invoke_cold(rig.event("createSecret", token))

    # THEN the pending value is kept (versions are immutable), so the database still matches it
    assert result["Outcome"] == "kept"
    assert rig.value("AWSPENDING")["password"] == pending == rig.db.passwords["app_user"]
    for step in STEPS[1:]:
        rig.invoke_cold(rig.event(step, token))
    assert rig.value("AWSCURRENT")["password"] == rig.db.passwords["app_user"]


def test_set_secret_interrupted_after_the_database_changed_converges(rig: Rig) -> None:
    # GIVEN setSecret changed the password, then died before returning
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.invoke(rig.event("createSecret", token))
    rig.db.fail_next["after_set_password"] = TimeoutError("Lambda timed out")
    with pytest.raises(TimeoutError):
        rig.invoke(rig.event("setSecret", token))

    # WHEN the service retries setSecret, then the remaining steps
    result = rig.invoke_cold(rig.event("setSecret", token))
    for step in STEPS[2:]:
        rig.invoke_cold(rig.event(step, token))

    # THEN the retry saw the password already set, and the rotation finished
    assert result["Outcome"] == "already set"
    assert rig.value("AWSCURRENT")["password"] == rig.db.passwords["app_user"]


def test_set_secret_recovers_through_previous(rig: Rig) -> None:
    # GIVEN a finished rotation, after which someone put the old password back in the database
    rig.service.rotate(rig.arn, rig.invoke)
    rig.db.passwords["app_user"] = rig.value("AWSPREVIOUS")["password"]
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.invoke(rig.event("createSecret", token))

    # WHEN setSecret runs: AWSCURRENT and AWSPENDING are refused, AWSPREVIOUS works
    result = rig.invoke(rig.event("setSecret", token))

    # THEN it set the pending password through the previous credential
    assert result["Outcome"] == "set via AWSPREVIOUS"
    assert rig.db.passwords["app_user"] == rig.value("AWSPENDING")["password"]


def test_set_secret_with_no_working_credential_names_the_fix(rig: Rig) -> None:
    # GIVEN the database password was changed outside rotation
    rig.db.passwords["app_user"] = "changed-by-hand-123"
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    rig.invoke(rig.event("createSecret", token))

    # WHEN setSecret runs
    with pytest.raises(LoginError) as info:
        rig.invoke(rig.event("setSecret", token))

    # THEN the error names the secret and what to do, and nothing changed in the database
    assert rig.arn in str(info.value)
    assert "rotate again" in str(info.value)
    assert rig.db.passwords["app_user"] == "changed-by-hand-123"


def test_guard_rotation_disabled(rig_factory: Any) -> None:
    rig = rig_factory(enable=False)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    with pytest.raises(RotationNotEnabledError, match="not enabled"):
        rig.invoke(rig.event("createSecret", token))
    assert rig.calls.calls == {"DescribeSecret": 1}


def test_guard_unknown_token(rig: Rig) -> None:
    with pytest.raises(UnknownTokenError, match=rig.arn):
        rig.invoke(rig.event("setSecret", str(uuid.uuid4())))
    assert rig.calls.calls == {"DescribeSecret": 1}


def test_guard_token_not_pending(rig: Rig) -> None:
    # GIVEN a version that is neither AWSPENDING nor AWSCURRENT (an old, superseded rotation)
    first = str(uuid.uuid4())
    rig.service.rotate(rig.arn, rig.invoke, token=first)
    rig.service.rotate(rig.arn, rig.invoke)
    # the first rotation's version is now AWSPREVIOUS only
    with pytest.raises(NotPendingError, match="not AWSPENDING"):
        rig.invoke(rig.event("setSecret", first))


@pytest.mark.parametrize("step", STEPS)
def test_guard_token_already_current_is_a_no_op(rig: Rig, step: str) -> None:
    token = str(uuid.uuid4())
    rig.service.rotate(rig.arn, rig.invoke, token=token)
    before = _snapshot(rig)
    result = rig.invoke(rig.event(step, token))
    assert result["Outcome"] == "already current"
    assert _snapshot(rig) == before


def test_unknown_step_names_valid_steps(rig: Rig) -> None:
    with pytest.raises(UnknownStepError, match="createSecret, setSecret, testSecret, finishSecret"):
        rig.invoke({"Step": "deleteSecret", "SecretId": rig.arn,
                    "ClientRequestToken": str(uuid.uuid4())})
    assert rig.calls.total() == 0


def test_missing_host_fails_naming_host_with_no_write(rig_factory: Any) -> None:
    # GIVEN a secret without `host`
    rig = rig_factory(host=None)
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)

    # WHEN createSecret runs
    from rotation.errors import SecretFormatError

    with pytest.raises(SecretFormatError) as info:
        rig.invoke(rig.event("createSecret", token))

    # THEN the error names the key and the ARN, and nothing was written
    assert "`host`" in str(info.value)
    assert rig.arn in str(info.value)
    assert info.value.key == "host"
    assert "PutSecretValue" not in rig.calls.calls
    assert "UpdateSecretVersionStage" not in rig.calls.calls


def test_finish_does_not_clobber_a_concurrent_current(rig: Rig) -> None:
    # GIVEN a rotation up to testSecret
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    for step in STEPS[:3]:
        rig.invoke(rig.event(step, token))
    # ... and a PutSecretValue by someone else that lands between finishSecret's
    # DescribeSecret and its UpdateSecretVersionStage
    racer = rig.value("AWSCURRENT")
    racer_token = str(uuid.uuid4())

    def race(**_: Any) -> None:
        rig.sm.put_secret_value(SecretId=rig.arn, ClientRequestToken=racer_token,
                                SecretString=__import__("json").dumps(racer))

    from rotation import handler

    handler.get_app().secrets.client.meta.events.register_first(
        "before-call.secrets-manager.UpdateSecretVersionStage", race)

    # WHEN finishSecret runs
    with pytest.raises(ConcurrentUpdateError, match="moved"):
        rig.invoke(rig.event("finishSecret", token))

    # THEN the racer's version stays AWSCURRENT
    labels = rig.service.labels(rig.arn)
    assert "AWSCURRENT" in labels[racer_token]
