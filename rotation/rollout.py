"""Roll-out after a rotation: ``rotation.rollout.lambda_handler`` redeploys listed ECS services.

ECS (and Copilot) resolve a task definition's ``secrets`` once, when a task starts: running tasks
keep the old value until they are replaced. template.yaml's optional ``RolloutFunction``
(parameter ``RolloutEcsServices``) runs this module on Secrets Manager's ``RotationSucceeded``
event (a CloudTrail service event on EventBridge; the secret's ARN is
``detail.additionalEventData.SecretId``) and starts a new deployment of each listed service
(``UpdateService`` with ``forceNewDeployment``); ECS replaces the tasks as the service's
deployment configuration says.

* Acts only on ``RotationSucceeded`` for a secret of ``ROLLOUT_SECRET_ARNS`` (entries may end in
  IAM's ``-??????``); any other event: nothing done, and the result says why.
* Nothing while ``AWSPENDING`` sits on a version other than ``AWSCURRENT`` (one DescribeSecret):
  a rotation is under way again (its own ``RotationSucceeded`` follows) or is stuck. The label on
  the current version is a finished rotation (the service does not always remove it).
* A service whose primary deployment started after the event already runs the new value: it is
  skipped, so a retried invocation (EventBridge delivers at least once; Lambda retries a failed
  asynchronous invocation) does not roll the same service twice.
* One service failing does not stop the others; the invocation raises at the end, naming each
  failed service, so it counts as an error and Lambda retries it.
* Reads no secret value (its role has no ``secretsmanager:GetSecretValue``); logs name the secret
  ARN and the services only. boto3 only: no database driver.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from rotation.config import ENDPOINT
from rotation.errors import AwsError, ConfigError
from rotation.logs import logger
from rotation.secrets import CURRENT, PENDING, aws_client

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

SERVICES_ENV = "ROLLOUT_ECS_SERVICES"
SECRETS_ENV = "ROLLOUT_SECRET_ARNS"
EVENT_SOURCE = "aws.secretsmanager"
EVENT_NAME = "RotationSucceeded"
#: IAM's wildcard for a secret ARN's random 6-character suffix (template.yaml's SecretArns)
ARN_SUFFIX_WILDCARD = "-??????"
#: DescribeServices takes at most 10 services per call
DESCRIBE_BATCH = 10


class RolloutError(AwsError):
    """At least one listed service could not be redeployed."""


@dataclass(frozen=True)
class RolloutSettings:
    """The environment template.yaml gives the function."""

    services: tuple[str, ...]
    secret_arns: tuple[str, ...]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RolloutSettings:
        env = os.environ if env is None else env
        services = _entries(env.get(SERVICES_ENV, ""))
        secret_arns = _entries(env.get(SECRETS_ENV, ""))
        for name, value, what in ((SERVICES_ENV, services, "cluster-name/service-name entries"),
                                  (SECRETS_ENV, secret_arns, "the rotated secrets' ARNs")):
            if not value:
                raise ConfigError(f"{name} is empty", hint=f"set it to {what}, comma-separated "
                                  "(template.yaml sets it from RolloutEcsServices and SecretArns)")
        return cls(services, secret_arns)


@dataclass
class Rollout:
    """What one invocation did: the result it returns and logs."""

    secret_arn: str
    redeployed: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def skip_all(self, services: Sequence[str], reason: str) -> Rollout:
        self.skipped.extend({"service": s, "reason": reason} for s in services)
        return self

    def fail(self, service: str, error: str) -> None:
        self.failed.append({"service": service, "error": error})

    def as_dict(self) -> dict[str, Any]:
        return {"secret_arn": self.secret_arn, "redeployed": self.redeployed,
                "skipped": self.skipped, "failed": self.failed}


def lambda_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return roll_out(event, RolloutSettings.from_env())


def roll_out(event: Mapping[str, Any], settings: RolloutSettings, *,
             secrets: SecretsManagerClient | None = None, ecs: Any = None) -> dict[str, Any]:
    """Redeploy ``settings.services`` when ``event`` is a RotationSucceeded of a listed secret."""
    detail = _mapping(event.get("detail"))
    secret_arn = str(_mapping(detail.get("additionalEventData")).get("SecretId", ""))
    result = Rollout(secret_arn)
    name = detail.get("eventName")
    if event.get("source") != EVENT_SOURCE or name != EVENT_NAME:
        return _done(result.skip_all(settings.services, f"event {name or 'without a name'} "
                                     f"from {event.get('source')}: only {EVENT_NAME} starts a "
                                     "roll-out"))
    if not any(secret_matches(secret_arn, entry) for entry in settings.secret_arns):
        return _done(result.skip_all(settings.services, f"secret {secret_arn or '(none)'} is not "
                                     "one of this stack's SecretArns"))
    under_way = pending_version(secrets or _client("secretsmanager"), secret_arn)
    if under_way:
        return _done(result.skip_all(settings.services, f"AWSPENDING is on version "
                                     f"{under_way[:8]}, not the current one: a rotation is under "
                                     "way; its own RotationSucceeded starts the roll-out"))
    _redeploy(ecs or _client("ecs"), settings.services, _event_time(event), result)
    _done(result)
    if result.failed:
        names = ", ".join(f["service"] for f in result.failed)
        raise RolloutError(
            f"roll-out after the rotation of secret {secret_arn} failed for "
            f"{len(result.failed)} of {len(settings.services)} service(s): {names}",
            hint="each failure is in this invocation's log line; check that RolloutEcsServices "
                 "names ACTIVE services (cluster-name/service-name) in this region. Redeployed "
                 "services are rolling; a retry skips them")
    return result.as_dict()


def secret_matches(arn: str, entry: str) -> bool:
    """Whether ``entry`` (a complete ARN, or a partial one plus ``-??????``) names ``arn``, as IAM
    reads it: each ``?`` is exactly one character, so ``app-??????`` is not ``app-db-AbCdEf``."""
    if entry.endswith(ARN_SUFFIX_WILDCARD):
        stem = entry[: -len(ARN_SUFFIX_WILDCARD) + 1]  # keeps the "-"
        return arn.startswith(stem) and len(arn) == len(entry)
    return arn == entry


def pending_version(client: SecretsManagerClient, secret_arn: str) -> str | None:
    """A version staged AWSPENDING but not AWSCURRENT, or None (one DescribeSecret)."""
    try:
        versions = client.describe_secret(SecretId=secret_arn).get("VersionIdsToStages", {})
    except (BotoCoreError, ClientError) as exc:
        raise AwsError(f"DescribeSecret on secret {secret_arn} failed: {_reason(exc)}",
                       code=_code(exc), hint="allow secretsmanager:DescribeSecret on the secret "
                       "for the roll-out function's role") from exc
    return next((version for version, stages in versions.items()
                 if PENDING in stages and CURRENT not in stages), None)


def _redeploy(ecs: Any, services: Sequence[str], since: datetime | None,
              result: Rollout) -> None:
    """UpdateService(forceNewDeployment) on each ACTIVE listed service (one DescribeServices per
    cluster and 10 services first); every outcome goes into ``result``."""
    by_cluster: dict[str, list[str]] = {}
    for entry in services:
        cluster, _, name = entry.partition("/")
        if not cluster or not name or "/" in name:
            result.fail(entry, "not of the form cluster-name/service-name (RolloutEcsServices)")
        else:
            by_cluster.setdefault(cluster, []).append(name)
    for cluster, names in by_cluster.items():
        for start in range(0, len(names), DESCRIBE_BATCH):
            batch = names[start:start + DESCRIBE_BATCH]
            try:
                found = {s["serviceName"]: s for s in ecs.describe_services(
                    cluster=cluster, services=batch).get("services", [])}
            except (BotoCoreError, ClientError) as exc:
                for name in batch:
                    result.fail(f"{cluster}/{name}", _reason(exc))
                continue
            for name in batch:
                label, service = f"{cluster}/{name}", found.get(name)
                if service is None:
                    result.fail(label, f"no service {name} in cluster {cluster} in this region")
                elif service.get("status") != "ACTIVE":
                    result.fail(label, f"the service is {service.get('status')}, not ACTIVE")
                elif since is not None and _primary_since(service, since):
                    result.skipped.append({"service": label, "reason": "its primary deployment "
                                           "started after the rotation: it runs the new value"})
                else:
                    try:
                        ecs.update_service(cluster=cluster, service=name,
                                           forceNewDeployment=True)
                    except (BotoCoreError, ClientError) as exc:
                        result.fail(label, _reason(exc))
                    else:
                        result.redeployed.append(label)


def _primary_since(service: Mapping[str, Any], since: datetime) -> bool:
    primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"),
                   None)
    created = primary.get("createdAt") if primary else None
    return isinstance(created, datetime) and created > since


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(event.get("time", "")))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _done(result: Rollout) -> dict[str, Any]:
    outcome = "failed" if result.failed else "redeployed" if result.redeployed else "skipped"
    log = logger.warning if result.failed else logger.info
    log(f"roll-out {outcome}", extra={"outcome": outcome, **result.as_dict()})
    return result.as_dict()


def _client(service: str) -> Any:
    endpoint = os.environ.get(ENDPOINT) if service == "secretsmanager" else None
    return aws_client(service, endpoint or None)


def _code(exc: Exception) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) \
        else type(exc).__name__


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _entries(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


__all__ = ["RolloutError", "RolloutSettings", "lambda_handler", "roll_out", "secret_matches"]
