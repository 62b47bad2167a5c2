"""Secrets Manager checks: the endpoint answers, the secret is described, rotation names a
function, AWSCURRENT decrypts, its value suits the engine and strategy, and no rotation is stuck.

Nothing here writes: a stuck ``AWSPENDING`` is reported, never fixed (the laptop doctor's
``--fix`` does that, in ``rotation/tools``).
"""

from __future__ import annotations

import time

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from rotation import _redact, strategies
from rotation.config import STRATEGIES, Strategy
from rotation.diagnosis.report import CheckResult, client_error_code, client_error_text, result
from rotation.diagnosis.state import Doctor
from rotation.errors import (
    AwsError,
    AwsPermissionError,
    RotationError,
    RotationTimeoutError,
    SecretFormatError,
)
from rotation.secrets import CURRENT, PENDING, SecretState

_UNREACHABLE_HINT = ("in a VPC, add a Secrets Manager interface VPC endpoint "
                     "(com.amazonaws.<region>.secretsmanager) or a NAT gateway route, and check "
                     "SECRETS_MANAGER_ENDPOINT / --endpoint-url")


def check_endpoint(d: Doctor) -> CheckResult:
    """Secrets Manager answers (DescribeSecret); any HTTP answer proves the endpoint reachable."""
    name = "secrets-manager-endpoint"
    started = time.perf_counter()
    try:
        d.description = dict(d.secrets.client.describe_secret(SecretId=d.secret_id))
    except ClientError as exc:
        code = client_error_code(exc)
        if code == "ResourceNotFoundException":
            fix = ("check the secret name or ARN; the function reads secrets of its own region"
                   if d.remote else "check the secret name or ARN, and the region (--region)")
        elif "AccessDenied" in code:
            fix = ("allow secretsmanager:DescribeSecret on the secret for the function's role "
                   "(list the secret in the template's SecretArns)" if d.remote else
                   "allow secretsmanager:DescribeSecret on the secret for the caller")
        else:
            fix = ""
        d.describe_error = result("secret-describe", "fail",
                                  f"DescribeSecret on {d.secret_id} failed: "
                                  f"{client_error_text(exc)}", fix)
        return result(name, "ok", "Secrets Manager answered (with an error, see below)")
    except NoCredentialsError:
        d.describe_error = result("secret-describe", "fail",
                                  "no AWS credentials found (default credential chain)",
                                  "configure credentials: AWS_PROFILE, `aws configure` or "
                                  "`aws sso login`")
        return result(name, "skip", "not tried: no AWS credentials")
    except BotoCoreError as exc:
        d.describe_error = result("secret-describe", "skip",
                                  "Secrets Manager could not be reached")
        return result(name, "fail", f"cannot reach Secrets Manager: {type(exc).__name__}: "
                      f"{_redact.redact(str(exc))[:200]}", _UNREACHABLE_HINT)
    except RotationTimeoutError as exc:  # the invocation's deadline: no time for one request
        d.describe_error = result("secret-describe", "skip", "DescribeSecret was not sent")
        return result(name, "fail", exc.message, exc.hint)
    elapsed = (time.perf_counter() - started) * 1000
    versions = {vid: frozenset(stages) for vid, stages
                in d.description.get("VersionIdsToStages", {}).items()}
    d.state = SecretState(arn=d.description["ARN"], name=d.description.get("Name", ""),
                          rotation_enabled=bool(d.description.get("RotationEnabled", False)),
                          versions=versions)
    return result(name, "ok", f"DescribeSecret answered in {elapsed:.0f} ms")


def check_describe(d: Doctor) -> CheckResult:
    if d.describe_error is not None:
        return d.describe_error
    assert d.state is not None
    return result("secret-describe", "ok",
                  f"secret {d.state.name} has {len(d.state.versions)} version(s)")


