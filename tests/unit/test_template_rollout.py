"""template.yaml's roll-out part (RolloutEcsServices): resources only under HasRollout, the
function's role, event rule and build, the Rule refusing single-user, and cfn-lint.

The parameter values are worked out with tests/unit/test_template.py's small CloudFormation
interpreter (conditions, rules, Fn::If, Ref/Join/Split/Select)."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Any

import pytest

from rotation import rollout
from tests.unit.test_template import (
    MASTER_ARN,
    ROOT,
    SECRET_ARN,
    TEMPLATE,
    deployed,
    failed_rules,
    findings,
    parameter_set,
    parameter_values,
    value_of,
    with_defaults,
)

SERVICES = "prod/web,batch/reports"
ALARM_TOPIC = "arn:aws:sns:us-east-1:123456789012:oncall"
ROLLOUT_RESOURCES = {"RolloutFunction", "RolloutFunctionRole", "RolloutFunctionLogGroup"}
RULE = "RolloutNeedsTwoValidCredentials"
WILDCARD_SECRET = SECRET_ARN[: -len("-AbCdEf")] + "-??????"
#: a parameter set the roll-out goes with (dual passwords on MySQL)
BASE = {"Engine": "mysql", "RotationStrategy": "dual-password",
        "SecretArns": f"{SECRET_ARN},{WILDCARD_SECRET}"}


def rollout_stack(**overrides: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The resources a stack with the roll-out would have, and the parameter values."""
    values = {**BASE, "RolloutEcsServices": SERVICES, **overrides}
    return deployed(**values)["Resources"], parameter_values(TEMPLATE, **values)


