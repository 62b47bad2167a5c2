"""docs/migration.md's claims about handler names and unsupported engines hold against the code.

* "Engines AWS's samples cover that this project does not": every `engine` its table names is
  refused by the adapter registry today, with the fix that names the entry-point group
  `rotation.adapters`; each row names AWS's sample functions by their repository names.
* "The handler name": every ``*.lambda_handler`` name the page gives resolves to the framework's
  handler, from the source tree (``rotation.handler``) or from the file the build copies to the
  function package's root (``lambda_function``, layers/function/lambda_function.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rotation import handler
from rotation.adapters import ENTRY_POINT_GROUP, AdapterRegistry
from rotation.adapters.base import AdapterOptions
from rotation.errors import AdapterLoadError, UnsupportedEngineError
from tests.conftest import ROOT

MIGRATION = ROOT / "docs" / "migration.md"
ENGINES_HEADING = "## Engines AWS's samples cover that this project does not"
HANDLER_HEADING = "## The handler name"
SHIM = ROOT / "layers" / "function" / "lambda_function.py"
SAMPLE_NAME = re.compile(r"SecretsManager\w+Rotation(SingleUser|MultiUser)")


def section(text: str, heading: str) -> str:
    """The section under ``heading`` (up to the next ``## ``), without its fenced blocks."""
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    body = text[start:end if end != -1 else len(text)]
    return re.sub(r"^```.*?^```", "", body, flags=re.MULTILINE | re.DOTALL)


def engine_rows(text: str) -> dict[str, list[str]]:
    """The engines table: the secret's `engine` value -> the sample function names of its row."""
    rows: dict[str, list[str]] = {}
    for line in section(text, ENGINES_HEADING).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or set(cells[0]) <= {"-", " "} or cells[0].startswith("engine"):
            continue
        (engine,) = re.findall(r"`([^`]+)`", cells[0])
        rows[engine] = re.findall(r"`([^`]+)`", cells[1])
    return rows


def engine_problems(text: str) -> list[str]:
    """What is wrong with the engines table of ``text``: an engine the registry serves (or would
    refuse without the plug-in hint), a row without AWS's sample function names."""
    rows = engine_rows(text)
    problems = [] if rows else ["the engines table has no rows"]
    registry = AdapterRegistry(AdapterOptions())
    for engine, samples in rows.items():
        try:
            registry.get(engine)
        except AdapterLoadError:
            problems.append(f"`{engine}` has an adapter (its driver is only missing here)")
        except UnsupportedEngineError as exc:
            if ENTRY_POINT_GROUP not in exc.hint:
                problems.append(f"`{engine}` is refused without the plug-in hint: {exc}")
        else:
            problems.append(f"`{engine}` has an adapter: take it off the list")
        if not samples or not all(SAMPLE_NAME.fullmatch(name) for name in samples):
            problems.append(f"`{engine}`: not AWS's sample function names: {samples}")
    return problems


def handler_names(text: str) -> set[str]:
    return set(re.findall(r"`((?:\w+\.)+lambda_handler)`", section(text, HANDLER_HEADING)))


def resolve(name: str) -> Callable[..., Any]:
    """``module.function`` as Lambda would import it: ``lambda_function`` from the file the build
    copies to the package root, anything else from the source tree."""
    module_name, _, attribute = name.rpartition(".")
    if module_name == SHIM.stem:
        spec = importlib.util.spec_from_file_location(module_name, SHIM)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    function: Callable[..., Any] = getattr(module, attribute)
    return function


# --- engines -----------------------------------------------------------------------------------


def test_every_engine_listed_is_refused_with_the_plugin_hint() -> None:
    # GIVEN the page's table of engines AWS's samples cover and this project does not
    text = MIGRATION.read_text()
    # WHEN each is looked up in the adapter registry the function uses
    problems = engine_problems(text)
    # THEN each is refused with the plug-in hint, and the table names the engines of AWS's
    # samples that have no adapter here
    assert problems == []
    assert set(engine_rows(text)) == {"oracle", "sqlserver", "redshift", "mongo", "db2"}


@pytest.mark.parametrize(("row", "problem"), [
    ("| PostgreSQL (`postgres`) | `SecretsManagerRDSPostgreSQLRotationSingleUser` | psycopg |",
     "`postgres` has an adapter"),
    ("| MariaDB (`mariadb`) | `SecretsManagerRDSMariaDBRotationSingleUser` | PyMySQL |",
     "`mariadb` has an adapter"),
    ("| Cassandra (`cassandra`) | `SecretsManagerCassandraSingleUser` | cassandra-driver |",
     "`cassandra`: not AWS's sample function names"),
])
def test_the_engine_check_catches_a_stale_row(row: str, problem: str) -> None:
    # GIVEN the page with one more row in the engines table
    text = MIGRATION.read_text()
    anchor = next(line for line in text.splitlines() if line.startswith("| Oracle (`oracle`)"))
    # WHEN / THEN the check reports it
    problems = engine_problems(text.replace(anchor, f"{anchor}\n{row}"))
    assert any(p.startswith(problem) for p in problems), problems


# --- handler names -----------------------------------------------------------------------------


def test_the_handler_names_given_resolve_to_the_frameworks_handler() -> None:
    # GIVEN the handler names the page gives
    names = handler_names(MIGRATION.read_text())
    # WHEN each is imported as Lambda would
    # THEN each is rotation.handler.lambda_handler, and the template uses the project's own name
    assert names == {"rotation.handler.lambda_handler", "lambda_function.lambda_handler"}
    assert all(resolve(name) is handler.lambda_handler for name in names)
    assert "Handler: rotation.handler.lambda_handler" in (ROOT / "template.yaml").read_text()


def test_the_build_puts_the_shim_at_the_package_root(tmp_path: Path) -> None:
    # WHEN the function build's commands are listed
    artifacts = tmp_path / "artifacts"
    commands = subprocess.run(
        ["make", "-n", "--no-print-directory", "build-RotationFunction",
         f"ARTIFACTS_DIR={artifacts}"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=True).stdout
    # THEN it copies layers/function/lambda_function.py to the root, where Lambda looks for the
    # handler's module
    assert f'cp "{SHIM}" "{artifacts}/lambda_function.py"' in commands


@pytest.mark.parametrize("name", ["lambda_function.handler", "rotation.lambda_handler",
                                  "lambda_handler.lambda_handler"])
def test_a_name_that_is_not_the_handler_does_not_resolve(name: str) -> None:
    # WHEN / THEN a wrong name fails to resolve, as it would fail Lambda's init
    with pytest.raises((AttributeError, ImportError)):
        resolve(name)
