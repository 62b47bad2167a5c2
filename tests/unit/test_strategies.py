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
