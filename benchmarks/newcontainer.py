"""Sections 7 and 8: the first rotation in a new container, beside AWS's sample functions.

A secret rotates every few days, so in production nearly every rotation starts in a new Lambda
container: that rotation is the one to make fast.

7. **New container**, in this process. This framework: ``handler.reset()``, then what Lambda's
   init phase runs (``rotation.handler.init()`` when the module has it; its absence means no init
   work; ``ROTATION_ENGINE`` set as the template sets it), timed as *init*, then the four steps
   through ``lambda_handler`` in that same container (*steps*: the sum of
   ``RotationReport.steps[].duration_ms``). AWS's sample single-user
   function, same rig, same mode: its module code is run again into a fresh module (its init),
   then its four steps (it builds a boto3 client in every invocation). Both run with the
   modules they import (boto3, the drivers) already imported and botocore's default session
   (the loaded service models) kept, as every in-process mode here; section 8 is the figure that
   pays for all of that. The warm figure beside it is section 3's warm mode (the app built before
   the rotation, not timed), measured here again, interleaved with the others.
8. **Full cold process**: a new Python process per rotation, with Lambda's environment variables,
   that imports the function (for this framework ``rotation.handler``, whose import runs the init
   phase on Lambda), then runs the four steps against a Secrets Manager endpoint served over HTTP
   by this process (:mod:`benchmarks.smproxy`) and the sandbox's server: wall time from spawning
   the process to the end of finishSecret.

Secrets Manager calls are counted on every client but the local service driver's (a wrapper of
botocore's ``BaseClient._make_api_call``, so a client built inside an invocation counts too);
database logins come from the server's log.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.coldstart import _child_env
from benchmarks.harness import Harness, LambdaContext, Target, environment, quiet_stdout
from benchmarks.probe import MARKER
from benchmarks.samples import (
    IN_PROCESS_ENDPOINT,
    REFERENCE_MS,
    SampleSource,
    describe_error,
    lambda_root_logging,
    load_sample,
)
from benchmarks.smproxy import SecretsManagerEndpoint
from benchmarks.tables import Table, median, percentile, verdict
from rotation import handler
from rotation.event import STEPS
from rotation.tools.local import RotationReport, new_rotation_token

ROOT = Path(__file__).resolve().parent.parent
RATIO_TARGET = 0.6
OURS = "this framework"
SAMPLE = "AWS sample (single-user)"
NOT_RUN = "not run (pass --aws-samples DIR)"
KINDS: tuple[str, ...] = ("ours", "sample", "warm")


@dataclass
class Trial:
    """One rotation: init and steps time (ms), what it cost, and whether it succeeded."""

    init_ms: float
    steps_ms: float
    calls: Counter[str]
    logins: int
    failed_logins: int
    error: str = ""
    step_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def total_ms(self) -> float:
        return self.init_ms + self.steps_ms


@dataclass
class EngineRun:
    """Every trial of one engine, by kind (``ours``, ``sample``, ``warm``), or why a kind could
    not run."""

    engine: str
    trials: dict[str, list[Trial]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: dict[str, str] = field(default_factory=dict)

    def active(self) -> list[str]:
        return [k for k in KINDS if k not in self.errors]


@contextlib.contextmanager
def count_calls(exclude: Any) -> Iterator[Counter[str]]:
    """Secrets Manager calls made by any client but ``exclude`` (the local service driver's)."""
    from botocore.client import BaseClient

    calls: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counting(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if self is not exclude and self.meta.service_model.service_name == "secretsmanager":
            calls[operation_name] += 1
        return original(self, operation_name, api_params)

    with mock.patch.object(BaseClient, "_make_api_call", counting):
        yield calls


def _trial(init_ms: float, report: RotationReport, calls: Counter[str], logins: Any) -> Trial:
    failed = [s for s in report.steps if s.error]
    error = f"{failed[0].step}: {failed[0].error}" if failed else (
        "" if report.succeeded else "the rotation stopped early")
    return Trial(round(init_ms, 2), sum(s.duration_ms for s in report.steps), +calls,
                 logins.succeeded, logins.failed, error,
                 {s.step: s.duration_ms for s in report.steps})


def ours_new_container(harness: Harness, target: Target) -> Trial:
    """``handler.reset()``; ``handler.init()`` (timed: init); the four steps (timed: steps).

    ``ROTATION_ENGINE`` is set as the template sets it (its ``Engine``): init then loads that
    engine's adapter and driver and builds its TLS context, work the first step otherwise does.
    """
    context = LambdaContext()
    with environment(ROTATION_STRATEGY="single-user", ROTATION_CA_BUNDLE=harness.ca_file,
                     ROTATION_ENGINE=target.engine):
        handler.reset()
        mark = target.server.log_position()
        try:
            with count_calls(harness.sm) as calls, quiet_stdout():
                started = time.perf_counter()
                init = getattr(handler, "init", None)
                if init is not None:
                    init()
                init_ms = (time.perf_counter() - started) * 1000
                report = harness.service.rotate(
                    target.arn, lambda event: handler.lambda_handler(event, context))
        finally:
            handler.reset()
        logins = target.server.login_counts(since=mark)
    return _trial(init_ms, report, calls, logins)


def sample_new_container(harness: Harness, target: Target, source: SampleSource) -> Trial:
    """The sample's module code run into a fresh module (timed: init); its four steps."""
    context = LambdaContext()
    with environment(SECRETS_MANAGER_ENDPOINT=IN_PROCESS_ENDPOINT), lambda_root_logging():
        mark = target.server.log_position()
        with count_calls(harness.sm) as calls, quiet_stdout():
            try:
                module, init_ms = load_sample(source, harness.ca_file)
            except Exception as exc:  # a missing driver: say what to install
                return Trial(0.0, 0.0, Counter(), 0, 0, describe_error(source.engine, exc))
            report = harness.service.rotate(
                target.arn, lambda event: module.lambda_handler(event, context))
        logins = target.server.login_counts(since=mark)
    return _trial(init_ms, report, calls, logins)


def ours_warm(harness: Harness, target: Target) -> Trial:
    measured = harness.rotate(target, "warm")
    return Trial(0.0, measured.steps_ms, measured.calls, measured.logins,
                 measured.failed_logins, "" if measured.ok else measured.error(),
                 measured.step_ms())


def run_new_container(harness: Harness | None, engines: Sequence[str], rotations: int,
                      sources: dict[str, SampleSource], sample_errors: dict[str, str],
                      unavailable: dict[str, str]) -> list[EngineRun]:
    """Per engine: one untimed rotation of each kind (imports, first TLS contexts), then
    ``rotations`` of each, interleaved over engines and kinds (the order of the kinds turns
    from one round to the next, so no kind always follows the same one)."""
    runs: list[EngineRun] = []
    targets: dict[tuple[str, str], Target] = {}
    for engine in engines:
        run = EngineRun(engine)
        runs.append(run)
        if harness is None or engine in unavailable:
            reason = unavailable.get(engine, "no database server")
            run.errors = dict.fromkeys(KINDS, reason)
            continue
        if engine not in sources:
            run.errors["sample"] = sample_errors.get(engine, NOT_RUN)
        for kind in run.active():
            key = "sample" if kind == "sample" else "ours"
            try:
                if (engine, key) not in targets:
                    targets[engine, key] = harness.new_target(engine, "single-user")
            except Exception as exc:
                run.errors[kind] = f"setup failed: {type(exc).__name__}: {exc}"
        for kind in run.active():  # the untimed first rotation of each kind
            trial = _one(harness, kind, targets, engine, sources)
            if not trial.ok:
                run.errors[kind] = trial.error
    if harness is None:
        return runs
    for index in range(rotations):
        for run in runs:
            kinds = run.active()
            if not kinds:
                continue
            shift = index % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                trial = _one(harness, kind, targets, run.engine, sources)
                if trial.ok:
                    run.trials[kind].append(trial)
                else:  # a broken rotation leaves AWSPENDING behind: stop this kind here
                    run.errors[kind] = trial.error
    return runs


def _one(harness: Harness, kind: str, targets: dict[tuple[str, str], Target], engine: str,
         sources: dict[str, SampleSource]) -> Trial:
    try:
        if kind == "sample":
            return sample_new_container(harness, targets[engine, "sample"], sources[engine])
        if kind == "warm":
            return ours_warm(harness, targets[engine, "ours"])
        return ours_new_container(harness, targets[engine, "ours"])
    except Exception as exc:  # reported in the table, the other kinds keep going
        return Trial(0.0, 0.0, Counter(), 0, 0, f"{type(exc).__name__}: {exc}")


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": round(median(values), 2), "p95": round(percentile(values, 95), 2),
            "min": round(min(values), 2), "max": round(max(values), 2)}


def _mp(values: list[float]) -> str:
    return f"{median(values):.1f} / {percentile(values, 95):.1f}"


def _spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _logins(succeeded: list[int], failed: list[int]) -> str:
    return f"{_spread(succeeded)} ok, {_spread(failed)} failed"


def _summary(trials: list[Trial]) -> dict[str, Any]:
    worst = max(trials, key=lambda t: sum(t.calls.values()))
    return {
        "rotations": len(trials),
        "init_ms": _stats([t.init_ms for t in trials]),
        "steps_ms": _stats([t.steps_ms for t in trials]),
        "init_plus_steps_ms": _stats([t.total_ms for t in trials]),
        "per_step_median_ms": {step: round(median([t.step_ms.get(step, 0.0) for t in trials]), 2)
                               for step in STEPS},
        "calls_min": min(sum(t.calls.values()) for t in trials),
        "calls_max": sum(worst.calls.values()),
        "calls_by_operation": dict(sorted(worst.calls.items())),
        "logins_min": min(t.logins for t in trials), "logins_max": max(t.logins for t in trials),
        "failed_logins_max": max(t.failed_logins for t in trials),
    }


def new_container_table(runs: list[EngineRun], samples_dir: Path | None) -> Table:
    table = Table(
        "newcontainer",
        "7. One rotation in a new container (production's case): this framework and AWS's "
        "sample, ms",
        ["Engine", "Function", "Rotations", "Init (median)", "Steps (median / p95)",
         "Init + steps (median / p95)", "Warm, steps (median / p95)", "SM calls",
         "DB logins", "Ours / sample", "Target", "Result"])
    data: dict[str, Any] = {"samples_dir": str(samples_dir) if samples_dir else None,
                            "ratio_target": RATIO_TARGET, "engines": {}}
    for run in runs:
        ours, warm, sample = (run.trials[k] for k in ("ours", "warm", "sample"))
        entry: dict[str, Any] = {"errors": dict(run.errors)}
        data["engines"][run.engine] = entry
        ours_total = median([t.total_ms for t in ours]) if ours else None
        sample_total = median([t.total_ms for t in sample]) if sample else None
        ratio = (ours_total / sample_total) if ours_total and sample_total else None
        if ours:
            entry["ours"] = _summary(ours)
        if warm:
            entry["warm"] = _summary(warm)
        if sample:
            entry["sample"] = _summary(sample)
        if ratio is not None:
            entry["ratio"] = round(ratio, 3)
            entry["pass"] = ratio <= RATIO_TARGET and "ours" not in run.errors \
                and "sample" not in run.errors
        # this framework
        if ours:
            table.add(run.engine, OURS, len(ours), round(median([t.init_ms for t in ours]), 1),
                      _mp([t.steps_ms for t in ours]), _mp([t.total_ms for t in ours]),
                      _mp([t.steps_ms for t in warm]) if warm else "—",
                      _spread([sum(t.calls.values()) for t in ours]),
                      _logins([t.logins for t in ours], [t.failed_logins for t in ours]),
                      f"{ratio:.2f}" if ratio is not None else "—", f"≤ {RATIO_TARGET}",
                      verdict(bool(entry.get("pass"))) if ratio is not None
                      else "MISS" if "ours" in run.errors else "not measured")
        else:
            table.add(run.engine, OURS, 0, "—", "—", "—", "—", "—", "—", "—",
                      f"≤ {RATIO_TARGET}", "MISS")
        # AWS's sample, measured or not
        if sample:
            table.add(run.engine, SAMPLE, len(sample),
                      round(median([t.init_ms for t in sample]), 1),
                      _mp([t.steps_ms for t in sample]), _mp([t.total_ms for t in sample]),
                      "—", _spread([sum(t.calls.values()) for t in sample]),
                      _logins([t.logins for t in sample], [t.failed_logins for t in sample]),
                      "—", "—", "—")
        else:
            reason = run.errors.get("sample", NOT_RUN)
            table.add(run.engine, f"{SAMPLE}: " + (NOT_RUN if reason == NOT_RUN else "not run"),
                      0, "—", "—", "—", "—", "—", "—", "—", "—", "—")
            if run.engine not in REFERENCE_MS:
                continue  # no sample for this engine, and so no reference either
            low, high = REFERENCE_MS[run.engine]
            versus = (f"{ours_total / high:.2f} to {ours_total / low:.2f} vs reference"
                      if ours_total else "—")
            table.add(run.engine, f"{SAMPLE}: REFERENCE from the issue, not measured in this "
                      "run", "—", "—", "—", f"{low:.0f} to {high:.0f} (reference)", "—", "—", "—",
                      versus, f"≤ {RATIO_TARGET}", "not measured")
            entry["reference_ms"] = {"low": low, "high": high,
                                     "note": "from the issue (an earlier session), not measured"}
    table.notes += [
        "New container: `handler.reset()`, then `rotation.handler.init()` (Lambda's init phase: "
        "settings, boto3 client, engine table and, with `ROTATION_ENGINE` set as the template "
        "sets it, the engine's adapter and TLS context), timed as Init, then the four steps "
        "through "
        "`lambda_handler` in that container; Steps is the sum of the four invocations' "
        "durations (`RotationReport.steps[].duration_ms`). Warm: the app built before the "
        "rotation (not timed), as section 3.",
        "AWS's sample in the same mode: its module code is run again into a fresh module (Init), "
        "then its four steps; it builds its boto3 client inside every invocation. Its driver's "
        "`connect` is wrapped only to swap its CA path (`/etc/pki/tls/cert.pem`) for the "
        "sandbox CA; `SECRETS_MANAGER_ENDPOINT` is https://secretsmanager.us-east-1.amazonaws.com "
        "(moto intercepts it).",
        f"Ours / sample: median Init + steps of this framework over the sample's; target ≤ "
        f"{RATIO_TARGET}. Rotations of both (and the warm ones) are interleaved, engine by "
        "engine, on separate secrets and database users of the same servers.",
        "In both, the modules (boto3, the drivers) stay imported and botocore's default session "
        "(its loaded service models) is kept between rotations; a real new container also pays "
        "for those, equally for both: section 8 measures a whole new process.",
        "The samples' code is not part of this repository: it is read from the user's own "
        "checkout of github.com/aws-samples/aws-secrets-manager-rotation-lambdas (`--aws-samples "
        "DIR` or `AWS_SAMPLES_DIR`), and nothing is written into it. The PostgreSQL sample needs "
        "PyGreSQL (`pip install PyGreSQL`, which compiles against libpq: Debian `libpq-dev`), "
        "which this project does not depend on.",
        "DB logins, from the server's log: in setSecret the sample first tries the pending "
        "password and, when that is refused, tries it again through its fallback for secrets "
        "without an `ssl` key (PostgreSQL: `sslmode=disable`, refused by the `hostssl`-only "
        "server; MariaDB: no `ssl` options, which PyMySQL turns into unverified TLS), then logs "
        "in with the current one: 2 failed logins per rotation.",
    ]
    for run in runs:
        for kind, error in run.errors.items():
            if error != NOT_RUN:
                who = {"ours": f"{OURS}, new container", "warm": f"{OURS}, warm",
                       "sample": SAMPLE}[kind]
                table.notes.append(f"{run.engine} / {who}: {error}")
    table.data = data
    return table


# --------------------------------------------------------------------------------------------
# 8. Full cold process
# --------------------------------------------------------------------------------------------


@dataclass
class ProcessRun:
    """One rotation in a fresh process: the marks (ms from spawning it) and its cost."""

    start_ms: float  # the interpreter up, the probe module imported
    ready_ms: float  # the function imported, init done
    end_ms: float  # finishSecret returned
    steps: list[dict[str, Any]]
    calls: int
    logins: int
    failed_logins: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def _lambda_env(**extra: str) -> dict[str, str]:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return _child_env(AWS_LAMBDA_FUNCTION_NAME="rotation-bench",
                      AWS_EXECUTION_ENV=f"AWS_Lambda_python{version}", **extra)


def _cold_process(harness: Harness, endpoint: SecretsManagerEndpoint, target: Target, kind: str,
                  pycache: str, source: SampleSource | None) -> ProcessRun:
    token = str(uuid.uuid4())
    harness.service.stage_pending(target.arn, token)
    fields: dict[str, Any] = {"SecretId": target.arn, "ClientRequestToken": token,
                              "RotationToken": new_rotation_token()}
    if source is not None:
        fields["sample"] = {"engine": source.engine, "path": str(source.path),
                            "ca_file": harness.ca_file}
    env = _lambda_env(SECRETS_MANAGER_ENDPOINT=endpoint.url, ROTATION_CA_BUNDLE=harness.ca_file,
                      ROTATION_STRATEGY="single-user", ROTATION_ENGINE=target.engine,
                      PYTHONPYCACHEPREFIX=pycache)
    mode = "cold-sample" if kind == "sample" else "cold"
    endpoint.reset_counts()
    mark = target.server.log_position()
    spawned = time.monotonic_ns()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.probe", mode],  # noqa: S603
                          input=json.dumps(fields), capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=180, check=False)
    logins = target.server.login_counts(since=mark)
    calls = sum(endpoint.calls.values())
    result: dict[str, Any] | None = None
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            result = json.loads(line[len(MARKER):])
    if result is None:
        return ProcessRun(0, 0, 0, [], calls, logins.succeeded, logins.failed,
                          f"probe {mode} exited {proc.returncode}: "
                          f"{proc.stderr.strip()[-400:]}")
    marks = result["marks"]

    def ms(name: str) -> float:
        return (int(marks[name]) - spawned) / 1e6

    steps = result["steps"]
    failed = [s for s in steps if s["error"]]
    error = f"{failed[0]['step']}: {failed[0]['error']}" if failed else (
        "" if len(steps) == 4 else "the rotation stopped early")
    if not error:
        harness.service.unstage_pending(target.arn, token)
    return ProcessRun(ms("start_ns"), ms("ready_ns"), ms("end_ns"), steps, calls,
                      logins.succeeded, logins.failed, error)


