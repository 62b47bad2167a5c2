"""Settings from environment variables, parsed and validated once per container."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from rotation.errors import ConfigError

Strategy = Literal["single-user", "alternating-users", "dual-password"]
STRATEGIES: tuple[Strategy, ...] = ("single-user", "alternating-users", "dual-password")

# AWS's samples exclude these by default: they break connection strings and shell quoting.
DEFAULT_EXCLUDE_CHARACTERS = "/@\"'\\"

#: the spellings of a yes/no setting (compared lower-cased): AWS's samples read the first as true
TRUE_SPELLINGS: tuple[str, ...] = ("true", "1", "y", "yes")
FALSE_SPELLINGS: tuple[str, ...] = ("false", "0", "n", "no")

ENDPOINT = "SECRETS_MANAGER_ENDPOINT"
STRATEGY = "ROTATION_STRATEGY"
CA_BUNDLE = "ROTATION_CA_BUNDLE"
CONNECT_TIMEOUT = "ROTATION_DB_CONNECT_TIMEOUT"
#: deprecated alias: ``true`` means ROTATION_STRATEGY=dual-password (see :meth:`Settings.from_env`)
DUAL_PASSWORD = "ROTATION_MYSQL_DUAL_PASSWORD"
PASSWORD_LENGTH = "PASSWORD_LENGTH"
EXCLUDE_CHARACTERS = "EXCLUDE_CHARACTERS"
EXCLUDE_NUMBERS = "EXCLUDE_NUMBERS"
EXCLUDE_PUNCTUATION = "EXCLUDE_PUNCTUATION"
EXCLUDE_UPPERCASE = "EXCLUDE_UPPERCASE"
EXCLUDE_LOWERCASE = "EXCLUDE_LOWERCASE"
REQUIRE_EACH_INCLUDED_TYPE = "REQUIRE_EACH_INCLUDED_TYPE"
#: the engine the function serves (the template's Engine): Lambda's init phase loads its adapter
#: and driver, so the first step does not; a secret of another engine still works
ENGINE_HINT = "ROTATION_ENGINE"


@dataclass(frozen=True)
class PasswordPolicy:
    """AWS's GetRandomPassword parameters, applied locally."""

    length: int = 32
    exclude_characters: str = DEFAULT_EXCLUDE_CHARACTERS
    exclude_numbers: bool = False
    exclude_punctuation: bool = False
    exclude_uppercase: bool = False
    exclude_lowercase: bool = False
    require_each_included_type: bool = True


@dataclass(frozen=True)
class Settings:
    strategy: Strategy = "single-user"
    endpoint_url: str | None = None
    ca_bundle: str | None = None
    connect_timeout: float = 5.0
    password_policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    #: warnings about deprecated settings (no values in them); the app logs them once per
    #: container, when it is built
    deprecations: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        strategy, deprecations = _strategy(env)
        ca_bundle = env.get(CA_BUNDLE, "").strip() or None
        if ca_bundle is not None and not os.path.isfile(ca_bundle):
            raise ConfigError(f"{CA_BUNDLE} names {ca_bundle!r}, which is not a readable file",
                              hint="point it at a PEM bundle shipped with the function or a layer")
        endpoint = env.get(ENDPOINT, "").strip() or None
        if endpoint is not None:
            parsed = urlsplit(endpoint)
            if parsed.scheme not in ("https", "http") or not parsed.hostname:
                raise ConfigError(f"{ENDPOINT} is {endpoint[:100]!r}, not an http(s) URL",
                                  hint=f"set {ENDPOINT} to e.g. "
                                       "https://secretsmanager.eu-west-1.amazonaws.com")
        return cls(
            strategy=strategy,
            endpoint_url=endpoint,
            ca_bundle=ca_bundle,
            connect_timeout=_number(env, CONNECT_TIMEOUT, 5.0, 0.5, 60.0),
            password_policy=_policy(env),
            deprecations=deprecations,
        )


