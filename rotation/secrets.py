"""The only module that talks to Secrets Manager.

* Every read names a ``VersionId`` (and the stage we expect), never "the default version".
* ``RotationToken`` is forwarded on every ``PutSecretValue`` when the event carries one, and never
  logged.
* Values are cached by VersionId for the life of the container: versions are immutable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from rotation import _redact
from rotation.errors import AwsError, AwsPermissionError, RotationTimeoutError, SecretFormatError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Client timeouts (aws_client, below): one request attempt takes at most this long.
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 3.0
ATTEMPT_BOUND_S = CONNECT_TIMEOUT_S + READ_TIMEOUT_S

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"


def aws_client(service: str, endpoint_url: str | None = None) -> Any:
    """A boto3 client for the functions (rotation and roll-out): AWS APIs answer in
    milliseconds, so short attempts leave room for retries inside a Lambda timeout."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                    retries={"total_max_attempts": 3, "mode": "standard"})
    return boto3.client(service, endpoint_url=endpoint_url, config=config)


_PERMISSION_CODES = {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
                     "KMSAccessDeniedException", "DecryptionFailure"}
_HINTS = {
    "AccessDeniedException": "grant the function's role this Secrets Manager action on the secret",
    "DecryptionFailure": "allow kms:Decrypt on the secret's KMS key for the function's role",
    "ResourceNotFoundException": "check the secret ARN and that the version still exists",
}


@dataclass(frozen=True)
class SecretState:
    """One DescribeSecret: rotation flag and which version holds which labels."""

    arn: str
    name: str
    rotation_enabled: bool
    versions: Mapping[str, frozenset[str]]

    def version_with(self, stage: str) -> str | None:
        return next((vid for vid, stages in self.versions.items() if stage in stages), None)


class SecretNotFoundError(AwsError):
    """The version has no value (Secrets Manager's ResourceNotFoundException)."""


class VersionExistsError(AwsError):
    """A version with this ClientRequestToken already holds another value."""


