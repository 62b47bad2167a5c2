"""``rotation policy``: the least-privilege IAM policy a consumer of a rotated secret needs.

A consumer reads the secret with ``secretsmanager:GetSecretValue`` on the secret's ARN (an ECS
``valueFrom`` with a JSON key, ``arn:...:secret:name-AbCdEf:password::``, still needs it on the
secret's ARN) and, when the secret is encrypted with a customer managed key, ``kms:Decrypt`` on
that key, limited to calls made through Secrets Manager (``kms:ViaService``). The AWS managed key
``aws/secretsmanager`` needs no statement: its key policy already allows the account's principals
through Secrets Manager. ``rotation.client`` only calls GetSecretValue; AWS's caching libraries
also call DescribeSecret (``describe=True``).

The functions here are pure: the secret's ARN and key come from DescribeSecret (and KMS
DescribeKey for an alias) when the caller has clients, else from the given ARN or name, region
and account.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AWS_MANAGED_KEY = "alias/aws/secretsmanager"

_SECRET_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):secretsmanager:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+):"
    r"(?P<account>\d{12}):secret:(?P<name>[\w/+=.@-]{1,512})$")
_SECRET_NAME = re.compile(r"^[\w/+=.@-]{1,512}$")
_RANDOM_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+$")
_ACCOUNT = re.compile(r"^\d{12}$")
_KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?P<resource>key|alias)/.+$")
_KEY_ID = re.compile(r"^(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                     r"[0-9a-f]{12})$")


class PolicyInputError(ValueError):
    """Bad input, naming the command-line argument it came from."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


@dataclass(frozen=True)
class ConsumerKind:
    """Who reads the secret, and which role needs the policy."""

    role: str
    description: str


KINDS: Mapping[str, ConsumerKind] = {
    "ecs-execution": ConsumerKind(
        "the ECS task execution role",
        "it injects the task definition's `secrets` (valueFrom; one with a JSON key still reads "
        "the whole secret) as environment variables at task start; a new value reaches the "
        "containers only when tasks restart"),
    "ecs-task": ConsumerKind(
        "the ECS task role",
        "the application reads the secret at runtime (e.g. rotation.client), so it follows "
        "rotations without a restart"),
    "lambda": ConsumerKind(
        "the Lambda function's execution role",
        "the function reads the secret at runtime (rotation.client, or the Parameters and "
        "Secrets Lambda extension)"),
    "batch": ConsumerKind(
        "the AWS Batch job's execution role (executionRoleArn)",
        "it injects the job definition's `secrets` (valueFrom) at job start"),
}


@dataclass(frozen=True)
class SecretRef:
    """The secret as the policy names it."""

    resource: str  # the full ARN, or the ARN with the `-??????` wildcard for a name
    partition: str
    region: str
    account: str


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-iso-"):
        return "aws-iso"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    return "aws"


def check_region(region: str) -> str:
    if not _REGION.match(region):
        raise PolicyInputError("--region", f"{region!r} is not a region such as eu-west-1")
    return region


def parse_secret_arn(arn: str) -> SecretRef:
    """A secret ARN. One without the six-character random suffix (a partial ARN) gets the
    ``-??????`` wildcard."""
    match = _SECRET_ARN.match(arn)
    if not match:
        raise PolicyInputError(
            "SECRET_ID", f"{arn!r} is not a Secrets Manager secret ARN "
            "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf)")
    resource = arn if _RANDOM_SUFFIX.search(match["name"]) else arn + "-??????"
    return SecretRef(resource, match["partition"], match["region"], match["account"])


def secret_ref(secret_id: str, *, region: str | None, account: str | None) -> SecretRef:
    """The secret from its ARN, or from its name, region and account (the resource then ends in
    ``-??????``: Secrets Manager appends six random characters to every secret's ARN)."""
    if secret_id.startswith("arn:"):
        ref = parse_secret_arn(secret_id)
        if region and region != ref.region:
            raise PolicyInputError("--region", f"{region} is not the ARN's region {ref.region}")
        if account and account != ref.account:
            raise PolicyInputError("--account",
                                   f"{account} is not the ARN's account {ref.account}")
        return ref
    if not _SECRET_NAME.match(secret_id):
        raise PolicyInputError("SECRET_ID", f"{secret_id!r} is neither a secret name nor an ARN")
    if not region:
        raise PolicyInputError("--region", "needed to build the ARN from a secret name")
    if not account:
        raise PolicyInputError("--account", "needed to build the ARN from a secret name")
    check_region(region)
    if not _ACCOUNT.match(account):
        raise PolicyInputError("--account", f"{account!r} is not a 12-digit account id")
    partition = partition_of(region)
    return SecretRef(f"arn:{partition}:secretsmanager:{region}:{account}:secret:{secret_id}-??????",
                     partition, region, account)


