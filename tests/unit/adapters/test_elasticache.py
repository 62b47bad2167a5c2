"""Engine ``elasticache``: ElastiCache RBAC users rotated through ModifyUser / DescribeUsers.

moto has no ElastiCache ModifyUser, so these are contract tests with botocore's Stubber: each
response is validated against botocore's service model (the documented shapes), and each call's
parameters are checked exactly. Secrets Manager is moto, as everywhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import rotation.adapters.elasticache as ec
from rotation import handler
from rotation.adapters import BUILTIN, get_adapter
from rotation.adapters.base import AdapterOptions
from rotation.credentials import credentials_from_dict
from rotation.errors import (
    AwsPermissionError,
    ConfigError,
    DbTimeoutError,
    SecretFormatError,
)
from rotation.tools.local import LocalRotationService
from tests.conftest import FakeLambdaContext

REGION = "us-east-1"
USER_ID = "app-user-id"
USER_NAME = "app-user"
USER_ARN = f"arn:aws:elasticache:{REGION}:123456789012:user:{USER_ID}"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:cache-AbCdEf"
OLD = "old-Passw0rd-0123456789"
NEW = "new-Passw0rd-9876543210"


def sample_secret(**overrides: Any) -> dict[str, Any]:
    """AWS's ElastiCache sample keys, plus `engine`."""
    secret: dict[str, Any] = {"engine": "elasticache", "user_arn": USER_ARN,
                              "username": USER_NAME, "password": OLD}
    secret.update(overrides)
    return {k: v for k, v in secret.items() if v is not None}


def user(status: str = "active", *, name: str = USER_NAME, kind: str = "password",
         count: int = 1) -> dict[str, Any]:
    """A User as DescribeUsers / ModifyUser return it (botocore's shape `User`)."""
    return {"UserId": USER_ID, "UserName": name, "Status": status, "Engine": "redis",
            "MinimumEngineVersion": "6.0", "AccessString": "on ~app:* +@read +@write",
            "UserGroupIds": ["app-group"],
            "Authentication": {"Type": kind, "PasswordCount": count}, "ARN": USER_ARN}


def described(status: str = "active", **kwargs: Any) -> dict[str, Any]:
    return {"Users": [user(status, **kwargs)]}


