"""``rotation doctor``: preflight checks for one secret, each a small function returning a result.

Every check answers ok, warn, fail or skip (with why), says what it saw and, where something is
wrong, what to do. The checks share what earlier ones learned through :class:`Doctor` (the
secret's description, its current credential, the login outcome), so nothing is fetched twice.

Verdicts follow three rules:

* **fail** when the rotation would fail, and also when a check cannot reach a verdict on
  something the rotation needs (a port that accepts TCP but never answers is a failure, not a
  skip). Any failure makes ``rotation doctor`` exit non-zero.
* **skip** only when the check does not apply (another engine, no function to look at, no
  login to read with), or when an earlier check already failed on the root cause: the skip
  names that check, so one root cause is reported once, and nothing downstream warns about it.
* **warn** for what works today but is weak or will break (TLS off, a deprecated runtime).

The database path is checked in order: ``db-network`` (TCP), ``db-protocol`` (does the port
speak the engine's protocol, and does it offer TLS: a probe that sends no credential),
``db-tls`` and ``db-login`` (one login through the engine's adapter, whose failure is
attributed to one of the two, with the real cause: a CA bundle that is not the server's CA, a
server that requires TLS while the secret disables it, a server without TLS, a wrong password,
a database that does not exist, ...).

Secret values are read into memory only: no check puts a password or a RotationToken in its
result (every detail passes through the redaction registry as a last line of defence). The
doctor changes nothing, except ``--fix`` (which removes a stuck ``AWSPENDING`` label).

``run_doctor(client, secret_id, settings, ...)`` takes the Secrets Manager client, so the tests
run it against an in-process moto; the CLI builds a real client.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from rotation import _redact, strategies
from rotation.adapters import AdapterRegistry
from rotation.adapters.base import AdapterOptions, DatabaseAdapter
from rotation.config import STRATEGIES, Settings, Strategy
from rotation.credentials import DbCredentials
from rotation.errors import (
    AwsError,
    AwsPermissionError,
    DatabaseError,
    DbTimeoutError,
    LoginError,
    PasswordRefusedError,
    PrivilegeError,
    RotationError,
    RotationTimeoutError,
    SecretFormatError,
    TlsError,
)
from rotation.event import RotationEvent
from rotation.secrets import CURRENT, PENDING, SecretsManager, SecretState
from rotation.steps import StepContext

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

Status = Literal["ok", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skip")

#: Lambda's Python runtimes and the day each is (or is planned to be) deprecated. After that day
#: the runtime gets no security patches; some weeks later Lambda blocks creating and then updating
#: functions on it. Source: docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html
PYTHON_RUNTIME_DEPRECATION: Mapping[str, date] = {
    "python2.7": date(2021, 7, 15),
    "python3.6": date(2022, 7, 18),
    "python3.7": date(2023, 12, 4),
    "python3.8": date(2024, 10, 14),
    "python3.9": date(2025, 12, 15),
    "python3.10": date(2026, 6, 30),
    "python3.11": date(2026, 6, 30),
    "python3.12": date(2028, 10, 31),
    "python3.13": date(2029, 6, 30),
    "python3.14": date(2029, 6, 30),
}
DEPRECATION_WARNING_DAYS = 180
MIN_RESERVED_CONCURRENCY = 10  # Secrets Manager retries and overlapping rotations need headroom
LOG_LOOKBACK_DAYS = 14
MIN_LIBPQ_FOR_SCRAM = 100000  # libpq 10

_UNREACHABLE_HINT = ("in a VPC, add a Secrets Manager interface VPC endpoint "
                     "(com.amazonaws.<region>.secretsmanager) or a NAT gateway route, and check "
                     "SECRETS_MANAGER_ENDPOINT / --endpoint-url")
_NETWORK_HINT = ("check that the function's subnets reach the database's subnets and that the "
                 "database's security group allows the function's security group on this port; "
                 "check `host` and `port` in the secret")


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. ``detail`` says what was seen, ``fix`` what to do about it."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class DoctorReport:
    secret_id: str
    secret_arn: str | None = None
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def summary(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in STATUSES}

    def to_dict(self) -> dict[str, Any]:
        return {"secret_id": self.secret_id, "secret_arn": self.secret_arn,
                "ok": not self.failed, "summary": self.summary(),
                "checks": [c.to_dict() for c in self.checks]}


@dataclass
class LoginOutcome:
    """The result of one login attempt through the engine's adapter."""

    error: RotationError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class WireAnswer:
    """What a database port said to a probe that sends no credential.

    ``outcome``: ``speaks`` (the engine's protocol), ``silent`` (nothing within the timeout),
    ``closed`` (hung up without a word), ``foreign`` (bytes of another protocol: ``seen`` shows
    them), ``refused`` (a MySQL error packet before any login: ``code`` and ``seen``)."""

    outcome: Literal["speaks", "silent", "closed", "foreign", "refused"]
    server: str = ""
    tls_offered: bool | None = None
    seen: str = ""
    code: int | None = None


@dataclass(frozen=True)
class Diagnosis:
    """Why the current credential's login failed, and which check reports it (``db-tls`` or
    ``db-login``). ``tls_settled``: the server answered after the TLS handshake (so TLS itself
    can be judged)."""

    check: Literal["db-tls", "db-login"]
    detail: str
    fix: str
    tls_settled: bool = False


@dataclass
class Doctor:
    """What the checks share: inputs, and the facts earlier checks established."""

    secrets: SecretsManager
    secret_id: str
    settings: Settings
    adapters: AdapterRegistry
    fix: bool = False
    timeout: float = 5.0
    strategy_override: str | None = None
    function_name: str | None = None
    master_secret_id: str | None = None
    lambda_client: Any | None = None
    logs_client: Any | None = None
    # facts
    description: dict[str, Any] | None = None
    describe_error: CheckResult | None = None
    state: SecretState | None = None
    current: DbCredentials | None = None
    current_error: RotationError | None = None
    adapter: DatabaseAdapter | None = None
    strategy: Strategy = "single-user"
    strategy_source: str = "default"
    tcp_ok: bool | None = None
    wire: WireAnswer | None = None
    #: the database check that failed on the root cause ("db-network", "db-protocol", "db-tls"):
    #: the checks after it that need the database skip, naming it, and log in no more
    db_blocker: str | None = None
    login: LoginOutcome | None = None
    diagnosis: Diagnosis | None = None
    #: a secret that disables TLS, refused by MySQL/MariaDB: the same login over TLS
    tls_retry: LoginOutcome | None = None
    function_config: dict[str, Any] | None = None
    function_error: CheckResult | None = None
    masters: dict[str, DbCredentials | RotationError] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return self.state.arn if self.state else self.secret_id

    def step_context(self, token: str) -> StepContext:
        """The steps' own view of the secret, to read versions and the master exactly as the
        function does (``token`` plays the event's ClientRequestToken)."""
        assert self.state is not None
        event = RotationEvent("testSecret", self.arn, token)
        settings = replace(self.settings, strategy=self.strategy)
        return StepContext(event, self.state, settings, self.secrets, self.adapters)

    def try_login(self, credentials: DbCredentials) -> LoginOutcome:
        try:
            adapter = self.adapters.get(credentials.engine)
            with adapter.connect(credentials) as session:
                session.ping()
        except RotationError as exc:
            return LoginOutcome(exc)
        return LoginOutcome()


Check = Callable[[Doctor], CheckResult]


def _result(name: str, status: Status, detail: str, fix: str = "") -> CheckResult:
    return CheckResult(name, status, _redact.redact(detail), _redact.redact(fix))


def _client_error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _client_error_text(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'Unknown')}: {_redact.redact(str(error.get('Message', '')))[:200]}"


