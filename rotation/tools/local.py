"""The local service driver: plays Secrets Manager's part of a rotation, in-process.

Secrets Manager (1) stages a value-less ``AWSPENDING`` version named by a new ClientRequestToken,
(2) invokes the function for createSecret, setSecret, testSecret and finishSecret with that token
(and a RotationToken), and (3) removes ``AWSPENDING`` once finishSecret succeeded. This module does
the same against an in-process moto Secrets Manager (``local_stack``), for tests, ``rotation rotate
--local``, ``rotation demo`` and the benchmarks.

moto needs three corrections to behave like the service here; they live in ``local_stack`` only:
* staging a value-less AWSPENDING version has no public API, so it is done on moto's backend;
* moto lets a second PutSecretValue overwrite an AWSPENDING version's value, where the real service
  raises ResourceExistsException (versions are immutable). ``local_stack`` restores that rule;
* moto's ListSecretVersionIds reports "now" as every version's CreatedDate, and its dates are
  whole seconds; the service reports when each version was made, to the millisecond.
  ``local_stack`` keeps each version's creation time (finishSecret's cold-container check
  compares them).
"""

from __future__ import annotations

import secrets as _random
import string
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from unittest import mock

from rotation import _redact
from rotation.credentials import DbCredentials
from rotation.errors import LoginError, StageError
from rotation.event import STEPS, Step
from rotation.secrets import CURRENT, PENDING

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

Invoke = Callable[[dict[str, Any]], Any]

DEFAULT_REGION = "us-east-1"
_TOKEN_ALPHABET = string.ascii_letters + string.digits + "-"


def new_rotation_token() -> str:
    """A RotationToken of the shape botocore accepts (36-256 of [a-zA-Z0-9-])."""
    token = "".join(_random.choice(_TOKEN_ALPHABET) for _ in range(64))
    _redact.register(token)
    return token


class LocalLambdaContext:
    """The Lambda context local runs pass to the handler (the attributes anything reads)."""

    function_name = "rotation"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:rotation"
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/rotation"
    log_stream_name = "local"

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def logs_in(credentials: DbCredentials, ca_bundle: str | None) -> bool:
    """Whether ``credentials`` log in and run a query: the proof logins of local runs. A refused
    login is False; any other failure (TLS, network) raises."""
    from rotation.adapters import get_adapter
    from rotation.adapters.base import AdapterOptions

    adapter = get_adapter(credentials.engine, AdapterOptions(ca_bundle=ca_bundle))
    try:
        with adapter.connect(credentials) as session:
            session.ping()
    except LoginError:
        return False
    return True


@dataclass
class StepReport:
    step: str
    outcome: str
    duration_ms: float
    error: str | None = None


@dataclass
class RotationReport:
    secret_arn: str
    token: str
    steps: list[StepReport] = field(default_factory=list)
    api_calls: Counter[str] = field(default_factory=Counter)
    labels_after: dict[str, list[str]] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return len(self.steps) == len(STEPS) and all(s.error is None for s in self.steps)

    @property
    def duration_ms(self) -> float:
        return round(sum(s.duration_ms for s in self.steps), 1)