class Calls:
    """The stubbed client, the operations it answered, and the parameters it got."""

    def __init__(self) -> None:
        self.client = boto3.client("elasticache", region_name=REGION,
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
        self.stub = Stubber(self.client)
        self.params: list[tuple[str, dict[str, Any]]] = []
        self.client.meta.events.register("provide-client-params.elasticache.*", self._seen)
        self.regions: list[str] = []

    def _seen(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.params.append((model.name, dict(params)))

    def factory(self, region: str, options: AdapterOptions) -> Any:
        self.regions.append(region)
        return self.client

    def describe(self, status: str = "active", **kwargs: Any) -> None:
        self.stub.add_response("describe_users", described(status, **kwargs),
                               {"UserId": USER_ID})

    def modify(self, passwords: list[str]) -> None:
        self.stub.add_response("modify_user", user("modifying"),
                               {"UserId": USER_ID, "Passwords": passwords})

    def operations(self) -> list[str]:
        return [name for name, _ in self.params]


@pytest.fixture
def calls() -> Iterator[Calls]:
    c = Calls()
    with c.stub:
        yield c
    c.stub.assert_no_pending_responses()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake clock the waits advance by sleeping: no real time passes."""
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(ec, "_clock", lambda: now[0])
    monkeypatch.setattr(ec, "_sleep", sleep)
    return slept


def session(calls: Calls, **overrides: Any) -> ec.ElastiCacheSession:
    adapter = ec.ElastiCacheAdapter(AdapterOptions(), client_factory=calls.factory)
    return adapter.connect(credentials_from_dict(sample_secret(**overrides), SECRET_ARN))


# --------------------------------------------------------------------------------------------
# Secret format
# --------------------------------------------------------------------------------------------

def test_the_engine_is_registered_and_needs_no_redis_driver() -> None:
    assert BUILTIN["elasticache"] == "rotation.adapters.elasticache:ElastiCacheAdapter"
    adapter = get_adapter("elasticache")
    assert adapter.family == "elasticache"
    assert "password" not in repr(adapter)


def test_the_samples_secret_parses_without_host() -> None:
    # GIVEN the keys AWS's ElastiCache sample stores (no host, no port)
    credentials = credentials_from_dict(sample_secret(), SECRET_ARN)
    # THEN it parses, with the Redis port as default and the user ARN kept for the next version
    assert (credentials.engine, credentials.host, credentials.port) == ("elasticache", "", 6379)
    assert credentials.to_secret_dict()["user_arn"] == USER_ARN
    assert OLD not in repr(credentials)


def test_user_arn_is_required_for_elasticache_and_host_still_for_others() -> None:
    with pytest.raises(SecretFormatError) as info:
        credentials_from_dict(sample_secret(user_arn=None), SECRET_ARN)
    assert info.value.key == "user_arn"
    with pytest.raises(SecretFormatError) as other:
        credentials_from_dict({"engine": "redis", "username": "u", "password": OLD}, SECRET_ARN)
    assert other.value.key == "host"


@pytest.mark.parametrize(("arn", "region", "user_id"), [
    (USER_ARN, REGION, USER_ID),
    ("arn:aws-cn:elasticache:cn-north-1:123456789012:user:u1", "cn-north-1", "u1"),
])
def test_user_arn_gives_region_and_user_id(arn: str, region: str, user_id: str) -> None:
    parsed = ec.parse_user_arn(credentials_from_dict(sample_secret(user_arn=arn), SECRET_ARN))
    assert (parsed.region, parsed.user_id) == (region, user_id)


@pytest.mark.parametrize(("arn", "says"), [
    ("app-user-id", "not an ElastiCache user ARN"),
    ("arn:aws:elasticache:us-east-1:123456789012:usergroup:g1", "not an ElastiCache user ARN"),
    ("arn:aws:elasticache::123456789012:user:u1", "not an ElastiCache user ARN"),
    ("arn:aws:elasticache:us-east-1:123456789012:user:1bad", "not an ElastiCache user ARN"),
    ("arn:aws:memorydb:us-east-1:123456789012:user/u1", "MemoryDB"),
])
def test_a_bad_user_arn_is_refused_naming_the_key(arn: str, says: str) -> None:
    credentials = credentials_from_dict(sample_secret(user_arn=arn), SECRET_ARN)
    with pytest.raises(SecretFormatError) as info:
        ec.ElastiCacheAdapter(AdapterOptions()).connect(credentials)
    assert info.value.key == "user_arn"
    assert says in str(info.value)


# --------------------------------------------------------------------------------------------
# The calls
# --------------------------------------------------------------------------------------------

def test_set_password_sends_one_password_to_the_users_region(calls: Calls) -> None:
    # GIVEN an active user
    calls.describe()
    calls.modify([NEW])
    # WHEN its password is set
    session(calls).set_password(USER_NAME, NEW)
    # THEN one DescribeUsers, then ModifyUser with exactly UserId and Passwords=[new]
    assert calls.params == [("DescribeUsers", {"UserId": USER_ID}),
                            ("ModifyUser", {"UserId": USER_ID, "Passwords": [NEW]})]
    assert calls.regions == [REGION]


def test_add_password_keeps_the_current_one_and_is_idempotent(calls: Calls) -> None:
    # GIVEN an active user, twice (a retried setSecret)
    for _ in range(2):
        calls.describe()
        calls.modify([OLD, NEW])
    s = session(calls)
    # WHEN the new password is added twice
    s.add_password(USER_NAME, NEW, keep=OLD)
    s.add_password(USER_NAME, NEW, keep=OLD)
    # THEN each call sends the same two passwords (the service's limit), the kept one first
    modify = [p for name, p in calls.params if name == "ModifyUser"]
    assert modify == [{"UserId": USER_ID, "Passwords": [OLD, NEW]}] * 2
    assert all(len(p["Passwords"]) <= ec.MAX_PASSWORDS for p in modify)


def test_add_password_with_the_kept_password_sends_it_once(calls: Calls) -> None:
    calls.describe()
    calls.modify([OLD])
    session(calls).add_password(USER_NAME, OLD, keep=OLD)


def test_a_change_waits_until_the_user_is_active(calls: Calls, clock: list[float]) -> None:
    # GIVEN a user still applying an earlier change
    calls.describe("modifying")
    calls.describe("modifying")
    calls.describe()
    calls.modify([NEW])
    # WHEN the password is set
    session(calls).set_password(USER_NAME, NEW)
    # THEN it polled until active, pausing between polls, and only then modified
    assert calls.operations() == ["DescribeUsers"] * 3 + ["ModifyUser"]
    assert clock == [ec.POLL_INTERVAL, ec.POLL_INTERVAL]


def test_the_wait_is_bounded(calls: Calls, clock: list[float]) -> None:
    # GIVEN a user that never becomes active
    polls = int(ec.WAIT_SECONDS / ec.POLL_INTERVAL) + 1
    for _ in range(polls):
        calls.describe("modifying")
    # WHEN the login test waits for it
    with pytest.raises(DbTimeoutError) as info:
        session(calls).ping()
    # THEN it gives up after WAIT_SECONDS of (fake) time, with no ModifyUser sent
    assert sum(clock) == pytest.approx(ec.WAIT_SECONDS)
    assert "modifying" in str(info.value)
    assert "ModifyUser" not in calls.operations()


def test_the_wait_stops_at_the_invocations_deadline(calls: Calls, clock: list[float]) -> None:
    from rotation.adapters.base import DEADLINE

    now = ec._clock()
    token = DEADLINE.set(now + 12.0)
    try:
        for _ in range(4):  # at 0, 5, 10 and 12 s
            calls.describe("modifying")
        # time_left reads time.monotonic: give it the fake clock too
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("rotation.adapters.base.time.monotonic", ec._clock)
            with pytest.raises(DbTimeoutError):
                session(calls).ping()
    finally:
        DEADLINE.reset(token)
    assert clock == [5.0, 5.0, 2.0]


def test_ping_without_host_says_what_was_verified(calls: Calls,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    calls.describe()
    with caplog.at_level(logging.INFO, logger=ec.__name__):
        session(calls).ping()
    assert "no login test" in caplog.text
    assert USER_ARN in caplog.text
    assert calls.operations() == ["DescribeUsers"]


def test_ping_with_host_logs_in_with_the_redis_adapter(
        calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a secret with the replication group's endpoint
    from rotation.adapters.redis import RedisAdapter

    logins: list[tuple[str, int, str, str]] = []

    class Pinged:
        def __enter__(self) -> Pinged:
            return self

        def __exit__(self, *args: object) -> None:
            pass

        def ping(self) -> None:
            logins.append(("PING", 0, "", ""))

    def connect(self: RedisAdapter, credentials: Any) -> Pinged:
        logins.append((credentials.host, credentials.port, credentials.username,
                       credentials.sslmode))
        return Pinged()

    monkeypatch.setattr(RedisAdapter, "connect", connect)
    calls.describe()
    # WHEN the login is tested
    session(calls, host="master.app.abc123.use1.cache.amazonaws.com", port=6380).ping()
    # THEN the user is active, then AUTH over verify-full TLS, then PING
    assert logins == [("master.app.abc123.use1.cache.amazonaws.com", 6380, USER_NAME,
                       "verify-full"), ("PING", 0, "", "")]


def test_a_username_other_than_the_users_is_refused(calls: Calls) -> None:
    calls.describe(name="someone-else")
    with pytest.raises(SecretFormatError) as info:
        session(calls).set_password(USER_NAME, NEW)
    assert info.value.key == "username"
    assert "ModifyUser" not in calls.operations()


def test_an_iam_user_is_refused(calls: Calls) -> None:
    calls.describe(kind="iam", count=0)
    with pytest.raises(SecretFormatError) as info:
        session(calls).set_password(USER_NAME, NEW)
    assert "IAM" in str(info.value)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

def test_access_denied_names_the_action_to_grant(calls: Calls) -> None:
    calls.describe()
    calls.stub.add_client_error("modify_user", "AccessDenied", "User: arn:... is not "
                                "authorized to perform: elasticache:ModifyUser", 403)
    with pytest.raises(AwsPermissionError) as info:
        session(calls).set_password(USER_NAME, NEW)
    assert "elasticache:ModifyUser" in info.value.hint
    assert USER_ARN in info.value.hint
    assert info.value.__context__ is None


def test_access_denied_on_describe_names_describe(calls: Calls) -> None:
    calls.stub.add_client_error("describe_users", "AccessDenied", "not authorized", 403)
    with pytest.raises(AwsPermissionError) as info:
        session(calls).ping()
    assert "elasticache:DescribeUsers" in info.value.hint


def test_invalid_password_names_the_key_not_the_value(calls: Calls) -> None:
    calls.describe()
    calls.stub.add_client_error("modify_user", "InvalidParameterValue",
                                f"Passwords length must be between 16-128 characters: {NEW}")
    with pytest.raises(SecretFormatError) as info:
        session(calls).set_password(USER_NAME, NEW)
    assert info.value.key == "password"
    assert NEW not in str(info.value)
    assert "PASSWORD_LENGTH" in info.value.hint


@pytest.mark.parametrize("operation", ["describe_users", "modify_user"])
def test_an_unknown_user_is_a_user_arn_problem(calls: Calls, operation: str) -> None:
    if operation == "modify_user":
        calls.describe()
    calls.stub.add_client_error(operation, "UserNotFound", "User not found", 404)
    with pytest.raises(SecretFormatError) as info:
        session(calls).set_password(USER_NAME, NEW)
    assert info.value.key == "user_arn"


def test_alternating_users_are_refused_clearly() -> None:
    adapter = ec.ElastiCacheAdapter(AdapterOptions())
    with pytest.raises(ConfigError) as info:
        adapter.clone_username(USER_NAME)
    assert "dual-password" in info.value.hint
    assert adapter.supports_dual_password("elasticache")


# --------------------------------------------------------------------------------------------
# A rotation through lambda_handler: Secrets Manager on moto, ElastiCache stubbed
# --------------------------------------------------------------------------------------------

@pytest.fixture
def rotate(sm: Any, calls: Calls, clock: list[float],
           monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[str, Any]]:
    monkeypatch.setattr(ec, "make_client", calls.factory)

    def run(strategy: str, **overrides: Any) -> tuple[str, Any]:
        monkeypatch.setenv("ROTATION_STRATEGY", strategy)
        handler.reset()
        arn = sm.create_secret(Name=f"cache-{strategy}",
                               SecretString=json.dumps(sample_secret(**overrides)))["ARN"]
        service = LocalRotationService(sm)
        service.enable_rotation(arn)
        report = service.rotate(arn, lambda e: handler.lambda_handler(e, FakeLambdaContext()))
        return arn, report

    return run


def _value(sm: Any, arn: str, stage: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        sm.get_secret_value(SecretId=arn, VersionStage=stage)["SecretString"])
    return data


@pytest.mark.parametrize("strategy", ["single-user", "dual-password"])
def test_a_rotation_through_the_handler(rotate: Callable[..., tuple[str, Any]], sm: Any,
                                        calls: Calls, strategy: str) -> None:
    # GIVEN an active user; setSecret: DescribeUsers + ModifyUser; testSecret: the user is
    # modifying once, then active
    calls.stub.add_response("describe_users", described(), {"UserId": USER_ID})
    calls.stub.add_response("modify_user", user("modifying"),
                            {"UserId": USER_ID, "Passwords": _any_list()})
    calls.stub.add_response("describe_users", described("modifying"), {"UserId": USER_ID})
    calls.stub.add_response("describe_users", described(), {"UserId": USER_ID})
    # WHEN Secrets Manager rotates the secret
    arn, report = rotate(strategy)
    # THEN every step succeeded and AWSCURRENT moved to a new password, sample keys kept
    assert report.succeeded, report.steps
    current, previous = _value(sm, arn, "AWSCURRENT"), _value(sm, arn, "AWSPREVIOUS")
    assert previous["password"] == OLD
    assert current["password"] != OLD
    assert {k: v for k, v in current.items() if k != "password"} == \
        {k: v for k, v in sample_secret().items() if k != "password"}
    # AND ElastiCache got 4 calls, the ModifyUser with exactly the passwords of the strategy
    assert calls.operations() == ["DescribeUsers", "ModifyUser", "DescribeUsers",
                                  "DescribeUsers"]
    expected = [current["password"]] if strategy == "single-user" \
        else [OLD, current["password"]]
    assert dict(calls.params)["ModifyUser"] == {"UserId": USER_ID, "Passwords": expected}


def test_alternating_users_fail_at_create_secret_before_any_write(
        rotate: Callable[..., tuple[str, Any]], sm: Any, calls: Calls) -> None:
    arn, report = rotate("alternating-users", masterarn=SECRET_ARN)
    assert not report.succeeded
    assert report.steps[0].step == "createSecret"
    assert "alternating users" in (report.steps[0].error or "")
    versions = sm.list_secret_version_ids(SecretId=arn)["Versions"]
    assert len([v for v in versions if "AWSCURRENT" in v.get("VersionStages", [])]) == 1
    assert calls.params == []


def _any_list() -> Any:
    from botocore.stub import ANY

    return ANY
