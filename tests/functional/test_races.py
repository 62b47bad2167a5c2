"""Races: another writer, another rotation, or the same step twice at once must never cost the
working credential, and the rotation must not clobber what another writer made AWSCURRENT.

Each test checks, after every invocation, that AWSCURRENT or AWSPENDING logs in to the in-memory
database and that the labels are consistent (one AWSCURRENT, at most one AWSPENDING).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest

from rotation import handler
from rotation.dispatcher import Rotation
from rotation.errors import (
    ConcurrentUpdateError,
    NotPendingError,
    RotationError,
    SecretFormatError,
    StageError,
    UnknownTokenError,
)
from tests.conftest import FakeLambdaContext, LeakScan
from tests.rig import Rig

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"


# -- what must hold -------------------------------------------------------------------------------

def stored(rig: Rig, version_id: str) -> dict[str, Any] | None:
    try:
        raw = rig.sm.get_secret_value(SecretId=rig.arn, VersionId=version_id)
    except rig.sm.exceptions.ResourceNotFoundException:
        return None
    value: dict[str, Any] = json.loads(raw["SecretString"])
    return value


def version_with(rig: Rig, stage: str) -> str | None:
    return next((v for v, s in rig.service.labels(rig.arn).items() if stage in s), None)


def works(rig: Rig, stage: str) -> bool:
    version = version_with(rig, stage)
    value = stored(rig, version) if version else None
    return value is not None and rig.db.passwords.get(value["username"]) == value["password"]


def check_invariants(rig: Rig, when: str) -> None:
    labels = rig.service.labels(rig.arn)
    current = [v for v, s in labels.items() if CURRENT in s]
    pending = [v for v, s in labels.items() if PENDING in s]
    assert len(current) == 1, f"{when}: AWSCURRENT on {current}"
    assert len(pending) <= 1, f"{when}: AWSPENDING on {pending}"
    assert works(rig, CURRENT) or works(rig, PENDING), \
        f"{when}: neither AWSCURRENT nor AWSPENDING logs in"


class Writes:
    """PutSecretValue / UpdateSecretVersionStage calls made by the function's clients."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        for operation in ("PutSecretValue", "UpdateSecretVersionStage"):
            client.meta.events.register(f"before-call.secrets-manager.{operation}",
                                        self._count)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls.append(model.name)


def invoke(rig: Rig, step: str, token: str, writes: Writes | None = None) -> str:
    app = handler.get_app()
    if writes is not None and not getattr(app.secrets.client, "_writes", None):
        writes.attach(app.secrets.client)
        app.secrets.client._writes = writes
    result = handler.lambda_handler(rig.event(step, token), FakeLambdaContext())
    return str(result["Outcome"])


def run_steps(rig: Rig, token: str, steps: tuple[str, ...], leak_scan: LeakScan, *,
              cold: bool = False) -> tuple[list[str], RotationError | None]:
    """Invoke ``steps`` in order as the service does, stopping at the first failure; check the
    invariants after each. ``cold``: each step in a new container. Returns the outcomes and the
    error (if any)."""
    outcomes: list[str] = []
    for step in steps:
        if cold:
            handler.reset()
        try:
            outcomes.append(invoke(rig, step, token))
        except RotationError as exc:
            leak_scan.add_text(str(exc))
            check_invariants(rig, f"after {step} failed")
            return outcomes, exc
        check_invariants(rig, f"after {step}")
    if steps[-1] == "finishSecret":
        rig.service.unstage_pending(rig.arn, token)
    return outcomes, None


def snapshot(rig: Rig) -> tuple[Any, ...]:
    labels = rig.service.labels(rig.arn)
    return (labels, {v: stored(rig, v) for v in labels}, dict(rig.db.passwords),
            list(rig.db.statements))


# -- another writer makes another version AWSCURRENT mid-rotation ---------------------------------

def racer_value(rig: Rig, kind: str) -> dict[str, Any]:
    """What the other writer stores: a copy of AWSCURRENT; a new password that it also set in the
    database (a password reset by hand); or the credential moved to another host."""
    value = dict(rig.value(CURRENT))
    if kind == "new-password":
        value["password"] = "reset-by-hand-" + uuid.uuid4().hex
        rig.db.passwords[value["username"]] = value["password"]
    elif kind == "moved-host":
        value["host"] = "db2.example.internal"
    return value


