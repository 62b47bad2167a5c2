"""template.yaml on a first deploy: permissions boundary, an existing role, tags, one rotation
schedule per secret, the password-policy flags and their spellings, and the endpoint.

The condition interpreter and the helpers are test_template.py's, so both files read the
template the same way.
"""

from __future__ import annotations

import re
import string
from typing import Any

import pytest

from rotation.config import (
    DEFAULT_EXCLUDE_CHARACTERS,
    FALSE_SPELLINGS,
    TRUE_SPELLINGS,
    PasswordPolicy,
    Settings,
)
from rotation.password import character_classes
from tests.unit.test_template import (
    MASTER_ARN,
    SECRET_ARN,
    TEMPLATE,
    condition_values,
    deployed,
    failed_rules,
    findings,
    parameter_values,
    raw_statements,
    resolve,
    value_of,
    with_defaults,
)

ROLE_ARN = "arn:aws:iam::123456789012:role/platform/rotation-function"
BOUNDARY_ARN = "arn:aws:iam::123456789012:policy/DeveloperBoundary"
#: the spellings every boolean parameter accepts (AllowedValues), and what each one means
SPELLINGS = {"true": True, "True": True, "yes": True, "y": True, "1": True,
             "false": False, "False": False, "no": False, "n": False, "0": False}
SLOTS = 10
#: a stack that also deploys the roll-out function (and its role): its Rule wants two passwords
WITH_ROLLOUT = {"Engine": "mysql", "RotationStrategy": "dual-password",
                "RolloutEcsServices": "prod/web,prod/worker"}
INTRINSICS = {"Ref", "Fn::GetAtt", "Fn::Join", "Fn::Split", "Fn::Select"}


def secret_arns(count: int) -> list[str]:
    return [f"arn:aws:secretsmanager:us-east-1:123456789012:secret:app-{i}-AbC{i:03d}"
            for i in range(count)]


def output(name: str, **overrides: str) -> Any:
    """An output's value for these parameters (None: the output is not there)."""
    values = parameter_values(TEMPLATE, **overrides)
    conditions = condition_values(TEMPLATE, values)
    spec = TEMPLATE["Outputs"][name]
    if not conditions.get(spec.get("Condition", ""), True):
        return None
    return resolve(spec["Value"], conditions)


def schedules(**overrides: str) -> dict[str, dict[str, Any]]:
    """The RotationSchedule resources these parameters deploy, properties worked out."""
    values = parameter_values(TEMPLATE, **overrides)
    return {name: worked_out(r["Properties"], values)
            for name, r in deployed(**overrides)["Resources"].items()
            if r["Type"] == "AWS::SecretsManager::RotationSchedule"}


def worked_out(node: Any, values: dict[str, Any]) -> Any:
    """``value_of`` through nested properties (a resource's GetAtt is kept as it is)."""
    if isinstance(node, dict) and not (len(node) == 1 and next(iter(node)) in INTRINSICS):
        return {key: worked_out(item, values) for key, item in node.items()}
    return value_of(node, values)


