#!/usr/bin/env python3
"""The function package's lock file, layers/function/requirements.txt: write it, and read it.

Usage:
  lock.py generate --pyproject PYPROJECT --output LOCK
      Resolve pyproject.toml's [project] dependencies for every Lambda target the build supports
      (python 3.12 and 3.13 on x86_64 and arm64, the platform tags of layers/layer.mk), download
      each resolved wheel with `pip download --no-deps --only-binary=:all:` and write every
      package as `name==version` with the sha256 of each of its wheels (what `pip hash` prints)
      and `# via` lines naming what needs it. `make lock-function` runs this.
  lock.py select --pyproject PYPROJECT --bundle-boto3 {0,1} LOCK
      Print the requirements `build-RotationFunction` installs (pip --require-hashes --no-deps):
      every entry with BUNDLE_BOTO3=1; with 0, without boto3 and whatever only boto3 needs
      (botocore, s3transfer, ...), read from the `# via` lines. Refuses a lock whose top-level
      pins are not pyproject.toml's [project] dependencies (re-lock after changing them).

`select` uses the standard library only, so it runs wherever the Makefile runs; `generate` needs
pip (and `packaging`, or pip's vendored copy) and the package index (pip's own settings apply:
PIP_INDEX_URL for a mirror).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# layers/layer.mk's targets: LAMBDA_PY's allowed values, LAMBDA_PLATFORMS, ARCH (x86_64 | arm64,
# whose wheels are tagged aarch64). tests/packaging/test_function_package.py checks they agree.
PYTHON_VERSIONS = ("3.12", "3.13")
WHEEL_ARCHES = ("x86_64", "aarch64")
PLATFORMS = ("manylinux2014", "manylinux_2_28", "manylinux_2_34")
# BUNDLE_BOTO3=0 leaves these out, and every package that only they need.
SDK = frozenset({"boto3"})
ROOT_VIA = "rotation (pyproject.toml)"
LOCK_NAME = "layers/function/requirements.txt"

HEADER = """\
# The function package's third-party packages (RotationFunction in template.yaml,
# dist/function.zip): pyproject.toml's [project] dependencies and everything they need, each
# pinned to one version and to the sha256 of its wheels. Not a layer: it sits here beside the
# layers' hash-locked lists. build-RotationFunction (Makefile) installs it with
# `pip install --require-hashes --no-deps` for the Lambda target (layers/layer.mk), so the zip
# can only ever hold these exact files. BUNDLE_BOTO3=0 installs it without boto3 and what only
# boto3 needs (read from the `# via` lines). The driver layers do not repeat a package listed
# here: the function provides it (e.g. typing-extensions for psycopg).
# tests/packaging/test_function_package.py checks that, and that the top-level pins are
# pyproject.toml's [project] dependencies.
#
# Generated, do not edit: after changing [project] dependencies, run `make lock-function`
# (layers/function/lock.py generate). For each Lambda target (python {pythons},
# {arches}), `pip install --dry-run --report --only-binary=:all: --platform ...`
# resolves the set, which must come out the same for every target; `pip download --no-deps
# --only-binary=:all:` then fetches each wheel, and each hash is the wheel's sha256 (what
# `pip hash` prints), checked against the index's. Wheels:
{wheels}
"""


@dataclass
class Entry:
    """One locked package: its requirement and hash lines, and what needs it."""

    name: str
    version: str
    lines: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


def canonical(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_dependencies(pyproject: Path) -> list[str]:
    with pyproject.open("rb") as file:
        dependencies: list[str] = tomllib.load(file)["project"]["dependencies"]
    return dependencies


def parse(text: str) -> dict[str, Entry]:
    """The entries of a lock file written by ``generate``, by canonical name."""
    entries: dict[str, Entry] = {}
    current: Entry | None = None
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not raw[0].isspace():
            if line.startswith("#"):
                current, in_via = None, False
                continue
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*\\?", line)
            if not match:
                raise ValueError(f"not an exact pin (name==version): {line!r}")
            current = Entry(canonical(match[1]), match[2], [f"{match[1]}=={match[2]}"])
            entries[current.name] = current
            in_via = False
        elif current is None:
            raise ValueError(f"indented line outside an entry: {line!r}")
        elif line.startswith("--hash="):
            current.lines.append(line)
        elif line.startswith("# via"):
            rest = line.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current.via.add(rest)
        elif line.startswith("#") and in_via:
            current.via.add(line.lstrip("#").strip())
    for entry in entries.values():
        if not any(line.startswith("--hash=sha256:") for line in entry.lines):
            raise ValueError(f"{entry.pin} has no --hash=sha256: line")
        entry.via = {v if v == ROOT_VIA else canonical(v) for v in entry.via}
    return entries


def roots(entries: Mapping[str, Entry]) -> set[str]:
    """The pins the lock says come from pyproject.toml's [project] dependencies."""
    return {entry.pin for entry in entries.values() if ROOT_VIA in entry.via}