# -- Secrets Manager -----------------------------------------------------------------------------

def check_endpoint(d: Doctor) -> CheckResult:
    """Secrets Manager answers (DescribeSecret); any HTTP answer proves the endpoint reachable."""
    name = "secrets-manager-endpoint"
    started = time.perf_counter()
    try:
        d.description = dict(d.secrets.client.describe_secret(SecretId=d.secret_id))
    except ClientError as exc:
        code = _client_error_code(exc)
        if code == "ResourceNotFoundException":
            fix = "check the secret name or ARN, and the region (--region)"
        elif "AccessDenied" in code:
            fix = "allow secretsmanager:DescribeSecret on the secret for the caller"
        else:
            fix = ""
        d.describe_error = _result("secret-describe", "fail",
                                   f"DescribeSecret on {d.secret_id} failed: "
                                   f"{_client_error_text(exc)}", fix)
        return _result(name, "ok", "Secrets Manager answered (with an error, see below)")
    except NoCredentialsError:
        d.describe_error = _result("secret-describe", "fail",
                                   "no AWS credentials found (default credential chain)",
                                   "configure credentials: AWS_PROFILE, `aws configure` or "
                                   "`aws sso login`")
        return _result(name, "skip", "not tried: no AWS credentials")
    except BotoCoreError as exc:
        d.describe_error = _result("secret-describe", "skip",
                                   "Secrets Manager could not be reached")
        return _result(name, "fail", f"cannot reach Secrets Manager: {type(exc).__name__}: "
                       f"{_redact.redact(str(exc))[:200]}", _UNREACHABLE_HINT)
    elapsed = (time.perf_counter() - started) * 1000
    versions = {vid: frozenset(stages) for vid, stages
                in d.description.get("VersionIdsToStages", {}).items()}
    d.state = SecretState(arn=d.description["ARN"], name=d.description.get("Name", ""),
                          rotation_enabled=bool(d.description.get("RotationEnabled", False)),
                          versions=versions)
    return _result(name, "ok", f"DescribeSecret answered in {elapsed:.0f} ms")


def check_describe(d: Doctor) -> CheckResult:
    if d.describe_error is not None:
        return d.describe_error
    assert d.state is not None
    return _result("secret-describe", "ok",
                   f"secret {d.state.name} has {len(d.state.versions)} version(s)")


def check_rotation_config(d: Doctor) -> CheckResult:
    """Rotation is enabled and names a rotation function."""
    name = "rotation-configured"
    if d.description is None:
        return _result(name, "skip", "the secret could not be described")
    function_arn = d.description.get("RotationLambdaARN")
    enabled = bool(d.description.get("RotationEnabled", False))
    rules = d.description.get("RotationRules") or {}
    schedule = rules.get("ScheduleExpression") or (
        f"every {rules['AutomaticallyAfterDays']} days" if "AutomaticallyAfterDays" in rules
        else "no schedule")
    if not function_arn:
        return _result(name, "fail", "no rotation function is configured on the secret",
                       "configure rotation: RotateSecret with RotationLambdaARN (the template's "
                       "RotationSchedule does this)")
    if not enabled:
        return _result(name, "fail", f"rotation points at {function_arn} but is disabled; the "
                       "function refuses to run on a secret whose rotation is not enabled",
                       "enable rotation (RotateSecret with RotationLambdaARN and RotationRules)")
    return _result(name, "ok", f"rotation enabled ({schedule}), function {function_arn}")


def check_kms_decrypt(d: Doctor) -> CheckResult:
    """GetSecretValue of AWSCURRENT succeeds, so KMS lets the caller decrypt the secret."""
    name = "kms-decrypt"
    if d.state is None:
        return _result(name, "skip", "the secret could not be described")
    current_id = d.state.version_with(CURRENT)
    if current_id is None:
        d.current_error = SecretFormatError(f"secret {d.arn} has no AWSCURRENT version",
                                            hint="store the credential with PutSecretValue")
        return _result(name, "skip", "the secret has no AWSCURRENT version")
    kms_key = (d.description or {}).get("KmsKeyId") or "aws/secretsmanager (AWS managed key)"
    try:
        d.current = d.step_context(current_id).current()
    except SecretFormatError as exc:  # the value was decrypted, only its format is wrong
        d.current_error = exc
        return _result(name, "ok", f"GetSecretValue decrypted AWSCURRENT (key {kms_key})")
    except AwsPermissionError as exc:
        d.current_error = exc
        if exc.code == "DecryptionFailure" or "KMS" in exc.message:
            fix = (f"allow kms:Decrypt on key {kms_key} for the function's role (and the "
                   "caller); the key policy must allow it too")
        else:
            fix = "allow secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key)"
        return _result(name, "fail", str(exc.message), fix)
    except (AwsError, RotationTimeoutError) as exc:
        d.current_error = exc
        return _result(name, "fail", exc.message, exc.hint)
    return _result(name, "ok", f"GetSecretValue decrypted AWSCURRENT (key {kms_key}; checked "
                   "with the caller's permissions, not the function role's)")


def _resolve_strategy(d: Doctor) -> None:
    env = (d.function_config or {}).get("Environment", {}).get("Variables", {})
    if d.strategy_override:
        d.strategy, d.strategy_source = _strategy(d.strategy_override), "given"
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
            return _result(name, "fail", d.current_error.message, d.current_error.hint)
        return _result(name, "skip", "the current value could not be read")
    _resolve_strategy(d)
    creds = d.current
    try:
        d.adapter = d.adapters.get(creds.engine)
    except RotationError as exc:
        d.current_error = exc
        return _result(name, "fail", exc.message, exc.hint)
    if d.strategy == "alternating-users" and not creds.masterarn:
        return _result(name, "fail", f"key `masterarn` is missing in secret {d.arn} (strategy "
                       f"alternating-users, {d.strategy_source})",
                       "add `masterarn`: the ARN of a secret holding a user that can create "
                       "users and grant privileges")
    if d.strategy == "dual-password":
        try:
            strategies.check_dual_password_support(d.adapter, creds.engine, d.arn)
        except RotationError as exc:
            return _result(name, "fail", f"{exc.message} (strategy dual-password, "
                           f"{d.strategy_source})", exc.hint)
    # TLS switched off by the secret is db-tls's to judge (one finding, reported once there).
    sslmode = f"sslmode {creds.sslmode}" + (" (`ssl`: false)" if creds.ssl_opt_out else "")
    detail = (f"engine {creds.engine}, user {creds.username!r} on {creds.host}:{creds.port}, "
              f"{sslmode}, strategy {d.strategy} ({d.strategy_source})")
    if d.strategy == "single-user" and creds.masterarn:
        return _result(name, "warn", f"{detail}; the secret has `masterarn` but the strategy is "
                       f"single-user ({d.strategy_source}); it is ignored",
                       "set ROTATION_STRATEGY=alternating-users on the function if you meant "
                       "alternating users")
    return _result(name, "ok", detail)


# -- the database --------------------------------------------------------------------------------

def _fail_db(d: Doctor, name: str, detail: str, fix: str) -> CheckResult:
    """A failed database check: the checks after it that need the database skip, naming it."""
    d.db_blocker = name
    return _result(name, "fail", detail, fix)


def _blocked(d: Doctor, name: str) -> CheckResult | None:
    """The skip for a database check that cannot run: no credential, or an earlier failure."""
    if d.current is None or d.adapter is None:
        return _result(name, "skip", "no usable current credential (see secret-format)")
    if d.db_blocker is not None:
        return _result(name, "skip", f"not tried: see {d.db_blocker}")
    return None


