"""May a consumer's role read the secret? ``secretsmanager:GetSecretValue`` on the secret and, for a
customer managed key, ``kms:Decrypt`` on that key, asked of IAM's policy simulator
(``SimulatePrincipalPolicy``) with the role as ``PolicySourceArn``.

What the simulator is given, so that it decides as the real call would:

* GetSecretValue: the secret's ARN, its resource policy (``GetResourcePolicy``) as
  ``ResourcePolicy`` with the role as ``CallerArn``, and the secret's tags as
  ``secretsmanager:ResourceTag/KEY`` and ``aws:ResourceTag/KEY`` context entries (Copilot's
  execution roles test them). A tag key the policies test and the secret lacks is a real "no".
* kms:Decrypt: the key's ARN, its ``default`` key policy (``GetKeyPolicy``) as
  ``ResourcePolicy``, and the context of a call Secrets Manager makes for the role
  (``kms:ViaService``, ``kms:CallerAccount``, ``kms:EncryptionContext:SecretARN``).

IAM's documentation disagrees with itself on resource policies for roles (``CallerArn`` "can be a
role"; "Simulation of resource-based policies isn't supported for IAM roles"). When the simulator
refuses one (``InvalidInput``) the role's own policies are simulated alone, and the verdict is
"could not check" wherever the unevaluated policy could change it.

A key policy is also read here for one thing the simulator does not model: KMS uses IAM policies
only when the key policy lets the account decide (AWS's default "Enable IAM User Permissions"
statement, principal ``arn:aws:iam::ACCOUNT:root``). A key policy that neither does that nor names
the role denies it whatever IAM says (KMS grants, which could still allow it, are not checked).

"could not check", never a pass, when a check cannot run: the caller may not call
SimulatePrincipalPolicy or GetKeyPolicy, throttling, a key or role in another account (GetKeyPolicy
and the simulator work in their own account only), or policies that depend on context keys this
check cannot know (``aws:SourceVpce``, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rotation.tools.policy import is_aws_managed_key

READ_ACTION = "secretsmanager:GetSecretValue"
DECRYPT = "kms:Decrypt"
ALLOWED = "allowed"
EXPLICIT_DENY = "explicitDeny"
IMPLICIT_DENY = "implicitDeny"
COULD_NOT_CHECK = "could not check"
NOT_NEEDED = "not needed"
_TAG_KEYS = ("secretsmanager:resourcetag/", "aws:resourcetag/")
_ARN = re.compile(r"^arn:(?P<partition>[\w-]+):(?P<service>[\w-]+):(?P<region>[\w-]*):"
                  r"(?P<account>\d*):(?P<resource>.+)$")


def _string_context(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """SimulatePrincipalPolicy context entries, one string value each."""
    return [{"ContextKeyName": name, "ContextKeyValues": [value], "ContextKeyType": "string"}
            for name, value in pairs]


@dataclass
class ActionCheck:
    """The verdict on one action for one role. ``decision``: IAM's ``EvalDecision``
    (``allowed``, ``explicitDeny``, ``implicitDeny``), ``could not check`` or ``not needed``."""

    action: str
    resource: str
    decision: str
    decided_by: list[str] = field(default_factory=list)
    why: str = ""
    fix: str = ""

    @property
    def denied(self) -> bool:
        return self.decision in (EXPLICIT_DENY, IMPLICIT_DENY)

    @property
    def unknown(self) -> bool:
        return self.decision == COULD_NOT_CHECK


@dataclass(frozen=True)
class SecretFacts:
    """What the checks need to know of the secret (from DescribeSecret)."""

    arn: str
    name: str
    kms_key_id: str | None
    tags: Mapping[str, str]

    @property
    def partition(self) -> str:
        return self.arn.split(":")[1]

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]


@dataclass(frozen=True)
class _Key:
    """The secret's KMS key: ``arn`` None for the AWS managed key; ``problem`` when it cannot be
    checked."""

    arn: str | None = None
    policy: Mapping[str, Any] | None = None
    policy_text: str = ""
    problem: str = ""


@dataclass
class _Simulated:
    decision: str = ""
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    resource_policy_evaluated: bool = True
    error: str = ""  # the check could not run
    no_role: bool = False


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "error"))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(policy: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not policy:
        return []
    return [s for s in _as_list(policy.get("Statement", [])) if isinstance(s, Mapping)]


def has_effect(policy: Mapping[str, Any] | None, effect: str) -> bool:
    return any(s.get("Effect") == effect for s in _statements(policy))


def _parse(text: str | None) -> Mapping[str, Any] | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def key_policy_grants(policy: Mapping[str, Any] | None, role_arn: str, account: str,
                      partition: str) -> set[str]:
    """How a key policy lets ``role_arn`` use kms:Decrypt: ``iam`` (a statement allows the
    account, so the role's IAM policies decide), ``role`` (a statement allows the role itself, or
    everyone). Statements with NotAction or NotPrincipal are not counted: too broad to judge."""
    account_principals = {account, f"arn:{partition}:iam::{account}:root"}
    found: set[str] = set()
    for statement in _statements(policy):
        if statement.get("Effect") != "Allow" or "NotAction" in statement \
                or "NotPrincipal" in statement:
            continue
        actions = [str(a).lower() for a in _as_list(statement.get("Action", []))]
        if not any(fnmatchcase(DECRYPT.lower(), a) for a in actions):
            continue
        principal = statement.get("Principal")
        names = ({"*"} if principal == "*" else
                 {str(p) for p in _as_list(principal.get("AWS", []))}
                 if isinstance(principal, Mapping) else set())
        if names & account_principals:
            found.add("iam")
        if role_arn in names or "*" in names:
            found.add("role")
    return found


def _unknown_context(sim: _Simulated) -> list[str]:
    """Context keys the policies test that the check could not supply (a resource-tag key is
    known: the secret does not carry that tag)."""
    return [k for k in sim.missing if not k.lower().startswith(_TAG_KEYS)]


def _describe_statement(statement: Mapping[str, Any], resource_label: str) -> str:
    kind = statement.get("SourcePolicyType", "none")
    where = ""
    if "StartPosition" in statement:
        where = f" (line {statement['StartPosition'].get('Line', '?')})"
    if kind == "resource":
        return f"{resource_label}{where}"
    return f"{kind} policy {statement.get('SourcePolicyId', '?')}{where}"


def role_arn_of(role: str, secret: SecretFacts) -> str:
    """ECS and Batch take a role ARN; a bare name is taken as a role of the secret's account."""
    if role.startswith("arn:"):
        return role
    return f"arn:{secret.partition}:iam::{secret.account}:role/{role}"


