"""Alternating users on a real PostgreSQL: the clone's privileges match the original's.

``sync_clone`` makes the clone's attributes, role memberships and per-role settings equal the
source's, both ways, in one transaction, after checking that the master may do all of it
(rotation/adapters/_pg_roles.py). The master here is what RDS gives: CREATEROLE, not superuser.
The last test is the pattern docs/migration.md recommends for objects the users create.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import sql

from rotation.adapters import get_adapter
from rotation.adapters.base import AdapterOptions
from rotation.credentials import DbCredentials, credentials_from_dict
from rotation.errors import DatabaseError, PrivilegeError
from rotation.tools.local import ApiCallCounter, LocalRotationService
from tests.conftest import LeakScan
from tests.rig import Rig, pg_can_login


@dataclass
class Pair:
    """A user ``app`` with a master secret (alternating users), its clone's name, and roles to
    drop afterwards."""

    server: Any
    rig: Rig
    master: DbCredentials
    app: str
    clone: str
    extra_roles: list[str] = field(default_factory=list)

    def admin(self, statement: str, **names: str) -> list[tuple[Any, ...]]:
        """Run ``statement`` as the server's admin; ``{source}``/``{clone}``/``{x}`` become
        identifiers and ``{source_name}``/``{clone_name}``/``{x_name}`` literals."""
        idents = {"source": self.app, "clone": self.clone, **names}
        params: dict[str, sql.Composable] = {k: sql.Identifier(v) for k, v in idents.items()}
        params |= {f"{k}_name": sql.Literal(v) for k, v in idents.items()}
        with self.server.admin_connect() as conn:
            cur = conn.execute(sql.SQL(statement).format(**params))
            return cur.fetchall() if cur.description else []

    def sync(self, password: str) -> None:
        """``sync_clone`` as the master user, through the adapter."""
        adapter = get_adapter("postgres", AdapterOptions(ca_bundle=self.server.ca_file))
        with adapter.connect(self.master) as session:
            session.sync_clone(self.app, self.clone, password)

    def profile(self, role: str) -> dict[str, Any]:
        """What must match: attributes, memberships (role, admin option), settings per database.
        LOGIN, INHERIT and the password are per-user (the clone always logs in and inherits)."""
        attributes = self.admin(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
            "rolconnlimit, rolvaliduntil::text FROM pg_roles WHERE rolname = {x_name}", x=role)
        members = self.admin(
            "SELECT r.rolname, m.admin_option FROM pg_auth_members m "
            "JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
            "WHERE u.rolname = {x_name}", x=role)
        settings = self.admin(
            "SELECT coalesce(d.datname, '*'), s.setconfig FROM pg_db_role_setting s "
            "LEFT JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = {x_name})", x=role)
        return {"attributes": attributes, "memberships": sorted(members),
                "settings": {db: sorted(config) for db, config in settings}}


@pytest.fixture
def pair(pg_server: Any, sm: Any, monkeypatch: pytest.MonkeyPatch,
         leak_scan: LeakScan) -> Iterator[Pair]:
    monkeypatch.setenv("ROTATION_CA_BUNDLE", pg_server.ca_file)
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    suffix = uuid.uuid4().hex[:8]
    master_user, master_pw = f"master_{suffix}", "Master-" + secrets.token_urlsafe(16)
    app, app_pw = f"app_{suffix}", "Init-" + secrets.token_urlsafe(16)
    leak_scan.add(master_pw, app_pw)
    pg_server.create_login_user(master_user, master_pw, can_create_roles=True)
    pg_server.create_login_user(app, app_pw)
    base = {"engine": "postgres", "host": pg_server.host, "port": pg_server.port,
            "dbname": pg_server.dbname}
    master_value = {**base, "username": master_user, "password": master_pw}
    master_arn = sm.create_secret(Name=master_user,
                                  SecretString=json.dumps(master_value))["ARN"]
    arn = sm.create_secret(Name=f"{app}-secret", SecretString=json.dumps(
        {**base, "username": app, "password": app_pw, "masterarn": master_arn}))["ARN"]
    service = LocalRotationService(sm)
    service.enable_rotation(arn)
    made = Pair(pg_server, Rig(sm, service, arn, pg_server, ApiCallCounter()),
                credentials_from_dict(master_value, master_arn), app, f"{app}_clone")
    yield made
    for name in (made.clone, app, master_user, *made.extra_roles):
        pg_server.drop_user(name)


def ddl_since(server: Any, mark: int) -> list[str]:
    """Statements other than reads and transaction control logged since ``mark``, with any
    password verifier masked and the adapter's per-statement timeout prefix removed."""
    text = server.log_file.read_bytes()[mark:].decode("utf-8", errors="replace")
    found = [re.sub(r"^SET LOCAL statement_timeout = \d+; ", "", s)
             for s in re.findall(r"LOG:  statement: (.*)", text)]
    return [re.sub(r"PASSWORD '[^']*'", "PASSWORD '***'", s) for s in found
            if re.match(r"(ALTER|GRANT|REVOKE|CREATE|DROP|SET|RESET)\b", s)]