class SecretsManager:
    def __init__(self, client: SecretsManagerClient) -> None:
        self.client = client
        self._values: dict[tuple[str, str], str] = {}
        #: (secret ARN, rotation token) -> the AWSCURRENT version the rotation last worked from,
        #: as seen by this container; finishSecret refuses to move AWSCURRENT off another one
        self.sources: dict[tuple[str, str], str] = {}
        #: time.monotonic() after which no new request may start (the Lambda's remaining time
        #: less a margin); set per invocation by the dispatcher, None when unknown
        self.deadline: float | None = None
        # First, so it runs before any handler that answers the request (moto's, in tests).
        client.meta.events.register_first("before-send.secrets-manager", self._check_deadline)

    def _check_deadline(self, **_: Any) -> None:
        if self.deadline is not None and time.monotonic() + ATTEMPT_BOUND_S > self.deadline:
            raise RotationTimeoutError(
                "not enough of the Lambda's time is left for another Secrets Manager request "
                f"(each may take {ATTEMPT_BOUND_S:.0f} s)",
                hint="the endpoint is slow or unreachable: in a VPC, add a Secrets Manager VPC "
                     "endpoint or a NAT gateway; or raise the function's Timeout")

    def describe(self, secret_id: str) -> SecretState:
        response = self._call("DescribeSecret", secret_id, SecretId=secret_id)
        versions = {vid: frozenset(stages)
                    for vid, stages in response.get("VersionIdsToStages", {}).items()}
        return SecretState(
            arn=response["ARN"],
            name=response.get("Name", ""),
            rotation_enabled=bool(response.get("RotationEnabled", False)),
            versions=versions,
        )

    def get_value(self, arn: str, version_id: str, stage: str | None = None) -> str:
        """The SecretString of one version; raises SecretNotFoundError when it holds no value."""
        cached = self._values.get((arn, version_id))
        if cached is not None:
            return cached
        kwargs: dict[str, Any] = {"SecretId": arn, "VersionId": version_id}
        if stage:
            kwargs["VersionStage"] = stage
        response = self._call("GetSecretValue", arn, **kwargs)
        value: str | None = response.get("SecretString")
        if value is None:
            raise _binary(arn, f"version {version_id[:8]} of secret {arn}")
        self._remember(arn, version_id, value)
        return value

    def get_current(self, secret_id: str) -> tuple[str, str]:
        """Another secret's AWSCURRENT value (the master secret): one GetSecretValue naming the
        stage. Returns (ARN, SecretString)."""
        response = self._call("GetSecretValue", secret_id, SecretId=secret_id,
                              VersionStage=CURRENT)
        value: str | None = response.get("SecretString")
        if value is None:
            raise _binary(secret_id, f"secret {secret_id}")
        self._remember(response["ARN"], response["VersionId"], value)
        return response["ARN"], value

    def put_pending(self, arn: str, token: str, value: str, rotation_token: str | None) -> None:
        """Store ``value`` as version ``token`` with AWSPENDING. Raises VersionExistsError when
        that version already holds a different value (versions are immutable)."""
        kwargs: dict[str, Any] = {"SecretId": arn, "ClientRequestToken": token,
                                  "SecretString": value, "VersionStages": [PENDING]}
        if rotation_token:
            kwargs["RotationToken"] = rotation_token
        self._call("PutSecretValue", arn, **kwargs)
        self._remember(arn, token, value)

    def move_stage(self, arn: str, stage: str, *, to_version: str | None,
                   from_version: str | None) -> None:
        """UpdateSecretVersionStage. With ``from_version`` it is a compare-and-set: it fails if
        the label is no longer on that version."""
        kwargs: dict[str, Any] = {"SecretId": arn, "VersionStage": stage}
        if to_version:
            kwargs["MoveToVersionId"] = to_version
        if from_version:
            kwargs["RemoveFromVersionId"] = from_version
        self._call("UpdateSecretVersionStage", arn, **kwargs)

    def version_dates(self, arn: str) -> dict[str, Any]:
        """VersionId -> CreatedDate of every version that has a staging label (one
        ListSecretVersionIds call; a secret keeps at most 100 such versions)."""
        dates: dict[str, Any] = {}
        kwargs: dict[str, Any] = {"SecretId": arn, "MaxResults": 100}
        while True:
            response = self._call("ListSecretVersionIds", arn, **kwargs)
            for version in response.get("Versions", []):
                if "CreatedDate" in version:
                    dates[version["VersionId"]] = version["CreatedDate"]
            if not response.get("NextToken"):
                return dates
            kwargs["NextToken"] = response["NextToken"]

    def cached(self, arn: str, version_id: str | None) -> str | None:
        """A value this container already holds, without a call (None when it holds none)."""
        return None if version_id is None else self._values.get((arn, version_id))

    def forget(self, arn: str, version_id: str) -> None:
        self._values.pop((arn, version_id), None)

    def _remember(self, arn: str, version_id: str, value: str) -> None:
        _register_secret_values(value)
        self._values[(arn, version_id)] = value

    def _call(self, operation: str, secret_id: str, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self.client, _SNAKE[operation])
        try:
            response: dict[str, Any] = method(**kwargs)
        except ClientError as exc:
            raise _translate(operation, secret_id, exc) from None
        except RotationTimeoutError as exc:  # from the deadline check: say which call and secret
            raise RotationTimeoutError(f"{operation} on secret {secret_id}: {exc.message}",
                                       hint=exc.hint) from None
        except BotoCoreError as exc:
            # Endpoint and timeout failures: no secret in these messages, but keep it short.
            name = type(exc).__name__
            if "Timeout" in name or "Connect" in name or "Endpoint" in name:
                raise RotationTimeoutError(
                    f"{operation} on secret {secret_id} could not reach Secrets Manager ({name})",
                    hint="in a VPC, add a Secrets Manager VPC endpoint or a NAT gateway, and "
                         "check SECRETS_MANAGER_ENDPOINT") from None
            raise AwsError(f"{operation} on secret {secret_id} failed ({name})",
                           code=name) from None
        return response


_SNAKE = {
    "DescribeSecret": "describe_secret",
    "GetSecretValue": "get_secret_value",
    "PutSecretValue": "put_secret_value",
    "UpdateSecretVersionStage": "update_secret_version_stage",
    "ListSecretVersionIds": "list_secret_version_ids",
}


def _binary(arn: str, what: str) -> SecretFormatError:
    return SecretFormatError(f"{what} holds SecretBinary, not a SecretString: binary secrets "
                             "cannot be rotated", secret_arn=arn,
                             hint="store the credential as a JSON SecretString")


def _translate(operation: str, secret_id: str, exc: ClientError) -> AwsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    # Service messages can echo request parameters; scrub before keeping any of it.
    detail = _redact.redact(str(error.get("Message", "")))[:300]
    message = f"{operation} on secret {secret_id} failed: {code}: {detail}"
    hint = _HINTS.get(code, "")
    if code in _PERMISSION_CODES:
        return AwsPermissionError(message, code=code, hint=hint)
    if code == "ResourceExistsException":
        return VersionExistsError(message, code=code)
    if code == "ResourceNotFoundException":
        return SecretNotFoundError(message, code=code, hint=hint)
    return AwsError(message, code=code, hint=hint)


def _register_secret_values(value: str) -> None:
    """Register the password (and any other sensitive field) of a secret value for redaction."""
    import json

    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        _redact.register(value)  # not JSON: the whole value may be a bare password
        return
    if isinstance(data, (dict, str)):
        # A JSON scalar such as `null` or `123` is no secret, and masking it would mask every
        # `null` the process prints afterwards.
        _redact.register(value)
    if isinstance(data, dict):
        _redact.register(*(str(v) for k, v in data.items()
                           if isinstance(v, str) and "password" in k.lower()))
