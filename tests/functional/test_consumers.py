"""`rotation consumers`: ECS services, Batch job definitions and Lambda functions reading a secret,
on moto (ECS, Batch, Lambda, IAM and KMS in-process; Lambda's create_function needs no Docker).
The permission checks (IAM's simulator, which moto lacks) are in test_consumer_access.py."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from rotation.tools.cli import main
from rotation.tools.consumers import Consumer, ConsumersReport, find_consumers, parse_reference
from tests.conftest import LeakScan

REGION = "us-east-1"
PASSWORD = "consumer-Passw0rd-value!"


@pytest.fixture
def aws(sm: Any) -> dict[str, Any]:
    return make_aws(sm)


def make_aws(sm: Any) -> dict[str, Any]:
    """moto clients beside the Secrets Manager one, a role, a cluster and the secret."""
    clients = {name: boto3.client(name, region_name=REGION)
               for name in ("iam", "ecs", "lambda", "batch", "kms")}
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


def batch_job(aws: dict[str, Any], *, secrets: Sequence[str] = (), repo: str = "",
              name: str = "nightly") -> None:
    props: dict[str, Any] = {"image": "job:1", "vcpus": 1, "memory": 128,
                             "executionRoleArn": aws["role"],
                             "secrets": [{"name": f"S{i}", "valueFrom": v}
                                         for i, v in enumerate(secrets)]}
    if repo:
        props["repositoryCredentials"] = {"credentialsParameter": repo}
    aws["batch"].register_job_definition(jobDefinitionName=name, type="container",
                                         containerProperties=props)


def report_for(aws: dict[str, Any], secret_id: str | None = None, *, iam: Any = None,
               kms: Any = None) -> ConsumersReport:
    return find_consumers(aws["sm"], secret_id or aws["arn"], ecs=aws["ecs"],
                          batch=aws["batch"], lambda_=aws["lambda"], iam=iam, kms=kms)


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
    assert consumer.refresh == "redeploy"
    assert any(fix in f for f in consumer.fixes)
    assert any("list prod/web in the rotation stack's RolloutEcsServices" in f
               for f in consumer.fixes)


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
    assert consumer.refresh == "next pull"


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
    batch_job(aws, secrets=[aws["arn"]])
    consumer = only(report_for(aws))
    assert (consumer.kind, consumer.name, consumer.status) == ("batch-job", "nightly:1", "warn")
    assert "jobs running during a rotation keep the old value" in consumer.on_rotation
    assert consumer.refresh == "next job"


@pytest.mark.parametrize(("suffix", "why"), [
    ("partial", "partial ARN (no 6-character suffix)"),
    (":pasword::", "'pasword' is not in the secret"),
])
def test_batch_secret_forms_that_do_not_resolve(aws: dict[str, Any], suffix: str,
                                                why: str) -> None:
    # GIVEN a Batch job definition naming the secret by a partial ARN, or a key it lacks
    arn = aws["arn"]
    batch_job(aws, secrets=[arn.rsplit("-", 1)[0] if suffix == "partial" else arn + suffix])

    # WHEN / THEN it cannot read the secret, and the problem says why
    consumer = only(report_for(aws))
    assert (consumer.kind, consumer.status, consumer.resolves) == ("batch-job", "fail", False)
    assert any(why in p for p in consumer.problems), consumer.problems


@pytest.mark.parametrize(("reference", "status", "problem"), [
    ("arn", "ok", ""),
    ("name", "warn", "Batch documents the secret's ARN for repositoryCredentials"),
])
def test_batch_repository_credentials(aws: dict[str, Any], reference: str, status: str,
                                      problem: str) -> None:
    # GIVEN a Batch job pulling its image with the secret as private registry credentials
    batch_job(aws, repo=aws["arn"] if reference == "arn" else "prod/app/db")

    # WHEN its consumers are looked for
    consumer = only(report_for(aws))

    # THEN the execution role reads it at each image pull; a bare name is only warned about
    assert (consumer.where, consumer.status, consumer.refresh) == (
        "container: repositoryCredentials", status, "next pull")
    assert consumer.reader_kind == "execution role"
    assert all(problem in p for p in consumer.problems)
    assert len(consumer.problems) == (1 if problem else 0)


def test_registry_credentials_without_username_and_password_fail(aws: dict[str, Any]) -> None:
    # GIVEN a secret without the registry keys, named as an ECS task's registry credentials
    arn = aws["sm"].create_secret(Name="prod/registry", SecretString=json.dumps(
        {"user": "ci", "token": PASSWORD}))["ARN"]
    ecs_service(aws, repo=arn)

    # WHEN / THEN the consumer fails and names the keys it has (never their values)
    consumer = only(report_for(aws, arn))
    assert consumer.status == "fail"
    assert "need the JSON keys username and password; the secret has token, user" in \
        consumer.problems[0]
    assert PASSWORD not in json.dumps(consumer.to_dict())


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
    assert not report.incomplete  # skipped on purpose is not a check that could not run
    assert report.permissions == "not checked: no IAM client"


def test_a_source_that_cannot_be_listed_makes_the_report_incomplete(
        aws: dict[str, Any]) -> None:
    # GIVEN an ECS client whose ListClusters is refused
    ecs = boto3.client("ecs", region_name=REGION)
    with Stubber(ecs) as stub:
        stub.add_client_error("list_clusters", service_error_code="AccessDeniedException",
                              service_message="not allowed", http_status_code=400)
        # WHEN consumers are looked for
        report = find_consumers(aws["sm"], aws["arn"], ecs=ecs)

    # THEN the report is incomplete, not failed, and says which source and why
    assert report.sources["ecs"] == "not checked: AccessDeniedException: not allowed"
    assert (report.incomplete, report.failed) == (True, False)


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
    assert "GET SECRET  DECRYPT" in out
    assert "ecs prod/web (web:1)" in out
    assert "lambda reader" in out
    assert "name (NO)" in out
    assert f"fix: use the full ARN {aws['arn']}" in out
    # moto has no IAM simulator: the permissions could not be checked, which is no pass
    assert "does not implement iam:SimulatePrincipalPolicy" in out
    assert "summary: 3 consumer(s): 0 ok, 2 warn, 1 fail; 3 not fully checked" in out


def test_cli_exits_3_when_checks_could_not_run_and_none_failed(
        aws: dict[str, Any], capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> None:
    # GIVEN a consumer whose role cannot be simulated (moto has no SimulatePrincipalPolicy)
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})

    # WHEN / THEN the command says the check is incomplete, with exit 3, not 0
    code, out, _ = run(["consumers", aws["arn"]], capsys, leak_scan)
    assert code == 3
    assert "incomplete: some checks could not run (see above)" in out


@pytest.fixture
def stubbed_iam(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The CLI's IAM client, stubbed (moto has no SimulatePrincipalPolicy)."""
    import rotation.tools.cli as cli

    iam = boto3.client("iam", region_name=REGION)
    original = cli.aws_client
    monkeypatch.setattr(cli, "aws_client", lambda options, service, config=None: (
        iam if service == "iam" else original(options, service, config)))
    with Stubber(iam) as stub:
        yield stub
        stub.assert_no_pending_responses()


