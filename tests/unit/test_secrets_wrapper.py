"""The Secrets Manager wrapper: explicit versions, cache by VersionId, error translation."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError

from rotation.errors import AwsError, AwsPermissionError, RotationTimeoutError
from rotation.secrets import SecretNotFoundError, SecretsManager, VersionExistsError

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"


class StubClient:
    """Records calls; raises or answers as told. Only for error paths moto cannot produce."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.meta = SimpleNamespace(events=SimpleNamespace(register_first=lambda *a, **k: None))

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> dict[str, Any]:
            self.calls.append((name, kwargs))
            if self.error:
                raise self.error
            return {"SecretString": json.dumps({"password": "Cached-Pw-1"}), "ARN": ARN}
        return call


def client_error(code: str, message: str = "msg") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Op")


def test_values_are_cached_by_version_id() -> None:
    stub = StubClient()
    sm = SecretsManager(stub)  # type: ignore[arg-type]
    sm.get_value(ARN, "v1", "AWSCURRENT")
    sm.get_value(ARN, "v1", "AWSCURRENT")
    sm.get_value(ARN, "v2", "AWSPENDING")
    assert [c[1]["VersionId"] for c in stub.calls] == ["v1", "v2"]
    assert stub.calls[0][1]["VersionStage"] == "AWSCURRENT"


def test_put_caches_the_value_and_forwards_the_rotation_token() -> None:
    stub = StubClient()
    sm = SecretsManager(stub)  # type: ignore[arg-type]
    sm.put_pending(ARN, "tok", '{"password": "New-Pw-123"}', "rotation-token-" + "x" * 30)
    assert stub.calls[0][1]["RotationToken"].startswith("rotation-token-")
    assert stub.calls[0][1]["VersionStages"] == ["AWSPENDING"]
    assert sm.get_value(ARN, "tok") == '{"password": "New-Pw-123"}'
    assert len(stub.calls) == 1


@pytest.mark.parametrize(("error", "cls", "fragment"), [
    (client_error("AccessDeniedException"), AwsPermissionError, "grant the function's role"),
    (client_error("DecryptionFailure"), AwsPermissionError, "kms:Decrypt"),
    (client_error("ResourceExistsException"), VersionExistsError, "ResourceExistsException"),
    (client_error("ResourceNotFoundException"), SecretNotFoundError, "check the secret ARN"),
    (client_error("InternalServiceError"), AwsError, "InternalServiceError"),
    (ConnectTimeoutError(endpoint_url="https://x"), RotationTimeoutError, "VPC endpoint"),
])
def test_errors_are_translated(error: Exception, cls: type[Exception], fragment: str) -> None:
    sm = SecretsManager(StubClient(error))  # type: ignore[arg-type]
    with pytest.raises(cls) as info:
        sm.describe(ARN)
    assert ARN in str(info.value)
    assert fragment in str(info.value)
    assert info.value.__cause__ is None


def test_service_message_is_scrubbed() -> None:
    from rotation import _redact

    _redact.register("Echoed-Secret-77")
    sm = SecretsManager(StubClient(client_error("ValidationException",  # type: ignore[arg-type]
                                                "bad value Echoed-Secret-77")))
    with pytest.raises(AwsError) as info:
        sm.describe(ARN)
    assert "Echoed-Secret-77" not in str(info.value)