def roles(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"}


def boolean_parameters() -> list[str]:
    return [name for name, spec in TEMPLATE["Parameters"].items()
            if "true" in spec.get("AllowedValues", [])]


# --- permissions boundary and an existing role ---


@pytest.mark.parametrize("boundary", ["", BOUNDARY_ARN], ids=["no-boundary", "boundary"])
@pytest.mark.parametrize("extra", [{}, WITH_ROLLOUT], ids=["rotation-only", "with-rollout"])
def test_every_role_the_stack_creates_gets_the_boundary(boundary: str,
                                                        extra: dict[str, str]) -> None:
    # GIVEN a stack with or without PermissionsBoundary (and with the roll-out function's role)
    values = {"SecretArns": SECRET_ARN, "PermissionsBoundary": boundary, **extra}
    # WHEN the roles it deploys are worked out
    created = roles(deployed(**values)["Resources"])
    # THEN every one carries the boundary exactly when it is given, and nothing else changes
    assert created
    assert ("RolloutFunctionRole" in created) is bool(extra)
    for name, role in created.items():
        assert role["Properties"].get("PermissionsBoundary") == (
            {"Ref": "PermissionsBoundary"} if boundary else None), name
    assert failed_rules(**values) == []


def test_no_function_lets_sam_generate_a_role_without_the_boundary() -> None:
    # GIVEN every SAM function of the template (SAM generates a role for one without Role)
    functions = {name: r for name, r in TEMPLATE["Resources"].items()
                 if r["Type"] == "AWS::Serverless::Function"}
    # WHEN their Role properties are read
    missing = [name for name, r in functions.items() if "Role" not in r["Properties"]]
    # THEN each names a role of the template (or ExistingRoleArn): no role escapes the boundary
    assert functions
    assert missing == []


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True),
    (BOUNDARY_ARN, True),
    ("arn:aws:iam::aws:policy/PowerUserAccess", True),
    ("arn:aws-us-gov:iam::123456789012:policy/path/Boundary", True),
    ("DeveloperBoundary", False),
    ("arn:aws:iam::123456789012:role/DeveloperBoundary", False),
    ("arn:aws:iam::12345:policy/DeveloperBoundary", False),
])
def test_permissions_boundary_pattern(value: str, accepted: bool) -> None:
    # GIVEN the parameter's AllowedPattern / WHEN a value is matched / THEN only policy ARNs pass
    pattern = TEMPLATE["Parameters"]["PermissionsBoundary"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is accepted


@pytest.mark.parametrize("existing", ["", ROLE_ARN], ids=["stack-role", "existing-role"])
def test_existing_role_replaces_the_function_role(existing: str) -> None:
    # GIVEN ExistingRoleArn empty or set
    values = {"SecretArns": SECRET_ARN, "ExistingRoleArn": existing,
              "PermissionsBoundary": BOUNDARY_ARN}
    # WHEN the stack and its outputs are worked out
    resources = deployed(**values)["Resources"]
    role = value_of(resources["RotationFunction"]["Properties"]["Role"],
                    parameter_values(TEMPLATE, **values))
    role_output = value_of(output("RotationFunctionRoleArn", **values),
                           parameter_values(TEMPLATE, **values))
    # THEN with a role given the stack creates none and the function and the output use it;
    # without, both use RotationFunctionRole
    assert ("RotationFunctionRole" in resources) is not existing
    if existing:
        assert role == role_output == ROLE_ARN
    else:
        assert role == {"Fn::GetAtt": ["RotationFunctionRole", "Arn"]}
        assert role_output == {"Fn::GetAtt": ["RotationFunctionRole", "Arn"]}
    assert failed_rules(**values) == []


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True),
    (ROLE_ARN, True),
    ("arn:aws-cn:iam::123456789012:role/rotation", True),
    ("rotation-role", False),
    ("arn:aws:iam::123456789012:policy/rotation", False),
    ("arn:aws:iam::123456789012:user/rotation", False),
])
def test_existing_role_pattern(value: str, accepted: bool) -> None:
    # GIVEN the parameter's AllowedPattern / WHEN a value is matched / THEN only role ARNs pass
    pattern = TEMPLATE["Parameters"]["ExistingRoleArn"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is accepted


def test_existing_role_description_lists_what_the_stack_role_grants() -> None:
    # GIVEN every action RotationFunctionRole grants on any branch, and the parameter's text
    description = " ".join(TEMPLATE["Parameters"]["ExistingRoleArn"]["Description"].split())
    granted = {a for s in raw_statements() for a in
               ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    # WHEN each is looked up (the EC2 ones by the managed policy that defines them)
    missing = sorted(a for a in granted if not a.startswith("ec2:")
                     and a.split(":")[1] not in description)
    # THEN the description names every one, so a role built from it is enough
    assert missing == []
    assert {a.split(":")[0] for a in granted} - {"ec2"} <= {
        w.split(":")[0] for w in re.findall(r"\b[a-z0-9]+:\w+", description)}
    assert "AWSLambdaVPCAccessExecutionRole" in description
    assert "lambda.amazonaws.com" in description


# --- tags ---


def test_every_function_propagates_its_tags() -> None:
    # GIVEN every SAM function, with the Globals SAM merges into it
    globals_ = TEMPLATE["Globals"]["Function"]
    functions = {name: r["Properties"] for name, r in TEMPLATE["Resources"].items()
                 if r["Type"] == "AWS::Serverless::Function"}
    # WHEN PropagateTags is read (a function's own value wins over Globals)
    propagate = {name: p.get("PropagateTags", globals_.get("PropagateTags"))
                 for name, p in functions.items()}
    # THEN it is on for each: tags reach the resources SAM generates for it
    assert functions
    assert propagate == dict.fromkeys(functions, True)


# --- rotation schedules ---


@pytest.mark.parametrize("count", [1, 2, 5, SLOTS, SLOTS + 1, SLOTS + 3])
def test_one_schedule_per_secret_up_to_ten(count: int) -> None:
    # GIVEN count secrets and a schedule
    arns = secret_arns(count)
    values = {"SecretArns": ",".join(arns), "RotationScheduleExpression": "rate(30 days)"}
    # WHEN the stack is worked out
    deployed_schedules = schedules(**values)
    skipped = output("RotationScheduleSkipped", **values)
    # THEN each of the first ten secrets has its own schedule with this function, in order, slot
    # 0 keeping its old logical id; past ten, an output names the first one left out
    expected = min(count, SLOTS)
    assert list(deployed_schedules) == ["RotationSchedule",
                                        *[f"RotationSchedule{n}" for n in range(1, expected)]]
    assert [s["SecretId"] for s in deployed_schedules.values()] == arns[:expected]
    for schedule in deployed_schedules.values():
        assert schedule["RotationLambdaARN"] == {"Fn::GetAtt": ["RotationFunction", "Arn"]}
        assert schedule["RotationRules"] == {"ScheduleExpression": "rate(30 days)"}
    assert (skipped is not None) is (count > SLOTS)
    if skipped is not None:
        text, variables = skipped["Fn::Sub"]
        eleventh = value_of(variables["Eleventh"], parameter_values(TEMPLATE, **values))
        assert eleventh == arns[SLOTS]
        assert "${Eleventh}" in text
        assert "${RotationFunction.Arn}" in text
        assert "rotate-secret" in text


@pytest.mark.parametrize("count", [1, SLOTS + 1])
def test_no_schedule_without_an_expression(count: int) -> None:
    # GIVEN secrets but no RotationScheduleExpression
    values = {"SecretArns": ",".join(secret_arns(count))}
    # WHEN the stack is worked out / THEN no schedule and nothing reported skipped
    assert schedules(**values) == {}
    assert output("RotationScheduleSkipped", **values) is None


@pytest.mark.parametrize("slot", [0, 1, SLOTS - 1])
def test_every_slot_cuts_the_iam_wildcard(slot: int) -> None:
    # GIVEN a secret given as a partial ARN plus IAM's "-??????", in one slot
    arns = secret_arns(slot + 1)
    arns[slot] = arns[slot][: -len("-AbC000")] + "-??????"
    values = {"SecretArns": ",".join(arns), "RotationScheduleExpression": "rate(7 days)"}
    # WHEN the schedules are worked out
    secret_ids = [s["SecretId"] for s in schedules(**values).values()]
    # THEN that slot names the partial ARN (Secrets Manager resolves it), never the wildcard
    assert secret_ids[slot] == arns[slot].removesuffix("-??????")
    assert not any("?" in secret_id for secret_id in secret_ids)


def test_slot_zero_reads_the_secret_as_before() -> None:
    # GIVEN the first schedule (existing stacks have it under this logical id)
    schedule = TEMPLATE["Resources"]["RotationSchedule"]
    # WHEN its condition and SecretId are read / THEN they are the ones stacks were created with,
    # so an update neither replaces nor re-targets it
    assert schedule["Condition"] == "CreatesSchedule"
    assert schedule["Properties"]["SecretId"] == {
        "Fn::Select": [0, {"Fn::Split": ["-??????", {"Fn::Select": [0, {"Ref": "SecretArns"}]}]}]}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("window", ["", "3h"], ids=["default-window", "3h-window"])
def test_window_and_rotate_immediately_reach_every_schedule(spelling: str, window: str) -> None:
    # GIVEN three secrets, a schedule, a RotateImmediatelyOnUpdate spelling and a window
    values = {"SecretArns": ",".join(secret_arns(3)), "RotationScheduleExpression": "rate(1 days)",
              "RotateImmediatelyOnUpdate": spelling, "RotationWindowDuration": window}
    # WHEN the schedules are worked out
    deployed_schedules = schedules(**values).values()
    # THEN each gets the boolean the spelling means, and the window only when given
    assert len(deployed_schedules) == 3
    for schedule in deployed_schedules:
        assert schedule["RotateImmediatelyOnUpdate"] is SPELLINGS[spelling]
        assert schedule["RotationRules"].get("Duration") == (window or None)


def test_deploying_does_not_rotate_by_default() -> None:
    # GIVEN the defaults / WHEN read / THEN a deploy only has Secrets Manager test the setup
    assert TEMPLATE["Parameters"]["RotateImmediatelyOnUpdate"]["Default"] == "false"
    schedule = schedules(SecretArns=SECRET_ARN, RotationScheduleExpression="rate(30 days)")
    assert schedule["RotationSchedule"]["RotateImmediatelyOnUpdate"] is False


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True), ("1h", True), ("3h", True), ("24h", True),
    ("0h", False), ("25h", False), ("3", False), ("3 h", False), ("180m", False), ("03h", False),
])
def test_rotation_window_pattern(value: str, accepted: bool) -> None:
    # GIVEN the parameter's AllowedPattern (Secrets Manager's DurationType is [0-9]+h, 2-3
    # characters; a window cannot pass the end of the UTC day)
    pattern = TEMPLATE["Parameters"]["RotationWindowDuration"]["AllowedPattern"]
    # WHEN a value is matched / THEN only 1h to 24h, or empty, pass
    assert (re.fullmatch(pattern, value) is not None) is accepted


