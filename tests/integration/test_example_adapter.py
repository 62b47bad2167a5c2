"""The example plug-in adapter (examples/minimal_postgres) against the sandbox PostgreSQL: the same
contract suite as the built-in adapters, full rotations through lambda_handler with engine
``example-postgres``, and the example installed with pip into a fresh virtual environment, its
entry point resolved from outside the repository as an installed plug-in's is."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rotation.adapters
from rotation.tools.sandbox import ServerHandle
from tests.conftest import ROOT, LeakScan
from tests.integration.adapter_contract import AdapterContract, ContractTarget
from tests.rig import Rig, pg_can_login

pytestmark = pytest.mark.integration

ENGINE = "example-postgres"
TARGET = "rotation_example_postgres.adapter:MinimalPostgresAdapter"
EXAMPLE = ROOT / "examples" / "minimal_postgres"


@pytest.fixture(autouse=True)
def example_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the example as the plug-in would through its entry point, importable from its
    directory as if installed."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setattr(rotation.adapters, "BUILTIN", {**rotation.adapters.BUILTIN,
                                                       ENGINE: TARGET})


@pytest.fixture
def target(pg_server: ServerHandle) -> ContractTarget:
    return ContractTarget(engine=ENGINE, server=pg_server,
                          create_user=pg_server.create_login_user, drop_user=pg_server.drop_user)


class TestExampleAdapter(AdapterContract):
    """The shared conformance suite, unchanged."""




@pytest.fixture
def example_rig(server_rigs: Any, pg_server: ServerHandle,
                monkeypatch: pytest.MonkeyPatch) -> Callable[..., Rig]:
    monkeypatch.setenv("ROTATION_CA_BUNDLE", pg_server.ca_file)

    def build(**overrides: Any) -> Rig:
        rig: Rig = server_rigs.build(pg_server, ENGINE, prefix="ex", **overrides)
        return rig

    return build


def test_single_user_rotation_through_the_handler(example_rig: Callable[..., Rig],
                                                  pg_server: ServerHandle) -> None:
    # GIVEN a secret whose engine is the plug-in's
    rig = example_rig()
    old = rig.value("AWSCURRENT")
    mark = pg_server.log_position()

    # WHEN Secrets Manager rotates it through lambda_handler, one warm container
    report = rig.service.rotate(rig.arn, rig.invoke)

    # THEN it rotates like a built-in engine: 2 logins, none failed, the plaintext never logged
    assert report.succeeded, report.steps
    counts = pg_server.login_counts(mark)
    assert (counts.succeeded, counts.failed) == (2, 0)
    assert rig.calls.total() <= 7, rig.calls.calls
    new = rig.value("AWSCURRENT")
    assert new["engine"] == ENGINE
    assert pg_can_login(pg_server, new["username"], new["password"])
    assert not pg_can_login(pg_server, old["username"], old["password"])
    assert new["password"] not in pg_server.log_text()


def test_alternating_users_rotation_through_the_handler(
        example_rig: Callable[..., Rig], pg_server: ServerHandle, sm: Any,
        monkeypatch: pytest.MonkeyPatch, leak_scan: LeakScan) -> None:
    # GIVEN an alternating-users secret whose master is the server's admin (RDS's shape)
    leak_scan.add(pg_server.admin_password)
    master = sm.create_secret(Name=f"master-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(
        {"username": pg_server.admin_user, "password": pg_server.admin_password}))["ARN"]
    rig = example_rig(masterarn=master)
    monkeypatch.setenv("ROTATION_STRATEGY", "alternating-users")
    original = rig.value("AWSCURRENT")["username"]

    # WHEN it rotates twice
    first = rig.service.rotate(rig.arn, rig.invoke)
    after_first = rig.value("AWSCURRENT")
    second = rig.service.rotate(rig.arn, rig.invoke)
    after_second = rig.value("AWSCURRENT")

    # THEN the clone took over, then the original; both credentials log in afterwards
    assert first.succeeded, first.steps
    assert second.succeeded, second.steps
    assert after_first["username"] == original + "_clone"
    assert after_second["username"] == original
    assert pg_can_login(pg_server, after_second["username"], after_second["password"])
    assert pg_can_login(pg_server, after_first["username"], after_first["password"])


def test_pip_installs_the_example_and_its_entry_point_loads_it_anywhere(tmp_path: Path) -> None:
    # GIVEN the entry point declared in examples/minimal_postgres/pyproject.toml
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][rotation.adapters.ENTRY_POINT_GROUP] == {ENGINE: TARGET}
    # and a fresh virtual environment that sees the framework and its drivers (this one's
    # site-packages, as Lambda sees the function package and layers) but not the repository
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    python = str(venv / "bin" / "python")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONNOUSERSITE": "1"}
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True, text=True,
                             env=env, timeout=60).stdout.strip()
    framework = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "_framework.pth").write_text(f"import site; site.addsitedir({framework!r})\n")
    source = shutil.copytree(EXAMPLE, tmp_path / "example", ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))  # a copy: pip builds in the source tree

    # WHEN pip installs the example (no index, no download: the project is already there)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-index", "--no-deps", "--no-build-isolation", str(source)],
                   check=True, capture_output=True, text=True, env=env, timeout=120,
                   cwd=tmp_path)
    # and a new interpreter in another directory loads the engine by name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = ("import importlib.util\n"
              "from rotation.adapters import available_engines, get_adapter\n"
              f"adapter = get_adapter({ENGINE!r})\n"
              f"print(type(adapter).__module__, type(adapter).__name__, "
              f"available_engines()[{ENGINE!r}], importlib.util.find_spec('examples'))")
    out = subprocess.run([python, "-c", script], check=True, capture_output=True, text=True,
                         cwd=elsewhere, env=env, timeout=60)

    # THEN the registry found it through the installed entry point, with no repository on the
    # path, and pip installed one package and its metadata: no top-level module `adapter`
    assert out.stdout.split() == ["rotation_example_postgres.adapter", "MinimalPostgresAdapter",
                                  TARGET, "None"]
    installed = {entry.name for entry in Path(purelib).iterdir()} - {"_framework.pth"}
    assert installed == {"rotation_example_postgres", "rotation_example_postgres-0.1.0.dist-info"}


def test_a_server_without_tls_is_refused_before_any_login(pg_server_notls: ServerHandle,
                                                          leak_scan: LeakScan) -> None:
    # GIVEN a server that offers no TLS, and a credential that would log in without it
    from rotation.adapters import get_adapter
    from rotation.adapters.base import AdapterOptions
    from rotation.credentials import credentials_from_dict
    from rotation.errors import TlsError

    username, password = f"ex_{uuid.uuid4().hex[:10]}", "Init-" + secrets.token_urlsafe(18)
    leak_scan.add(password)
    pg_server_notls.create_login_user(username, password)
    creds = credentials_from_dict({"engine": ENGINE, "host": pg_server_notls.host,
                                   "port": pg_server_notls.port, "username": username,
                                   "password": password, "dbname": pg_server_notls.dbname},
                                  "arn:aws:secretsmanager:example")
    mark = pg_server_notls.log_position()
    try:
        # WHEN the example adapter connects with the default sslmode (verify-full)
        with pytest.raises(TlsError) as info:
            get_adapter(ENGINE, AdapterOptions(ca_bundle=pg_server_notls.ca_file)).connect(creds)
        logins = pg_server_notls.login_counts(mark)
    finally:
        pg_server_notls.drop_user(username)

    # THEN it failed closed, naming the fix, and the server saw no login
    assert "ROTATION_CA_BUNDLE" in str(info.value)
    assert logins.succeeded == 0