def check_db_network(d: Doctor) -> CheckResult:
    """A TCP connection to host:port opens within the timeout."""
    name = "db-network"
    if (blocked := _blocked(d, name)) is not None:
        return blocked
    assert d.current is not None
    host, port = d.current.host, d.current.port
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        d.tcp_ok = False
        return _fail_db(d, name, f"cannot resolve host {host!r} from here",
                        "check `host` in the secret; a private endpoint resolves only inside its "
                        "VPC (enable DNS resolution/hostnames there)")
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=d.timeout):
            pass
    except TimeoutError:
        d.tcp_ok = False
        return _fail_db(d, name, f"no answer from {host}:{port} within {d.timeout:g} s "
                        "(packets dropped: typical of a security group or network ACL)",
                        _NETWORK_HINT)
    except ConnectionRefusedError:
        d.tcp_ok = False
        return _fail_db(d, name, f"{host}:{port} refused the connection (nothing listens "
                        "there: wrong port, or the database is down)", _NETWORK_HINT)
    except OSError as exc:
        d.tcp_ok = False
        return _fail_db(d, name, f"cannot connect to {host}:{port}: "
                        f"{exc.strerror or type(exc).__name__}", _NETWORK_HINT)
    d.tcp_ok = True
    elapsed = (time.perf_counter() - started) * 1000
    return _result(name, "ok", f"TCP connect to {host}:{port} in {elapsed:.0f} ms (from this "
                   "machine)")


# Wire probes: each opens one connection, sends no credential, reads what the server says about
# itself, and hangs up; no login is attempted, so no server counts a failed one. PostgreSQL waits
# for the client: the probe sends SSLRequest, which every PostgreSQL server (and PgBouncer, RDS
# Proxy) answers with one byte, S or N; after S it completes a TLS handshake (nothing verified,
# nothing sent over it), after which the server closes without logging an error. MySQL speaks
# first: a greeting packet (protocol 10, the version, the capability flags, which say whether it
# offers TLS), or an error packet when it refuses the client outright. Hanging up after the
# greeting counts as one aborted connect for this host, as for any client that gives up before
# logging in (max_connect_errors); the login that follows, when it works, resets that count.

_PG_SSL_REQUEST = struct.pack("!II", 8, 80877103)
_MYSQL_CLIENT_SSL = 0x0800
_MYSQL_MAX_GREETING = 4096
_PROTOCOL_NAMES = {"postgres": "PostgreSQL", "mysql": "MySQL"}
_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}


def _shown_bytes(data: bytes, limit: int = 40) -> str:
    """The first bytes a port sent, printable (others as '.'), cut at the first line end."""
    text = "".join(chr(b) if 32 <= b < 127 else "\n" if b in (10, 13) else "." for b in
                   data[:limit])
    return text.split("\n", 1)[0] or text.replace("\n", ".")


def _recv_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    """Up to ``size`` bytes; fewer when the peer hangs up. TimeoutError past ``deadline``."""
    data = b""
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _mysql_greeting(data: bytes, *, partial: bool = False) -> WireAnswer | None:
    """A MySQL greeting or pre-login error packet (header included), or None. ``partial``:
    accept a packet cut short (to recognise a greeting among bytes read for another protocol)."""
    if len(data) < 5:
        return None
    length, sequence = int.from_bytes(data[:3], "little"), data[3]
    payload = data[4:4 + length]
    if sequence != 0 or not 0 < length <= _MYSQL_MAX_GREETING or (
            len(payload) < length and not partial):
        return None
    if payload[0] == 0xFF and length >= 3:  # ERR_Packet: errno, then the message
        code = int.from_bytes(payload[1:3], "little")
        message = payload[3:]
        if message[:1] == b"#":
            message = message[6:]
        return WireAnswer("refused", "MySQL", seen=message.decode("utf-8", "replace")[:200],
                          code=code)
    if payload[0] != 10 or b"\0" not in payload[1:]:
        return None
    version_bytes, _, rest = payload[1:].partition(b"\0")
    try:
        version = version_bytes.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not version[:1].isdigit() or not version.isprintable():
        return None
    if version.startswith("5.5.5-") and "mariadb" in version.lower():
        version = version[len("5.5.5-"):]
    flavour = "MariaDB" if "mariadb" in version.lower() else "MySQL"
    number = re.match(r"[\d.]+", version)
    caps_at = 4 + 8 + 1  # thread id, first part of the scramble, filler
    tls = (bool(int.from_bytes(rest[caps_at:caps_at + 2], "little") & _MYSQL_CLIENT_SSL)
           if len(rest) >= caps_at + 2 else None)
    return WireAnswer("speaks", f"{flavour} {number.group(0) if number else version}",
                      tls_offered=tls)


def probe_postgres(host: str, port: int, timeout: float) -> WireAnswer:
    """Send SSLRequest; PostgreSQL answers S (TLS offered) or N (no TLS) and nothing more."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(_PG_SSL_REQUEST)
            answer = sock.recv(1024)
        except TimeoutError:
            return WireAnswer("silent")
        except (BrokenPipeError, ConnectionResetError):
            return WireAnswer("closed")
        if not answer:
            return WireAnswer("closed")
        if answer in (b"S", b"N"):
            if answer == b"S":
                _finish_tls_handshake(sock, host, deadline)
            return WireAnswer("speaks", "PostgreSQL", tls_offered=answer == b"S")
        if answer[:1] == b"E" and len(answer) > 5 and b"FATAL" in answer:
            return WireAnswer("speaks", "PostgreSQL")  # a server too old to know SSLRequest
        greeting = _mysql_greeting(answer, partial=True)
        if greeting is not None and greeting.outcome == "speaks":
            return WireAnswer("foreign", seen=f"with a {greeting.server} greeting")
        return WireAnswer("foreign", seen=repr(_shown_bytes(answer)))


def _finish_tls_handshake(sock: socket.socket, host: str, deadline: float) -> None:
    """Complete the handshake PostgreSQL expects after S, then close it cleanly."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # nothing is sent over it: only a polite goodbye
    try:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        with context.wrap_socket(sock, server_hostname=host) as tls:
            tls.unwrap()
    except (OSError, ValueError):
        pass