@pytest.mark.parametrize("values", [
    {"SecretArns": ",".join(secret_arns(SLOTS + 1)),
     "RotationScheduleExpression": "cron(0 4 ? * SUN *)", "RotationWindowDuration": "4h",
     "RotateImmediatelyOnUpdate": "yes", "PermissionsBoundary": BOUNDARY_ARN,
     "ExcludePunctuation": "y", "RequireEachIncludedType": "0"},
    {"SecretArns": ",".join(secret_arns(2)), "ExistingRoleArn": ROLE_ARN,
     "RotationScheduleExpression": "rate(30 days)"},
], ids=["eleven-secrets-every-option", "existing-role"])
def test_this_parts_options_lint_clean(values: dict[str, str]) -> None:
    # GIVEN a copy of the template whose defaults are every schedule slot and option of this
    # part, or an existing role (so RotationFunctionRole is not created)
    # WHEN cfn-lint checks it / THEN nothing is reported and the Rules pass
    assert findings(with_defaults(**values)) == []
    assert failed_rules(**values) == []


# --- boolean parameters ---


def test_every_boolean_parameter_takes_the_same_spellings() -> None:
    # GIVEN the parameters whose AllowedValues include "true"
    booleans = boolean_parameters()
    # WHEN their allowed values are compared with the function's spellings
    # THEN each takes exactly the table's, and those are what the function reads, lower-cased
    assert {"MysqlDualPassword", "RotateImmediatelyOnUpdate", "ExcludeNumbers",
            "ExcludePunctuation", "ExcludeUppercase", "ExcludeLowercase",
            "RequireEachIncludedType"} <= set(booleans)
    for name in booleans:
        assert sorted(TEMPLATE["Parameters"][name]["AllowedValues"]) == sorted(SPELLINGS), name
    assert {s.lower() for s, meaning in SPELLINGS.items() if meaning} == set(TRUE_SPELLINGS)
    assert {s.lower() for s, meaning in SPELLINGS.items() if not meaning} == set(FALSE_SPELLINGS)


