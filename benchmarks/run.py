"""`make bench`: what a rotation costs, on the local stack. Prints one table per section and
writes them to a dated Markdown file, with a JSON file of the same figures beside it.

    python -m benchmarks.run [--quick] [--aws-samples DIR] [--output benchmarks/results-DATE.md]

Sections: 1. Secrets Manager calls and 2. database logins per rotation (engine x strategy, warm and
cold), 3. latency per step, 4. cold start (imports, peak RSS), 5. package sizes, 6. throughput of
one container rotating many secrets, 7. one rotation in a new container (production's case) and
8. in a whole new process, each beside AWS's sample single-user function when --aws-samples is
given. Secrets Manager is moto in-process; PostgreSQL and MariaDB are throwaway TLS servers from
``rotation.tools.sandbox``. A MISS is reported, never raised: the exit code is 0 unless the
benchmark itself could not run.

AWS's samples are not part of this repository: pass your own checkout of
github.com/aws-samples/aws-secrets-manager-rotation-lambdas (--aws-samples DIR, or env
AWS_SAMPLES_DIR). Its PostgreSQL sample needs PyGreSQL, which this project does not install:
`.venv/bin/pip install PyGreSQL` (it compiles against libpq: Debian `libpq-dev`, Amazon Linux
`libpq-devel`). Without it, the MariaDB sample still runs (PyMySQL).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import client as client_bench
from benchmarks import coldstart, newcontainer, package, rotations, throughput
from benchmarks import samples as aws_samples
from benchmarks.harness import ENGINES, STRATEGIES, Harness, quiet_logs
from benchmarks.tables import Table, verdict

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("rotations", "coldstart", "package", "throughput", "newcontainer", "client")


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _servers(engines: list[str]) -> Iterator[tuple[Harness | None, dict[str, str], Any]]:
    """Throwaway servers and the moto stack; an engine that cannot start is reported, not
    raised."""
    from rotation import handler
    from rotation.tools.local import local_stack
    from rotation.tools.sandbox import Sandbox, SandboxError

    unavailable: dict[str, str] = {}
    with Sandbox() as sandbox, local_stack() as sm, quiet_logs():
        servers = {}
        for engine in engines:
            try:
                servers[engine] = {"postgres": sandbox.postgres, "mariadb": sandbox.mariadb,
                                   "redis": sandbox.redis}[engine]()
                _log(f"{engine} sandbox server up in {servers[engine].startup_seconds:.1f} s")
            except SandboxError as exc:
                unavailable[engine] = f"server did not start: {str(exc).splitlines()[0]}"
                _log(f"{engine}: {unavailable[engine]}")
        ca_file = next(iter(servers.values())).ca_file if servers else ""
        harness = Harness(sm, servers, ca_file) if servers else None
        try:
            yield harness, unavailable, servers
        finally:
            handler.reset()


def _server_versions(servers: dict[str, Any]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for engine, server in servers.items():
        try:
            if engine == "redis":
                versions[engine] = str(server.version)  # from redis-server --version
            elif engine == "postgres":
                with server.admin_connect() as conn:
                    versions[engine] = str(conn.execute("SHOW server_version").fetchone()[0])
            else:
                conn = server.admin_connect()
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT VERSION()")
                        versions[engine] = str(cur.fetchone()[0])
                finally:
                    conn.close()
        except Exception as exc:  # informational only
            versions[engine] = f"unknown ({type(exc).__name__})"
    return versions


def _environment() -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
                             cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
                               cwd=ROOT, capture_output=True, text=True, timeout=10,
                               check=False)
        if out.returncode == 0:
            commit = out.stdout.strip() + (" (with uncommitted changes)"
                                           if dirty.stdout.strip() else "")
    return {
        "commit": commit,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": {name: version(name) for name in (
            "boto3", "aws-lambda-powertools", "psycopg", "psycopg-binary", "PyMySQL", "moto",
            "PyGreSQL")},
        "load_average": _load(),
    }


def _load() -> str:
    """The machine's 1/5/15-minute load averages: these timings share the machine."""
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _summary(tables: dict[str, Table]) -> Table:
    """Every target, one line per figure, with its verdict."""
    summary = Table("summary", "Targets at a glance",
                    ["Section", "Figure", "Measured", "Target", "Result"])

    calls = tables.get("calls")
    if calls is not None and isinstance(calls.data, list):
        for mode in ("warm", "cold"):
            for strategy in STRATEGIES:
                rows = [d for d in calls.data if d.get("mode") == mode
                        and d.get("strategy") == strategy]
                broken = [d for d in calls.data if d.get("strategy") == strategy
                          and "error" in d]
                if not rows:
                    continue
                low = min(d["calls_min"] for d in rows)
                high = max(d["calls_max"] for d in rows)
                target = rotations.CALL_TARGETS[mode]
                summary.add("1", f"Secrets Manager calls, {mode}, {strategy}",
                            str(low) if low == high else f"{low}-{high}", f"≤ {target}",
                            verdict(high <= target and not broken))
    logins = tables.get("logins")
    if logins is not None and isinstance(logins.data, list):
        for strategy in STRATEGIES:
            rows = [d for d in logins.data if d.get("strategy") == strategy]
            if not rows:
                continue
            if any("error" in d for d in rows):
                summary.add("2", f"DB logins / failed, {strategy}", "not run", "2 / 0", "MISS")
                continue
            high = max(d["logins_max"] for d in rows)
            low = min(d["logins_min"] for d in rows)
            failed = max(d["failed_max"] for d in rows)
            figure = (str(low) if low == high else f"{low}-{high}") + f" / {failed}"
            summary.add("2", f"DB logins / failed, {strategy}", figure, "2 / 0",
                        verdict(high <= rotations.LOGIN_TARGET and failed == 0))
    imports = tables.get("imports")
    if imports is not None and isinstance(imports.data, dict):
        framework = imports.data.get("framework")
        if framework:
            summary.add("4", "framework import beyond boto3 + Powertools (median)",
                        f"{framework['median_ms']:.1f} ms", "< 50 ms",
                        verdict(framework["median_ms"] < coldstart.IMPORT_TARGET_MS))
        else:
            summary.add("4", "framework import beyond boto3 + Powertools", "not measured",
                        "< 50 ms", "MISS")
    for key, section in (("rss", "4"), ("package", "5")):
        table = tables.get(key)
        if table is not None:
            marks = table.verdicts()
            summary.add(section, table.title.split(". ", 1)[-1],
                        f"{marks.count('PASS')} of {len(marks)} within limits", "all",
                        verdict(bool(marks) and "MISS" not in marks))
    flow = tables.get("throughput")
    if flow is not None and isinstance(flow.data, dict) and "flat" in flow.data:
        last = flow.data["last_quarter"]
        summary.add("6", "cost per rotation flat over the run (calls, logins)",
                    f"{last['calls_per_rotation']:.2f} calls, "
                    f"{last['logins_per_rotation']:.2f} logins (last quarter)",
                    "same as first quarter", verdict(flow.data["flat"]))
    elif flow is not None:
        summary.add("6", "throughput", "not run", "—", "MISS")
    first = tables.get("newcontainer")
    if first is not None and isinstance(first.data, dict):
        for engine, entry in first.data.get("engines", {}).items():
            figure = "ours / AWS sample, new container, init + steps (median)"
            if "ratio" in entry:
                ours = entry["ours"]["init_plus_steps_ms"]["median"]
                theirs = entry["sample"]["init_plus_steps_ms"]["median"]
                summary.add("7", f"{figure}, {engine}",
                            f"{entry['ratio']:.2f} ({ours:.1f} / {theirs:.1f} ms)",
                            f"≤ {newcontainer.RATIO_TARGET}", verdict(bool(entry.get("pass"))))
            elif "reference_ms" in entry and "ours" in entry:
                ours = entry["ours"]["init_plus_steps_ms"]["median"]
                ref = entry["reference_ms"]
                summary.add("7", f"{figure}, {engine}",
                            f"sample not run; {ours:.1f} ms vs reference {ref['low']:.0f} to "
                            f"{ref['high']:.0f} ms", f"≤ {newcontainer.RATIO_TARGET}",
                            "not measured")
            elif engine not in aws_samples.SAMPLE_DIRS and "ours" in entry:
                ours = entry["ours"]["init_plus_steps_ms"]["median"]
                summary.add("7", f"{figure}, {engine}",
                            f"{ours:.1f} ms (AWS has no sample to compare with)", "—", "—")
            else:
                summary.add("7", f"{figure}, {engine}", "not run",
                            f"≤ {newcontainer.RATIO_TARGET}", "MISS")
    client = tables.get("client")
    if client is not None and isinstance(client.data, list):
        rates = [row for row in client.data if "overhead" in row]
        if rates:
            worst = max(rates, key=lambda row: float(row["overhead"]))
            summary.add("9", "rotation.client overhead vs a plain driver connect (worst engine)",
                        f"{float(worst['overhead']) * 100:+.1f}% ({worst['engine']})", "≤ 5%",
                        verdict(all(float(r["overhead"]) <= client_bench.OVERHEAD_TARGET
                                    for r in rates)))
    cold = tables.get("coldprocess")
    if cold is not None and isinstance(cold.data, dict):
        for engine, entry in cold.data.get("engines", {}).items():
            ours = entry.get("ours", {}).get("to_end_of_finish_ms")
            theirs = entry.get("sample", {}).get("to_end_of_finish_ms")
            if ours is None:
                continue
            measured = f"{ours['median']:.0f} ms" + (
                f" vs {theirs['median']:.0f} ms (ratio {entry['ratio']:.2f})" if theirs
                else " (sample not run)")
            summary.add("8", f"full cold process, spawn to end of finishSecret (median), "
                        f"ours vs AWS sample, {engine}", measured, "— (reported)", "—")
    return summary