def probe_mysql(host: str, port: int, timeout: float) -> WireAnswer:
    """Read the greeting MySQL sends first."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            head = _recv_exactly(sock, 4, deadline)
            if len(head) < 4:
                return WireAnswer("closed") if not head else \
                    WireAnswer("foreign", seen=repr(_shown_bytes(head)))
            length = int.from_bytes(head[:3], "little")
            body = (_recv_exactly(sock, length, deadline)
                    if head[3] == 0 and 0 < length <= _MYSQL_MAX_GREETING else b"")
        except TimeoutError:
            return WireAnswer("silent")
        except ConnectionResetError:
            return WireAnswer("closed")
        data = head + body
        if len(data) == 4:  # not a greeting's header: show what came, as far as it came
            with contextlib.suppress(OSError):
                sock.settimeout(0.2)
                data += sock.recv(64)
        return _mysql_greeting(data) or WireAnswer("foreign", seen=repr(_shown_bytes(data)))


_WIRE_PROBES: Mapping[str, Callable[[str, int, float], WireAnswer]] = {
    "postgres": probe_postgres,
    "mysql": probe_mysql,
}
_MYSQL_REFUSAL_FIX: Mapping[int, str] = {
    1129: "the server blocked this host after too many interrupted connections: run "
          "`FLUSH HOSTS` (mysqladmin flush-hosts), and raise max_connect_errors",
    1130: "create the account for the host the function connects from (for example "
          "'user'@'%'), or connect from an allowed address",
    1040: "the server has no connection left (max_connections): find who holds them, or raise "
          "the limit",
}


def check_db_protocol(d: Doctor) -> CheckResult:
    """The port speaks the engine's protocol (a probe that sends no credential), and says
    whether it offers TLS. A port that accepts TCP and then says nothing, or says something
    else, fails here: the rotation cannot work against it."""
    name = "db-protocol"
    if (blocked := _blocked(d, name)) is not None:
        return blocked
    assert d.current is not None
    creds = d.current
    probe = _WIRE_PROBES.get(creds.family)
    if probe is None:
        return _result(name, "skip", f"no protocol probe for engine {creds.engine}: db-login "
                       "judges the connection")
    where = f"{creds.host}:{creds.port}"
    protocol = _PROTOCOL_NAMES[creds.family]
    check_port = (f"check `port` (and `engine`) in the secret: {protocol} listens on "
                  f"{_DEFAULT_PORTS[creds.family]} by default; find out what listens on {where}")
    try:
        d.wire = wire = probe(creds.host, creds.port, d.timeout)
    except OSError as exc:
        return _fail_db(d, name, f"cannot open a second connection to {where}: "
                        f"{exc.strerror or type(exc).__name__}", _NETWORK_HINT)
    if wire.outcome == "silent":
        asked = ("did not answer PostgreSQL's SSLRequest" if creds.family == "postgres" else
                 "sent no MySQL greeting (a MySQL server speaks first)")
        return _fail_db(d, name, f"{where} accepts TCP connections but never answered: it "
                        f"{asked} within {d.timeout:g} s. Either this port does not speak "
                        f"{protocol}, or the server is hung",
                        check_port + " (a proxy or load balancer without a healthy target "
                        "accepts connections and stays silent)")
    if wire.outcome == "closed":
        return _fail_db(d, name, f"{where} accepted the connection and closed it without a "
                        f"word: this port does not speak {protocol}, or a proxy in front of it "
                        "has no database to forward to", check_port)
    if wire.outcome == "foreign":
        return _fail_db(d, name, f"{where} answered {wire.seen}, which is not {protocol}'s "
                        f"protocol: this port does not speak {protocol}", check_port)
    if wire.outcome == "refused":
        return _fail_db(d, name, f"the server at {where} speaks MySQL but refuses this client "
                        f"before any login: error {wire.code}: {wire.seen}",
                        _MYSQL_REFUSAL_FIX.get(wire.code or 0, "see the server's error log"))
    tls = {True: "TLS offered", False: "TLS not offered", None: "TLS unknown"}[wire.tls_offered]
    return _result(name, "ok", f"{wire.server} answers on {where} ({tls})")


def _ensure_login(d: Doctor) -> LoginOutcome | None:
    """The current credential's one login, once the path to the database is known to work."""
    if (d.login is None and d.current is not None and d.adapter is not None and d.tcp_ok
            and d.db_blocker is None):
        d.login = d.try_login(d.current)
    return d.login


def _diagnosis(d: Doctor) -> Diagnosis | None:
    """Why the current credential's login failed (None when it logged in or was not tried)."""
    login = _ensure_login(d)
    if d.diagnosis is None and login is not None and login.error is not None:
        d.diagnosis = _diagnose(d, login.error)
    return d.diagnosis


_PG_NO_HBA_ENTRY = re.compile(r"no pg_hba\.conf entry|pg_hba\.conf rejects connection")
_NO_TLS_AT_SERVER = re.compile(r"does not support SSL|does not offer TLS", re.IGNORECASE)
_HOST_MISMATCH = re.compile(r"does not match host name|Hostname mismatch|IP address mismatch",
                            re.IGNORECASE)
_NOT_VERIFIED = re.compile(r"certificate verif|self[- ]signed|local issuer|unknown ca|"
                           r"root certificate", re.IGNORECASE)
_DB_MISSING = re.compile(r'database "[^"]*" does not exist|database .* does not exist',
                         re.IGNORECASE)
_PASSWORD_REFUSED = re.compile(r"password authentication failed|access denied for user",
                               re.IGNORECASE)
_TLS_OFF_FIX = ('remove `"ssl": false` (or `"sslmode": "disable"`) from the secret: the default, '
                "verify-full, encrypts the connection and verifies the server")


def _errno(error: RotationError) -> str | None:
    return error.sqlstate if isinstance(error, DatabaseError) else None


def _diagnose(d: Doctor, error: RotationError) -> Diagnosis:
    """Name the real cause of a failed login, and the check that owns it."""
    assert d.current is not None
    creds = d.current
    where = f"{creds.host}:{creds.port}"
    server = d.wire.server if d.wire is not None and d.wire.server else f"the {creds.engine} server"
    text = error.message
    # 1. The secret disables TLS and the server insists on it.
    if creds.sslmode == "disable" and (evidence := _tls_required(d, error)):
        return Diagnosis("db-tls", f"the server requires TLS and the secret disables it "
                         f"(`ssl`: false / sslmode disable): {server} at {where} refused the "
                         f"unencrypted login ({evidence})", _TLS_OFF_FIX)
    # 2. pg_hba.conf has no line for this user, database and address (with TLS on): a login
    # refusal, whatever words the adapter chose for it.
    if _PG_NO_HBA_ENTRY.search(text):
        fix = (error.hint if isinstance(error, LoginError) and error.hint else
               "add (or fix) a `hostssl` line in pg_hba.conf that lets this user reach this "
               "database from the function's address range, then reload the server")
        return Diagnosis("db-login", f"AWSCURRENT does not log in as {creds.username!r}: "
                         f"{text}", fix, tls_settled=True)
    # 3. The secret wants TLS and the server has none.
    if creds.sslmode != "disable" and (
            (d.wire is not None and d.wire.tls_offered is False)
            or _NO_TLS_AT_SERVER.search(text) or _errno(error) == "2026"):
        return Diagnosis("db-tls", f"{server} at {where} does not offer TLS, and the secret's "
                         f"sslmode {creds.sslmode} requires it (no password was sent)",
                         "turn TLS on at the server (PostgreSQL: ssl = on with a certificate; "
                         "MySQL/MariaDB: ssl_cert and ssl_key); rotation never falls back to "
                         "plaintext")
    if isinstance(error, TlsError):
        return _diagnose_tls(d, error, where)
    return _diagnose_login(d, error, where, server)


def _tls_required(d: Doctor, error: RotationError) -> str | None:
    """Evidence that the server refused a login because it came without TLS (or None)."""
    assert d.current is not None
    creds = d.current
    text = error.message
    if "no encryption" in text and _PG_NO_HBA_ENTRY.search(text):
        return 'pg_hba.conf has no entry for unencrypted connections: "no encryption"'
    if isinstance(error, TlsError) or _errno(error) == "3159":
        return text  # with TLS off, a TLS error is the server asking for it
    if (creds.family == "mysql" and isinstance(error, LoginError)
            and (d.wire is None or d.wire.tls_offered is not False)):
        # MySQL and MariaDB (before 11.4) answer a plaintext login under
        # require_secure_transport with the same 1045 as a wrong password: ask again over TLS.
        if d.tls_retry is None:
            d.tls_retry = d.try_login(replace(creds, sslmode="require", ssl_opt_out=False))
        if d.tls_retry.ok:
            return "the same credential logs in over TLS"
    return None


def _ca_bundle_problem(path: str) -> str | None:
    """What is wrong with the CA bundle file itself (None: a readable PEM with certificates)."""
    file = Path(path)
    if not file.exists():
        return "does not exist"
    if not file.is_file():
        return "is not a file"
    try:
        data = file.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return "holds no PEM certificate (a DER file? convert it: openssl x509 -inform der)"
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError) as exc:
        return f"is not a valid PEM bundle ({type(exc).__name__})"
    return None


def _system_trust_store() -> str:
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.openssl_cafile or "the system trust store"


