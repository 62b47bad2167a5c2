"""`rotation consumers`: may each consumer's role read the secret (rotation.tools.access)?

moto has no IAM SimulatePrincipalPolicy, so the simulator is botocore's Stubber: each answer is
validated against botocore's IAM model (the documented shapes) and each call's parameters are
checked exactly. Discovery (ECS, Batch, Lambda), the secret, its resource policy (GetResourcePolicy)
and the KMS key and key policy (DescribeKey, GetKeyPolicy) are moto, except the KMS errors, which
are stubbed too.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from rotation.tools.access import key_policy_grants
from rotation.tools.cli import build_parser
from rotation.tools.consumers import ConsumersReport, table_lines
from rotation.tools.policy import policy_for
from tests.conftest import LeakScan
from tests.docs.test_docs import check_aws
from tests.functional.test_consumers import (
    COPILOT,
    PASSWORD,
    REGION,
    batch_job,
    ecs_service,
    lambda_function,
    make_aws,
    only,
    report_for,
)

READ = "secretsmanager:GetSecretValue"
DECRYPT = "kms:Decrypt"
VIA = f"secretsmanager.{REGION}.amazonaws.com"


def statement(policy_type: str, policy_id: str, line: int) -> dict[str, Any]:
    """A MatchedStatements entry (botocore's shape `Statement`)."""
    return {"SourcePolicyId": policy_id, "SourcePolicyType": policy_type,
            "StartPosition": {"Line": line, "Column": 9},
            "EndPosition": {"Line": line + 6, "Column": 10}}


def simulated(action: str, resource: str, decision: str, *,
              matched: Sequence[dict[str, Any]] = (),
              missing: Sequence[str] = ()) -> dict[str, Any]:
    """A SimulatePrincipalPolicy answer for one action on one resource (`SimulatePolicyResponse`):
    the top-level result holds the ARN template, the resource-specific one the ARN."""
    template = ("arn:${Partition}:secretsmanager:${Region}:${Account}:secret:${SecretId}"
                if action == READ else "arn:${Partition}:kms:${Region}:${Account}:key/${KeyId}")
    return {"EvaluationResults": [{
        "EvalActionName": action, "EvalResourceName": template, "EvalDecision": decision,
        "MatchedStatements": list(matched), "MissingContextValues": list(missing),
        "EvalDecisionDetails": {},
        "ResourceSpecificResults": [{
            "EvalResourceName": resource, "EvalResourceDecision": decision,
            "MatchedStatements": list(matched), "MissingContextValues": list(missing),
            "EvalDecisionDetails": {}}]}],
        "IsTruncated": False}


def read_params(aws: dict[str, Any], *, role: str = "", policy: str = "",
                tags: dict[str, str] | None = None) -> dict[str, Any]:
    """The parameters a GetSecretValue simulation must be called with."""
    role = role or aws["role"]
    params: dict[str, Any] = {"PolicySourceArn": role, "ActionNames": [READ],
                              "ResourceArns": [aws["arn"]]}
    if tags:
        params["ContextEntries"] = [
            {"ContextKeyName": f"{prefix}{k}", "ContextKeyValues": [v], "ContextKeyType": "string"}
            for k, v in sorted(tags.items())
            for prefix in ("secretsmanager:ResourceTag/", "aws:ResourceTag/")]
    if policy:
        params.update(ResourcePolicy=policy, CallerArn=role)
    return params


def decrypt_params(aws: dict[str, Any], key_arn: str, key_policy: str) -> dict[str, Any]:
    return {"PolicySourceArn": aws["role"], "ActionNames": [DECRYPT], "ResourceArns": [key_arn],
            "ResourcePolicy": key_policy, "CallerArn": aws["role"],
            "ContextEntries": [
                {"ContextKeyName": name, "ContextKeyValues": [value], "ContextKeyType": "string"}
                for name, value in (("kms:ViaService", VIA), ("kms:CallerAccount", "123456789012"),
                                    ("kms:EncryptionContext:SecretARN", aws["arn"]))]}


class Simulator:
    """IAM with SimulatePrincipalPolicy stubbed (answers in call order)."""

    def __init__(self) -> None:
        self.client = boto3.client("iam", region_name=REGION)
        self.stub = Stubber(self.client)

    def answer(self, params: dict[str, Any], decision: str, *,
               matched: Sequence[dict[str, Any]] = (), missing: Sequence[str] = ()) -> None:
        response = simulated(params["ActionNames"][0], params["ResourceArns"][0], decision,
                             matched=matched, missing=missing)
        self.stub.add_response("simulate_principal_policy", response, params)

    def refuse(self, code: str, params: dict[str, Any] | None = None, status: int = 403) -> None:
        self.stub.add_client_error("simulate_principal_policy", service_error_code=code,
                                   service_message=f"{code} (stubbed)", http_status_code=status,
                                   expected_params=params)


@pytest.fixture
def aws(sm: Any) -> dict[str, Any]:
    return make_aws(sm)


@pytest.fixture
def iam() -> Iterator[Simulator]:
    sim = Simulator()
    with sim.stub:
        yield sim
    sim.stub.assert_no_pending_responses()


def customer_key(aws: dict[str, Any], policy: dict[str, Any] | None = None) -> tuple[str, str]:
    """A customer managed key (moto) encrypting the secret: (key ARN, its key policy text)."""
    key_arn = aws["kms"].create_key(Description="app secrets")["KeyMetadata"]["Arn"]
    if policy is not None:
        aws["kms"].put_key_policy(KeyId=key_arn, PolicyName="default", Policy=json.dumps(policy))
    aws["sm"].update_secret(SecretId=aws["arn"], KmsKeyId=key_arn)
    text = aws["kms"].get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"]
    return key_arn, text


def check_fix_commands(fix: str) -> None:
    """A fix's commands are real: `rotation` ones parse with the CLI's parser, `aws` ones pass
    botocore's model (the docs test's checker)."""
    for command in fix.split(" && "):
        argv = shlex.split(command.split(" > ", 1)[0])
        if argv[0] == "rotation":
            build_parser().parse_args(argv[1:])
        else:
            check_aws(argv)


ROLE_POLICY = statement("role", "read-app-db", 4)


# -- GetSecretValue ------------------------------------------------------------------------------

@pytest.mark.parametrize(("consumer", "kind"), [
    ("ecs secrets", "ecs-execution"),
    ("ecs repositoryCredentials", "ecs-execution"),
    ("batch secrets", "batch"),
    ("batch repositoryCredentials", "batch"),
    ("lambda", "lambda"),
])
def test_a_role_without_get_secret_value_fails_with_the_policy_to_attach(
        aws: dict[str, Any], iam: Simulator, consumer: str, kind: str) -> None:
    # GIVEN a consumer whose reading role no policy allows GetSecretValue on the secret
    make = {"ecs secrets": lambda: ecs_service(aws, secrets=[aws["arn"]]),
            "ecs repositoryCredentials": lambda: ecs_service(aws, repo=aws["arn"]),
            "batch secrets": lambda: batch_job(aws, secrets=[aws["arn"]]),
            "batch repositoryCredentials": lambda: batch_job(aws, repo=aws["arn"]),
            "lambda": lambda: lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})}
    make[consumer]()
    iam.answer(read_params(aws), "implicitDeny")

    # WHEN its consumers are looked for with IAM's simulator
    consumer_ = only(report_for(aws, iam=iam.client, kms=aws["kms"]))

    # THEN it fails: denied, why, and the exact command that makes and attaches the policy
    assert (consumer_.status, consumer_.permissions) == ("fail", "DENIED")
    read, decrypt = consumer_.access
    assert (read.action, read.decision, decrypt.decision) == (READ, "implicitDeny", "not needed")
    assert read.decided_by == ["no statement in the role's policies allows it"]
    assert read.fix == (f"rotation policy {aws['arn']} --for {kind} > policy.json && aws iam "
                        "put-role-policy --role-name app-role --policy-name read-prod-app-db "
                        "--policy-document file://policy.json")
    assert read.fix in consumer_.fixes
    check_fix_commands(read.fix)


