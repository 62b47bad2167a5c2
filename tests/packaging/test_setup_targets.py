"""`make demo` installs what the demo runs and no more; `make test` the whole toolchain, which
covers the demo too. Checked with `make -n` against a virtualenv path that does not exist, so
every install step shows and nothing runs."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT


def dry_run(target: str, venv: Path) -> str:
    return subprocess.run(["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True).stdout


def test_the_test_extra_holds_everything_the_demo_extra_does() -> None:
    # GIVEN pyproject.toml's extras / WHEN compared
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"]
    # THEN the test setup also satisfies the demo (the test stamp stands for both)
    assert set(extras["local"]) <= set(extras["test"])


@pytest.mark.parametrize(("target", "extra", "not_extra"), [
    ("demo", ".[local]", ".[test]"),
    ("test", ".[test]", ".[local]"),
])
def test_each_entry_point_installs_its_own_extra(
        target: str, extra: str, not_extra: str, tmp_path: Path) -> None:
    # GIVEN no virtualenv yet / WHEN the entry point's commands are listed
    venv = tmp_path / "venv"
    commands = dry_run(target, venv)
    # THEN it creates the virtualenv and installs its own extra only
    assert f"-m venv {venv}" in commands
    assert f"-e '{extra}'" in commands
    assert not_extra not in commands
    assert "install-db-servers.sh" in commands
