"""AWS's sample single-user rotation functions, run side by side with this framework.

The samples' code is **not** part of this repository and is never copied into it: the benchmark
reads it from the user's own checkout of github.com/aws-samples/aws-secrets-manager-rotation-lambdas
(``--aws-samples DIR`` or env ``AWS_SAMPLES_DIR``) without writing anything into that checkout
(no ``.pyc`` either), and runs it unchanged, with two adjustments made from the outside:

* its database driver's ``connect`` is wrapped so that the CA file it names
  (``/etc/pki/tls/cert.pem``, Amazon Linux's trust store) becomes the sandbox's CA file; nothing is
  written to ``/etc``;
* ``SECRETS_MANAGER_ENDPOINT`` (which the samples read) is set: in-process to
  ``https://secretsmanager.us-east-1.amazonaws.com``, which moto intercepts, and for a separate
  process to the benchmark's HTTP endpoint (:mod:`benchmarks.smproxy`).

The MariaDB sample needs PyMySQL (a dependency of this project); the PostgreSQL sample imports
PyGreSQL's ``pg`` and ``pgdb``, which this project does not depend on: ``pip install PyGreSQL``
(it compiles against libpq: Debian/Ubuntu ``libpq-dev``, Fedora/Amazon Linux ``libpq-devel``).

Nothing here imports moto or the sandbox. In-process (new-container mode) a sample is compiled
once and run into a fresh module for every rotation (:func:`load_sample`); in a fresh process
(:mod:`benchmarks.probe`) it is imported like a handler module (:func:`import_sample`).
"""

from __future__ import annotations

import os
import time
import types
from dataclasses import dataclass
from pathlib import Path

from benchmarks._sample_loader import (
    SAMPLE_CA,
    import_sample,
    lambda_root_logging,
    trust,
)

ENV_VAR = "AWS_SAMPLES_DIR"
REPOSITORY = "github.com/aws-samples/aws-secrets-manager-rotation-lambdas"
SAMPLE_DIRS: dict[str, str] = {
    "mariadb": "SecretsManagerRDSMariaDBRotationSingleUser",
    "postgres": "SecretsManagerRDSPostgreSQLRotationSingleUser",
}
SAMPLE_FILE = "lambda_function.py"
IN_PROCESS_ENDPOINT = "https://secretsmanager.us-east-1.amazonaws.com"  # moto intercepts it
INSTALL_HINT: dict[str, str] = {
    "mariadb": "PyMySQL (a dependency of this project)",
    "postgres": "PyGreSQL (`pip install PyGreSQL` into the venv; it compiles against libpq: "
                "Debian `libpq-dev`, Amazon Linux `libpq-devel`)",
}
# What an earlier session measured for the samples in the new-container mode (moto + the same
# throwaway servers), quoted in the issue: shown when the samples are not run, never as a
# measurement of this run.
REFERENCE_MS: dict[str, tuple[float, float]] = {"mariadb": (37.0, 42.0),
                                                "postgres": (66.0, 87.0)}


@dataclass(frozen=True)
class SampleSource:
    """One sample file, compiled once (each load executes it into a fresh module)."""

    engine: str
    path: Path
    code: types.CodeType


def samples_dir(option: str | None) -> Path | None:
    """``--aws-samples DIR``, else env ``AWS_SAMPLES_DIR``, else None (samples not run)."""
    value = option or os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser().resolve() if value else None


def find_sources(directory: Path, engines: list[str]) -> tuple[dict[str, SampleSource],
                                                                 dict[str, str]]:
    """The sample of each engine found under ``directory``, and why the others cannot run."""
    sources: dict[str, SampleSource] = {}
    errors: dict[str, str] = {}
    for engine in engines:
        if engine not in SAMPLE_DIRS:
            errors[engine] = "AWS publishes no single-user sample for this engine"
            continue
        path = directory / SAMPLE_DIRS[engine] / SAMPLE_FILE
        try:
            text = path.read_text()
            code = compile(text, str(path), "exec", dont_inherit=True)
        except OSError as exc:
            errors[engine] = (f"{path} cannot be read ({type(exc).__name__}): pass the root of "
                              f"a checkout of {REPOSITORY}")
            continue
        except SyntaxError as exc:
            errors[engine] = f"{path} does not compile: {exc}"
            continue
        sources[engine] = SampleSource(engine, path, code)
    return sources, errors


def load_sample(source: SampleSource, ca_file: str) -> tuple[types.ModuleType, float]:
    """A fresh sample module (its module code run again, as in a new container) whose driver
    trusts ``ca_file``, and how long its module code took (ms): the sample's init phase.

    Its imports are ``sys.modules`` hits once the driver is imported. Raises ImportError when
    the driver is missing (see :data:`INSTALL_HINT`).
    """
    module = types.ModuleType(f"aws_sample_{source.engine}")
    module.__file__ = str(source.path)
    started = time.perf_counter()
    exec(source.code, module.__dict__)  # noqa: S102 - the user's own checkout, by design
    init_ms = (time.perf_counter() - started) * 1000
    return trust(module, source.engine, ca_file), init_ms


def describe_error(engine: str, exc: BaseException) -> str:
    """Why a sample could not be loaded, with what the user must install."""
    if isinstance(exc, ImportError):
        return (f"the {engine} sample cannot import `{getattr(exc, 'name', '') or exc}`: "
                f"install {INSTALL_HINT[engine]}")
    return f"{type(exc).__name__}: {exc}"


__all__ = ["ENV_VAR", "IN_PROCESS_ENDPOINT", "REFERENCE_MS", "SAMPLE_CA", "SampleSource",
           "describe_error", "find_sources", "import_sample", "lambda_root_logging",
           "load_sample", "samples_dir"]

