"""``rotation policy``: the consumer's IAM policy, on moto (Secrets Manager and KMS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from rotation.tools.cli import EXIT_OK, EXIT_USAGE, main
from rotation.tools.local import local_stack
from rotation.tools.policy import KINDS, PolicyInputError, policy_for

REGION = "eu-west-1"
ACCOUNT = "123456789012"
VIA = {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}}


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with local_stack(REGION) as sm:
        yield sm, boto3.client("kms", region_name=REGION)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["policy", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def read(resource: str) -> dict[str, Any]:
    return {"Sid": "ReadSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
            "Resource": resource}


def decrypt(key: str) -> dict[str, Any]:
    return {"Sid": "DecryptSecretThroughSecretsManager", "Effect": "Allow",
            "Action": "kms:Decrypt", "Resource": key, "Condition": VIA}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_aws_managed_key_reads_the_full_arn_only(aws: tuple[Any, Any], kind: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a secret on the AWS managed key
    sm, _ = aws
    arn = sm.create_secret(Name="prod/app/postgres", SecretString="{}")["ARN"]

    # WHEN the policy is asked for by name
    code, out, err = run(capsys, "prod/app/postgres", "--for", kind, "--region", REGION)

    # THEN stdout is the policy alone: GetSecretValue on the full ARN, no KMS statement
    assert code == EXIT_OK
    assert json.loads(out) == {"Version": "2012-10-17", "Statement": [read(arn)]}
    assert KINDS[kind].role in err


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_customer_key_alias_is_resolved_with_via_service(aws: tuple[Any, Any], kind: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    # GIVEN a secret encrypted with a customer managed key, named by its alias
    sm, kms = aws
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/app-secrets", TargetKeyId=key["KeyId"])
    arn = sm.create_secret(Name="prod/app/mysql", SecretString="{}",
                           KmsKeyId="alias/app-secrets")["ARN"]

    # WHEN the policy is asked for by ARN (the region comes from the ARN)
    code, out, _ = run(capsys, arn, "--for", kind)

    # THEN kms:Decrypt names the key's ARN, through Secrets Manager only
    assert code == EXIT_OK
    assert json.loads(out)["Statement"] == [read(arn), decrypt(key["Arn"])]


def test_the_execution_role_note_goes_to_stderr(aws: tuple[Any, Any],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    aws[0].create_secret(Name="s", SecretString="{}")
    code, out, err = run(capsys, "s", "--for", "ecs-execution", "--region", REGION)
    assert code == EXIT_OK
    assert "task execution role" in err
    assert "`secrets`" in err
    assert "role" not in out


def test_describe_adds_describe_secret(aws: tuple[Any, Any],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    arn = aws[0].create_secret(Name="s", SecretString="{}")["ARN"]
    code, out, _ = run(capsys, "s", "--for", "lambda", "--region", REGION, "--describe")
    assert code == EXIT_OK
    assert json.loads(out)["Statement"][0]["Action"] == [
        "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    assert json.loads(out)["Statement"][0]["Resource"] == arn


def test_offline_name_gets_the_suffix_wildcard(capsys: pytest.CaptureFixture[str]) -> None:
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    code, out, _ = run(capsys, "prod/app/redis", "--for", "batch", "--offline",
                       "--region", REGION, "--account", ACCOUNT, "--kms-key", key)
    assert code == EXIT_OK
    assert json.loads(out)["Statement"] == [
        read(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/app/redis-??????"),
        decrypt(key)]


def test_offline_arn_and_key_id() -> None:
    arn = f"arn:aws-cn:secretsmanager:cn-north-1:{ACCOUNT}:secret:app-AbCdEf"
    policy = policy_for(arn, "ecs-task", kms_key="1234abcd-12ab-34cd-56ef-1234567890ab")
    assert policy["Statement"][0]["Resource"] == arn
    assert policy["Statement"][1]["Resource"] == (
        f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    assert policy["Statement"][1]["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.cn-north-1.amazonaws.com"}}
    # a partial ARN (no random suffix) gets the wildcard
    partial = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/app"
    assert policy_for(partial, "lambda")["Statement"][0]["Resource"] == partial + "-??????"


@pytest.mark.parametrize(("argv", "argument"), [
    (["arn:aws:secretsmanager:eu-west-1:12345:secret:x-AbCdEf", "--for", "lambda", "--offline"],
     "SECRET_ID"),
    (["arn:aws:s3:::bucket", "--for", "lambda"], "SECRET_ID"),
    (["app", "--for", "lambda", "--offline", "--region", REGION], "--account"),
    (["app", "--for", "lambda", "--offline", "--account", ACCOUNT], "--region"),
    (["app", "--for", "lambda", "--offline", "--region", "europe", "--account", ACCOUNT],
     "--region"),
    (["app", "--for", "lambda", "--offline", "--region", REGION, "--account", "12"],
     "--account"),
    (["app", "--for", "lambda", "--offline", "--region", REGION, "--account", ACCOUNT,
      "--kms-key", "alias/app"], "--kms-key"),
    ([f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:x-AbCdEf", "--for", "lambda",
      "--offline", "--region", "us-east-1"], "--region"),
])
def test_bad_input_is_a_usage_error(argv: list[str], argument: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE
    assert out == ""
    assert f"error: {argument}:" in err


def test_unknown_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["policy", "app", "--for", "ec2", "--offline"])
    assert exited.value.code == EXIT_USAGE
    assert "--for" in capsys.readouterr().err
    with pytest.raises(PolicyInputError, match="--for"):
        policy_for("app", "ec2", region=REGION, account=ACCOUNT)


def test_missing_secret_fails_with_a_hint(aws: tuple[Any, Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "nope", "--for", "lambda", "--region", REGION)
    assert code == 1
    assert out == ""
    assert "ResourceNotFoundException" in err
    assert "--offline" in err


def test_help_lists_the_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["policy", "--help"])
    assert exited.value.code == 0
    assert "ecs-execution" in capsys.readouterr().out
