"""Section 6: many secrets rotated by one long-lived container, on PostgreSQL.

Runs in its own process (``python -m benchmarks.throughput --count N``) with its own PostgreSQL
and moto stack, so the first rotation starts from a clean slate (nothing cached or registered by
the other sections) and a cost that grows with the count shows up as a difference between the
first and the last quarter. One app serves every rotation (``handler.get_app()`` is never reset),
through the local service driver. Prints ``BENCH-RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.probe import MARKER
from benchmarks.tables import Table, median, percentile, verdict

ROOT = Path(__file__).resolve().parent.parent
CALLS_TARGET = 7
LOGINS_TARGET = 2


def measure(count: int) -> dict[str, Any]:
    from benchmarks.harness import Harness, quiet_logs
    from rotation.tools.local import local_stack
    from rotation.tools.sandbox import Sandbox

    with Sandbox() as sandbox, local_stack() as sm, quiet_logs():
        server = sandbox.postgres()
        harness = Harness(sm, {"postgres": server}, server.ca_file)
        started = time.perf_counter()
        targets = [harness.new_target("postgres") for _ in range(count)]
        setup_s = time.perf_counter() - started
        harness.reset_shared()
        rotations: list[dict[str, Any]] = []
        started = time.perf_counter()
        for target in targets:
            m = harness.rotate(target, "shared")
            rotations.append({"ok": m.ok, "calls": m.total_calls, "by_op": dict(m.calls),
                              "logins": m.logins, "failed": m.failed_logins,
                              "wall_ms": m.wall_ms, "steps_ms": round(m.steps_ms, 1),
                              "error": m.error()})
        loop_s = time.perf_counter() - started
    return {"count": count, "setup_s": round(setup_s, 2), "loop_s": round(loop_s, 3),
            "redaction_values": _redaction_values(), "rotations": rotations}


def _redaction_values() -> int | None:
    """How many secret values the process has registered for log redaction (a diagnostic: every
    log line is checked against all of them; None if the registry is not where it was)."""
    from rotation import _redact

    values = getattr(_redact, "_values", None)
    return len(values) if isinstance(values, set | dict | list) else None


def run(count: int, timeout: float = 600.0) -> dict[str, Any]:
    """``measure`` in a fresh process."""
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "benchmarks.throughput", "--count", str(count)],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            data: dict[str, Any] = json.loads(line[len(MARKER):])
            return data
    raise RuntimeError(f"throughput run exited {proc.returncode}: "
                       f"{proc.stderr.strip()[-600:]}")


def _row(table: Table, label: str, items: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    ok = [r for r in items if r["ok"]]
    n = len(items)
    calls = sum(r["calls"] for r in ok) / len(ok) if ok else float("nan")
    logins = sum(r["logins"] for r in ok) / len(ok) if ok else float("nan")
    failed = sum(r["failed"] for r in ok) / len(ok) if ok else float("nan")
    wall = [r["wall_ms"] for r in ok]
    rate = n / seconds if seconds else float("nan")
    passed = (len(ok) == n and calls <= CALLS_TARGET and logins == LOGINS_TARGET
              and failed == 0)
    table.add(label, n, f"{rate:.1f}", round(median(wall), 1), round(percentile(wall, 95), 1),
              f"{calls:.2f}", f"{logins:.2f}", f"{failed:.2f}",
              f"≤ {CALLS_TARGET} / {LOGINS_TARGET} / 0", verdict(passed))
    return {"rotations": n, "succeeded": len(ok), "rotations_per_s": rate,
            "wall_ms": {"median": median(wall), "p95": percentile(wall, 95)},
            "calls_per_rotation": calls, "logins_per_rotation": logins,
            "failed_per_rotation": failed, "pass": passed}


def throughput_table(count: int) -> Table:
    table = Table(
        "throughput", f"6. Throughput: {count} PostgreSQL secrets, one warm app, one process",
        ["Rotations", "N", "Rotations/s", "Median ms", "p95 ms", "Calls/rot", "Logins/rot",
         "Failed/rot", "Target", "Result"])
    try:
        result = run(count)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        table.add("all", 0, "—", "—", "—", "—", "—", "—", "—", "MISS")
        table.notes.append(f"did not run: {exc}")
        return table
    rotations = result["rotations"]
    quarter = max(1, len(rotations) // 4)
    first, last = rotations[:quarter], rotations[-quarter:]
    data: dict[str, Any] = {"count": count, "setup_s": result["setup_s"],
                            "loop_s": result["loop_s"]}
    data["first_quarter"] = _row(table, f"first quarter (1-{quarter})", first,
                                 sum(r["wall_ms"] for r in first) / 1000)
    data["last_quarter"] = _row(table, f"last quarter ({len(rotations) - quarter + 1}-"
                                f"{len(rotations)})", last,
                                sum(r["wall_ms"] for r in last) / 1000)
    data["all"] = _row(table, "all", rotations, result["loop_s"])
    f, la = data["first_quarter"], data["last_quarter"]
    flat = (f["calls_per_rotation"] == la["calls_per_rotation"]
            and f["logins_per_rotation"] == la["logins_per_rotation"]
            and f["failed_per_rotation"] == la["failed_per_rotation"])
    speed = la["wall_ms"]["median"] / f["wall_ms"]["median"] if f["wall_ms"]["median"] else 0
    table.add("last ÷ first quarter", "—",
              f"{la['rotations_per_s'] / f['rotations_per_s']:.2f}",
              f"{speed:.2f}", "—",
              f"{la['calls_per_rotation'] / f['calls_per_rotation']:.2f}",
              f"{la['logins_per_rotation'] / f['logins_per_rotation']:.2f}", "—",
              "calls, logins flat (1.00)", verdict(flat))
    data["flat"] = flat
    data["latency_ratio_last_first"] = speed
    errors = sorted({r["error"] for r in rotations if r["error"]})
    table.notes += [
        f"{count} users and secrets created first ({result['setup_s']:.1f} s, not timed); "
        f"then each secret rotated once by the same app in {result['loop_s']:.1f} s.",
        "Rotations/s of a quarter: its rotations over the summed wall time of their "
        "`LocalRotationService.rotate` (the driver's own moto calls included); `all`: over the "
        "whole loop, bookkeeping included. Timing ratios are informational, not a verdict.",
        *(f"error: {e}" for e in errors[:5]),
    ]
    if result.get("redaction_values") is not None:
        data["redaction_values"] = result["redaction_values"]
        table.notes.append(
            f"Secret values registered for log redaction at the end: "
            f"{result['redaction_values']} (every log line is checked against all of them).")
    table.data = data
    return table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args(argv)
    print(MARKER + json.dumps(measure(args.count)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
