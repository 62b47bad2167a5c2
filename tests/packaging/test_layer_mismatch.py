"""A driver layer built for the other architecture says so when the function cannot import it.

The real build: the PostgreSQL layer for the architecture this machine is not (arm64 on x86_64),
through that pair's layers/targets Makefile as `sam build` runs it, zipped as `make package` zips
it and unpacked as Lambda's /opt; the function package for this machine's pair as /var/task. In a
fresh interpreter of the target Python (3.12) with only those on sys.path, Lambda's init phase
imports the handler (preloading ROTATION_ENGINE=postgres) and the engine's adapter is loaded: the
error names the layer's pair and the function's, and the one-pair fix. With the marker's folder
empty, the same failure gives today's "deploy the driver layer" advice: the marker is what tells.

PSYCOPG_IMPL=binary: Lambda has no system libpq, so psycopg can use its bundled one only; this
machine has a libpq that psycopg's pure-Python fallback would load instead, hiding the failure.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rotation.adapters._layers import MARKERS_DIR_ENV, lambda_architecture
from tests.conftest import ROOT
from tests.packaging.test_lambda_layout import _python

TARGET_PY = "3.12"
THIS_ARCH = lambda_architecture(platform.machine())
OTHER_ARCH = "arm64" if THIS_ARCH == "x86_64" else "x86_64"
WHEEL_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}

PROBE = r"""
import importlib.util, json, os, sys
from rotation import handler  # Lambda's init phase: preloads ROTATION_ENGINE's adapter
init_failed = handler._app is None
from rotation.adapters import load_adapter_class
from rotation.errors import AdapterLoadError
seen = {}
for name, markers in (("with marker", os.environ["MARKERS"]), ("without", os.environ["EMPTY"])):
    os.environ[os.environ["MARKERS_ENV"]] = markers  # the folder, read at each failure
    try:
        load_adapter_class("postgres")
        seen[name] = None
    except AdapterLoadError as exc:
        seen[name] = {"message": exc.message, "hint": exc.hint}
print(json.dumps({"init_failed": init_failed, "errors": seen, "handler_from": handler.__file__,
                  "psycopg_from": importlib.util.find_spec("psycopg").origin}))
"""


@dataclass(frozen=True)
class Layout:
    task: Path
    opt: Path


def _make(*args: str) -> None:
    proc = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    # GIVEN the PostgreSQL layer built for the other architecture (as `sam build` does for that
    # pair) and zipped, and the function package for this machine's architecture
    work = tmp_path_factory.mktemp("mismatch")
    built = work / "layer"
    _make("-f", f"layers/targets/{OTHER_ARCH}-python{TARGET_PY}/Makefile",
          "build-PostgresLayer", f"ARTIFACTS_DIR={built}")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_zip.py"), str(built),
                    str(work / "layer.zip")], check=True, capture_output=True, timeout=120)
    opt = work / "opt"
    with zipfile.ZipFile(work / "layer.zip") as zf:
        zf.extractall(opt)
    task = work / "var-task"
    _make("build-RotationFunction", f"ARCH={THIS_ARCH}", f"PY={TARGET_PY}",
          f"ARTIFACTS_DIR={task}")
    return Layout(task, opt)


def test_the_layer_records_the_pair_it_was_built_for(layout: Layout) -> None:
    # WHEN the unpacked layer's marker and compiled modules are read
    marker = layout.opt / "rotation-layers" / "postgres.json"
    modules = sorted(p.name for p in (layout.opt / "python" / "psycopg_binary").glob("*.so"))
    # THEN the marker names the pair, byte for byte as json.dumps(sort_keys=True) writes it
    expected = {"architecture": OTHER_ARCH, "layer": "postgres", "python": TARGET_PY}
    assert marker.read_bytes() == (json.dumps(expected, sort_keys=True) + "\n").encode()
    # AND the wheels are that pair's (a real mismatch with this machine)
    py = TARGET_PY.replace(".", "")
    assert modules
    assert all(m.endswith(f".cpython-{py}-{WHEEL_ARCH[OTHER_ARCH]}-linux-gnu.so")
               for m in modules), modules


def test_importing_the_engine_names_both_pairs(layout: Layout, tmp_path: Path) -> None:
    # GIVEN the target Python with /var/task and /opt/python on sys.path and nothing else (-S:
    # no site-packages), as on Lambda, with Lambda's variables for a PostgreSQL function
    empty = tmp_path / "no-markers"
    empty.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "PYTHONPATH": f"{layout.task}{os.pathsep}{layout.opt / 'python'}",
           "PSYCOPG_IMPL": "binary", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_LAMBDA_FUNCTION_NAME": "rotation-mismatch",
           "AWS_EXECUTION_ENV": f"AWS_Lambda_python{TARGET_PY}", "ROTATION_ENGINE": "postgres",
           "MARKERS_ENV": MARKERS_DIR_ENV, "MARKERS": str(layout.opt / "rotation-layers"),
           "EMPTY": str(empty)}
    # WHEN the handler module is imported (the init phase) and the engine's adapter is loaded
    proc = subprocess.run([_python(TARGET_PY), "-S", "-c", PROBE], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    # THEN the code and the driver came from the layout, and the init phase's preload failed
    assert result["handler_from"].startswith(str(layout.task))
    assert result["psycopg_from"].startswith(str(layout.opt / "python"))
    assert result["init_failed"] is True
    # AND the error names the layer's pair and the function's, and the fix for the function's
    errors = result["errors"]
    this = f"{THIS_ARCH}/python{TARGET_PY}"
    assert f"the postgres layer was built for {OTHER_ARCH}/python{TARGET_PY}, this function " \
           f"runs on {this}" in errors["with marker"]["message"]
    pair = f"Architecture={THIS_ARCH} Runtime=python{TARGET_PY}"
    assert errors["with marker"]["hint"].startswith(
        f"rebuild and deploy with one pair: `sam build --parameter-overrides {pair} && "
        f"sam deploy --parameter-overrides {pair}`")
    assert "deploy the driver layer" not in json.dumps(errors["with marker"])
    # AND without the marker the same failure keeps today's advice
    assert errors["without"]["hint"].startswith("deploy the driver layer for this engine")
    assert "was built for" not in errors["without"]["message"]