def _default_output(quick: bool) -> Path:
    """benchmarks/results-DATE.md; a quick run never overwrites a full run's file."""
    suffix = "-quick" if quick else ""
    return ROOT / "benchmarks" / f"results-{dt.date.today().isoformat()}{suffix}.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer samples (5 rotations, 5 processes, 40 secrets)")
    parser.add_argument("--output", type=Path, default=None,
                        help="Markdown file to write (default: benchmarks/results-DATE.md, "
                             "results-DATE-quick.md with --quick); the JSON goes beside it "
                             "with a .json suffix")
    parser.add_argument("--rotations", type=int, default=None,
                        help="timed rotations per engine x strategy x mode (default 40; "
                             "quick 5)")
    parser.add_argument("--samples", type=int, default=None,
                        help="fresh processes per import measurement (default 21; quick 5)")
    parser.add_argument("--scale", type=int, default=None,
                        help="secrets in the throughput run (default 200; quick 40)")
    parser.add_argument("--aws-samples", metavar="DIR", default=None,
                        help="your checkout of github.com/aws-samples/aws-secrets-manager-"
                             "rotation-lambdas, to run its single-user MariaDB and PostgreSQL "
                             "functions beside this one in sections 7-8 (default: env "
                             f"{aws_samples.ENV_VAR}; none: the samples are not run and the "
                             "issue's reference figures are shown, labelled as such). Its "
                             "PostgreSQL sample needs PyGreSQL: `.venv/bin/pip install PyGreSQL` "
                             "(compiles against libpq: Debian libpq-dev); this project does "
                             "not install it")
    parser.add_argument("--container-rotations", type=int, default=None,
                        help="section 7: rotations per engine and function in a new container "
                             "(default 20; quick 5)")
    parser.add_argument("--cold-processes", type=int, default=None,
                        help="section 8: fresh processes per engine and function (default 7; "
                             "quick 3)")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="comma-separated engines (default: postgres,mariadb,redis)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    rotations_n = args.rotations or (5 if args.quick else 40)
    samples = args.samples or (5 if args.quick else 21)
    scale = args.scale or (40 if args.quick else 200)
    container_n = args.container_rotations or (5 if args.quick else 20)
    processes = args.cold_processes or (3 if args.quick else 7)
    engines = [e for e in args.engines.split(",") if e]
    if not engines or set(engines) - set(ENGINES):
        parser.error(f"--engines: choose from {', '.join(ENGINES)}")
    only = {s for s in args.only.split(",") if s}
    samples_dir = aws_samples.samples_dir(args.aws_samples)
    sources, sample_errors = (aws_samples.find_sources(samples_dir, engines) if samples_dir
                              else ({}, {}))
    output: Path = (args.output or _default_output(args.quick)).resolve()

    started = time.monotonic()
    tables: dict[str, Table] = {}
    environment = _environment()

    def show(table: Table) -> None:
        tables[table.key] = table
        print(table.markdown(), flush=True)

    if only & {"rotations", "coldstart", "newcontainer", "client"}:
        with _servers(engines) as (harness, unavailable, servers):
            environment["servers"] = _server_versions(servers)
            if "rotations" in only:
                _log(f"sections 1-3: {rotations_n} warm + {rotations_n} cold rotations per "
                     "engine x strategy")
                runs = rotations.run_configs(harness, rotations_n, engines, unavailable)
                show(rotations.calls_table(runs))
                show(rotations.logins_table(runs))
                show(rotations.latency_table(runs))
                tables["latency"].data = {"configs": tables["latency"].data,
                                          "counted_rotations": rotations.counts_summary(runs)}
            if "coldstart" in only:
                _log("section 4b: peak RSS of a fresh process doing one rotation")
                show(coldstart.rss_table(harness, [e for e in engines if e not in unavailable],
                                         unavailable))
            if "newcontainer" in only:
                with_samples = (f"beside AWS's samples from {samples_dir}" if samples_dir
                                else "(AWS's samples not run: no --aws-samples)")
                _log(f"section 7: {container_n} rotations per engine in a new container "
                     f"{with_samples}")
                for engine, problem in sample_errors.items():
                    _log(f"{engine} sample: {problem}")
                first = newcontainer.run_new_container(harness, engines, container_n, sources,
                                                       sample_errors, unavailable)
                show(newcontainer.new_container_table(first, samples_dir))
                _log(f"section 8: {processes} fresh processes per engine and function")
                show(newcontainer.cold_process_table(harness, engines, processes, sources,
                                                     sample_errors, unavailable))
            if "client" in only:
                _log("section 9: connections per second through rotation.client")
                show(client_bench.client_table(harness, engines, unavailable,
                                               rounds=4 if args.quick else 10,
                                               per_round=15 if args.quick else 30))
    if "coldstart" in only:
        _log(f"section 4a: import cost, {samples} fresh processes per variant")
        show(coldstart.import_table(samples))
    if "package" in only:
        _log("section 5: package sizes")
        show(package.package_table())
    if "throughput" in only:
        _log(f"section 6: throughput, {scale} secrets")
        show(throughput.throughput_table(scale))

    elapsed = time.monotonic() - started
    tables = {key: tables[key] for key in sorted(tables, key=_order)}  # 4a before 4b
    summary = _summary(tables)
    print(summary.markdown(), flush=True)
    command = " ".join(["python -m benchmarks.run", *_options(
        sys.argv[1:] if argv is None else argv)])
    _write(output, tables, summary, environment, elapsed, command, args.quick,
           {"rotations": rotations_n, "samples": samples, "scale": scale,
            "container_rotations": container_n, "cold_processes": processes},
           samples_dir)
    print(f"Bench finished in {elapsed:.0f} s; wrote {_rel(output)} and "
          f"{_rel(output.with_suffix('.json'))}", flush=True)
    return 0