WHERE = ("after createSecret", "after setSecret", "after testSecret",
         "inside finishSecret")  # between its DescribeSecret and its UpdateSecretVersionStage
RACERS = ("copy", "new-password", "moved-host")


@pytest.mark.parametrize("container", ["warm", "cold"])
@pytest.mark.parametrize("racer", RACERS)
@pytest.mark.parametrize("where", WHERE)
def test_another_writer_makes_a_version_current_mid_rotation(
        rig: Rig, leak_scan: LeakScan, where: str, racer: str, container: str) -> None:
    # GIVEN a rotation running (its steps sharing a container, or each in a new one: cold
    # failed before finishSecret's compare-and-set held outside the container that ran
    # setSecret), and another writer whose PutSecretValue makes its own version AWSCURRENT at
    # `where`
    cold = container == "cold"
    token, racer_token = str(uuid.uuid4()), str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)

    def race(**_: Any) -> None:
        rig.sm.put_secret_value(SecretId=rig.arn, ClientRequestToken=racer_token,
                                SecretString=json.dumps(racer_value(rig, racer)))

    done = {"after createSecret": 1, "after setSecret": 2, "after testSecret": 3,
            "inside finishSecret": 3}[where]
    outcomes, error = run_steps(rig, token, STEPS[:done], leak_scan, cold=cold)
    assert error is None, error
    if where == "inside finishSecret":
        if cold:
            handler.reset()  # finishSecret's own new container, with the racing hook
        handler.get_app().secrets.client.meta.events.register_first(
            "before-call.secrets-manager.UpdateSecretVersionStage", race)
    else:
        race()
    check_invariants(rig, f"right after the race {where}")

    # WHEN the rotation carries on, and Secrets Manager retries it (same token, from
    # createSecret) while it fails, up to three times
    rest, error = run_steps(rig, token, STEPS[done:], leak_scan,
                            cold=cold and where != "inside finishSecret")
    handler.reset()  # the racing hook goes with the container
    errors: list[RotationError | None] = [error]
    while errors[-1] is not None and len(errors) <= 3:
        _, retry_error = run_steps(rig, token, STEPS, leak_scan, cold=cold)
        errors.append(retry_error)
    failures = [e for e in errors if e is not None]

    # THEN it either finished with a working AWSCURRENT, or failed clearly leaving the other
    # writer's version AWSCURRENT (never clobbered), and a working credential is labelled
    labels = rig.service.labels(rig.arn)
    finished = CURRENT in labels[token]
    if finished:
        assert works(rig, CURRENT), (
            f"the rotation finished ({outcomes + rest}) but AWSCURRENT does not log in: the "
            f"other writer's credential ({racer}) was replaced without being tested; it is "
            f"only AWSPREVIOUS now: {labels[racer_token]}")
    else:
        assert failures
        assert CURRENT in labels[racer_token], "the other writer's version lost AWSCURRENT"
        assert works(rig, CURRENT) or works(rig, PENDING)
    if racer == "moved-host":
        # a pending version made for the old host must never become AWSCURRENT: that would
        # silently move the credential back to the old server
        new_current = stored(rig, str(version_with(rig, CURRENT)))
        assert new_current is not None
        assert new_current["host"] == "db2.example.internal", (
            f"the rotation finished ({outcomes + rest}) and moved AWSCURRENT back to the old "
            "host: the other writer's change of `host` was undone")
        assert not finished
        assert isinstance(failures[-1], SecretFormatError)
        assert failures[-1].key == "host"
    if where == "inside finishSecret":
        assert isinstance(failures[0], ConcurrentUpdateError)


# -- two rotations with different tokens ----------------------------------------------------------

def test_second_rotation_refused_while_the_first_is_midway(rig: Rig, leak_scan: LeakScan) -> None:
    # GIVEN a rotation that got as far as setSecret
    first = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, first)
    run_steps(rig, first, STEPS[:2], leak_scan)
    before = snapshot(rig)

    # WHEN the service is asked to start another one
    with pytest.raises(StageError, match=r"previous rotation .* isn't complete") as info:
        rig.service.stage_pending(rig.arn, str(uuid.uuid4()))

    # THEN it refuses, changes nothing, and the first one can still finish
    leak_scan.add_text(str(info.value))
    assert snapshot(rig) == before
    _, error = run_steps(rig, first, STEPS[2:], leak_scan)
    assert error is None
    assert works(rig, CURRENT)