class AccessChecker:
    """Checks roles against one secret. SimulatePrincipalPolicy answers are cached per role and
    action (consumers often share a role); once the caller is refused the simulator, later roles
    get the same verdict without another call."""

    def __init__(self, secret: SecretFacts, *, iam: Any, kms: Any, secrets: Any) -> None:
        self.secret = secret
        self.iam = iam
        self.kms = kms
        self.secrets = secrets
        self._resource_policy: tuple[str | None, str] | None = None
        self._key: _Key | None = None
        self._simulated: dict[tuple[str, str], _Simulated] = {}
        self._caller_problem = ""

    # -- the secret's policies -------------------------------------------------------------------

    def resource_policy(self) -> tuple[str | None, str]:
        """(the secret's resource policy or None, why it could not be read)."""
        if self._resource_policy is None:
            try:
                answer = self.secrets.get_resource_policy(SecretId=self.secret.arn)
                self._resource_policy = (answer.get("ResourcePolicy") or None, "")
            except ClientError as exc:
                self._resource_policy = (None, "cannot read the secret's resource policy with "
                                               f"your credentials ({_code(exc)} on "
                                               "secretsmanager:GetResourcePolicy)")
            except BotoCoreError as exc:
                self._resource_policy = (None, "cannot read the secret's resource policy "
                                               f"({type(exc).__name__})")
        return self._resource_policy

    def key(self) -> _Key:
        if self._key is None:
            self._key = self._load_key()
        return self._key

    def _load_key(self) -> _Key:
        key_id = self.secret.kms_key_id
        if is_aws_managed_key(key_id):
            return _Key()
        assert key_id is not None
        match = _ARN.match(key_id)
        if match and match["account"] != self.secret.account:
            return self._foreign_key(key_id, match["account"])
        if self.kms is None:
            return _Key(key_id, problem=f"no KMS client to read the policy of key {key_id}")
        try:
            metadata = self.kms.describe_key(KeyId=key_id)["KeyMetadata"]
            if metadata.get("KeyManager") == "AWS":
                return _Key()
            arn = str(metadata["Arn"])
            owner = str(metadata.get("AWSAccountId", self.secret.account))
            if owner != self.secret.account:
                return self._foreign_key(arn, owner)
            text = self.kms.get_key_policy(KeyId=arn, PolicyName="default").get("Policy", "")
        except ClientError as exc:
            return _Key(key_id, problem=f"cannot read key {key_id} or its key policy with your "
                                        f"credentials ({_code(exc)}; needs kms:DescribeKey and "
                                        "kms:GetKeyPolicy)")
        except BotoCoreError as exc:
            return _Key(key_id, problem=f"cannot read key {key_id} ({type(exc).__name__})")
        policy = _parse(text)
        if policy is None:
            return _Key(arn, problem=f"the key policy of {arn} is not a JSON object")
        return _Key(arn, policy, text)

    @staticmethod
    def _foreign_key(key: str, owner: str) -> _Key:
        return _Key(key, problem=f"key {key} belongs to account {owner}: its key policy can be "
                                 "read (GetKeyPolicy) and simulated only in that account; ask its "
                                 "owner to let the role decrypt through Secrets Manager")

    # -- the simulator ---------------------------------------------------------------------------

    def _simulate(self, role: str, action: str, resource: str, *, resource_policy: str | None,
                  context: list[dict[str, Any]], resource_label: str) -> _Simulated:
        cache_key = (role, action)
        if cache_key in self._simulated:
            return self._simulated[cache_key]
        if self._caller_problem:
            return _Simulated(error=self._caller_problem)
        params: dict[str, Any] = {"PolicySourceArn": role, "ActionNames": [action],
                                  "ResourceArns": [resource]}
        if context:
            params["ContextEntries"] = context
        result = _Simulated()
        try:
            try:
                answer = self.iam.simulate_principal_policy(
                    **params, **({"ResourcePolicy": resource_policy, "CallerArn": role}
                                 if resource_policy else {}))
            except ClientError as exc:
                if _code(exc) != "InvalidInput" or not resource_policy:
                    raise
                # the simulator took no resource policy for this role: simulate its own policies
                answer = self.iam.simulate_principal_policy(**params)
                result.resource_policy_evaluated = False
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchEntity":
                result.no_role = True
            elif code in ("AccessDenied", "AccessDeniedException"):
                self._caller_problem = ("your credentials may not call iam:SimulatePrincipalPolicy "
                                        "(AccessDenied): allow it to check the consumers' roles")
                result.error = self._caller_problem
            else:
                result.error = f"IAM's simulator answered {code}: run again later"
            self._simulated[cache_key] = result
            return result
        except BotoCoreError as exc:
            result.error = f"IAM's simulator could not be reached ({type(exc).__name__})"
            return result
        except NotImplementedError:  # moto in-process (rotation's local stack) has no simulator
            result.error = "this endpoint does not implement iam:SimulatePrincipalPolicy"
            self._caller_problem = result.error
            return result
        self._read_result(answer, action, resource, resource_label, result)
        self._simulated[cache_key] = result
        return result

    @staticmethod
    def _read_result(answer: Mapping[str, Any], action: str, resource: str,
                     resource_label: str, result: _Simulated) -> None:
        results = answer.get("EvaluationResults", [])
        evaluation = next((r for r in results if str(r.get("EvalActionName", "")).lower()
                           == action.lower()), None)
        if evaluation is None:
            result.error = f"IAM's simulator returned no result for {action}"
            return
        specific = next((r for r in evaluation.get("ResourceSpecificResults", [])
                         if r.get("EvalResourceName") == resource), None)
        result.decision = str((specific or {}).get("EvalResourceDecision")
                              or evaluation.get("EvalDecision", IMPLICIT_DENY))
        statements = (specific or {}).get("MatchedStatements") \
            or evaluation.get("MatchedStatements", [])
        result.matched = [_describe_statement(s, resource_label) for s in statements]
        boundary = (specific or evaluation).get("PermissionsBoundaryDecisionDetail", {})
        if boundary.get("AllowedByPermissionsBoundary") is False:
            result.matched.append("the role's permissions boundary")
        if evaluation.get("OrganizationsDecisionDetail", {}).get("AllowedByOrganizations") \
                is False:
            result.matched.append("a service control policy (AWS Organizations)")
        result.missing = sorted({*evaluation.get("MissingContextValues", []),
                                 *(specific or {}).get("MissingContextValues", [])})

    # -- verdicts --------------------------------------------------------------------------------

    def check(self, role: str, kind: str) -> list[ActionCheck]:
        """GetSecretValue and kms:Decrypt for ``role`` (an ARN or name), with fixes for a
        ``rotation policy --for kind`` consumer."""
        role = role_arn_of(role, self.secret)
        owner = role.split(":")[4] if role.count(":") >= 5 else ""
        if owner != self.secret.account:
            why = (f"role {role} is in account {owner or '?'}: IAM simulates only principals of "
                   "its own account; run this check there")
            key = self.key()
            decrypt = (self._aws_managed_key() if key.arn is None and not key.problem
                       else ActionCheck(DECRYPT, key.arn or "", COULD_NOT_CHECK, why=why))
            return [ActionCheck(READ_ACTION, self.secret.arn, COULD_NOT_CHECK, why=why),
                    decrypt]
        return [self._check_read(role, kind), self._check_decrypt(role, kind)]

    def _policy_fix(self, role: str, kind: str) -> str:
        name = role.rsplit("/", 1)[-1]
        policy_name = "read-" + re.sub(r"[^\w+=,.@-]", "-", self.secret.name)[:100]
        return (f"rotation policy {self.secret.arn} --for {kind} > policy.json && aws iam "
                f"put-role-policy --role-name {name} --policy-name {policy_name} "
                "--policy-document file://policy.json")

    def _deny_fix(self, action: str, decided_by: list[str], role: str, where: str) -> str:
        name = role.rsplit("/", 1)[-1]
        if any("permissions boundary" in d for d in decided_by):
            return f"allow {action} in the permissions boundary of role {name}"
        if any("service control policy" in d for d in decided_by):
            return f"a service control policy denies {action}: ask your organization's admins"
        return (f"remove or narrow the Deny statement in {', '.join(decided_by) or where}: an "
                "explicit Deny overrides every Allow")

    def _simulate_until_settled(self, check: ActionCheck, role: str, policy_text: str | None,
                                context: list[dict[str, Any]], label: str,
                                show_policy: str) -> _Simulated | None:
        """Simulate ``check.action`` on ``check.resource`` with its resource policy (``label``).
        None when that settles the check (an explicit Deny gets its fix, naming ``show_policy``,
        the command that prints the policy, when the Deny is in it); else the simulation, for
        the caller to weigh what the simulator could not evaluate."""
        sim = self._simulate(role, check.action, check.resource, resource_policy=policy_text,
                             context=context, resource_label=label)
        if not self._settled(check, sim, role):
            return sim
        if check.decision == EXPLICIT_DENY:
            check.fix = self._deny_fix(check.action, check.decided_by, role, label) + (
                f" ({show_policy})" if any(d.startswith(label) for d in check.decided_by)
                else "")
        return None

    def _check_read(self, role: str, kind: str) -> ActionCheck:
        arn = self.secret.arn
        check = ActionCheck(READ_ACTION, arn, COULD_NOT_CHECK)
        text, problem = self.resource_policy()
        context = _string_context((f"{prefix}{key}", value)
                                  for key, value in sorted(self.secret.tags.items())
                                  for prefix in ("secretsmanager:ResourceTag/", "aws:ResourceTag/"))
        sim = self._simulate_until_settled(
            check, role, text, context, "the secret's resource policy",
            f"aws secretsmanager get-resource-policy --secret-id {arn}")
        if sim is None:
            return check
        policy = _parse(text)
        if problem:
            check.why = problem + ": it may deny or allow the role"
            return check
        if not sim.resource_policy_evaluated and (
                has_effect(policy, "Deny") or (sim.decision != ALLOWED
                                               and has_effect(policy, "Allow"))):
            check.why = ("IAM's simulator took no resource policy for a role, and the secret's "
                         "resource policy has statements that could change the verdict")
            return check
        if not self._context_known(check, sim):
            return check
        check.decision = sim.decision
        if sim.decision == IMPLICIT_DENY:
            lacking = [k.split("/", 1)[1] for k in sim.missing]
            check.decided_by = sim.matched or ["no statement in the role's policies allows it"]
            if lacking:
                check.decided_by.append("its policies test tag(s) the secret lacks: "
                                        + ", ".join(sorted(set(lacking))))
                check.fix = (f"tag the secret as the role's policy expects: aws secretsmanager "
                             f"tag-resource --secret-id {arn} --tags "
                             + " ".join(f"Key={k},Value=VALUE" for k in sorted(set(lacking))))
            else:
                check.fix = self._policy_fix(role, kind)
        return check

    @staticmethod
    def _aws_managed_key() -> ActionCheck:
        return ActionCheck(DECRYPT, "alias/aws/secretsmanager", NOT_NEEDED,
                           why="the AWS managed key's policy lets the account's principals "
                               "decrypt through Secrets Manager")

    def _check_decrypt(self, role: str, kind: str) -> ActionCheck:
        key = self.key()
        if key.arn is None and not key.problem:
            return self._aws_managed_key()
        check = ActionCheck(DECRYPT, key.arn or "", COULD_NOT_CHECK)
        if key.problem:
            check.why = key.problem
            return check
        assert key.arn is not None
        grants = key_policy_grants(key.policy, role, self.secret.account, self.secret.partition)
        if not grants:
            check.decision = IMPLICIT_DENY
            check.decided_by = ["the key policy: no statement allows the role, nor the account "
                                "(AWS's \"Enable IAM User Permissions\" statement), to decrypt"]
            check.why = "unless a KMS grant allows it (grants are not checked)"
            check.fix = self._key_statement_fix(role, key.arn)
            return check
        context = _string_context((
            ("kms:ViaService", f"secretsmanager.{self.secret.region}.amazonaws.com"),
            ("kms:CallerAccount", self.secret.account),
            ("kms:EncryptionContext:SecretARN", self.secret.arn)))
        sim = self._simulate_until_settled(
            check, role, key.policy_text, context, "the key policy",
            f"aws kms get-key-policy --key-id {key.arn} --policy-name default")
        if sim is None:
            return check
        if not sim.resource_policy_evaluated:
            if has_effect(key.policy, "Deny"):
                check.why = ("IAM's simulator took no key policy for a role, and the key policy "
                             "has Deny statements")
                return check
            if sim.decision == IMPLICIT_DENY and "role" in grants:
                check.decision = ALLOWED
                check.decided_by = ["a key policy statement allows the role (or everyone) to "
                                    "decrypt; its conditions were not simulated"]
                return check
        if not self._context_known(check, sim):
            return check
        check.decision = sim.decision
        if sim.decision == IMPLICIT_DENY:
            check.decided_by = sim.matched or (
                ["no statement in the role's policies allows it through Secrets Manager"]
                if "iam" in grants else ["the key policy's statements for the role do not "
                                         "match a call through Secrets Manager"])
            check.fix = (self._policy_fix(role, kind) if "iam" in grants
                         else self._key_statement_fix(role, key.arn))
        return check

    @staticmethod
    def _settled(check: ActionCheck, sim: _Simulated, role: str) -> bool:
        """Verdicts that need nothing more: could not run, no such role, an explicit Deny."""
        if sim.error:
            check.why = sim.error
            return True
        if sim.no_role:
            check.decision = IMPLICIT_DENY
            check.decided_by = [f"role {role} does not exist"]
            check.fix = "create the role, or point the consumer at an existing role"
            return True
        if sim.decision == EXPLICIT_DENY and not _unknown_context(sim):
            check.decision = EXPLICIT_DENY
            check.decided_by = sim.matched or ["an explicit Deny"]
            return True
        return False

    @staticmethod
    def _context_known(check: ActionCheck, sim: _Simulated) -> bool:
        """False (could not check) when the decision depends on context keys not known here;
        a resource-tag key is known: the secret does not carry that tag."""
        unknown = _unknown_context(sim)
        if unknown:
            deny = (f" (an explicit Deny in {', '.join(sim.matched)} applies without them)"
                    if sim.decision == EXPLICIT_DENY and sim.matched else "")
            check.why = ("the policies depend on " + ", ".join(unknown) + ", which this check "
                         f"cannot know{deny}: verify it where the consumer runs")
            return False
        return True

    def _key_statement_fix(self, role: str, key_arn: str) -> str:
        statement = {"Sid": "DecryptSecretThroughSecretsManager", "Effect": "Allow",
                     "Principal": {"AWS": role}, "Action": DECRYPT, "Resource": "*",
                     "Condition": {"StringEquals": {
                         "kms:ViaService": f"secretsmanager.{self.secret.region}.amazonaws.com"}}}
        return (f"add to the key policy of {key_arn} (aws kms get-key-policy --key-id {key_arn} "
                "--policy-name default, then aws kms put-key-policy) the statement "
                + json.dumps(statement, separators=(",", ":")))
