"""A Lambda function (a Zappa app, or any handler) that keeps its database connection across
invocations. The client is built in the init phase; a warm container reuses the connection,
through rotations: PostgreSQL keeps a session open when its password changes."""

from __future__ import annotations

import os
from typing import Any

import psycopg

from rotation.client import RotatingCredentials

QUERY = "SELECT current_user, pg_backend_pid()"
creds = RotatingCredentials(os.environ["DB_SECRET_ID"])  # once per container
connection: psycopg.Connection[Any] | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global connection
    if connection is None or connection.closed:
        connection = creds.connect(autocommit=True)
    try:
        row = connection.execute(QUERY).fetchone()
    except psycopg.OperationalError:
        # The server ended the session while the container was frozen: once more, on a new
        # connection (this query is safe to run twice; retry only what is).
        connection.close()
        connection = creds.connect(autocommit=True)
        row = connection.execute(QUERY).fetchone()
    assert row is not None
    return {"user": row[0], "backend": row[1]}
