"""Settings from the environment: AWS's password-policy variables and ours; bad values fail
naming the variable."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotation.config import DEFAULT_EXCLUDE_CHARACTERS, PasswordPolicy, Settings
from rotation.errors import ConfigError
from rotation.password import PUNCTUATION, generate_password


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.strategy == "single-user"
    assert s.endpoint_url is None
    assert s.ca_bundle is None
    assert s.password_policy == PasswordPolicy()
    assert s.password_policy.exclude_characters == DEFAULT_EXCLUDE_CHARACTERS


def test_values_are_read(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    s = Settings.from_env({
        "ROTATION_STRATEGY": "alternating-users", "ROTATION_CA_BUNDLE": str(ca),
        "SECRETS_MANAGER_ENDPOINT": "https://secretsmanager.eu-west-1.amazonaws.com",
        "PASSWORD_LENGTH": "40", "EXCLUDE_CHARACTERS": ":;", "EXCLUDE_NUMBERS": "TRUE",
        "REQUIRE_EACH_INCLUDED_TYPE": "false", "ROTATION_DB_CONNECT_TIMEOUT": "3"})
    assert s.strategy == "alternating-users"
    assert s.ca_bundle == str(ca)
    assert s.endpoint_url == "https://secretsmanager.eu-west-1.amazonaws.com"
    assert s.password_policy.length == 40
    assert s.password_policy.exclude_characters == ":;"
    assert s.password_policy.exclude_numbers is True
    assert s.password_policy.require_each_included_type is False
    assert s.connect_timeout == 3.0
    assert s.deprecations == ()


@pytest.mark.parametrize(("env", "strategy", "deprecated"), [
    ({}, "single-user", False),
    ({"ROTATION_STRATEGY": "dual-password"}, "dual-password", False),
    ({"ROTATION_STRATEGY": " alternating-users "}, "alternating-users", False),
    # the deprecated alias: true means dual-password, alone or beside what it used to modify
    ({"ROTATION_MYSQL_DUAL_PASSWORD": "true"}, "dual-password", True),
    ({"ROTATION_MYSQL_DUAL_PASSWORD": "TRUE", "ROTATION_STRATEGY": "single-user"},
     "dual-password", True),
    ({"ROTATION_MYSQL_DUAL_PASSWORD": "true", "ROTATION_STRATEGY": "dual-password"},
     "dual-password", True),
    # false (the old template's default) asks for nothing, beside any strategy
    ({"ROTATION_MYSQL_DUAL_PASSWORD": "false"}, "single-user", False),
    ({"ROTATION_MYSQL_DUAL_PASSWORD": "false", "ROTATION_STRATEGY": "alternating-users"},
     "alternating-users", False),
    ({"ROTATION_MYSQL_DUAL_PASSWORD": "false", "ROTATION_STRATEGY": "dual-password"},
     "dual-password", False),
    ({"ROTATION_MYSQL_DUAL_PASSWORD": ""}, "single-user", False),
])
def test_strategy_and_its_deprecated_alias(env: dict[str, str], strategy: str,
                                           deprecated: bool) -> None:
    # GIVEN / WHEN the settings are read
    s = Settings.from_env(env)
    # THEN the strategy is the one asked for; the alias, when it asks, is reported deprecated
    assert s.strategy == strategy
    assert bool(s.deprecations) is deprecated
    for warning in s.deprecations:
        assert "ROTATION_MYSQL_DUAL_PASSWORD is deprecated" in warning
        assert "ROTATION_STRATEGY=dual-password" in warning


def test_the_alias_contradicting_the_strategy_is_refused() -> None:
    # GIVEN alternating users and the alias of dual passwords WHEN read THEN refused, naming both
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"ROTATION_STRATEGY": "alternating-users",
                           "ROTATION_MYSQL_DUAL_PASSWORD": "true"})
    assert "ROTATION_MYSQL_DUAL_PASSWORD" in str(info.value)
    assert "ROTATION_STRATEGY=alternating-users" in str(info.value)
    assert "remove ROTATION_MYSQL_DUAL_PASSWORD" in info.value.hint


@pytest.mark.parametrize(("env", "name"), [
    ({"ROTATION_STRATEGY": "multi-user"}, "ROTATION_STRATEGY"),
    ({"ROTATION_CA_BUNDLE": "/nonexistent/ca.pem"}, "ROTATION_CA_BUNDLE"),
    ({"PASSWORD_LENGTH": "abc"}, "PASSWORD_LENGTH"),
    ({"PASSWORD_LENGTH": "4"}, "PASSWORD_LENGTH"),
    ({"PASSWORD_LENGTH": "5000"}, "PASSWORD_LENGTH"),
    ({"PASSWORD_LENGTH": "-3"}, "PASSWORD_LENGTH"),
    ({"EXCLUDE_NUMBERS": "ja"}, "EXCLUDE_NUMBERS"),
    ({"EXCLUDE_PUNCTUATION": "2"}, "EXCLUDE_PUNCTUATION"),
    ({"EXCLUDE_UPPERCASE": "nope"}, "EXCLUDE_UPPERCASE"),
    ({"EXCLUDE_LOWERCASE": "on"}, "EXCLUDE_LOWERCASE"),
    ({"REQUIRE_EACH_INCLUDED_TYPE": "maybe"}, "REQUIRE_EACH_INCLUDED_TYPE"),
    ({"ROTATION_DB_CONNECT_TIMEOUT": "fast"}, "ROTATION_DB_CONNECT_TIMEOUT"),
    ({"ROTATION_DB_CONNECT_TIMEOUT": "600"}, "ROTATION_DB_CONNECT_TIMEOUT"),
    ({"ROTATION_MYSQL_DUAL_PASSWORD": "enable"}, "ROTATION_MYSQL_DUAL_PASSWORD"),
    ({"ROTATION_STRATEGY": "dual"}, "dual-password"),
    ({"EXCLUDE_NUMBERS": "true", "EXCLUDE_PUNCTUATION": "true", "EXCLUDE_UPPERCASE": "true",
      "EXCLUDE_LOWERCASE": "true"}, "EXCLUDE_CHARACTERS"),
    ({"EXCLUDE_CHARACTERS": string.ascii_letters + string.digits + PUNCTUATION},
     "EXCLUDE_CHARACTERS"),
])
def test_bad_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert name in str(info.value)
    assert info.value.hint


def test_password_honours_policy() -> None:
    policy = PasswordPolicy(length=24, exclude_characters="abc", exclude_punctuation=True)
    for _ in range(50):
        pw = generate_password(policy)
        assert len(pw) == 24
        assert not set(pw) & set("abc" + PUNCTUATION)
        assert any(c.islower() for c in pw)
        assert any(c.isupper() for c in pw)
        assert any(c.isdigit() for c in pw)


def test_default_policy_excludes_database_unsafe_characters() -> None:
    pw = "".join(generate_password(PasswordPolicy()) for _ in range(30))
    assert not set(pw) & set(DEFAULT_EXCLUDE_CHARACTERS + " ")


@settings(max_examples=60)
@given(length=st.integers(8, 64), numbers=st.booleans(), punctuation=st.booleans(),
       upper=st.booleans(), exclude=st.text(alphabet=string.printable, max_size=12))
def test_each_included_type_is_present(length: int, numbers: bool, punctuation: bool,
                                       upper: bool, exclude: str) -> None:
    policy = PasswordPolicy(length=length, exclude_characters=exclude, exclude_numbers=numbers,
                            exclude_punctuation=punctuation, exclude_uppercase=upper)
    pw = generate_password(policy)
    assert len(pw) == length
    assert not set(pw) & set(exclude)
    from rotation.password import character_classes

    for group in character_classes(policy):
        assert set(pw) & set(group)