def _options(argv: list[str]) -> list[str]:
    """The command line's options that shape the figures (not where they are written)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--output":
            skip = True
        elif not arg.startswith("--output="):
            kept.append(shlex.quote(arg))
    return kept


_ORDER = ("calls", "logins", "latency", "imports", "rss", "package", "throughput",
          "newcontainer", "coldprocess", "client")


def _order(key: str) -> int:
    return _ORDER.index(key) if key in _ORDER else len(_ORDER)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _write(output: Path, tables: dict[str, Table], summary: Table, environment: dict[str, Any],
           elapsed: float, command: str, quick: bool, sizes: dict[str, int],
           samples_dir: Path | None) -> None:
    today = dt.date.today().isoformat()
    packages = ", ".join(f"{k} {v}" for k, v in environment["packages"].items())
    servers = ", ".join(f"{k} {v}" for k, v in environment.get("servers", {}).items())
    header = [
        f"# Rotation benchmark, {today}",
        "",
        f"- Command: `{command}` (`make bench` runs it without `--quick`)",
        f"- Samples: {sizes['rotations']} timed rotations per engine x strategy x mode, "
        f"{sizes['samples']} processes per import figure, {sizes['scale']} secrets for "
        f"throughput, {sizes['container_rotations']} new-container rotations per engine and "
        f"function, {sizes['cold_processes']} fresh processes per engine and function",
        f"- Commit: {environment['commit']}",
        f"- Machine: {environment['platform']}, {environment['cpus']} CPUs, "
        f"Python {environment['python']}",
        f"- Packages: {packages}",
        *([f"- Servers (throwaway, TLS): {servers}"] if servers else []),
        "- Secrets Manager: moto in-process (`rotation.tools.local.local_stack`)",
        "- AWS's sample functions (sections 7-8): "
        + (f"from `{samples_dir}` (the user's checkout; not part of this repository)"
           if samples_dir else "not run (no `--aws-samples DIR`); reference figures only"),
        f"- Load average (1 / 5 / 15 min) at start: {environment['load_average']}, at end: "
        f"{_load()} (the machine is shared: {environment['cpus']} CPUs)",
        f"- Run time: {elapsed:.0f} s",
        "",
    ]
    body = [summary.markdown(), *(t.markdown() for t in tables.values())]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(header) + "\n" + "\n".join(body))
    document = {
        "date": today, "command": command, "quick": quick, "sizes": sizes,
        "environment": environment, "run_time_s": round(elapsed, 1),
        "summary": summary.to_json(),
        "sections": {key: table.to_json() for key, table in tables.items()},
    }
    output.with_suffix(".json").write_text(json.dumps(document, indent=2, default=str) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
