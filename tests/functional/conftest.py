from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rotation.tools.local import ApiCallCounter, LocalRotationService
from tests.functional.fakes import DB, FakeDatabase
from tests.rig import Rig

FAKE_ENGINE = {"fake": "tests.functional.fakes:FakeAdapter"}


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDatabase]:
    import rotation.adapters

    monkeypatch.setattr(rotation.adapters, "BUILTIN", {**rotation.adapters.BUILTIN,
                                                       **FAKE_ENGINE})
    DB.reset()
    yield DB
    DB.reset()


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