def _diagnose_tls(d: Doctor, error: TlsError, where: str) -> Diagnosis:
    assert d.current is not None
    creds = d.current
    bundle = d.settings.ca_bundle
    fix_ca = ("pass --ca-bundle with the PEM of the CA that signed the server's certificate "
              "(for RDS and Aurora, AWS's RDS CA bundle); the function reads the same file from "
              "ROTATION_CA_BUNDLE")
    verifying = creds.sslmode in ("verify-full", "verify-ca")
    if verifying and bundle and (problem := _ca_bundle_problem(bundle)):
        return Diagnosis("db-tls", f"the CA bundle {bundle} given with --ca-bundle (or "
                         f"ROTATION_CA_BUNDLE) {problem}: the certificate of {where} cannot be "
                         "verified, so no login was tried", fix_ca)
    if verifying and _HOST_MISMATCH.search(error.message):
        return Diagnosis("db-tls", f"the certificate of {where} does not name host "
                         f"{creds.host!r} (sslmode {creds.sslmode} checks it): {error.message}",
                         "set `host` in the secret to a name on the certificate (the instance "
                         "or cluster endpoint, not an IP address or a CNAME of your own), or "
                         'use "sslmode": "verify-ca"')
    if verifying and "expired" in error.message.lower():
        return Diagnosis("db-tls", f"the certificate of {where} has expired (or this machine's "
                         f"clock is wrong): {error.message}",
                         "renew the server's certificate (on RDS: modify the instance's CA)")
    if verifying and _NOT_VERIFIED.search(error.message):
        store = (f"{bundle} (the CA bundle given with --ca-bundle or ROTATION_CA_BUNDLE)"
                 if bundle else f"this machine's trust store ({_system_trust_store()}; no "
                 "--ca-bundle or ROTATION_CA_BUNDLE was given)")
        return Diagnosis("db-tls", f"the certificate of {where} is not signed by a CA in "
                         f"{store}: {error.message}", fix_ca)
    return Diagnosis("db-tls", error.message, error.hint or fix_ca)


def _diagnose_login(d: Doctor, error: RotationError, where: str, server: str) -> Diagnosis:
    assert d.current is not None
    creds = d.current
    user = creds.username
    if d.tls_retry is not None and isinstance(d.tls_retry.error, LoginError):
        error = d.tls_retry.error  # refused over TLS too: that answer has the real cause
    text = error.message
    if isinstance(error, PasswordRefusedError) or (
            isinstance(error, LoginError) and _PASSWORD_REFUSED.search(text)):
        fix = ("the password was changed outside rotation: set the database password to the "
               "AWSCURRENT value (or store the working one with put-secret-value), and check "
               "that the user exists for the host the function connects from")
        if creds.family == "postgres":
            fix += ("; on PostgreSQL a password stored as md5 cannot log in where pg_hba.conf "
                    "requires scram-sha-256 (see pg-stored-method)")
        return Diagnosis("db-login", f"AWSCURRENT does not log in as {user!r}: {text}", fix,
                         tls_settled=True)
    if isinstance(error, (LoginError, PrivilegeError)):
        return Diagnosis("db-login", f"AWSCURRENT does not log in as {user!r}: {text}",
                         error.hint, tls_settled=True)
    if _DB_MISSING.search(text) or _errno(error) == "1049":
        return Diagnosis("db-login", f"database {creds.dbname!r} does not exist on {where} "
                         f"({text})", "fix `dbname` in the secret, or create the database",
                         tls_settled=True)
    answered = (f"{server} answered on {where}, but " if d.wire is not None
                and d.wire.outcome == "speaks" else "")
    if isinstance(error, DbTimeoutError):
        return Diagnosis("db-login", f"{answered}the login as {user!r} did not finish within "
                         f"{d.timeout:g} s: {text}",
                         "the server is overloaded or stuck (check its load and connection "
                         "limits); run the doctor with a longer --timeout to tell slow from "
                         "stuck")
    return Diagnosis("db-login", f"{answered}the login as {user!r} failed: {text}",
                     error.hint or "see the server's log for this connection")


def check_db_tls(d: Doctor) -> CheckResult:
    """TLS handshake and certificate verification, as the adapter does them for a login."""
    name = "db-tls"
    if (blocked := _blocked(d, name)) is not None:
        return blocked
    assert d.current is not None
    creds = d.current
    diagnosis = _diagnosis(d)
    if diagnosis is not None and diagnosis.check == name:
        return _fail_db(d, name, diagnosis.detail, diagnosis.fix)
    if diagnosis is not None and not diagnosis.tls_settled:
        return _result(name, "skip", "not judged: the login failed before TLS was settled "
                       "(see db-login)")
    ca = d.settings.ca_bundle or f"this machine's trust store ({_system_trust_store()})"
    if creds.sslmode == "disable":
        return _result(name, "warn", "TLS is disabled by the secret (`ssl`: false or sslmode "
                       "disable): the password crosses the network unencrypted",
                       "remove `ssl: false` / set sslmode verify-full and give the CA in "
                       "ROTATION_CA_BUNDLE")
    if creds.sslmode == "require":
        return _result(name, "warn", "TLS is on but the certificate is not verified (sslmode "
                       "require)", "use sslmode verify-full with ROTATION_CA_BUNDLE")
    if creds.sslmode == "verify-ca":
        return _result(name, "warn", f"certificate chain verified against {ca}, host name not "
                       "checked (sslmode verify-ca)", "use sslmode verify-full")
    return _result(name, "ok", f"TLS handshake done, certificate verified against {ca} for "
                   f"host {creds.host}")


def check_db_login(d: Doctor) -> CheckResult:
    """The AWSCURRENT credential logs in and runs a query. Past a working network path, any
    failure here is a failure (with its cause), never a skip."""
    name = "db-login"
    if (blocked := _blocked(d, name)) is not None:
        return blocked
    assert d.current is not None
    diagnosis = _diagnosis(d)
    if diagnosis is None:
        return _result(name, "ok", f"AWSCURRENT logs in as {d.current.username!r}")
    return _result(name, "fail", diagnosis.detail, diagnosis.fix)


def check_staging_labels(d: Doctor) -> CheckResult:
    """No AWSPENDING left on a version other than AWSCURRENT (RotateSecret refuses to start).
    With ``fix``: remove it, only once a login proved that AWSCURRENT is the credential in use."""
    name = "staging-labels"
    if d.state is None:
        return _result(name, "skip", "the secret could not be described")
    current_id = d.state.version_with(CURRENT)
    stuck = [vid for vid, stages in d.state.versions.items()
             if PENDING in stages and CURRENT not in stages]
    if not stuck:
        same = current_id is not None and PENDING in d.state.versions.get(current_id, ())
        return _result(name, "ok", "AWSPENDING sits on the AWSCURRENT version (a finished "
                       "rotation)" if same else "no rotation in progress (no AWSPENDING)")
    stuck_id = stuck[0]
    where = (f"AWSPENDING is on version {stuck_id[:8]}, AWSCURRENT on "
             f"{(current_id or 'none')[:8]}: a rotation did not finish, and RotateSecret "
             "refuses to start another (\"A previous rotation isn't complete\")")
    if not d.fix:
        return _result(name, "fail", where,
                       "run `rotation doctor SECRET_ID --fix`: it removes the label once a login "
                       "confirms AWSCURRENT works; see last-rotation for why it stopped")
    login = _ensure_login(d)
    if login is not None and login.ok and current_id is not None:
        try:
            d.secrets.move_stage(d.arn, PENDING, to_version=None, from_version=stuck_id)
        except RotationError as exc:
            return _result(name, "fail", f"{where}; removing the label failed: {exc.message}",
                           exc.hint or "allow secretsmanager:UpdateSecretVersionStage")
        return _result(name, "ok", f"fixed: removed AWSPENDING from version {stuck_id[:8]} "
                       "after AWSCURRENT logged in; the next rotation can start")
    return _refuse_fix(d, name, where, stuck_id, current_id, login)