def test_an_allowed_role_with_the_aws_managed_key_passes(aws: dict[str, Any],
                                                         iam: Simulator) -> None:
    # GIVEN a Lambda function whose role's inline policy allows GetSecretValue
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), "allowed", matched=[ROLE_POLICY])

    # WHEN / THEN it passes; the AWS managed key needs no statement (no KMS simulation)
    report = report_for(aws, iam=iam.client, kms=aws["kms"])
    consumer = only(report)
    assert (consumer.status, consumer.permissions, consumer.problems) == ("ok", "allowed", [])
    assert [(a.action, a.decision) for a in consumer.access] == [(READ, "allowed"),
                                                                 (DECRYPT, "not needed")]
    assert (report.failed, report.incomplete, report.permissions) == (False, False, "checked")


def test_roles_are_simulated_once_per_action(aws: dict[str, Any], iam: Simulator) -> None:
    # GIVEN two functions with the same role, and one simulator answer
    lambda_function(aws, "reader-a", {"SECRET_ID": aws["arn"]})
    lambda_function(aws, "reader-b", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), "allowed", matched=[ROLE_POLICY])

    # WHEN / THEN both get the verdict (the fixture checks no answer is left over)
    report = report_for(aws, iam=iam.client, kms=aws["kms"])
    assert [c.permissions for c in report.consumers] == ["allowed", "allowed"]