def rotate(pair: Pair) -> None:
    report = pair.rig.service.rotate(pair.rig.arn, pair.rig.invoke)
    assert report.succeeded, report.steps


# -- (1) strays on a pre-existing clone are removed ---------------------------------------------

HAS_STRAYS = {
    "CREATEROLE": "SELECT rolcreaterole FROM pg_roles WHERE rolname = {clone_name}",
    "other memberships": (
        "SELECT count(*) > 0 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = {clone_name} "
        "AND r.rolname <> {source_name}"),
    "admin option": (
        "SELECT coalesce(bool_or(m.admin_option), false) FROM pg_auth_members m "
        "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = {clone_name}"),
    "settings": ("SELECT count(*) > 0 FROM pg_db_role_setting WHERE setrole = "
                 "(SELECT oid FROM pg_roles WHERE rolname = {clone_name})"),
    "NOINHERIT": "SELECT NOT rolinherit FROM pg_roles WHERE rolname = {clone_name}",
    "CONNECTION LIMIT": "SELECT rolconnlimit <> -1 FROM pg_roles WHERE rolname = {clone_name}",
    "VALID UNTIL": "SELECT rolvaliduntil IS NOT NULL AND rolvaliduntil <> 'infinity' "
                   "FROM pg_roles WHERE rolname = {clone_name}",
}
STRAYS = {
    "CREATEROLE": ["ALTER ROLE {clone} CREATEROLE"],
    "pg_read_all_data": ["GRANT pg_read_all_data TO {clone}"],
    "member of another role": ["CREATE ROLE {other} NOLOGIN", "GRANT {other} TO {clone}"],
    "admin option on the source": ["GRANT {source} TO {clone} WITH ADMIN OPTION"],
    "setting": ["ALTER ROLE {clone} SET work_mem = '2MB'"],
    "setting in database": ["ALTER ROLE {clone} IN DATABASE appdb SET statement_timeout = '5s'"],
    "NOINHERIT": ["ALTER ROLE {clone} NOINHERIT"],
    "CONNECTION LIMIT": ["ALTER ROLE {clone} CONNECTION LIMIT 3"],
    "VALID UNTIL": ["ALTER ROLE {clone} VALID UNTIL '2999-01-01'"],
}


