"""The rotation event Secrets Manager sends: a validated, read-only wrapper.

``str``/``repr`` show the RotationToken masked; log ``token_prefix`` instead of the token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from rotation import _redact
from rotation.errors import EventError, UnknownStepError

Step = Literal["createSecret", "setSecret", "testSecret", "finishSecret"]
STEPS: tuple[Step, ...] = get_args(Step)
MAX_SECRET_ID = 2048  # Secrets Manager's own limit on SecretId
MAX_TOKEN = 256


@dataclass(frozen=True)
class RotationEvent(Mapping[str, Any]):
    step: Step
    secret_id: str
    client_request_token: str
    rotation_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_dict(cls, event: object) -> RotationEvent:
        if not isinstance(event, Mapping):
            raise EventError(f"the event must be a JSON object, not {type(event).__name__}",
                             hint="invoke with keys Step, SecretId, ClientRequestToken")
        # Name the secret in every error when the event says which one it is.
        raw_id = event.get("SecretId")
        where = (f" (secret {raw_id})" if isinstance(raw_id, str) and raw_id.strip()
                 and len(raw_id) <= MAX_SECRET_ID else "")
        step = _required(event, "Step", where)
        if step not in STEPS:
            raise UnknownStepError(f"unknown step {step[:64]!r}{where}",
                                   hint="valid steps are " + ", ".join(STEPS))
        secret_id = _required(event, "SecretId", where)
        if len(secret_id) > MAX_SECRET_ID:
            raise EventError(f"event key `SecretId` is longer than {MAX_SECRET_ID} characters",
                             hint="pass the secret's ARN")
        token = _required(event, "ClientRequestToken", where)
        if not 32 <= len(token) <= 64:
            raise EventError(f"event key `ClientRequestToken` must be 32-64 characters long"
                             f"{where}", hint="pass the version id Secrets Manager sent")
        rotation_token = event.get("RotationToken")
        if rotation_token is not None:
            if not isinstance(rotation_token, str) or not 1 <= len(rotation_token) <= MAX_TOKEN:
                raise EventError(f"event key `RotationToken` must be a string of at most "
                                 f"{MAX_TOKEN} characters{where}",
                                 hint="pass the RotationToken Secrets Manager sent, unchanged")
            _redact.register(rotation_token)
        return cls(step, secret_id, token, rotation_token)

    @property
    def token_prefix(self) -> str:
        return self.client_request_token[:8]

    def _as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Step": self.step, "SecretId": self.secret_id,
                               "ClientRequestToken": self.client_request_token}
        if self.rotation_token is not None:
            out["RotationToken"] = self.rotation_token
        return out

    def __getitem__(self, key: str) -> Any:
        return self._as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._as_dict())

    def __len__(self) -> int:
        return len(self._as_dict())

    def __str__(self) -> str:
        masked = {**self._as_dict()}
        if "RotationToken" in masked:
            masked["RotationToken"] = _redact.MASK
        return str(masked)


def _required(event: Mapping[Any, Any], key: str, where: str) -> str:
    value = event.get(key)
    if value is None:
        raise EventError(f"event key `{key}` is missing{where}",
                         hint="Secrets Manager sends Step, SecretId and ClientRequestToken")
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"event key `{key}` must be a non-empty string{where}",
                         hint="Secrets Manager sends Step, SecretId and ClientRequestToken")
    return value