def test_a_role_that_does_not_exist_fails(aws: dict[str, Any], iam: Simulator) -> None:
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.refuse("NoSuchEntity", read_params(aws), status=404)
    consumer = only(report_for(aws, iam=iam.client, kms=aws["kms"]))
    assert (consumer.status, consumer.permissions) == ("fail", "DENIED")
    assert consumer.access[0].decided_by == [f"role {aws['role']} does not exist"]


# -- the secret's resource policy ----------------------------------------------------------------

def deny_policy(aws: dict[str, Any], condition: dict[str, Any] | None = None) -> str:
    deny: dict[str, Any] = {"Sid": "NotTheApp", "Effect": "Deny",
                            "Principal": {"AWS": aws["role"]},
                            "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
    if condition:
        deny["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [deny]}, indent=2)


def test_an_explicit_deny_in_the_resource_policy_fails(aws: dict[str, Any],
                                                       iam: Simulator) -> None:
    # GIVEN a secret whose resource policy denies the role, and an ECS service reading it
    aws["sm"].put_resource_policy(SecretId=aws["arn"], ResourcePolicy=deny_policy(aws))
    ecs_service(aws, secrets=[aws["arn"]])
    policy = aws["sm"].get_resource_policy(SecretId=aws["arn"])["ResourcePolicy"]
    iam.answer(read_params(aws, policy=policy), "explicitDeny",
               matched=[statement("resource", "ResourcePolicy", 3)])

    # WHEN the role is simulated with the resource policy (ResourcePolicy, CallerArn = the role)
    consumer = only(report_for(aws, iam=iam.client, kms=aws["kms"]))

    # THEN it fails, names the statement that decided, and says where to change it
    assert (consumer.status, consumer.permissions) == ("fail", "DENIED")
    assert f"{READ}: explicitDeny: the secret's resource policy (line 3)" in consumer.problems
    fix = consumer.access[0].fix
    assert fix.startswith("remove or narrow the Deny statement in the secret's resource policy")
    assert f"(aws secretsmanager get-resource-policy --secret-id {aws['arn']})" in fix


def test_an_explicit_deny_that_depends_on_unknown_context_could_not_be_checked(
        aws: dict[str, Any], iam: Simulator) -> None:
    # GIVEN a resource policy denying calls from outside a VPC: the simulator, without the
    # call's aws:SourceVpc, applies the Deny and says the key was missing
    aws["sm"].put_resource_policy(SecretId=aws["arn"], ResourcePolicy=deny_policy(
        aws, {"StringNotEquals": {"aws:SourceVpc": "vpc-0123"}}))
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    policy = aws["sm"].get_resource_policy(SecretId=aws["arn"])["ResourcePolicy"]
    iam.answer(read_params(aws, policy=policy), "explicitDeny",
               matched=[statement("resource", "ResourcePolicy", 3)], missing=["aws:SourceVpc"])

    # WHEN / THEN no false failure: could not check, naming the key and the statement
    report = report_for(aws, iam=iam.client, kms=aws["kms"])
    read = only(report).access[0]
    assert read.decision == "could not check"
    assert read.why == ("the policies depend on aws:SourceVpc, which this check cannot know (an "
                        "explicit Deny in the secret's resource policy (line 3) applies without "
                        "them): verify it where the consumer runs")
    assert (report.failed, report.incomplete) == (False, True)


@pytest.mark.parametrize(("decision", "verdict"), [
    ("allowed", "could not check"),  # the unread policy may deny
    ("explicitDeny", "explicitDeny"),  # the role's own Deny settles it
])
def test_an_unreadable_resource_policy(aws: dict[str, Any], iam: Simulator,
                                       monkeypatch: pytest.MonkeyPatch, decision: str,
                                       verdict: str) -> None:
    # GIVEN a caller refused GetResourcePolicy: the role's own policies are simulated alone
    from botocore.exceptions import ClientError

    def refused(**_: Any) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                          "GetResourcePolicy")

    monkeypatch.setattr(aws["sm"], "get_resource_policy", refused)
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), decision, matched=[ROLE_POLICY])

    # WHEN / THEN only an explicit Deny is a verdict; otherwise the reason is given
    read = only(report_for(aws, iam=iam.client, kms=aws["kms"])).access[0]
    assert read.decision == verdict
    if verdict == "could not check":
        assert read.why == ("cannot read the secret's resource policy with your credentials "
                            "(AccessDeniedException on secretsmanager:GetResourcePolicy): it "
                            "may deny or allow the role")