def is_aws_managed_key(key_id: str | None) -> bool:
    return not key_id or key_id == AWS_MANAGED_KEY or key_id.endswith(":" + AWS_MANAGED_KEY)


def key_arn(key_id: str, ref: SecretRef) -> str:
    """A customer managed key's ARN from a key ARN or key id (aliases need ``resolve_key``)."""
    match = _KMS_ARN.match(key_id)
    if match and match["resource"] == "key":
        return key_id
    if _KEY_ID.match(key_id):
        return f"arn:{ref.partition}:kms:{ref.region}:{ref.account}:key/{key_id}"
    if match or key_id.startswith("alias/"):
        raise PolicyInputError("--kms-key", f"{key_id} is an alias: an IAM policy needs the key "
                               "ARN (drop --offline to resolve it, or pass the key ARN)")
    raise PolicyInputError("--kms-key", f"{key_id!r} is not a KMS key ARN, key id or alias")


def resolve_key(kms_client: Any, key_id: str) -> str | None:
    """The key's ARN through KMS DescribeKey (aliases included); None for an AWS managed key."""
    metadata = kms_client.describe_key(KeyId=key_id)["KeyMetadata"]
    return None if metadata.get("KeyManager") == "AWS" else str(metadata["Arn"])


def build_policy(ref: SecretRef, kind: str, *, key: str | None = None,
                 describe: bool = False) -> dict[str, Any]:
    """The policy document: GetSecretValue (and DescribeSecret with ``describe``) on the secret,
    kms:Decrypt on ``key`` (a customer managed key's ARN) through Secrets Manager only."""
    if kind not in KINDS:
        raise PolicyInputError("--for", f"{kind!r} is not one of {', '.join(KINDS)}")
    actions = ["secretsmanager:GetSecretValue"] + (
        ["secretsmanager:DescribeSecret"] if describe else [])
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadSecret", "Effect": "Allow",
         "Action": actions[0] if len(actions) == 1 else actions, "Resource": ref.resource}]
    if key:
        statements.append(
            {"Sid": "DecryptSecretThroughSecretsManager", "Effect": "Allow",
             "Action": "kms:Decrypt", "Resource": key,
             "Condition": {"StringEquals": {
                 "kms:ViaService": f"secretsmanager.{ref.region}.amazonaws.com"}}})
    return {"Version": "2012-10-17", "Statement": statements}


def describe_kind(kind: str) -> str:
    """The note for stderr: which role gets the policy, and why."""
    consumer = KINDS[kind]
    return f"attach to {consumer.role}: {consumer.description}"


def policy_for(secret_id: str, kind: str, *, region: str | None = None,
               account: str | None = None, kms_key: str | None = None,
               describe: bool = False, secrets_client: Any = None,
               kms_client: Any = None) -> dict[str, Any]:
    """The policy for ``kind`` reading ``secret_id``. With ``secrets_client``, DescribeSecret
    gives the ARN and KmsKeyId; with ``kms_client``, an alias resolves to its key. Without
    clients the ARN is built from the arguments and ``kms_key`` (default: the AWS managed key)."""
    if kind not in KINDS:
        raise PolicyInputError("--for", f"{kind!r} is not one of {', '.join(KINDS)}")
    if secrets_client is None:
        ref = secret_ref(secret_id, region=region, account=account)
    else:
        if not secret_id.startswith("arn:") and not _SECRET_NAME.match(secret_id):
            raise PolicyInputError("SECRET_ID",
                                   f"{secret_id!r} is neither a secret name nor an ARN")
        if secret_id.startswith("arn:"):
            secret_ref(secret_id, region=region, account=account)  # a malformed ARN: usage error
        description = secrets_client.describe_secret(SecretId=secret_id)
        ref = parse_secret_arn(description["ARN"])
        kms_key = kms_key or description.get("KmsKeyId")
    key: str | None = None
    if not is_aws_managed_key(kms_key):
        assert kms_key is not None
        key = resolve_key(kms_client, kms_key) if kms_client is not None else key_arn(kms_key,
                                                                                       ref)
    return build_policy(ref, kind, key=key, describe=describe)
