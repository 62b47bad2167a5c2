"""A driver layer built for another architecture or Python than the function's is named as such.

Each driver layer carries rotation-layers/<layer>.json (layers/layer.mk), which Lambda unpacks under
/opt. When a built-in engine's driver does not import, the loader reads those markers (from
ROTATION_LAYER_MARKERS_DIR here) and compares the engine's layer's with the running interpreter:
on a mismatch the AdapterLoadError names both pairs and the one-pair build and deploy; with no
marker, a matching one or a garbled one, it keeps today's "deploy the driver layer" advice. The
driver's import is made to fail for real (its module blocked in sys.modules), and the markers are
written relative to this interpreter, so the comparison runs against the actual running target.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rotation.adapters import BUILTIN, load_adapter_class
from rotation.adapters._layers import (
    DRIVER_LAYER,
    MARKERS_DIR_ENV,
    Target,
    lambda_architecture,
    read_markers,
    running_target,
)
from rotation.errors import AdapterLoadError
from tests.conftest import ROOT

RUNNING = running_target()
OTHER_ARCH = "arm64" if RUNNING.architecture == "x86_64" else "x86_64"
OTHER_PY = "3.13" if RUNNING.python != "3.13" else "3.12"
TODAYS_HINT = "deploy the driver layer for this engine (layers/)"
# engine -> (the driver module to block, the adapter module that imports it)
DRIVERS = {"postgres": ("psycopg", "rotation.adapters.postgres"),
           "mariadb": ("pymysql", "rotation.adapters.mysql")}


def marker(layer: str, architecture: str = RUNNING.architecture,
           python: str = RUNNING.python) -> bytes:
    """A marker as layers/layer.mk writes it."""
    return (json.dumps({"layer": layer, "architecture": architecture, "python": python},
                       sort_keys=True) + "\n").encode()


def load_failing(engine: str, monkeypatch: pytest.MonkeyPatch) -> AdapterLoadError:
    """Load ``engine``'s built-in adapter with its driver made unimportable (as a layer whose
    compiled wheel does not load, or no layer at all)."""
    driver, adapter_module = DRIVERS[engine]
    monkeypatch.setitem(sys.modules, driver, None)  # `import psycopg` raises ImportError
    monkeypatch.delitem(sys.modules, adapter_module, raising=False)
    with pytest.raises(AdapterLoadError) as info:
        load_adapter_class(engine, BUILTIN)
    return info.value


@pytest.mark.parametrize(("engine", "files", "expected"), [
    # the engine's layer built for the other architecture, or the other Python: named
    ("postgres", {"postgres.json": marker("postgres", architecture=OTHER_ARCH)},
     ("postgres", Target(OTHER_ARCH, RUNNING.python))),
    ("postgres", {"postgres.json": marker("postgres", python=OTHER_PY)},
     ("postgres", Target(RUNNING.architecture, OTHER_PY))),
    ("mariadb", {"mysql.json": marker("mysql", OTHER_ARCH, OTHER_PY)},
     ("mysql", Target(OTHER_ARCH, OTHER_PY))),
    # several layers under /opt: the engine's own marker decides, whichever the others say
    ("mariadb", {"postgres.json": marker("postgres"),
                 "mysql.json": marker("mysql", architecture=OTHER_ARCH)},
     ("mysql", Target(OTHER_ARCH, RUNNING.python))),
    ("postgres", {"postgres.json": marker("postgres"),
                  "mysql.json": marker("mysql", architecture=OTHER_ARCH)}, None),
    # another layer mismatched, the engine's own absent: its layer is missing, as today
    ("postgres", {"mysql.json": marker("mysql", architecture=OTHER_ARCH)}, None),
    # a matching marker: the import failed for another reason
    ("postgres", {"postgres.json": marker("postgres")}, None),
    # no marker (a layer built before markers, or none deployed)
    ("postgres", {}, None),
    # garbled markers are ignored
    ("postgres", {"postgres.json": b"{not json"}, None),
    ("postgres", {"postgres.json": b"\xff\xfe" + marker("postgres", OTHER_ARCH)}, None),
    ("postgres", {"postgres.json": b'["postgres", "arm64", "3.12"]'}, None),
    ("postgres", {"postgres.json": b'{"layer": "postgres", "architecture": "arm64"}'}, None),
    ("postgres", {"postgres.json": marker("postgres", architecture="sparc")}, None),
    ("postgres", {"postgres.json": marker("postgres", python="3.12; rm -rf /")}, None),
    ("postgres", {"postgres.json": b" " * 5000 + marker("postgres", OTHER_ARCH)}, None),
], ids=["other architecture", "other python", "mysql, both differ", "several, engine's differs",
        "several, engine's matches", "only another layer's", "matching", "no marker",
        "not json", "not utf-8", "not an object", "a key missing", "unknown architecture",
        "bad python", "oversized"])
def test_a_driver_that_does_not_import_is_explained_by_its_layers_marker(
        engine: str, files: dict[str, bytes], expected: tuple[str, Target] | None,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the markers Lambda would unpack under /opt/rotation-layers
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    monkeypatch.setenv(MARKERS_DIR_ENV, str(tmp_path))

    # WHEN the engine's driver does not import
    error = load_failing(engine, monkeypatch)

    # THEN the error class and its cause are today's, and the import error is still quoted
    assert error.category == "configuration"
    assert f"ModuleNotFoundError: import of {DRIVERS[engine][0]} halted" in error.message
    if expected is None:
        # AND without a telling marker the advice is today's
        assert error.hint.startswith(TODAYS_HINT)
        assert "was built for" not in str(error)
        return
    layer, built_for = expected
    # AND with one, the message names the layer and both pairs, the fix the function's pair
    assert f"the {layer} layer was built for {built_for}, this function runs on {RUNNING}" \
        in error.message
    pair = f"Architecture={RUNNING.architecture} Runtime=python{RUNNING.python}"
    assert f"`sam build --parameter-overrides {pair} && sam deploy --parameter-overrides " \
           f"{pair}`" in error.hint
    assert "[default.global.parameters]" in error.hint
    assert f"make package ARCH={RUNNING.architecture} PY={RUNNING.python}" in error.hint
    assert TODAYS_HINT not in str(error)


@pytest.mark.parametrize("make_unreadable", [
    lambda d: (d / "postgres.json").mkdir(),  # a folder where the file should be
    lambda d: (d / "postgres.json").symlink_to(d / "nowhere.json"),  # a dangling link
], ids=["a folder", "a dangling link"])
def test_an_unreadable_marker_keeps_todays_advice(
        make_unreadable: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a marker that cannot be read, beside a readable one of another layer
    make_unreadable(tmp_path)
    (tmp_path / "mysql.json").write_bytes(marker("mysql", architecture=OTHER_ARCH))
    monkeypatch.setenv(MARKERS_DIR_ENV, str(tmp_path))

    # WHEN the driver does not import / THEN the advice is today's, not an error of its own
    assert load_failing("postgres", monkeypatch).hint.startswith(TODAYS_HINT)
    # AND the readable marker was still read
    assert read_markers(tmp_path) == {"mysql": Target(OTHER_ARCH, RUNNING.python)}


def test_a_missing_markers_folder_keeps_todays_advice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no markers folder at all (no layer, or a layer from before the markers)
    monkeypatch.setenv(MARKERS_DIR_ENV, str(tmp_path / "absent"))
    # WHEN / THEN
    assert load_failing("postgres", monkeypatch).hint.startswith(TODAYS_HINT)


@pytest.mark.parametrize(("machine", "architecture"), [
    ("x86_64", "x86_64"), ("AMD64", "x86_64"), ("aarch64", "arm64"), ("arm64", "arm64"),
    ("riscv64", "riscv64"),
])
def test_the_machine_is_named_as_the_templates_architecture(machine: str,
                                                            architecture: str) -> None:
    # GIVEN platform.machine()'s spelling / WHEN mapped / THEN it is the template's value
    assert lambda_architecture(machine) == architecture


def test_the_running_target_is_this_interpreter() -> None:
    # GIVEN / WHEN this process's target / THEN its Python and its machine's architecture
    assert RUNNING.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert RUNNING.architecture == lambda_architecture(platform.machine())


def test_every_driver_layer_writes_the_marker_its_engines_read() -> None:
    # GIVEN the layers' Makefiles and the engine -> layer table
    written = {}
    for makefile in sorted((ROOT / "layers").glob("*/Makefile")):
        calls = re.findall(r"\$\(call LAMBDA_LAYER_MARKER,([^)]*)\)",
                           makefile.read_text(encoding="utf-8"))
        if calls:
            written[makefile.parent.name] = calls
    # THEN each driver layer writes one marker under its own name, the CA layer none, and every
    # engine needing a layer is a built-in engine
    assert written == {layer: [layer] for layer in set(DRIVER_LAYER.values())}
    assert "rds-ca" not in written
    assert set(DRIVER_LAYER) <= set(BUILTIN)


PROBE = """
import json, sys
from rotation.adapters import load_adapter_class
load_adapter_class("postgres")
print(json.dumps("rotation.adapters._layers" in sys.modules))
"""


def test_a_driver_that_loads_never_reads_the_markers() -> None:
    # GIVEN a fresh interpreter whose driver imports / WHEN the engine's adapter is loaded
    env = {**os.environ, MARKERS_DIR_ENV: "/nonexistent"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    # THEN the markers' module was never imported (the happy path pays nothing)
    assert json.loads(out.strip().splitlines()[-1]) is False


INIT_PROBE = """
import json, sys
sys.modules["psycopg"] = None  # the layer's compiled driver does not import on this target
from rotation import handler  # Lambda's init phase: preloads ROTATION_ENGINE's adapter
init_failed = handler._app is None
from rotation.tools.local import LocalLambdaContext, LocalRotationService, local_stack
with local_stack() as sm:
    arn = sm.create_secret(Name="s", SecretString=json.dumps(
        {"engine": "postgres", "host": "127.0.0.1", "port": 5432, "username": "u",
         "password": "Initial-password-for-a-layer-test"}))["ARN"]
    service = LocalRotationService(sm)
    service.enable_rotation(arn)
    report = service.rotate(arn, lambda event: handler.lambda_handler(event, LocalLambdaContext()))
