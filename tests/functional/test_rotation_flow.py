"""The four steps end to end through lambda_handler, on moto with the in-memory database."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rotation import handler
from rotation.tools.local import new_rotation_token
from tests.conftest import TOKEN_RE, LogCapture
from tests.rig import Rig


def test_clean_rotation_warm_container(rig: Rig, log_capture: LogCapture) -> None:
    # GIVEN a secret whose password the database accepts
    old = rig.value("AWSCURRENT")

    # WHEN the service rotates it, all four steps in one container
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN the new password is set, labels moved, and the costs are the targets
    assert report.succeeded, report.steps
    new = rig.value("AWSCURRENT")
    assert new["password"] != old["password"]
    assert rig.value("AWSPREVIOUS")["password"] == old["password"]
    assert rig.db.passwords["app_user"] == new["password"]
    assert {k: v for k, v in new.items() if k != "password"} == \
        {k: v for k, v in old.items() if k != "password"}
    assert rig.calls.total() <= 7, rig.calls.calls
    assert rig.calls.calls == {"DescribeSecret": 4, "GetSecretValue": 1, "PutSecretValue": 1,
                               "UpdateSecretVersionStage": 1}
    assert rig.db.logins == {"ok": 2}
    assert "AWSPENDING" not in json.dumps(report.labels_after)
    steps_logged = {r["step"] for r in log_capture.records() if r.get("outcome") == "done"}
    assert steps_logged == {"createSecret", "setSecret", "testSecret", "finishSecret"}


def test_clean_rotation_cold_containers(rig: Rig) -> None:
    # GIVEN / WHEN each step runs in a fresh container (no cache carried over)
    report = rig.service.rotate(rig.arn, rig.invoke_cold)

    # THEN it still succeeds within 12 Secrets Manager calls (finishSecret checks the pending
    # value and the versions' dates: tests/integration/test_cost_counts.py), 2 logins, no
    # failed login
    assert report.succeeded, report.steps
    assert rig.calls.calls == {"DescribeSecret": 4, "GetSecretValue": 5,
                               "ListSecretVersionIds": 1, "PutSecretValue": 1,
                               "UpdateSecretVersionStage": 1}
    assert rig.db.logins == {"ok": 2}
    assert rig.db.passwords["app_user"] == rig.value("AWSCURRENT")["password"]


def test_rotation_token_forwarded_on_every_put_and_never_logged(
        rig: Rig, log_capture: LogCapture) -> None:
    # GIVEN a spy on the parameters of every PutSecretValue the function makes
    seen: list[dict[str, Any]] = []
    app = handler.get_app()
    app.secrets.client.meta.events.register(
        "before-parameter-build.secrets-manager.PutSecretValue",
        lambda params, **_: seen.append(dict(params)))
    token = new_rotation_token()

    # WHEN a rotation runs with a RotationToken
    report = rig.service.rotate(rig.arn, rig.invoke, rotation_token=token)

    # THEN each put carried it, and no log line shows it
    assert report.succeeded
    assert seen, "no PutSecretValue was made"
    assert all(p.get("RotationToken") == token for p in seen)
    assert TOKEN_RE.match(token)
    assert token not in log_capture.text
    assert token[:8] not in log_capture.text


def test_no_rotation_token_means_none_sent(rig: Rig) -> None:
    # GIVEN an event without RotationToken (same-account rotation)
    seen: list[dict[str, Any]] = []
    handler.get_app().secrets.client.meta.events.register(
        "before-parameter-build.secrets-manager.PutSecretValue",
        lambda params, **_: seen.append(dict(params)))
    token = "11111111-2222-4333-8444-555555555555"
    rig.service.stage_pending(rig.arn, token)

    # WHEN createSecret runs
    rig.invoke(rig.event("createSecret", token))

    # THEN the put has no RotationToken key at all
    assert len(seen) == 1
    assert "RotationToken" not in seen[0]


def test_custom_step_overrides_default(rig: Rig) -> None:
    # GIVEN an app whose testSecret is replaced by the decorator
    app = handler.get_app()
    ran: list[str] = []

    @app.step("testSecret")
    def my_test(ctx: Any) -> None:
        ran.append(ctx.event.step)

    # WHEN a rotation runs
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN the override ran instead of the default login (one login fewer)
    assert report.succeeded
    assert ran == ["testSecret"]
    assert rig.db.logins == {"ok": 1}


def test_step_decorator_rejects_unknown_step(rig: Rig) -> None:
    from rotation.errors import UnknownStepError

    with pytest.raises(UnknownStepError, match="createSecret, setSecret, testSecret"):
        handler.get_app().step("rotateSecret")


def test_configuration_check_tests_value_less_pending(rig: Rig, log_capture: LogCapture) -> None:
    # GIVEN RotateImmediately=false: the service stages an AWSPENDING without a value
    token = "aaaaaaaa-2222-4333-8444-555555555555"
    rig.service.stage_pending(rig.arn, token)

    # WHEN it invokes only testSecret
    result = rig.invoke(rig.event("testSecret", token))

    # THEN the current credential is tested, and the log says so
    assert result["Outcome"] == "tested AWSCURRENT"
    assert rig.db.logins == {"ok": 1}
    assert any("rotation configuration check" in r["message"] for r in log_capture.records())


def test_successive_rotations_keep_working(rig: Rig) -> None:
    # GIVEN / WHEN three rotations in a row
    passwords = set()
    for _ in range(3):
        report = rig.service.rotate(rig.arn, rig.invoke)
        assert report.succeeded, report.steps
        passwords.add(rig.value("AWSCURRENT")["password"])
        # THEN the current credential is always the one the database accepts
        assert rig.db.passwords["app_user"] == rig.value("AWSCURRENT")["password"]
    assert len(passwords) == 3
