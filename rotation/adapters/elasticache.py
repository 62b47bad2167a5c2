"""ElastiCache adapter (engine ``elasticache``): ElastiCache RBAC users, rotated through the
service API, with the secret format of AWS's ElastiCache user rotation sample (``user_arn``,
``username``, ``password``; optional ``host`` / ``port`` / ``sslmode`` for the login test).

* The "session" is a boto3 ``elasticache`` client in the region of ``user_arn`` (built on first
  use; only boto3 is imported, no Redis driver). ``connect`` makes no call and no login: the
  service, not a login, decides who may change the user (IAM: ``elasticache:ModifyUser`` and
  ``elasticache:DescribeUsers`` on the user's ARN).
* ``set_password``: ``ModifyUser(UserId, Passwords=[new])``; ``add_password`` (dual passwords):
  ``ModifyUser(UserId, Passwords=[kept, new])``. ``Passwords`` replaces the user's whole list
  (at most two: the service's limit), so both are idempotent, and the older retained password is
  dropped. The access string and user groups are left alone (not sent).
* ModifyUser is asynchronous: the user is ``modifying`` until the service has pushed the change
  to every cluster of its user groups. Before a change and in the login test the user is polled
  (``DescribeUsers``) until it is ``active`` again, within :data:`WAIT_SECONDS` cut to what is
  left of the invocation (:func:`rotation.adapters.base.time_left`); past that, DbTimeoutError,
  and Secrets Manager retries the step.
* Login test (``ping``): when the user is active, and the secret has ``host`` (the replication
  group's primary or configuration endpoint), ``AUTH <user> <password>`` + ``PING`` over TLS
  with the Redis adapter's ``connect`` (redis-py, so the function needs the redis layer for it).
  Without ``host`` no login is possible from here: the log says that only the user's status and
  ARN were verified (as AWS's sample does).
* Alternating users are refused: ElastiCache users are created through the service with their
  access string, engine and user-group membership, which the framework does not manage.
* MemoryDB users (``arn:aws:memorydb:...``) are not covered: refused with a clear error.
* No password reaches a log line, an error or a repr (each is registered with the redactor, and
  service messages are scrubbed).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

from rotation import _redact
from rotation.adapters.base import AdapterOptions, time_left
from rotation.credentials import DbCredentials
from rotation.errors import (
    AwsError,
    AwsPermissionError,
    ConfigError,
    DatabaseError,
    DbTimeoutError,
    RotationError,
    SecretFormatError,
)

log = logging.getLogger(__name__)

USER_ARN_KEY = "user_arn"
#: ElastiCache user names: 1-40 characters (the service's limit).
MAX_USERNAME_LENGTH = 40
#: The most passwords a user can hold (ModifyUser: "You are allowed up to two").
MAX_PASSWORDS = 2
#: Longest wait for a user to become ``active`` again, seconds (cut to the invocation's time).
WAIT_SECONDS = 300.0
#: Pause between two DescribeUsers while the user is ``modifying``, seconds.
POLL_INTERVAL = 5.0
ACTIVE = "active"

_USER_ID = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*\Z")
_PERMISSION_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                     "UnrecognizedClientException", "InvalidClientTokenId"}
_ALTERNATING = ("ElastiCache users cannot be rotated with alternating users: a user is created "
                "through the ElastiCache API with its access string, engine and user-group "
                "membership, which this framework does not manage (it never creates users)")
_ALTERNATING_HINT = ("use ROTATION_STRATEGY=dual-password (the user holds the current and the "
                     "new password; no outage) or single-user")

#: Injected by tests (a Stubber's client); the default builds a boto3 client.
_sleep: Callable[[float], None] = time.sleep
_clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class UserArn:
    """The parts of ``user_arn`` a call needs."""

    arn: str
    region: str
    user_id: str


def parse_user_arn(credentials: DbCredentials) -> UserArn:
    """``user_arn`` of the secret (``arn:<partition>:elasticache:<region>:<account>:user:<id>``,
    as AWS's sample stores it), or SecretFormatError naming the key."""
    value = credentials.raw.get(USER_ARN_KEY)
    where = credentials.secret_arn or "(unknown)"
    if not isinstance(value, str) or not value.strip():
        raise SecretFormatError(
            f"key `{USER_ARN_KEY}` is missing in secret {where}", key=USER_ARN_KEY,
            secret_arn=credentials.secret_arn,
            hint="add `user_arn`: the ElastiCache user's ARN (DescribeUsers shows it)")
    parts = value.strip().split(":", 6)
    if len(parts) == 6 and parts[2] == "memorydb":
        raise SecretFormatError(
            f"key `{USER_ARN_KEY}` of secret {where} names a MemoryDB user; engine "
            "`elasticache` rotates ElastiCache users only", key=USER_ARN_KEY,
            secret_arn=credentials.secret_arn,
            hint="MemoryDB users are not supported yet: rotate them with AWS's sample function")
    if (len(parts) != 7 or parts[0] != "arn" or not parts[1] or parts[2] != "elasticache"
            or not parts[3] or parts[5] != "user" or not _USER_ID.match(parts[6])):
        raise SecretFormatError(
            f"key `{USER_ARN_KEY}` of secret {where} is not an ElastiCache user ARN",
            key=USER_ARN_KEY, secret_arn=credentials.secret_arn,
            hint="set it to arn:aws:elasticache:<region>:<account>:user:<user-id>")
    return UserArn(arn=value.strip(), region=parts[3], user_id=parts[6])


def make_client(region: str, options: AdapterOptions) -> Any:
    """A boto3 ``elasticache`` client for ``region``, with the adapter's timeouts."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=options.connect_timeout,
                    read_timeout=options.statement_timeout,
                    retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("elasticache", region_name=region, config=config)


class ElastiCacheSession:
    """The ElastiCache API for one user (no connection is held; ``close`` is a no-op)."""

    def __init__(self, adapter: ElastiCacheAdapter, credentials: DbCredentials,
                 user: UserArn) -> None:
        self._adapter = adapter
        self._credentials = credentials
        self._user = user

    def __repr__(self) -> str:
        return f"<ElastiCacheSession {self._credentials.username!r} {self._user.arn}>"

    def __enter__(self) -> ElastiCacheSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to close: each call is one HTTPS request."""

    # -- the DatabaseSession methods ---------------------------------------------------------

    def ping(self) -> None:
        """Wait until the user is active (its last change applied), then log in with the
        session's credential when the secret says where (``host``); otherwise log what was
        verified."""
        user = self.wait_active()
        credentials = self._credentials
        self._check_user(user, credentials.username)
        if not credentials.host:
            log.info("no login test: the secret has no `host` (the replication group "
                     "endpoint); verified that user %s (%s) exists and is active",
                     self._user.user_id, self._user.arn)
            return
        from rotation.adapters.redis import RedisAdapter

        with RedisAdapter(self._adapter.options).connect(credentials) as session:
            session.ping()

    def set_password(self, username: str, password: str) -> None:
        """``ModifyUser(Passwords=[password])``: afterwards it is the user's only password."""
        _redact.register(password)
        self._modify(username, [password])

    def add_password(self, username: str, password: str, keep: str) -> None:
        """``ModifyUser(Passwords=[keep, password])``: exactly these two log in afterwards."""
        _redact.register(password, keep)
        self._modify(username, [keep] if keep == password else [keep, password])

    def sync_clone(self, source_username: str, clone_username: str, password: str) -> None:
        raise ConfigError(_ALTERNATING, hint=_ALTERNATING_HINT)

    def discard_old_password(self, username: str) -> None:
        """Nothing to do: ``add_password`` replaces the whole password list."""

    # -- the service ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The user, as DescribeUsers returns it."""
        answer = self._call("DescribeUsers", UserId=self._user.user_id)
        users = answer.get("Users") or []
        if not users:
            raise _not_found(self._user, self._credentials.secret_arn)
        user: dict[str, Any] = users[0]
        return user

    def wait_active(self) -> dict[str, Any]:
        """Poll DescribeUsers until the user's Status is ``active``; DbTimeoutError past
        :data:`WAIT_SECONDS` or the invocation's deadline."""
        what = f"ElastiCache user {self._user.user_id} to become active"
        end = _clock() + time_left(WAIT_SECONDS, what)
        while True:
            user = self.describe()
            status = user.get("Status")
            if status == ACTIVE:
                return user
            left = end - _clock()
            if left <= 0:
                raise DbTimeoutError(
                    f"ElastiCache user {self._user.user_id} is still {status!r}, not active, "
                    f"after waiting up to {WAIT_SECONDS:g} s",
                    hint="the service is still applying a change to the user's clusters; "
                         "Secrets Manager retries the step")
            log.info("ElastiCache user %s is %s; waiting for it to become active",
                     self._user.user_id, status)
            _sleep(min(POLL_INTERVAL, left, time_left(WAIT_SECONDS, what)))

    def _modify(self, username: str, passwords: list[str]) -> None:
        user = self.wait_active()
        self._check_user(user, username)
        self._call("ModifyUser", UserId=self._user.user_id, Passwords=passwords)
        log.info("ModifyUser sent for ElastiCache user %s with %d password(s)",
                 self._user.user_id, len(passwords))

    def _check_user(self, user: dict[str, Any], username: str) -> None:
        arn = self._credentials.secret_arn or "(unknown)"
        name = user.get("UserName")
        if name is not None and name != username:
            raise SecretFormatError(
                f"key `username` of secret {arn} is {username[:40]!r}, but the ElastiCache "
                f"user {self._user.user_id} named by `user_arn` is {str(name)[:40]!r}",
                key="username", secret_arn=self._credentials.secret_arn,
                hint="make `username` and `user_arn` name the same user")
        kind = (user.get("Authentication") or {}).get("Type")
        if kind == "iam":
            raise SecretFormatError(
                f"the ElastiCache user {self._user.user_id} of secret {arn} authenticates with "
                "IAM: it has no password to rotate", key=USER_ARN_KEY,
                secret_arn=self._credentials.secret_arn,
                hint="remove rotation from this secret, or point it at a password user")

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        client = self._adapter.client(self._user.region)
        method = getattr(client, _snake(operation))
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer: dict[str, Any] = method(**params)
        except ClientError as exc:
            error: RotationError = _client_error(exc, operation, self._user,
                                                 self._credentials.secret_arn)
        except BotoCoreError as exc:
            error = AwsError(
                f"ElastiCache {operation} for user {self._user.user_id} failed: "
                f"{_redact.redact(str(exc))[:300]}",
                code=type(exc).__name__,
                hint=f"the function needs a network path to the ElastiCache API in "
                     f"{self._user.region} (in a VPC: a NAT gateway or an interface endpoint "
                     "com.amazonaws.<region>.elasticache); Secrets Manager retries the step")
        else:
            return answer
        raise error  # outside the except block: no botocore exception in __context__


class ElastiCacheAdapter:
    """Engine ``elasticache``: ElastiCache (Redis OSS / Valkey) RBAC users, through the API."""

    family: ClassVar[str] = "elasticache"
    max_username_length: ClassVar[int] = MAX_USERNAME_LENGTH

    def __init__(self, options: AdapterOptions,
                 client_factory: Callable[[str, AdapterOptions], Any] | None = None) -> None:
        self.options = options
        self._factory = client_factory
        self._clients: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<ElastiCacheAdapter regions={sorted(self._clients)!r}>"

    def client(self, region: str) -> Any:
        """The (cached) elasticache client for ``region``."""
        client = self._clients.get(region)
        if client is None:
            factory = self._factory or make_client
            client = self._clients[region] = factory(region, self.options)
        return client

    def connect(self, credentials: DbCredentials) -> ElastiCacheSession:
        """No login and no call: checks ``user_arn`` and returns the API session for it."""
        _redact.register(credentials.password)
        return ElastiCacheSession(self, credentials, parse_user_arn(credentials))

    def clone_username(self, username: str) -> str:
        """Alternating users are refused (see the module's docstring), before any write."""
        raise ConfigError(_ALTERNATING, hint=_ALTERNATING_HINT)

    def supports_dual_password(self, engine: str) -> bool:
        """Every ElastiCache user holds up to two passwords."""
        del engine
        return True


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _not_found(user: UserArn, secret_arn: str) -> SecretFormatError:
    return SecretFormatError(
        f"key `{USER_ARN_KEY}` of secret {secret_arn or '(unknown)'} names ElastiCache user "
        f"{user.user_id}, which does not exist in {user.region}", key=USER_ARN_KEY,
        secret_arn=secret_arn, hint="check `user_arn` against DescribeUsers")


def _client_error(exc: Any, operation: str, user: UserArn, secret_arn: str) -> RotationError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    detail = _redact.redact(str(error.get("Message", "")))[:300]
    what = f"ElastiCache {operation} for user {user.user_id}"
    if code in _PERMISSION_CODES:
        return AwsPermissionError(
            f"{what} was refused: {code}", code=code,
            hint=f"grant the function's role elasticache:{operation} on {user.arn} "
                 "(template.yaml: ElastiCacheUserArns)")
    if code == "UserNotFound":
        return _not_found(user, secret_arn)
    if code in ("InvalidParameterValue", "InvalidParameterCombination"):
        key = "password" if operation == "ModifyUser" else USER_ARN_KEY
        hint = ("ElastiCache passwords are 16-128 printable characters without spaces, "
                "double quotes, slashes or @: set PASSWORD_LENGTH (16-128) and "
                "EXCLUDE_CHARACTERS accordingly" if key == "password"
                else "check `user_arn`")
        return SecretFormatError(f"{what} refused key `{key}` of secret "
                                 f"{secret_arn or '(unknown)'}: {code}: {detail}", key=key,
                                 secret_arn=secret_arn, hint=hint)
    if code == "InvalidUserState":
        return DatabaseError(f"{what} failed: the user is not active ({code})",
                             hint="another change to the user is being applied; Secrets "
                                  "Manager retries the step", driver_error=f"elasticache.{code}")
    return AwsError(f"{what} failed: {code}: {detail}", code=code,
                    hint="see the ElastiCache error code; Secrets Manager retries the step")


__all__ = ["MAX_PASSWORDS", "USER_ARN_KEY", "ElastiCacheAdapter", "ElastiCacheSession",
           "UserArn", "make_client", "parse_user_arn"]
