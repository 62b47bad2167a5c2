"""template.yaml, the layer pins and events/: lint per parameter set, least privilege, contracts.

cfn-lint 1.58 drops ``--parameters`` for templates with a Transform, so each parameter set is
linted as a copy of the template whose parameter defaults are that set. cfn-lint does not
evaluate the Rules section or choose condition branches by value either; the small interpreter
below (Fn::Equals/Not/And/Or/If/Join/Split/Select/Contains/EachMemberEquals, Ref, Condition) does
that, so the tests can look at what a given parameter set deploys.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_TEXT = (ROOT / "template.yaml").read_text(encoding="utf-8")
EVENTS = ROOT / "events"
SECRET_SAMPLES = ROOT / "examples" / "secrets"

ENGINES = ["postgres", "aurora-postgresql", "mysql", "mariadb", "aurora-mysql", "redis",
           "elasticache"]
POSTGRES_ENGINES = {"postgres", "aurora-postgresql"}
RDS_ENGINES = [engine for engine in ENGINES if engine not in ("redis", "elasticache")]
DRIVER_LAYERS = {"postgres": "PostgresLayer", "aurora-postgresql": "PostgresLayer",
                 "mysql": "MysqlLayer", "mariadb": "MysqlLayer", "aurora-mysql": "MysqlLayer",
                 "redis": "RedisLayer", "elasticache": "RedisLayer"}
#: engines rotated through a service API, which the function cannot create users in
NO_ALTERNATING_ENGINES = {"elasticache"}
ELASTICACHE_USERS = ("arn:aws:elasticache:us-east-1:123456789012:user:app-user,"
                     "arn:aws:elasticache:us-east-1:123456789012:user:report-user")
STRATEGIES = ["single-user", "alternating-users", "dual-password"]
#: engines whose users hold one password: the dual-password strategy refuses them (a Rule)
ONE_PASSWORD_ENGINES = {"postgres", "aurora-postgresql", "mariadb"}
RUNTIMES_AND_ARCHITECTURES = [
    (runtime, arch) for runtime in ("python3.12", "python3.13") for arch in ("x86_64", "arm64")
]
RDS_CA_MODES = ["auto", "on", "off"]
STEPS = ["createSecret", "setSecret", "testSecret", "finishSecret"]
RDS_CA_PATH = "/opt/rotation-ca/ca-bundle.pem"
USER_CA = "/opt/certs/ca.pem"
EXTRA_LAYERS = (
    "arn:aws:lambda:us-east-1:123456789012:layer:plugin:3,"
    "arn:aws:lambda:us-east-1:123456789012:layer:private-ca:1"
)

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rotation-demo-postgres-AbCdEf"
MASTER_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rotation-demo-master-GhIjKl"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
MASTER_KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/abcd1234-ab12-cd34-ef56-abcdef123456"
VPC = {
    "vpcSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "vpcSecurityGroupIds": "sg-0123456789abcdef0",
}
ALL_OPTIONS_ON = {
    "kmsKeyArn": KMS_KEY,
    "masterSecretKmsKeyArn": MASTER_KMS_KEY,
    "ReservedConcurrency": "10",
    "RotationScheduleExpression": "rate(30 days)",
    "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:rotation-alarms",
    "CaBundle": "/var/task/certs/global-bundle.pem",
    "RdsCaBundle": "on",
    "AdditionalLayerArns": EXTRA_LAYERS,
    "endpoint": "https://vpce-0123456789abcdef0-abcdefgh.secretsmanager.us-east-1.vpce.amazonaws.com",
    "functionName": "rotation-demo",
}

# DESIGN.md, "The fixed public contract": the environment variables the function reads.
CONTRACT_ENV = {
    "SECRETS_MANAGER_ENDPOINT",
    "ROTATION_STRATEGY",
    "ROTATION_CA_BUNDLE",
    "PASSWORD_LENGTH",
    "EXCLUDE_CHARACTERS",
    "EXCLUDE_NUMBERS",
    "EXCLUDE_PUNCTUATION",
    "EXCLUDE_UPPERCASE",
    "EXCLUDE_LOWERCASE",
    "REQUIRE_EACH_INCLUDED_TYPE",
    # the framework's own settings (rotation/config.py), beyond AWS's names
    "ROTATION_DB_CONNECT_TIMEOUT",
    "ROTATION_MYSQL_DUAL_PASSWORD",
    "ROTATION_ENGINE",
    "ROTATION_REMOTE_DIAGNOSIS",  # rotation/diagnosis/remote.py
}
SECRET_KEYS = {
    "engine",
    "host",
    "port",
    "username",
    "password",
    "dbname",
    "ssl",
    "sslmode",
    "masterarn",
}
SECRET_ARN_PATTERN = re.compile(
    r"^arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-\w{6}$"
)


# --- template access and a small CloudFormation interpreter ---


def load_template() -> dict[str, Any]:
    template, errors = decode_str(TEMPLATE_TEXT)
    assert not errors, errors
    assert template is not None
    return copy.deepcopy(dict(template))


TEMPLATE = load_template()
NO_VALUE = object()


def with_defaults(**overrides: str) -> dict[str, Any]:
    """A copy of the template whose parameter defaults are ``overrides``."""
    template = load_template()
    for name, value in overrides.items():
        template["Parameters"][name]["Default"] = value
    return template


def parameter_values(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    """Parameter values as CloudFormation sees them: defaults, then overrides; lists split."""
    values: dict[str, Any] = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
    for name, spec in template["Parameters"].items():
        raw = overrides.get(name, spec.get("Default"))
        if raw is None:
            continue
        raw = str(raw)
        values[name] = raw.split(",") if spec["Type"] == "CommaDelimitedList" else raw
    return values


def evaluate(expr: Any, values: dict[str, Any], conditions: dict[str, Any]) -> Any:
    """Value of a condition or rule expression (the functions this template uses)."""
    if isinstance(expr, dict) and len(expr) == 1:
        ((function, args),) = expr.items()
        match function:
            case "Ref":
                return values[args]
            case "Condition":
                return evaluate(conditions[args], values, conditions)
            case "Fn::Equals":
                left, right = (evaluate(arg, values, conditions) for arg in args)
                return left == right
            case "Fn::Not":
                return not evaluate(args[0], values, conditions)
            case "Fn::And":
                return all(evaluate(arg, values, conditions) for arg in args)
            case "Fn::Or":
                return any(evaluate(arg, values, conditions) for arg in args)
            case "Fn::Join":
                items = evaluate(args[1], values, conditions)
                return args[0].join(evaluate(item, values, conditions) for item in items)
            case "Fn::Split":
                return evaluate(args[1], values, conditions).split(args[0])
            case "Fn::Select":
                return evaluate(args[1], values, conditions)[int(args[0])]
            case "Fn::Contains":
                return evaluate(args[1], values, conditions) in args[0]
            case "Fn::EachMemberEquals":
                members = evaluate(args[0], values, conditions)
                return all(member == args[1] for member in members)
        raise AssertionError(f"the test interpreter does not know {function}")
    return expr


def condition_values(template: dict[str, Any], values: dict[str, Any]) -> dict[str, bool]:
    conditions = template["Conditions"]
    return {name: bool(evaluate(expr, values, conditions)) for name, expr in conditions.items()}


def resolve(node: Any, conditions: dict[str, bool]) -> Any:
    """``node`` with every Fn::If decided and AWS::NoValue removed; other intrinsics kept."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, when_true, when_false = node["Fn::If"]
            return resolve(when_true if conditions[name] else when_false, conditions)
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        resolved = {key: resolve(value, conditions) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}
    if isinstance(node, list):
        items = [resolve(item, conditions) for item in node]
        return [item for item in items if item is not NO_VALUE]
    return node


