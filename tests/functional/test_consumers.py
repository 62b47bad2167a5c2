"""`rotation consumers`: ECS services, Batch job definitions and Lambda functions reading a secret,
on moto (ECS, Batch, Lambda and IAM in-process; Lambda's create_function needs no Docker)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from typing import Any

import boto3
import pytest

from rotation.tools.cli import main
from rotation.tools.consumers import Consumer, ConsumersReport, find_consumers, parse_reference
from tests.conftest import LeakScan

REGION = "us-east-1"
PASSWORD = "consumer-Passw0rd-value!"


@pytest.fixture
def aws(sm: Any) -> dict[str, Any]:
    """moto clients beside the Secrets Manager one, a role, a cluster and the secret."""
    clients = {name: boto3.client(name, region_name=REGION)
               for name in ("iam", "ecs", "lambda", "batch")}
    role = clients["iam"].create_role(RoleName="app-role",
                                      AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    clients["ecs"].create_cluster(clusterName="prod")
    secret = sm.create_secret(Name="prod/app/db", SecretString=json.dumps(
        {"username": "app", "password": PASSWORD, "host": "db.internal"}))
    return {**clients, "sm": sm, "role": role, "arn": secret["ARN"]}


def ecs_service(aws: dict[str, Any], *, secrets: Sequence[str] = (), repo: str = "",
                execution_role: bool = True, tags: dict[str, str] | None = None,
                name: str = "web") -> None:
    container: dict[str, Any] = {"name": "app", "image": "app:1", "memory": 128,
                                 "secrets": [{"name": f"S{i}", "valueFrom": v}
                                             for i, v in enumerate(secrets)]}
    if repo:
        container["repositoryCredentials"] = {"credentialsParameter": repo}
    extra = {"executionRoleArn": aws["role"]} if execution_role else {}
    td = aws["ecs"].register_task_definition(family=name, containerDefinitions=[container],
                                             **extra)["taskDefinition"]["taskDefinitionArn"]
    aws["ecs"].create_service(cluster="prod", serviceName=name, taskDefinition=td,
                              desiredCount=0,
                              tags=[{"key": k, "value": v} for k, v in (tags or {}).items()])


def lambda_function(aws: dict[str, Any], name: str, env: dict[str, str]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return None\n")
    aws["lambda"].create_function(FunctionName=name, Runtime="python3.12", Role=aws["role"],
                                  Handler="app.handler", Code={"ZipFile": buf.getvalue()},
                                  Environment={"Variables": env})


def report_for(aws: dict[str, Any], secret_id: str | None = None) -> ConsumersReport:
    return find_consumers(aws["sm"], secret_id or aws["arn"], ecs=aws["ecs"],
                          batch=aws["batch"], lambda_=aws["lambda"])


def only(report: ConsumersReport) -> Consumer:
    assert len(report.consumers) == 1, report.consumers
    return report.consumers[0]


def other(arn: str, index: int, value: str) -> str:
    parts = arn.split(":")
    parts[index] = value
    return ":".join(parts)


# -- reference forms -----------------------------------------------------------------------------

@pytest.mark.parametrize(("suffix", "form", "status", "resolves", "fix"), [
    ("", "full-arn", "warn", True, "--force-new-deployment"),
    (":password::", "full-arn+key", "warn", True, "--force-new-deployment"),
    (":pasword::", "full-arn+key", "fail", False, "name one of the secret's keys"),
    (":password:AWSPREVIOUS:", "full-arn+key", "warn", True, "drop the version stage"),
])
def test_ecs_secret_full_arn_forms(aws: dict[str, Any], suffix: str, form: str, status: str,
                                   resolves: bool, fix: str) -> None:
    # GIVEN a service whose task definition injects the secret by its full ARN (+ JSON key)
    ecs_service(aws, secrets=[aws["arn"] + suffix])

    # WHEN its consumers are looked for
    consumer = only(report_for(aws))

    # THEN the form, the verdict and the fix are reported; the execution role reads it
    assert (consumer.kind, consumer.form, consumer.status) == ("ecs-service", form, status)
    assert consumer.resolves is resolves
    assert consumer.reader == aws["role"]
    assert consumer.reader_kind == "execution role"
    assert consumer.permissions == "not checked"
    assert "needs a new deployment after each rotation" in consumer.on_rotation
    assert any(fix in f for f in consumer.fixes)


def test_missing_json_key_lists_key_names_never_values(aws: dict[str, Any]) -> None:
    ecs_service(aws, secrets=[aws["arn"] + ":pasword::"])
    consumer = only(report_for(aws))
    text = json.dumps(consumer.to_dict())
    assert "'pasword' is not in the secret (keys: host, password, username)" in text
    assert PASSWORD not in text


@pytest.mark.parametrize(("reference", "form", "why"), [
    ("partial", "partial-arn", "partial ARN (no 6-character suffix)"),
    ("name", "name", "a name only"),
    ("region", "other-region", "names a secret in region eu-west-1"),
    ("account", "other-account", "names a secret in account 999999999999"),
])
def test_ecs_secret_forms_that_do_not_resolve(aws: dict[str, Any], reference: str, form: str,
                                              why: str) -> None:
    arn = aws["arn"]
    value = {"partial": arn.rsplit("-", 1)[0], "name": "prod/app/db",
             "region": other(arn, 3, "eu-west-1"), "account": other(arn, 4, "999999999999")}
    # GIVEN a task definition naming the secret in a form ECS cannot resolve
    ecs_service(aws, secrets=[value[reference]])

    # WHEN / THEN it fails, says why, and the fix is the full ARN
    consumer = only(report_for(aws))
    assert (consumer.form, consumer.status, consumer.resolves) == (form, "fail", False)
    assert any(why in p for p in consumer.problems), consumer.problems
    assert consumer.fixes[0].endswith(arn)


def test_parse_reference_ignores_other_secrets(aws: dict[str, Any]) -> None:
    from rotation.tools.consumers import load_target

    secret = load_target(aws["sm"], aws["arn"])
    assert parse_reference("prod/app/db2", secret) is None
    assert parse_reference(aws["arn"].replace("db-", "dbx-"), secret) is None
    assert parse_reference("arn:aws:ssm:us-east-1:123456789012:parameter/prod/app/db",
                           secret) is None


def test_missing_execution_role_fails(aws: dict[str, Any]) -> None:
    ecs_service(aws, secrets=[aws["arn"]], execution_role=False)
    consumer = only(report_for(aws))
    assert consumer.status == "fail"
    assert consumer.reader == ""
    assert any("set executionRoleArn" in f for f in consumer.fixes)


def test_repository_credentials_by_name_resolves(aws: dict[str, Any]) -> None:
    # GIVEN registry credentials named by the secret's name (documented for the same region)
    ecs_service(aws, repo="prod/app/db")
    consumer = only(report_for(aws))
    assert (consumer.where, consumer.form, consumer.status) == (
        "app: repositoryCredentials", "name", "ok")
    assert consumer.resolves
    assert consumer.on_rotation == "read at each image pull"


# -- Copilot -------------------------------------------------------------------------------------

COPILOT = {"copilot-application": "shop", "copilot-environment": "prod"}


def test_copilot_service_and_untagged_secret_fails(aws: dict[str, Any]) -> None:
    ecs_service(aws, secrets=[aws["arn"]], tags=COPILOT)
    consumer = only(report_for(aws))
    assert (consumer.copilot, consumer.status) == ("tags mismatch", "fail")
    assert any("aws secretsmanager tag-resource" in f and "Key=copilot-environment,Value=prod"
               in f for f in consumer.fixes)


def test_copilot_service_and_tagged_secret_passes(aws: dict[str, Any]) -> None:
    aws["sm"].tag_resource(SecretId=aws["arn"],
                           Tags=[{"Key": k, "Value": v} for k, v in COPILOT.items()])
    ecs_service(aws, secrets=[aws["arn"]], tags=COPILOT)
    consumer = only(report_for(aws))
    assert (consumer.copilot, consumer.status) == ("ok", "warn")


# -- Batch and Lambda ----------------------------------------------------------------------------

def test_batch_job_definition(aws: dict[str, Any]) -> None:
    aws["batch"].register_job_definition(
        jobDefinitionName="nightly", type="container",
        containerProperties={"image": "job:1", "vcpus": 1, "memory": 128,
                             "executionRoleArn": aws["role"],
                             "secrets": [{"name": "DB", "valueFrom": aws["arn"]}]})
    consumer = only(report_for(aws))
    assert (consumer.kind, consumer.name, consumer.status) == ("batch-job", "nightly:1", "warn")
    assert "jobs running during a rotation keep the old value" in consumer.on_rotation


@pytest.mark.parametrize(("value", "form", "status"), [
    ("arn", "full-arn", "ok"),
    ("name", "name", "ok"),
    ("partial", "partial-arn", "warn"),
    ("key", "full-arn+key", "fail"),
])
def test_lambda_environment(aws: dict[str, Any], value: str, form: str, status: str) -> None:
    arn = aws["arn"]
    env = {"arn": arn, "name": "prod/app/db", "partial": arn.rsplit("-", 1)[0],
           "key": arn + ":password::"}[value]
    lambda_function(aws, "reader", {"SECRET_ID": env, "OTHER": "unrelated"})
    lambda_function(aws, "bystander", {"SECRET_ID": "prod/other"})
    consumer = only(report_for(aws))
    assert (consumer.kind, consumer.name, consumer.where) == ("lambda", "reader", "env SECRET_ID")
    assert (consumer.form, consumer.status) == (form, status)
    assert consumer.reader == aws["role"]
    assert consumer.reader_kind == "function role"
    assert consumer.on_rotation == "reads at runtime"


def test_a_source_without_client_is_skipped(aws: dict[str, Any]) -> None:
    report = find_consumers(aws["sm"], "prod/app/db", ecs=aws["ecs"])
    assert report.sources == {"ecs": "checked", "batch": "skipped: no client for this region",
                              "lambda": "skipped: no client for this region"}
    assert report.consumers == []
    assert not report.failed


# -- the command ---------------------------------------------------------------------------------

def run(argv: list[str], capsys: pytest.CaptureFixture[str],
        leak_scan: LeakScan) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    leak_scan.add(PASSWORD)
    leak_scan.add_text(out)
    leak_scan.add_text(err)
    assert PASSWORD not in out + err
    return code, out, err


def test_cli_table_fails_when_a_consumer_cannot_read(aws: dict[str, Any],
                                                     capsys: pytest.CaptureFixture[str],
                                                     leak_scan: LeakScan) -> None:
    ecs_service(aws, secrets=[aws["arn"] + ":password::"], name="web")
    ecs_service(aws, secrets=["prod/app/db"], name="worker")
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})

    code, out, _ = run(["consumers", "prod/app/db", "--region", REGION], capsys, leak_scan)

    assert code == 1
    assert "STATUS  CONSUMER" in out
    assert "PERMISSIONS" in out
    assert "ecs-service prod/web (web:1)" in out
    assert "lambda reader" in out
    assert f"fix: use the full ARN {aws['arn']}" in out
    assert "summary: 3 consumer(s): 1 ok, 1 warn, 1 fail" in out


def test_cli_json_exits_0_without_failures(aws: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str],
                                          leak_scan: LeakScan) -> None:
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})

    code, out, _ = run(["consumers", aws["arn"], "--json"], capsys, leak_scan)

    document = json.loads(out)
    assert code == 0
    assert document["failed"] is False
    assert document["secret"]["arn"] == aws["arn"]
    assert [c["name"] for c in document["consumers"]] == ["reader"]
    assert document["consumers"][0]["permissions"] == "not checked"
    assert set(document["sources"].values()) == {"checked"}


def test_cli_unknown_secret_is_a_usage_error(aws: dict[str, Any],
                                             capsys: pytest.CaptureFixture[str],
                                             leak_scan: LeakScan) -> None:
    code, _, err = run(["consumers", "no/such/secret", "--region", REGION], capsys, leak_scan)
    assert code == 2
    assert "error: no secret no/such/secret in us-east-1" in err


def test_cli_help(capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> None:
    with pytest.raises(SystemExit) as info:
        main(["consumers", "--help"])
    out, _ = capsys.readouterr()
    leak_scan.add_text(out)
    assert info.value.code == 0
    assert "usage: rotation consumers" in out
