"""Adapters load lazily by engine name; an unknown engine names the known ones."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rotation.adapters import BUILTIN, available_engines, get_adapter, load_adapter_class
from rotation.errors import UnsupportedEngineError


def test_builtin_engines_cover_aws_engine_names() -> None:
    assert set(BUILTIN) >= {"postgres", "aurora-postgresql", "mysql", "mariadb", "aurora-mysql"}


def test_unknown_engine_lists_the_known_ones() -> None:
    with pytest.raises(UnsupportedEngineError) as info:
        load_adapter_class("oracle")
    assert "'oracle'" in str(info.value)
    for engine in ("postgres", "mariadb"):
        assert engine in str(info.value)
    assert "rotation.adapters" in str(info.value)


def test_unloadable_adapter_says_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    import rotation.adapters

    monkeypatch.setattr(rotation.adapters, "BUILTIN", {"x": "not_a_module_abc:Adapter"})
    with pytest.raises(UnsupportedEngineError) as info:
        load_adapter_class("x")
    assert "not_a_module_abc:Adapter" in str(info.value)
    assert "ModuleNotFoundError" in str(info.value)
    assert "layer" in str(info.value)


def test_postgres_adapter_loads_by_engine_name() -> None:
    adapter = get_adapter("aurora-postgresql")
    assert adapter.family == "postgres"
    assert "postgres" in available_engines()


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True).stdout
    return set(out.split())


def test_importing_the_handler_loads_no_driver() -> None:
    modules = _modules_after("import rotation.handler, rotation.dispatcher")
    assert not {m for m in modules if m.split(".")[0] in ("psycopg", "pymysql", "moto")}


def test_driver_loads_on_first_use() -> None:
    modules = _modules_after("from rotation.adapters import get_adapter\nget_adapter('postgres')")
    assert "psycopg" in modules
    assert "pymysql" not in modules