def deployed(**overrides: str) -> dict[str, Any]:
    """The resources and outputs a stack with these parameter values would have."""
    values = parameter_values(TEMPLATE, **overrides)
    conditions = condition_values(TEMPLATE, values)
    resources = {
        name: resolve(resource, conditions)
        for name, resource in TEMPLATE["Resources"].items()
        if conditions.get(resource.get("Condition", ""), True)
    }
    return {"Resources": resources, "Conditions": conditions}


def failed_rules(**overrides: str) -> list[str]:
    """Names of the template's Rules whose assertions fail for these parameter values."""
    values = parameter_values(TEMPLATE, **overrides)
    failed = []
    for name, rule in TEMPLATE["Rules"].items():
        applies = "RuleCondition" not in rule or evaluate(rule["RuleCondition"], values, {})
        if applies and not all(evaluate(a["Assert"], values, {}) for a in rule["Assertions"]):
            failed.append(name)
    return failed


def value_of(node: Any, values: dict[str, Any]) -> Any:
    """An already ``resolve``d property with Ref/Fn::Join/Split/Select worked out: a parameter
    gives its value, a resource ``Ref:<LogicalId>``."""
    if isinstance(node, list):
        return [value_of(item, values) for item in node]
    if not (isinstance(node, dict) and len(node) == 1):
        return node
    ((function, args),) = node.items()
    match function:
        case "Ref":
            return values.get(args, f"Ref:{args}")
        case "Fn::Join":
            items = value_of(args[1], values)
            return args[0].join(items if isinstance(items, list) else [items])
        case "Fn::Split":
            return value_of(args[1], values).split(args[0])
        case "Fn::Select":
            return value_of(args[1], values)[int(args[0])]
    return node


def function_setup(**overrides: str) -> tuple[list[str], str | None, set[str]]:
    """The function's layers in order, its ROTATION_CA_BUNDLE (None: unset) and the stack's
    layer resources, for these parameter values."""
    values = parameter_values(TEMPLATE, **overrides)
    resources = deployed(**overrides)["Resources"]
    function = resources["RotationFunction"]["Properties"]
    layers = value_of(function["Layers"], values)
    ca_bundle = value_of(function["Environment"]["Variables"].get("ROTATION_CA_BUNDLE"), values)
    layer_resources = {
        name for name, r in resources.items() if r["Type"] == "AWS::Serverless::LayerVersion"
    }
    return layers, ca_bundle, layer_resources


def statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    role = resources["RotationFunctionRole"]["Properties"]
    return [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def raw_statements() -> Iterator[dict[str, Any]]:
    """Every policy statement in the template, on every branch of every Fn::If."""

    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if "Effect" in node and "Action" in node:
                yield node
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    yield from walk(TEMPLATE["Resources"]["RotationFunctionRole"]["Properties"]["Policies"])


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def findings(template: dict[str, Any] | str) -> list[str]:
    text = template if isinstance(template, str) else json.dumps(template)
    matches = lint(text, config=ManualArgs(regions=["us-east-1"]))
    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches]


