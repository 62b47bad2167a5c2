"""What one clean rotation costs, exactly: Secrets Manager calls (by operation, on the function's
own client) and database logins (from the server's log). These figures are deterministic, so they
are pinned exactly; `make bench` reports them next to timings, which are never asserted.

Here rather than in tests/performance: the servers are the session's integration fixtures.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rotation import handler
from rotation.adapters import get_adapter
from rotation.tools.local import ApiCallCounter, LocalRotationService
from tests.conftest import LeakScan
from tests.rig import Rig

SERVERS = {"postgres": "pg_server", "mariadb": "mariadb_server"}

# single-user, four steps in one container: createSecret DescribeSecret + GetSecretValue(current)
# + PutSecretValue; setSecret DescribeSecret (current and pending values cached); testSecret
# DescribeSecret; finishSecret DescribeSecret + UpdateSecretVersionStage.
SINGLE_WARM = {"DescribeSecret": 4, "GetSecretValue": 1, "PutSecretValue": 1,
               "UpdateSecretVersionStage": 1}
# Each step in a new container: nothing cached, so setSecret reads current and pending and
# testSecret reads pending again (+3 GetSecretValue). finishSecret, which does not know which
# version setSecret worked from, reads the pending value (it must exist: AWSCURRENT never moves
# to a value-less version) and the versions' creation dates (ListSecretVersionIds: AWSCURRENT
# must predate the rotation, or someone else wrote it meanwhile): +2, the price of a
# compare-and-set that holds in any container.
SINGLE_COLD = {"DescribeSecret": 4, "GetSecretValue": 5, "ListSecretVersionIds": 1,
               "PutSecretValue": 1, "UpdateSecretVersionStage": 1}

# alternating-users costs more, on purpose:
# * setSecret logs in as the master user, so it reads the master secret named by `masterarn`:
#   one GetSecretValue naming VersionStage AWSCURRENT, warm or cold (+1).
# * When AWSCURRENT holds the clone (`name_clone`), createSecret settles which user is the
#   original from the AWSPREVIOUS version's user (a name ending in `_clone` is ambiguous): one
#   more GetSecretValue. setSecret needs no such read: the current/pending pair settles it.
ALT_WARM = {
    "original -> clone": {"DescribeSecret": 4, "GetSecretValue": 2, "PutSecretValue": 1,
                          "UpdateSecretVersionStage": 1},  # 8
    "clone -> original": {"DescribeSecret": 4, "GetSecretValue": 3, "PutSecretValue": 1,
                          "UpdateSecretVersionStage": 1},  # 9
}
ALT_COLD = {  # + finishSecret's two reads, as for single-user
    "original -> clone": {"DescribeSecret": 4, "GetSecretValue": 6, "ListSecretVersionIds": 1,
                          "PutSecretValue": 1, "UpdateSecretVersionStage": 1},  # 13
    "clone -> original": {"DescribeSecret": 4, "GetSecretValue": 7, "ListSecretVersionIds": 1,
                          "PutSecretValue": 1, "UpdateSecretVersionStage": 1},  # 14
}


@pytest.fixture(params=sorted(SERVERS))
def engine_server(request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    engine: str = request.param
    server = request.getfixturevalue(SERVERS[engine])
    monkeypatch.setenv("ROTATION_CA_BUNDLE", server.ca_file)
    return engine, server


@pytest.fixture
def make_rig(sm: Any, engine_server: tuple[str, Any],
             leak_scan: LeakScan) -> Iterator[Callable[..., Rig]]:
    engine, server = engine_server
    created: list[str] = []

    def build(master: bool = False) -> Rig:
        suffix = uuid.uuid4().hex[:8]
        username, password = f"cost_{suffix}", "Init-" + secrets.token_urlsafe(16)
        leak_scan.add(password)
        server.create_login_user(username, password)
        created.append(username)
        value: dict[str, Any] = {"engine": engine, "host": server.host, "port": server.port,
                                 "username": username, "password": password,
                                 "dbname": server.dbname}
        if master:
            master_user, master_pw = f"costm_{suffix}", "Master-" + secrets.token_urlsafe(16)
            leak_scan.add(master_pw)
            server.create_login_user(master_user, master_pw, can_create_roles=True)
            created.extend([master_user, get_adapter(engine).clone_username(username)])
            value["masterarn"] = sm.create_secret(
                Name=master_user, SecretString=json.dumps(
                    {**value, "username": master_user, "password": master_pw}))["ARN"]
        arn = sm.create_secret(Name=username, SecretString=json.dumps(value))["ARN"]
        service = LocalRotationService(sm)
        service.enable_rotation(arn)
        return Rig(sm, service, arn, server, ApiCallCounter())

    yield build
    for name in created:
        server.drop_user(name)


def rotate(rig: Rig, cold: bool) -> tuple[dict[str, int], tuple[int, int]]:
    """One rotation in a new container (warm: the four steps share it; cold: one per step)."""
    handler.reset()
    rig.calls.calls.clear()
    mark = rig.db.log_position()
    report = rig.service.rotate(rig.arn, rig.invoke_cold if cold else rig.invoke)
    assert report.succeeded, report.steps
    logins = rig.db.login_counts(since=mark)
    return dict(Counter(rig.calls.calls)), (logins.succeeded, logins.failed)


def test_single_user_costs(make_rig: Callable[..., Rig]) -> None:
    # GIVEN a single-user secret
    rig = make_rig()

    # WHEN it rotates with the four steps in one container, then again one container per step
    warm_calls, warm_logins = rotate(rig, cold=False)
    cold_calls, cold_logins = rotate(rig, cold=True)

    # THEN 7 calls warm and 12 cold (AWS's sample: 14), 2 logins and no failure each time
    assert warm_calls == SINGLE_WARM
    assert sum(warm_calls.values()) == 7
    assert cold_calls == SINGLE_COLD
    assert sum(cold_calls.values()) == 12
    assert warm_logins == cold_logins == (2, 0)


def test_alternating_users_costs(make_rig: Callable[..., Rig],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an alternating-users secret and its master secret
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    rig = make_rig(master=True)

    # WHEN it rotates both ways warm, then both ways cold
    measured = [(mode, direction, *rotate(rig, cold=mode == "cold"))
                for mode in ("warm", "cold")
                for direction in ("original -> clone", "clone -> original")]

    # THEN each rotation costs exactly the figures explained above, and 2 logins (the master in
    # setSecret, the pending user in testSecret) with no failure
    for mode, direction, calls, logins in measured:
        expected = (ALT_WARM if mode == "warm" else ALT_COLD)[direction]
        assert calls == expected, (mode, direction)
        assert logins == (2, 0), (mode, direction)