def supersede(rig: Rig, new_token: str) -> None:
    """What the service does when a new rotation replaces an unfinished one: AWSPENDING moves
    to a new, value-less version (done on moto's backend: there is no public API for it)."""
    secret = rig.service._backend_secret(rig.arn)
    secret.remove_version_stages_from_old_versions([PENDING])
    secret.versions[new_token] = {"version_id": new_token, "createdate": 0,
                                  "version_stages": [PENDING]}


@pytest.mark.parametrize("stopped_after", ["createSecret", "setSecret", "testSecret"])
def test_a_superseded_token_is_refused_with_no_write(rig: Rig, leak_scan: LeakScan,
                                                     stopped_after: str) -> None:
    # GIVEN a rotation that stopped after `stopped_after`, superseded by a second token
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, old)
    run_steps(rig, old, STEPS[:STEPS.index(stopped_after) + 1], leak_scan)
    supersede(rig, new)
    before = snapshot(rig)
    writes = Writes()

    # WHEN any step runs with the old token, warm and cold
    for step in STEPS:
        for cold in (False, True):
            if cold:
                handler.reset()
            with pytest.raises(NotPendingError, match="is not AWSPENDING") as info:
                invoke(rig, step, old, writes)
            leak_scan.add_text(str(info.value))
            assert rig.arn in str(info.value)

    # THEN the guard refused each before any write to Secrets Manager or the database
    assert writes.calls == []
    assert snapshot(rig) == before


def test_the_new_rotation_completes_after_superseding_an_early_one(
        rig: Rig, leak_scan: LeakScan) -> None:
    # GIVEN a rotation that only stored its pending value, superseded by a second token
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, old)
    run_steps(rig, old, ("createSecret",), leak_scan)
    supersede(rig, new)

    # WHEN the new rotation runs
    outcomes, error = run_steps(rig, new, STEPS, leak_scan)

    # THEN it completes, and the old token stays refused
    assert error is None, error
    assert outcomes == ["done", "done", "done", "done"]
    assert works(rig, CURRENT)
    with pytest.raises(NotPendingError):
        invoke(rig, "setSecret", old)


# -- a stale AWSPENDING from an aborted rotation --------------------------------------------------

@pytest.mark.parametrize("aborted_after", ["createSecret", "setSecret"])
def test_stale_pending_from_an_aborted_rotation(rig: Rig, leak_scan: LeakScan,
                                                aborted_after: str) -> None:
    # GIVEN a rotation aborted after `aborted_after`: its version keeps AWSPENDING
    stale = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, stale)
    run_steps(rig, stale, STEPS[:STEPS.index(aborted_after) + 1], leak_scan)
    handler.reset()
    before = snapshot(rig)
    writes = Writes()

    # WHEN a new rotation is requested, and the function is invoked with other tokens
    with pytest.raises(StageError, match="isn't complete"):
        rig.service.stage_pending(rig.arn, str(uuid.uuid4()))
    previous = version_with(rig, CURRENT)
    assert previous is not None
    with pytest.raises(UnknownTokenError):
        invoke(rig, "createSecret", str(uuid.uuid4()), writes)
    rig.sm.put_secret_value(SecretId=rig.arn, ClientRequestToken=(unlabelled := str(uuid.uuid4())),
                            SecretString=json.dumps(rig.value(CURRENT)), VersionStages=["x"])
    before = snapshot(rig)
    with pytest.raises(NotPendingError):
        invoke(rig, "setSecret", unlabelled, writes)

    # THEN nothing was written, and resuming the stale rotation (its own token) converges
    assert writes.calls == []
    assert snapshot(rig) == before
    outcomes, error = run_steps(rig, stale, STEPS, leak_scan)
    assert error is None, error
    assert outcomes[0] == "kept"
    if aborted_after == "setSecret":
        assert outcomes[1] == "already set"
    assert works(rig, CURRENT)
    assert CURRENT in rig.service.labels(rig.arn)[stale]


# -- the same step, concurrently, with the same token ---------------------------------------------

