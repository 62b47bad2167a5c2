"""Section 4: cold start. Import cost in fresh processes, and the peak RSS of one rotation.

Import cost: each sample is a new ``python -c`` process that imports boto3 and Powertools' Logger
(what any Python function on Lambda pays, the baseline), then times the statement under test.
Variants run interleaved (round-robin), after one untimed round that warms the page cache and
the ``.pyc`` files, and the median is reported.

Peak RSS: ``python -m benchmarks.probe rotation`` runs one rotation's four steps in one fresh
process (a warm container) against a Secrets Manager endpoint served over HTTP from this process
(:mod:`benchmarks.smproxy`), so no moto is loaded in the measured process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Harness
from benchmarks.probe import MARKER
from benchmarks.smproxy import SecretsManagerEndpoint
from benchmarks.tables import Table, median, verdict

ROOT = Path(__file__).resolve().parent.parent
IMPORT_TARGET_MS = 50.0
BASELINE = "import boto3, botocore.config\nfrom aws_lambda_powertools import Logger"
FRAMEWORK = "import rotation.handler, rotation.dispatcher"


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    statement: str
    target_ms: float | None = None
    build_app: bool = False


VARIANTS: tuple[Variant, ...] = (
    Variant("framework", f"`{FRAMEWORK}`", FRAMEWORK, IMPORT_TARGET_MS, build_app=True),
    Variant("framework+postgres", "… + `rotation.adapters.postgres` (psycopg)",
            f"{FRAMEWORK}, rotation.adapters.postgres"),
    Variant("psycopg", "`import psycopg` alone", "import psycopg"),
    Variant("framework+mysql", "… + `rotation.adapters.mysql` (PyMySQL)",
            f"{FRAMEWORK}, rotation.adapters.mysql"),
    Variant("pymysql", "`import pymysql` alone", "import pymysql"),
    Variant("framework+redis", "… + `rotation.adapters.redis` (redis-py)",
            f"{FRAMEWORK}, rotation.adapters.redis"),
    Variant("redis", "`import redis` alone", "import redis"),
)


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "ROTATION_", "SECRETS_MANAGER", "AWS_"))}
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"})
    env.update(extra)
    return env


def _sample(variant: Variant) -> dict[str, float]:
    code = "\n".join([
        "import json, time",
        "t0 = time.perf_counter()",
        BASELINE,
        "t1 = time.perf_counter()",
        variant.statement,
        "t2 = time.perf_counter()",
        "app = 0.0",
        *(["import rotation.handler as h", "t3 = time.perf_counter()", "h.get_app()",
           "app = (time.perf_counter() - t3) * 1000"] if variant.build_app else []),
        "print(json.dumps({'baseline': (t1 - t0) * 1000, 'ms': (t2 - t1) * 1000, "
        "'app': app}))",
    ])
    out = subprocess.run([sys.executable, "-c", code], check=True,  # noqa: S603
                         capture_output=True, text=True, cwd=ROOT, env=_child_env(),
                         timeout=120).stdout
    data: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return data


def import_table(samples: int) -> Table:
    table = Table("imports", "4a. Cold start: import cost beyond boto3 + Powertools Logger, ms",
                  ["What is imported", "Median", "Min", "Max", "Samples", "Target", "Result"])
    results: dict[str, list[dict[str, float]]] = {v.key: [] for v in VARIANTS}
    errors: dict[str, str] = {}
    for round_ in range(samples + 1):  # round 0 warms up and is not counted
        for variant in VARIANTS:
            if variant.key in errors:
                continue
            try:
                sample = _sample(variant)
            except (subprocess.SubprocessError, OSError, ValueError) as exc:
                stderr = getattr(exc, "stderr", "") or ""
                errors[variant.key] = f"{type(exc).__name__}: {str(stderr).strip()[-300:]}"
                continue
            if round_:
                results[variant.key].append(sample)
    baseline = [s["baseline"] for samples_ in results.values() for s in samples_]
    data: dict[str, Any] = {}
    if baseline:
        table.add("baseline itself: `import boto3` + Powertools `Logger`",
                  round(median(baseline), 1), round(min(baseline), 1), round(max(baseline), 1),
                  len(baseline), "—", "—")
        data["baseline_ms"] = {"median": median(baseline), "samples": len(baseline)}
    for variant in VARIANTS:
        values = [s["ms"] for s in results[variant.key]]
        if not values:
            table.add(variant.label, "—", "—", "—", 0,
                      "—" if variant.target_ms is None else f"< {variant.target_ms:.0f}", "MISS")
            table.notes.append(f"{variant.key}: {errors.get(variant.key, 'no sample')}")
            continue
        mid = median(values)
        target = "—" if variant.target_ms is None else f"< {variant.target_ms:.0f}"
        result = "—" if variant.target_ms is None else verdict(mid < variant.target_ms)
        table.add(variant.label, round(mid, 1), round(min(values), 1), round(max(values), 1),
                  len(values), target, result)
        data[variant.key] = {"median_ms": mid, "min_ms": min(values), "max_ms": max(values),
                             "samples": len(values), "target_ms": variant.target_ms}
        if variant.build_app:
            app = [s["app"] for s in results[variant.key]]
            table.add("first `handler.get_app()` (settings, boto3 client, registry)",
                      round(median(app), 1), round(min(app), 1), round(max(app), 1), len(app),
                      "—", "—")
            data["get_app"] = {"median_ms": median(app), "samples": len(app)}
    table.notes += [
        "Each sample is a new Python process; the figure is the time of the statement after "
        "the baseline imports are done (what the framework adds to a Lambda init).",
        "The driver rows are what the first rotation of an engine adds: the adapter is imported "
        "on first use, never by `rotation.handler` or `rotation.dispatcher`.",
    ]
    table.data = data
    return table


def _template_memory_mb() -> int:
    """The template's default MemorySize (256 MB when the template cannot be read)."""
    try:
        text = (ROOT / "template.yaml").read_text()
    except OSError:
        return 256
    match = re.search(r"^  MemorySize:\n(?:    .*\n)*?    Default: (\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else 256


def _run_probe(mode: str, stdin: str = "", **env: str) -> dict[str, Any]:
    """Run the probe as a grandchild, through a small shell that forks it (no ``exec``).

    Linux keeps a process's ``ru_maxrss`` across ``execve``, and a child forked (or vforked)
    from this benchmark starts with the benchmark's whole resident set (moto, the sandbox...):
    measured directly, the probe would report *our* peak. Forked from ``sh`` it starts small.
    """
    shell = shutil.which("sh") or "/bin/sh"
    cmd = [shell, "-c", '"$@"; exit $?', "sh", sys.executable, "-m", "benchmarks.probe", mode]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True,  # noqa: S603
                          cwd=ROOT, env=_child_env(**env), timeout=180, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            data: dict[str, Any] = json.loads(line[len(MARKER):])
            return data
    raise RuntimeError(f"probe {mode} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")


def rss_table(harness: Harness | None, engines: list[str],
              unavailable: dict[str, str] | None = None) -> Table:
    memory = _template_memory_mb()
    table = Table(
        "rss", "4b. Peak RSS of a fresh process (ru_maxrss)",
        ["Process", "Peak RSS", "API calls", "Logins", "Steps, ms (create/set/test/finish)",
         "Limit", "Result"])
    data: dict[str, Any] = {"memory_size_mb": memory}
    try:
        base = _run_probe("baseline")
        rss = base["maxrss_kb"] / 1024
        table.add("python + boto3 + Powertools Logger (baseline)", f"{rss:.1f} MiB", "—", "—",
                  "—", f"{memory} MiB", verdict(rss < memory))
        data["baseline_kb"] = base["maxrss_kb"]
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        table.add("baseline", "failed", "—", "—", "—", f"{memory} MiB", "MISS")
        table.notes.append(f"baseline probe: {exc}")
    for engine, why in (unavailable or {}).items():
        table.add(f"one warm rotation, {engine} single-user", "not run", "—", "—", "—",
                  f"{memory} MiB", "MISS")
        table.notes.append(f"{engine}: {why}")
    if harness is None:
        table.notes.append("no database server: the rotation probes did not run")
        table.data = data
        return table
    from rotation.tools.local import new_rotation_token

    with SecretsManagerEndpoint(harness.sm) as endpoint:
        for engine in engines:
            label = f"one warm rotation, {engine} single-user"
            try:
                target = harness.new_target(engine, "single-user")
                token = str(uuid.uuid4())
                harness.service.stage_pending(target.arn, token)
                endpoint.reset_counts()
                mark = target.server.log_position()
                fields = {"SecretId": target.arn, "ClientRequestToken": token,
                          "RotationToken": new_rotation_token()}
                result = _run_probe("rotation", json.dumps(fields),
                                    SECRETS_MANAGER_ENDPOINT=endpoint.url,
                                    ROTATION_CA_BUNDLE=harness.ca_file,
                                    ROTATION_STRATEGY="single-user")
                logins = target.server.login_counts(since=mark)
                calls = sum(endpoint.calls.values())
                ok = (len(result["steps"]) == 4
                      and all(s["error"] is None for s in result["steps"]))
                if ok:
                    harness.service.unstage_pending(target.arn, token)
            except Exception as exc:  # report, keep going
                table.add(label, "failed", "—", "—", "—", f"{memory} MiB", "MISS")
                table.notes.append(f"{engine} probe: {type(exc).__name__}: {exc}")
                continue
            rss = result["maxrss_kb"] / 1024
            steps = " / ".join(f"{s['ms']:.0f}" for s in result["steps"])
            table.add(label, f"{rss:.1f} MiB", calls, f"{logins.succeeded} ({logins.failed} "
                      "failed)", steps, f"{memory} MiB",
                      verdict(ok and rss < memory))
            if not ok:
                failed = next(s for s in result["steps"] if s["error"])
                table.notes.append(f"{engine} probe: {failed['step']}: {failed['error']}")
            data[engine] = {"maxrss_kb": result["maxrss_kb"], "calls": dict(endpoint.calls),
                            "logins": logins.succeeded, "failed_logins": logins.failed,
                            "steps": result["steps"], "modules": result["modules"], "ok": ok}
    table.notes += [
        f"Limit: the template's default MemorySize ({memory} MB). The rotation runs in one fresh "
        "process (imports, app build, driver import, TLS logins, the four steps); Secrets "
        "Manager is an HTTP endpoint served by this benchmark, so the process holds only the "
        "function's code, boto3, Powertools and the engine's driver (no moto).",
        "API calls: as seen by that endpoint (a cross-check of section 1 across a real process "
        "boundary). Steps: each invocation's time in that process, Secrets Manager calls going "
        "over local HTTP; createSecret includes the imports it triggers (Powertools Metrics, the "
        "driver) and building the app.",
    ]
    table.data = data
    return table