def without_sdk(entries: Mapping[str, Entry]) -> dict[str, Entry]:
    """The entries left when the SDK is not bundled: not SDK, and needed by something kept."""
    dropped = set(SDK)
    changed = True
    while changed:
        changed = False
        for name, entry in entries.items():
            if name not in dropped and entry.via and entry.via <= dropped:
                dropped.add(name)
                changed = True
    return {name: entry for name, entry in entries.items() if name not in dropped}


def check_roots(entries: Mapping[str, Entry], pyproject: Path) -> None:
    wanted = {canonical(d.split("==")[0].strip()) + "==" + d.split("==", 1)[1].strip()
              if "==" in d else d for d in project_dependencies(pyproject)}
    locked = roots(entries)
    if wanted != locked:
        raise SystemExit(
            f"lock: {LOCK_NAME} does not lock pyproject.toml's [project] dependencies "
            f"(pyproject: {', '.join(sorted(wanted))}; lock: {', '.join(sorted(locked))}): "
            "run `make lock-function`")


def select(lock: Path, pyproject: Path, bundle_boto3: str) -> str:
    entries = parse(lock.read_text(encoding="utf-8"))
    check_roots(entries, pyproject)
    if bundle_boto3 == "0":
        entries = without_sdk(entries)
    return "".join(" \\\n    ".join(entry.lines) + "\n" for entry in entries.values())


# --- generate --------------------------------------------------------------------------------


def _requirement_class() -> Any:
    """packaging's Requirement: from the installed library, else pip's vendored copy."""
    try:
        module = importlib.import_module("packaging.requirements")
    except ImportError:
        module = importlib.import_module("pip._vendor.packaging.requirements")
    return module.Requirement


def _target_flags(python: str, arch: str) -> list[str]:
    flags = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    for tag in PLATFORMS:
        flags += ["--platform", f"{tag}_{arch}"]
    return flags


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode:
        raise SystemExit(f"lock: {' '.join(command)} failed:\n{proc.stderr.strip()}")


def _marker_environment(python: str, arch: str) -> dict[str, str]:
    return {"python_version": python, "python_full_version": f"{python}.0",
            "implementation_name": "cpython", "implementation_version": f"{python}.0",
            "platform_python_implementation": "CPython", "sys_platform": "linux",
            "os_name": "posix", "platform_system": "Linux", "platform_machine": arch,
            "platform_release": "", "platform_version": "", "extra": ""}


def resolve(dependencies: Iterable[str], python: str, arch: str,
            work: Path) -> dict[str, Any]:
    """pip's resolution for one target: canonical name -> the report's install item."""
    report = work / f"report-{python}-{arch}.json"
    _pip("install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report),
         "--target", str(work / "target"), *_target_flags(python, arch), *dependencies)
    items = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {canonical(item["metadata"]["name"]): item for item in items}