def test_an_explicit_deny_in_a_role_policy_names_it(aws: dict[str, Any], iam: Simulator) -> None:
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), "explicitDeny",
               matched=[statement("user-managed",
                                  "arn:aws:iam::123456789012:policy/no-prod-secrets", 5)])
    consumer = only(report_for(aws, iam=iam.client, kms=aws["kms"]))
    assert consumer.access[0].decided_by == [
        "user-managed policy arn:aws:iam::123456789012:policy/no-prod-secrets (line 5)"]
    assert consumer.access[0].fix.startswith("remove or narrow the Deny statement in "
                                             "user-managed policy")


@pytest.mark.parametrize(("with_deny", "decision", "status"), [
    (True, "could not check", "warn"),
    (False, "allowed", "ok"),
])
def test_a_simulator_that_refuses_the_resource_policy_for_a_role(
        aws: dict[str, Any], iam: Simulator, with_deny: bool, decision: str,
        status: str) -> None:
    # GIVEN a resource policy (with or without a Deny) the simulator refuses for a role
    document = deny_policy(aws) if with_deny else json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": aws["role"]}, "Action": READ,
             "Resource": "*"}]})
    aws["sm"].put_resource_policy(SecretId=aws["arn"], ResourcePolicy=document)
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    policy = aws["sm"].get_resource_policy(SecretId=aws["arn"])["ResourcePolicy"]
    iam.refuse("InvalidInput", read_params(aws, policy=policy), status=400)
    iam.answer(read_params(aws), "allowed", matched=[ROLE_POLICY])

    # WHEN / THEN the role's own policies are simulated; a Deny left unevaluated is no pass
    report = report_for(aws, iam=iam.client, kms=aws["kms"])
    consumer = only(report)
    assert (consumer.access[0].decision, consumer.status) == (decision, status)
    assert report.incomplete is with_deny
    assert not report.failed
    if with_deny:
        assert "took no resource policy for a role" in consumer.access[0].why


# -- KMS -----------------------------------------------------------------------------------------