def parameter_set(engine: str, strategy: str, in_vpc: bool, index: int) -> dict[str, str]:
    runtime, arch = RUNTIMES_AND_ARCHITECTURES[index % len(RUNTIMES_AND_ARCHITECTURES)]
    values = {
        "Engine": engine,
        "RotationStrategy": strategy,
        "SecretArns": SECRET_ARN,
        "Runtime": runtime,
        "Architecture": arch,
        "RdsCaBundle": RDS_CA_MODES[index % len(RDS_CA_MODES)],
    }
    if strategy == "alternating-users":
        values["masterSecretArn"] = MASTER_ARN
    if engine == "elasticache":
        values["ElastiCacheUserArns"] = ELASTICACHE_USERS
    if in_vpc:
        values.update(VPC)
    return values


VALID_PAIRS = [
    (engine, strategy)
    for engine, strategy in itertools.product(ENGINES, STRATEGIES)
    if (strategy != "dual-password" or engine not in ONE_PASSWORD_ENGINES)
    and (strategy != "alternating-users" or engine not in NO_ALTERNATING_ENGINES)
]
# Every parameter set: valid Engine x RotationStrategy pair, in and out of a VPC.
COMBINATIONS = [
    pytest.param(
        parameter_set(engine, strategy, in_vpc, index),
        id=f"{engine}-{strategy}-{'vpc' if in_vpc else 'no-vpc'}",
    )
    for index, (engine, strategy, in_vpc) in enumerate(
        (engine, strategy, in_vpc) for (engine, strategy) in VALID_PAIRS for in_vpc in (False, True)
    )
]
# What cfn-lint checks: every pair once, the VPC on for every other pair, so each engine is
# linted in and out of a VPC. (A lint costs ~4 s of cfn-lint's condition exploration; the full
# product doubled the suite's lint time for no branch this does not cover.)
LINT_COMBINATIONS = [
    pytest.param(
        parameter_set(engine, strategy, index % 2 == 0, index),
        id=f"{engine}-{strategy}-{'vpc' if index % 2 == 0 else 'no-vpc'}",
    )
    for index, (engine, strategy) in enumerate(VALID_PAIRS)
]


# --- cfn-lint ---


def test_template_lints_clean_as_written() -> None:
    # GIVEN the template as committed (cfn-lint explores every condition branch)
    # WHEN cfn-lint checks it
    result = findings(TEMPLATE_TEXT)
    # THEN it reports nothing, not even a warning
    assert result == []


@pytest.mark.parametrize("values", LINT_COMBINATIONS)
def test_every_engine_strategy_and_network_combination_lints_clean(values: dict[str, str]) -> None:
    # GIVEN a copy of the template whose defaults are one Engine x RotationStrategy x VPC set
    # (Runtime and Architecture cycle through their four pairs across the sets, RdsCaBundle
    # through its three values)
    template = with_defaults(**values)
    # WHEN cfn-lint checks it and the Rules section is evaluated for the same values
    result = findings(template)
    refused = failed_rules(**values)
    # THEN there are no findings and CloudFormation would accept the parameters
    assert result == []
    assert refused == []


def test_every_optional_feature_on_lints_clean() -> None:
    # GIVEN every optional parameter set (KMS keys, schedule, alarm, CA bundle, endpoint, ...)
    values = {**parameter_set("mysql", "alternating-users", True, 0), **ALL_OPTIONS_ON}
    # WHEN the copy with those defaults is linted
    result = findings(with_defaults(**values))
    # THEN nothing is reported
    assert result == []
    assert failed_rules(**values) == []


@pytest.mark.parametrize(("reserved", "refused"), [("5", True), ("10", False)])
def test_reserved_concurrency_below_ten_is_refused(reserved: str, refused: bool) -> None:
    # GIVEN a template copy whose ReservedConcurrency default is the value under test
    template = with_defaults(SecretArns=SECRET_ARN, ReservedConcurrency=reserved)
    # WHEN cfn-lint checks it
    result = findings(template)
    # THEN a value below 10 breaks the parameter's constraint (what CloudFormation refuses too)
    assert any(f.startswith("E2015 ") for f in result) is refused
    if not refused:
        assert result == []


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("10", True),
        ("250", True),
        ("9999", True),
        ("0", False),
        ("1", False),
        ("9", False),
        ("09", False),
        ("-10", False),
        ("10000", False),
        ("ten", False),
    ],
)
def test_reserved_concurrency_pattern(value: str, accepted: bool) -> None:
    # GIVEN the ReservedConcurrency parameter's AllowedPattern
    pattern = TEMPLATE["Parameters"]["ReservedConcurrency"]["AllowedPattern"]
    # WHEN a value is matched against it
    matched = re.fullmatch(pattern, value) is not None
    # THEN only "unset" and 10..9999 pass
    assert matched is accepted


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"vpcSubnetIds": VPC["vpcSubnetIds"]}, "VpcSubnetsAndSecurityGroupsTogether"),
        (
            {"vpcSecurityGroupIds": VPC["vpcSecurityGroupIds"]},
            "VpcSubnetsAndSecurityGroupsTogether",
        ),
        ({"RotationStrategy": "alternating-users"}, "AlternatingUsersNeedMasterSecret"),
        ({"Engine": "elasticache"}, "ElastiCacheNeedsUserArns"),
        ({"Engine": "elasticache", "ElastiCacheUserArns": ELASTICACHE_USERS,
          "RotationStrategy": "alternating-users", "masterSecretArn": MASTER_ARN},
         "ElastiCacheNeedsUserArns"),
        *[({"RotationStrategy": "dual-password", "Engine": engine},
           "DualPasswordNeedsAnEngineWithTwoPasswords") for engine in sorted(ONE_PASSWORD_ENGINES)],
        ({"MysqlDualPassword": "true", "Engine": "mariadb"},
         "DualPasswordNeedsAnEngineWithTwoPasswords"),
        ({"MysqlDualPassword": "true", "Engine": "mysql", "RotationStrategy": "alternating-users",
          "masterSecretArn": MASTER_ARN}, "MysqlDualPasswordIsTheDualPasswordStrategy"),
    ],
)
def test_rules_refuse_inconsistent_parameters(overrides: dict[str, str], rule: str) -> None:
    # GIVEN parameter values that do not fit together
    values = {"SecretArns": SECRET_ARN, **overrides}
    # WHEN the Rules section is evaluated
    refused = failed_rules(**values)
    # THEN the matching rule refuses them
    assert refused == [rule]