def generate(pyproject: Path, output: Path) -> None:
    requirement_class = _requirement_class()
    dependencies = project_dependencies(pyproject)
    for dependency in dependencies:
        if not re.fullmatch(r"[A-Za-z0-9._-]+==\S+", dependency):
            raise SystemExit(f"lock: pin [project] dependencies exactly (name==version): "
                             f"{dependency!r}")
    with tempfile.TemporaryDirectory(prefix="function-lock-") as scratch:
        work = Path(scratch)
        resolved: dict[tuple[str, str], dict[str, Any]] = {
            (python, arch): resolve(dependencies, python, arch, work)
            for python in PYTHON_VERSIONS for arch in WHEEL_ARCHES}
        pins = {target: {name: item["metadata"]["version"] for name, item in items.items()}
                for target, items in resolved.items()}
        first = next(iter(pins.values()))
        for target, target_pins in pins.items():
            if target_pins != first:
                raise SystemExit(f"lock: the resolution differs between targets ({target}: "
                                 f"{target_pins}; {first}): one lock cannot serve them all")
        hashes: dict[str, set[str]] = {name: set() for name in first}
        needed_by: dict[str, set[str]] = {}
        wheels: set[str] = set()
        for (python, arch), items in resolved.items():
            directory = work / f"wheels-{python}-{arch}"
            _pip("download", "--quiet", "--no-deps", "--dest", str(directory),
                 *_target_flags(python, arch), *(f"{n}=={v}" for n, v in first.items()))
            downloaded = {canonical(p.name.split("-")[0]): p for p in directory.glob("*.whl")}
            if set(downloaded) != set(first):
                raise SystemExit(f"lock: pip download gave {sorted(downloaded)}, "
                                 f"expected {sorted(first)}")
            for name, wheel in downloaded.items():
                digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
                info = items[name]["download_info"]
                index_hash = info.get("archive_info", {}).get("hashes", {}).get("sha256")
                if index_hash and index_hash != digest:
                    raise SystemExit(f"lock: {wheel.name}: sha256 {digest}, the index says "
                                     f"{index_hash}")
                hashes[name].add(digest)
                wheels.add(wheel.name)
            # what needs what, for this target's markers
            environment = _marker_environment(python, arch)
            for parent, item in items.items():
                for text in item["metadata"].get("requires_dist") or []:
                    requirement = requirement_class(text)
                    child = canonical(requirement.name)
                    if child in first and (requirement.marker is None
                                           or requirement.marker.evaluate(environment)):
                        needed_by.setdefault(child, set()).add(parent)
        requested = {canonical(d.split("==")[0]) for d in dependencies}
        blocks = []
        for name in sorted(first):
            via = sorted(needed_by.get(name, set()))
            if name in requested:
                via = [ROOT_VIA, *via]
            lines = [f"{name}=={first[name]}",
                     *(f"    --hash=sha256:{digest}" for digest in sorted(hashes[name]))]
            block = " \\\n".join(lines) + "\n"
            if len(via) == 1:
                block += f"    # via {via[0]}\n"
            else:
                block += "    # via\n" + "".join(f"    #   {v}\n" for v in via)
            blocks.append(block)
    header = HEADER.format(pythons=" and ".join(PYTHON_VERSIONS),
                           arches=" and ".join(WHEEL_ARCHES),
                           wheels="\n".join(f"#   {wheel}" for wheel in sorted(wheels)))
    output.write_text(header + "\n" + "".join(blocks), encoding="utf-8")
    entries = parse(output.read_text(encoding="utf-8"))
    check_roots(entries, pyproject)
    print(f"{output}: {len(entries)} packages locked "
          f"({len(without_sdk(entries))} with BUNDLE_BOTO3=0)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lock.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="resolve, download, hash, write the lock")
    gen.add_argument("--pyproject", type=Path, required=True)
    gen.add_argument("--output", type=Path, required=True)
    sel = commands.add_parser("select", help="print the requirements the build installs")
    sel.add_argument("--pyproject", type=Path, required=True)
    sel.add_argument("--bundle-boto3", choices=("0", "1"), required=True)
    sel.add_argument("lock", type=Path)
    args = parser.parse_args(argv)
    if args.command == "generate":
        generate(args.pyproject, args.output)
    else:
        try:
            sys.stdout.write(select(args.lock, args.pyproject, args.bundle_boto3))
        except ValueError as error:
            raise SystemExit(f"lock: {args.lock}: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