def cold_process_table(harness: Harness | None, engines: Sequence[str], processes: int,
                       sources: dict[str, SampleSource], sample_errors: dict[str, str],
                       unavailable: dict[str, str]) -> Table:
    table = Table(
        "coldprocess",
        "8. Full cold process: one rotation in a new Python process, ms from spawning it",
        ["Engine", "Function", "Processes", "To end of finishSecret (median)", "min-max",
         "Interpreter up", "Import + init", "Four steps", "SM calls", "DB logins",
         "Ours / sample"])
    data: dict[str, Any] = {"engines": {}}
    results: dict[tuple[str, str], list[ProcessRun]] = {}
    errors: dict[tuple[str, str], str] = {}
    if harness is not None:
        with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache, \
                SecretsManagerEndpoint(harness.sm) as endpoint:
            jobs: list[tuple[str, str, Target, SampleSource | None]] = []
            for engine in engines:
                if engine in unavailable:
                    continue
                kinds = ["ours", "sample"] if engine in sources else ["ours"]
                for kind in kinds:
                    try:
                        target = harness.new_target(engine, "single-user")
                    except Exception as exc:
                        errors[engine, kind] = f"setup failed: {type(exc).__name__}: {exc}"
                        continue
                    source = sources.get(engine) if kind == "sample" else None
                    # untimed: fills the bytecode cache (PYTHONPYCACHEPREFIX) and the page cache
                    first = _cold_process(harness, endpoint, target, kind, pycache, source)
                    if first.ok:
                        jobs.append((engine, kind, target, source))
                        results[engine, kind] = []
                    else:
                        errors[engine, kind] = first.error
            for index in range(processes):
                order = jobs if index % 2 == 0 else jobs[::-1]
                for engine, kind, target, source in order:
                    if (engine, kind) in errors:
                        continue
                    run = _cold_process(harness, endpoint, target, kind, pycache, source)
                    if run.ok:
                        results[engine, kind].append(run)
                    else:
                        errors[engine, kind] = run.error
    for engine in engines:
        entry: dict[str, Any] = {}
        data["engines"][engine] = entry
        done = {kind: results.get((engine, kind), []) for kind in ("ours", "sample")}
        ratio = (median([r.end_ms for r in done["ours"]])
                 / median([r.end_ms for r in done["sample"]])
                 if done["ours"] and done["sample"] else None)
        if ratio is not None:
            entry["ratio"] = round(ratio, 3)
        for kind, label in (("ours", OURS), ("sample", SAMPLE)):
            runs = done[kind]
            if not runs:
                reason = (unavailable.get(engine) or errors.get((engine, kind))
                          or (sample_errors.get(engine) if kind == "sample" else None)
                          or NOT_RUN)
                shown = NOT_RUN if reason == NOT_RUN else "not run"
                table.add(engine, f"{label}: {shown}", 0, "—", "—", "—", "—", "—", "—", "—",
                          "—")
                entry[kind] = {"error": reason}
                continue
            end = [r.end_ms for r in runs]
            table.add(engine, label, len(runs), round(median(end), 1),
                      f"{min(end):.0f}-{max(end):.0f}",
                      round(median([r.start_ms for r in runs]), 1),
                      round(median([r.ready_ms - r.start_ms for r in runs]), 1),
                      round(median([r.end_ms - r.ready_ms for r in runs]), 1),
                      _spread([r.calls for r in runs]),
                      _logins([r.logins for r in runs], [r.failed_logins for r in runs]),
                      f"{ratio:.2f}" if kind == "ours" and ratio is not None else "—")
            entry[kind] = {
                "processes": len(runs),
                "to_end_of_finish_ms": _stats(end),
                "interpreter_up_ms": _stats([r.start_ms for r in runs]),
                "import_and_init_ms": _stats([r.ready_ms - r.start_ms for r in runs]),
                "steps_ms": _stats([r.end_ms - r.ready_ms for r in runs]),
                "per_step_ms": {s: median([next(x["ms"] for x in r.steps if x["step"] == s)
                                           for r in runs])
                                for s in ("createSecret", "setSecret", "testSecret",
                                          "finishSecret")},
                "calls": sorted({r.calls for r in runs}),
                "logins": sorted({r.logins for r in runs}),
                "failed_logins": sorted({r.failed_logins for r in runs}),
            }
            if errors.get((engine, kind)):
                entry[kind]["error"] = errors[engine, kind]
    table.notes += [
        "Each process is spawned by this benchmark with Lambda's environment variables "
        "(`AWS_LAMBDA_FUNCTION_NAME`, `AWS_EXECUTION_ENV`, so importing `rotation.handler` runs "
        "the init phase as on Lambda, and the template's `ROTATION_ENGINE`, so that phase also "
        "imports the engine's driver; `init()` is called again after the import, a no-op once "
        "the app is built) and runs `python -m benchmarks.probe cold` (AWS's sample: "
        "`cold-sample`, which imports the sample file as Lambda imports a handler module). "
        "Secrets Manager is an HTTP endpoint served by this benchmark (moto behind it, no moto "
        "in the process); the database is the sandbox's TLS server.",
        "Columns (medians, ms from spawning the process): Interpreter up: Python started and "
        "the probe module imported; Import + init: the function imported (this framework: "
        "`rotation.handler` and its init phase: settings, boto3 session and client, engine "
        "table, the engine's adapter, driver and TLS context; the sample: its module, which "
        "imports boto3 and its driver); Four steps: until finishSecret returned. Ours / sample: "
        "ratio of the medians of the whole.",
        "One untimed process of each kind first fills the bytecode cache (a temporary "
        "`PYTHONPYCACHEPREFIX`, so nothing is written into the samples' checkout) and the page "
        "cache; the timed processes alternate between kinds and engines.",
    ]
    for (engine, kind), error in errors.items():
        table.notes.append(f"{engine} / {OURS if kind == 'ours' else SAMPLE}: {error}")
    table.data = data
    return table


__all__ = ["cold_process_table", "count_calls", "new_container_table", "run_new_container"]