def _refuse_fix(d: Doctor, name: str, where: str, stuck_id: str, current_id: str | None,
                login: LoginOutcome | None) -> CheckResult:
    """Why the label stays: AWSCURRENT could not be shown to work."""
    diagnosis = _diagnosis(d)
    if (login is None or login.error is None or d.db_blocker is not None
            or diagnosis is None or not isinstance(login.error, LoginError)):
        owner = d.db_blocker or (diagnosis.check if diagnosis else None)
        return _result(name, "fail", where + "; not fixed: cannot confirm that AWSCURRENT works "
                       "(the database could not be reached, or the secret is unusable), so the "
                       "labels stay as they are",
                       f"fix what {owner or 'secret-format'} reports, then run `rotation doctor "
                       "--fix` again")
    if _pending_logs_in(d, stuck_id):
        return _result(name, "fail", where + "; not fixed: AWSCURRENT does not log in but "
                       "AWSPENDING does, so the database already uses the pending password "
                       "(setSecret ran, finishSecret did not). Removing AWSPENDING would lose "
                       "the working credential",
                       "finish the rotation instead: aws secretsmanager "
                       f"update-secret-version-stage --secret-id {d.arn} --version-stage "
                       f"AWSCURRENT --move-to-version-id {stuck_id} --remove-from-version-id "
                       f"{current_id or '<current>'}")
    why = ("the password was changed outside rotation"
           if isinstance(login.error, PasswordRefusedError) else "see db-login")
    return _result(name, "fail", where + "; not fixed: neither AWSCURRENT nor AWSPENDING logs "
                   f"in ({why})",
                   "set the database password to the AWSCURRENT value, then run `rotation "
                   "doctor --fix` again")


def _pending_logs_in(d: Doctor, stuck_id: str) -> bool:
    """Whether the pending version's credential logs in (False when it holds no usable value,
    as the service's value-less placeholder)."""
    try:
        pending = d.step_context(stuck_id).pending()
    except RotationError:
        return False
    return d.try_login(pending).ok


# -- PostgreSQL specifics ------------------------------------------------------------------------

def check_pg_libpq(d: Doctor) -> CheckResult:
    """The libpq the driver loads does SCRAM-SHA-256 (libpq 10+)."""
    name = "pg-libpq"
    if d.current is None or d.current.family != "postgres":
        return _result(name, "skip", "not a PostgreSQL secret")
    try:
        import psycopg
    except ImportError:
        return _result(name, "fail", "psycopg is not installed here",
                       "pip install 'rotation[postgres]' (the function needs the postgres layer)")
    version = psycopg.pq.version()
    # libpq numbers versions MMmmpp before 10 (90600 = 9.6) and MM00mm from 10 (180000 = 18.0)
    shown = (f"{version // 10000}.{version % 10000}" if version >= MIN_LIBPQ_FOR_SCRAM
             else f"{version // 10000}.{version // 100 % 100}")
    if version < MIN_LIBPQ_FOR_SCRAM:
        return _result(name, "fail", f"psycopg uses libpq {shown}, which cannot do "
                       "SCRAM-SHA-256", "install psycopg[binary] (bundles a current libpq)")
    return _result(name, "ok", f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}) uses "
                   f"libpq {shown} on this machine: SCRAM-SHA-256 capable")


def _pg_rows(d: Doctor, creds: DbCredentials, query: Any) -> list[tuple[Any, ...]]:
    """Run one read-only query as ``creds`` (a separate, short connection, every wait bounded
    by the adapter's timeouts)."""
    from psycopg import sql

    if isinstance(query, str):
        query = sql.SQL(query)  # a plain string would be composed as a literal
    with d.adapters.get(creds.engine).connect(creds) as session:
        fetch = getattr(session, "fetch", None)
        if fetch is None:
            raise DatabaseError(f"the {creds.engine} adapter's session has no fetch()")
        rows: list[tuple[Any, ...]] = fetch(query)
        return rows


def check_pg_password_encryption(d: Doctor) -> CheckResult:
    """``SHOW password_encryption``: how the server stores passwords set as plaintext."""
    name = "pg-password-encryption"
    if d.current is None or d.current.family != "postgres":
        return _result(name, "skip", "not a PostgreSQL secret")
    creds = _pg_reader(d)
    if creds is None:
        return _result(name, "skip", _no_login(d))
    try:
        rows = _pg_rows(d, creds, "SHOW password_encryption")
    except DatabaseError as exc:
        return _result(name, "skip", f"cannot read password_encryption: {exc}")
    value = str(rows[0][0]) if rows else "?"
    if value == "scram-sha-256":
        return _result(name, "ok", "password_encryption = scram-sha-256")
    return _result(name, "warn", f"password_encryption = {value}: passwords set by others "
                   "(psql \\password, ALTER ROLE ... PASSWORD) are stored as " + value +
                   "; rotation itself always sends a SCRAM-SHA-256 verifier",
                   "set password_encryption = 'scram-sha-256' in the parameter group")


def _no_login(d: Doctor) -> str:
    """Why the checks that read the server have no login to read with."""
    if d.db_blocker is not None:
        return f"no login: see {d.db_blocker}"
    if d.adapter is None:
        return "no login: see secret-format"
    if d.login is not None and not d.login.ok:
        return "no login: AWSCURRENT does not log in (see db-login)"
    return "no login"


def _pg_reader(d: Doctor) -> DbCredentials | None:
    """A credential to read the server with: the current one when it logs in, else a given
    master. None when the database cannot be reached at all."""
    if d.db_blocker is not None or d.adapter is None:
        return None
    login = _ensure_login(d)
    if login is not None and login.ok and d.current is not None:
        return d.current
    return _master_credentials(d)


# Only the method is selected, never the verifier itself.
_STORED_METHOD = ("SELECT CASE WHEN rolpassword IS NULL THEN 'none' "
                  "WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram-sha-256' "
                  "WHEN rolpassword LIKE 'md5%' THEN 'md5' ELSE 'other' END "
                  "FROM pg_authid WHERE rolname = {}")
_HBA_METHODS = ("SELECT DISTINCT auth_method FROM pg_hba_file_rules "
                "WHERE type IN ('host', 'hostssl') AND error IS NULL")