@pytest.mark.parametrize("strays", [
    *([name] for name in STRAYS),
    pytest.param(["CREATEROLE", "pg_read_all_data", "setting"], id="CREATEROLE+pg_read_all_data"
                                                                   "+setting"),
], ids=lambda strays: "+".join(strays))
def test_strays_on_a_pre_existing_clone_are_removed(pair: Pair, strays: list[str]) -> None:
    # GIVEN a clone left by an earlier setup (AWS's sample, a DBA), with privileges the
    # original user does not have
    other = f"other_{uuid.uuid4().hex[:8]}"
    pair.extra_roles.append(other)
    pair.server.create_login_user(pair.clone, "Old-" + secrets.token_urlsafe(16))
    for name in strays:
        for statement in STRAYS[name]:
            pair.admin(statement, other=other)
    assert any(pair.admin(check)[0][0] for check in HAS_STRAYS.values())

    # WHEN a rotation makes the clone the pending user (setSecret syncs it)
    rotate(pair)

    # THEN the clone holds none of them, is a member of the original only, and logs in
    current = pair.rig.value("AWSCURRENT")
    assert current["username"] == pair.clone
    assert {what: pair.admin(check)[0][0] for what, check in HAS_STRAYS.items()} == \
        dict.fromkeys(HAS_STRAYS, False)
    assert pair.profile(pair.clone)["memberships"] == [(pair.app, False)]
    assert pg_can_login(pair.server, pair.clone, current["password"])


# -- (2) the source's attributes and settings reach the clone -----------------------------------

SOURCE_SETUPS = {
    "CREATEDB": ["ALTER ROLE {source} CREATEDB"],
    "CREATEROLE": ["ALTER ROLE {source} CREATEROLE"],
    "CONNECTION LIMIT 7": ["ALTER ROLE {source} CONNECTION LIMIT 7"],
    "VALID UNTIL": ["ALTER ROLE {source} VALID UNTIL '2999-01-01 12:00:00+00'"],
    "search_path": ['ALTER ROLE {source} SET search_path = "my schema", public'],
    "search_path in database": [
        'ALTER ROLE {source} IN DATABASE appdb SET search_path = "$user", "Other Schema"'],
    "value with =": ["ALTER ROLE {source} SET application_name = 'a=b c'"],
}


@pytest.mark.parametrize("setups", [
    *([name] for name in SOURCE_SETUPS),
    ["CREATEDB", "CONNECTION LIMIT 7", "search_path", "search_path in database"],
], ids=lambda setups: "+".join(setups))
def test_source_attributes_and_settings_reach_the_clone(pair: Pair, setups: list[str]) -> None:
    # GIVEN an original user with attributes and per-role settings (everywhere, in appdb)
    for name in setups:
        for statement in SOURCE_SETUPS[name]:
            pair.admin(statement)
    source = pair.profile(pair.app)

    # WHEN the first rotation creates the clone
    rotate(pair)

    # THEN the clone has the same attributes and settings, and its sessions see them
    clone = pair.profile(pair.clone)
    assert clone["attributes"] == source["attributes"]
    assert clone["settings"] == source["settings"]
    assert clone["memberships"] == [(pair.app, False)]
    current, previous = pair.rig.value("AWSCURRENT"), pair.rig.value("AWSPREVIOUS")
    assert (current["username"], previous["username"]) == (pair.clone, pair.app)
    shown = [show_settings(pair.server, user["username"], user["password"])
             for user in (current, previous)]
    assert shown[0] == shown[1]


def show_settings(server: Any, username: str, password: str) -> tuple[str, str]:
    with psycopg.connect(host=server.host, port=server.port, user=username, password=password,
                         dbname=server.dbname, sslmode="verify-full",
                         sslrootcert=server.ca_file) as conn:
        row = conn.execute("SELECT current_setting('search_path'), "
                           "current_setting('application_name')").fetchone()
    assert row is not None
    return row[0], row[1]


def test_a_noinherit_source_still_gets_an_inheriting_clone(pair: Pair) -> None:
    # GIVEN a NOINHERIT original user with a privilege granted to it directly
    table = f"t_{uuid.uuid4().hex[:8]}"
    pair.admin("ALTER ROLE {source} NOINHERIT")
    pair.admin("CREATE TABLE {t} (x int)", t=table)
    pair.admin("GRANT SELECT ON {t} TO {source}", t=table)
    try:
        # WHEN the clone is created
        rotate(pair)
        # THEN the clone INHERITs (a NOINHERIT clone would lose what is granted to the
        # original), and can read the table as the original can
        assert pair.admin("SELECT rolinherit FROM pg_roles WHERE rolname = {clone_name}") == \
            [(True,)]
        current = pair.rig.value("AWSCURRENT")
        with psycopg.connect(host=pair.server.host, port=pair.server.port,
                             user=current["username"], password=current["password"],
                             dbname=pair.server.dbname, sslmode="verify-full",
                             sslrootcert=pair.server.ca_file) as conn:
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    finally:
        pair.admin("DROP TABLE {t}", t=table)


