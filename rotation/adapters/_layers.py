"""Was the engine's driver layer built for the Lambda target this function runs on?

Every driver layer's build (``layers/layer.mk``) writes ``rotation-layers/<layer>.json``, which
Lambda unpacks as ``/opt/rotation-layers/<layer>.json``: ``{"architecture": "arm64", "layer":
"postgres", "python": "3.12"}``. A layer built for another architecture or Python minor version
ships compiled wheels that do not import (psycopg-binary), which would otherwise read as a missing
layer. :mod:`rotation.adapters` imports this module only after a driver import failed, so a
rotation that loads its driver never pays for it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MARKERS_DIR_ENV = "ROTATION_LAYER_MARKERS_DIR"  # for tests; Lambda's is the default
DEFAULT_MARKERS_DIR = "/opt/rotation-layers"

# Built-in engine -> the driver layer it needs (layers/<name>/, template.yaml's <Name>Layer).
# ElastiCache rotates through its API (boto3, in the function package): no layer.
DRIVER_LAYER: Mapping[str, str] = {
    "postgres": "postgres", "aurora-postgresql": "postgres",
    "mysql": "mysql", "mariadb": "mysql", "aurora-mysql": "mysql",
    "redis": "redis",
}
# platform.machine() -> the template's Architecture value
_ARCHITECTURES: Mapping[str, str] = {"x86_64": "x86_64", "amd64": "x86_64",
                                     "aarch64": "arm64", "arm64": "arm64"}
# What a marker may hold: anything else is a garbled file, ignored (and never echoed to a log)
_VALID = {"layer": re.compile(r"[a-z0-9-]{1,32}"), "architecture": re.compile(r"x86_64|arm64"),
          "python": re.compile(r"3\.\d{1,2}")}
_MAX_MARKER_BYTES = 4096


@dataclass(frozen=True)
class Target:
    """A Lambda architecture and Python minor version: the template's Architecture and
    Runtime."""

    architecture: str
    python: str

    def __str__(self) -> str:
        return f"{self.architecture}/python{self.python}"

    @property
    def parameter_overrides(self) -> str:
        return f"Architecture={self.architecture} Runtime=python{self.python}"


@dataclass(frozen=True)
class Mismatch:
    """A driver layer built for another target than the running function's."""

    layer: str
    built_for: Target
    running: Target

    @property
    def problem(self) -> str:
        return f"the {self.layer} layer was built for {self.built_for}, this function runs on " \
               f"{self.running}"

    @property
    def fix(self) -> str:
        pair = self.running.parameter_overrides
        return (f"rebuild and deploy with one pair: `sam build --parameter-overrides {pair} && "
                f"sam deploy --parameter-overrides {pair}` (or set parameter_overrides = "
                f"\"{pair}\" once in samconfig.toml's [default.global.parameters], which both "
                "commands read); for layer zips attached by hand, `make package "
                f"ARCH={self.running.architecture} PY={self.running.python}`")


def lambda_architecture(machine: str) -> str:
    """The template's Architecture for a ``platform.machine()`` value (``aarch64`` -> ``arm64``);
    an unknown machine is returned as is."""
    return _ARCHITECTURES.get(machine.lower(), machine)


def running_target() -> Target:
    return Target(lambda_architecture(platform.machine()),
                  f"{sys.version_info[0]}.{sys.version_info[1]}")


def markers_dir() -> Path:
    return Path(os.environ.get(MARKERS_DIR_ENV) or DEFAULT_MARKERS_DIR)


def read_markers(directory: Path | None = None) -> dict[str, Target]:
    """Layer name -> the target it was built for, from every readable, well-formed marker in
    ``directory`` (default: :func:`markers_dir`). No directory, an unreadable file or a garbled
    one: left out, never an error (this runs while another error is being reported)."""
    folder = markers_dir() if directory is None else directory
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return {}
    found: dict[str, Target] = {}
    for path in paths:
        try:
            with path.open("rb") as file:
                raw = file.read(_MAX_MARKER_BYTES + 1)
            data = json.loads(raw) if len(raw) <= _MAX_MARKER_BYTES else None
        except (OSError, ValueError):  # unreadable, a folder, not UTF-8, not JSON
            continue
        if not isinstance(data, dict) or not all(
                isinstance(data.get(key), str) and pattern.fullmatch(data[key])
                for key, pattern in _VALID.items()):
            continue
        found[data["layer"]] = Target(data["architecture"], data["python"])
    return found


def layer_mismatch(engine: str, *, directory: Path | None = None,
                   running: Target | None = None) -> Mismatch | None:
    """The mismatch that explains why ``engine``'s driver did not import, if its layer's marker
    names another target than ``running`` (default: this process's). None when the engine needs
    no layer, its layer has no readable marker (not deployed, or built before markers existed),
    or the marker matches (the import failed for another reason)."""
    layer = DRIVER_LAYER.get(engine)
    if layer is None:
        return None
    built_for = read_markers(directory).get(layer)
    running = running_target() if running is None else running
    if built_for is None or built_for == running:
        return None
    return Mismatch(layer, built_for, running)


__all__ = ["DEFAULT_MARKERS_DIR", "DRIVER_LAYER", "MARKERS_DIR_ENV", "Mismatch", "Target",
           "lambda_architecture", "layer_mismatch", "markers_dir", "read_markers",
           "running_target"]