def check_rotation_config(d: Doctor) -> CheckResult:
    """Rotation is enabled and names a rotation function (run remotely: this function)."""
    name = "rotation-configured"
    if d.description is None:
        return result(name, "skip", "the secret could not be described")
    function_arn = d.description.get("RotationLambdaARN")
    enabled = bool(d.description.get("RotationEnabled", False))
    rules = d.description.get("RotationRules") or {}
    schedule = rules.get("ScheduleExpression") or (
        f"every {rules['AutomaticallyAfterDays']} days" if "AutomaticallyAfterDays" in rules
        else "no schedule")
    if not function_arn:
        return result(name, "fail", "no rotation function is configured on the secret",
                      "configure rotation: RotateSecret with RotationLambdaARN (the template's "
                      "RotationSchedule does this)")
    if not enabled:
        return result(name, "fail", f"rotation points at {function_arn} but is disabled; the "
                      "function refuses to run on a secret whose rotation is not enabled",
                      "enable rotation (RotateSecret with RotationLambdaARN and RotationRules)")
    if d.this_function and _unqualified(function_arn) != _unqualified(d.this_function):
        # Not a failure: diagnosing from a function before switching the secret to it is how
        # a move between functions is checked. But these verdicts are not the rotating one's.
        return result(name, "warn", f"rotation enabled ({schedule}), but it runs "
                      f"{function_arn}, not this function ({d.this_function}): the verdicts "
                      "below are this function's view (its network, role and settings)",
                      f"to check the function that rotates the secret, run the diagnosis in "
                      f"{function_arn} (`rotation doctor --remote` without --function-name); "
                      "to rotate with this one, RotateSecret with --rotation-lambda-arn "
                      f"{_unqualified(d.this_function)}")
    mine = " (this function)" if d.this_function else ""
    return result(name, "ok", f"rotation enabled ({schedule}), function {function_arn}{mine}")


def _unqualified(function_arn: str) -> str:
    """A Lambda function ARN without its version or alias (arn:aws:lambda:r:a:function:name)."""
    return ":".join(function_arn.split(":")[:7])


def check_kms_decrypt(d: Doctor) -> CheckResult:
    """GetSecretValue of AWSCURRENT succeeds, so KMS lets the caller (remotely: the function's
    role) decrypt the secret."""
    name = "kms-decrypt"
    if d.state is None:
        return result(name, "skip", "the secret could not be described")
    current_id = d.state.version_with(CURRENT)
    if current_id is None:
        d.current_error = SecretFormatError(f"secret {d.arn} has no AWSCURRENT version",
                                            hint="store the credential with PutSecretValue")
        return result(name, "skip", "the secret has no AWSCURRENT version")
    kms_key = (d.description or {}).get("KmsKeyId") or "aws/secretsmanager (AWS managed key)"
    try:
        d.current = d.step_context(current_id).current()
    except SecretFormatError as exc:  # the value was decrypted, only its format is wrong
        d.current_error = exc
        return result(name, "ok", f"GetSecretValue decrypted AWSCURRENT (key {kms_key})")
    except AwsPermissionError as exc:
        d.current_error = exc
        if exc.code == "DecryptionFailure" or "KMS" in exc.message:
            fix = (f"allow kms:Decrypt on key {kms_key} for the function's role (and the "
                   "caller); the key policy must allow it too")
        else:
            fix = "allow secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key)"
        return result(name, "fail", str(exc.message), fix)
    except (AwsError, RotationTimeoutError) as exc:
        d.current_error = exc
        return result(name, "fail", exc.message, exc.hint)
    whose = ("the function role's permissions" if d.remote else
             "the caller's permissions, not the function role's")
    return result(name, "ok", f"GetSecretValue decrypted AWSCURRENT (key {kms_key}; checked "
                  f"with {whose})")


