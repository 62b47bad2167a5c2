"""Adapters load lazily by engine name; an unknown engine names the known ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rotation.adapters import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    available_engines,
    get_adapter,
    load_adapter_class,
)
from rotation.errors import AdapterLoadError, UnsupportedEngineError


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


def test_an_unloadable_builtin_engine_suggests_its_driver_layer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a built-in engine whose module cannot be imported (its driver layer is missing)
    import rotation.adapters

    monkeypatch.setattr(rotation.adapters, "BUILTIN",
                        {**BUILTIN, "postgres": "no_such_driver_module_abc:PostgresAdapter"})

    # WHEN its adapter is loaded
    with pytest.raises(AdapterLoadError) as info:
        load_adapter_class("postgres")

    # THEN the hint is the driver layer's, and the cause is the configuration
    assert info.value.hint.startswith("deploy the driver layer for this engine (layers/)")
    assert "plug-in" not in str(info.value)
    assert info.value.category == "configuration"


def _plugin(site: Path, module_target: str, *, module_source: str | None = None) -> None:
    """A plug-in distribution as pip records it: metadata and an entry point (and, when given,
    its module) in a directory on sys.path."""
    dist_info = site / "rotation_broken_plugin-1.2.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rotation-broken-plugin\nVersion: 1.2.3\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbroken-engine = {module_target}\n")
    if module_source is not None:
        module_name = module_target.partition(":")[0]
        (site / f"{module_name}.py").write_text(module_source)


@pytest.mark.parametrize(("target", "module_source", "says"), [
    # the metadata is installed, the package is not (or the entry point names a source path)
    ("examples.no_such_plugin_abc.adapter:Adapter", None,
     "its module examples.no_such_plugin_abc.adapter cannot be imported: the plug-in's package "
     "is not installed where the function runs"),
    # the package is installed, a module it imports is not
    ("rotation_plugin_needs_driver_abc:Adapter", "import no_such_driver_xyz\n",
     "imports no_such_driver_xyz, which is not installed"),
    # the module imports, the class is not there
    ("rotation_plugin_without_class_abc:Adapter", "",
     "has no attribute Adapter"),
])
def test_an_unloadable_plugin_names_its_distribution_not_a_driver_layer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str,
        module_source: str | None, says: str) -> None:
    # GIVEN a plug-in's entry point whose adapter cannot be loaded
    _plugin(tmp_path, target, module_source=module_source)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert available_engines()["broken-engine"] == target

    # WHEN the engine's adapter is loaded
    with pytest.raises(AdapterLoadError) as info:
        load_adapter_class("broken-engine")

    # THEN the error names the distribution that declared it and what cannot be imported, and
    # sends nobody to a driver layer
    assert target in str(info.value)
    assert info.value.hint.startswith(
        f"the plug-in distribution rotation-broken-plugin 1.2.3 declares it in entry-point group "
        f"{ENTRY_POINT_GROUP}")
    assert says in info.value.hint
    assert "driver layer" not in str(info.value)


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


def test_without_a_plugin_on_the_path_the_metadata_scan_is_skipped(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GIVEN a path whose distributions declare no adapter, and a metadata scan that would fail
    import rotation.adapters as adapters

    (tmp_path / "other-1.0.dist-info").mkdir()
    (tmp_path / "other-1.0.dist-info" / "entry_points.txt").write_text(
        "[console_scripts]\nother = other:main\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])

    def scan(**_: object) -> list[object]:
        raise AssertionError("the full metadata scan ran")

    monkeypatch.setattr(adapters, "entry_points", scan)

    # WHEN the engines are listed / THEN they are the built-ins, read without the full scan
    assert adapters.available_engines() == dict(adapters.BUILTIN)


def test_a_plugin_on_the_path_is_found_by_the_full_scan(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GIVEN a distribution on the path declaring an adapter for engine "oracle"
    import rotation.adapters as adapters

    info = tmp_path / "rotation_oracle-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rotation-oracle\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[rotation.adapters]\noracle = rotation_oracle:OracleAdapter\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])

    # WHEN the engines are listed / THEN the plug-in's engine is there
    assert adapters.available_engines()["oracle"] == "rotation_oracle:OracleAdapter"
