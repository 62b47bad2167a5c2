"""The roll-out function (rotation/rollout.py) on moto: ECS clusters and services in-process,
Secrets Manager from the local stack; the event is Secrets Manager's CloudTrail service event as
EventBridge delivers it (examples/events/rotation-succeeded.json)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from rotation import rollout
from rotation.errors import ConfigError
from rotation.rollout import RolloutError, RolloutSettings, roll_out, secret_matches
from rotation.tools.local import LocalRotationService
from tests.conftest import ROOT, LogCapture
from tests.rig import Rig

REGION = "us-east-1"
LISTED = ("prod/web", "prod/worker", "batch/reports")
UNLISTED = "prod/admin"


@pytest.fixture
def ecs(sm: Any) -> Any:
    """Two clusters, the three listed services and one that is not listed (same mock as sm)."""
    client = boto3.client("ecs", region_name=REGION)
    for cluster in ("prod", "batch"):
        client.create_cluster(clusterName=cluster)
    task = client.register_task_definition(
        family="app", containerDefinitions=[{"name": "app", "image": "app:1", "memory": 128}]
    )["taskDefinition"]["taskDefinitionArn"]
    for entry in (*LISTED, UNLISTED):
        cluster, name = entry.split("/")
        client.create_service(cluster=cluster, serviceName=name, taskDefinition=task,
                              desiredCount=0)
    return client


@pytest.fixture
def secret(sm: Any) -> str:
    arn: str = sm.create_secret(Name="prod/app/db", SecretString=json.dumps(
        {"engine": "fake", "username": "app", "password": "rollout-Passw0rd-value!"}))["ARN"]
    return arn


class UpdateSpy:
    """The parameters of every UpdateService a client makes (a botocore hook)."""

    def __init__(self, client: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        client.meta.events.register("before-parameter-build.ecs.UpdateService", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(dict(params))

    def services(self) -> list[str]:
        return sorted(f"{c['cluster']}/{c['service']}" for c in self.calls)


@pytest.fixture
def spy(ecs: Any) -> UpdateSpy:
    return UpdateSpy(ecs)


def event_for(secret_arn: str, name: str = "RotationSucceeded", *,
              source: str = "aws.secretsmanager") -> dict[str, Any]:
    """The sample event, for this secret, now (after the services were created)."""
    event: dict[str, Any] = copy.deepcopy(json.loads(
        (ROOT / "examples" / "events" / "rotation-succeeded.json").read_text()))
    event["source"] = source
    event["time"] = datetime.now(UTC).isoformat()
    event["detail"]["eventName"] = name
    event["detail"]["additionalEventData"]["SecretId"] = secret_arn
    return event


def deployments(ecs: Any) -> dict[str, str]:
    """The primary deployment id of every service (moto gives a forced deployment a new id)."""
    ids = {}
    for entry in (*LISTED, UNLISTED):
        cluster, name = entry.split("/")
        service = ecs.describe_services(cluster=cluster, services=[name])["services"][0]
        ids[entry] = next(d["id"] for d in service["deployments"] if d["status"] == "PRIMARY")
    return ids


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(entry for entry in before if before[entry] != after[entry])


def settings(*secret_arns: str, services: tuple[str, ...] = LISTED) -> RolloutSettings:
    return RolloutSettings(services=services, secret_arns=secret_arns)


# -- the event ------------------------------------------------------------------------------------

def test_rotation_succeeded_redeploys_exactly_the_listed_services(
        sm: Any, ecs: Any, spy: UpdateSpy, secret: str, log_capture: LogCapture) -> None:
    # GIVEN three listed services (and one unlisted) and a listed secret
    before = deployments(ecs)

    # WHEN Secrets Manager reports a successful rotation of the secret
    result = roll_out(event_for(secret), settings(secret), secrets=sm, ecs=ecs)

    # THEN each listed service, and only those, gets one forced new deployment
    assert spy.services() == sorted(LISTED)
    assert all(call["forceNewDeployment"] is True for call in spy.calls)
    assert changed(before, deployments(ecs)) == sorted(LISTED)
    assert result == {"secret_arn": secret, "redeployed": list(LISTED), "skipped": [],
                      "failed": []}
    # AND the log line names the secret and the services
    (line,) = [r for r in log_capture.records() if r.get("outcome")]
    assert (line["outcome"], line["secret_arn"], line["redeployed"]) == \
        ("redeployed", secret, list(LISTED))


@pytest.mark.parametrize(("name", "source"), [
    ("RotationFailed", "aws.secretsmanager"),
    ("RotationStarted", "aws.secretsmanager"),
    ("RotationAbandoned", "aws.secretsmanager"),
    ("PutSecretValue", "aws.secretsmanager"),
    ("RotationSucceeded", "aws.ecs"),
])
def test_other_events_redeploy_nothing(sm: Any, ecs: Any, spy: UpdateSpy, secret: str,
                                       name: str, source: str) -> None:
    # GIVEN an event of the listed secret that is not Secrets Manager's RotationSucceeded
    before = deployments(ecs)

    # WHEN it reaches the function
    result = roll_out(event_for(secret, name, source=source), settings(secret), secrets=sm,
                      ecs=ecs)

    # THEN nothing is redeployed, and the result says why for every service
    assert spy.calls == []
    assert changed(before, deployments(ecs)) == []
    assert result["redeployed"] == []
    assert [s["service"] for s in result["skipped"]] == list(LISTED)
    assert all("only RotationSucceeded starts a roll-out" in s["reason"]
               for s in result["skipped"])


def test_an_unlisted_secret_is_ignored(sm: Any, ecs: Any, spy: UpdateSpy, secret: str) -> None:
    # GIVEN a second secret that is not in the stack's SecretArns
    other = sm.create_secret(Name="prod/other", SecretString="{}")["ARN"]

    # WHEN its rotation succeeds
    result = roll_out(event_for(other), settings(secret), secrets=sm, ecs=ecs)

    # THEN no service is touched
    assert spy.calls == []
    assert result["redeployed"] == []
    assert f"secret {other} is not one of this stack's SecretArns" in result["skipped"][0]["reason"]


@pytest.mark.parametrize(("pending_on", "redeployed"), [
    ("a new version", []),
    ("the current version", list(LISTED)),
], ids=["rotation-under-way", "finished-rotation-label-left-on-current"])
def test_nothing_while_awspending_is_on_another_version(
        sm: Any, ecs: Any, spy: UpdateSpy, secret: str, pending_on: str,
        redeployed: list[str]) -> None:
    # GIVEN AWSPENDING on a version of its own (a rotation under way), or left on the current
    # version (a finished rotation: the service does not always remove the label)
    if pending_on == "a new version":
        LocalRotationService(sm).stage_pending(secret, "11111111-2222-4333-8444-555555555555")
    else:
        current = next(v for v, stages in sm.describe_secret(SecretId=secret)
                       ["VersionIdsToStages"].items() if "AWSCURRENT" in stages)
        sm.update_secret_version_stage(SecretId=secret, VersionStage="AWSPENDING",
                                       MoveToVersionId=current)

    # WHEN a RotationSucceeded of that secret arrives
    result = roll_out(event_for(secret), settings(secret), secrets=sm, ecs=ecs)

    # THEN the roll-out waits for a rotation under way, and goes ahead after a finished one
    assert spy.services() == sorted(redeployed)
    assert result["redeployed"] == redeployed
    if not redeployed:
        assert all("AWSPENDING is on version 11111111" in s["reason"] for s in result["skipped"])


@pytest.mark.parametrize(("entry", "arn", "matches"), [
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf",
     "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf", True),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:app-??????",
     "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf", True),
    # IAM's "?" is one character: "app-??????" is not the secret "app-db"
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:app-??????",
     "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-db-AbCdEf", False),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:app-??????",
     "arn:aws:secretsmanager:us-east-1:123456789012:secret:apps-AbCdEf", False),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf",
     "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEg", False),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:app-??????", "", False),
])
def test_secret_matching_reads_arns_as_iam_does(entry: str, arn: str, matches: bool) -> None:
    # GIVEN a SecretArns entry and an event's secret ARN / WHEN compared / THEN as IAM would
    assert secret_matches(arn, entry) is matches


def test_a_wildcard_arn_in_secret_arns_matches_the_rotated_secret(
        sm: Any, ecs: Any, spy: UpdateSpy, secret: str) -> None:
    # GIVEN SecretArns holding the secret as a partial ARN plus IAM's "-??????"
    wildcard = secret[: -len("-AbCdEf")] + "-??????"
    assert wildcard != secret

    # WHEN the secret's rotation succeeds
    result = roll_out(event_for(secret), settings(wildcard), secrets=sm, ecs=ecs)

    # THEN the listed services are redeployed
    assert spy.services() == sorted(LISTED)
    assert result["redeployed"] == list(LISTED)


# -- failures -------------------------------------------------------------------------------------

def test_one_missing_service_does_not_stop_the_others(
        sm: Any, ecs: Any, spy: UpdateSpy, secret: str, log_capture: LogCapture) -> None:
    # GIVEN the listed services plus a service that does not exist, one in a cluster that does
    # not exist, and an entry that is not cluster/service
    services = ("prod/web", "prod/ghost", "nowhere/web", "justaname", "batch/reports")
    before = deployments(ecs)

    # WHEN the rotation succeeds
    with pytest.raises(RolloutError) as raised:
        roll_out(event_for(secret), settings(secret, services=services), secrets=sm, ecs=ecs)

    # THEN the existing services are redeployed, and the invocation fails naming each other one
    assert changed(before, deployments(ecs)) == ["batch/reports", "prod/web"]
    message = str(raised.value)
    assert "failed for 3 of 5 service(s): justaname, prod/ghost, nowhere/web" in message
    assert "RolloutEcsServices" in message
    (line,) = [r for r in log_capture.records() if r.get("outcome")]
    errors = {f["service"]: f["error"] for f in line["failed"]}
    assert line["outcome"] == "failed"
    assert line["redeployed"] == ["prod/web", "batch/reports"]
    assert errors["prod/ghost"] == "no service ghost in cluster prod in this region"
    assert errors["nowhere/web"].startswith("ClusterNotFoundException")
    assert "cluster-name/service-name" in errors["justaname"]


def test_a_retried_invocation_does_not_roll_a_service_twice(
        sm: Any, ecs: Any, spy: UpdateSpy, secret: str) -> None:
    # GIVEN a first invocation that redeployed two services and failed on a missing one
    event = event_for(secret)
    services = ("prod/web", "prod/ghost", "batch/reports")
    with pytest.raises(RolloutError):
        roll_out(event, settings(secret, services=services), secrets=sm, ecs=ecs)
    first = deployments(ecs)

    # WHEN Lambda retries the same event
    with pytest.raises(RolloutError) as raised:
        roll_out(event, settings(secret, services=services), secrets=sm, ecs=ecs)

    # THEN the two services, whose deployments started after the rotation, are left alone
    assert deployments(ecs) == first
    assert spy.services() == ["batch/reports", "prod/web"]  # the first invocation's calls only
    assert "failed for 1 of 3 service(s): prod/ghost" in str(raised.value)


def test_a_failed_update_is_reported_and_the_next_service_still_rolls(
        sm: Any, ecs: Any, secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN ECS refusing the update of the first service (described as ACTIVE)
    from botocore.exceptions import ClientError

    update = ecs.update_service

    def refuse_web(**kwargs: Any) -> Any:
        if kwargs["service"] == "web":
            raise ClientError({"Error": {"Code": "AccessDeniedException",
                                         "Message": "not authorized"}}, "UpdateService")
        return update(**kwargs)

    monkeypatch.setattr(ecs, "update_service", refuse_web)
    before = deployments(ecs)

    # WHEN the rotation succeeds
    with pytest.raises(RolloutError) as raised:
        roll_out(event_for(secret), settings(secret), secrets=sm, ecs=ecs)

    # THEN the other services roll, and the error names the refused one with ECS's reason
    assert changed(before, deployments(ecs)) == ["batch/reports", "prod/worker"]
    assert "failed for 1 of 3 service(s): prod/web" in str(raised.value)


# -- the Lambda entry point -----------------------------------------------------------------------

@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv(rollout.SERVICES_ENV, ",".join(LISTED))
    monkeypatch.setenv(rollout.SECRETS_ENV, f"arn:aws:secretsmanager:{REGION}:123456789012:"
                       f"secret:unrelated-AbCdEf,{secret}")


@pytest.mark.usefixtures("environment")
def test_lambda_handler_reads_its_settings_from_the_environment(
        sm: Any, ecs: Any, secret: str) -> None:
    # GIVEN the environment template.yaml sets (services and SecretArns, joined)
    before = deployments(ecs)

    # WHEN the handler gets the sample event for the secret
    result = rollout.lambda_handler(event_for(secret), None)

    # THEN its own clients redeploy the listed services
    assert result["redeployed"] == list(LISTED)
    assert changed(before, deployments(ecs)) == sorted(LISTED)


@pytest.mark.parametrize("missing", [rollout.SERVICES_ENV, rollout.SECRETS_ENV])
def test_lambda_handler_without_its_settings_says_which_one(
        monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    # GIVEN one of the two variables unset
    monkeypatch.setenv(rollout.SERVICES_ENV, "prod/web")
    monkeypatch.setenv(rollout.SECRETS_ENV, "arn:aws:secretsmanager:us-east-1:1:secret:a-AbCdEf")
    monkeypatch.delenv(missing)

    # WHEN invoked / THEN a ConfigError names it and what to set
    with pytest.raises(ConfigError, match=f"{missing} is empty.*template.yaml"):
        rollout.lambda_handler(event_for("arn:x"), None)


# -- end to end -----------------------------------------------------------------------------------

def test_a_full_rotation_then_its_event_rolls_the_services(rig: Rig, ecs: Any,
                                                           spy: UpdateSpy) -> None:
    # GIVEN a secret rotated by the local service driver through the rotation handler
    report = rig.service.rotate(rig.arn, rig.invoke)
    assert report.succeeded, report.steps
    before = deployments(ecs)

    # WHEN the RotationSucceeded the service then publishes reaches the roll-out function
    result = roll_out(event_for(rig.arn), settings(rig.arn), secrets=rig.sm, ecs=ecs)

    # THEN the listed services are redeployed: new tasks read the new AWSCURRENT
    assert result["redeployed"] == list(LISTED)
    assert spy.services() == sorted(LISTED)
    assert changed(before, deployments(ecs)) == sorted(LISTED)
