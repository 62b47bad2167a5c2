"""The Redis adapter's pure parts: password hashes, user names, ACL LIST lines and the rules a
clone copies (no server; tests/integration/test_redis.py runs them against one)."""

from __future__ import annotations

import hashlib

import pytest

from rotation.adapters import BUILTIN, load_adapter_class
from rotation.adapters.redis import (
    MAX_USERNAME_LENGTH,
    RedisAdapter,
    acl_line_rules,
    check_username,
    clone_setuser_args,
    clone_username,
    password_hash,
    split_acl_rules,
    without_passwords,
)
from rotation.credentials import parse_secret
from rotation.errors import SecretFormatError

HEX = "a" * 64


def test_the_hash_is_what_redis_stores() -> None:
    # GIVEN a password / WHEN hashed / THEN the hex SHA-256 of its UTF-8 bytes (ACL SETUSER #)
    assert password_hash("pässword") == hashlib.sha256("pässword".encode()).hexdigest()
    assert len(password_hash("x")) == 64


@pytest.mark.parametrize(("line", "rules"), [
    ("on #abc ~* +@all", ["on", "#abc", "~*", "+@all"]),
    ("on ~app:* resetchannels -@all +get (~x* resetchannels -@all +get)",
     ["on", "~app:*", "resetchannels", "-@all", "+get", "(~x* resetchannels -@all +get)"]),
    ("off (~a* +get) (~b* +set)", ["off", "(~a* +get)", "(~b* +set)"]),
    ("on (+get)", ["on", "(+get)"]),
    ("on  ~*", ["on", "~*"]),
])
def test_acl_rules_are_split_like_redis_reads_an_acl_file(line: str, rules: list[str]) -> None:
    # GIVEN the rules of an ACL LIST line / WHEN split / THEN a selector stays one rule
    assert split_acl_rules(line) == rules


def test_a_user_is_found_by_its_exact_name() -> None:
    # GIVEN ACL LIST output with names that share a prefix
    lines = ["user app on #h1 ~* +@all", "user app_clone on #h2 ~x +get", "user default off"]
    # WHEN looked up / THEN only the exact name matches, and a missing user is None
    assert acl_line_rules(lines, "app") == ["on", "#h1", "~*", "+@all"]
    assert acl_line_rules(lines, "app_clone") == ["on", "#h2", "~x", "+get"]
    assert acl_line_rules(lines, "default") == ["off"]
    assert acl_line_rules(lines, "ap") is None


def test_a_clone_copies_every_rule_but_the_passwords() -> None:
    # GIVEN a source's rules holding passwords in every form Redis takes
    rules = ["on", f"#{HEX}", ">plain", "<plain", f"!{HEX}", "nopass", "resetpass",
             "sanitize-payload", "~app:*", "%R~cache:*", "&news", "-@all", "+get",
             "(~x* +get)"]
    # WHEN the clone's ACL SETUSER is built
    args = clone_setuser_args("app_clone", rules, "b" * 64)
    # THEN reset first, the source's other rules in order, and only the clone's own hash
    assert args == ["ACL", "SETUSER", "app_clone", "reset", "on", "sanitize-payload", "~app:*",
                    "%R~cache:*", "&news", "-@all", "+get", "(~x* +get)", f"#{'b' * 64}"]
    assert without_passwords(rules) == args[4:-1]


@pytest.mark.parametrize("name", ["app", "o'brien", 'dq"x', "semi;colon", "ünïcødé", "#x", ">y"])
def test_names_redis_takes_pass(name: str) -> None:
    # GIVEN / WHEN / THEN a name without whitespace or control characters is accepted
    check_username(name)


@pytest.mark.parametrize("name", ["", "a b", "a\tb", "a\nb", "a\x00b", "a\x7fb",
                                  "x" * (MAX_USERNAME_LENGTH + 1)])
def test_names_redis_cannot_hold_are_refused(name: str) -> None:
    # GIVEN a name Redis would refuse (or ACL LIST could not show apart) / WHEN checked
    with pytest.raises(SecretFormatError) as info:
        check_username(name)
    # THEN a secret format error on `username`
    assert info.value.key == "username"


def test_clone_names_fit_the_limit_and_stay_distinct() -> None:
    # GIVEN a short name and two long names sharing a prefix
    long_a, long_b = "a" * 125 + "x", "a" * 125 + "y"
    # WHEN their clone names are made / THEN AWS's suffix, within the limit, distinct
    assert clone_username("app") == "app_clone"
    assert len(clone_username(long_a)) <= MAX_USERNAME_LENGTH
    assert clone_username(long_a) != clone_username(long_b)
    assert clone_username(long_a).endswith("_clone")


def test_redis_is_a_builtin_engine_with_its_default_port() -> None:
    # GIVEN a redis secret without a port / WHEN parsed and its adapter loaded
    creds = parse_secret('{"engine": "redis", "host": "h", "username": "u", "password": "pw-123"}',
                         "arn:aws:secretsmanager:us-east-1:123456789012:secret:r-AbCdEf")
    # THEN port 6379, no dbname, verify-full, and the Redis adapter (dual passwords supported)
    assert (creds.port, creds.dbname, creds.sslmode, creds.family) == \
        (6379, None, "verify-full", "redis")
    assert BUILTIN["redis"] == "rotation.adapters.redis:RedisAdapter"
    adapter_class = load_adapter_class("redis")
    assert adapter_class is RedisAdapter
    assert RedisAdapter.family == "redis"
