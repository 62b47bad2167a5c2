"""Sections 1-3: Secrets Manager calls, database logins and latency per rotation.

Per engine x strategy, one secret is rotated again and again through ``lambda_handler``:

1. four counted rotations (warm, warm, cold, cold: for alternating users that is each direction,
   original -> clone and clone -> original, once warm and once cold), which also warm up the
   process (driver imports, first TLS contexts);
2. ``rotations`` warm and ``rotations`` cold rotations timed for the latency table, interleaved
   over the engine x strategy pairs.

Calls and logins are taken from *every* rotation, so the tables also show that they do not vary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.harness import (
    ENGINES,
    OPERATIONS,
    STRATEGIES,
    Harness,
    Measured,
    Mode,
    Target,
)
from benchmarks.tables import Table, median, percentile, verdict
from rotation.event import STEPS

CALL_TARGETS: dict[str, int] = {"warm": 7, "cold": 12}  # cold: finishSecret checks value and dates
LOGIN_TARGET = 2
FAILED_LOGIN_TARGET = 0
AWS_SAMPLE = {"calls": 14, "logins": 3, "failed": 1}


@dataclass
class ConfigRun:
    """Every rotation of one engine x strategy (or why it could not run)."""

    engine: str
    strategy: str
    counted: list[Measured] = field(default_factory=list)
    timed: list[Measured] = field(default_factory=list)
    error: str = ""

    @property
    def all(self) -> list[Measured]:
        return [*self.counted, *self.timed]


def run_configs(harness: Harness | None, rotations: int, engines: Sequence[str] = ENGINES,
                unavailable: dict[str, str] | None = None) -> list[ConfigRun]:
    """Rotate each engine x strategy: 4 counted rotations, then ``rotations`` warm + cold.

    The timed rotations are interleaved, round-robin over the configurations and alternating
    which mode goes first, so that a burst of load on a shared machine spreads over every row
    instead of skewing one, and so that for alternating users each mode goes both ways equally.
    """
    unavailable = unavailable or {}
    runs: list[ConfigRun] = []
    targets: dict[int, Target] = {}
    for engine in engines:
        for strategy in STRATEGIES:
            run = ConfigRun(engine, strategy)
            runs.append(run)
            if engine in unavailable or harness is None:
                run.error = unavailable.get(engine, "no database server")
                continue
            try:
                target = harness.new_target(engine, strategy)
            except Exception as exc:  # report it in the table, keep measuring the rest
                run.error = f"setup failed: {type(exc).__name__}: {exc}"
                continue
            modes: list[Mode] = ["warm", "warm", "cold", "cold"]
            run.counted = [harness.rotate(target, mode) for mode in modes]
            if all(m.ok for m in run.counted):
                targets[id(run)] = target
            else:
                run.error = next(m.error() for m in run.counted if not m.ok)
    if harness is None:
        return runs
    for index in range(rotations):
        order: tuple[Mode, Mode] = ("warm", "cold") if index % 2 == 0 else ("cold", "warm")
        for mode in order:
            for run in runs:
                timed_target = targets.get(id(run))
                if timed_target is None or run.error:
                    continue
                measured = harness.rotate(timed_target, mode)
                run.timed.append(measured)
                if not measured.ok:  # a broken rotation leaves AWSPENDING behind: stop here
                    run.error = measured.error()
    return runs


def _spread(values: Iterable[int]) -> str:
    values = list(values)
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _row_order(item: tuple[tuple[str, str], list[Measured]]) -> tuple[bool, bool]:
    """warm before cold; original -> clone (the first rotation) before clone -> original."""
    (mode, direction), _ = item
    return mode != "warm", direction.startswith("clone")


def calls_table(runs: list[ConfigRun]) -> Table:
    table = Table(
        "calls", "1. Secrets Manager calls per rotation (the function's client only)",
        ["Engine", "Strategy", "Mode", "Direction", "Rotations", "Calls", "Target", "Result",
         *OPERATIONS])
    data: list[dict[str, Any]] = []
    for run in runs:
        if not run.all and run.error:
            table.add(run.engine, run.strategy, "—", "—", 0, "not run", "≤ 7 / ≤ 10", "MISS",
                      *(["—"] * len(OPERATIONS)))
            data.append({"engine": run.engine, "strategy": run.strategy, "error": run.error})
            continue
        groups: dict[tuple[str, str], list[Measured]] = {}
        for m in run.all:
            if m.ok:
                groups.setdefault((m.mode, m.direction), []).append(m)
        for (mode, direction), items in sorted(groups.items(), key=_row_order):
            worst = max(items, key=lambda m: m.total_calls)
            target = CALL_TARGETS[mode]
            table.add(run.engine, run.strategy, mode, direction, len(items),
                      _spread(m.total_calls for m in items), f"≤ {target}",
                      verdict(worst.total_calls <= target),
                      *(worst.calls.get(op, 0) for op in OPERATIONS))
            data.append({"engine": run.engine, "strategy": run.strategy, "mode": mode,
                         "direction": direction, "rotations": len(items),
                         "calls_min": min(m.total_calls for m in items),
                         "calls_max": worst.total_calls, "target": target,
                         "pass": worst.total_calls <= target,
                         "by_operation": {op: worst.calls.get(op, 0) for op in OPERATIONS}})
        if run.error:
            table.add(run.engine, run.strategy, "—", "—", "—", "FAILED", "—", "MISS",
                      *(["—"] * len(OPERATIONS)))
    table.notes += [
        "warm: a new container whose app is built before the rotation and shared by the four "
        "steps; cold: `handler.reset()` before every step (each step in a new container).",
        f"AWS's sample single-user function makes {AWS_SAMPLE['calls']} calls per rotation "
        "(moto + PostgreSQL 15).",
        "Alternating users read the master secret in setSecret (DescribeSecret + GetSecretValue "
        "on `masterarn`), and when the secret holds the clone, the AWSPREVIOUS version too "
        "(GetSecretValue: it settles which user is the original; createSecret and setSecret each "
        "need it when cold).",
        "cold: finishSecret reads the pending value (AWSCURRENT never moves to a version without "
        "one) and the versions' creation dates (ListSecretVersionIds: a compare-and-set that "
        "holds in a new container): 12 calls, 2 more than before that check.",
    ]
    _add_errors(table, runs)
    table.data = data
    return table


def logins_table(runs: list[ConfigRun]) -> Table:
    table = Table(
        "logins", "2. Database logins per clean rotation (from the server's log)",
        ["Engine", "Strategy", "Rotations", "Logins", "Target", "Failed", "Target ",
         "Result"])
    data: list[dict[str, Any]] = []
    for run in runs:
        ok = [m for m in run.all if m.ok]
        if not ok:
            table.add(run.engine, run.strategy, 0, "not run", LOGIN_TARGET, "—",
                      FAILED_LOGIN_TARGET, "MISS")
            data.append({"engine": run.engine, "strategy": run.strategy, "error": run.error})
            continue
        logins = [m.logins for m in ok]
        failed = [m.failed_logins for m in ok]
        passed = max(logins) <= LOGIN_TARGET and max(failed) <= FAILED_LOGIN_TARGET
        table.add(run.engine, run.strategy, len(ok), _spread(logins), LOGIN_TARGET,
                  _spread(failed), FAILED_LOGIN_TARGET, verdict(passed and not run.error))
        data.append({"engine": run.engine, "strategy": run.strategy, "rotations": len(ok),
                     "logins_min": min(logins), "logins_max": max(logins),
                     "failed_min": min(failed), "failed_max": max(failed),
                     "target_logins": LOGIN_TARGET, "target_failed": FAILED_LOGIN_TARGET,
                     "pass": passed})
    table.notes += [
        "Counted over every rotation of sections 1 and 3, warm and cold.",
        "single-user: setSecret logs in as the user (AWSCURRENT) and sets the new password, "
        "testSecret logs in with it. alternating-users: the master in setSecret, the pending "
        "user in testSecret.",
        f"AWS's sample: {AWS_SAMPLE['logins']} logins, {AWS_SAMPLE['failed']} of them a "
        "deliberate failure (it tries the pending password first).",
    ]
    _add_errors(table, runs)
    table.data = data
    return table


def latency_table(runs: list[ConfigRun]) -> Table:
    table = Table(
        "latency", "3. Rotation latency, ms (median / p95)",
        ["Engine", "Strategy", "Mode", "Rotations", "Median", "p95", *STEPS])
    data: list[dict[str, Any]] = []
    for run in runs:
        for mode in ("warm", "cold"):
            items = [m for m in run.timed if m.mode == mode and m.ok]
            if not items:
                table.add(run.engine, run.strategy, mode, 0, "—", "—", *(["—"] * len(STEPS)))
                continue
            totals = [m.steps_ms for m in items]
            per_step = {step: [m.step_ms()[step] for m in items] for step in STEPS}
            table.add(run.engine, run.strategy, mode, len(items), round(median(totals), 1),
                      round(percentile(totals, 95), 1),
                      *(f"{median(v):.1f} / {percentile(v, 95):.1f}"
                        for v in per_step.values()))
            data.append({
                "engine": run.engine, "strategy": run.strategy, "mode": mode,
                "rotations": len(items),
                "total_ms": {"median": median(totals), "p95": percentile(totals, 95)},
                "steps_ms": {step: {"median": median(v), "p95": percentile(v, 95)}
                             for step, v in per_step.items()},
                "wall_ms_median": median([m.wall_ms for m in items]),
            })
    table.notes += [
        "Time spent in the function (sum of the four `lambda_handler` calls, "
        "RotationReport.steps[].duration_ms); the local driver's own bookkeeping is left out.",
        "Secrets Manager is moto in-process (no network): on AWS each API call adds a network "
        "round trip, so these figures are mostly the database's TLS logins and statements.",
        "cold includes building the app (settings, boto3 client) in every step; driver modules "
        "stay imported (same process), see section 4 for import costs.",
    ]
    _add_errors(table, runs)
    table.data = data
    return table


def _add_errors(table: Table, runs: list[ConfigRun]) -> None:
    for run in runs:
        if run.error:
            table.notes.append(f"{run.engine} / {run.strategy}: {run.error}")


def counts_summary(runs: list[ConfigRun]) -> dict[str, Any]:
    """Per-operation totals of the counted rotations, for the JSON file."""
    out: dict[str, Any] = {}
    for run in runs:
        for m in run.counted:
            key = f"{run.engine}/{run.strategy}/{m.mode}/{m.direction}"
            out[key] = {"calls": dict(Counter(m.calls)), "logins": m.logins,
                        "failed_logins": m.failed_logins, "steps_ms": m.step_ms(),
                        "ok": m.ok}
    return out