def resolve_strategy(d: Doctor) -> None:
    """The strategy the rotation uses: given, else the function's environment (when it is
    known), else what the secret suggests."""
    env = d.function_env or {}
    if d.strategy_override:
        d.strategy = _strategy(d.strategy_override)
        d.strategy_source = d.strategy_override_source
    elif env.get("ROTATION_MYSQL_DUAL_PASSWORD", "").strip().lower() == "true" and \
            env.get("ROTATION_STRATEGY", "").strip() != "alternating-users":
        d.strategy = "dual-password"
        d.strategy_source = "the function's env (deprecated ROTATION_MYSQL_DUAL_PASSWORD)"
    elif env.get("ROTATION_STRATEGY"):
        d.strategy, d.strategy_source = _strategy(env["ROTATION_STRATEGY"]), "the function's env"
    elif d.current is not None and d.current.masterarn:
        d.strategy, d.strategy_source = "alternating-users", "inferred from `masterarn`"
    else:
        d.strategy, d.strategy_source = "single-user", "default"


def _strategy(value: str) -> Strategy:
    for strategy in STRATEGIES:
        if value.strip() == strategy:
            return strategy
    return "single-user"


def check_secret_format(d: Doctor) -> CheckResult:
    """The AWSCURRENT value has every key its engine and strategy need, and an adapter exists."""
    name = "secret-format"
    if d.current is None:
        if isinstance(d.current_error, SecretFormatError):
            return result(name, "fail", d.current_error.message, d.current_error.hint)
        return result(name, "skip", "the current value could not be read")
    resolve_strategy(d)
    creds = d.current
    try:
        d.adapter = d.adapters.get(creds.engine)
    except RotationError as exc:
        d.current_error = exc
        return result(name, "fail", exc.message, exc.hint)
    if d.strategy == "alternating-users" and not creds.masterarn:
        return result(name, "fail", f"key `masterarn` is missing in secret {d.arn} (strategy "
                      f"alternating-users, {d.strategy_source})",
                      "add `masterarn`: the ARN of a secret holding a user that can create "
                      "users and grant privileges")
    if d.strategy == "dual-password":
        try:
            strategies.check_dual_password_support(d.adapter, creds.engine, d.arn)
        except RotationError as exc:
            return result(name, "fail", f"{exc.message} (strategy dual-password, "
                          f"{d.strategy_source})", exc.hint)
    # TLS switched off by the secret is db-tls's to judge (one finding, reported once there).
    sslmode = f"sslmode {creds.sslmode}" + (" (`ssl`: false)" if creds.ssl_opt_out else "")
    detail = (f"engine {creds.engine}, user {creds.username!r} on {creds.host}:{creds.port}, "
              f"{sslmode}, strategy {d.strategy} ({d.strategy_source})")
    if d.strategy == "single-user" and creds.masterarn:
        return result(name, "warn", f"{detail}; the secret has `masterarn` but the strategy is "
                      f"single-user ({d.strategy_source}); it is ignored",
                      "set ROTATION_STRATEGY=alternating-users on the function if you meant "
                      "alternating users")
    return result(name, "ok", detail)


def stuck_pending(state: SecretState) -> str | None:
    """The version that holds AWSPENDING without AWSCURRENT (a rotation that did not finish)."""
    return next((vid for vid, stages in state.versions.items()
                 if PENDING in stages and CURRENT not in stages), None)


def check_staging_labels(d: Doctor) -> CheckResult:
    """No AWSPENDING left on a version other than AWSCURRENT (RotateSecret refuses to start).
    Reported only: removing it is ``rotation doctor --fix``'s, on the caller's machine."""
    name = "staging-labels"
    if d.state is None:
        return result(name, "skip", "the secret could not be described")
    current_id = d.state.version_with(CURRENT)
    stuck_id = stuck_pending(d.state)
    if stuck_id is None:
        same = current_id is not None and PENDING in d.state.versions.get(current_id, ())
        return result(name, "ok", "AWSPENDING sits on the AWSCURRENT version (a finished "
                      "rotation)" if same else "no rotation in progress (no AWSPENDING)")
    return result(name, "fail", f"AWSPENDING is on version {stuck_id[:8]}, AWSCURRENT on "
                  f"{(current_id or 'none')[:8]}: a rotation did not finish, and RotateSecret "
                  "refuses to start another (\"A previous rotation isn't complete\")",
                  "run `rotation doctor SECRET_ID --fix`: it removes the label once a login "
                  "confirms AWSCURRENT works; see last-rotation for why it stopped")
