"""Engine name -> adapter class, loaded lazily: a driver is imported only when its engine is used.

Built-in engines map to ``module:Class`` strings; plug-ins add or override engines through the
entry-point group ``rotation.adapters`` (engine name -> ``module:Class``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, cast

from rotation.adapters._tls import default_ca_file
from rotation.errors import AdapterLoadError, UnsupportedEngineError

if TYPE_CHECKING:
    from rotation.adapters._layers import Mismatch
    from rotation.adapters.base import AdapterOptions, DatabaseAdapter

ENTRY_POINT_GROUP = "rotation.adapters"

BUILTIN: Mapping[str, str] = {
    "postgres": "rotation.adapters.postgres:PostgresAdapter",
    "aurora-postgresql": "rotation.adapters.postgres:PostgresAdapter",
    "mysql": "rotation.adapters.mysql:MySQLAdapter",
    "mariadb": "rotation.adapters.mysql:MySQLAdapter",
    "aurora-mysql": "rotation.adapters.mysql:MySQLAdapter",
    "redis": "rotation.adapters.redis:RedisAdapter",
    "elasticache": "rotation.adapters.elasticache:ElastiCacheAdapter",
}


def available_engines() -> dict[str, str]:
    """Every engine this installation can rotate: built-ins plus entry points (which win)."""
    engines = dict(BUILTIN)
    if not _may_have_plugins():
        return engines
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        engines[ep.name] = ep.value
    return engines


def _may_have_plugins() -> bool:
    """False only when no ``entry_points.txt`` on ``sys.path`` names the group: reading those
    files directly takes a quarter of what ``importlib.metadata`` spends on every distribution
    (milliseconds of a new container's first step). Anything this shortcut cannot see through
    (a zip file on the path, an unreadable folder) sends the caller to the full scan."""
    marker = f"[{ENTRY_POINT_GROUP}]"
    for entry in sys.path:
        path = entry or "."
        if os.path.isfile(path):
            return True  # a zip archive: importlib.metadata reads it
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            continue
        except OSError:
            return True
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                try:
                    with open(os.path.join(path, name, "entry_points.txt"),
                              encoding="utf-8") as file:
                        if marker in file.read():
                            return True
                except FileNotFoundError:
                    continue
                except OSError:
                    return True
    return False


def load_adapter_class(engine: str,
                       engines: Mapping[str, str] | None = None) -> type[DatabaseAdapter]:
    """The adapter class for ``engine``, from ``engines`` (default: :func:`available_engines`,
    which reads every installed distribution's entry points: a few milliseconds)."""
    engines = available_engines() if engines is None else engines
    target = engines.get(engine)
    if target is None:
        raise UnsupportedEngineError(
            f"no adapter for engine {engine[:64]!r}",
            hint="use one of " + ", ".join(sorted(engines))
                 + f", or install a plug-in in entry-point group {ENTRY_POINT_GROUP}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return cast("type[DatabaseAdapter]", getattr(module, class_name))
    except (ImportError, AttributeError) as exc:
        mismatch = _layer_mismatch(engine, target, exc)
        if mismatch is not None:
            raise AdapterLoadError(
                f"the adapter {target} for engine {engine!r} cannot be loaded: "
                f"{mismatch.problem} ({type(exc).__name__}: {exc})", hint=mismatch.fix) from exc
        raise AdapterLoadError(
            f"the adapter {target} for engine {engine!r} cannot be loaded: "
            f"{type(exc).__name__}: {exc}",
            hint=_load_hint(engine, target, exc)) from exc


def _layer_mismatch(engine: str, target: str,
                    exc: ImportError | AttributeError) -> Mismatch | None:
    """A built-in engine's driver that does not import because its layer was built for another
    architecture or Python (the layer's marker says which). Read only on this failure path."""
    if BUILTIN.get(engine) != target or not isinstance(exc, ImportError):
        return None
    from rotation.adapters._layers import layer_mismatch

    try:
        return layer_mismatch(engine)
    except Exception:  # the diagnosis must never hide the import error it explains
        return None


def _load_hint(engine: str, target: str, exc: ImportError | AttributeError) -> str:
    """What to do about an adapter that cannot be loaded: a built-in engine lacks its driver
    (layer); a plug-in's distribution, named, lacks its package or one of its imports."""
    if BUILTIN.get(engine) == target:
        return ("deploy the driver layer for this engine (layers/) or pip install "
                "'rotation[postgres]' / 'rotation[mysql]' / 'rotation[redis]'")
    module_name, _, class_name = target.partition(":")
    declared = next((ep for ep in entry_points(group=ENTRY_POINT_GROUP)
                     if ep.name == engine and ep.value == target), None)
    dist = declared.dist if declared is not None else None
    source = (f"the plug-in distribution {dist.name} {dist.version} declares it in entry-point "
              f"group {ENTRY_POINT_GROUP}" if dist is not None
              else "it is a plug-in adapter, not a built-in one")
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing and (module_name == missing or module_name.startswith(missing + ".")):
        return (f"{source}, but its module {module_name} cannot be imported: the plug-in's "
                "package is not installed where the function runs (only its metadata is, or "
                "the entry point names a path inside a source tree). Install the distribution "
                "itself in the function package or a layer (AdditionalLayerArns)")
    if missing:
        return (f"{source}; its module {module_name} imports {missing}, which is not "
                "installed where the function runs: ship it with the plug-in (function package "
                "or a layer)")
    return (f"{source}; its module {module_name} failed to import or has no attribute "
            f"{class_name}: fix the plug-in, or its entry point's module:Class")


class AdapterRegistry:
    """One adapter instance per engine family, built on first use and kept for the container."""

    def __init__(self, options: AdapterOptions,
                 engines: Mapping[str, str] | None = None) -> None:
        self.options = options
        self._engines = None if engines is None else dict(engines)
        self._adapters: dict[str, DatabaseAdapter] = {}

    def engines(self) -> Mapping[str, str]:
        """Engine -> ``module:Class``, read once (entry points are scanned once per container,
        in Lambda's init phase when the handler module builds the app there)."""
        if self._engines is None:
            self._engines = available_engines()
        return self._engines

    def with_options(self, options: AdapterOptions) -> AdapterRegistry:
        """A registry with other options (e.g. timeouts cut to an invocation's remaining time)."""
        return AdapterRegistry(options, self.engines())

    def get(self, engine: str) -> DatabaseAdapter:
        adapter = self._adapters.get(engine)
        if adapter is None:
            adapter = load_adapter_class(engine, self.engines())(self.options)
            self._adapters[engine] = adapter
        return adapter


def get_adapter(engine: str, options: AdapterOptions | None = None) -> DatabaseAdapter:
    from rotation.adapters.base import AdapterOptions

    return load_adapter_class(engine)(options or AdapterOptions())


__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "AdapterRegistry", "available_engines",
           "default_ca_file", "get_adapter", "load_adapter_class"]