@pytest.mark.parametrize(("strategy", "mysql_dual_password", "variable"), [
    ("single-user", "false", "single-user"),
    ("alternating-users", "false", "alternating-users"),
    ("dual-password", "false", "dual-password"),
    # the deprecated parameter deploys the strategy; the function gets no deprecated variable
    ("single-user", "true", "dual-password"),
    ("dual-password", "true", "dual-password"),
])
def test_the_function_gets_the_strategy(strategy: str, mysql_dual_password: str,
                                        variable: str) -> None:
    # GIVEN RotationStrategy and the deprecated MysqlDualPassword on a MySQL stack
    values = {"Engine": "mysql", "RotationStrategy": strategy,
              "MysqlDualPassword": mysql_dual_password, "SecretArns": SECRET_ARN,
              **({"masterSecretArn": MASTER_ARN} if strategy == "alternating-users" else {})}
    # WHEN the stack is worked out
    function = deployed(**values)["Resources"]["RotationFunction"]["Properties"]
    environment = function["Environment"]["Variables"]
    # THEN ROTATION_STRATEGY is the strategy, and the parameters pass the Rules
    assert value_of(environment["ROTATION_STRATEGY"], parameter_values(TEMPLATE, **values)) \
        == variable
    assert "ROTATION_MYSQL_DUAL_PASSWORD" not in environment
    assert failed_rules(**values) == []


@pytest.mark.parametrize("master", [False, True], ids=["no-master", "masterSecretArn"])
def test_dual_password_reads_the_master_secret_only_when_given(master: bool) -> None:
    # GIVEN dual-password on MySQL, with or without a master secret (accounts without
    # APPLICATION_PASSWORD_ADMIN are changed by the master named by "masterarn")
    values = {"Engine": "mysql", "RotationStrategy": "dual-password", "SecretArns": SECRET_ARN,
              "masterSecretKmsKeyArn": MASTER_KMS_KEY,
              **({"masterSecretArn": MASTER_ARN} if master else {})}
    # WHEN the stack is worked out
    granted = {s["Sid"] for s in statements(deployed(**values)["Resources"])}
    # THEN the master secret (and its key) is readable exactly when it is given
    assert ("ReadMasterSecret" in granted) is master
    assert ("DecryptMasterSecretKey" in granted) is master
    assert failed_rules(**values) == []


# --- least privilege ---


def test_no_secrets_manager_or_kms_statement_allows_every_resource() -> None:
    # GIVEN every policy statement on every conditional branch
    risky = [
        s
        for s in raw_statements()
        if any(a.split(":")[0] in {"secretsmanager", "kms"} for a in actions(s))
    ]
    # WHEN their resources are read
    wildcards = [s["Sid"] for s in risky if s["Resource"] == "*" or "*" in s["Resource"]]
    # THEN none is "*" (and there are such statements to look at)
    assert risky
    assert wildcards == []