# -- (3) a second sync changes nothing ----------------------------------------------------------

def test_second_sync_runs_only_the_password_change(pair: Pair, leak_scan: LeakScan) -> None:
    # GIVEN an original user with attributes, settings and an owner role, and a clone with
    # strays, synced once
    owner = f"owner_{uuid.uuid4().hex[:8]}"
    pair.extra_roles.append(owner)
    for statement in ("ALTER ROLE {source} CREATEDB CONNECTION LIMIT 7",
                      'ALTER ROLE {source} SET search_path = "my schema", public',
                      "ALTER ROLE {source} IN DATABASE appdb SET search_path = \"$user\"",
                      "CREATE ROLE {owner} NOLOGIN", "GRANT {owner} TO {source}",
                      "ALTER ROLE {source} SET role = {owner_name}"):
        pair.admin(statement, owner=owner)
    pair.server.create_login_user(pair.clone, "Old-" + secrets.token_urlsafe(16))
    pair.admin("GRANT pg_read_all_data TO {clone}")
    first, second = ("Clone-" + secrets.token_urlsafe(16) for _ in range(2))
    leak_scan.add(first, second)
    mark = pair.server.log_position()
    pair.sync(first)
    assert len(ddl_since(pair.server, mark)) > 1
    after_first = pair.profile(pair.clone)

    # WHEN it is synced again
    mark = pair.server.log_position()
    pair.sync(second)

    # THEN only the password changed: no other ALTER, GRANT or REVOKE ran
    assert ddl_since(pair.server, mark) == [
        f"ALTER ROLE \"{pair.clone}\" WITH LOGIN PASSWORD '***'"]
    assert pair.profile(pair.clone) == after_first
    assert pg_can_login(pair.server, pair.clone, second)


# -- (4) a master that may not make the change changes nothing ----------------------------------

@pytest.mark.parametrize("clone_exists", [True, False], ids=["clone exists", "no clone yet"])
@pytest.mark.parametrize("attribute", ["BYPASSRLS", "REPLICATION", "SUPERUSER"])
def test_missing_master_privilege_is_refused_before_any_change(
        pair: Pair, leak_scan: LeakScan, attribute: str, clone_exists: bool) -> None:
    # GIVEN an original user with an attribute a CREATEROLE master (no superuser) may not give
    pair.admin(f"ALTER ROLE {{source}} {attribute}")
    old = "Old-" + secrets.token_urlsafe(16)
    if clone_exists:
        pair.server.create_login_user(pair.clone, old)
        pair.admin("ALTER ROLE {clone} CREATEROLE")
    before = pair.profile(pair.clone) if clone_exists else None
    new = "New-" + secrets.token_urlsafe(16)
    leak_scan.add(old, new)
    mark = pair.server.log_position()

    # WHEN the master syncs the clone
    with pytest.raises(PrivilegeError) as caught:
        pair.sync(new)

    # THEN the error names what the master lacks and why, and nothing changed
    message = str(caught.value)
    leak_scan.add_text(message)
    assert "SUPERUSER" in message
    assert attribute in message
    assert "nothing was changed" in message.lower()
    assert ddl_since(pair.server, mark) == []
    if clone_exists:
        assert pair.profile(pair.clone) == before
        assert pg_can_login(pair.server, pair.clone, old)
        assert not pg_can_login(pair.server, pair.clone, new)
    else:
        assert pair.admin("SELECT count(*) FROM pg_roles WHERE rolname = {clone_name}") == [(0,)]


