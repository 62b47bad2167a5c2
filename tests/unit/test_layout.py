"""The layout's one rule: the runtime (what the function package carries) never imports the
laptop tooling in ``rotation/tools/``. Checked two ways: statically, every import statement of
every runtime module; and at run time, a fresh interpreter that imports every runtime module
(adapters included) ends with no ``rotation.tools`` module loaded."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rotation"
TOOLS = PACKAGE / "tools"


def runtime_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if TOOLS not in p.parents)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names (relative imports resolved)."""
    names: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else \
        module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_the_runtime_and_the_tools_are_both_there() -> None:
    # GIVEN / WHEN the two halves are listed
    runtime = {module_name(p) for p in runtime_modules()}
    tools = {module_name(p) for p in TOOLS.glob("*.py")}

    # THEN each holds what it should (a move that lost a module fails here)
    assert {"rotation.handler", "rotation.dispatcher", "rotation.steps",
            "rotation.adapters.postgres"} <= runtime
    assert {"rotation.tools.cli", "rotation.tools.doctor", "rotation.tools.demo",
            "rotation.tools.local", "rotation.tools.sandbox"} <= tools


@pytest.mark.parametrize("path", runtime_modules(), ids=lambda p: module_name(p))
def test_no_runtime_module_imports_the_tools(path: Path) -> None:
    # GIVEN a runtime module / WHEN its import statements are read
    tooling = sorted(n for n in imported_names(path)
                     if n == "rotation.tools" or n.startswith("rotation.tools."))

    # THEN none names rotation.tools
    assert tooling == [], f"{module_name(path)} imports {tooling}"


def test_importing_every_runtime_module_loads_no_tool() -> None:
    # GIVEN a fresh interpreter / WHEN it imports every runtime module
    modules = [module_name(p) for p in runtime_modules()]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.startswith('rotation.tools')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout

    # THEN no rotation.tools module was loaded along the way
    assert out.strip() == "[]"