def check_pg_stored_method(d: Doctor) -> CheckResult:
    """How the role's password is stored (pg_authid: needs superuser; falls back gracefully)."""
    name = "pg-stored-method"
    if d.current is None or d.current.family != "postgres":
        return _result(name, "skip", "not a PostgreSQL secret")
    if d.db_blocker is not None or d.adapter is None:  # the failure upstream is the one to fix
        return _result(name, "skip", _no_login(d))
    user = d.current.username
    readers = [c for c in (_pg_reader(d), _master_credentials(d)) if c is not None]
    login_failed = d.login is None or not d.login.ok
    if not readers:
        return _result(name, "skip", _no_login(d) + "; to read the role's stored password method "
                       "from pg_authid, pass --master-secret with a superuser (a password stored "
                       "as md5 fails like a wrong one where pg_hba.conf requires scram-sha-256)")
    method: str | None = None
    hba: set[str] | None = None
    from psycopg import sql

    for creds in dict.fromkeys(readers):
        try:
            rows = _pg_rows(d, creds, sql.SQL(_STORED_METHOD).format(sql.Literal(user)))
        except DatabaseError:
            continue
        method = str(rows[0][0]) if rows else None
        if method is None:
            return _result(name, "fail", f"role {user!r} does not exist on the server",
                           "create the role, or fix `username` in the secret")
        try:
            hba = {str(r[0]) for r in _pg_rows(d, creds, _HBA_METHODS)}
        except DatabaseError:
            hba = None
        break
    if method is None and login_failed:
        return _result(name, "skip", "no login that can read pg_authid: AWSCURRENT does not log "
                       "in (see db-login), and the master could not read it (it needs a "
                       "superuser; see master-secret)")
    if method is None:
        return _result(name, "warn", "cannot read pg_authid (it needs a superuser; on RDS nobody "
                       "can): the role's stored password method is unknown",
                       "pass --master-secret with a superuser credential to check it")
    if method == "scram-sha-256":
        return _result(name, "ok", f"role {user!r} has a SCRAM-SHA-256 verifier")
    if method == "md5":
        scram_only = hba is not None and "md5" not in hba and "password" not in hba
        if scram_only or login_failed:
            why = (f"pg_hba.conf allows only {', '.join(sorted(hba or ()))} for TCP logins"
                   if scram_only else "its login fails (pg_hba.conf most likely requires "
                   "scram-sha-256)")
            return _result(name, "fail", f"role {user!r} has an md5-stored password, and {why}: "
                           "it cannot log in with a password until it gets a SCRAM-SHA-256 "
                           "verifier",
                           "as an admin, with password_encryption = 'scram-sha-256', set the "
                           "role's password again to the AWSCURRENT value (ALTER ROLE ... "
                           "PASSWORD), then rotate: rotation always stores SCRAM verifiers")
        return _result(name, "warn", f"role {user!r} has an md5-stored password (pg_hba.conf "
                       "still allows md5); the next rotation replaces it with SCRAM-SHA-256",
                       "rotate the secret, then require scram-sha-256 in pg_hba.conf")
    return _result(name, "warn", f"role {user!r}: stored password method is {method}")


# -- alternating users ---------------------------------------------------------------------------

def _master_credentials(d: Doctor, master_id: str | None = None) -> DbCredentials | None:
    """A master credential, read the way the function reads ``masterarn`` (RDS's managed master
    secret holds only user and password). Default: ``--master-secret``, else ``masterarn``."""
    if d.current is None or d.state is None:
        return None
    master_id = master_id or d.master_secret_id or d.current.masterarn
    if not master_id:
        return None
    if master_id not in d.masters:
        try:
            d.masters[master_id] = d.step_context(d.state.version_with(CURRENT) or "").master(
                replace(d.current, masterarn=master_id))
        except RotationError as exc:
            d.masters[master_id] = exc
    master = d.masters[master_id]
    return master if isinstance(master, DbCredentials) else None


def check_master_secret(d: Doctor) -> CheckResult:
    """The master secret (``masterarn``, else ``--master-secret``) is readable and its
    credential logs in."""
    name = "master-secret"
    if d.current is None:
        return _result(name, "skip", "no usable current credential")
    master_id = d.current.masterarn or d.master_secret_id
    if not master_id:
        return _result(name, "skip", f"{d.strategy} strategy without `masterarn`: no master "
                       "secret needed" if d.strategy != "alternating-users"
                       else "no `masterarn` (see secret-format)")
    # The rotation needs the master only for alternating users, and reads it from `masterarn`;
    # a --master-secret given to diagnose with is the doctor's own: its problems are warnings.
    needed = d.strategy in ("alternating-users", "dual-password") and \
        master_id == d.current.masterarn
    bad: Status = "fail" if needed else "warn"
    unused = "" if needed else (f" (the rotation does not use it, strategy {d.strategy}: only "
                                "the doctor reads with it)")
    master = _master_credentials(d, master_id)
    if master is None:
        error = d.masters.get(master_id)
        text = error.message if isinstance(error, RotationError) else "unreadable"
        hint = error.hint if isinstance(error, RotationError) else ""
        return _result(name, bad, f"master secret {master_id}: {text}{unused}", hint or
                       "allow secretsmanager:GetSecretValue (and kms:Decrypt) on the master "
                       "secret for the function's role")
    if d.adapter is None:
        return _result(name, "skip", f"master secret {master_id} readable; no login tried "
                       "(see secret-format)")
    if d.db_blocker is not None or not d.tcp_ok:
        return _result(name, "skip", f"master secret {master_id} readable; no login tried: see "
                       f"{d.db_blocker or 'db-network'}")
    outcome = d.try_login(master)
    if outcome.error is not None:
        return _result(name, bad, f"master secret readable, but its login fails: "
                       f"{outcome.error.message}{unused}", outcome.error.hint)
    return _result(name, "ok", f"master secret readable; {master.username!r} logs in")


# -- the rotation function -----------------------------------------------------------------------

def _function_name(d: Doctor) -> str | None:
    return d.function_name or (d.description or {}).get("RotationLambdaARN") or None


def load_function(d: Doctor) -> None:
    """GetFunctionConfiguration once; the checks below and the strategy read it."""
    name = _function_name(d)
    if d.lambda_client is None or name is None or d.function_config is not None:
        return
    try:
        d.function_config = dict(d.lambda_client.get_function_configuration(FunctionName=name))
    except ClientError as exc:
        code = _client_error_code(exc)
        if code == "ResourceNotFoundException":
            d.function_error = _result("lambda-runtime", "fail",
                                       f"the rotation function {name} does not exist",
                                       "deploy the function, or point rotation at the right ARN")
        else:  # the function could not be checked: that is not a pass
            d.function_error = _result("lambda-runtime", "fail",
                                       f"cannot read the configuration of {name}: "
                                       f"{_client_error_text(exc)}",
                                       "allow lambda:GetFunctionConfiguration on the function "
                                       "for the caller, or pass --no-function to leave the "
                                       "function unchecked")
    except BotoCoreError as exc:
        d.function_error = _result("lambda-runtime", "fail",
                                   f"cannot reach the Lambda API: {type(exc).__name__}",
                                   "check the region and the network path to Lambda, or pass "
                                   "--no-function to leave the function unchecked")


def check_lambda_runtime(d: Doctor) -> CheckResult:
    """The function's runtime is a supported Python (deprecation table above)."""
    name = "lambda-runtime"
    if d.lambda_client is None:
        return _result(name, "skip", "no Lambda client")
    fname = _function_name(d)
    if fname is None:
        return _result(name, "skip", "no function: pass --function-name, or configure rotation")
    if d.function_error is not None:
        return d.function_error
    config = d.function_config or {}
    runtime = str(config.get("Runtime") or "")
    if not runtime:
        return _result(name, "ok" if config.get("PackageType") == "Image" else "warn",
                       f"{fname} is a container image; its Python is not visible here"
                       if config.get("PackageType") == "Image" else
                       f"{fname} reports no runtime")
    deprecated = PYTHON_RUNTIME_DEPRECATION.get(runtime)
    if not runtime.startswith("python"):
        return _result(name, "warn", f"{fname} runs {runtime}, not Python",
                       "deploy the template (python3.12 or newer)")
    if deprecated is None:
        return _result(name, "ok", f"{fname} runs {runtime}")
    today = datetime.now(UTC).date()
    if deprecated <= today:
        return _result(name, "warn", f"{fname} runs {runtime}, deprecated since {deprecated}: "
                       "no more security patches, and Lambda blocks updates to it soon after",
                       "move to python3.12 or newer (and its matching driver layers)")
    if deprecated - today <= timedelta(days=DEPRECATION_WARNING_DAYS):
        return _result(name, "warn", f"{fname} runs {runtime}, deprecated on {deprecated}",
                       "plan the move to python3.12 or newer")
    return _result(name, "ok", f"{fname} runs {runtime} (supported until {deprecated})")


