"""The PostgreSQL clone planner (rotation/adapters/_pg_roles.py) without a server: parsing of
stored settings, the statements a plan renders, and the privilege check's rules per version.
The same behaviour on a real server: tests/integration/test_pg_clone_privileges.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from rotation.adapters._pg_roles import (
    PG15,
    PG16,
    Attributes,
    Master,
    Membership,
    Parameter,
    Plan,
    Role,
    SettingKey,
    make_plan,
    parse_setconfig,
    privilege_needs,
    setting_value,
    split_list,
)

VERIFIER = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
CREATEROLE_MASTER = Master("master", createrole=True)
PLAIN = Attributes()  # what CREATE ROLE gives


def render(plan: Plan) -> list[str]:
    from psycopg import sql

    return [s.as_string(None) for s in plan.statements(sql.Literal(VERIFIER))]


def plan_for(source: Attributes = PLAIN, clone: Attributes | None = PLAIN,
             memberships: tuple[Membership, ...] = (Membership("app"),),
             source_settings: dict[SettingKey, str] | None = None,
             clone_settings: dict[SettingKey, str] | None = None,
             master: Master = CREATEROLE_MASTER) -> Plan:
    existing = None if clone is None else Role("app_clone", clone)
    return make_plan(master, Role("app", source), "app_clone", existing,
                     memberships if clone is not None else (), source_settings or {},
                     clone_settings or {})


# -- stored settings --------------------------------------------------------------------------

@pytest.mark.parametrize(("stored", "elements"), [
    ('"my schema", public', ["my schema", "public"]),
    ('"$user", public', ["$user", "public"]),
    ('"a""b", "C"', ['a"b', "C"]),
    ('""', [""]),
    ("a,b", ["a", "b"]),
    ("  a , b  ", ["a", "b"]),
    ("", []),
    ('"unterminated', None),
    ("a b", None),
    ("a,,b", None),
])
def test_split_list(stored: str, elements: list[str] | None) -> None:
    assert split_list(stored) == elements


@pytest.mark.parametrize(("name", "stored", "rendered"), [
    # GUC_LIST_QUOTE: one literal per element, which the server quotes back to `stored`
    ("search_path", '"my schema", public', "'my schema', 'public'"),
    ("SEARCH_PATH", '"$user", "Other"', "'$user', 'Other'"),
    ("temp_tablespaces", "fast", "'fast'"),
    # anything else is stored verbatim from one literal, '=' and quotes included
    ("application_name", "a=b 'c'", "'a=b ''c'''"),
    ("role", "app_owner", "'app_owner'"),
    ("myapp.list", '"x", y', "'\"x\", y'"),
    # a list value that does not parse is passed on as it is
    ("search_path", '"broken', "'\"broken'"),
])
def test_setting_value_round_trips(name: str, stored: str, rendered: str) -> None:
    assert setting_value(name, stored).as_string(None) == rendered


def test_parse_setconfig_splits_at_the_first_equals_sign() -> None:
    assert parse_setconfig(["role=owner", "application_name=a=b", "odd"]) == {
        "role": "owner", "application_name": "a=b"}
    assert parse_setconfig(None) == {}


# -- plans ----------------------------------------------------------------------------------------

def test_a_matching_clone_gets_only_its_password() -> None:
    # GIVEN a clone with the source's attributes, membership and settings
    settings = {(None, "search_path"): '"my schema", public', ("appdb", "role"): "owner"}
    plan = plan_for(Attributes(createdb=True, connection_limit=7),
                    Attributes(createdb=True, connection_limit=7),
                    source_settings=settings, clone_settings=dict(settings))
    # THEN the plan changes nothing but the password
    assert not plan.changes_privileges
    assert render(plan) == [f"ALTER ROLE \"app_clone\" WITH LOGIN PASSWORD '{VERIFIER}'"]


def test_a_new_clone_is_created_with_the_sources_attributes() -> None:
    plan = plan_for(Attributes(createdb=True, inherit=False, connection_limit=7,
                               valid_until="2030-01-01 00:00:00+00"), clone=None)
    # INHERIT stays on (the CREATE ROLE default): the clone must inherit the source's privileges
    assert render(plan) == [
        f"CREATE ROLE \"app_clone\" WITH LOGIN PASSWORD '{VERIFIER}' CREATEDB CONNECTION LIMIT 7 "
        "VALID UNTIL '2030-01-01 00:00:00+00'",
        'GRANT "app" TO "app_clone"']


def test_strays_on_an_existing_clone_are_removed() -> None:
    # GIVEN a clone with extra attributes, memberships and settings
    plan = plan_for(
        Attributes(), Attributes(createrole=True, inherit=False, connection_limit=3,
                                 valid_until="2999-01-01 00:00:00+00"),
        memberships=(Membership("app", admin=True), Membership("pg_read_all_data")),
        source_settings={(None, "search_path"): "public"},
        clone_settings={(None, "search_path"): "other", ("appdb", "work_mem"): "2MB"})
    # THEN each is put back, every name quoted as one identifier
    assert render(plan)[1:] == [
        # (psycopg writes a negative number with a blank before it, so "--" never forms)
        'ALTER ROLE "app_clone" WITH NOCREATEROLE INHERIT CONNECTION LIMIT  -1 '
        "VALID UNTIL 'infinity'",
        'REVOKE ADMIN OPTION FOR "app" FROM "app_clone"',
        'REVOKE "pg_read_all_data" FROM "app_clone"',
        "ALTER ROLE \"app_clone\" SET \"search_path\" = 'public'",
        'ALTER ROLE "app_clone" IN DATABASE "appdb" RESET "work_mem"']


def test_postgres_16_revokes_per_grantor_and_grants_with_inherit_and_set() -> None:
    master = replace(CREATEROLE_MASTER, server_version=PG16)
    plan = plan_for(memberships=(Membership("app", grantor="admin", inherit=False),
                                 Membership("pg_read_all_data", grantor="boss")), master=master)
    assert render(plan)[1:] == [
        'REVOKE "pg_read_all_data" FROM "app_clone" GRANTED BY "boss"',
        'GRANT "app" TO "app_clone" WITH INHERIT TRUE, SET TRUE']


def test_custom_and_per_database_setting_names_are_quoted() -> None:
    plan = plan_for(source_settings={("my db", "myapp.Mode"): "x"})
    assert render(plan)[1:] == [
        "ALTER ROLE \"app_clone\" IN DATABASE \"my db\" SET \"myapp\".\"Mode\" = 'x'"]


# -- what the master needs ------------------------------------------------------------------------

SUPER = Master("master", superuser=True)


@pytest.mark.parametrize(("master", "source", "clone", "missing"), [
    # PostgreSQL 15: CREATEROLE covers all but superusers, REPLICATION and BYPASSRLS
    (CREATEROLE_MASTER, Attributes(createdb=True, createrole=True, connection_limit=7),
     Attributes(), []),
    (CREATEROLE_MASTER, Attributes(bypassrls=True), Attributes(), ["SUPERUSER"]),
    (CREATEROLE_MASTER, Attributes(), Attributes(bypassrls=True), ["SUPERUSER"]),
    (CREATEROLE_MASTER, Attributes(replication=True), None, ["SUPERUSER"]),
    (CREATEROLE_MASTER, Attributes(), Attributes(replication=True), ["SUPERUSER"]),
    (CREATEROLE_MASTER, Attributes(superuser=True), Attributes(), ["SUPERUSER"]),
    (CREATEROLE_MASTER, Attributes(), Attributes(superuser=True), ["SUPERUSER"]),
    (Master("master"), Attributes(), Attributes(), ["CREATEROLE"]),
    (SUPER, Attributes(superuser=True, replication=True, bypassrls=True), Attributes(), []),
    # PostgreSQL 16: the master must hold CREATEDB / REPLICATION / BYPASSRLS to give them,
    # and ADMIN OPTION on the roles it changes
    (replace(CREATEROLE_MASTER, server_version=PG16), Attributes(createdb=True), Attributes(),
     ["CREATEDB"]),
    (replace(CREATEROLE_MASTER, server_version=PG16, bypassrls=True, replication=True),
     Attributes(bypassrls=True, replication=True), Attributes(), []),
    (replace(CREATEROLE_MASTER, server_version=PG16), Attributes(), Attributes(replication=True),
     ["REPLICATION"]),
])
def test_privilege_needs_by_attribute(master: Master, source: Attributes,
                                      clone: Attributes | None, missing: list[str]) -> None:
    plan = plan_for(source, clone, master=master)
    admin = {"app": True, "app_clone": True}
    assert [need.privilege for need in privilege_needs(master, plan, {}, admin, {})] == missing


def test_postgres_16_needs_admin_option_on_clone_and_source() -> None:
    master = replace(CREATEROLE_MASTER, server_version=PG16)
    plan = plan_for(memberships=(), master=master)
    needs = privilege_needs(master, plan, {}, {"app": False, "app_clone": False}, {})
    assert [need.privilege for need in needs] == ["ADMIN OPTION on 'app_clone'",
                                                  "ADMIN OPTION on 'app'"]


@pytest.mark.parametrize(("membership", "version", "privileges_of", "missing"), [
    (Membership("admins", role_superuser=True), PG15, {}, ["SUPERUSER"]),
    (Membership("pg_read_all_data", grantor="boss"), PG15, {}, []),
    (Membership("pg_read_all_data", grantor="boss"), PG16, {"boss": False},
     ["the privileges of role 'boss'"]),
    (Membership("pg_read_all_data", grantor="boss"), PG16, {"boss": True}, []),
    (Membership("pg_read_all_data", grantor="master"), PG16, {}, []),
])
def test_privilege_needs_to_revoke(membership: Membership, version: int,
                                   privileges_of: dict[str, bool], missing: list[str]) -> None:
    master = replace(CREATEROLE_MASTER, server_version=version)
    plan = plan_for(memberships=(Membership("app"), membership), master=master)
    admin = {"app": True, "app_clone": True, membership.role: True}
    needs = privilege_needs(master, plan, {}, admin, privileges_of)
    assert [need.privilege for need in needs] == missing


@pytest.mark.parametrize(("name", "parameter", "missing"), [
    ("search_path", Parameter("user"), []),
    ("role", Parameter(None), []),  # not in pg_settings; the server checks it
    ("log_statement", Parameter("superuser"), ["SUPERUSER or SET on parameter 'log_statement'"]),
    ("log_statement", Parameter("superuser", may_set=True), []),
    ("myapp.mode", Parameter(None), ["SUPERUSER or SET on parameter 'myapp.mode'"]),
    ("log_connections", Parameter("superuser-backend"), ["SUPERUSER"]),
])
def test_privilege_needs_for_settings(name: str, parameter: Parameter,
                                      missing: list[str]) -> None:
    # the clone holds the setting, the source does not: it is reset (which needs the same right)
    for source, clone in (({(None, name): "x"}, {}), ({}, {(None, name): "x"})):
        plan = plan_for(source_settings=source, clone_settings=clone)
        parameters: dict[str, Any] = {name: parameter}
        needs = privilege_needs(CREATEROLE_MASTER, plan, parameters, {}, {})
        assert [need.privilege for need in needs] == missing
