"""Redis (engine ``redis``) on a throwaway redis-server: TLS only, ACL users, the ``default`` user
off (rotation.tools.sandbox). The shared adapter contract, TLS and error mapping, ACL rules of
clones, and whole rotations through ``lambda_handler`` with every strategy: Secrets Manager
calls, logins, and a MONITOR connection that never sees a plaintext password.

Logins are counted from the MONITOR stream the sandbox records (``AUTH`` lines), failed ones
from ``ACL LOG``; see ``_RedisServer`` in rotation/tools/sandbox.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import pytest

import rotation.adapters
from rotation.adapters import get_adapter
from rotation.adapters.base import DEADLINE, AdapterOptions
from rotation.adapters.redis import RedisAdapter, RedisSession
from rotation.credentials import DbCredentials, credentials_from_dict
from rotation.errors import (
    DatabaseError,
    DbTimeoutError,
    LoginError,
    PasswordRefusedError,
    PrivilegeError,
    SecretFormatError,
    TlsError,
)
from rotation.tools.local import ApiCallCounter, LocalRotationService
from rotation.tools.sandbox import LoginCounts
from tests.conftest import LeakScan
from tests.fault_harness import Harness, Point, run_matrix, summary, table, violations
from tests.integration.adapter_contract import (
    AdapterContract,
    ContractTarget,
    DualPasswordContract,
)
from tests.integration.test_cost_counts import (
    ALT_COLD,
    ALT_WARM,
    SINGLE_COLD,
    SINGLE_WARM,
    rotate,
)
from tests.integration.test_fault_injection_real import (
    DB_FAULTS,
    OBSERVERS,
    RealBench,
    TracedSession,
    _observe,
    _stored_passwords,
)
from tests.rig import Rig

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:redis-test-AbCdEf"


def sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def creds(server: Any, username: str, password: str, **extra: Any) -> DbCredentials:
    return credentials_from_dict({"engine": "redis", "host": server.host, "port": server.port,
                                  "username": username, "password": password, **extra}, ARN)


def logs_in(server: Any, username: str, password: str) -> bool:
    """A verified TLS login and PING through the built-in adapter."""
    adapter = RedisAdapter(AdapterOptions(ca_bundle=server.ca_file))
    try:
        with adapter.connect(creds(server, username, password)) as session:
            session.ping()
    except LoginError:
        return False
    return True


@pytest.fixture
def adapter(redis_server: Any) -> RedisAdapter:
    return RedisAdapter(AdapterOptions(ca_bundle=redis_server.ca_file, connect_timeout=5))


@pytest.fixture
def users(redis_server: Any, leak_scan: LeakScan) -> Iterator[Callable[..., DbCredentials]]:
    """Makes ACL users with random passwords on the sandbox server; drops them afterwards."""
    made: list[str] = []

    def make(prefix: str = "r", *, master: bool = False) -> DbCredentials:
        username = f"{prefix}_{uuid.uuid4().hex[:10]}"
        password = "Pw-" + secrets.token_urlsafe(16)
        leak_scan.add(password)
        redis_server.create_login_user(username, password, can_create_roles=master)
        made.extend([username, username + "_clone"])
        return creds(redis_server, username, password)

    yield make
    for username in made:
        redis_server.drop_user(username)


# --------------------------------------------------------------------------------------------
# The shared adapter contract
# --------------------------------------------------------------------------------------------

# Redis user names cannot hold spaces: the contract's names less those (refused below).
REDIS_HOSTILE_NAMES = ["o'brien", 'dq"name', "semi;colon", "back\\slash", "pct%name", "ünïcødé",
                       "x');DROP-TABLE-t;--", "#hash-lookalike", ">gt", "(paren", "~tilde"]


class TestRedisAdapterContract(AdapterContract, DualPasswordContract):
    @pytest.fixture
    def target(self, redis_server: Any) -> ContractTarget:
        return ContractTarget(engine="redis", server=redis_server,
                              create_user=redis_server.create_login_user,
                              drop_user=redis_server.drop_user)

    @pytest.mark.parametrize("name", REDIS_HOSTILE_NAMES)
    def test_hostile_user_names_are_quoted(  # type: ignore[override]
            self, adapter: Any, user: Callable[..., DbCredentials], name: str,
            leak_scan: LeakScan) -> None:
        # GIVEN a user whose name looks like an ACL rule or holds quotes
        creds_ = user(name=name + uuid.uuid4().hex[:4])
        new_password = "New-" + secrets.token_urlsafe(16)
        leak_scan.add(new_password)
        # WHEN it sets its password / THEN the new one logs in (every name is one protocol
        # argument, never parsed as a rule)
        with adapter.connect(creds_) as session:
            session.set_password(creds_.username, new_password)
        assert self._logs_in(adapter, creds_.with_user(creds_.username, new_password))
        assert not self._logs_in(adapter, creds_)


@pytest.mark.parametrize("name", ["space name", "x'); DROP TABLE t; --", "tab\tname",
                                  "nl\nname", "nul\x01name"])
def test_names_redis_cannot_hold_are_refused_before_anything_is_sent(
        redis_server: Any, adapter: RedisAdapter, name: str) -> None:
    # GIVEN a user name with whitespace or a control character
    mark = redis_server.log_position()
    # WHEN the adapter is asked to log in with it / THEN it refuses, naming the key
    with pytest.raises(SecretFormatError) as info:
        adapter.connect(creds(redis_server, name, "Pw-" + secrets.token_urlsafe(12)))
    assert info.value.key == "username"
    # ... and nothing reached the server
    assert redis_server.login_counts(mark) == LoginCounts(succeeded=0, failed=0)


# --------------------------------------------------------------------------------------------
# Logins: TLS, refusals, timeouts
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sslmode", ["verify-full", "verify-ca", "require"])
def test_tls_logins_per_sslmode(redis_server: Any, adapter: RedisAdapter,
                                users: Callable[..., DbCredentials], sslmode: str) -> None:
    # GIVEN a user and a secret asking for `sslmode`
    user = users()
    secret = creds(redis_server, user.username, user.password, sslmode=sslmode)
    mark = redis_server.log_position()
    # WHEN it logs in and pings
    with adapter.connect(secret) as session:
        session.ping()
        assert user.password not in repr(session)
    # THEN that was exactly one login, which succeeded
    counts = redis_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (1, 0)


def test_plaintext_is_refused_by_a_tls_only_server(redis_server: Any, adapter: RedisAdapter,
                                                   users: Callable[..., DbCredentials],
                                                   leak_scan: LeakScan) -> None:
    # GIVEN a secret that opts out of TLS, against the TLS-only server
    user = users()
    secret = creds(redis_server, user.username, user.password, ssl=False)
    mark = redis_server.log_position()
    # WHEN it logs in
    with pytest.raises(TlsError) as info:
        adapter.connect(secret)
    # THEN the server closed the connection before any AUTH was read: a TLS error that says
    # what to change, no login recorded, no retry with TLS behind the secret's back
    leak_scan.add_text(str(info.value))
    assert "sslmode" in str(info.value)
    counts = redis_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (0, 0)


def test_wrong_password_is_password_refused_without_the_password(
        redis_server: Any, adapter: RedisAdapter, users: Callable[..., DbCredentials],
        leak_scan: LeakScan) -> None:
    # GIVEN a user and a wrong password
    user = users()
    wrong = "Wrong-" + secrets.token_urlsafe(16)
    leak_scan.add(wrong)
    mark = redis_server.log_position()
    # WHEN it logs in
    with pytest.raises(PasswordRefusedError) as info:
        adapter.connect(user.with_user(user.username, wrong))
    # THEN WRONGPASS, once (no driver retry), naming host:port and user, never the password
    text = str(info.value)
    leak_scan.add_text(text)
    assert info.value.sqlstate == "WRONGPASS"
    assert f"{redis_server.host}:{redis_server.port}" in text
    assert user.username in text
    assert wrong not in text
    assert info.value.__context__ is None
    counts = redis_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (0, 1)


def test_a_server_that_never_answers_times_out(adapter: RedisAdapter) -> None:
    # GIVEN a port that accepts TCP connections and then says nothing (no TLS handshake)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        quick = RedisAdapter(AdapterOptions(ca_bundle=adapter.options.ca_bundle,
                                            connect_timeout=0.5))
        started = time.monotonic()
        # WHEN the adapter logs in / THEN a timeout error within the connect timeout
        with pytest.raises(DbTimeoutError):
            quick.connect(credentials_from_dict(
                {"engine": "redis", "host": "127.0.0.1", "port": port, "username": "u",
                 "password": "Pw-" + secrets.token_urlsafe(12)}, ARN))
    assert time.monotonic() - started < 3


def test_no_command_starts_past_the_invocation_deadline(
        adapter: RedisAdapter, users: Callable[..., DbCredentials]) -> None:
    # GIVEN an open session and an invocation with no time left
    user = users()
    with adapter.connect(user) as session:
        token = DEADLINE.set(time.monotonic())
        try:
            # WHEN a command is run / THEN it fails at once with a timeout error
            with pytest.raises(DbTimeoutError):
                session.ping()
        finally:
            DEADLINE.reset(token)


# --------------------------------------------------------------------------------------------
# Passwords and ACL rules
# --------------------------------------------------------------------------------------------

def test_passwords_reach_the_server_as_hashes_only(
        redis_server: Any, adapter: RedisAdapter, users: Callable[..., DbCredentials],
        leak_scan: LeakScan) -> None:
    # GIVEN a user and a MONITOR connection watching the server
    user = users()
    new = "New-" + secrets.token_urlsafe(16)
    leak_scan.add(new)
    # WHEN it sets a new password
    with monitoring(redis_server) as seen, adapter.connect(user) as session:
        session.set_password(user.username, new)
    # THEN the server stores exactly the new password's SHA-256, and neither password is in
    # MONITOR, SLOWLOG (every command is kept there) or the server log
    assert redis_server.acl_rules(user.username).count("#") == 1
    assert f"#{sha256(new)}" in redis_server.acl_rules(user.username)
    stream = "\n".join(seen) + redis_server.log_text()
    assert new not in stream
    assert user.password not in stream
    assert any("AUTH" in line.upper() for line in seen)


def test_the_stream_check_would_see_a_plaintext_argument(
        redis_server: Any, adapter: RedisAdapter, users: Callable[..., DbCredentials]) -> None:
    # GIVEN a user and a value sent as an ordinary (unredacted) command argument
    user = users()
    probe = "probe-" + uuid.uuid4().hex
    # WHEN it is sent under MONITOR
    with monitoring(redis_server) as seen, adapter.connect(user) as session:
        session.command("ECHO", probe)
    # THEN both MONITOR and the recorded stream show it: the checks above can see what a
    # server is sent in plaintext (Redis itself hides AUTH and every ACL command there)
    assert any(probe in line for line in seen)
    assert probe in redis_server.log_text()


def test_set_password_needs_acl_setuser(redis_server: Any, adapter: RedisAdapter,
                                        users: Callable[..., DbCredentials],
                                        leak_scan: LeakScan) -> None:
    # GIVEN a user that may PING but not run ACL SETUSER
    user = users()
    redis_server.command("ACL", "SETUSER", user.username, "-acl|setuser")
    new = "New-" + secrets.token_urlsafe(16)
    leak_scan.add(new)
    # WHEN it sets its password
    with adapter.connect(user) as session, pytest.raises(PrivilegeError) as info:
        session.set_password(user.username, new)
    # THEN NOPERM, with the permission to grant named, and the old password still works
    leak_scan.add_text(str(info.value))
    assert "+acl|setuser" in str(info.value)
    assert logs_in(redis_server, user.username, user.password)


def test_a_master_never_creates_a_user_by_setting_its_password(
        redis_server: Any, adapter: RedisAdapter, users: Callable[..., DbCredentials]) -> None:
    # GIVEN a master user and a user name that does not exist
    master = users("m", master=True)
    missing = f"missing_{uuid.uuid4().hex[:8]}"
    # WHEN the master sets its password / THEN an error (ACL SETUSER alone would create it)
    with adapter.connect(master) as session, pytest.raises(DatabaseError, match="not exist"):
        session.set_password(missing, "Pw-" + secrets.token_urlsafe(12))
    assert redis_server.acl_rules(missing) is None


def test_add_password_keeps_exactly_two(redis_server: Any, adapter: RedisAdapter,
                                        users: Callable[..., DbCredentials],
                                        leak_scan: LeakScan) -> None:
    # GIVEN a user with its password, and two later ones
    user = users()
    second, third = ("Dual-" + secrets.token_urlsafe(16) for _ in range(2))
    leak_scan.add(second, third)
    # WHEN the second is added keeping the first (twice: idempotent) ...
    with adapter.connect(user) as session:
        session.add_password(user.username, second, keep=user.password)
        session.add_password(user.username, second, keep=user.password)
    # THEN both log in
    assert logs_in(redis_server, user.username, user.password)
    assert logs_in(redis_server, user.username, second)
    # ... and WHEN the third is added keeping the second, THEN the first is gone
    with adapter.connect(user.with_user(user.username, second)) as session:
        session.add_password(user.username, third, keep=second)
    assert not logs_in(redis_server, user.username, user.password)
    assert logs_in(redis_server, user.username, second)
    assert logs_in(redis_server, user.username, third)
    assert redis_server.acl_rules(user.username).count("#") == 2


def test_clone_gets_the_source_rules_both_ways(redis_server: Any, adapter: RedisAdapter,
                                               users: Callable[..., DbCredentials],
                                               leak_scan: LeakScan) -> None:
    # GIVEN a source with narrow rules and a selector, and a clone holding far more
    master, source = users("m", master=True), users("src")
    redis_server.command("ACL", "SETUSER", source.username, "reset", "on",
                         f"#{sha256(source.password)}", "~app:*", "%R~cache:*", "&news",
                         "+@read", "+ping", "-keys", "(~other:* +get)")
    clone = source.username + "_clone"
    redis_server.command("ACL", "SETUSER", clone, "on", "~*", "+@all", "nopass")
    password = "Clone-" + secrets.token_urlsafe(16)
    leak_scan.add(password)

    def rules(name: str) -> list[str]:
        line = redis_server.acl_rules(name)
        return [r for r in line.split(" ")[2:] if not r.startswith("#")]

    # WHEN the master syncs the clone, twice
    with adapter.connect(master) as session:
        session.sync_clone(source.username, clone, password)
        session.sync_clone(source.username, clone, password)
    # THEN the clone's rules are the source's (what it held beyond them is gone), its only
    # password is the new one's hash, and it logs in; the source is untouched
    assert rules(clone) == rules(source.username)
    assert "nopass" not in redis_server.acl_rules(clone)
    assert redis_server.acl_rules(clone).count("#") == 1
    assert logs_in(redis_server, clone, password)
    assert logs_in(redis_server, source.username, source.password)


def test_sync_clone_needs_the_master_permissions(adapter: RedisAdapter,
                                                 users: Callable[..., DbCredentials],
                                                 leak_scan: LeakScan) -> None:
    # GIVEN an app user (no ACL LIST) playing the master
    user = users()
    # WHEN it syncs a clone / THEN NOPERM names what a master needs
    with adapter.connect(user) as session, pytest.raises(PrivilegeError) as info:
        session.sync_clone(user.username, user.username + "_clone", "Pw-x" * 4)
    leak_scan.add_text(str(info.value))
    assert "+acl|list" in str(info.value)


# --------------------------------------------------------------------------------------------
# Whole rotations through lambda_handler
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def monitoring(server: Any) -> Iterator[list[str]]:
    """A MONITOR connection of its own, open for the block: the lines it saw (the block's
    commands up to an ECHO marker sent at its end)."""
    import redis.connection

    conn = redis.connection.SSLConnection(
        host=server.host, port=server.port, username=server.admin_user,
        password=server.admin_password, ssl_ca_certs=server.ca_file, protocol=2,
        driver_info=None, socket_timeout=None, socket_connect_timeout=10)
    conn.connect()
    conn.send_command("MONITOR")
    conn.read_response()
    seen: list[str] = []

    def read() -> None:
        while True:
            try:
                seen.append(conn.read_response().decode("utf-8", "replace"))
            except Exception:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        marker = f"monitor-end-{uuid.uuid4().hex}"
        server.command("ECHO", marker)
        deadline = time.monotonic() + 10
        while not any(marker in line for line in seen) and time.monotonic() < deadline:
            time.sleep(0.01)
        conn.disconnect()
        reader.join(timeout=10)


@pytest.fixture
def make_rig(sm: Any, redis_server: Any, monkeypatch: pytest.MonkeyPatch,
             leak_scan: LeakScan) -> Iterator[Callable[..., Rig]]:
    """A secret for a fresh Redis user (with a master secret for alternating users)."""
    monkeypatch.setenv("ROTATION_CA_BUNDLE", redis_server.ca_file)
    leak_scan.add(redis_server.admin_password)
    created: list[str] = []

    def build(master: bool = False) -> Rig:
        suffix = uuid.uuid4().hex[:8]
        username, password = f"rot_{suffix}", "Init-" + secrets.token_urlsafe(16)
        leak_scan.add(password)
        redis_server.create_login_user(username, password)
        created.extend([username, username + "_clone"])
        value: dict[str, Any] = {"engine": "redis", "host": redis_server.host,
                                 "port": redis_server.port, "username": username,
                                 "password": password}
        if master:
            master_user, master_pw = f"rotm_{suffix}", "Master-" + secrets.token_urlsafe(16)
            leak_scan.add(master_pw)
            redis_server.create_login_user(master_user, master_pw, can_create_roles=True)
            created.append(master_user)
            value["masterarn"] = sm.create_secret(Name=master_user, SecretString=json.dumps(
                {**value, "username": master_user, "password": master_pw}))["ARN"]
        arn = sm.create_secret(Name=username, SecretString=json.dumps(value))["ARN"]
        service = LocalRotationService(sm)
        service.enable_rotation(arn)
        return Rig(sm, service, arn, redis_server, ApiCallCounter())

    yield build
    for name in created:
        redis_server.drop_user(name)


def rotate_watched(rig: Rig, cold: bool) -> tuple[dict[str, int], tuple[int, int], list[str]]:
    """One rotation (see test_cost_counts.rotate) under a MONITOR connection of its own."""
    with monitoring(rig.db) as seen:
        calls, logins = rotate(rig, cold)
    return calls, logins, seen


def assert_no_plaintext(rig: Rig, seen: list[str]) -> None:
    """No password any version of the secret held is in what MONITOR saw, nor in the server's
    command stream (its MONITOR record, SLOWLOG, log)."""
    passwords = _stored_passwords(rig.sm)
    stream = "\n".join(seen) + rig.db.log_text()
    leaked = [p for p in passwords if p in stream]
    assert not leaked, f"{len(leaked)} plaintext password(s) in the server's command stream"
    assert sum("AUTH" in line.upper() for line in seen) >= 2  # MONITOR did see the logins


def test_single_user_rotation_costs_and_keeps_passwords_off_the_server(
        make_rig: Callable[..., Rig], leak_scan: LeakScan) -> None:
    # GIVEN a single-user Redis secret
    rig = make_rig()
    old = rig.value("AWSCURRENT")

    # WHEN it rotates warm (one container), then cold (one container per step), each under a
    # MONITOR connection
    warm_calls, warm_logins, warm_seen = rotate_watched(rig, cold=False)
    cold_calls, cold_logins, cold_seen = rotate_watched(rig, cold=True)

    # THEN the SQL engines' figures: 7 calls warm, 12 cold, 2 logins and no failure each time
    assert warm_calls == SINGLE_WARM
    assert sum(warm_calls.values()) == 7
    assert cold_calls == SINGLE_COLD
    assert sum(cold_calls.values()) == 12
    assert warm_logins == cold_logins == (2, 0)
    # ... MONITOR never saw a password, old or new
    assert_no_plaintext(rig, warm_seen + cold_seen)
    # ... and only the new password logs in
    new = rig.value("AWSCURRENT")
    assert logs_in(rig.db, new["username"], new["password"])
    assert not logs_in(rig.db, old["username"], old["password"])
    assert rig.db.acl_rules(new["username"]).count("#") == 1


def test_alternating_users_rotation_costs_and_clone_rules(
        make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an alternating-users Redis secret and its master secret
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    rig = make_rig(master=True)
    original = rig.value("AWSCURRENT")["username"]

    # WHEN it rotates both ways warm, then both ways cold, under MONITOR
    measured = [(mode, direction, *rotate_watched(rig, cold=mode == "cold"))
                for mode in ("warm", "cold")
                for direction in ("original -> clone", "clone -> original")]

    # THEN the SQL engines' figures, 2 logins (master, then the pending user), no failure
    for mode, direction, calls, logins, seen in measured:
        expected = (ALT_WARM if mode == "warm" else ALT_COLD)[direction]
        assert calls == expected, (mode, direction)
        assert logins == (2, 0), (mode, direction)
        assert_no_plaintext(rig, seen)
    # ... the clone has the original's ACL rules, and both users log in with their versions
    clone = original + "_clone"
    strip = [r for r in rig.db.acl_rules(original).split(" ")[2:] if not r.startswith("#")]
    assert [r for r in rig.db.acl_rules(clone).split(" ")[2:] if not r.startswith("#")] == strip
    for stage in ("AWSCURRENT", "AWSPREVIOUS"):
        value = rig.value(stage)
        assert logs_in(rig.db, value["username"], value["password"]), stage


def test_dual_password_rotation_costs_and_keeps_the_previous_password(
        make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a dual-password Redis secret
    monkeypatch.setenv("ROTATION_STRATEGY", "dual-password")
    rig = make_rig()
    first = rig.value("AWSCURRENT")

    # WHEN it rotates warm under MONITOR
    warm_calls, warm_logins, warm_seen = rotate_watched(rig, cold=False)
    second = rig.value("AWSCURRENT")

    # THEN 7 calls and 2 logins, no failure, no plaintext on the server, and after finishSecret
    # both AWSCURRENT and AWSPREVIOUS log in
    assert sum(warm_calls.values()) == 7, warm_calls
    assert warm_logins == (2, 0)
    assert_no_plaintext(rig, warm_seen)
    assert logs_in(rig.db, second["username"], second["password"])
    assert logs_in(rig.db, first["username"], first["password"])

    # WHEN it rotates again, cold
    cold_calls, cold_logins, cold_seen = rotate_watched(rig, cold=True)
    third = rig.value("AWSCURRENT")

    # THEN 12 calls, 2 logins; the password before AWSPREVIOUS is dropped at this setSecret,
    # the two latest log in
    assert sum(cold_calls.values()) == 12, cold_calls
    assert cold_logins == (2, 0)
    assert_no_plaintext(rig, cold_seen)
    assert logs_in(rig.db, third["username"], third["password"])
    assert logs_in(rig.db, second["username"], second["password"])
    assert not logs_in(rig.db, first["username"], first["password"])
    assert rig.db.acl_rules(third["username"]).count("#") == 2


# --------------------------------------------------------------------------------------------
# The fault matrix on the real server
# --------------------------------------------------------------------------------------------

class TracedRedisSession(TracedSession):
    """The traced session, with the dual-password operation announced as well."""

    def add_password(self, username: str, password: str, keep: str) -> None:
        _observe("add_password")
        self._inner.add_password(username, password, keep)  # type: ignore[attr-defined]
        _observe("after_add_password")

    def __enter__(self) -> TracedRedisSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class TracedRedisAdapter(RedisAdapter):
    def connect(self, credentials: DbCredentials) -> TracedRedisSession:  # type: ignore[override]
        _observe("connect")
        return TracedRedisSession(super().connect(credentials))


class RedisBench(RealBench):
    def logs_in(self, username: str, password: str) -> bool:
        return logs_in(self.server, username, password)


def _kinds(point: Point) -> tuple[str, ...]:
    return ("ClientError", "lost-response", "crash-after") if point.layer == "sm" else DB_FAULTS


@pytest.mark.parametrize("strategy", ["single-user", "alternating-users", "dual-password"])
def test_every_fault_converges_on_redis(sm: Any, redis_server: Any, leak_scan: LeakScan,
                                        monkeypatch: pytest.MonkeyPatch, strategy: str) -> None:
    # GIVEN secrets for real Redis users, rotated by `strategy`, through the traced adapter
    monkeypatch.setattr(rotation.adapters, "BUILTIN", {
        **rotation.adapters.BUILTIN, "redis": f"{__name__}:TracedRedisAdapter"})
    monkeypatch.setenv("ROTATION_CA_BUNDLE", redis_server.ca_file)
    monkeypatch.setenv("ROTATION_STRATEGY", strategy)
    bench = RedisBench(sm, "redis", redis_server, strategy, leak_scan)
    OBSERVERS.append(bench.tracer.on_db)
    # dual passwords: one clean rotation first, so the one under test has a password to drop
    harness = Harness(bench, leak_scan, f"redis {strategy}",
                      warmups=1 if strategy == "dual-password" else 0)
    mark = redis_server.log_position()
    try:
        # WHEN each operation of a clean rotation fails in turn, with each fault kind, and the
        # rotation is retried (the retry modes taken in turn)
        points, rows = run_matrix(harness, _kinds, ("resume/warm", "restart/cold"),
                                  rotate_modes=True)
    finally:
        OBSERVERS.clear()
        bench.drop_users()

    # THEN (table printed for -rP) every invariant held, checked by real logins
    print(f"\n{summary(points, rows)}; {harness.checks} invariant checks by real logins")
    print(table(rows, ("resume/warm", "restart/cold")))
    operations = {p.operation for p in points if p.layer == "db"}
    assert operations >= {"connect", "ping", {"single-user": "set_password",
                                              "alternating-users": "sync_clone",
                                              "dual-password": "add_password"}[strategy]}
    problems = violations(rows)
    assert not problems, f"{len(problems)} of {len(rows)} rows broke an invariant:\n" + \
        "\n".join(problems[:40])
    # ... and no password ever reached the server's command stream in plaintext
    stream = redis_server.log_text()
    assert redis_server.login_counts(mark).succeeded > len(rows)
    assert not [p for p in _stored_passwords(sm) if p in stream]


def test_the_handler_module_does_not_import_redis() -> None:
    # GIVEN / WHEN a fresh interpreter builds the app
    import subprocess
    import sys

    code = ("import os; os.environ['AWS_DEFAULT_REGION']='us-east-1'\n"
            "import rotation.handler, sys\nrotation.handler.get_app()\n"
            "print(any(m.split('.')[0] == 'redis' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    # THEN redis-py is not loaded: only a redis secret (or ROTATION_ENGINE=redis) loads it
    assert out.strip() == "False"


def test_session_repr_and_errors_hold_no_secret(redis_server: Any, adapter: RedisAdapter,
                                                users: Callable[..., DbCredentials]) -> None:
    # GIVEN an open session
    user = users()
    session = adapter.connect(user)
    # WHEN it is shown and closed twice / THEN no password anywhere, and a closed session
    # refuses commands with the framework's error
    assert isinstance(session, RedisSession)
    assert user.password not in repr(session) + repr(adapter)
    session.close()
    session.close()
    with pytest.raises(DatabaseError, match="closed"):
        session.ping()
    assert get_adapter("redis").clone_username("a" * 128).endswith("_clone")
    assert len(get_adapter("redis").clone_username("a" * 128)) == 128


# --------------------------------------------------------------------------------------------
# The sandbox's Redis
# --------------------------------------------------------------------------------------------

def test_sandbox_redis_counts_logins_and_keeps_default_off(
        redis_server: Any, users: Callable[..., DbCredentials], leak_scan: LeakScan) -> None:
    # GIVEN the session's Redis and a user
    user = users()
    leak_scan.add(redis_server.admin_password)
    mark = redis_server.log_position()
    # WHEN there are two good logins, two refused ones (wrong password, unknown user), one as
    # the disabled `default` user, and the admin's client
    assert logs_in(redis_server, user.username, user.password)
    assert logs_in(redis_server, user.username, user.password)
    assert not logs_in(redis_server, user.username, "Wrong-" + secrets.token_urlsafe(12))
    assert not logs_in(redis_server, f"nobody_{uuid.uuid4().hex[:6]}", "Pw-" + "x" * 12)
    assert not logs_in(redis_server, "default", "Pw-" + "y" * 12)
    client = redis_server.admin_connect()
    try:
        assert client.execute_command("PING") in (True, b"PONG")
    finally:
        client.close()
    # THEN the counts are exact: 3 succeeded, 3 failed
    assert redis_server.login_counts(mark) == LoginCounts(succeeded=3, failed=3)


def test_sandbox_redis_runs_unprivileged_and_stops_cleanly() -> None:
    import os
    from pathlib import Path

    from rotation.tools.sandbox import Sandbox

    # GIVEN a sandbox of its own with a Redis in it
    with Sandbox() as sandbox:
        server = sandbox.redis()
        status = Path(f"/proc/{server.pid}/status").read_text()
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        # WHEN it is stopped (twice: idempotent)
        server.stop()
        server.stop()
        # THEN it ran as an unprivileged user when we are root, and is gone
        assert uid != 0 or os.geteuid() != 0
        assert not server.running
        assert not Path(f"/proc/{server.pid}").exists()


def test_a_missing_redis_server_names_the_install_script(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rotation.tools import sandbox as sandbox_module

    # GIVEN no redis-server anywhere / WHEN the sandbox looks for it
    monkeypatch.setattr(sandbox_module, "_locate", lambda names: None)
    with pytest.raises(sandbox_module.SandboxError) as info:
        sandbox_module.find_redis_server()
    # THEN the error names the fix
    assert "scripts/install-db-servers.sh" in str(info.value)