def test_cli_json_exits_0_without_failures(aws: dict[str, Any], stubbed_iam: Stubber,
                                          capsys: pytest.CaptureFixture[str],
                                          leak_scan: LeakScan) -> None:
    # GIVEN a function whose role IAM's simulator allows to read the secret
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    stubbed_iam.add_response("simulate_principal_policy", {"EvaluationResults": [
        {"EvalActionName": "secretsmanager:GetSecretValue", "EvalDecision": "allowed"}]},
        {"PolicySourceArn": aws["role"], "ActionNames": ["secretsmanager:GetSecretValue"],
         "ResourceArns": [aws["arn"]]})

    # WHEN the command prints JSON
    code, out, _ = run(["consumers", aws["arn"], "--json"], capsys, leak_scan)

    # THEN exit 0, and the document holds each verdict
    document = json.loads(out)
    assert code == 0
    assert (document["failed"], document["incomplete"]) == (False, False)
    assert document["secret"]["arn"] == aws["arn"]
    assert [c["name"] for c in document["consumers"]] == ["reader"]
    assert document["consumers"][0]["permissions"] == "allowed"
    assert [(a["action"], a["decision"]) for a in document["consumers"][0]["access"]] == [
        ("secretsmanager:GetSecretValue", "allowed"), ("kms:Decrypt", "not needed")]
    assert set(document["sources"].values()) == {"checked"}
    assert document["permissions"] == "checked"


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