def test_a_role_without_kms_decrypt_on_the_customer_key_fails(aws: dict[str, Any],
                                                              iam: Simulator) -> None:
    # GIVEN a secret under a customer managed key whose policy lets IAM decide (KMS's default),
    # and a function whose role may read the secret but not decrypt
    key_arn, key_policy = customer_key(aws)
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), "allowed", matched=[ROLE_POLICY])
    iam.answer(decrypt_params(aws, key_arn, key_policy), "implicitDeny")

    # WHEN kms:Decrypt is simulated as Secrets Manager calls it (kms:ViaService, the key policy)
    consumer = only(report_for(aws, iam=iam.client, kms=aws["kms"]))

    # THEN it fails, and the fix is `rotation policy`, whose output allows exactly that
    decrypt = consumer.access[1]
    assert (consumer.status, decrypt.action, decrypt.resource, decrypt.decision) == (
        "fail", DECRYPT, key_arn, "implicitDeny")
    assert decrypt.decided_by == ["no statement in the role's policies allows it through "
                                  "Secrets Manager"]
    assert decrypt.fix.startswith(f"rotation policy {aws['arn']} --for lambda > policy.json")
    document = policy_for(aws["arn"], "lambda", secrets_client=aws["sm"],
                          kms_client=aws["kms"])
    assert {"Sid": "DecryptSecretThroughSecretsManager", "Effect": "Allow",
            "Action": DECRYPT, "Resource": key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": VIA}}} in document["Statement"]


def admin_only(aws: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "KeyAdmins", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::123456789012:role/key-admin"},
         "Action": ["kms:Describe*", "kms:Put*", "kms:Get*"], "Resource": "*"}]}


def test_a_key_policy_that_does_not_let_the_role_decrypt_fails(aws: dict[str, Any],
                                                               iam: Simulator) -> None:
    # GIVEN a customer key whose policy neither delegates to IAM nor names the role
    key_arn, _ = customer_key(aws, admin_only(aws))
    ecs_service(aws, secrets=[aws["arn"]])
    iam.answer(read_params(aws), "allowed", matched=[ROLE_POLICY])  # no kms:Decrypt simulation

    # WHEN its consumers are looked for
    consumer = only(report_for(aws, iam=iam.client, kms=aws["kms"]))

    # THEN it fails whatever IAM says, and the fix is the key-policy statement to add
    decrypt = consumer.access[1]
    assert (consumer.status, decrypt.decision) == ("fail", "implicitDeny")
    assert "nor the account (AWS's \"Enable IAM User Permissions\" statement)" in \
        decrypt.decided_by[0]
    assert decrypt.why == "unless a KMS grant allows it (grants are not checked)"
    added = json.loads(decrypt.fix.split(" the statement ", 1)[1])
    assert added == {"Sid": "DecryptSecretThroughSecretsManager", "Effect": "Allow",
                     "Principal": {"AWS": aws["role"]}, "Action": DECRYPT, "Resource": "*",
                     "Condition": {"StringEquals": {"kms:ViaService": VIA}}}
    assert decrypt.fix.startswith(f"add to the key policy of {key_arn} (aws kms get-key-policy "
                                  f"--key-id {key_arn} --policy-name default")


def test_a_key_policy_naming_the_role_is_simulated(aws: dict[str, Any], iam: Simulator) -> None:
    # GIVEN a key policy with a statement for the role itself
    policy = admin_only(aws)
    policy["Statement"].append({"Sid": "App", "Effect": "Allow",
                                "Principal": {"AWS": [aws["role"]]},
                                "Action": "kms:Decrypt", "Resource": "*"})
    key_arn, key_policy = customer_key(aws, policy)
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), "allowed", matched=[ROLE_POLICY])
    iam.answer(decrypt_params(aws, key_arn, key_policy), "allowed",
               matched=[statement("resource", "KeyPolicy", 12)])

    # WHEN / THEN the simulator, given the key policy, decides: allowed
    consumer = only(report_for(aws, iam=iam.client, kms=aws["kms"]))
    assert (consumer.status, consumer.permissions) == ("ok", "allowed")