class ApiCallCounter:
    """Counts the Secrets Manager calls a client makes, by operation (a botocore event hook)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self, client: Any) -> ApiCallCounter:
        client.meta.events.register("before-call.secrets-manager.*", self._count)
        return self

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def total(self) -> int:
        return sum(self.calls.values())


class LocalRotationService:
    """Drives rotations of secrets held by an in-process moto Secrets Manager."""

    def __init__(self, client: SecretsManagerClient) -> None:
        self.client = client

    # -- the service's own bookkeeping (moto backend) -------------------------------------------
    def _backend_secret(self, secret_id: str) -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.secretsmanager.models import secretsmanager_backends

        backend = secretsmanager_backends[DEFAULT_ACCOUNT_ID][self.client.meta.region_name]
        return backend.secrets[secret_id]

    def enable_rotation(self, secret_id: str, days: int = 30) -> None:
        """Mark rotation as configured, as RotateSecret with a function ARN would."""
        secret = self._backend_secret(secret_id)
        secret.rotation_requested = True
        secret.rotation_enabled = True
        secret.rotation_lambda_arn = "arn:aws:lambda:local:000000000000:function:rotation"
        secret.auto_rotate_after_days = days

    def stage_pending(self, secret_id: str, token: str) -> None:
        """Create the value-less AWSPENDING version the service makes before createSecret."""
        secret = self._backend_secret(secret_id)
        for version_id, version in secret.versions.items():
            stages = version["version_stages"]
            if PENDING in stages and CURRENT not in stages and version_id != token:
                raise StageError(
                    f"a previous rotation of secret {secret.arn} isn't complete: AWSPENDING "
                    f"is on version {version_id[:8]}",
                    hint="finish it by re-running its steps, or clear the label with "
                         "`rotation doctor --fix`")
        secret.remove_version_stages_from_old_versions([PENDING])
        version = secret.versions.setdefault(token, {
            "version_id": token, "createdate": time.time(), "version_stages": []})
        if PENDING not in version["version_stages"]:
            version["version_stages"].append(PENDING)

    def unstage_pending(self, secret_id: str, token: str) -> None:
        """After a successful finishSecret the service removes AWSPENDING."""
        stages = self.labels(secret_id).get(token, [])
        if PENDING in stages:
            self.client.update_secret_version_stage(
                SecretId=secret_id, VersionStage=PENDING, RemoveFromVersionId=token)

    def labels(self, secret_id: str) -> dict[str, list[str]]:
        return dict(self.client.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {}))

    # -- a rotation ------------------------------------------------------------------------------
    def rotate(self, secret_id: str, invoke: Invoke, *, token: str | None = None,
               rotation_token: str | None = None, steps: tuple[Step, ...] = STEPS,
               on_step: Callable[[StepReport], None] | None = None,
               stop_on_error: bool = True) -> RotationReport:
        """Run ``steps`` in order through ``invoke`` (a Lambda-handler-like callable)."""
        token = token or str(uuid.uuid4())
        rotation_token = rotation_token or new_rotation_token()
        arn = self.client.describe_secret(SecretId=secret_id)["ARN"]
        report = RotationReport(secret_arn=arn, token=token)
        self.stage_pending(arn, token)
        for step in steps:
            event = {"Step": step, "SecretId": arn, "ClientRequestToken": token,
                     "RotationToken": rotation_token}
            started = time.perf_counter()
            try:
                result = invoke(event)
                outcome = str(result.get("Outcome", "done")) if isinstance(result, Mapping) \
                    else "done"
                error = None
            except Exception as exc:  # the service records any failure of the function
                outcome, error = "failed", f"{type(exc).__name__}: {_redact.redact(str(exc))}"
            step_report = StepReport(step, outcome,
                                     round((time.perf_counter() - started) * 1000, 1), error)
            report.steps.append(step_report)
            if on_step:
                on_step(step_report)
            if error and stop_on_error:
                break
        if report.succeeded and steps[-1] == "finishSecret":
            self.unstage_pending(arn, token)
        report.labels_after = self.labels(arn)
        return report


@contextmanager
def local_stack(region: str = DEFAULT_REGION) -> Iterator[SecretsManagerClient]:
    """An in-process moto Secrets Manager that keeps versions immutable, as the service does."""
    import os

    import boto3
    from moto import mock_aws

    with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": region}), mock_aws(), \
            _immutable_versions(), _version_dates():
        client: SecretsManagerClient = boto3.client("secretsmanager", region_name=region)
        yield client


@contextmanager
def _immutable_versions() -> Iterator[None]:
    from moto.secretsmanager.exceptions import ResourceExistsException
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.put_secret_value

    def put_secret_value(self: Any, secret_id: str, secret_string: str, secret_binary: str,
                         client_request_token: str, version_stages: list[str]) -> str:
        if client_request_token and self._is_valid_identifier(secret_id):
            version = self.secrets[secret_id].versions.get(client_request_token)
            has_value = version is not None and ("secret_string" in version
                                                 or "secret_binary" in version)
            if has_value and (version.get("secret_string") != secret_string
                              or version.get("secret_binary") != secret_binary):
                raise ResourceExistsException(
                    f"You can't use ClientRequestToken {client_request_token} because that "
                    "value is already in use for a version of secret "
                    f"{self.secrets[secret_id].arn}.")
        return original(self, secret_id, secret_string, secret_binary, client_request_token,
                        version_stages)

    with mock.patch.object(SecretsManagerBackend, "put_secret_value", put_secret_value):
        yield


@contextmanager
def _version_dates() -> Iterator[None]:
    import json

    from moto.secretsmanager.models import SecretsManagerBackend

    add_secret = SecretsManagerBackend._add_secret

    def _add_secret(self: Any, secret_id: str, *args: Any, **kwargs: Any) -> Any:
        before = self.secrets[secret_id].versions if secret_id in self.secrets else {}
        known = {id(version) for version in before.values()}
        result = add_secret(self, secret_id, *args, **kwargs)
        now = time.time()
        for version in result[0].versions.values():
            if id(version) not in known:  # made by this call: a sub-second creation time
                version["createdate"] = now
        return result

    def list_secret_version_ids(self: Any, secret_id: str) -> str:
        secret = self.secrets[secret_id]
        versions = [{"VersionId": version_id, "VersionStages": version["version_stages"],
                     "CreatedDate": version["createdate"]}
                    for version_id, version in secret.versions.items()]
        return json.dumps({"ARN": secret.arn, "Name": secret.name, "Versions": versions})

    with mock.patch.object(SecretsManagerBackend, "_add_secret", _add_secret), \
            mock.patch.object(SecretsManagerBackend, "list_secret_version_ids",
                              list_secret_version_ids):
        yield


def create_secret(client: SecretsManagerClient, name: str, value: str) -> str:
    """Create a secret holding ``value`` as AWSCURRENT; returns its ARN."""
    return client.create_secret(Name=name, SecretString=value)["ARN"]
