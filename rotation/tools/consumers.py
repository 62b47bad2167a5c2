"""``rotation consumers``: who reads one secret in its region, and will they still read it after a
rotation.

Discovery, each source with its own client (a source without one is reported as skipped):

* **ECS**: every cluster's services, the task definitions they run (the service's and each
  deployment's), each container definition's ``secrets[].valueFrom`` and
  ``repositoryCredentials.credentialsParameter``;
* **Batch**: active job definitions, ``containerProperties.secrets`` and
  ``containerProperties.repositoryCredentials``;
* **Lambda**: functions whose environment variables hold the secret's ARN or name.

For each reference: its form and whether that form resolves, who reads it (the task or job
definition's execution role for injected secrets; the function role for a Lambda function that
reads at runtime), Copilot's tag rule, and what a rotation means for it. What AWS documents about
the forms:

* ECS ``secrets``: "The supported values are either the full ARN of the AWS Secrets Manager
  secret or the full ARN of the parameter in the SSM Parameter Store"; only a Parameter Store
  parameter may be named by its name
  (docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-ecs-taskdefinition-secret.html).
  The full ARN may carry ``:json-key:version-stage:version-id``
  (docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-secrets-manager.html).
* Batch ``secrets``: the same wording
  (docs.aws.amazon.com/batch/latest/APIReference/API_Secret.html).
* ECS ``repositoryCredentials``: "if the secret exists in the same Region as the task that you're
  launching then you can use either the full ARN or the name of the secret"
  (docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RepositoryCredentials.html).
* Lambda: the function passes the value to ``GetSecretValue``, which takes a name, a full ARN or
  a partial ARN (a partial ARN is discouraged: it matches by prefix).

With an IAM client, each reading role is checked against the secret (``rotation.tools.access``:
IAM's policy simulator with the secret's resource policy and the KMS key policy); without one the
permissions are "not checked". ``failed``: some consumer cannot read the secret; ``incomplete``:
some check could not run (a source not listed, a permission that could not be checked). Secret
values are never put in a result: the JSON-key check keeps the secret's key names only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from rotation import _redact
from rotation.secrets import CURRENT
from rotation.tools.access import (
    COULD_NOT_CHECK,
    NOT_NEEDED,
    AccessChecker,
    ActionCheck,
    SecretFacts,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

Status = Literal["ok", "warn", "fail"]
NOT_CHECKED = "not checked"
COPILOT_TAGS = ("copilot-application", "copilot-environment")
_ECS_SECRETS_DOC = ("docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
                    "aws-properties-ecs-taskdefinition-secret.html")
# consumer kind -> `rotation policy --for` kind (the role that reads)
POLICY_KIND = {"ecs-service": "ecs-execution", "batch-job": "batch", "lambda": "lambda"}
# the private registry credentials' format (ECS and Batch)
REGISTRY_KEYS = frozenset({"username", "password"})


@dataclass(frozen=True)
class TargetSecret(SecretFacts):
    """The secret whose consumers are looked for (what DescribeSecret says about it): what the
    permission checks need (:class:`SecretFacts`: ARN, name, KMS key — None for
    aws/secretsmanager —, tags) and the keys its references may name."""

    keys: frozenset[str] | None  # top-level JSON keys of AWSCURRENT; None: not readable as JSON
    keys_note: str = ""

    @property
    def arn_tail(self) -> str:
        """``name-AbCdEf``: the ARN's resource part."""
        return self.arn.split(":", 6)[6]


@dataclass(frozen=True)
class Reference:
    """How a consumer names the secret."""

    form: str  # full-arn | full-arn+key | partial-arn | name | other-region | other-account
    json_key: str = ""
    version_stage: str = ""
    version_id: str = ""
    region: str = ""
    account: str = ""


