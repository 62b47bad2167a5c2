"""Yes/no settings: AWS's samples' spellings are read the same here; anything else is refused
(where the samples silently read it as false), naming the variable and the spellings."""

from __future__ import annotations

import pytest

from rotation.config import (
    DUAL_PASSWORD,
    EXCLUDE_LOWERCASE,
    EXCLUDE_NUMBERS,
    EXCLUDE_PUNCTUATION,
    EXCLUDE_UPPERCASE,
    FALSE_SPELLINGS,
    REQUIRE_EACH_INCLUDED_TYPE,
    TRUE_SPELLINGS,
    PasswordPolicy,
    Settings,
)
from rotation.errors import ConfigError

#: variable -> the PasswordPolicy attribute it sets
POLICY_FLAGS = {
    EXCLUDE_NUMBERS: "exclude_numbers",
    EXCLUDE_PUNCTUATION: "exclude_punctuation",
    EXCLUDE_UPPERCASE: "exclude_uppercase",
    EXCLUDE_LOWERCASE: "exclude_lowercase",
    REQUIRE_EACH_INCLUDED_TYPE: "require_each_included_type",
}


def sample_reads_as_true(value: str) -> bool:
    """What AWS's sample functions do (get_environment_bool): anything else is false."""
    return value.lower() in ["true", "1", "y", "yes"]


SPELLINGS = [
    # (raw value, what it means)
    ("true", True), ("TRUE", True), ("True", True), ("1", True), ("y", True), ("Y", True),
    ("yes", True), ("YES", True), ("Yes", True), (" yes ", True),
    ("false", False), ("FALSE", False), ("False", False), ("0", False), ("n", False),
    ("N", False), ("no", False), ("NO", False), ("No", False), (" false\n", False),
]
REFUSED = ["ture", "on", "off", "t", "f", "2", "-1", "yess", "nope", "enabled", "null", "none",
           "true false", "y e s"]


def test_the_spellings_are_the_samples() -> None:
    # GIVEN the spellings the function reads as true and as false
    # WHEN compared with AWS's samples' reading / THEN the true ones are exactly the samples'
    # true ones, and no false spelling is one of them
    assert all(sample_reads_as_true(value) for value in TRUE_SPELLINGS)
    assert not any(sample_reads_as_true(value) for value in FALSE_SPELLINGS)
    assert set(TRUE_SPELLINGS) == {"true", "1", "y", "yes"}
    assert set(FALSE_SPELLINGS) == {"false", "0", "n", "no"}


@pytest.mark.parametrize(("raw", "meaning"), SPELLINGS)
@pytest.mark.parametrize("variable", list(POLICY_FLAGS))
def test_every_spelling_sets_the_policy_flag(variable: str, raw: str, meaning: bool) -> None:
    # GIVEN one password-policy flag in one spelling
    env = {variable: raw}
    # WHEN the settings are read
    policy = Settings.from_env(env).password_policy
    # THEN the flag means what the spelling says, as the samples read it (they do not strip
    # surrounding spaces; the function does)
    assert getattr(policy, POLICY_FLAGS[variable]) is meaning
    assert meaning is sample_reads_as_true(raw.strip())


@pytest.mark.parametrize(("raw", "meaning"), SPELLINGS)
def test_the_deprecated_dual_password_alias_takes_the_same_spellings(raw: str,
                                                                     meaning: bool) -> None:
    # GIVEN ROTATION_MYSQL_DUAL_PASSWORD in one spelling
    # WHEN the settings are read
    settings = Settings.from_env({DUAL_PASSWORD: raw})
    # THEN a true spelling is the dual-password strategy (with its deprecation), a false one
    # asks for nothing
    assert settings.strategy == ("dual-password" if meaning else "single-user")
    assert bool(settings.deprecations) is meaning


@pytest.mark.parametrize("raw", REFUSED)
@pytest.mark.parametrize("variable", [*POLICY_FLAGS, DUAL_PASSWORD])
def test_anything_else_is_refused_naming_variable_and_spellings(variable: str, raw: str) -> None:
    # GIVEN a value the samples would silently read as false
    assert not sample_reads_as_true(raw)
    # WHEN the settings are read
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: raw})
    # THEN the error names the variable, the value and every accepted spelling, and says what
    # to set
    text = str(info.value)
    assert variable in text
    assert repr(raw) in text
    for spelling in (*TRUE_SPELLINGS, *FALSE_SPELLINGS):
        assert spelling in text
    assert info.value.hint == f"set {variable}=true or {variable}=false"


@pytest.mark.parametrize("raw", ["", "   "], ids=["empty", "blank"])
def test_an_empty_flag_keeps_the_default(raw: str) -> None:
    # GIVEN every flag set to an empty value (an unset template parameter may give one)
    env = dict.fromkeys(POLICY_FLAGS, raw)
    # WHEN the settings are read / THEN the policy is the default one
    assert Settings.from_env(env).password_policy == PasswordPolicy()


def test_a_long_bad_value_is_cut_in_the_message() -> None:
    # GIVEN a long wrong value (a pasted blob, say)
    raw = "x" * 500
    # WHEN read / THEN the message quotes only its start
    with pytest.raises(ConfigError) as info:
        Settings.from_env({EXCLUDE_NUMBERS: raw})
    assert raw not in str(info.value)
    assert "x" * 40 in str(info.value)