def role_statements(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    role = resources["RolloutFunctionRole"]["Properties"]
    return {s["Sid"]: s for policy in role["Policies"]
            for s in policy["PolicyDocument"]["Statement"]}


@pytest.mark.parametrize(("services", "present"), [("", False), (SERVICES, True),
                                                   ("prod/web", True)])
def test_rollout_resources_exist_only_with_services(services: str, present: bool) -> None:
    # GIVEN RolloutEcsServices empty (the default) or set
    result = deployed(**{**BASE, "RolloutEcsServices": services})

    # WHEN the stack is worked out
    names = set(result["Resources"])

    # THEN the function, its role and its log group exist exactly when services are listed
    assert TEMPLATE["Parameters"]["RolloutEcsServices"]["Default"] == ""
    assert result["Conditions"]["HasRollout"] is present
    assert ROLLOUT_RESOURCES & names == (ROLLOUT_RESOURCES if present else set())
    assert all(TEMPLATE["Resources"][name]["Condition"] == "HasRollout"
               for name in ROLLOUT_RESOURCES)


def test_the_role_may_redeploy_the_listed_services_and_describe_the_secrets_only() -> None:
    # GIVEN a stack with two services
    resources, values = rollout_stack()

    # WHEN its role's statements are read
    granted = role_statements(resources)
    role = resources["RolloutFunctionRole"]["Properties"]
    ecs = granted["RedeployListedServices"]
    arns = value_of(ecs["Resource"], values)

    # THEN: the two ECS calls on the two services (in the stack's region), DescribeSecret on
    # the rotated secrets, its own logs; nothing else, no managed policy
    assert set(granted) == {"RedeployListedServices", "DescribeListedSecrets", "WriteOwnLogs"}
    assert sorted(ecs["Action"]) == ["ecs:DescribeServices", "ecs:UpdateService"]
    assert arns == ["arn:*:ecs:*:*:service/prod/web", "arn:*:ecs:*:*:service/batch/reports"]
    assert ecs["Condition"] == {"StringEquals": {"aws:RequestedRegion": {"Ref": "AWS::Region"}}}
    assert granted["DescribeListedSecrets"]["Action"] == "secretsmanager:DescribeSecret"
    assert granted["DescribeListedSecrets"]["Resource"] == {"Ref": "SecretArns"}
    assert sorted(granted["WriteOwnLogs"]["Action"]) == ["logs:CreateLogStream",
                                                         "logs:PutLogEvents"]
    assert granted["WriteOwnLogs"]["Resource"] == {
        "Fn::GetAtt": ["RolloutFunctionLogGroup", "Arn"]}
    assert "ManagedPolicyArns" not in role
    assert all(s["Effect"] == "Allow" for s in granted.values())


@pytest.mark.parametrize(("service_arn", "allowed"), [
    ("arn:aws:ecs:us-east-1:123456789012:service/prod/web", True),
    ("arn:aws:ecs:us-east-1:123456789012:service/batch/reports", True),
    ("arn:aws:ecs:us-east-1:123456789012:service/prod/admin", False),
    ("arn:aws:ecs:us-east-1:123456789012:service/prod/web2", False),
    ("arn:aws:ecs:us-east-1:123456789012:service/staging/web", False),
    ("arn:aws:ecs:us-east-1:123456789012:cluster/prod", False),
])
def test_the_service_arns_name_the_listed_services_and_no_other(service_arn: str,
                                                                allowed: bool) -> None:
    # GIVEN the role's ECS resources (IAM wildcards) for prod/web and batch/reports
    resources, values = rollout_stack()
    patterns = value_of(role_statements(resources)["RedeployListedServices"]["Resource"], values)

    # WHEN an ECS ARN is matched against them as IAM does ("*" any characters)
    matched = any(fnmatchcase(service_arn, pattern) for pattern in patterns)

    # THEN only the listed services' ARNs match
    assert matched is allowed


def test_the_function_runs_the_rollout_module_with_its_settings() -> None:
    # GIVEN the roll-out function in a stack with two services
    resources, values = rollout_stack()
    function = resources["RolloutFunction"]
    properties = function["Properties"]
    variables = properties["Environment"]["Variables"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")

    # WHEN its code, settings and logs are read
    target = re.search(r"^build-RolloutFunction:\n((?:\t.*\n)+)", makefile, re.M)

    # THEN it is rotation.rollout from the rotation function's package (same make recipe), with
    # the services and the secrets the module reads, logging to its own group
    rotation_function = TEMPLATE["Resources"]["RotationFunction"]
    assert properties["Handler"] == "rotation.rollout.lambda_handler"
    assert properties["CodeUri"] == rotation_function["Properties"]["CodeUri"]
    assert function["Metadata"] == rotation_function["Metadata"]
    assert function["Metadata"]["BuildMethod"] == "makefile"
    assert target is not None
    assert "build-RotationFunction" in target.group(1)
    assert value_of(variables[rollout.SERVICES_ENV], values) == SERVICES
    assert value_of(variables[rollout.SECRETS_ENV], values) == f"{SECRET_ARN},{WILDCARD_SECRET}"
    assert properties["Role"] == {"Fn::GetAtt": ["RolloutFunctionRole", "Arn"]}
    assert properties["LoggingConfig"] == {"LogGroup": {"Ref": "RolloutFunctionLogGroup"}}
    log_group = resources["RolloutFunctionLogGroup"]["Properties"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert "VpcConfig" not in properties  # AWS APIs only
    assert "Layers" not in properties  # no database driver


def test_the_event_rule_matches_secrets_managers_rotation_succeeded() -> None:
    # GIVEN the function's events
    events = TEMPLATE["Resources"]["RolloutFunction"]["Properties"]["Events"]

    # WHEN read / THEN one EventBridge rule on the CloudTrail service event the module handles
    ((name, event),) = events.items()
    assert event["Type"] == "EventBridgeRule"
    assert event["Properties"]["Pattern"] == {
        "source": [rollout.EVENT_SOURCE],
        "detail-type": ["AWS Service Event via CloudTrail"],
        "detail": {"eventSource": ["secretsmanager.amazonaws.com"],
                   "eventName": [rollout.EVENT_NAME]},
    }
    assert name == rollout.EVENT_NAME


@pytest.mark.parametrize(("overrides", "refused"), [
    ({"Engine": "mysql", "RotationStrategy": "single-user"}, True),
    ({"Engine": "postgres", "RotationStrategy": "single-user"}, True),
    ({"Engine": "postgres", "RotationStrategy": "alternating-users",
      "masterSecretArn": MASTER_ARN}, False),
    ({"Engine": "mysql", "RotationStrategy": "dual-password"}, False),
    # the deprecated MysqlDualPassword=true is the dual-password strategy
    ({"Engine": "mysql", "RotationStrategy": "single-user", "MysqlDualPassword": "true"}, False),
    ({"Engine": "redis", "RotationStrategy": "dual-password"}, False),
])
def test_the_rule_refuses_a_rollout_with_single_user(overrides: dict[str, str],
                                                     refused: bool) -> None:
    # GIVEN a strategy with and without RolloutEcsServices
    with_services = {"SecretArns": SECRET_ARN, "RolloutEcsServices": SERVICES, **overrides}
    without = {"SecretArns": SECRET_ARN, **overrides}

    # WHEN the Rules section is evaluated
    # THEN only single-user with services is refused, by this rule alone
    assert failed_rules(**with_services) == ([RULE] if refused else [])
    assert failed_rules(**without) == []


def test_the_rule_says_why_and_what_to_use_instead() -> None:
    # GIVEN the rule's assertion text / WHEN read
    (assertion,) = TEMPLATE["Rules"][RULE]["Assertions"]
    text = assertion["AssertDescription"]

    # THEN it names the gap (setSecret) and the three ways out
    for words in ("setSecret", "alternating-users", "dual-password", "rotation.client"):
        assert words in text


def test_the_parameter_is_in_the_consumers_group() -> None:
    # GIVEN the console's parameter groups / WHEN read / THEN a Consumers group holds it
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    consumers = [g for g in groups if g["Label"]["default"] == "Consumers"]
    assert [g["Parameters"] for g in consumers] == [["RolloutEcsServices"]]


def test_a_stack_with_a_rollout_lints_clean() -> None:
    # GIVEN a copy of the template whose defaults list two services (dual passwords on MySQL,
    # with a wildcard secret ARN)
    values = {**parameter_set("mysql", "dual-password", False, 1), **BASE,
              "RolloutEcsServices": SERVICES}

    # WHEN cfn-lint checks it and the Rules are evaluated
    result = findings(with_defaults(**values))

    # THEN nothing is reported and CloudFormation would accept the parameters
    assert result == []
    assert failed_rules(**values) == []


@pytest.mark.parametrize(("topic", "services", "present"), [
    ("", SERVICES, False),
    (ALARM_TOPIC, "", False),
    (ALARM_TOPIC, SERVICES, True),
])
def test_a_failed_rollout_alarms_the_topic(topic: str, services: str, present: bool) -> None:
    # GIVEN AlarmTopicArn and RolloutEcsServices, each set or not
    resources = deployed(**{**BASE, "AlarmTopicArn": topic,
                            "RolloutEcsServices": services})["Resources"]

    # WHEN the stack is worked out
    alarm = resources.get("RolloutFunctionErrorsAlarm")

    # THEN the alarm exists exactly when both are set, on the roll-out function's Errors
    assert (alarm is not None) is present
    if alarm is not None:
        properties = alarm["Properties"]
        assert (properties["Namespace"], properties["MetricName"]) == ("AWS/Lambda", "Errors")
        assert properties["Dimensions"] == [{"Name": "FunctionName",
                                             "Value": {"Ref": "RolloutFunction"}}]
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopicArn"}]
        assert properties["Threshold"] == 1


def test_a_stack_with_a_rollout_and_alarms_lints_clean() -> None:
    # GIVEN a copy of the template with the roll-out and an alarm topic
    values = {**parameter_set("redis", "alternating-users", True, 2), "SecretArns": SECRET_ARN,
              "RolloutEcsServices": SERVICES, "AlarmTopicArn": ALARM_TOPIC}

    # WHEN cfn-lint checks it and the Rules are evaluated
    result = findings(with_defaults(**values))

    # THEN nothing is reported and CloudFormation would accept the parameters
    assert result == []
    assert failed_rules(**values) == []
