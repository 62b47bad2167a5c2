"""Alternating users on real servers: the pending user switches between `name` and
`name_clone`; the master user (from `masterarn`) prepares it; the previous credential keeps
working until the next rotation."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rotation.adapters import get_adapter
from rotation.credentials import credentials_from_dict
from rotation.tools.local import ApiCallCounter, LocalRotationService, logs_in
from tests.conftest import LeakScan, LogCapture
from tests.rig import Rig

ENGINES = {"postgres": "pg_server", "mariadb": "mariadb_server"}


def can_login(engine: str, server: Any, username: str, password: str) -> bool:
    creds = credentials_from_dict({"engine": engine, "host": server.host, "port": server.port,
                                   "username": username, "password": password,
                                   "dbname": server.dbname}, "arn:check")
    return logs_in(creds, server.ca_file)


@pytest.fixture(params=sorted(ENGINES))
def alt(request: pytest.FixtureRequest, sm: Any, monkeypatch: pytest.MonkeyPatch,
        leak_scan: LeakScan) -> Iterator[tuple[str, Any, Callable[..., Rig]]]:
    engine: str = request.param
    server = request.getfixturevalue(ENGINES[engine])
    monkeypatch.setenv("ROTATION_CA_BUNDLE", server.ca_file)
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    created: list[str] = []

    def build(username: str | None = None, rds_managed_master: bool = False) -> Rig:
        suffix = uuid.uuid4().hex[:8]
        master_user, master_pw = f"master_{suffix}", "Master-" + secrets.token_urlsafe(16)
        user = username or f"app_{suffix}"
        user_pw = "Init-" + secrets.token_urlsafe(16)
        leak_scan.add(master_pw, user_pw)
        server.create_login_user(master_user, master_pw, can_create_roles=True)
        server.create_login_user(user, user_pw)
        adapter = get_adapter(engine)
        created.extend([master_user, user, adapter.clone_username(user)])
        base = {"engine": engine, "host": server.host, "port": server.port,
                "dbname": server.dbname}
        master_value = ({"username": master_user, "password": master_pw} if rds_managed_master
                        else {**base, "username": master_user, "password": master_pw})
        master_arn = sm.create_secret(Name=master_user,
                                      SecretString=json.dumps(master_value))["ARN"]
        arn = sm.create_secret(Name=f"{user}-secret", SecretString=json.dumps(
            {**base, "username": user, "password": user_pw, "masterarn": master_arn}))["ARN"]
        service = LocalRotationService(sm)
        service.enable_rotation(arn)
        rig = Rig(sm, service, arn, server, ApiCallCounter())
        rig.master_arn = master_arn  # type: ignore[attr-defined]
        return rig

    yield engine, server, build
    for name in created:
        server.drop_user(name)


def test_three_rotations_alternate_and_previous_keeps_working(
        alt: tuple[str, Any, Callable[..., Rig]], log_capture: LogCapture) -> None:
    engine, server, build = alt
    # GIVEN a user with a master secret
    rig = build()
    master_before = rig.sm.describe_secret(SecretId=rig.master_arn)["VersionIdsToStages"]
    master_value = rig.sm.get_secret_value(SecretId=rig.master_arn,
                                           VersionStage="AWSCURRENT")["SecretString"]
    users = []
    for _ in range(3):
        # WHEN it rotates
        mark = server.log_position()
        report = rig.service.rotate(rig.arn, rig.invoke)
        assert report.succeeded, report.steps
        logins = server.login_counts(mark)
        # THEN the master and the pending user logged in once each, none failed
        assert (logins.succeeded, logins.failed) == (2, 0)
        current, previous = rig.value("AWSCURRENT"), rig.value("AWSPREVIOUS")
        users.append(current["username"])
        assert can_login(engine, server, current["username"], current["password"])
        # ... and the credential applications held until now still works
        assert can_login(engine, server, previous["username"], previous["password"])
        assert current["username"] != previous["username"]
    # the pending user alternated between the two names
    assert users[0] == users[2] != users[1]
    assert {users[0], users[1]} == {users[1], users[0]}
    # the master secret was never written
    assert rig.sm.describe_secret(SecretId=rig.master_arn)["VersionIdsToStages"] == master_before
    assert rig.sm.get_secret_value(SecretId=rig.master_arn,
                                   VersionStage="AWSCURRENT")["SecretString"] == master_value


def test_rds_managed_master_secret(alt: tuple[str, Any, Callable[..., Rig]]) -> None:
    engine, server, build = alt
    # GIVEN a master secret holding only username and password (ManageMasterUserPassword)
    rig = build(rds_managed_master=True)
    # WHEN it rotates
    report = rig.service.rotate(rig.arn, rig.invoke)
    # THEN host, port and dbname came from the user's secret
    assert report.succeeded, report.steps
    current = rig.value("AWSCURRENT")
    assert can_login(engine, server, current["username"], current["password"])


def test_missing_masterarn_is_a_clear_error(alt: tuple[str, Any, Callable[..., Rig]]) -> None:
    _engine, _server, build = alt
    rig = build()
    value = rig.value("AWSCURRENT")
    del value["masterarn"]
    rig.sm.put_secret_value(SecretId=rig.arn, SecretString=json.dumps(value))
    report = rig.service.rotate(rig.arn, rig.invoke)
    assert not report.succeeded
    assert report.steps[0].step == "createSecret"
    assert "`masterarn`" in (report.steps[0].error or "")
    assert rig.calls.calls.get("PutSecretValue", 0) == 0


def test_hostile_user_name(alt: tuple[str, Any, Callable[..., Rig]]) -> None:
    engine, server, build = alt
    # GIVEN a user name with quotes and a semicolon
    rig = build(username=f"o'b\"x;{uuid.uuid4().hex[:4]}")
    # WHEN it rotates twice
    for _ in range(2):
        report = rig.service.rotate(rig.arn, rig.invoke)
        assert report.succeeded, report.steps
    # THEN both users work
    current, previous = rig.value("AWSCURRENT"), rig.value("AWSPREVIOUS")
    assert can_login(engine, server, current["username"], current["password"])
    assert can_login(engine, server, previous["username"], previous["password"])


def _grant_and_query(engine: str, server: Any, table: str, grantee: str) -> tuple[str, str]:
    """Create a table as admin and grant SELECT on it to ``grantee``; return the query a user
    runs to prove the grant."""
    with server.admin_connect() as admin:
        if engine == "postgres":
            from psycopg import sql

            admin.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(table)))
            admin.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.Identifier(table), sql.Identifier(grantee)))
            return f'SELECT count(*) FROM "{table}"', table  # noqa: S608 - generated name
        with admin.cursor() as cur:
            cur.execute(f"CREATE TABLE `{server.dbname}`.`{table}` (x int)")
            cur.execute(f"GRANT SELECT ON `{server.dbname}`.`{table}` TO %s@'%%'", (grantee,))
        return f"SELECT count(*) FROM `{server.dbname}`.`{table}`", table  # noqa: S608


def _select_as(engine: str, server: Any, username: str, password: str, query: str) -> bool:
    if engine == "postgres":
        import psycopg

        try:
            with psycopg.connect(host=server.host, port=server.port, user=username,
                                 password=password, dbname=server.dbname, sslmode="verify-full",
                                 sslrootcert=server.ca_file) as conn:
                conn.execute(query)
        except psycopg.errors.InsufficientPrivilege:
            return False
        return True
    import ssl

    import pymysql

    ctx = ssl.create_default_context(cafile=server.ca_file)
    conn = pymysql.connect(host=server.host, port=server.port, user=username,
                           password=password, ssl=ctx)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
    except pymysql.err.OperationalError as exc:
        if exc.args[0] in (1142, 1044):
            return False
        raise
    finally:
        conn.close()
    return True


def test_grant_to_original_reaches_clone(alt: tuple[str, Any, Callable[..., Rig]]) -> None:
    engine, server, build = alt
    # GIVEN a first rotation, which created the clone
    rig = build()
    assert rig.service.rotate(rig.arn, rig.invoke).succeeded
    clone = rig.value("AWSCURRENT")
    original = rig.value("AWSPREVIOUS")
    table = f"t_{uuid.uuid4().hex[:8]}"
    # ... and a table the original user is granted SELECT on afterwards
    query, _ = _grant_and_query(engine, server, table, original["username"])

    # WHEN two more rotations run (the clone is prepared again in the second)
    for _ in range(2):
        assert rig.service.rotate(rig.arn, rig.invoke).succeeded
    clone = rig.value("AWSCURRENT")

    # THEN the clone holds the grant too
    assert clone["username"] != original["username"]
    assert _select_as(engine, server, clone["username"], clone["password"], query)


def test_long_user_name_alternates_with_shortened_clone(
        alt: tuple[str, Any, Callable[..., Rig]]) -> None:
    engine, server, build = alt
    # GIVEN a user name so long that `name_clone` exceeds the engine's limit
    limit = get_adapter(engine).max_username_length
    name = ("u" + uuid.uuid4().hex * 3)[: limit - 2]
    rig = build(username=name)
    clone = get_adapter(engine).clone_username(name)
    assert len(clone.encode()) <= limit
    assert not clone.startswith(name)  # shortened: stripping `_clone` cannot recover `name`

    # WHEN it rotates three times
    users = []
    for _ in range(3):
        report = rig.service.rotate(rig.arn, rig.invoke)
        assert report.succeeded, report.steps
        users.append(rig.value("AWSCURRENT")["username"])

    # THEN it alternates between exactly the two names
    assert users == [clone, name, clone]
    current = rig.value("AWSCURRENT")
    assert can_login(engine, server, current["username"], current["password"])