@dataclass
class Consumer:
    """One place that reads the secret, and the verdict on it."""

    kind: str  # ecs-service | batch-job | lambda
    name: str
    where: str  # container and field, or the environment variable
    reference: str
    form: str
    resolves: bool
    reader: str  # role ARN, or "" when none
    reader_kind: str
    permissions: str = NOT_CHECKED  # allowed | DENIED | could not check | not checked
    copilot: str = "n/a"
    on_rotation: str = ""
    refresh: str = ""  # on_rotation in a word: redeploy | next job | next pull | runtime
    status: Status = "ok"
    incomplete: bool = False  # a check could not run
    access: list[ActionCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    def problem(self, status: Status, text: str, fix: str = "") -> None:
        if status == "fail" or (status == "warn" and self.status == "ok"):
            self.status = status
        if text:
            self.problems.append(text)
        if fix:
            self.fixes.append(fix)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ConsumersReport:
    secret_arn: str
    secret_name: str
    consumers: list[Consumer] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # source -> "checked" | why not
    permissions: str = NOT_CHECKED  # "checked" | why not

    @property
    def failed(self) -> bool:
        """Some consumer cannot read the secret."""
        return any(c.status == "fail" for c in self.consumers)

    @property
    def incomplete(self) -> bool:
        """Some check could not run: a source not listed, a permission not checkable."""
        return any(c.incomplete for c in self.consumers) or any(
            state.startswith("not checked") for state in self.sources.values())

    def to_dict(self) -> dict[str, Any]:
        return {"secret": {"arn": self.secret_arn, "name": self.secret_name},
                "sources": self.sources, "permissions": self.permissions,
                "failed": self.failed, "incomplete": self.incomplete,
                "consumers": [c.to_dict() for c in self.consumers]}


class SecretNotFound(Exception):
    """SECRET_ID names no secret (a usage error for the CLI)."""


# -- the secret ----------------------------------------------------------------------------------

def load_target(client: SecretsManagerClient, secret_id: str) -> TargetSecret:
    try:
        described = client.describe_secret(SecretId=secret_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise SecretNotFound(secret_id) from None
        raise
    tags = {t["Key"]: t["Value"] for t in described.get("Tags", []) if "Key" in t and "Value" in t}
    keys: frozenset[str] | None = None
    note = ""
    try:
        value = client.get_secret_value(SecretId=described["ARN"], VersionStage=CURRENT)
        text = value.get("SecretString")
        _redact.register(text)
        data = json.loads(text) if text else None
        if isinstance(data, dict):
            keys = frozenset(str(k) for k in data)
        else:
            note = "the secret's value is not a JSON object"
    except ClientError as exc:
        note = ("cannot read the secret's value with your credentials "
                f"({exc.response.get('Error', {}).get('Code')})")
    except ValueError:
        note = "the secret's value is not JSON"
    return TargetSecret(arn=described["ARN"], name=described["Name"],
                        kms_key_id=described.get("KmsKeyId") or None, tags=tags, keys=keys,
                        keys_note=note)


def parse_reference(value: str, secret: TargetSecret) -> Reference | None:
    """The form in which ``value`` names ``secret``, or None when it names another thing."""
    if not value.startswith("arn:"):
        return Reference("name") if value == secret.name else None
    parts = value.split(":")
    if len(parts) < 7 or parts[2] != "secretsmanager" or parts[5] != "secret":
        return None
    tail = parts[6]
    if tail not in (secret.arn_tail, secret.name):
        return None
    extra = [*parts[7:], "", "", ""]
    region, account = parts[3], parts[4]
    if region != secret.region:
        return Reference("other-region", region=region, account=account)
    if account != secret.account:
        return Reference("other-account", region=region, account=account)
    if tail == secret.name:
        return Reference("partial-arn", *extra[:3])
    form = "full-arn+key" if extra[0] else "full-arn"
    return Reference(form, *extra[:3])


# -- verdicts ------------------------------------------------------------------------------------

def _judge_reference(c: Consumer, ref: Reference, secret: TargetSecret, *,
                     injected: bool) -> None:
    """Resolution rules for one reference. ``injected``: ECS/Batch ``secrets`` (full ARN only);
    otherwise a name or an ARN in the same region resolves."""
    full = secret.arn
    if ref.form in ("other-region", "other-account"):
        c.resolves = False
        where = (f"region {ref.region}" if ref.form == "other-region"
                 else f"account {ref.account}")
        c.problem("fail", f"names a secret in {where}, not this one (in {secret.region}, "
                          f"account {secret.account})", f"reference {full}")
    elif ref.form == "partial-arn":
        if injected:
            c.resolves = False
            c.problem("fail", "partial ARN (no 6-character suffix): ECS and Batch need the full "
                              f"ARN of a Secrets Manager secret ({_ECS_SECRETS_DOC})",
                      f"use the full ARN {full}")
        else:
            c.resolves = True
            c.problem("warn", "partial ARN: resolves by prefix, and can match another secret "
                              "whose name starts the same", f"use the full ARN {full}")
    elif ref.form == "name":
        if injected:
            c.resolves = False
            c.problem("fail", "a name only: ECS and Batch read a name as a Parameter Store "
                              f"parameter; a Secrets Manager secret needs its full ARN "
                              f"({_ECS_SECRETS_DOC})", f"use the full ARN {full}")
        else:
            c.resolves = True
    else:
        c.resolves = True
    if not c.resolves:
        return
    if ref.json_key:
        if not injected:
            c.resolves = False
            c.problem("fail", "ECS's `:json-key:stage:id` syntax is not a SecretId: "
                              "GetSecretValue rejects it",
                      f"hold {full} and pick the key in code")
        elif secret.keys is None:
            c.problem("warn", f"JSON key {ref.json_key!r} not checked: {secret.keys_note}")
        elif ref.json_key not in secret.keys:
            c.resolves = False
            c.problem("fail", f"JSON key {ref.json_key!r} is not in the secret (keys: "
                              f"{', '.join(sorted(secret.keys))})",
                      "name one of the secret's keys after the ARN, e.g. "
                      f"{full}:{sorted(secret.keys)[0] if secret.keys else 'password'}::")
    if ref.version_id:
        c.problem("warn", f"pinned to version {ref.version_id[:8]}: it never sees a rotation, "
                          "and fails once that version is deprecated",
                  "drop the version id (keep the stage empty or AWSCURRENT)")
    elif ref.version_stage and ref.version_stage != CURRENT:
        c.problem("warn", f"pinned to stage {ref.version_stage}, not AWSCURRENT",
                  "drop the version stage to read AWSCURRENT")


def _judge_copilot(c: Consumer, service_tags: Mapping[str, str], secret: TargetSecret) -> None:
    wanted = {k: service_tags[k] for k in COPILOT_TAGS if k in service_tags}
    if not wanted:
        return
    missing = {k: v for k, v in wanted.items() if secret.tags.get(k) != v}
    if not missing:
        c.copilot = "ok"
        return
    c.copilot = "tags mismatch"
    c.problem("fail", "Copilot's execution role reads only secrets tagged like the service ("
                      + ", ".join(f"{k}={v}" for k, v in wanted.items()) + "); the secret has "
                      + (", ".join(f"{k}={secret.tags[k]}" for k in COPILOT_TAGS
                                   if k in secret.tags) or "neither tag"),
              f"aws secretsmanager tag-resource --secret-id {secret.arn} --tags "
              + " ".join(f"Key={k},Value={v}" for k, v in wanted.items()))


# -- discovery -----------------------------------------------------------------------------------

def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key, [])


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _tags(items: Iterable[Mapping[str, str]]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in items if "key" in t and "value" in t}


def _container_refs(containers: Iterable[Mapping[str, Any]], secret: TargetSecret,
                    ) -> Iterator[tuple[str, str, Reference, bool]]:
    """(where, value, reference, injected) for each container field that names the secret."""
    for container in containers:
        cname = container.get("name", "container")
        for item in container.get("secrets") or []:
            value = str(item.get("valueFrom", ""))
            ref = parse_reference(value, secret)
            if ref:
                yield f"{cname}: secrets {item.get('name', '')}", value, ref, True
        creds = container.get("repositoryCredentials") or {}
        value = str(creds.get("credentialsParameter", ""))
        ref = parse_reference(value, secret) if value else None
        if ref:
            yield f"{cname}: repositoryCredentials", value, ref, False


def _injected_consumer(kind: str, name: str, where: str, value: str, ref: Reference,
                       injected: bool, execution_role: str, secret: TargetSecret,
                       task_role: str = "", redeploy: str = "") -> Consumer:
    c = Consumer(kind, name, where, value, ref.form, False, execution_role, "execution role")
    _judge_reference(c, ref, secret, injected=injected)
    if not execution_role:
        c.problem("fail", "no execution role: the agent has no identity to read the secret "
                          "with" + (f" (the task role {task_role} is for the application, "
                                    "not for injection)" if task_role else ""),
                  "set executionRoleArn to a role allowed secretsmanager:GetSecretValue on "
                  f"{secret.arn}")
    if injected:
        c.on_rotation = ("injected at task start: needs a new deployment after each rotation"
                         if kind == "ecs-service" else
                         "injected at job start: jobs running during a rotation keep the old "
                         "value")
        c.refresh = "redeploy" if kind == "ecs-service" else "next job"
        # the ON ROTATION column says it; the fix is how to redeploy
        c.problem("warn", "", redeploy)
    else:
        c.on_rotation = "read at each image pull"
        c.refresh = "next pull"
        _judge_registry_credentials(c, ref, secret, kind)
    return c


def _judge_registry_credentials(c: Consumer, ref: Reference, secret: TargetSecret,
                                kind: str) -> None:
    """Private registry credentials: a JSON object with ``username`` and ``password``; Batch
    documents only the secret's ARN for them (ECS also takes a name in the same region)."""
    if kind == "batch-job" and ref.form == "name":
        c.problem("warn", "a name only: Batch documents the secret's ARN for "
                          "repositoryCredentials (docs.aws.amazon.com/batch/latest/APIReference/"
                          "API_RepositoryCredentials.html)", f"use the full ARN {secret.arn}")
    if c.resolves and secret.keys is not None and not secret.keys >= REGISTRY_KEYS:
        c.problem("fail", "private registry credentials need the JSON keys username and "
                          "password; the secret has "
                          + (", ".join(sorted(secret.keys)) or "no key"),
                  "point repositoryCredentials at a secret holding the registry's username and "
                  "password")


def ecs_consumers(ecs: Any, secret: TargetSecret) -> list[Consumer]:
    found: list[Consumer] = []
    definitions: dict[str, tuple[Mapping[str, Any], dict[str, str]]] = {}
    for cluster in _pages(ecs, "list_clusters", "clusterArns"):
        arns = list(_pages(ecs, "list_services", "serviceArns", cluster=cluster))
        for chunk in _chunks(arns, 10):
            described = ecs.describe_services(cluster=cluster, services=chunk, include=["TAGS"])
            for service in described.get("services", []):
                in_use = {service.get("taskDefinition", "")} | {
                    d.get("taskDefinition", "") for d in service.get("deployments", [])}
                service_tags = _tags(service.get("tags", []))
                cluster_name = cluster.rsplit("/", 1)[-1]
                label = f"{cluster_name}/{service.get('serviceName', '')}"
                for td_arn in sorted(t for t in in_use if t):
                    if td_arn not in definitions:
                        answer = ecs.describe_task_definition(taskDefinition=td_arn,
                                                              include=["TAGS"])
                        definitions[td_arn] = (answer["taskDefinition"],
                                               _tags(answer.get("tags", [])))
                    td, td_tags = definitions[td_arn]
                    revision = td_arn.rsplit("/", 1)[-1]
                    for where, value, ref, injected in _container_refs(
                            td.get("containerDefinitions", []), secret):
                        c = _injected_consumer(
                            "ecs-service", f"{label} ({revision})", where, value, ref, injected,
                            td.get("executionRoleArn", ""), secret, td.get("taskRoleArn", ""),
                            f"after each rotation: aws ecs update-service --cluster {cluster_name} "
                            f"--service {service.get('serviceName', '')} --force-new-deployment "
                            f"(or list {label} in the rotation stack's RolloutEcsServices)")
                        _judge_copilot(c, {**td_tags, **service_tags}, secret)
                        found.append(c)
    return found


def batch_consumers(batch: Any, secret: TargetSecret) -> list[Consumer]:
    found: list[Consumer] = []
    for jd in _pages(batch, "describe_job_definitions", "jobDefinitions", status="ACTIVE"):
        props = jd.get("containerProperties") or {}
        name = f"{jd.get('jobDefinitionName', '')}:{jd.get('revision', '')}"
        for where, value, ref, injected in _container_refs([{**props, "name": "container"}],
                                                           secret):
            found.append(_injected_consumer("batch-job", name, where, value, ref, injected,
                                            props.get("executionRoleArn", ""), secret,
                                            props.get("jobRoleArn", "")))
    return found


def lambda_consumers(lambda_: Any, secret: TargetSecret) -> list[Consumer]:
    found: list[Consumer] = []
    for fn in _pages(lambda_, "list_functions", "Functions"):
        variables = (fn.get("Environment") or {}).get("Variables") or {}
        for var, value in sorted(variables.items()):
            ref = parse_reference(str(value), secret)
            if ref is None:
                continue
            c = Consumer("lambda", fn.get("FunctionName", ""), f"env {var}", str(value),
                         ref.form, False, fn.get("Role", ""), "function role")
            _judge_reference(c, ref, secret, injected=False)
            c.on_rotation = "reads at runtime"
            c.refresh = "runtime"
            found.append(c)
    return found


Source = tuple[str, Any, Callable[[Any, TargetSecret], list[Consumer]]]


def find_consumers(client: SecretsManagerClient, secret_id: str, *, ecs: Any = None,
                   batch: Any = None, lambda_: Any = None, iam: Any = None,
                   kms: Any = None) -> ConsumersReport:
    """Every consumer of ``secret_id`` the given clients can see. A source whose client is None
    is skipped; one that cannot be listed is reported in ``sources`` with the error. With ``iam``
    (and ``kms`` for a customer managed key), each consumer's reading role is checked."""
    secret = load_target(client, secret_id)
    report = ConsumersReport(secret.arn, secret.name)
    sources: list[Source] = [("ecs", ecs, ecs_consumers), ("batch", batch, batch_consumers),
                             ("lambda", lambda_, lambda_consumers)]
    for name, source_client, discover in sources:
        if source_client is None:
            report.sources[name] = "skipped: no client for this region"
            continue
        try:
            report.consumers.extend(discover(source_client, secret))
            report.sources[name] = "checked"
        except ClientError as exc:
            error = exc.response.get("Error", {})
            report.sources[name] = (f"not checked: {error.get('Code')}: "
                                    f"{_redact.redact(str(error.get('Message', '')))[:200]}")
        except BotoCoreError as exc:
            report.sources[name] = f"not checked: {type(exc).__name__}"
    if iam is None:
        report.permissions = "not checked: no IAM client"
        return report
    checker = AccessChecker(secret, iam=iam, kms=kms, secrets=client)
    for consumer in report.consumers:
        _judge_access(consumer, checker)
    report.permissions = "checked"
    return report


def _judge_access(c: Consumer, checker: AccessChecker) -> None:
    """The reading role's verdicts, folded into the consumer's status, problems and fixes."""
    if not c.reader:
        c.permissions = "no role"  # already a failure: no execution role
        return
    if c.form in ("other-region", "other-account"):
        c.permissions = "not checked: names another secret"
        return
    c.access = checker.check(c.reader, POLICY_KIND[c.kind])
    for check in c.access:
        if check.denied:
            if check.fix.startswith("tag the secret") and c.copilot == "tags mismatch":
                check.fix = ""  # the Copilot verdict already gives the exact tags
            c.problem("fail", f"{check.action}: {check.decision}: {'; '.join(check.decided_by)}"
                              + (f"; {check.why}" if check.why else ""), check.fix)
        elif check.unknown:
            c.incomplete = True
            c.problem("warn", f"{check.action}: could not check: {check.why}")
    if any(check.denied for check in c.access):
        c.permissions = "DENIED"
    elif any(check.unknown for check in c.access):
        c.permissions = COULD_NOT_CHECK
    else:
        c.permissions = "allowed"


# -- text ----------------------------------------------------------------------------------------

_COLUMNS = ("STATUS", "CONSUMER", "WHERE", "FORM", "GET SECRET", "DECRYPT", "ON ROTATION")
_SHORT_KIND = {"ecs-service": "ecs", "batch-job": "batch", "lambda": "lambda"}


def _verdict(c: Consumer, action: str) -> str:
    """One action's verdict in a word, for the table (the lines below the row say why)."""
    check = next((a for a in c.access if a.action == action), None)
    if check is None:
        return "-" if c.permissions.startswith("not checked") or not c.reader else "?"
    if check.denied:
        return "DENIED"
    return {COULD_NOT_CHECK: "unknown", NOT_NEEDED: "not needed"}.get(check.decision,
                                                                      check.decision)


def table_lines(report: ConsumersReport) -> list[str]:
    """The report as a table that fits 120 columns for usual names; under each row the reading
    role, the Copilot verdict, the problems and the fixes."""
    lines = [f"consumers of {report.secret_arn}"]
    rows = [(c.status.upper() if c.status != "ok" else "ok",
             f"{_SHORT_KIND.get(c.kind, c.kind)} {c.name}", c.where,
             c.form if c.resolves else f"{c.form} (NO)",
             _verdict(c, "secretsmanager:GetSecretValue"), _verdict(c, "kms:Decrypt"),
             c.refresh) for c in report.consumers]
    if rows:
        widths = [max(len(str(r[i])) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
        for index, row in enumerate([_COLUMNS, *rows]):
            lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True))
                         .rstrip())
            if index == 0:
                continue
            consumer = report.consumers[index - 1]
            lines.append(f"    read by {consumer.reader_kind} {consumer.reader}"
                         if consumer.reader else f"    read by: no {consumer.reader_kind}")
            if consumer.copilot == "ok":  # a mismatch is among the problems
                lines.append("    Copilot: the secret carries the service's tags")
            lines.extend(f"    {p}" for p in consumer.problems)
            lines.extend(f"    fix: {f}" for f in consumer.fixes)
    else:
        lines.append("no consumer found")
    for source, state in report.sources.items():
        if state != "checked":
            lines.append(f"{source}: {state}")
    if report.permissions != "checked":
        lines.append(f"permissions: {report.permissions}")
    counts = {s: sum(c.status == s for c in report.consumers) for s in ("ok", "warn", "fail")}
    unknown = sum(c.incomplete for c in report.consumers)
    lines.append(f"summary: {len(report.consumers)} consumer(s): "
                 + ", ".join(f"{n} {s}" for s, n in counts.items())
                 + (f"; {unknown} not fully checked" if unknown else ""))
    if report.incomplete:
        lines.append("incomplete: some checks could not run (see above)")
    return lines