def test_missing_parameter_privilege_is_refused_before_any_change(
        pair: Pair, leak_scan: LeakScan) -> None:
    # GIVEN an original user with a setting only a superuser may set
    pair.admin("ALTER ROLE {source} SET log_statement = 'none'")
    new = "New-" + secrets.token_urlsafe(16)
    leak_scan.add(new)
    mark = pair.server.log_position()
    # WHEN the CREATEROLE master syncs the clone
    with pytest.raises(PrivilegeError, match="SET on parameter 'log_statement'") as caught:
        pair.sync(new)
    leak_scan.add_text(str(caught.value))
    # THEN no clone was created
    assert ddl_since(pair.server, mark) == []
    assert pair.admin("SELECT count(*) FROM pg_roles WHERE rolname = {clone_name}") == [(0,)]


def test_an_expired_original_fails_before_any_change(pair: Pair, leak_scan: LeakScan) -> None:
    # GIVEN an original user past its VALID UNTIL, which the clone would copy
    pair.admin("ALTER ROLE {source} VALID UNTIL '2001-01-01'")
    new = "New-" + secrets.token_urlsafe(16)
    leak_scan.add(new)
    mark = pair.server.log_position()
    # WHEN the master syncs the clone
    with pytest.raises(DatabaseError, match="past its VALID UNTIL") as caught:
        pair.sync(new)
    leak_scan.add_text(str(caught.value))
    # THEN it says so, and no clone was created (it could not have logged in)
    assert ddl_since(pair.server, mark) == []
    assert pair.admin("SELECT count(*) FROM pg_roles WHERE rolname = {clone_name}") == [(0,)]


# -- (5) objects either user creates stay usable by the other -----------------------------------

def test_owner_role_pattern_keeps_objects_usable_across_rotations(pair: Pair) -> None:
    # GIVEN the pattern of docs/migration.md: a NOLOGIN owner role the original user is a
    # member of, and the original's per-role setting `role`, which the clone copies
    owner = f"owner_{uuid.uuid4().hex[:8]}"
    pair.extra_roles.append(owner)
    for statement in ("CREATE ROLE {owner} NOLOGIN", "GRANT {owner} TO {source}",
                      "GRANT USAGE, CREATE ON SCHEMA public TO {owner}",
                      "ALTER ROLE {source} SET role = {owner_name}"):
        pair.admin(statement, owner=owner)
    original = pair.rig.value("AWSCURRENT")
    tables = [create_table(pair.server, original)]

    for _ in range(3):
        # WHEN a rotation runs, and the new current user creates a table
        rotate(pair)
        current, previous = pair.rig.value("AWSCURRENT"), pair.rig.value("AWSPREVIOUS")
        assert current["username"] != previous["username"]
        tables.append(create_table(pair.server, current))

        # THEN every table, whoever created it, is owned by the owner role, and both users can
        # read and write all of them
        assert table_owners(pair, tables) == {owner}
        for user in (current, previous):
            use_tables(pair.server, user, tables)


def create_table(server: Any, user: dict[str, Any]) -> str:
    table = f"t_{uuid.uuid4().hex[:8]}"
    with connect_as(server, user) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(table)))
    return table


def table_owners(pair: Pair, tables: list[str]) -> set[str]:
    with pair.server.admin_connect() as conn:
        rows = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = ANY(%s)",
                            (tables,)).fetchall()
    assert len(rows) == len(tables)
    return {row[0] for row in rows}


def use_tables(server: Any, user: dict[str, Any], tables: list[str]) -> None:
    with connect_as(server, user) as conn:
        for table in tables:
            name = sql.Identifier(table)
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(name))
            conn.execute(sql.SQL("UPDATE {} SET x = x + 1").format(name))
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name))


def connect_as(server: Any, user: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(host=server.host, port=server.port, user=user["username"],
                           password=user["password"], dbname=server.dbname,
                           sslmode="verify-full", sslrootcert=server.ca_file, autocommit=True)
