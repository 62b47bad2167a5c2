"""`make bench`: what one rotation costs, measured on the local stack.

Secrets Manager is moto, in-process (``rotation.tools.local.local_stack``); the databases are
throwaway PostgreSQL and MariaDB servers with TLS (``rotation.tools.sandbox.Sandbox``). Every
rotation goes through the public ``rotation.handler.lambda_handler``, driven by the local service
driver.

Run ``python -m benchmarks.run [--quick] [--output benchmarks/results-YYYY-MM-DD.md]``.
Nothing here is collected by pytest: a slow machine never fails the test suite. The exact call
and login counts are pinned by ``tests/integration/test_cost_counts.py`` instead.
"""

from __future__ import annotations

__all__: list[str] = []
