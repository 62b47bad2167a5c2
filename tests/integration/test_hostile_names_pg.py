"""Hostile role names on the real PostgreSQL server: whatever the name (quotes, semicolons,
backslashes, unicode, SQL keywords), the adapter's statements treat it as exactly one role.

Hypothesis draws the names (a bounded number of examples: each one creates, logs in as and drops
a real role).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from rotation.adapters import get_adapter
from rotation.adapters.base import AdapterOptions
from rotation.credentials import credentials_from_dict
from tests.conftest import LeakScan
from tests.rig import pg_can_login

NAMES = st.one_of(
    st.sampled_from(['o\'brien"; DROP ROLE postgres; --', "a\\b", "$$;SELECT 1;$$", "ROLE",
                     "x'||pg_sleep(5)||'", "用户-ü", " leading", "trailing ", "%s%%{}"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
            min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 55),
)


def log_since(server: Any, mark: int) -> str:
    """The server log after byte offset ``mark`` (log_position() counts bytes; the log holds
    non-ASCII role names, so slicing the decoded text by it would start too late)."""
    data: bytes = server.log_file.read_bytes()[mark:]
    return data.decode("utf-8", errors="replace")




def role_names(server: Any) -> list[str]:
    with server.admin_connect() as admin:
        return [r[0] for r in admin.execute("SELECT rolname FROM pg_roles").fetchall()]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_hostile_role_name_is_one_identifier(pg_server: Any, leak_scan: LeakScan,
                                             name: str) -> None:
    # GIVEN a role to clone, the adapter logged in as the server's admin, and a hostile name
    source = "fi_source_" + secrets.token_hex(4)
    clone = name + "_" + secrets.token_hex(2)  # unique per example, still hostile
    first, second = "First-" + secrets.token_urlsafe(12), "Second-" + secrets.token_urlsafe(12)
    leak_scan.add(first, second)
    pg_server.create_login_user(source, "Source-" + secrets.token_urlsafe(12))
    adapter = get_adapter("postgres", AdapterOptions(ca_bundle=pg_server.ca_file))
    admin = credentials_from_dict({"engine": "postgres", "host": pg_server.host,
                                   "port": pg_server.port, "username": pg_server.admin_user,
                                   "password": pg_server.admin_password,
                                   "dbname": pg_server.dbname}, "arn:admin")
    before = set(role_names(pg_server))
    try:
        # WHEN the adapter creates it as a clone, then sets its password
        with adapter.connect(admin) as session:
            session.sync_clone(source, clone, first)
        with pg_server.admin_connect() as conn:
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(pg_server.dbname), sql.Identifier(clone)))
        logged_in_first = pg_can_login(pg_server, clone, first)
        with adapter.connect(admin) as session:
            session.set_password(clone, second)

        # THEN exactly one role appeared, named byte for byte, a member of the source; it logs
        # in with the password set last, and nothing else changed
        after = set(role_names(pg_server))
        assert after - before == {clone}
        assert before <= after
        assert logged_in_first
        assert pg_can_login(pg_server, clone, second)
        assert not pg_can_login(pg_server, clone, first)
        with pg_server.admin_connect() as conn:
            member = conn.execute(
                "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = %s",
                (source, clone)).fetchone()
        assert member is not None
    finally:
        pg_server.drop_user(clone)
        pg_server.drop_user(source)


@pytest.mark.parametrize("dbname", ["app'db", 'x" dbname=postgres', "a db; DROP DATABASE x"])
def test_hostile_database_name_is_one_parameter(pg_server: Any, leak_scan: LeakScan,
                                                dbname: str) -> None:
    # GIVEN a secret naming a database that does not exist, with conninfo/SQL metacharacters
    adapter = get_adapter("postgres", AdapterOptions(ca_bundle=pg_server.ca_file))
    creds = credentials_from_dict({"engine": "postgres", "host": pg_server.host,
                                   "port": pg_server.port, "username": pg_server.admin_user,
                                   "password": pg_server.admin_password, "dbname": dbname},
                                  "arn:admin")

    # WHEN the adapter connects / THEN the server was asked for exactly that database (not
    # `postgres` through an injected dbname=), and said it does not exist
    mark = pg_server.log_position()
    with pytest.raises(Exception, match="does not exist") as info:
        adapter.connect(creds)
    leak_scan.add_text(str(info.value))
    refusal = f'database "{dbname}" does not exist'
    deadline = time.monotonic() + 10  # the server writes its log asynchronously
    while refusal not in (server_log := log_since(pg_server, mark)):
        assert time.monotonic() < deadline, f"no {refusal!r} in the server log"
        time.sleep(0.05)
    assert f"database={dbname} application_name=rotation" in server_log
