"""No fault loses a working credential: every Secrets Manager call and every database operation
of a rotation fails in turn (see tests/fault_harness.py), then Secrets Manager's retries must
converge.

Invariants, for every row of the matrix:
* after every invocation (the faulted one and each retry), AWSCURRENT or AWSPENDING logs in;
* the retries converge: AWSCURRENT is on the rotation's version and logs in, exactly one version
  is AWSCURRENT, AWSPENDING is gone (the local driver removes it after finishSecret) or on that
  same version; with alternating users AWSPREVIOUS still logs in too;
* dual passwords: AWSCURRENT logs in after every invocation, AWSPREVIOUS after the rotation, and
  the password retained by the rotation before is dropped;
* a fault surfaces as the framework's error for it (AwsError, RotationTimeoutError, the
  database's error) and no error text shows a secret (the autouse leak scan reads them).

Run with ``-rP`` (or ``-s``) to see the table: one line per injection point and fault kind, one
column per retry mode, e.g. ``AwsError@setSecret→ok``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from rotation import handler
from rotation.errors import ConcurrentUpdateError
from rotation.tools.local import LocalRotationService
from tests.conftest import LeakScan
from tests.fault_harness import (
    DB_EXTRA_FAULTS,
    DB_FAULTS,
    MODES,
    SM_EXTRA_FAULTS,
    SM_FAULTS,
    Crash,
    Harness,
    Point,
    Tracer,
    default_kinds,
    run_matrix,
    summary,
    table,
    violations,
)
from tests.functional.conftest import make_secret
from tests.functional.fakes import FakeDatabase

USER, MASTER = "app_user", "master_user"
INITIAL, MASTER_PASSWORD = "initial-Passw0rd!", "master-Passw0rd!"


class FakeBench:
    """Secrets on moto, users in the in-memory database."""

    def __init__(self, sm: Any, db: FakeDatabase, strategy: str) -> None:
        self.sm, self.db, self.strategy = sm, db, strategy
        self.service = LocalRotationService(sm)
        self.tracer = Tracer()
        self.master_arn: str | None = None
        if strategy == "alternating-users":
            self.master_arn = sm.create_secret(Name=f"fi-master-{uuid.uuid4().hex[:8]}",
                                               SecretString=json.dumps(make_secret(
                                                   username=MASTER,
                                                   password=MASTER_PASSWORD)))["ARN"]

    def fresh(self) -> str:
        self.db.reset()
        self.db.observers.append(self.tracer.on_db)
        self.db.passwords[USER] = INITIAL
        if self.master_arn:
            self.db.passwords[MASTER] = MASTER_PASSWORD
            self.db.members[MASTER] = {"master"}
        arn: str = self.sm.create_secret(
            Name=f"fi-{uuid.uuid4().hex}",
            SecretString=json.dumps(make_secret(masterarn=self.master_arn)))["ARN"]
        self.service.enable_rotation(arn)
        handler.reset()
        return arn

    def logs_in(self, username: str, password: str) -> bool:
        return self.db.accepts(username, password)


SCENARIOS = [("single-user", 0), ("single-user", 1), ("alternating-users", 0),
             ("alternating-users", 1), ("dual-password", 0), ("dual-password", 1)]


@pytest.mark.parametrize(("strategy", "warmups"), SCENARIOS,
                         ids=[f"{s}-rotation{w + 1}" for s, w in SCENARIOS])
def test_every_fault_at_every_point_converges(sm: Any, db: FakeDatabase, leak_scan: LeakScan,
                                              monkeypatch: pytest.MonkeyPatch, strategy: str,
                                              warmups: int) -> None:
    # GIVEN a secret rotated by `strategy` (the first rotation, or the second one, when
    # AWSPREVIOUS exists and alternating users switch back to the original user)
    monkeypatch.setenv("ROTATION_STRATEGY", strategy)
    bench = FakeBench(sm, db, strategy)
    harness = Harness(bench, leak_scan, f"{strategy} r{warmups + 1}", warmups=warmups)

    # WHEN each operation of a clean rotation fails in turn, with each fault kind, and the
    # rotation is retried in each mode
    points, rows = run_matrix(harness, default_kinds)

    # THEN (table printed for -rP) every invariant held in every row
    print(f"\n{summary(points, rows)}; {harness.checks} invariant checks")
    print(table(rows))
    assert points, "the clean rotation recorded no operation"
    assert {p.step for p in points} == {"createSecret", "setSecret", "testSecret",
                                        "finishSecret"}
    assert len(rows) == sum(len(default_kinds(p)) for p in points) * len(MODES)
    problems = violations(rows)
    assert not problems, f"{len(problems)} of {len(rows)} rows broke an invariant:\n" + \
        "\n".join(problems[:40])


def test_recorded_points_cover_both_layers_and_every_step(sm: Any, db: FakeDatabase,
                                                          leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a clean single-user rotation is recorded
    harness = Harness(FakeBench(sm, db, "single-user"), leak_scan, "single-user")
    points = harness.record()

    # THEN it holds both layers, every step, and the writes that matter
    operations = {(p.step, p.layer, p.operation) for p in points}
    assert {("createSecret", "sm", "PutSecretValue"), ("setSecret", "db", "connect"),
            ("setSecret", "db", "set_password"), ("setSecret", "db", "after_set_password"),
            ("testSecret", "db", "connect"), ("testSecret", "db", "ping"),
            ("finishSecret", "sm", "UpdateSecretVersionStage")} <= operations
    assert {p.step for p in points if p.layer == "sm"} == {"createSecret", "setSecret",
                                                            "testSecret", "finishSecret"}
    assert [p.index for p in points] == list(range(len(points)))
    assert set(SM_FAULTS) >= {"ClientError", "ReadTimeout", "crash-after"}
    assert set(DB_FAULTS) >= {"error", "crash"}


@pytest.mark.parametrize("operation", ["PutSecretValue", "UpdateSecretVersionStage"])
def test_a_write_whose_response_was_lost_is_not_reported_as_a_failure(
        sm: Any, db: FakeDatabase, leak_scan: LeakScan, operation: str) -> None:
    # GIVEN a rotation whose `operation` reaches Secrets Manager and is applied, but whose
    # response is lost on the way back, so botocore retries the very same request
    bench = FakeBench(sm, db, "single-user")
    harness = Harness(bench, leak_scan, "single-user")
    points = harness.record()
    point = next(p for p in points if p.operation == operation)

    # WHEN the rotation runs with that fault
    row = harness.run(point, "lost-response", "resume/warm")

    # THEN the retried request is recognised as the function's own (it already did what was
    # asked): the step succeeds, instead of e.g. reporting that "AWSCURRENT moved while
    # finishSecret ran" when it moved because of the first attempt
    assert row.outcome == "absorbed", row.outcome
    assert not row.violations


def test_crash_after_the_database_changed_then_a_new_rotation_token_is_refused(
        sm: Any, db: FakeDatabase, leak_scan: LeakScan) -> None:
    # GIVEN setSecret changed the password and the function died before answering
    bench = FakeBench(sm, db, "single-user")
    harness = Harness(bench, leak_scan, "single-user")
    points = harness.record()
    point = next(p for p in points if p.operation == "after_set_password")
    arn = bench.fresh()
    token = str(uuid.uuid4())
    bench.service.stage_pending(arn, token)
    bench.tracer.start((point.index, "crash"))
    harness.invoke(arn, "createSecret", token, "r" * 40, cold=False)
    with pytest.raises(Crash):
        harness.invoke(arn, "setSecret", token, "r" * 40, cold=False)
    bench.tracer.stop()

    # WHEN the service is asked to start another rotation meanwhile
    from rotation.errors import StageError

    with pytest.raises(StageError, match="isn't complete"):
        bench.service.stage_pending(arn, str(uuid.uuid4()))

    # THEN the only working credential (AWSPENDING) is still labelled, and finishing the
    # interrupted rotation makes it AWSCURRENT
    assert harness.works(arn, "AWSPENDING")
    assert not harness.works(arn, "AWSCURRENT")
    for step in ("setSecret", "testSecret", "finishSecret"):
        harness.invoke(arn, step, token, "r" * 40, cold=True)
    assert harness.works(arn, "AWSCURRENT")


def test_finish_reports_a_real_concurrent_update_but_not_its_own_retry(
        sm: Any, db: FakeDatabase, leak_scan: LeakScan) -> None:
    # GIVEN a rotation up to testSecret, and another writer moving AWSCURRENT right before
    # finishSecret's UpdateSecretVersionStage (after its DescribeSecret)
    bench = FakeBench(sm, db, "single-user")
    harness = Harness(bench, leak_scan, "single-user")
    arn = bench.fresh()
    token = str(uuid.uuid4())
    bench.service.stage_pending(arn, token)
    for step in ("createSecret", "setSecret", "testSecret"):
        harness.invoke(arn, step, token, "r" * 40, cold=False)
    racer = str(uuid.uuid4())
    current = harness.credential(arn, "AWSCURRENT")
    assert current is not None

    def race(**_: Any) -> None:
        sm.put_secret_value(SecretId=arn, ClientRequestToken=racer, SecretString=json.dumps(
            make_secret(username=current[0], password=current[1])))

    handler.get_app().secrets.client.meta.events.register_first(
        "before-call.secrets-manager.UpdateSecretVersionStage", race)

    # WHEN finishSecret runs
    with pytest.raises(ConcurrentUpdateError) as info:
        harness.invoke(arn, "finishSecret", token, "r" * 40, cold=False)

    # THEN the racer's version keeps AWSCURRENT, and the rotation's password is still labelled
    leak_scan.add_text(str(info.value))
    assert "AWSCURRENT" in harness.labels(arn)[racer]
    assert harness.works(arn, "AWSPENDING")


def test_point_labels_are_readable() -> None:
    point = Point(4, "setSecret", "db", "connect", 1)
    assert point.label.split() == ["setSecret", "db:connect#1"]


def test_the_other_fault_kinds_take_the_same_paths(sm: Any, db: FakeDatabase,
                                                   leak_scan: LeakScan) -> None:
    # GIVEN the fault kinds left out of the matrix because they take a path already in it
    # (ConnectTimeoutError before a call, DbTimeoutError from the database)
    harness = Harness(FakeBench(sm, db, "single-user"), leak_scan, "single-user extra")
    points = harness.record()

    # WHEN each of them is injected at every point, retried in a fresh container
    rows = [harness.run(point, kind, "restart/cold") for point in points
            for kind in (SM_EXTRA_FAULTS if point.layer == "sm" else DB_EXTRA_FAULTS)]

    # THEN every row converges like its twin in the matrix
    print(table(rows, ("restart/cold",)))
    assert len(rows) == len(points)
    problems = violations(rows)
    assert not problems, "\n".join(problems)


def _lossy_set_secret(ctx: Any) -> None:
    """A broken setSecret: sets a password that no version holds."""
    current = ctx.current()
    with ctx.adapter(current).connect(current) as session:
        session.set_password(current.username, "never-stored-" + uuid.uuid4().hex)


def _idle_finish_secret(ctx: Any) -> None:
    """A broken finishSecret: reports success without moving AWSCURRENT."""


def _single_password_set_secret(ctx: Any) -> None:
    """A broken dual-password setSecret: replaces the password instead of adding one."""
    current, pending = ctx.current(), ctx.pending()
    with ctx.adapter(current).connect(current) as session:
        session.set_password(pending.username, pending.password)


def _hoarding_set_secret(ctx: Any) -> None:
    """A broken dual-password setSecret: adds the new password but drops no old one."""
    from tests.functional.fakes import DB

    current, pending = ctx.current(), ctx.pending()
    older = DB.retained.get(current.username, set())
    with ctx.adapter(current).connect(current) as session:
        session.add_password(pending.username, pending.password, current.password)
    DB.retained[current.username] |= older


@pytest.mark.parametrize(("strategy", "warmups", "step", "mutant", "expected"), [
    ("single-user", 0, "setSecret", _lossy_set_secret,
     "neither AWSCURRENT nor AWSPENDING logs in"),
    ("single-user", 0, "finishSecret", _idle_finish_secret, "not on the rotation's version"),
    ("dual-password", 0, "setSecret", _single_password_set_secret,
     "dual passwords: AWSCURRENT does not log in"),
    ("dual-password", 1, "setSecret", _hoarding_set_secret,
     "the password retained by the rotation before still logs in"),
], ids=["lossy setSecret", "idle finishSecret", "dual: password replaced",
        "dual: older password kept"])
def test_the_harness_catches_a_broken_step(sm: Any, db: FakeDatabase, leak_scan: LeakScan,
                                           monkeypatch: pytest.MonkeyPatch, strategy: str,
                                           warmups: int, step: str, mutant: Any,
                                           expected: str) -> None:
    # GIVEN the points of a clean rotation, then a step replaced by a broken one
    from rotation.steps import DEFAULT_STEPS

    monkeypatch.setenv("ROTATION_STRATEGY", strategy)
    harness = Harness(FakeBench(sm, db, strategy), leak_scan, "mutant", warmups=warmups)
    points = harness.record()
    monkeypatch.setitem(DEFAULT_STEPS, step, mutant)

    # WHEN a row runs (a fault in createSecret, retried from createSecret)
    row = harness.run(points[0], "ClientError", "restart/warm")

    # THEN the invariants report it: the matrix above can fail
    assert any(expected in v for v in row.violations), row.violations
