"""A fresh process playing one Lambda container: ``python -m benchmarks.probe MODE``.

``baseline``: import boto3 and Powertools' Logger, as every Python function on Lambda does.
``rotation``: run the four steps of one rotation through ``rotation.handler.lambda_handler``, all
in this process (one warm container), against the Secrets Manager endpoint named by
``SECRETS_MANAGER_ENDPOINT`` and the database named in the secret. The event fields come as JSON
on stdin: ``{"SecretId", "ClientRequestToken", "RotationToken"}``.

Prints one line ``BENCH-RESULT {json}`` with ``maxrss_kb`` (``ru_maxrss``: peak resident set, KiB
on Linux) and, for ``rotation``, each step's duration and outcome. Nothing but the function's own
code (and its driver) is imported here: no moto, no sandbox.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

MARKER = "BENCH-RESULT "
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


class _Context:
    function_name = "rotation-probe"
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _rotation(fields: dict[str, Any]) -> dict[str, Any]:
    import rotation.handler
    from rotation.logs import logger

    # Log lines and EMF metric documents are written (their cost is real), to /dev/null.
    sink = open(os.devnull, "w")  # noqa: SIM115 - kept open to the end of the process
    logger.registered_handler.stream = sink  # type: ignore[attr-defined]
    sys.stdout = sink
    steps: list[dict[str, Any]] = []
    for step in STEPS:
        event = {"Step": step, **fields}
        started = time.perf_counter()
        try:
            outcome = rotation.handler.lambda_handler(event, _Context()).get("Outcome", "done")
            error = None
        except Exception as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
        steps.append({"step": step, "ms": round((time.perf_counter() - started) * 1000, 1),
                      "outcome": outcome, "error": error})
        if error:
            break
    sys.stdout = sys.__stdout__
    drivers = sorted(m for m in ("psycopg", "pymysql", "moto") if m in sys.modules)
    return {"steps": steps, "modules": drivers}


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
    elif mode == "rotation":
        result.update(_rotation(json.loads(sys.stdin.read())))
    else:
        print(f"unknown mode {mode!r}: baseline or rotation", file=sys.stderr)
        return 2
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["vmhwm_kb"] = _vm_hwm_kb()
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