@pytest.mark.parametrize(("deny", "decision"), [
    (False, "allowed"),  # the key policy allows the role itself
    (True, "could not check"),  # its Deny was not evaluated
])
def test_a_simulator_that_refuses_the_key_policy_for_a_role(
        aws: dict[str, Any], iam: Simulator, deny: bool, decision: str) -> None:
    # GIVEN a key policy naming the role, which the simulator refuses to take for a role
    policy = admin_only(aws)
    policy["Statement"].append({"Sid": "App", "Effect": "Allow", "Principal": {"AWS": aws["role"]},
                                "Action": "kms:Decrypt", "Resource": "*"})
    if deny:
        policy["Statement"].append({"Sid": "NoExport", "Effect": "Deny", "Principal": "*",
                                    "Action": "kms:Decrypt", "Resource": "*",
                                    "Condition": {"Bool": {"aws:ViaAWSService": "false"}}})
    key_arn, key_policy = customer_key(aws, policy)
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), "allowed", matched=[ROLE_POLICY])
    iam.refuse("InvalidInput", decrypt_params(aws, key_arn, key_policy), status=400)
    without = {k: v for k, v in decrypt_params(aws, key_arn, key_policy).items()
               if k not in ("ResourcePolicy", "CallerArn")}
    iam.answer(without, "implicitDeny")

    # WHEN / THEN the key policy's own statement decides, unless a Deny was left unevaluated
    decrypt = only(report_for(aws, iam=iam.client, kms=aws["kms"])).access[1]
    assert decrypt.decision == decision


@pytest.mark.parametrize(("policy", "grants"), [
    ({"Statement": {"Effect": "Allow", "Principal": {"AWS": "123456789012"},
                    "Action": "kms:*"}}, {"iam"}),
    ({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt"}]}, {"role"}),
    ({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                     "Action": "kms:Encrypt"}]}, set()),
    ({"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": "x"},
                     "Action": "kms:*"}]}, set()),
    ({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kms:*"}]}, set()),
])
def test_key_policy_grants(policy: dict[str, Any], grants: set[str]) -> None:
    role = "arn:aws:iam::123456789012:role/app-role"
    assert key_policy_grants(policy, role, "123456789012", "aws") == grants


def test_a_key_in_another_account_could_not_be_checked(aws: dict[str, Any],
                                                       iam: Simulator) -> None:
    # GIVEN a secret under a key of another account
    foreign = "arn:aws:kms:us-east-1:999999999999:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    aws["sm"].update_secret(SecretId=aws["arn"], KmsKeyId=foreign)
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), "allowed", matched=[ROLE_POLICY])

    # WHEN / THEN decrypting could not be checked: said why, incomplete, not failed, no pass
    report = report_for(aws, iam=iam.client, kms=aws["kms"])
    consumer = only(report)
    decrypt = consumer.access[1]
    assert (decrypt.decision, consumer.permissions) == ("could not check", "could not check")
    assert decrypt.why.startswith(f"key {foreign} belongs to account 999999999999")
    assert (report.incomplete, report.failed, consumer.status) == (True, False, "warn")


def test_an_unreadable_key_policy_could_not_be_checked(aws: dict[str, Any],
                                                       iam: Simulator) -> None:
    # GIVEN a customer key whose policy the caller may not read
    key_arn, _ = customer_key(aws)
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), "allowed", matched=[ROLE_POLICY])
    kms = boto3.client("kms", region_name=REGION)
    with Stubber(kms) as stub:
        stub.add_response("describe_key", {"KeyMetadata": {
            "KeyId": key_arn.rsplit("/", 1)[1], "Arn": key_arn, "AWSAccountId": "123456789012",
            "KeyManager": "CUSTOMER"}}, {"KeyId": key_arn})
        stub.add_client_error("get_key_policy", service_error_code="AccessDeniedException",
                              http_status_code=400,
                              expected_params={"KeyId": key_arn, "PolicyName": "default"})
        # WHEN its consumers are looked for
        report = report_for(aws, iam=iam.client, kms=kms)
        stub.assert_no_pending_responses()

    # THEN: could not check, and what the caller needs
    decrypt = only(report).access[1]
    assert decrypt.decision == "could not check"
    assert "(AccessDeniedException; needs kms:DescribeKey and kms:GetKeyPolicy)" in decrypt.why
    assert (report.incomplete, report.failed) == (True, False)


