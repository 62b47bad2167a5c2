from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from rotation import handler
from rotation.local import ApiCallCounter, LocalRotationService
from tests.conftest import FakeLambdaContext
from tests.functional.fakes import DB, FakeDatabase

FAKE_ENGINE = {"fake": "tests.functional.fakes:FakeAdapter"}


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDatabase]:
    import rotation.adapters

    monkeypatch.setattr(rotation.adapters, "BUILTIN", {**rotation.adapters.BUILTIN,
                                                       **FAKE_ENGINE})
    DB.reset()
    yield DB
    DB.reset()


@dataclass
class Rig:
    """A secret on the local stack, the service driver, and the function's API-call counter."""

    sm: Any
    service: LocalRotationService
    arn: str
    db: FakeDatabase
    calls: ApiCallCounter

    def invoke(self, event: dict[str, Any]) -> Any:
        """One Lambda invocation through the public handler, counting its API calls."""
        app = handler.get_app()
        if not getattr(app.secrets.client, "_counted", False):
            self.calls.attach(app.secrets.client)
            app.secrets.client._counted = True
        return handler.lambda_handler(event, FakeLambdaContext())

    def invoke_cold(self, event: dict[str, Any]) -> Any:
        handler.reset()
        return self.invoke(event)

    def value(self, stage: str) -> dict[str, Any]:
        versions = self.service.labels(self.arn)
        version_id = next(v for v, s in versions.items() if stage in s)
        raw = self.sm.get_secret_value(SecretId=self.arn, VersionId=version_id,
                                       VersionStage=stage)["SecretString"]
        data: dict[str, Any] = json.loads(raw)
        return data

    def has_value(self, version_id: str) -> bool:
        try:
            self.sm.get_secret_value(SecretId=self.arn, VersionId=version_id)
        except self.sm.exceptions.ResourceNotFoundException:
            return False
        return True

    def event(self, step: str, token: str, rotation_token: str | None = None) -> dict[str, Any]:
        event = {"Step": step, "SecretId": self.arn, "ClientRequestToken": token}
        if rotation_token:
            event["RotationToken"] = rotation_token
        return event


def make_secret(**overrides: Any) -> dict[str, Any]:
    secret: dict[str, Any] = {"engine": "fake", "host": "db.example.internal", "port": 5432,
                              "username": "app_user", "password": "initial-Passw0rd!",
                              "dbname": "appdb"}
    secret.update(overrides)
    return {k: v for k, v in secret.items() if v is not None}


@pytest.fixture
def rig_factory(sm: Any, db: FakeDatabase) -> Callable[..., Rig]:
    def build(enable: bool = True, **overrides: Any) -> Rig:
        secret = make_secret(**overrides)
        if "username" in secret and "password" in secret:
            db.passwords[secret["username"]] = secret["password"]
        arn = sm.create_secret(Name=f"app-{len(db.passwords)}-{id(secret)}",
                               SecretString=json.dumps(secret))["ARN"]
        service = LocalRotationService(sm)
        if enable:
            service.enable_rotation(arn)
        return Rig(sm, service, arn, db, ApiCallCounter())

    return build


@pytest.fixture
def rig(rig_factory: Callable[..., Rig]) -> Rig:
    return rig_factory()
