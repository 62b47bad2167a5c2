"""The function package is the runtime and its locked dependencies, nothing else, and nothing in
it ships again in a layer.

`make package` (in a temporary DIST, with BUNDLE_BOTO3=1 and 0) builds the function zip and every
layer. The function zip holds rotation/ without rotation/tools (the laptop tooling), no caches,
the handler shim lambda_function.py (AWS's sample handler name) at its root, and exactly the
packages of layers/function/requirements.txt (the lock: every package pinned and
hash-checked, installed with --no-deps); BUNDLE_BOTO3=0 leaves out boto3 and what only it needs.
Function and each driver layer together satisfy every requirement of every package they hold, and
no top-level package, module or distribution is in both. The lock's top-level pins are
pyproject.toml's [project] dependencies. Each build prints its sizes (`pytest -s` or `-rP`)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import trustme
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

TARGET_PY = "3.12"
ARCH = "x86_64"
LOCK = ROOT / "layers" / "function" / "requirements.txt"
LOCK_PY = ROOT / "layers" / "function" / "lock.py"
PYPROJECT = ROOT / "pyproject.toml"
RUNTIME = ROOT / "rotation"
TOOLS = RUNTIME / "tools"
# AWS's sample handler name lambda_function.lambda_handler, copied to the zip's root
SHIM = ROOT / "layers" / "function" / "lambda_function.py"
DRIVER_LAYERS = ("postgres", "mysql", "redis")
# Requirement markers as the Lambda target evaluates them (python3.12, x86_64 Linux)
TARGET_ENVIRONMENT = {"python_version": TARGET_PY, "python_full_version": f"{TARGET_PY}.0",
                      "implementation_name": "cpython", "platform_system": "Linux",
                      "platform_python_implementation": "CPython", "sys_platform": "linux",
                      "os_name": "posix", "platform_machine": ARCH, "extra": ""}


def _lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("function_lock", LOCK_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


lock = _lock_module()


def locked(bundle_boto3: str) -> dict[str, str]:
    """What the build installs from the lock: canonical name -> version."""
    entries = lock.parse(LOCK.read_text(encoding="utf-8"))
    if bundle_boto3 == "0":
        entries = lock.without_sdk(entries)
    return {name: entry.version for name, entry in entries.items()}


@dataclass(frozen=True)
class Package:
    bundle_boto3: str
    function: Path
    layers: dict[str, Path]


@pytest.fixture(scope="module", params=["1", "0"], ids=["BUNDLE_BOTO3=1", "BUNDLE_BOTO3=0"])
def package(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Package:
    # GIVEN `make package` for python3.12 / x86_64 in a temporary DIST (the RDS CA part from a
    # local CA file: no download)
    work = tmp_path_factory.mktemp(f"package-boto3-{request.param}")
    ca = work / "ca.pem"
    ca.write_bytes(trustme.CA().cert_pem.bytes())
    dist = work / "dist"
    proc = subprocess.run(
        ["make", "--no-print-directory", "package", f"ARCH={ARCH}", f"PY={TARGET_PY}",
         f"DIST={dist}", f"BUNDLE_BOTO3={request.param}", f"RDS_CA_BUNDLE_FILE={ca}",
         f"RDS_CA_BUNDLE_SHA256={hashlib.sha256(ca.read_bytes()).hexdigest()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    layers = {name: dist / f"layer-{name}-{ARCH}-{TARGET_PY}.zip" for name in DRIVER_LAYERS}
    layers["rds-ca"] = dist / "layer-rds-ca.zip"
    return Package(request.param, dist / "function.zip", layers)


def top_level(name: str, prefix: str = "") -> str:
    return name.removeprefix(prefix).split("/")[0]


def distributions(names: list[str], prefix: str = "") -> dict[str, str]:
    """The distributions a zip holds (from its *.dist-info folders): canonical name -> version."""
    found = {}
    for name in names:
        folder = top_level(name, prefix)
        match = re.fullmatch(r"(.+)-([^-]+)\.dist-info", folder)
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


def runtime_files() -> set[str]:
    """rotation/ as the function zip must hold it: no tools, no application client, no
    caches."""
    return {p.relative_to(ROOT).as_posix() for p in RUNTIME.rglob("*")
            if p.is_file() and TOOLS not in p.parents and p != RUNTIME / "client.py"
            and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}


def size_table(zf: zipfile.ZipFile, owner: dict[str, str]) -> str:
    groups: dict[str, list[zipfile.ZipInfo]] = defaultdict(list)
    for info in zf.infolist():
        groups[owner.get(info.filename, top_level(info.filename))].append(info)
    rows = [f"  {'':34} {'files':>6} {'unzipped':>12} {'zipped':>12}"]
    for group, infos in sorted(groups.items(), key=lambda g: -sum(i.compress_size for i in g[1])):
        rows.append(f"  {group:34} {len(infos):6} {sum(i.file_size for i in infos):12,} "
                    f"{sum(i.compress_size for i in infos):12,}")
    return "\n".join(rows)


# --- the lock ------------------------------------------------------------------------------------


def test_lock_pins_every_package_and_its_top_level_pins_are_pyprojects() -> None:
    # GIVEN the function's lock and pyproject.toml's [project] dependencies
    entries = lock.parse(LOCK.read_text(encoding="utf-8"))
    dependencies = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    # WHEN compared
    wanted = {f"{canonicalize_name(name)}=={version}"
              for name, _, version in (d.partition("==") for d in dependencies)}
    # THEN the packages the lock says come from pyproject.toml are exactly those pins
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==\S+", d) for d in dependencies), dependencies
    assert lock.roots(entries) == wanted
    # AND every package, the SDK's own dependencies included, is one exact version with the
    # sha256 of its wheels
    assert {"boto3", "botocore", "aws-lambda-powertools"} <= set(entries)
    for entry in entries.values():
        assert re.fullmatch(r"\d+(\.\d+)*(\.post\d+)?", entry.version), entry.pin
        hashes = entry.lines[1:]
        assert hashes, entry.pin
        assert all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), entry.lines
    # AND everything but the roots is needed by something in the lock
    for entry in entries.values():
        assert entry.via, entry.pin
        assert entry.via <= {*entries, lock.ROOT_VIA}, entry.via


def test_without_the_sdk_only_what_the_rest_needs_is_kept() -> None:
    # GIVEN the lock / WHEN BUNDLE_BOTO3=0 selects from it
    entries = lock.parse(LOCK.read_text(encoding="utf-8"))
    kept = lock.without_sdk(entries)
    dropped = set(entries) - set(kept)
    # THEN boto3, botocore and s3transfer go, Powertools stays, and each dropped package was
    # needed by dropped packages only, each kept one by a kept package or pyproject.toml
    assert {"boto3", "botocore", "s3transfer"} <= dropped
    assert "aws-lambda-powertools" in kept
    for name in dropped - lock.SDK:
        assert entries[name].via <= dropped, name
    for name, entry in kept.items():
        assert entry.via & {*kept, lock.ROOT_VIA}, name


def test_the_build_refuses_a_lock_that_pyproject_has_moved_away_from(tmp_path: Path) -> None:
    # GIVEN a pyproject.toml whose boto3 pin is not the locked one
    text = PYPROJECT.read_text(encoding="utf-8")
    moved = re.sub(r'"boto3==[^"]+"', '"boto3==1.0.0"', text)
    assert moved != text
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(moved, encoding="utf-8")
    # WHEN the build selects what to install
    result = subprocess.run([sys.executable, str(LOCK_PY), "select", "--pyproject", str(pyproject),
                             "--bundle-boto3", "1", str(LOCK)],
                            capture_output=True, text=True, timeout=60, check=False)
    # THEN it stops, naming both pins and the way out
    assert result.returncode != 0
    assert "boto3==1.0.0" in result.stderr
    assert "make lock-function" in result.stderr
    assert result.stdout == ""


def test_lock_targets_are_layer_mks() -> None:
    # GIVEN layers/layer.mk's platform tags and Python versions / WHEN the lock's are compared
    layer_mk = (ROOT / "layers" / "layer.mk").read_text(encoding="utf-8")
    platforms = re.search(r"^LAMBDA_PLATFORMS = (.+)$", layer_mk, re.M)
    pythons = re.search(r"^LAMBDA_PY = \$\(if \$\(filter ([\d. ]+),", layer_mk, re.M)
    # THEN they are the same: the lock resolves for every target the build accepts
    assert platforms is not None
    assert pythons is not None
    assert tuple(platforms[1].split()) == lock.PLATFORMS
    assert tuple(pythons[1].split()) == lock.PYTHON_VERSIONS


# --- the built artefacts ---------------------------------------------------------------------


def test_function_zip_holds_the_runtime_and_the_locked_packages_only(package: Package) -> None:
    # WHEN the function zip is listed
    with zipfile.ZipFile(package.function) as zf:
        names = zf.namelist()
        records = {name: zf.read(name).decode() for name in names
                   if re.fullmatch(r"[^/]+\.dist-info/RECORD", name)}
        owner = {}
        for record, text in records.items():
            dist = record.split("/")[0].removesuffix(".dist-info")
            for line in text.splitlines():
                owner[line.rsplit(",", 2)[0]] = dist
        owner.update({name: "rotation (runtime)" for name in names if name.startswith("rotation/")})
        owner[SHIM.name] = "lambda_function.py (handler shim)"
        shim = zf.read(SHIM.name) if SHIM.name in names else None
        print(f"\n{package.function.name} (BUNDLE_BOTO3={package.bundle_boto3}): "
              f"{package.function.stat().st_size:,} bytes, {len(names)} files\n"
              + size_table(zf, owner))
    # THEN rotation/ is the runtime exactly: no rotation/tools, no caches
    assert {n for n in names if n.startswith("rotation/")} == runtime_files()
    assert not [n for n in names if n.startswith("rotation/tools/")]
    assert "rotation/client.py" not in names
    assert not [n for n in names if "__pycache__" in n.split("/") or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if {"tests", "test"} & set(n.split("/")[:-1])]
    # AND at the root the handler shim, as in the source tree
    assert shim == SHIM.read_bytes()
    # AND the rest is the locked packages, exactly: one dist-info each, every file in a RECORD
    assert distributions(names) == locked(package.bundle_boto3)
    assert [n for n in names if not n.startswith("rotation/") and n not in owner] == []
    if package.bundle_boto3 == "0":
        assert not {"boto3", "botocore", "s3transfer"} & {top_level(n) for n in names}


def test_function_and_each_layer_satisfy_every_requirement(
        package: Package, tmp_path: Path) -> None:
    # GIVEN the function zip unpacked as /var/task
    task = tmp_path / "task"
    with zipfile.ZipFile(package.function) as zf:
        zf.extractall(task)
    for layer in DRIVER_LAYERS:
        # AND a driver layer as /opt
        opt = tmp_path / f"opt-{layer}"
        with zipfile.ZipFile(package.layers[layer]) as zf:
            zf.extractall(opt)
        # WHEN every requirement of every distribution there is evaluated for the target
        found = {canonicalize_name(d.metadata["Name"]): d.version
                 for d in importlib.metadata.distributions(path=[str(task), str(opt / "python")])}
        missing = []
        for dist in importlib.metadata.distributions(path=[str(task), str(opt / "python")]):
            for text in dist.requires or []:
                requirement = Requirement(text)
                if requirement.marker and not requirement.marker.evaluate(TARGET_ENVIRONMENT):
                    continue
                version = found.get(canonicalize_name(requirement.name))
                if version is None or not requirement.specifier.contains(version,
                                                                        prereleases=True):
                    missing.append(f"{dist.metadata['Name']} needs {text} (found {version})")
        # THEN each is met by the function or the layer (the layer installs with --no-deps)
        assert missing == [], layer


def test_nothing_ships_in_both_the_function_and_a_layer(package: Package) -> None:
    # GIVEN the function zip's top-level names and distributions
    with zipfile.ZipFile(package.function) as zf:
        function_names = zf.namelist()
    function_tops = {top_level(n) for n in function_names}
    function_dists = set(distributions(function_names))
    for layer, path in package.layers.items():
        # WHEN each layer's are read (python/ is what Lambda puts on sys.path)
        with zipfile.ZipFile(path) as zf:
            layer_names = zf.namelist()
            unzipped = sum(info.file_size for info in zf.infolist())
            marker = f"rotation-layers/{layer}.json"
            marker_bytes = zf.read(marker) if marker in layer_names else None
        prefix = "python/" if layer in DRIVER_LAYERS else ""
        if prefix:
            # besides python/, a driver layer holds its marker only (rotation.adapters._layers
            # reads it when the driver does not import): the pair it was built for
            assert [n for n in layer_names if not n.startswith(prefix)] == [marker], layer
            expected = {"architecture": ARCH, "layer": layer, "python": TARGET_PY}
            assert marker_bytes == (json.dumps(expected, sort_keys=True) + "\n").encode(), layer
            layer_names.remove(marker)
        print(f"\n{path.name}: {path.stat().st_size:,} bytes, {len(layer_names)} files, "
              f"{unzipped:,} unzipped: {sorted({top_level(n, prefix) for n in layer_names})}")
        # THEN no package, module or distribution is in both
        assert function_tops & {top_level(n, prefix) for n in layer_names} == set(), layer
        assert function_dists & set(distributions(layer_names, prefix)) == set(), layer
