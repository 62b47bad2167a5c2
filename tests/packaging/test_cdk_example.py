"""The CDK example (examples/cdk) synthesizes what template.yaml deploys, from `make package`'s
zips, and the result passes cfn-lint and checkov.

`make package` builds the zips into a temporary DIST; `cdk synth` (the CLI pinned in the Makefile,
from .cdk-cli/, with aws-cdk-lib from .venv-cdk/: `make setup` installs both) runs the example
from its own folder, as a user would, with the context pointing at those zips. Offline: no
version check, no telemetry, no notices. The synthesized template is compared with template.yaml
evaluated at its defaults for the same engine (environment, runtime, architecture, memory,
timeout, log retention, the rotation role's actions), so the two cannot drift apart."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import ROOT

CDK_DIR = ROOT / "examples" / "cdk"
CDK_PYTHON_BIN = ROOT / ".venv-cdk" / "bin"
CDK_CLI = ROOT / ".cdk-cli" / "node_modules" / ".bin" / "cdk"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
ARCH, PY = "x86_64", "3.12"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:test/cdk/app-Ab12Cd"
ENGINES = {"postgres": "postgres", "redis": "redis"}  # engine -> driver layer
NO_VALUE = object()  # AWS::NoValue


def _tool(path: Path) -> str:
    assert path.exists(), f"{path} is missing: run `make setup` (it installs the CDK toolchain)"
    return str(path)


def _cdk_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CDK_"))}
    env.pop("PYTHONPATH", None)
    # cdk.json runs `python3 app.py`: the CDK virtualenv's python3 comes first on PATH
    env["PATH"] = f"{_tool(CDK_PYTHON_BIN)}{os.pathsep}{env.get('PATH', '')}"
    env.update(CDK_DISABLE_VERSION_CHECK="1", CDK_DISABLE_CLI_TELEMETRY="1")
    return env


def synth(out: Path, context: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [_tool(CDK_CLI), "synth", "--no-notices", "--quiet", "--output", str(out)]
    for key, value in context.items():
        argv += ["-c", f"{key}={value}"]
    return subprocess.run(argv, cwd=CDK_DIR, env=_cdk_env(), capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # GIVEN `make package` for python3.12 / x86_64 (the RDS CA part from a local CA: no download)
    work = tmp_path_factory.mktemp("cdk-package")
    ca = work / "ca.pem"
    ca.write_bytes(trustme.CA().cert_pem.bytes())
    proc = subprocess.run(
        ["make", "--no-print-directory", "package", f"ARCH={ARCH}", f"PY={PY}",
         f"DIST={work / 'dist'}", f"RDS_CA_BUNDLE_FILE={ca}",
         f"RDS_CA_BUNDLE_SHA256={hashlib.sha256(ca.read_bytes()).hexdigest()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return work / "dist"


@dataclass(frozen=True)
class Synthesized:
    engine: str
    out: Path
    template_file: Path
    template: dict[str, Any]
    dist: Path

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.template["Resources"].items() if r["Type"] == kind}

    def one(self, kind: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(kind)
        assert len(found) == 1, (kind, list(found))
        return next(iter(found.items()))

    def asset(self, resource: dict[str, Any]) -> Path:
        return self.out / resource["Metadata"]["aws:asset:path"]


@pytest.fixture(scope="module", params=list(ENGINES))
def synthesized(request: pytest.FixtureRequest, dist: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    # WHEN the example is synthesized for one secret: postgres with the defaults of every other
    # context key but distDir, redis (no RDS CA layer) named explicitly
    engine = request.param
    out = tmp_path_factory.mktemp(f"cdk-{engine}") / "cdk.out"
    context = {"secretArn": SECRET_ARN, "distDir": str(dist)}
    if engine != "postgres":
        context["engine"] = engine
    proc = synth(out, context)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    template_file = out / "SecretRotation.template.json"
    return Synthesized(engine, out, template_file, json.loads(template_file.read_text()), dist)


# --- template.yaml at its defaults, for comparison -------------------------------------------


@cache
def sam_template() -> dict[str, Any]:
    from cfnlint.decode import decode_str  # type: ignore[import-untyped]

    data, matches = decode_str((ROOT / "template.yaml").read_text())
    assert not matches, matches
    return dict(data)


def evaluate(node: Any, engine: str) -> Any:
    """``node`` of template.yaml with every parameter at its default but Engine (CloudFormation's
    own evaluation of Ref, Fn::If and the condition functions)."""
    template = sam_template()

    def parameter(name: str) -> Any:
        if name == "Engine":
            return engine
        spec = template["Parameters"][name]
        value = str(spec["Default"])
        return value.split(",") if spec["Type"] == "CommaDelimitedList" else value

    def condition(name: str) -> bool:
        return bool(value(template["Conditions"][name]))

    def value(node: Any) -> Any:
        if isinstance(node, list):
            return [value(item) for item in node]
        if not isinstance(node, dict):
            return node
        assert len(node) == 1, node
        ((function, argument),) = node.items()
        if function == "Ref":
            return NO_VALUE if argument == "AWS::NoValue" else parameter(argument)
        if function == "Fn::If":
            name, if_true, if_false = argument
            return value(if_true if condition(name) else if_false)
        if function == "Condition":
            return condition(argument)
        if function == "Fn::Equals":
            left, right = value(argument)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not value(argument[0])
        if function == "Fn::And":
            return all(value(item) for item in argument)
        if function == "Fn::Or":
            return any(value(item) for item in argument)
        if function == "Fn::Join":
            separator, items = argument
            items = value(items)
            return separator.join(str(item) for item in items if item is not NO_VALUE)
        raise AssertionError(f"this test cannot evaluate {function} (in {node})")

    return value(node)


def sam_environment(engine: str) -> dict[str, str]:
    variables = sam_template()["Resources"]["RotationFunction"]["Properties"]["Environment"][
        "Variables"]
    evaluated = {name: evaluate(node, engine) for name, node in variables.items()}
    return {name: str(v) for name, v in evaluated.items() if v is not NO_VALUE}


def sam_default(parameter: str) -> str:
    return str(sam_template()["Parameters"][parameter]["Default"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the synthesized stack -------------------------------------------------------------------


def test_function_is_the_templates_at_its_defaults(synthesized: Synthesized) -> None:
    # THEN the function is the packaged zip with the template's handler, runtime, architecture,
    # memory, timeout and (at its defaults, for this engine) environment
    name, function = synthesized.one("AWS::Lambda::Function")
    properties = function["Properties"]
    sam_function = sam_template()["Resources"]["RotationFunction"]["Properties"]
    assert properties["Handler"] == sam_function["Handler"] == "rotation.handler.lambda_handler"
    assert properties["Runtime"] == sam_default("Runtime") == f"python{PY}"
    assert properties["Architectures"] == [sam_default("Architecture")] == [ARCH]
    assert str(properties["MemorySize"]) == sam_default("MemorySize")
    assert str(properties["Timeout"]) == sam_default("Timeout")
    assert properties["Environment"]["Variables"] == sam_environment(synthesized.engine)
    assert sha256(synthesized.asset(function)) == sha256(synthesized.dist / "function.zip")
    # AND it writes to its own log group, kept as long as the template keeps it
    group_name, group = synthesized.one("AWS::Logs::LogGroup")
    assert properties["LoggingConfig"] == {"LogGroup": {"Ref": group_name}}
    assert str(group["Properties"]["RetentionInDays"]) == sam_default("LogRetentionDays")
    assert name.startswith("RotationFunction")


def test_layers_are_the_engines_driver_and_the_rds_ca_for_rds_engines(
        synthesized: Synthesized) -> None:
    # THEN the function's layers are the engine's driver layer (built for its runtime and
    # architecture), then the RDS CA layer where template.yaml attaches it (RdsCaBundle=auto)
    _, function = synthesized.one("AWS::Lambda::Function")
    layers = synthesized.resources("AWS::Lambda::LayerVersion")
    refs = [layer["Ref"] for layer in function["Properties"]["Layers"]]
    driver = f"layer-{ENGINES[synthesized.engine]}-{ARCH}-{PY}.zip"
    wanted = [driver]
    if evaluate({"Condition": "AttachesRdsCaLayer"}, synthesized.engine):
        wanted.append("layer-rds-ca.zip")
    assert [sha256(synthesized.asset(layers[ref])) for ref in refs] \
        == [sha256(synthesized.dist / zip_name) for zip_name in wanted]
    assert sorted(refs) == sorted(layers)
    driver_layer = layers[refs[0]]["Properties"]
    assert driver_layer["CompatibleRuntimes"] == [f"python{PY}"]
    assert driver_layer["CompatibleArchitectures"] == [ARCH]


def test_rotation_schedule_every_30_days_invoked_by_this_accounts_secrets_manager(
        synthesized: Synthesized) -> None:
    # THEN the secret rotates every 30 days through the function, a deploy does not rotate it
    function_name, _ = synthesized.one("AWS::Lambda::Function")
    _, schedule = synthesized.one("AWS::SecretsManager::RotationSchedule")
    assert schedule["Properties"] == {
        "SecretId": SECRET_ARN,
        "RotationLambdaARN": {"Fn::GetAtt": [function_name, "Arn"]},
        "RotationRules": {"ScheduleExpression": "rate(30 days)"},
        "RotateImmediatelyOnUpdate": False,
    }
    # AND Secrets Manager, of this account only, may invoke the function, before the schedule
    # exists (CloudFormation's creation of a schedule invokes testSecret)
    permission_name, permission = synthesized.one("AWS::Lambda::Permission")
    assert permission["Properties"] == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Fn::GetAtt": [function_name, "Arn"]},
        "Principal": "secretsmanager.amazonaws.com",
        "SourceAccount": {"Ref": "AWS::AccountId"},
    }
    assert permission_name in schedule["DependsOn"]


def test_role_grants_the_templates_actions_on_the_one_secret_and_its_logs(
        synthesized: Synthesized) -> None:
    # THEN the function's role is one inline policy: the template's rotation actions on this
    # secret's ARN, and writing to the function's own log group; nothing else anywhere
    _, function = synthesized.one("AWS::Lambda::Function")
    role_name, role = synthesized.one("AWS::IAM::Role")
    group_name, _ = synthesized.one("AWS::Logs::LogGroup")
    assert function["Properties"]["Role"] == {"Fn::GetAtt": [role_name, "Arn"]}
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow",
         "Principal": {"Service": "lambda.amazonaws.com"}}]
    (policy,) = role["Properties"]["Policies"]
    sam_statements = sam_template()["Resources"]["RotationFunctionRole"]["Properties"][
        "Policies"][0]["PolicyDocument"]["Statement"]
    sam_rotate = next(s for s in sam_statements if s.get("Sid") == "RotateListedSecrets")
    assert policy["PolicyDocument"]["Statement"] == [
        {"Sid": "RotateListedSecrets", "Effect": "Allow", "Action": sam_rotate["Action"],
         "Resource": SECRET_ARN},
        {"Sid": "WriteOwnLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": {"Fn::GetAtt": [group_name, "Arn"]}},
    ]
    assert "ManagedPolicyArns" not in role["Properties"]
    # (add_rotation_schedule would add GetRandomPassword on "*": the role is immutable)
    assert synthesized.resources("AWS::IAM::Policy") == {}
    text = synthesized.template_file.read_text()
    assert "GetRandomPassword" not in text
    assert '"Resource": "*"' not in text


def test_cfn_lint_is_clean_and_ignores_only_cdks_own_depends_on(
        synthesized: Synthesized) -> None:
    # WHEN cfn-lint checks the synthesized template
    proc = subprocess.run([str(CFN_LINT), str(synthesized.template_file)], capture_output=True,
                          text=True, timeout=120, check=False)
    # THEN it finds nothing
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # AND the one rule ignored is W3005 on the function: lambda.Function's own DependsOn on its
    # role, which the Role GetAtt already implies
    ignored = {name: r["Metadata"]["cfn-lint"] for name, r in
               synthesized.template["Resources"].items() if "cfn-lint" in r.get("Metadata", {})}
    function_name, function = synthesized.one("AWS::Lambda::Function")
    role_name, _ = synthesized.one("AWS::IAM::Role")
    assert ignored == {function_name: {"config": {"ignore_checks": ["W3005"]}}}
    assert function["DependsOn"] == [role_name]


def test_checkov_passes_with_the_templates_justified_skips(synthesized: Synthesized) -> None:
    # WHEN checkov scans the synthesized template
    proc = subprocess.run([_tool(CHECKOV), "-f", str(synthesized.template_file),
                           "--framework", "cloudformation", "--skip-download", "-o", "json"],
                          capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(proc.stdout)
    results = report["results"]
    # THEN nothing fails; what is skipped is what template.yaml skips for the same resources,
    # each with a reason in the resource's metadata
    assert proc.returncode == 0, results.get("failed_checks")
    assert results["failed_checks"] == []
    skipped = {(c["check_id"], c["resource"].split(".")[0]) for c in results["skipped_checks"]}
    assert skipped == {("CKV_AWS_116", "AWS::Lambda::Function"),
                       ("CKV_AWS_117", "AWS::Lambda::Function"),
                       ("CKV_AWS_115", "AWS::Lambda::Function"),
                       ("CKV_AWS_173", "AWS::Lambda::Function"),
                       ("CKV_AWS_158", "AWS::Logs::LogGroup")}
    sam_text = (ROOT / "template.yaml").read_text()
    assert all(f"checkov:skip={check}:" in sam_text for check, _ in skipped)
    assert report["summary"]["passed"] >= 10


def test_zips_built_for_another_architecture_are_refused(dist: Path, tmp_path: Path) -> None:
    # WHEN the example is synthesized for arm64 with x86_64 zips
    proc = synth(tmp_path / "cdk.out", {"secretArn": SECRET_ARN, "distDir": str(dist),
                                        "architecture": "arm64"})
    # THEN it stops, naming the missing layer and the build that makes it
    assert proc.returncode != 0
    assert f"layer-postgres-arm64-{PY}.zip is missing" in proc.stderr
    assert f"make package ARCH=arm64 PY={PY}" in proc.stderr


# --- the toolchain -----------------------------------------------------------------------------


def test_the_toolchain_is_pinned_and_installed_by_make_test_only(tmp_path: Path) -> None:
    # GIVEN the example's requirements and the Makefile's CLI pin
    requirements = [line for line in (CDK_DIR / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    pin = re.search(r"^CDK_CLI_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pin is not None
    # WHEN `make test` and `make demo` list their commands for fresh virtualenvs
    dirs = [f"VENV={tmp_path / 'venv'}", f"CDK_VENV={tmp_path / 'venv-cdk'}",
            f"CDK_CLI_DIR={tmp_path / 'cdk-cli'}"]
    test_commands, demo_commands = (
        subprocess.run(["make", "-n", "--no-print-directory", target, *dirs], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=True).stdout
        for target in ("test", "demo"))
    # THEN aws-cdk-lib and constructs are pinned exactly, the CLI too; `make test` installs both
    # and `make demo` neither
    assert sorted(r.split("==")[0] for r in requirements) == ["aws-cdk-lib", "constructs"]
    assert all(re.fullmatch(r"[a-z-]+==\d+(\.\d+)+", r) for r in requirements), requirements
    assert "-r examples/cdk/requirements.txt" in test_commands
    assert f"npm install --prefix {tmp_path / 'cdk-cli'}" in test_commands
    assert f"aws-cdk@{pin[1]}" in test_commands
    assert "cdk" not in demo_commands
    # AND the installed CLI is the pinned one, the one the example's README tells to install
    assert f"aws-cdk@{pin[1]}" in (CDK_DIR / "README.md").read_text()
    version = subprocess.run([_tool(CDK_CLI), "--version"], env=_cdk_env(), capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert version.split()[0] == pin[1]
