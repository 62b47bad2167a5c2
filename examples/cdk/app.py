"""CDK (Python) example: the rotation function that `make package` builds, deployed for one secret.

What template.yaml deploys with its defaults (single-user, no VPC, the RDS CA layer for the RDS
engines), written with aws-cdk-lib's own constructs: the function from dist/function.zip, its
driver layer and the RDS CA layer from dist/, a least-privilege role for the one secret, a log
group with retention, and the secret's rotation schedule (every 30 days). README.md beside this
file says how to build, synthesize and deploy it.

Context keys (``cdk synth -c key=value``; defaults in DEFAULTS): secretArn (the secret's complete
ARN, with its 6-character suffix), engine, architecture, runtime (both must be the ARCH/PY the
zips were built for) and distDir (where `make package` put them; relative to this file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

HERE = Path(__file__).resolve().parent
HANDLER = "rotation.handler.lambda_handler"
DEFAULTS = {
    "secretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app/postgres-AbCdEf",
    "engine": "postgres",
    "architecture": "x86_64",
    "runtime": "python3.12",
    "distDir": "../../dist",
}
# engine -> the driver layer `make package` builds for it (template.yaml's Engine parameter)
DRIVER_LAYERS = {"postgres": "postgres", "aurora-postgresql": "postgres", "mysql": "mysql",
                 "aurora-mysql": "mysql", "mariadb": "mysql", "redis": "redis"}
DRIVER_LICENSES = {"postgres": "LGPL-3.0-only", "mysql": "MIT", "redis": "MIT"}
# template.yaml's RdsCaBundle=auto: the CA layer for the engines RDS runs (redis is self-managed)
RDS_ENGINES = frozenset(DRIVER_LAYERS) - {"redis"}
CA_BUNDLE = "/opt/rotation-ca/ca-bundle.pem"  # where the RDS CA layer puts its PEM
RUNTIMES = {"python3.12": lambda_.Runtime.PYTHON_3_12, "python3.13": lambda_.Runtime.PYTHON_3_13}
ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}
# The actions a rotation calls on its secret (template.yaml's RotationFunctionRole explains each);
# no secretsmanager:GetRandomPassword: the function generates passwords itself.
ROTATE_ACTIONS = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
                  "secretsmanager:ListSecretVersionIds", "secretsmanager:PutSecretValue",
                  "secretsmanager:UpdateSecretVersionStage"]
# template.yaml's reasons, for the same checkov findings
CHECKOV_SKIPS = {
    "function": {
        "CKV_AWS_116": "Secrets Manager retries failed rotations itself and keeps AWSPENDING as "
                       "the record; a DLQ would hold nothing to replay.",
        "CKV_AWS_117": "Databases with public endpoints need no VPC; add vpc/vpc_subnets to the "
                       "Function for one that is only reachable inside a VPC.",
        "CKV_AWS_115": "A low reserved concurrency throttles rotation steps and leaves rotations "
                       "looping; set reserved_concurrent_executions (>= 10) if you want one.",
        "CKV_AWS_173": "The environment holds settings only (no secrets); Lambda encrypts it at "
                       "rest with an AWS managed key.",
    },
    "log_group": {
        "CKV_AWS_158": "Rotation logs hold no secret values (the code redacts them); a KMS key "
                       "for logs is left to the deployer.",
    },
}


@dataclass(frozen=True)
class Settings:
    """The context values, checked before anything is built."""

    secret_arn: str
    engine: str
    architecture: str
    runtime: str
    dist: Path

    @property
    def python(self) -> str:
        return self.runtime.removeprefix("python")

    @property
    def driver(self) -> str:
        return DRIVER_LAYERS[self.engine]

    def asset(self, name: str) -> Path:
        path = self.dist / name
        if not path.is_file():
            raise SystemExit(
                f"{path} is missing: build it with `make package ARCH={self.architecture} "
                f"PY={self.python}` in the repository root, or pass -c distDir=<the folder "
                "holding function.zip and the layer zips>")
        return path

    @classmethod
    def from_context(cls, app: cdk.App) -> Settings:
        values = {key: str(app.node.try_get_context(key) or default)
                  for key, default in DEFAULTS.items()}
        for key, allowed in (("engine", DRIVER_LAYERS), ("architecture", ARCHITECTURES),
                             ("runtime", RUNTIMES)):
            if values[key] not in allowed:
                raise SystemExit(f"context {key}={values[key]!r} is not one of "
                                 f"{', '.join(allowed)}: pass -c {key}=<one of them>")
        if not values["secretArn"].startswith("arn:") or ":secret:" not in values["secretArn"]:
            raise SystemExit(f"context secretArn={values['secretArn']!r} is not a secret ARN: "
                             "pass -c secretArn=arn:aws:secretsmanager:<region>:<account>:"
                             "secret:<name>-<6 characters>")
        dist = Path(values["distDir"])
        return cls(secret_arn=values["secretArn"], engine=values["engine"],
                   architecture=values["architecture"], runtime=values["runtime"],
                   dist=dist if dist.is_absolute() else (HERE / dist).resolve())


def skip_checkov(resource: Any, reasons: dict[str, str]) -> None:
    """checkov's CloudFormation suppressions: Metadata.checkov.skip on the resource."""
    resource.add_metadata("checkov", {"skip": [{"id": check, "comment": comment}
                                               for check, comment in reasons.items()]})


class RotationStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        runtime = RUNTIMES[settings.runtime]
        architecture = ARCHITECTURES[settings.architecture]
        secret = secretsmanager.Secret.from_secret_complete_arn(self, "Secret",
                                                                settings.secret_arn)

        # The function's own log group (retention; no logs:CreateLogGroup needed).
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH,
                                  removal_policy=cdk.RemovalPolicy.DESTROY)
        skip_checkov(log_group.node.default_child, CHECKOV_SKIPS["log_group"])

        # Least privilege, written out: the one secret, the own log group.
        role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Execution role of the Secrets Manager rotation function",
            inline_policies={"rotation": iam.PolicyDocument(statements=[
                iam.PolicyStatement(sid="RotateListedSecrets", actions=ROTATE_ACTIONS,
                                    resources=[settings.secret_arn]),
                iam.PolicyStatement(sid="WriteOwnLogs",
                                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                    resources=[log_group.log_group_arn]),
            ])})

        layers = [lambda_.LayerVersion(
            self, "DriverLayer",
            code=lambda_.Code.from_asset(str(settings.asset(
                f"layer-{settings.driver}-{settings.architecture}-{settings.python}.zip"))),
            compatible_runtimes=[runtime], compatible_architectures=[architecture],
            license=DRIVER_LICENSES[settings.driver],
            description=f"{settings.driver} driver for {settings.runtime} "
                        f"{settings.architecture}")]
        # template.yaml's at its defaults. No SECRETS_MANAGER_ENDPOINT: botocore resolves the
        # regional endpoint (an interface VPC endpoint's name goes there when you need one).
        environment = {
            "ROTATION_STRATEGY": "single-user",
            "ROTATION_ENGINE": settings.engine,  # the init phase loads this engine's driver
            "ROTATION_DB_CONNECT_TIMEOUT": "5",
            "ROTATION_REMOTE_DIAGNOSIS": "false",
            "EXCLUDE_CHARACTERS": "/@\"'\\",
            "PASSWORD_LENGTH": "32",
            "EXCLUDE_NUMBERS": "false",
            "EXCLUDE_PUNCTUATION": "false",
            "EXCLUDE_UPPERCASE": "false",
            "EXCLUDE_LOWERCASE": "false",
            "REQUIRE_EACH_INCLUDED_TYPE": "true",
            "POWERTOOLS_SERVICE_NAME": "rotation",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_METRICS_NAMESPACE": "SecretsRotation",
        }
        if settings.engine in RDS_ENGINES:
            layers.append(lambda_.LayerVersion(
                self, "RdsCaLayer",
                code=lambda_.Code.from_asset(str(settings.asset("layer-rds-ca.zip"))),
                compatible_runtimes=[runtime],
                compatible_architectures=list(ARCHITECTURES.values()),
                description=f"AWS RDS global CA bundle plus public roots at {CA_BUNDLE}"))
            environment["ROTATION_CA_BUNDLE"] = CA_BUNDLE

        function = lambda_.Function(
            self, "RotationFunction",
            code=lambda_.Code.from_asset(str(settings.asset("function.zip"))),
            handler=HANDLER, runtime=runtime, architecture=architecture,
            memory_size=256, timeout=cdk.Duration.seconds(30),
            description=f"Secrets Manager rotation ({settings.engine}, single-user)",
            # Immutable: the rotation schedule below would add GetRandomPassword on "*" and a
            # second copy of the secret's actions; the role above already holds what is needed.
            role=role.without_policy_updates(),
            layers=layers, log_group=log_group, environment=environment)
        skip_checkov(function.node.default_child, CHECKOV_SKIPS["function"])
        # cfn-lint W3005 (a DependsOn that a GetAtt already implies): lambda.Function itself adds
        # DependsOn on its role, for role policies it would otherwise create; none here.
        function.node.default_child.add_metadata(
            "cfn-lint", {"config": {"ignore_checks": ["W3005"]}})

        # Lets Secrets Manager invoke the function (add_rotation_schedule grants it), then
        # schedules the rotation. rotate_immediately_on_update=False: a deploy does not rotate;
        # Secrets Manager checks the setup (testSecret only) and the schedule does the rest.
        secret.add_rotation_schedule(
            "RotationSchedule", rotation_lambda=function,
            automatically_after=cdk.Duration.days(30), rotate_immediately_on_update=False)
        # ... with a grant open to any account's Secrets Manager: only this account's, as in
        # template.yaml (confused deputy; checkov CKV_AWS_364).
        for child in function.node.children:
            if isinstance(child, lambda_.CfnPermission) \
                    and child.principal == "secretsmanager.amazonaws.com":
                child.source_account = cdk.Aws.ACCOUNT_ID

        cdk.CfnOutput(self, "RotationLambdaARN", value=function.function_arn,
                      description="ARN of the rotation function (AWS's rotation apps' name)")


app = cdk.App()
RotationStack(app, "SecretRotation", settings=Settings.from_context(app),
              description="Secrets Manager rotation function (examples/cdk)")
app.synth()
