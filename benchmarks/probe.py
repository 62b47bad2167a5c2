"""A fresh process playing one Lambda container: ``python -m benchmarks.probe MODE``.

``baseline``: import boto3 and Powertools' Logger, as every Python function on Lambda does.
``rotation``: run the four steps of one rotation through ``rotation.handler.lambda_handler``, all
in this process (one warm container), against the Secrets Manager endpoint named by
``SECRETS_MANAGER_ENDPOINT`` and the database named in the secret. The event fields come as JSON
on stdin: ``{"SecretId", "ClientRequestToken", "RotationToken"}``.
``cold``: the same, timed as a whole cold start: ``import rotation.handler`` (which runs Lambda's
init phase when the environment says Lambda, as the benchmark sets it; ``init()`` is called
again in case it did not, a no-op when the app is built), then the four steps.
``cold-sample``: the same with one of AWS's sample functions, imported from the file named in the
stdin JSON (``"sample": {"engine", "path", "ca_file"}``) as Lambda's runtime imports a handler.

Prints one line ``BENCH-RESULT {json}`` with ``maxrss_kb`` (``ru_maxrss``: peak resident set, KiB
on Linux) and, for the rotation modes, each step's duration and outcome; the cold modes add
``marks`` (``time.monotonic_ns()``, a clock shared by every process on the machine): when this
module started running, when the function was imported and ready, and when finishSecret ended.
Nothing but the function's own code (and its driver) is imported here: no moto, no sandbox.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

STARTED_NS = time.monotonic_ns()  # the interpreter is up and this module's imports are done
MARKER = "BENCH-RESULT "
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


class _Context:
    function_name = "rotation-probe"
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _sink_stdout() -> Any:
    """EMF metric documents (printed) go to /dev/null; their cost is real."""
    sink = open(os.devnull, "w")  # noqa: SIM115 - kept open to the end of the process
    sys.stdout = sink
    return sink


def _steps(handler: Callable[[dict[str, Any], Any], Any],
           fields: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    keys: tuple[str, ...] = ("SecretId", "ClientRequestToken", "RotationToken")
    event_fields: dict[str, Any] = {k: fields[k] for k in keys if k in fields}
    for step in STEPS:
        event: dict[str, Any] = {"Step": step, **event_fields}
        started = time.perf_counter()
        try:
            result = handler(event, _Context())
            outcome = result.get("Outcome", "done") if isinstance(result, dict) else "done"
            error = None
        except Exception as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
        steps.append({"step": step, "ms": round((time.perf_counter() - started) * 1000, 1),
                      "outcome": outcome, "error": error})
        if error:
            break
    sys.stdout = sys.__stdout__
    return steps


def _drivers() -> list[str]:
    return sorted(m for m in ("psycopg", "pymysql", "pg", "pgdb", "moto") if m in sys.modules)


def _quiet_framework_logs() -> None:
    """The framework's log lines are written (their cost is real), to /dev/null."""
    from rotation.logs import logger

    logger.registered_handler.stream = _sink_stdout()  # type: ignore[attr-defined]


def _rotation(fields: dict[str, Any]) -> dict[str, Any]:
    import rotation.handler

    _quiet_framework_logs()
    steps = _steps(rotation.handler.lambda_handler, fields)
    return {"steps": steps, "modules": _drivers()}


def _cold(fields: dict[str, Any]) -> dict[str, Any]:
    import rotation.handler  # on Lambda (AWS_LAMBDA_FUNCTION_NAME + AWS_EXECUTION_ENV) runs init

    init = getattr(rotation.handler, "init", None)
    if init is not None:
        init()  # builds the app if the import did not; a no-op when it did
    ready_ns = time.monotonic_ns()
    _quiet_framework_logs()
    steps = _steps(rotation.handler.lambda_handler, fields)
    end_ns = time.monotonic_ns()
    return {"steps": steps, "modules": _drivers(),
            "marks": {"start_ns": STARTED_NS, "ready_ns": ready_ns, "end_ns": end_ns}}


def _cold_sample(fields: dict[str, Any]) -> dict[str, Any]:
    from benchmarks._sample_loader import import_sample, lambda_root_logging

    sample = fields["sample"]
    with lambda_root_logging():
        module = import_sample(sample["engine"], sample["path"], sample["ca_file"])
        ready_ns = time.monotonic_ns()
        _sink_stdout()
        steps = _steps(module.lambda_handler, fields)
        end_ns = time.monotonic_ns()
    return {"steps": steps, "modules": _drivers(),
            "marks": {"start_ns": STARTED_NS, "ready_ns": ready_ns, "end_ns": end_ns}}


MODES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "rotation": _rotation, "cold": _cold, "cold-sample": _cold_sample}


def _vm_hwm_kb() -> int | None:
    """The kernel's own peak-RSS figure for this process image (Linux), as a cross-check."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else "baseline"
    result: dict[str, Any] = {"mode": mode}
    if mode == "baseline":
        import boto3
        import botocore.config
        from aws_lambda_powertools import Logger

        del boto3, botocore, Logger
    elif mode in MODES:
        result.update(MODES[mode](json.loads(sys.stdin.read())))
    else:
        print(f"unknown mode {mode!r}: baseline, {', '.join(MODES)}", file=sys.stderr)
        return 2
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["vmhwm_kb"] = _vm_hwm_kb()
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