def test_kms_statements_only_work_through_secrets_manager() -> None:
    # GIVEN every statement with a KMS action
    kms = [s for s in raw_statements() if any(a.startswith("kms:") for a in actions(s))]
    # WHEN their conditions are read
    via = [s["Condition"]["StringEquals"]["kms:ViaService"] for s in kms]
    # THEN each one is limited to Secrets Manager in the stack's region
    assert len(kms) == 2
    assert via == [{"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}] * 2


def test_passwords_are_not_fetched_from_secrets_manager() -> None:
    # GIVEN every action granted on any branch
    granted = {action for statement in raw_statements() for action in actions(statement)}
    # WHEN searched / THEN GetRandomPassword is not among them (passwords are made locally)
    assert "secretsmanager:GetRandomPassword" not in granted
    assert not any(action.endswith("*") for action in granted)


@pytest.mark.parametrize("values", COMBINATIONS)
@pytest.mark.parametrize("with_keys", [False, True], ids=["aws-managed-key", "customer-keys"])
def test_each_parameter_set_gets_only_the_permissions_it_needs(
    values: dict[str, str], with_keys: bool
) -> None:
    # GIVEN one parameter set, with or without customer managed KMS keys
    overrides = {
        **values,
        **({"kmsKeyArn": KMS_KEY, "masterSecretKmsKeyArn": MASTER_KMS_KEY} if with_keys else {}),
    }
    alternating = values["RotationStrategy"] == "alternating-users"
    in_vpc = "vpcSubnetIds" in values
    # WHEN the stack it would deploy is worked out
    granted = {s["Sid"]: s for s in statements(deployed(**overrides)["Resources"])}
    # THEN the rotated secrets are the listed ones, and every extra grant follows its parameter
    assert granted["RotateListedSecrets"]["Resource"] == {"Ref": "SecretArns"}
    assert ("ReadMasterSecret" in granted) is alternating
    assert ("UseSecretsKey" in granted) is with_keys
    assert ("DecryptMasterSecretKey" in granted) is (with_keys and alternating)
    assert ("ManageVpcNetworkInterfaces" in granted) is in_vpc
    elasticache = values["Engine"] == "elasticache"
    assert ("ModifyElastiCacheUsers" in granted) is elasticache
    if elasticache:
        # on the listed users only, and only the two calls the adapter makes
        assert granted["ModifyElastiCacheUsers"]["Resource"] == {"Ref": "ElastiCacheUserArns"}
        assert set(actions(granted["ModifyElastiCacheUsers"])) == {
            "elasticache:DescribeUsers", "elasticache:ModifyUser"}
    if alternating:
        assert granted["ReadMasterSecret"]["Resource"] == {"Ref": "masterSecretArn"}
        assert set(actions(granted["ReadMasterSecret"])) == {
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
        }
    assert set(actions(granted["RotateListedSecrets"])) == {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:ListSecretVersionIds",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    }
    if in_vpc:
        # what AWSLambdaVPCAccessExecutionRole v3 grants for EC2, nothing more
        assert set(actions(granted["ManageVpcNetworkInterfaces"])) == {
            "ec2:CreateNetworkInterface",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeSubnets",
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
        }


@pytest.mark.parametrize("values", COMBINATIONS)
def test_function_may_list_the_version_ids_of_the_rotated_secrets_only(
    values: dict[str, str],
) -> None:
    # GIVEN one parameter set (finishSecret's cold-container compare-and-set calls
    # ListSecretVersionIds on the secret being rotated)
    resources = deployed(**values)["Resources"]
    # WHEN the statements granting ListSecretVersionIds are collected
    listing = [
        s for s in statements(resources)
        if "secretsmanager:ListSecretVersionIds" in actions(s)
    ]
    # THEN exactly one grants it, on the rotated secrets, next to GetSecretValue/DescribeSecret
    # on the same resources; the master secret stays read-only without it
    assert [s["Resource"] for s in listing] == [{"Ref": "SecretArns"}]
    assert {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"} <= set(
        actions(listing[0])
    )
    assert all(
        "secretsmanager:ListSecretVersionIds" not in actions(s)
        for s in raw_statements()
        if s.get("Sid") == "ReadMasterSecret"
    )


def test_only_secrets_manager_in_this_account_may_invoke_the_function() -> None:
    # GIVEN the Lambda permission
    permission = TEMPLATE["Resources"]["RotationFunctionInvokePermission"]["Properties"]
    # WHEN its principal and source are read / THEN it names Secrets Manager and this account
    assert permission["Principal"] == "secretsmanager.amazonaws.com"
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}


# --- function, layers and build ---


def test_function_environment_uses_only_contract_names() -> None:
    # GIVEN the function's environment with every optional parameter set
    resources = deployed(SecretArns=SECRET_ARN, **ALL_OPTIONS_ON)["Resources"]
    variables = resources["RotationFunction"]["Properties"]["Environment"]["Variables"]
    # WHEN its names are compared with DESIGN.md's contract
    unknown = {n for n in variables if n not in CONTRACT_ENV and not n.startswith("POWERTOOLS_")}
    # THEN there is nothing else, and without the endpoint parameter no endpoint is set
    # (botocore resolves it: tests/unit/test_template_deploy.py)
    assert unknown == set()
    assert {"SECRETS_MANAGER_ENDPOINT", "ROTATION_STRATEGY", "ROTATION_CA_BUNDLE"} <= set(variables)
    default_env = deployed(SecretArns=SECRET_ARN)["Resources"]["RotationFunction"]["Properties"]
    assert "SECRETS_MANAGER_ENDPOINT" not in default_env["Environment"]["Variables"]
    no_ca = deployed(SecretArns=SECRET_ARN, RdsCaBundle="off")["Resources"]["RotationFunction"]
    assert "ROTATION_CA_BUNDLE" not in no_ca["Properties"]["Environment"]["Variables"]


def test_function_is_built_with_the_package_path_intact() -> None:
    # GIVEN the function resource
    function = TEMPLATE["Resources"]["RotationFunction"]
    # WHEN its code settings are read
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    # THEN the code root is rotation/ (what SAM copies; never the whole checkout with its
    # virtualenvs), and the Makefile target copies rotation/ as is
    assert function["Properties"]["Handler"] == "rotation.handler.lambda_handler"
    assert function["Properties"]["CodeUri"] == "rotation"
    assert function["Metadata"]["BuildMethod"] == "makefile"
    assert re.search(r"^build-RotationFunction:", makefile, re.M)


@pytest.mark.parametrize("layer", ["PostgresLayer", "MysqlLayer", "RedisLayer"])
def test_layers_are_built_for_the_function_runtime_and_architecture(layer: str) -> None:
    # GIVEN a driver layer and the function's Globals
    resource = TEMPLATE["Resources"][layer]
    function_globals = TEMPLATE["Globals"]["Function"]
    # WHEN their runtime and architecture are read
    properties = resource["Properties"]
    makefile = (ROOT / properties["ContentUri"] / "Makefile").read_text(encoding="utf-8")
    # THEN both come from the same parameters, and SAM finds the layer's make target
    assert properties["CompatibleRuntimes"] == [{"Ref": "Runtime"}]
    assert properties["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    assert function_globals["Runtime"] == {"Ref": "Runtime"}
    assert function_globals["Architectures"] == [{"Ref": "Architecture"}]
    assert resource["Metadata"]["BuildMethod"] == "makefile"
    assert re.search(rf"^build-{layer}:", makefile, re.M)


def test_runtimes_are_limited_to_amazon_linux_2023() -> None:
    # GIVEN the Runtime parameter / WHEN its allowed values are read / THEN only python3.12+
    assert TEMPLATE["Parameters"]["Runtime"]["AllowedValues"] == ["python3.12", "python3.13"]


@pytest.mark.parametrize("engine", ENGINES)
def test_only_the_engine_driver_layer_is_deployed_and_attached(engine: str) -> None:
    # GIVEN an Engine value, without the RDS CA layer
    expected = DRIVER_LAYERS[engine]
    # WHEN the stack it would deploy is worked out
    layers, _, layer_resources = function_setup(
        Engine=engine, SecretArns=SECRET_ARN, RdsCaBundle="off"
    )
    # THEN exactly that driver layer exists and is the one the function uses
    assert layer_resources == {expected}
    assert layers == [f"Ref:{expected}"]


# --- the RDS CA layer (RdsCaBundle) ---


@pytest.mark.parametrize(
    ("rds_ca", "ca_bundle", "attached", "variable"),
    [
        ("auto", "", True, RDS_CA_PATH),
        ("on", "", True, RDS_CA_PATH),
        ("off", "", False, None),
        ("auto", USER_CA, False, USER_CA),
        ("on", USER_CA, True, USER_CA),
        ("off", USER_CA, False, USER_CA),
    ],
    ids=["auto", "on", "off", "auto-with-CaBundle", "on-with-CaBundle", "off-with-CaBundle"],
)
@pytest.mark.parametrize("extra_layers", ["", EXTRA_LAYERS], ids=["no-extra", "extra-layers"])
def test_rds_ca_layer_and_variable_follow_the_parameters(
    rds_ca: str, ca_bundle: str, attached: bool, variable: str | None, extra_layers: str
) -> None:
    # GIVEN RdsCaBundle, the user's CaBundle and AdditionalLayerArns
    overrides = {"SecretArns": SECRET_ARN, "RdsCaBundle": rds_ca, "CaBundle": ca_bundle,
                 "AdditionalLayerArns": extra_layers}
    # WHEN the stack it would deploy is worked out
    layers, ca_variable, layer_resources = function_setup(**overrides)
    # THEN the CA layer exists and sits between the driver and the user's layers only when it
    # applies, and ROTATION_CA_BUNDLE is the user's CaBundle whenever set (their choice wins),
    # else the layer's PEM when attached, else unset (the system trust store)
    expected_layers = ["Ref:PostgresLayer", *(["Ref:RdsCaLayer"] if attached else []),
                       *(extra_layers.split(",") if extra_layers else [])]
    assert layers == expected_layers
    assert ("RdsCaLayer" in layer_resources) is attached
    assert ca_variable == variable


@pytest.mark.parametrize("engine", RDS_ENGINES)
def test_auto_attaches_the_rds_ca_for_every_rds_engine(engine: str) -> None:
    # GIVEN an RDS/Aurora Engine value and the defaults
    # WHEN the stack is worked out
    layers, ca_variable, _ = function_setup(Engine=engine, SecretArns=SECRET_ARN)
    # THEN the default (auto) ships and uses AWS's RDS CA bundle: no hand step for RDS trust
    assert TEMPLATE["Parameters"]["RdsCaBundle"]["Default"] == "auto"
    assert "Ref:RdsCaLayer" in layers
    assert ca_variable == RDS_CA_PATH


@pytest.mark.parametrize(("rds_ca", "attached"), [("auto", False), ("on", True)])
def test_auto_leaves_an_engine_that_is_never_rds_alone(rds_ca: str, attached: bool) -> None:
    # GIVEN an Engine value that is no RDS engine (ElastiCache: "auto" leaves it alone)
    values = parameter_values(TEMPLATE, Engine="elasticache", RdsCaBundle=rds_ca,
                              SecretArns=SECRET_ARN)
    # WHEN the conditions are evaluated
    conditions = condition_values(TEMPLATE, values)
    # THEN auto leaves it alone, on still attaches the layer
    assert conditions["AttachesRdsCaLayer"] is attached
    assert conditions["UsesRdsCaBundle"] is attached


@pytest.mark.parametrize(("rds_ca", "ca_bundle", "layers", "variable"), [
    ("auto", "", ["Ref:RedisLayer"], None),
    ("auto", USER_CA, ["Ref:RedisLayer"], USER_CA),
    ("on", "", ["Ref:RedisLayer", "Ref:RdsCaLayer"], RDS_CA_PATH),
])
def test_redis_gets_its_driver_layer_and_no_rds_ca_by_default(
        rds_ca: str, ca_bundle: str, layers: list[str], variable: str | None) -> None:
    # GIVEN Engine=redis (a self-managed server, not RDS) with RdsCaBundle and CaBundle
    # WHEN the stack is worked out
    attached, ca_variable, layer_resources = function_setup(
        Engine="redis", SecretArns=SECRET_ARN, RdsCaBundle=rds_ca, CaBundle=ca_bundle)
    # THEN the redis-py layer, the RDS CA only when asked for, and the user's CA when given
    assert attached == layers
    assert ca_variable == variable
    assert "RedisLayer" in layer_resources
    assert not {"PostgresLayer", "MysqlLayer"} & layer_resources


@pytest.mark.parametrize(("rds_ca", "layers"), [
    ("auto", ["Ref:RedisLayer"]),
    ("off", ["Ref:RedisLayer"]),
])
def test_elasticache_gets_the_redis_layer_and_no_rds_ca(rds_ca: str, layers: list[str]) -> None:
    # GIVEN Engine=elasticache (changed through the API; redis-py only for the login test)
    # WHEN the stack is worked out
    attached, ca_variable, layer_resources = function_setup(
        Engine="elasticache", SecretArns=SECRET_ARN, RdsCaBundle=rds_ca,
        ElastiCacheUserArns=ELASTICACHE_USERS)
    # THEN the redis-py layer and no RDS CA (ElastiCache certificates chain to public roots)
    assert attached == layers
    assert ca_variable is None
    assert layer_resources == {"RedisLayer"}


def test_rds_ca_layer_is_built_where_the_function_looks() -> None:
    # GIVEN the CA layer resource, its Makefile and the path the template sets
    resource = TEMPLATE["Resources"]["RdsCaLayer"]
    layer_dir = ROOT / resource["Properties"]["ContentUri"]
    makefile = (layer_dir / "Makefile").read_text(encoding="utf-8")
    top_makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    # WHEN the layer's path and pin are read
    layer_path = re.search(r"^RDS_CA_LAYER_PATH := (\S+)$", makefile, re.M)
    pin = (layer_dir / "global-bundle.sha256").read_text(encoding="ascii").split()
    # THEN SAM and `make package` find the target, the PEM lands at the path the function is
    # given (layers unpack under /opt), the download is hash-pinned, and any runtime may use it
    assert resource["Metadata"]["BuildMethod"] == "makefile"
    assert re.search(r"^build-RdsCaLayer:", makefile, re.M)
    assert re.search(r"^build-RdsCaLayer:", top_makefile, re.M)
    assert layer_path is not None
    assert f"/opt/{layer_path.group(1)}" == RDS_CA_PATH
    assert re.fullmatch(r"[0-9a-f]{64}", pin[0])
    assert pin[1:] == ["global-bundle.pem"]
    assert resource["Properties"]["CompatibleRuntimes"] == [{"Ref": "Runtime"}]
    assert resource["Properties"]["CompatibleArchitectures"] == ["x86_64", "arm64"]


@pytest.mark.parametrize("rds_ca", RDS_CA_MODES)
@pytest.mark.parametrize(
    "options",
    [{}, {"CaBundle": USER_CA, "AdditionalLayerArns": EXTRA_LAYERS}],
    ids=["defaults", "CaBundle-and-extra-layers"],
)
def test_every_rds_ca_mode_lints_clean(rds_ca: str, options: dict[str, str]) -> None:
    # GIVEN a copy of the template with one RdsCaBundle value, alone or with the options it
    # interacts with (the user's CaBundle, more layers)
    values = {**parameter_set("aurora-mysql", "single-user", False, 0), **options,
              "RdsCaBundle": rds_ca}
    # WHEN cfn-lint checks it / THEN nothing is reported
    assert findings(with_defaults(**values)) == []
    assert failed_rules(**values) == []


@pytest.mark.parametrize(
    "given", [SECRET_ARN, SECRET_ARN[: -len("-AbCdEf")] + "-??????"], ids=["complete", "wildcard"]
)
def test_rotation_schedule_names_a_secret_not_an_iam_pattern(given: str) -> None:
    # GIVEN one secret in SecretArns, as a complete ARN or as the partial ARN plus IAM's
    # "-??????" that the parameter's description allows
    values = parameter_values(TEMPLATE, SecretArns=given, RotationScheduleExpression="rate(7 days)")
    # WHEN the schedule's SecretId is worked out
    schedule = deployed(SecretArns=given, RotationScheduleExpression="rate(7 days)")["Resources"]
    secret_id = value_of(schedule["RotationSchedule"]["Properties"]["SecretId"], values)
    # THEN it is the ARN without the wildcard (a complete or partial ARN Secrets Manager resolves)
    assert secret_id == given.removesuffix("-??????")
    assert "?" not in secret_id


def test_layer_pins_match_pyproject_extras() -> None:
    # GIVEN the layer requirements and pyproject.toml's extras
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]

    def pins(layer: str) -> set[str]:
        text = (ROOT / "layers" / layer / "requirements.txt").read_text(encoding="utf-8")
        return {
            line.split(";")[0].split("\\")[0].strip()
            for line in text.splitlines()
            if line and not line.startswith((" ", "#"))
        }

    # WHEN compared / THEN the layers ship the drivers the tests run with
    assert set(extras["postgres"]) <= pins("postgres")
    assert set(extras["mysql"]) <= pins("mysql")
    assert set(extras["redis"]) <= pins("redis")


# --- events ---


def event_files() -> list[Path]:
    return sorted(EVENTS.glob("*.json"))


def sample_files() -> list[Path]:
    return sorted(SECRET_SAMPLES.glob("*.json"))


def test_events_directory_has_every_step_event_and_no_secret() -> None:
    # GIVEN events/ / WHEN listed / THEN it holds a step event with and without token per step
    names = {p.name for p in event_files()}
    for step in STEPS:
        assert f"{step}.json" in names
        assert f"{step}-without-rotation-token.json" in names
    # AND no secret sample: those are in examples/secrets/ (`invoke` refuses one as an event)
    secrets_in_events = [p.name for p in event_files()
                         if {"username", "password"} & set(json.loads(p.read_text()))]
    assert secrets_in_events == []
    # AND nothing but step events: the diagnosis and roll-out events are in examples/events/
    assert [p.name for p in event_files()
            if json.loads(p.read_text()).get("Step") not in STEPS] == []


def test_secret_samples_directory_has_every_sample() -> None:
    # GIVEN examples/secrets/ / WHEN listed / THEN it holds a sample per engine and strategy
    names = {p.name for p in sample_files()}
    assert {
        "secret-postgres.json",
        "secret-mysql.json",
        "secret-mariadb.json",
        "secret-postgres-alternating.json",
        "secret-mysql-alternating.json",
        "secret-master-rds-managed.json",
    } <= names


@pytest.mark.parametrize("path", [*event_files(), *sample_files()], ids=lambda p: p.name)
def test_every_event_file_is_a_json_object(path: Path) -> None:
    # GIVEN a file in events/ or examples/secrets/ / WHEN parsed / THEN it is a JSON object
    assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("with_token", [True, False], ids=["rotation-token", "no-rotation-token"])
def test_step_events_follow_the_event_contract(step: str, with_token: bool) -> None:
    # GIVEN a step event
    name = f"{step}.json" if with_token else f"{step}-without-rotation-token.json"
    event = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    # WHEN its keys are checked
    expected = {"Step", "SecretId", "ClientRequestToken"} | (
        {"RotationToken"} if with_token else set()
    )
    # THEN it has the contract keys only, with well-formed values
    assert set(event) == expected
    assert event["Step"] == step
    assert SECRET_ARN_PATTERN.match(event["SecretId"])
    assert str(uuid.UUID(event["ClientRequestToken"])) == event["ClientRequestToken"]


@pytest.mark.parametrize("step", STEPS)
def test_rotation_tokens_pass_botocore_validation(step: str) -> None:
    # GIVEN the RotationToken of a sample event and botocore's PutSecretValue input shape
    event = json.loads((EVENTS / f"{step}.json").read_text(encoding="utf-8"))
    model = botocore.session.get_session().get_service_model("secretsmanager")
    shape = model.operation_model("PutSecretValue").input_shape
    constraint = shape.members["RotationToken"].metadata
    # WHEN a PutSecretValue call forwarding it is validated
    report = ParamValidator().validate(
        {
            "SecretId": event["SecretId"],
            "ClientRequestToken": event["ClientRequestToken"],
            "SecretString": "{}",
            "RotationToken": event["RotationToken"],
        },
        shape,
    )
    # THEN botocore accepts it, and it fits the model's length and pattern
    assert not report.has_errors(), report.generate_report()
    assert constraint["min"] <= len(event["RotationToken"]) <= constraint["max"]
    assert re.fullmatch(constraint["pattern"].strip("^$"), event["RotationToken"])


@pytest.mark.parametrize(
    ("name", "engine", "alternating"),
    [
        ("secret-postgres.json", "postgres", False),
        ("secret-mysql.json", "mysql", False),
        ("secret-mariadb.json", "mariadb", False),
        ("secret-postgres-alternating.json", "postgres", True),
        ("secret-mysql-alternating.json", "mysql", True),
        ("secret-redis.json", "redis", False),
    ],
)
def test_sample_secrets_use_aws_keys(name: str, engine: str, alternating: bool) -> None:
    # GIVEN a sample SecretString
    secret = json.loads((SECRET_SAMPLES / name).read_text(encoding="utf-8"))
    # WHEN its keys are checked
    # THEN they are AWS's, the password is an obvious placeholder, masterarn only when alternating
    assert set(secret) <= SECRET_KEYS
    assert {"engine", "host", "port", "username", "password"} <= set(secret)
    assert secret["engine"] == engine
    assert isinstance(secret["port"], int)
    assert "EXAMPLE" in secret["password"]
    assert ("masterarn" in secret) is alternating
    if alternating:
        assert SECRET_ARN_PATTERN.match(secret["masterarn"])


def test_rds_managed_master_secret_has_only_credentials() -> None:
    # GIVEN the sample of an RDS managed master secret
    secret = json.loads((SECRET_SAMPLES / "secret-master-rds-managed.json")
                        .read_text(encoding="utf-8"))
    # WHEN its keys are read / THEN it holds username and password only, like RDS writes it
    assert set(secret) == {"username", "password"}
    assert "EXAMPLE" in secret["password"]
