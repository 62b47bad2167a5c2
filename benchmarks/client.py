"""Connections per second through ``rotation.client`` against a plain driver connect, on the
same sandbox server, with the same TLS parameters (``creds.connection_kwargs()``, so both pay the
same handshake): what the client adds on its happy path (no Secrets Manager call, one login).

Rounds alternate which side goes first, and the overhead is the median of the rounds' ratios, so
a machine that slows down mid-run weighs on both sides alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.harness import Harness
from benchmarks.tables import Table, verdict

OVERHEAD_TARGET = 0.05  # the client may cost at most 5% of the plain connect rate


def _rate(connect: Callable[[], Any], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        connect().close()
    return count / (time.perf_counter() - started)


def measure(harness: Harness, engine: str, rounds: int, per_round: int) -> dict[str, Any]:
    """Connections per second, plain and through the client, for one engine's server."""
    import boto3

    from rotation.client import RotatingCredentials

    target = harness.new_target(engine)
    server = harness.servers[engine]
    # The application's own client on the same (moto) backend, as in a real process.
    client = boto3.client("secretsmanager", region_name=harness.sm.meta.region_name)
    creds = RotatingCredentials(target.arn, client=client, ca_bundle=server.ca_file)
    creds.connect().close()  # the one Secrets Manager read, and the driver's import
    kwargs = creds.connection_kwargs()
    if engine == "postgres":
        import psycopg

        def plain() -> Any:
            return psycopg.connect(**kwargs)
    else:
        import pymysql

        def plain() -> Any:
            return pymysql.connect(**kwargs)

    plain().close()
    calls_before = creds.stats()["secrets_manager_calls"]
    plain_rates: list[float] = []
    client_rates: list[float] = []
    for index in range(rounds):
        sides = [(plain_rates, plain), (client_rates, creds.connect)]
        for rates, connect in sides if index % 2 == 0 else reversed(sides):
            rates.append(_rate(connect, per_round))
    ratios = [c / p for c, p in zip(client_rates, plain_rates, strict=True)]
    return {
        "engine": engine,
        "connections": rounds * per_round,
        "plain_per_s": statistics.median(plain_rates),
        "client_per_s": statistics.median(client_rates),
        "overhead": 1 - statistics.median(ratios),
        "secrets_manager_calls": creds.stats()["secrets_manager_calls"] - calls_before,
    }


def client_table(harness: Harness | None, engines: list[str], unavailable: dict[str, str],
                 rounds: int = 10, per_round: int = 30) -> Table:
    """Section 9's table: one row per engine."""
    table = Table("client", "9. Applications: connections per second through rotation.client",
                  ["Engine", "Plain driver (conn/s)", "rotation.client (conn/s)", "Overhead",
                   "Secrets Manager calls", "Target", "Result"])
    rows: list[dict[str, Any]] = []
    for engine in engines:
        if engine == "redis":  # rotation.client hands out SQL connections only
            table.add(engine, "—", "—", "not applicable", "—", "≤ 5%", "—")
            rows.append({"engine": engine, "error": "rotation.client has no Redis connection"})
            continue
        if harness is None or engine in unavailable:
            table.add(engine, "—", "—", "not run", "—", "≤ 5%", "MISS")
            rows.append({"engine": engine, "error": unavailable.get(engine, "no server")})
            continue
        row = measure(harness, engine, rounds, per_round)
        rows.append(row)
        table.add(engine, f"{row['plain_per_s']:.0f}", f"{row['client_per_s']:.0f}",
                  f"{row['overhead'] * 100:+.1f}%", row["secrets_manager_calls"], "≤ 5%",
                  verdict(row["overhead"] <= OVERHEAD_TARGET
                          and row["secrets_manager_calls"] == 0))
    table.notes.append(
        f"{rounds} rounds of {per_round} connect+close per side and engine, alternating which "
        "side goes first; rates are medians of the rounds, the overhead is 1 - the median of "
        "the rounds' client/plain ratios. Both sides use the same TLS parameters "
        "(verify-full against the sandbox CA); the client's happy path makes no Secrets "
        "Manager call (column 5).")
    table.data = rows
    return table