def _strategy(env: Mapping[str, str]) -> tuple[Strategy, tuple[str, ...]]:
    """ROTATION_STRATEGY, with the deprecated ROTATION_MYSQL_DUAL_PASSWORD folded in.

    ``ROTATION_MYSQL_DUAL_PASSWORD=true`` used to switch single-user rotation to MySQL dual
    passwords: it now means ``dual-password``, alone or beside ``single-user`` (what it was
    combined with before) or ``dual-password``, with a deprecation warning. Beside
    ``alternating-users`` it contradicts the strategy and is refused. ``false`` (the old
    template's default) asks for nothing."""
    raw = env.get(STRATEGY, "").strip()
    named = raw or "single-user"
    if named not in STRATEGIES:
        raise ConfigError(f"{STRATEGY} has the unknown value {raw!r}",
                          hint="set it to " + ", ".join(STRATEGIES[:-1]) + " or "
                               + STRATEGIES[-1])
    strategy: Strategy = next(s for s in STRATEGIES if s == named)
    if not _flag(env, DUAL_PASSWORD, False):
        return strategy, ()
    if strategy == "alternating-users":
        raise ConfigError(
            f"{DUAL_PASSWORD}=true (a deprecated alias of {STRATEGY}=dual-password) contradicts "
            f"{STRATEGY}=alternating-users",
            hint=f"remove {DUAL_PASSWORD}, and keep {STRATEGY}=alternating-users or set it to "
                 "dual-password")
    return "dual-password", (
        f"{DUAL_PASSWORD} is deprecated: {DUAL_PASSWORD}=true is read as {STRATEGY}="
        f"dual-password; set {STRATEGY}=dual-password and remove {DUAL_PASSWORD} (template: "
        "RotationStrategy=dual-password, MysqlDualPassword=false)",)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no setting, in any case: AWS's spellings for true (its samples read
    ``value.lower() in ['true', '1', 'y', 'yes']``) and their opposites for false.

    Unlike the samples, anything else is refused rather than read as false: a typo such as
    ``ture`` would otherwise silently drop a password rule."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in TRUE_SPELLINGS:
        return True
    if value in FALSE_SPELLINGS:
        return False
    raise ConfigError(
        f"{name} must be one of {', '.join(TRUE_SPELLINGS)} (true) or "
        f"{', '.join(FALSE_SPELLINGS)} (false), in any case; not {raw[:40]!r}",
        hint=f"set {name}=true or {name}=false")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}",
                          hint=f"set {name} between {low} and {high}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw} is out of range", hint=f"set it between {low} and {high}")
    return value


def _policy(env: Mapping[str, str]) -> PasswordPolicy:
    raw_length = env.get(PASSWORD_LENGTH, "").strip()
    length = 32
    if raw_length:
        if not raw_length.isdigit() or not 8 <= int(raw_length) <= 4096:
            raise ConfigError(f"{PASSWORD_LENGTH} must be a whole number from 8 to 4096, "
                              f"not {raw_length!r}", hint=f"set {PASSWORD_LENGTH}=32")
        length = int(raw_length)
    exclude = env.get(EXCLUDE_CHARACTERS)
    policy = PasswordPolicy(
        length=length,
        exclude_characters=DEFAULT_EXCLUDE_CHARACTERS if exclude is None else exclude,
        exclude_numbers=_flag(env, EXCLUDE_NUMBERS, False),
        exclude_punctuation=_flag(env, EXCLUDE_PUNCTUATION, False),
        exclude_uppercase=_flag(env, EXCLUDE_UPPERCASE, False),
        exclude_lowercase=_flag(env, EXCLUDE_LOWERCASE, False),
        require_each_included_type=_flag(env, REQUIRE_EACH_INCLUDED_TYPE, True),
    )
    # Fail at start-up, not at the first rotation: the policy must leave characters to draw from.
    from rotation.password import character_classes

    classes = character_classes(policy)
    if not classes:
        raise ConfigError("the password policy excludes every character",
                          hint=f"relax {EXCLUDE_CHARACTERS} or the EXCLUDE_* flags")
    if policy.require_each_included_type and len(classes) > policy.length:
        raise ConfigError(f"{PASSWORD_LENGTH}={policy.length} is shorter than the number of "
                          "required character types", hint=f"raise {PASSWORD_LENGTH}")
    return policy
