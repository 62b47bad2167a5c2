"""Throwaway PostgreSQL, MariaDB and Redis servers, and PgBouncer in front of the PostgreSQL, for
the integration tests (see rotation.tools.sandbox).

The servers are session-scoped: started on first use, stopped when the session ends. Under
pytest-xdist every worker is its own session, so each worker gets its own servers on its own free
ports. A missing server binary makes the fixture raise ``SandboxError`` (which names the fix,
``bash scripts/install-db-servers.sh``): the tests then error out, they never skip.

The sandbox lives under the system temp dir, not pytest's ``tmp_path``: when the tests run as
root the servers run as an unprivileged OS user, who cannot enter pytest's ``0700`` base dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rotation.tools.sandbox import Sandbox, ServerHandle


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sandbox_:
        yield sandbox_


@pytest.fixture(scope="session")
def pg_server(sandbox: Sandbox) -> ServerHandle:
    """PostgreSQL: TLS on, scram-sha-256, ``hostssl``-only pg_hba.conf."""
    return sandbox.postgres()


@pytest.fixture(scope="session")
def pg_server_notls(sandbox: Sandbox) -> ServerHandle:
    """PostgreSQL without TLS (``ssl=off``): clients must refuse to log in to it."""
    return sandbox.postgres(tls=False)


@pytest.fixture(scope="session")
def pgbouncer_server(sandbox: Sandbox, pg_server: ServerHandle) -> ServerHandle:
    """PgBouncer (transaction pooling) in front of ``pg_server``: TLS on both sides, users
    looked up at each login with ``auth_query`` (SCRAM). Users made with its
    ``create_login_user`` live in ``pg_server``."""
    return sandbox.pgbouncer(pg_server, pool_mode="transaction")


@pytest.fixture(scope="session")
def mariadb_server(sandbox: Sandbox) -> ServerHandle:
    """MariaDB: TLS on, ``require_secure_transport=ON``."""
    return sandbox.mariadb()


@pytest.fixture(scope="session")
def redis_server(sandbox: Sandbox) -> ServerHandle:
    """Redis: TLS only, ACL users (``default`` off); logins and the command stream from a
    MONITOR connection (``log_file``), failed logins from ``ACL LOG``."""
    return sandbox.redis()


@pytest.fixture
def server_rigs(sm: Any, leak_scan: Any) -> Iterator[Any]:
    """Builds rigs (secret on moto + user on a sandbox server); drops the users afterwards."""
    from tests.rig import ServerRigs

    rigs = ServerRigs(sm, leak_scan)
    yield rigs
    rigs.drop_all()


@pytest.fixture(params=["mariadb", "postgres"])
def drig(request: Any, sm: Any, monkeypatch: pytest.MonkeyPatch, leak_scan: Any) -> Iterator[Any]:
    """A doctor rig on each session server (the function's CA bundle is the server's)."""
    from rotation.tools.local import LocalRotationService
    from tests.integration.test_cli_local import SERVERS, DoctorRig

    server = request.getfixturevalue(SERVERS[request.param])
    monkeypatch.setenv("ROTATION_CA_BUNDLE", server.ca_file)
    leak_scan.add(server.admin_password)
    rig = DoctorRig(sm, server, LocalRotationService(sm), request.param, [])
    yield rig
    for user in rig.created:
        server.drop_user(user)
