"""Loading one of AWS's sample functions so that it trusts the sandbox's CA; its root logging.

Kept apart from :mod:`benchmarks.samples` and light on imports: :mod:`benchmarks.probe` uses it in
a fresh process whose start-up is measured. See :mod:`benchmarks.samples` for the whole story.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

SAMPLE_CA = "/etc/pki/tls/cert.pem"  # the CA file the samples pass to their driver
# The sample's driver module (a global of the sample module) and the keyword that names the CA.
DRIVERS: dict[str, tuple[str, str]] = {"mariadb": ("pymysql", "ssl"),
                                       "postgres": ("pgdb", "sslrootcert")}


class _DriverProxy(types.ModuleType):
    """The sample's view of its driver module: everything from the real module, but ``connect``
    with the sandbox's CA file in place of the one the sample names."""

    def __init__(self, real: types.ModuleType, connect: Callable[..., Any]) -> None:
        super().__init__(real.__name__, real.__doc__)
        self._real = real
        self.connect = connect

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _with_ca(connect: Callable[..., Any], keyword: str, ca_file: str) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        value = kwargs.get(keyword)
        if keyword == "ssl" and isinstance(value, dict) and value.get("ca") == SAMPLE_CA:
            kwargs[keyword] = {**value, "ca": ca_file}
        elif value == SAMPLE_CA:
            kwargs[keyword] = ca_file
        return connect(*args, **kwargs)

    return wrapped


def trust(module: types.ModuleType, engine: str, ca_file: str) -> types.ModuleType:
    name, keyword = DRIVERS[engine]
    real = module.__dict__[name]
    setattr(module, name, _DriverProxy(real, _with_ca(real.connect, keyword, ca_file)))
    return module


def import_sample(engine: str, path: str, ca_file: str) -> types.ModuleType:
    """Import a sample file the way Lambda's runtime imports a handler module (bytecode cached
    like any module's: under ``PYTHONPYCACHEPREFIX`` when set, which the benchmark does so that
    nothing is written into the user's checkout), its driver trusting ``ca_file``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lambda_function", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}", path=path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return trust(module, engine, ca_file)


@contextlib.contextmanager
def lambda_root_logging(stream: Any | None = None) -> Iterator[None]:
    """The root logger as Lambda's Python runtime sets it up (one handler, its line format),
    writing to ``stream`` (default /dev/null): the samples log through the root logger, and the
    cost of formatting their lines is real. The root logger's level and handlers are restored
    afterwards (the sample sets the level to INFO when its module runs)."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    with contextlib.ExitStack() as stack:
        if stream is None:
            stream = stack.enter_context(open(os.devnull, "w"))
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S"))
        root.handlers = [handler]
        try:
            yield
        finally:
            root.handlers = saved_handlers
            root.setLevel(saved_level)
