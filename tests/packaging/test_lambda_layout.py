"""The built artefacts work as Lambda would load them: the function zip unpacked as /var/task,
one driver layer as /opt/python and the CA layer's PEM as ROTATION_CA_BUNDLE, in a clean
virtualenv of the target Python (3.12), completing a rotation through lambda_handler against the
throwaway servers, under either handler name the function answers to: its own
(rotation.handler.lambda_handler) and AWS's samples' (lambda_function.lambda_handler, the shim at
the zip's root). The handler's module is imported first, with Lambda's environment variables set,
so the init phase (the app built, the engine's driver loaded) runs as it would on Lambda. The
CA layer is built from the servers' own CA (RDS_CA_BUNDLE_FILE, with its hash in place of the
pin): the same build step that ships AWS's RDS bundle.

The virtualenv gets only the local service's own needs (moto, trustme): the function's code and
dependencies come from the zips, which sit first on sys.path exactly as /var/task and /opt/python
do in Lambda. The function zip holds no rotation/tools, so the local service (the stand-in for
Secrets Manager) is loaded from the checkout as ``rotation.tools`` alone; every other
``rotation`` module must come from the zip."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, LeakScan

TARGET_PY = "3.12"
ARCH = "x86_64"

DRIVER = r"""
import importlib, importlib.util, json, os, sys
info = json.loads(os.environ["ROTATION_TEST_TARGET"])
# Lambda's init phase: import the handler's module (from the zip)
module_name, _, function_name = info["handler"].rpartition(".")
entry = importlib.import_module(module_name)
lambda_handler = getattr(entry, function_name)
from rotation import handler
init = {"app_built": handler._app is not None,
        "drivers": sorted(m for m in ("psycopg", "pymysql") if m in sys.modules)}
handler.reset()  # the init phase's boto3 client predates moto: build the app again inside it
spec = importlib.util.spec_from_file_location(
    "rotation.tools", os.path.join(info["tools"], "__init__.py"),
    submodule_search_locations=[info["tools"]])
tools = importlib.util.module_from_spec(spec)
sys.modules["rotation.tools"] = tools
spec.loader.exec_module(tools)
from rotation.tools.local import local_stack, LocalRotationService
class Ctx:
    def get_remaining_time_in_millis(self): return 30000
with local_stack() as sm:
    arn = sm.create_secret(Name="layout", SecretString=json.dumps(info["secret"]))["ARN"]
    service = LocalRotationService(sm)
    service.enable_rotation(arn)
    report = service.rotate(arn, lambda event: lambda_handler(event, Ctx()))
print(json.dumps({
    "init": init,
    "entry_from": entry.__file__,
    "is_the_handler": lambda_handler is handler.lambda_handler,
    "succeeded": report.succeeded,
    "errors": [s.error for s in report.steps if s.error],
    "labels": sorted(sum(report.labels_after.values(), [])),
    "handler_from": handler.__file__,
    "rotation_from": {m: getattr(mod, "__file__", None) for m, mod in sys.modules.items()
                      if m == "rotation" or m.startswith("rotation.")},
    "driver_from": {m: getattr(sys.modules.get(m), "__file__", None)
                    for m in ("psycopg", "pymysql")},
}))
"""


ADAPTER = {"psycopg": "postgres", "pymysql": "mysql"}  # driver -> rotation.adapters module


def _python(version: str) -> str:
    """The target interpreter: a pyenv install, else one on PATH (pyenv's shims only work for
    the active version, so they are skipped)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [str(p) for p in sorted(root.glob(f"versions/{version}*/bin/python{version}"))]
    on_path = shutil.which(f"python{version}")
    if on_path and "/shims/" not in on_path:
        candidates.append(on_path)
    assert candidates, f"python{version} is needed to check the Lambda layout"
    return candidates[0]