print(json.dumps({"init_failed": init_failed,
                  "steps": [[s.step, s.error] for s in report.steps]}))
"""


def test_the_first_invocations_log_line_names_the_mismatch(tmp_path: Path) -> None:
    # GIVEN Lambda's environment for a PostgreSQL function whose layer was built for the other
    # architecture, and a driver that therefore does not import
    (tmp_path / "postgres.json").write_bytes(marker("postgres", architecture=OTHER_ARCH))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "ROTATION_", "SECRETS_MANAGER", "POWERTOOLS_"))}
    env.update({"AWS_LAMBDA_FUNCTION_NAME": "rotation", "ROTATION_ENGINE": "postgres",
                "AWS_EXECUTION_ENV": f"AWS_Lambda_python{RUNNING.python}",
                "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_METRICS_DISABLED": "true",
                MARKERS_DIR_ENV: str(tmp_path)})

    # WHEN the handler module is imported (the init phase) and a rotation invokes it
    proc = subprocess.run([sys.executable, "-c", INIT_PROBE], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result = lines.pop()
    errors = [line for line in lines if line.get("level") == "ERROR"]

    # THEN the init phase's preload failed quietly, and the first step failed on it
    assert result["init_failed"] is True
    assert [step for step, error in result["steps"]] == ["createSecret"]
    # AND that step's one ERROR line says which layer was built for what, and the fix
    assert len(errors) == 1, errors
    (line,) = errors
    problem = f"the postgres layer was built for {OTHER_ARCH}/python{RUNNING.python}, " \
              f"this function runs on {RUNNING}"
    assert line["message"].startswith("createSecret failed: ")
    assert problem in line["message"]
    assert line["error_class"] == "AdapterLoadError"
    assert line["cause"] == "configuration"
    assert line["fix"].startswith("rebuild and deploy with one pair: `sam build "
                                  f"--parameter-overrides Architecture={RUNNING.architecture}")
    assert TODAYS_HINT not in proc.stdout
    # AND the secret's password is in no output
    assert "Initial-password-for-a-layer-test" not in proc.stdout + proc.stderr
