"""Which user each rotation works on: single-user keeps it, alternating users switch."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotation import strategies
from rotation.adapters.base import AdapterOptions, DatabaseAdapter
from rotation.adapters.mysql import MySQLAdapter
from rotation.adapters.postgres import PostgresAdapter
from rotation.credentials import DbCredentials, credentials_from_dict
from rotation.errors import ConfigError, SecretFormatError

MYSQL = MySQLAdapter(AdapterOptions())
POSTGRES = PostgresAdapter(AdapterOptions())
CASES = [(MYSQL, n) for n in ("app", "a" * 20, "b" * 26, "c" * 27, "d" * 31, "x_clone")] + \
        [(POSTGRES, n) for n in ("app", "b" * 57, "c" * 58, "d" * 62, "é" * 31, "x_clone")]


def creds(username: str) -> DbCredentials:
    return credentials_from_dict({"engine": "mysql", "host": "h", "username": username,
                                  "password": "pw-123456"}, "arn:x")


def _round_trip(adapter: DatabaseAdapter, name: str) -> None:
    clone = adapter.clone_username(name)
    assert clone != name
    # PostgreSQL counts bytes (NAMEDATALEN), MySQL counts characters
    size = len(clone.encode()) if adapter is POSTGRES else len(clone)
    assert size <= adapter.max_username_length
    # from the original: the clone (first rotation: no AWSPREVIOUS; later: the clone is previous)
    assert strategies.pending_username("alternating-users", creds(name), adapter) == clone
    assert strategies.pending_username("alternating-users", creds(name), adapter,
                                       lambda: clone) == clone
    # from the clone: the original (via AWSPREVIOUS when the clone name is at the limit)
    assert strategies.pending_username("alternating-users", creds(clone), adapter,
                                       lambda: name) == name


@pytest.mark.parametrize(("adapter", "name"), CASES)
def test_alternation_round_trips(adapter: Any, name: str) -> None:
    _round_trip(adapter, name)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
               max_size=32).filter(str.strip))
def test_alternation_round_trips_for_any_mysql_name(name: str) -> None:
    _round_trip(MYSQL, name)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
               max_size=63).filter(lambda n: n.strip() and len(n.encode()) <= 63))
def test_alternation_round_trips_for_any_postgres_name(name: str) -> None:
    _round_trip(POSTGRES, name)


def test_single_user_keeps_the_user() -> None:
    assert strategies.pending_username("single-user", creds("app"), MYSQL) == "app"


def test_previous_is_only_read_for_names_ending_in_clone() -> None:
    calls: list[int] = []

    def previous() -> str | None:
        calls.append(1)
        return "app"

    assert strategies.pending_username("alternating-users", creds("app"), MYSQL,
                                       previous) == "app_clone"
    assert calls == []
    assert strategies.pending_username("alternating-users", creds("app_clone"), MYSQL,
                                       previous) == "app"
    assert calls == [1]


def test_original_ending_in_clone_alternates_with_its_own_clone() -> None:
    # First rotation: no AWSPREVIOUS, so the configured user is the original.
    assert strategies.pending_username("alternating-users", creds("svc_clone"), MYSQL,
                                       lambda: None) == "svc_clone_clone"
    # Later rotations: AWSPREVIOUS names the other user of the pair.
    assert strategies.pending_username("alternating-users", creds("svc_clone"), MYSQL,
                                       lambda: "svc_clone_clone") == "svc_clone_clone"
    assert strategies.pending_username("alternating-users", creds("svc_clone_clone"), MYSQL,
                                       lambda: "svc_clone") == "svc_clone"


# --------------------------------------------------------------------------------------------
# User name limits: per engine, checked before anything is written
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["single-user", "alternating-users"])
@pytest.mark.parametrize(("engine", "size"), [("mariadb", 33), ("mariadb", 60), ("mariadb", 80),
                                              ("mysql", 32), ("aurora-mysql", 32)])
def test_a_name_within_its_engines_limit_passes(engine: str, size: int, strategy: str) -> None:
    strategies.check_username_length("u" * size, MYSQL, "arn:x", engine=engine,
                                     strategy=strategy)


@pytest.mark.parametrize("engine", ["mysql", "aurora-mysql"])
def test_a_mariadb_length_name_under_engine_mysql_says_to_set_the_engine(engine: str) -> None:
    # GIVEN a 40-character user in a secret whose engine is MySQL's (common for MariaDB)
    # WHEN createSecret checks it THEN it is refused, and the error says what to do
    with pytest.raises(SecretFormatError) as info:
        strategies.check_username_length("u" * 40, MYSQL, "arn:x", engine=engine)
    text = str(info.value)
    assert f"key `username` is 40 characters long in secret arn:x; engine `{engine}` allows 32" \
        in text
    assert "if the database is mariadb, set `engine` to `mariadb` in the secret" in text
    assert info.value.key == "username"


def test_a_name_too_long_for_every_engine_only_asks_for_a_shorter_one() -> None:
    with pytest.raises(SecretFormatError) as info:
        strategies.check_username_length("u" * 81, MYSQL, "arn:x", engine="mariadb")
    assert "engine `mariadb` allows 80" in str(info.value)
    assert "set `engine`" not in str(info.value)
    assert "use a shorter user name" in str(info.value)


def test_postgres_counts_bytes_as_before() -> None:
    strategies.check_username_length("é" * 31, POSTGRES, "arn:x", engine="postgres")
    with pytest.raises(SecretFormatError, match="64 bytes long"):
        strategies.check_username_length("é" * 32, POSTGRES, "arn:x", engine="postgres")


class PlainAdapter:
    """A plug-in adapter written before ``username_limit`` existed."""

    family = "plain"
    max_username_length = 10

    def __init__(self, options: AdapterOptions) -> None:
        self.options = options


@pytest.mark.parametrize("engine", [None, "plain"])
def test_adapters_without_username_limit_keep_max_username_length(engine: str | None) -> None:
    adapter: Any = PlainAdapter(AdapterOptions())
    strategies.check_username_length("u" * 10, adapter, "arn:x", engine=engine)
    with pytest.raises(SecretFormatError, match="allows 10"):
        strategies.check_username_length("u" * 11, adapter, "arn:x", engine=engine)
    assert strategies.username_limit(adapter, engine, "alternating-users") == 10


# -- dual-password: the secret's own user, on engines that hold two passwords ------------------

def test_dual_password_rotates_the_secrets_own_user() -> None:
    # GIVEN a current credential WHEN the pending user is chosen / checked THEN it is the same
    current = creds("app")
    assert strategies.pending_username("dual-password", current, MYSQL) == "app"
    strategies.check_pending_matches("dual-password", current, creds("app"), MYSQL)
    with pytest.raises(SecretFormatError):
        strategies.check_pending_matches("dual-password", current, creds("app_clone"), MYSQL)


class _NoDualAdapter:
    """A plug-in written before dual passwords: no supports_dual_password at all."""

    family = "plug"
    max_username_length = 63


class _NoDualToday(_NoDualAdapter):
    def supports_dual_password(self, engine: str) -> bool:
        return False


@pytest.mark.parametrize(("adapter", "engine", "supported"), [
    (MYSQL, "mysql", True),
    (MYSQL, "aurora-mysql", True),
    (MYSQL, "mariadb", False),
    (POSTGRES, "postgres", False),  # no supports_dual_password: absent means no
    (POSTGRES, "aurora-postgresql", False),
    (_NoDualAdapter(), "plug", False),
    (_NoDualToday(), "plug", False),
], ids=["mysql", "aurora-mysql", "mariadb", "postgres", "aurora-postgresql", "plug-in without",
        "plug-in saying no"])
def test_which_engines_hold_two_passwords(adapter: Any, engine: str, supported: bool) -> None:
    # GIVEN an adapter and an engine WHEN asked THEN the answer; a refusal names the way out
    assert strategies.supports_dual_password(adapter, engine) is supported
    if supported:
        strategies.check_dual_password_support(adapter, engine, "arn:x")
        return
    with pytest.raises(ConfigError) as info:
        strategies.check_dual_password_support(adapter, engine, "arn:x")
    message = str(info.value)
    for words in ("ROTATION_STRATEGY=dual-password", "`engine`", "arn:x", f"`{engine}`",
                  "single-user", "alternating-users", "`masterarn`"):
        assert words in message
