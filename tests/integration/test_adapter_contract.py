"""The shared adapter contract, run against every built-in adapter on real TLS servers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.adapter_contract import AdapterContract, ContractTarget

SERVERS = {"postgres": "pg_server", "mariadb": "mariadb_server"}


@pytest.fixture(params=sorted(SERVERS))
def target(request: pytest.FixtureRequest) -> ContractTarget:
    server: Any = request.getfixturevalue(SERVERS[request.param])
    return ContractTarget(engine=request.param, server=server,
                          create_user=server.create_login_user, drop_user=server.drop_user)


class TestBuiltinAdapters(AdapterContract):
    pass