@pytest.fixture(scope="module")
def lambda_env(tmp_path_factory: pytest.TempPathFactory, pg_server: Any) -> dict[str, Path]:
    # GIVEN `make package` artefacts for python3.12 / x86_64, the CA layer holding the CA that
    # signed the throwaway servers' certificates
    work = tmp_path_factory.mktemp("lambda")
    dist = work / "dist"
    ca_file = Path(pg_server.ca_file)
    ca_sha256 = hashlib.sha256(ca_file.read_bytes()).hexdigest()
    subprocess.run(["make", "--no-print-directory", "package", f"ARCH={ARCH}", f"PY={TARGET_PY}",
                    f"DIST={dist}", f"RDS_CA_BUNDLE_FILE={ca_file}",
                    f"RDS_CA_BUNDLE_SHA256={ca_sha256}"],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    task = work / "var-task"
    with zipfile.ZipFile(dist / "function.zip") as zf:
        zf.extractall(task)
    layers = {}
    for engine in ("postgres", "mysql"):
        opt = work / f"opt-{engine}"
        with zipfile.ZipFile(dist / f"layer-{engine}-{ARCH}-{TARGET_PY}.zip") as zf:
            zf.extractall(opt)
        layers[engine] = opt / "python"
    opt_ca = work / "opt-ca"
    with zipfile.ZipFile(dist / "layer-rds-ca.zip") as zf:
        zf.extractall(opt_ca)
    # /opt/rotation-ca/ca-bundle.pem in Lambda, the template's ROTATION_CA_BUNDLE
    layers["ca_bundle"] = opt_ca / "rotation-ca" / "ca-bundle.pem"
    venv = work / "venv"
    subprocess.run([_python(TARGET_PY), "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "moto[secretsmanager]==5.2.5", "trustme==1.2.1"],
                   check=True, capture_output=True, timeout=600)
    return {"task": task, "python": venv / "bin" / "python", **layers}


def _rotate(lambda_env: dict[str, Path], layer: str, server: Any, engine: str,
            leak_scan: LeakScan, handler_name: str) -> dict[str, Any]:
    username = f"layout_{uuid.uuid4().hex[:8]}"
    password = "Init-" + secrets.token_urlsafe(16)
    leak_scan.add(password)
    server.create_login_user(username, password)
    secret = {"engine": engine, "host": server.host, "port": server.port,
              "username": username, "password": password, "dbname": server.dbname}
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "PYTHONPATH": f"{lambda_env['task']}{os.pathsep}{lambda_env[layer]}",
           "ROTATION_CA_BUNDLE": str(lambda_env["ca_bundle"]), "AWS_DEFAULT_REGION": "us-east-1",
           "POWERTOOLS_METRICS_DISABLED": "true",
           # as Lambda sets them: rotation.handler builds the app at import (the init phase)
           "AWS_LAMBDA_FUNCTION_NAME": "rotation-layout",
           "AWS_EXECUTION_ENV": f"AWS_Lambda_python{TARGET_PY}", "ROTATION_ENGINE": engine,
           "ROTATION_TEST_TARGET": json.dumps({"secret": secret, "handler": handler_name,
                                               "tools": str(ROOT / "rotation" / "tools")})}
    try:
        # cwd outside the checkout: `python -c` puts the cwd first on sys.path
        proc = subprocess.run([str(lambda_env["python"]), "-c", DRIVER], env=env,
                              cwd=lambda_env["task"].parent, capture_output=True, text=True,
                              timeout=120)
    finally:
        server.drop_user(username)
    leak_scan.add_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(("layer", "engine", "server_fixture", "driver", "handler_name"), [
    ("postgres", "postgres", "pg_server", "psycopg", "rotation.handler.lambda_handler"),
    ("mysql", "mariadb", "mariadb_server", "pymysql", "rotation.handler.lambda_handler"),
    # AWS's samples' handler name, for stacks that keep it (docs/migration.md)
    ("postgres", "postgres", "pg_server", "psycopg", "lambda_function.lambda_handler"),
    ("mysql", "mariadb", "mariadb_server", "pymysql", "lambda_function.lambda_handler"),
])
def test_zip_and_layer_rotate_in_a_lambda_layout(
        lambda_env: dict[str, Path], layer: str, engine: str, server_fixture: str, driver: str,
        handler_name: str, request: pytest.FixtureRequest, leak_scan: LeakScan) -> None:
    server = request.getfixturevalue(server_fixture)
    # WHEN Lambda's init phase imports the handler's module and a rotation runs through it, with
    # only /var/task and this layer providing the function's code, and the CA layer's PEM as the
    # only trust for the database's TLS
    result = _rotate(lambda_env, layer, server, engine, leak_scan, handler_name)
    # THEN the import built the app and loaded the engine's driver (the init phase), whichever
    # name Lambda imported, and that name is rotation.handler's own lambda_handler
    assert result["init"] == {"app_built": True, "drivers": [driver]}
    assert result["is_the_handler"]
    module_file = handler_name.rpartition(".")[0].replace(".", "/") + ".py"
    assert result["entry_from"] == str(lambda_env["task"] / module_file)
    # AND the rotation succeeds, with the handler and the driver loaded from the artefacts
    assert result["succeeded"], result["errors"]
    assert result["labels"] == ["AWSCURRENT", "AWSPREVIOUS"]
    assert result["handler_from"].startswith(str(lambda_env["task"]))
    # AND every runtime module came from the zip, the tooling (only) from the checkout
    runtime = {m: f for m, f in result["rotation_from"].items()
               if m != "rotation.tools" and not m.startswith("rotation.tools.")}
    assert {"rotation.handler", "rotation.steps", f"rotation.adapters.{ADAPTER[driver]}"} \
        <= set(runtime)
    assert all(f.startswith(str(lambda_env["task"])) for f in runtime.values()), runtime
    assert not (lambda_env["task"] / "rotation" / "tools").exists()
    assert result["driver_from"][driver].startswith(str(lambda_env[layer]))