@contextmanager
def atomic_service() -> Iterator[None]:
    """moto checks and writes without a lock; the service is atomic per request. Serialise the
    two writes so the threads race the function, not moto."""
    from moto.secretsmanager.models import SecretsManagerBackend

    lock = threading.Lock()
    patches = []
    for name in ("put_secret_value", "update_secret_version_stage"):
        original = getattr(SecretsManagerBackend, name)

        def locked(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        patches.append(mock.patch.object(SecretsManagerBackend, name, locked))
    for patch in patches:
        patch.start()
    try:
        yield
    finally:
        for patch in reversed(patches):
            patch.stop()


def concurrently(rig: Rig, step: str, token: str, apps: list[Rotation],
                 leak_scan: LeakScan) -> list[str]:
    """Run ``step`` in each app (each its own container: settings, client, cache) at once."""
    barrier = threading.Barrier(len(apps))
    results: list[str] = [""] * len(apps)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = str(apps[i].resolve(rig.event(step, token), FakeLambdaContext())
                             ["Outcome"])
        except RotationError as exc:
            leak_scan.add_text(str(exc))
            results[i] = f"{type(exc).__name__}"
        except Exception as exc:  # a crash in a thread must fail the test, not vanish
            results[i] = f"unexpected {type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(apps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results


def containers(n: int) -> list[Rotation]:
    return [Rotation() for _ in range(n)]


def test_create_secret_four_times_at_once_stores_one_value(rig: Rig, leak_scan: LeakScan) -> None:
    # GIVEN a staged rotation and four containers
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    apps = containers(4)

    # WHEN createSecret runs in all four at once
    with atomic_service():
        outcomes = concurrently(rig, "createSecret", token, apps, leak_scan)

    # THEN one stored the value, three kept it; one pending value exists
    assert sorted(outcomes) == ["done", "kept", "kept", "kept"], outcomes
    pending = rig.value(PENDING)
    versions = rig.sm.list_secret_version_ids(SecretId=rig.arn)["Versions"]
    assert len(versions) == 2
    # ... and every container goes on with that value: setSecret in each (warm), then the rest
    for app in apps:
        app.resolve(rig.event("setSecret", token), FakeLambdaContext())
        assert rig.db.passwords["app_user"] == pending["password"]
    for step in ("testSecret", "finishSecret"):
        apps[0].resolve(rig.event(step, token), FakeLambdaContext())
    assert works(rig, CURRENT)


def test_set_secret_four_times_at_once_sets_the_pending_password(rig: Rig,
                                                                leak_scan: LeakScan) -> None:
    # GIVEN a pending value, and four containers
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    invoke(rig, "createSecret", token)
    apps = containers(4)

    # WHEN setSecret runs in all four at once
    with atomic_service():
        outcomes = concurrently(rig, "setSecret", token, apps, leak_scan)

    # THEN each succeeded ("done" or "already set") and the database has the pending password
    assert set(outcomes) <= {"done", "already set"}, outcomes
    assert rig.db.passwords["app_user"] == rig.value(PENDING)["password"]
    check_invariants(rig, "after the concurrent setSecret")
    _, error = run_steps(rig, token, STEPS[2:], leak_scan)
    assert error is None
    assert works(rig, CURRENT)


def test_finish_secret_four_times_at_once_moves_current_once(rig: Rig,
                                                            leak_scan: LeakScan) -> None:
    # GIVEN a rotation up to testSecret, and four containers
    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    run_steps(rig, token, STEPS[:3], leak_scan)
    old = version_with(rig, CURRENT)
    apps = containers(4)

    # WHEN finishSecret runs in all four at once
    with atomic_service():
        outcomes = concurrently(rig, "finishSecret", token, apps, leak_scan)

    # THEN AWSCURRENT moved once, to the rotation's version, and AWSPREVIOUS is the old one; the
    # containers that lost the race see that their own rotation is done (not a concurrent
    # update by someone else)
    assert all(o.startswith("done") or o == "already current" for o in outcomes), outcomes
    labels = rig.service.labels(rig.arn)
    assert CURRENT in labels[token]
    assert PREVIOUS in labels[str(old)]
    check_invariants(rig, "after the concurrent finishSecret")
    assert works(rig, CURRENT)