POLICY_FLAGS = {
    "ExcludeNumbers": ("EXCLUDE_NUMBERS", "exclude_numbers"),
    "ExcludePunctuation": ("EXCLUDE_PUNCTUATION", "exclude_punctuation"),
    "ExcludeUppercase": ("EXCLUDE_UPPERCASE", "exclude_uppercase"),
    "ExcludeLowercase": ("EXCLUDE_LOWERCASE", "exclude_lowercase"),
    "RequireEachIncludedType": ("REQUIRE_EACH_INCLUDED_TYPE", "require_each_included_type"),
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("parameter", list(POLICY_FLAGS))
def test_password_flags_reach_the_function_in_any_spelling(parameter: str, spelling: str) -> None:
    # GIVEN one password-policy parameter in one spelling
    values = {"SecretArns": SECRET_ARN, parameter: spelling}
    variable, attribute = POLICY_FLAGS[parameter]
    # WHEN the function's environment is worked out and read as the function reads it
    function = deployed(**values)["Resources"]["RotationFunction"]["Properties"]
    environment = {name: str(value_of(v, parameter_values(TEMPLATE, **values)))
                   for name, v in function["Environment"]["Variables"].items()
                   if name.startswith(("EXCLUDE_", "REQUIRE_", "PASSWORD_"))}
    policy = Settings.from_env(environment).password_policy
    # THEN the variable carries the spelling and the policy holds what it means; the other
    # flags keep the function's defaults
    assert environment[variable] == spelling
    assert getattr(policy, attribute) is SPELLINGS[spelling]
    defaults = PasswordPolicy()
    for other, (_, other_attribute) in POLICY_FLAGS.items():
        if other != parameter:
            assert getattr(policy, other_attribute) == getattr(defaults, other_attribute)


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_mysql_dual_password_is_true_in_every_true_spelling(spelling: str) -> None:
    # GIVEN the deprecated MysqlDualPassword in one spelling on a MySQL stack
    values = {"Engine": "mysql", "SecretArns": SECRET_ARN, "MysqlDualPassword": spelling}
    # WHEN the strategy is worked out, and the Rules for it beside alternating users
    function = deployed(**values)["Resources"]["RotationFunction"]["Properties"]
    strategy = value_of(function["Environment"]["Variables"]["ROTATION_STRATEGY"],
                        parameter_values(TEMPLATE, **values))
    refused = failed_rules(**values, RotationStrategy="alternating-users",
                           masterSecretArn=MASTER_ARN)
    # THEN a true spelling deploys dual-password and contradicts alternating users; a false one
    # changes nothing
    assert strategy == ("dual-password" if SPELLINGS[spelling] else "single-user")
    assert ("MysqlDualPasswordIsTheDualPasswordStrategy" in refused) is SPELLINGS[spelling]
    assert failed_rules(**values) == []


# --- password defaults and the endpoint ---


def test_exclude_characters_default_is_the_sar_apps() -> None:
    # GIVEN the template's default and the function's
    default = TEMPLATE["Parameters"]["excludeCharacters"]["Default"]
    # WHEN compared / THEN both are the SAR apps' /@"'\ (no space), and no character class
    # holds a space to exclude anyway
    assert default == DEFAULT_EXCLUDE_CHARACTERS == "/@\"'\\"
    every_class = "".join(character_classes(PasswordPolicy(exclude_characters="")))
    assert " " not in every_class
    assert set(every_class) == set(string.ascii_letters + string.digits + string.punctuation)


@pytest.mark.parametrize(
    "endpoint", ["", "https://vpce-0a1b.secretsmanager.us-east-1.vpce.amazonaws.com"],
    ids=["no-endpoint", "endpoint"])
def test_endpoint_variable_only_when_given(endpoint: str) -> None:
    # GIVEN the endpoint parameter empty or set
    values = {"SecretArns": SECRET_ARN, "endpoint": endpoint}
    # WHEN the function's environment is worked out
    function = deployed(**values)["Resources"]["RotationFunction"]["Properties"]
    variables = function["Environment"]["Variables"]
    # THEN SECRETS_MANAGER_ENDPOINT is the given URL, or unset so botocore resolves the endpoint
    # (FIPS and dual-stack settings included)
    if endpoint:
        assert value_of(variables["SECRETS_MANAGER_ENDPOINT"],
                        parameter_values(TEMPLATE, **values)) == endpoint
    else:
        assert "SECRETS_MANAGER_ENDPOINT" not in variables


# --- the console's parameter groups ---


def test_every_parameter_is_in_exactly_one_group() -> None:
    # GIVEN the console's parameter groups
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    # WHEN compared with the parameters / THEN each appears once, and only real ones appear
    assert sorted(grouped) == sorted(TEMPLATE["Parameters"])


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_remote_diagnosis_reads_every_spelling_as_the_template_means_it(spelling: str) -> None:
    # GIVEN RemoteDiagnosis in one spelling, passed to the function as it is
    from rotation.diagnosis.remote import ENABLE, enabled

    values = {"SecretArns": SECRET_ARN, "RemoteDiagnosis": spelling}
    function = deployed(**values)["Resources"]["RotationFunction"]["Properties"]
    variable = value_of(function["Environment"]["Variables"][ENABLE],
                        parameter_values(TEMPLATE, **values))
    # WHEN the function reads it / THEN it is on exactly for the true spellings
    assert enabled({ENABLE: variable}) is SPELLINGS[spelling]