# -- Copilot -------------------------------------------------------------------------------------

def test_copilot_execution_role_and_an_untagged_secret(aws: dict[str, Any],
                                                       iam: Simulator) -> None:
    # GIVEN a Copilot service, whose execution role reads only secrets with its tags, and an
    # untagged secret: the simulator reports the tag conditions it had no value for
    ecs_service(aws, secrets=[aws["arn"]], tags=COPILOT)
    iam.answer(read_params(aws), "implicitDeny",
               missing=[f"secretsmanager:ResourceTag/{k}" for k in COPILOT])

    # WHEN its consumers are looked for
    consumer = only(report_for(aws, iam=iam.client, kms=aws["kms"]))

    # THEN it fails: the missing tags are a real "no" (not "could not check"), and the one fix
    # is Copilot's exact tag command
    assert (consumer.status, consumer.copilot, consumer.permissions) == (
        "fail", "tags mismatch", "DENIED")
    assert not consumer.incomplete
    assert any("the secret lacks: copilot-application, copilot-environment" in p
               for p in consumer.problems)
    assert [f for f in consumer.fixes if "tag-resource" in f] == [
        f"aws secretsmanager tag-resource --secret-id {aws['arn']} --tags "
        "Key=copilot-application,Value=shop Key=copilot-environment,Value=prod"]


def test_copilot_execution_role_and_a_tagged_secret(aws: dict[str, Any], iam: Simulator) -> None:
    # GIVEN the secret carries the service's Copilot tags: the simulator gets them as context
    aws["sm"].tag_resource(SecretId=aws["arn"],
                           Tags=[{"Key": k, "Value": v} for k, v in COPILOT.items()])
    ecs_service(aws, secrets=[aws["arn"]], tags=COPILOT)
    iam.answer(read_params(aws, tags=COPILOT), "allowed",
               matched=[statement("role", "copilot-secrets", 2)])

    # WHEN / THEN allowed; only the roll-out warning remains
    consumer = only(report_for(aws, iam=iam.client, kms=aws["kms"]))
    assert (consumer.status, consumer.copilot, consumer.permissions) == ("warn", "ok", "allowed")


# -- checks that cannot run ----------------------------------------------------------------------