def check_lambda_concurrency(d: Doctor) -> CheckResult:
    """Reserved concurrency: 0 stops the function; below 10 throttles rotations."""
    name = "lambda-concurrency"
    fname = _function_name(d)
    if d.lambda_client is None or fname is None or d.function_config is None:
        return _result(name, "skip", "the function's configuration is not available")
    try:
        response = d.lambda_client.get_function_concurrency(FunctionName=fname)
    except (ClientError, BotoCoreError) as exc:  # 0 would stop every rotation: not a pass
        text = _client_error_text(exc) if isinstance(exc, ClientError) else type(exc).__name__
        return _result(name, "fail", f"cannot read the reserved concurrency of {fname}: {text}",
                       "allow lambda:GetFunctionConcurrency on the function for the caller, or "
                       "pass --no-function to leave the function unchecked")
    reserved = response.get("ReservedConcurrentExecutions")
    if reserved is None:
        return _result(name, "ok", "no reserved concurrency (uses the account's pool)")
    if reserved == 0:
        return _result(name, "fail", "reserved concurrency is 0: the function never runs",
                       f"raise it to at least {MIN_RESERVED_CONCURRENCY}, or remove it")
    if reserved < MIN_RESERVED_CONCURRENCY:
        return _result(name, "warn", f"reserved concurrency is {reserved}: rotations of "
                       "several secrets, and Secrets Manager's retries, get throttled",
                       f"raise it to at least {MIN_RESERVED_CONCURRENCY}, or remove it")
    return _result(name, "ok", f"reserved concurrency {reserved}")


@dataclass
class _StepSeen:
    outcome: str
    error: dict[str, Any] | None = None


def check_last_rotation(d: Doctor) -> CheckResult:
    """From the function's CloudWatch logs: which steps the last rotation of this secret reached,
    and the error it stopped on (our JSON log lines: step, outcome, error_class, cause, fix)."""
    name = "last-rotation"
    fname = _function_name(d)
    if d.logs_client is None:
        return _result(name, "skip", "no CloudWatch Logs client")
    if fname is None:
        return _result(name, "skip", "no function: pass --function-name, or configure rotation")
    short = fname.split(":function:")[-1].split(":")[0]
    group = ((d.function_config or {}).get("LoggingConfig") or {}).get("LogGroup") \
        or f"/aws/lambda/{short}"
    try:
        events = list(_log_events(d.logs_client, group, d.arn))
    except ClientError as exc:
        return _result(name, "skip", f"cannot read log group {group}: {_client_error_text(exc)}")
    except BotoCoreError as exc:
        return _result(name, "skip", f"cannot reach CloudWatch Logs: {type(exc).__name__}")
    if not events:
        return _result(name, "skip", f"no rotation of this secret logged in {group} in the "
                       f"last {LOG_LOOKBACK_DAYS} days")
    return _summarize_rotation(name, events)


def _log_events(logs: Any, group: str, arn: str) -> Iterator[tuple[int, dict[str, Any]]]:
    start = int((time.time() - LOG_LOOKBACK_DAYS * 86400) * 1000)
    kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start,
                              "filterPattern": json.dumps(arn)}
    for _ in range(20):  # at most 20 pages: the last two weeks of one secret's rotations
        response = logs.filter_log_events(**kwargs)
        for event in response.get("events", []):
            try:
                record = json.loads(event.get("message", ""))
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("step") and \
                    arn in (record.get("secret_arn"), record.get("secret_id")):
                yield int(event.get("timestamp", 0)), record
        token = response.get("nextToken")
        if not token:
            return
        kwargs["nextToken"] = token


def _summarize_rotation(name: str, events: list[tuple[int, dict[str, Any]]]) -> CheckResult:
    events.sort(key=lambda e: e[0])
    last_token = next((r.get("token_prefix") for _, r in reversed(events)
                       if r.get("token_prefix")), None)
    mine = [(t, r) for t, r in events if r.get("token_prefix") == last_token]
    steps: dict[str, _StepSeen] = {}
    last_error: dict[str, Any] | None = None
    for _, record in mine:
        outcome = record.get("outcome")
        if not outcome:
            continue
        seen = _StepSeen(str(outcome), record if outcome == "failed" else None)
        steps[str(record["step"])] = seen
        if outcome == "failed":
            last_error = record
    when = datetime.fromtimestamp(mine[-1][0] / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    reached = ", ".join(f"{step} {seen.outcome}" for step, seen in steps.items()) or "no step"
    head = f"last rotation (version {last_token}, {when}): {reached}"
    finished = steps.get("finishSecret")
    if finished is not None and finished.outcome != "failed":
        return _result(name, "ok", head)
    if last_error is not None and steps.get(str(last_error["step"]), _StepSeen("")).error:
        cause = last_error.get("cause", "")
        message = str(last_error.get("message", ""))
        return _result(name, "warn", f"{head}; stopped at {last_error['step']} on "
                       f"{last_error.get('error_class', 'an error')} ({cause}): {message}",
                       str(last_error.get("fix") or ""))
    return _result(name, "warn", f"{head}; it did not reach finishSecret (still running, or "
                   "the function timed out)", "check the function's timeout and the log "
                   "stream for REPORT lines with 'Status: timeout'")


# -- running -------------------------------------------------------------------------------------

CHECKS: tuple[Check, ...] = (
    check_endpoint,
    check_describe,
    check_rotation_config,
    check_kms_decrypt,
    check_secret_format,
    check_db_network,
    check_db_protocol,
    check_db_tls,
    check_db_login,
    check_staging_labels,
    check_pg_libpq,
    check_pg_password_encryption,
    check_pg_stored_method,
    check_master_secret,
    check_lambda_runtime,
    check_lambda_concurrency,
    check_last_rotation,
)


def run_doctor(client: SecretsManagerClient, secret_id: str, settings: Settings | None = None,
               *, fix: bool = False, timeout: float = 5.0, strategy: str | None = None,
               function_name: str | None = None, master_secret_id: str | None = None,
               lambda_client: Any | None = None, logs_client: Any | None = None,
               on_result: Callable[[CheckResult], None] | None = None) -> DoctorReport:
    """Run every check against ``secret_id`` and return the report (never raises for a finding).

    ``settings`` supplies the CA bundle and strategy the function would use (default: from the
    environment); ``lambda_client``/``logs_client`` enable the function checks (skipped
    without them)."""
    settings = settings or Settings.from_env()
    adapters = AdapterRegistry(AdapterOptions(ca_bundle=settings.ca_bundle,
                                              connect_timeout=timeout))
    doctor = Doctor(SecretsManager(client), secret_id, settings, adapters, fix=fix,
                    timeout=timeout, strategy_override=strategy, function_name=function_name,
                    master_secret_id=master_secret_id, lambda_client=lambda_client,
                    logs_client=logs_client)
    report = DoctorReport(secret_id)
    for check in CHECKS:
        if check is check_secret_format:
            load_function(doctor)  # the function's ROTATION_STRATEGY decides the needed keys
        try:
            result = check(doctor)
        except (RotationError, OSError) as exc:  # a check must not stop the others
            message = exc.message if isinstance(exc, RotationError) else type(exc).__name__
            result = _result(check.__name__.removeprefix("check_").replace("_", "-"),
                             "fail", f"the check itself failed: {message}")
        report.checks.append(result)
        if on_result:
            on_result(result)
    report.secret_arn = doctor.state.arn if doctor.state else None
    return report


__all__ = ["CHECKS", "PYTHON_RUNTIME_DEPRECATION", "CheckResult", "Doctor", "DoctorReport",
           "run_doctor"]
