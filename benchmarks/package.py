"""Section 5: package sizes. ``make package`` runs first when dist/ is missing or older than its
inputs; when packaging fails, the table says why instead of the benchmark crashing."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

from benchmarks.tables import Table, mb, verdict

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
# AWS Lambda quotas: a zip uploaded directly, and function + layers once unzipped.
ZIPPED_LIMIT = 50 * 1024 * 1024
UNZIPPED_LIMIT = 250 * 1024 * 1024
INPUTS = ("rotation", "layers", "pyproject.toml", "Makefile", "scripts/build_zip.py")


def artifacts(arch: str, py: str) -> dict[str, Path]:
    """What ``make package`` builds for ``ARCH``/``PY`` (layers/layer.mk's defaults)."""
    return {"function": DIST / "function.zip",
            "postgres layer": DIST / f"layer-postgres-{arch}-{py}.zip",
            "mysql layer": DIST / f"layer-mysql-{arch}-{py}.zip",
            "redis layer": DIST / f"layer-redis-{arch}-{py}.zip"}


def _newest_input() -> tuple[float, str]:
    newest, name = 0.0, ""
    for entry in INPUTS:
        path = ROOT / entry
        files = [path] if path.is_file() else [
            p for p in path.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")]
        for file in files:
            mtime = file.stat().st_mtime
            if mtime > newest:
                newest, name = mtime, str(file.relative_to(ROOT))
    return newest, name


def stale_reason(paths: dict[str, Path]) -> str:
    """Why dist/ must be rebuilt, or "" when it is up to date."""
    missing = [str(p.relative_to(ROOT)) for p in paths.values() if not p.is_file()]
    if missing:
        return "missing: " + ", ".join(missing)
    oldest = min(p.stat().st_mtime for p in paths.values())
    newest, name = _newest_input()
    if newest > oldest:
        return f"{name} is newer than the packages"
    return ""


def build(timeout: float = 900.0) -> tuple[bool, str, float]:
    """``make package``: (succeeded, the output's tail, seconds)."""
    make = shutil.which("make")
    if make is None:
        return False, "`make` is not on PATH", 0.0
    started = time.monotonic()
    try:
        proc = subprocess.run([make, "--no-print-directory", "package"],  # noqa: S603
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              check=False, env=dict(os.environ))
    except subprocess.TimeoutExpired:
        return False, f"`make package` did not finish within {timeout:.0f}s", timeout
    seconds = time.monotonic() - started
    output = (proc.stdout + proc.stderr).strip().splitlines()
    tail = " / ".join(output[-4:]) or "no output"
    if proc.returncode != 0:
        tail = f"exit {proc.returncode}: {tail}"
    return proc.returncode == 0, tail, seconds


def _unzipped(path: Path) -> tuple[int, int]:
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        return sum(i.file_size for i in infos), len(infos)


def package_table() -> Table:
    arch = os.environ.get("ARCH", "x86_64")
    py = os.environ.get("PY", "3.12")
    paths = artifacts(arch, py)
    table = Table("package", f"5. Package sizes (dist/, ARCH={arch}, PY={py})",
                  ["Artifact", "Zipped", "Unzipped", "Files", "Limit", "Result"])
    data: dict[str, Any] = {"arch": arch, "py": py}
    reason = stale_reason(paths)
    if reason:
        ok, tail, seconds = build()
        data["build"] = {"reason": reason, "ok": ok, "seconds": round(seconds, 1),
                         "output": tail}
        table.notes.append(f"`make package` ran ({reason}): "
                           + (f"done in {seconds:.0f} s" if ok else f"FAILED: {tail}"))
    else:
        table.notes.append("dist/ was up to date with its inputs: `make package` not re-run")
    sizes: dict[str, tuple[int, int, int]] = {}
    for name, path in paths.items():
        rel = str(path.relative_to(ROOT))
        if not path.is_file():
            table.add(f"{name} ({rel})", "missing", "—", "—", mb(ZIPPED_LIMIT), "MISS")
            continue
        try:
            unzipped, files = _unzipped(path)
        except (OSError, zipfile.BadZipFile) as exc:
            table.add(f"{name} ({rel})", "unreadable", "—", "—", mb(ZIPPED_LIMIT), "MISS")
            table.notes.append(f"{rel}: {exc}")
            continue
        zipped = path.stat().st_size
        sizes[name] = (zipped, unzipped, files)
        table.add(f"{name} ({rel})", mb(zipped), mb(unzipped), files,
                  f"{mb(ZIPPED_LIMIT)} zipped", verdict(zipped <= ZIPPED_LIMIT))
        data[name] = {"path": rel, "zipped_bytes": zipped, "unzipped_bytes": unzipped,
                      "files": files}
    for layer in ("postgres layer", "mysql layer"):
        if "function" in sizes and layer in sizes:
            total = sizes["function"][1] + sizes[layer][1]
            table.add(f"function + {layer}, unzipped", "—", mb(total), "—",
                      f"{mb(UNZIPPED_LIMIT)} unzipped", verdict(total <= UNZIPPED_LIMIT))
            data[f"function+{layer}"] = {"unzipped_bytes": total}
    table.notes.append(
        "Limits are AWS Lambda's quotas (50 MB for a zip uploaded directly, 250 MB for the "
        "function and its layers unzipped); function.zip bundles the pinned boto3/botocore "
        "(`make package BUNDLE_BOTO3=0` relies on the runtime's SDK instead).")
    table.data = data
    return table
