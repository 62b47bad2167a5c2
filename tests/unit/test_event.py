"""The event wrapper: validation, masking of the RotationToken, the Mapping interface."""

from __future__ import annotations

from typing import Any

import pytest

from rotation.errors import EventError, UnknownStepError
from rotation.event import RotationEvent

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"
TOKEN = "c0ffee00-1111-4222-8333-444455556666"
ROTATION_TOKEN = "rt-" + "a1b2c3d4" * 6


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"Step": "setSecret", "SecretId": ARN, "ClientRequestToken": TOKEN,
                            "RotationToken": ROTATION_TOKEN}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_valid_event_round_trips_and_masks_the_token() -> None:
    ev = RotationEvent.from_dict(event())
    assert dict(ev) == event()
    assert ev.token_prefix == TOKEN[:8]
    assert ROTATION_TOKEN not in str(ev)
    assert ROTATION_TOKEN not in repr(ev)
    assert "***" in str(ev)


@pytest.mark.parametrize(("raw", "error", "fragment"), [
    (event(Step=None), EventError, "`Step` is missing"),
    (event(Step=3), EventError, "`Step` must be"),
    (event(Step="rotate"), UnknownStepError, "createSecret, setSecret, testSecret, finishSecret"),
    (event(Step="createsecret"), UnknownStepError, "valid steps"),
    (event(SecretId=None), EventError, "`SecretId` is missing"),
    (event(SecretId=""), EventError, "`SecretId` must be"),
    (event(SecretId="a" * 3000), EventError, "longer than"),
    (event(ClientRequestToken=None), EventError, "`ClientRequestToken` is missing"),
    (event(ClientRequestToken="short"), EventError, "32-64"),
    (event(ClientRequestToken=12), EventError, "must be a non-empty string"),
    (event(RotationToken=5), EventError, "`RotationToken`"),
    (event(RotationToken="x" * 300), EventError, "`RotationToken`"),
    ([], EventError, "JSON object"),
    ("createSecret", EventError, "JSON object"),
    (None, EventError, "JSON object"),
])
def test_bad_events(raw: Any, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        RotationEvent.from_dict(raw)
    assert fragment in str(info.value)
    assert ROTATION_TOKEN not in str(info.value)


def test_unknown_step_message_is_bounded() -> None:
    with pytest.raises(UnknownStepError) as info:
        RotationEvent.from_dict(event(Step="x" * 10_000))
    assert len(str(info.value)) < 300