def test_a_caller_without_simulate_principal_policy_is_incomplete_not_failed(
        aws: dict[str, Any], iam: Simulator) -> None:
    # GIVEN two consumers with different roles, and a caller refused the simulator
    other = aws["iam"].create_role(RoleName="worker-role",
                                   AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ecs_service(aws, secrets=[aws["arn"]])
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    aws["lambda"].update_function_configuration(FunctionName="reader", Role=other)
    iam.refuse("AccessDenied")  # once: the second role is not asked again

    # WHEN its consumers are looked for
    report = report_for(aws, iam=iam.client, kms=aws["kms"])

    # THEN nothing is called denied; the report is incomplete and says what the caller lacks
    assert (report.failed, report.incomplete) == (False, True)
    for consumer in report.consumers:
        assert (consumer.permissions, consumer.incomplete) == ("could not check", True)
        assert consumer.access[0].why == ("your credentials may not call "
                                          "iam:SimulatePrincipalPolicy (AccessDenied): allow it "
                                          "to check the consumers' roles")
    assert table_lines(report)[-1] == "incomplete: some checks could not run (see above)"


def test_a_role_in_another_account_could_not_be_checked(aws: dict[str, Any],
                                                        iam: Simulator) -> None:
    # GIVEN a task definition whose execution role is in another account (no simulator call)
    foreign = "arn:aws:iam::999999999999:role/shared-execution"
    td = aws["ecs"].register_task_definition(
        family="web", executionRoleArn=foreign,
        containerDefinitions=[{"name": "app", "image": "app:1", "memory": 128,
                               "secrets": [{"name": "DB", "valueFrom": aws["arn"]}]}])
    aws["ecs"].create_service(cluster="prod", serviceName="web", desiredCount=0,
                              taskDefinition=td["taskDefinition"]["taskDefinitionArn"])

    # WHEN / THEN: could not check, and where to run the check
    report = report_for(aws, iam=iam.client, kms=aws["kms"])
    read, decrypt = only(report).access
    assert read.decision == "could not check"
    assert read.why.startswith(f"role {foreign} is in account 999999999999")
    assert decrypt.decision == "not needed"  # the AWS managed key
    assert (report.failed, report.incomplete) == (False, True)


def test_throttling_is_incomplete(aws: dict[str, Any], iam: Simulator) -> None:
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.refuse("Throttling", read_params(aws), status=400)
    report = report_for(aws, iam=iam.client, kms=aws["kms"])
    assert only(report).access[0].why == "IAM's simulator answered Throttling: run again later"
    assert (report.failed, report.incomplete) == (False, True)


def test_policies_that_depend_on_unknown_context_could_not_be_checked(
        aws: dict[str, Any], iam: Simulator) -> None:
    # GIVEN a role policy conditioned on the network the call comes from
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), "implicitDeny", missing=["aws:SourceVpce"])

    # WHEN / THEN no verdict is invented: could not check, with the key named
    consumer = only(report_for(aws, iam=iam.client, kms=aws["kms"]))
    assert consumer.access[0].decision == "could not check"
    assert consumer.access[0].why.startswith("the policies depend on aws:SourceVpce")
    assert consumer.status == "warn"


def test_without_iam_permissions_are_not_checked(aws: dict[str, Any]) -> None:
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    report = report_for(aws)
    consumer = only(report)
    assert (consumer.permissions, consumer.access, report.incomplete) == ("not checked", [],
                                                                          False)
    assert "permissions: not checked: no IAM client" in table_lines(report)


# -- what is shown -------------------------------------------------------------------------------

def test_the_table_fits_120_columns_and_the_json_carries_each_verdict(
        aws: dict[str, Any], iam: Simulator, leak_scan: LeakScan) -> None:
    # GIVEN an ECS service, a Batch job and a Lambda function, each with a different verdict
    key_arn, key_policy = customer_key(aws)
    ecs_service(aws, secrets=[aws["arn"] + ":password::"], name="web")
    batch_job(aws, repo=aws["arn"])
    lambda_function(aws, "reader", {"SECRET_ID": aws["arn"]})
    iam.answer(read_params(aws), "allowed", matched=[ROLE_POLICY])
    iam.answer(decrypt_params(aws, key_arn, key_policy), "implicitDeny")

    # WHEN the report is shown
    report: ConsumersReport = report_for(aws, iam=iam.client, kms=aws["kms"])
    lines = table_lines(report)
    document = json.dumps(report.to_dict())
    leak_scan.add_text("\n".join(lines) + document)

    # THEN the header and rows fit 120 columns; the details follow each row
    rows = [line for line in lines[1:] if line.startswith(("STATUS", "ok", "WARN", "FAIL"))]
    assert len(rows) == 4
    assert max(len(line) for line in rows) <= 120, rows
    assert rows[0].split() == ["STATUS", "CONSUMER", "WHERE", "FORM", "GET", "SECRET",
                               "DECRYPT", "ON", "ROTATION"]
    assert all(re.search(r" allowed +DENIED ", row) for row in rows[1:]), rows
    assert f"    read by execution role {aws['role']}" in lines
    # one role, one key: the same verdicts for all three, simulated once
    data = json.loads(document)
    assert data["incomplete"] is False
    assert data["failed"] is True
    assert {(a["action"], a["decision"]) for c in data["consumers"] for a in c["access"]} == {
        (READ, "allowed"), (DECRYPT, "implicitDeny")}
    assert PASSWORD not in document + "\n".join(lines)
