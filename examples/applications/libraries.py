"""rotation.client with the libraries applications already use: psycopg_pool, SQLAlchemy and
plain PyMySQL. Each function is what an application writes once, at start-up."""

from __future__ import annotations

from typing import Any

import pymysql.cursors
from psycopg_pool import ConnectionPool
from sqlalchemy import Engine, create_engine, event

from rotation.client import RotatingCredentials


def postgres_pool(creds: RotatingCredentials) -> ConnectionPool:
    # psycopg_pool 3.3+ calls `kwargs` for every connection it opens: each one gets the
    # credential that logs in at that moment, pending rotation or not.
    return ConnectionPool(kwargs=creds.connection_kwargs, min_size=2, max_size=8, open=True)


def postgres_engine(creds: RotatingCredentials) -> Engine:
    # SQLAlchemy opens every connection of its pool through the client.
    return create_engine("postgresql+psycopg://", creator=creds.connect)


def mysql_engine(creds: RotatingCredentials) -> Engine:
    engine = create_engine("mysql+pymysql://")

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        return creds.connect(**cparams)  # the dialect's own arguments (client_flag) go along

    return engine


def mysql_connection(creds: RotatingCredentials) -> Any:
    # Plain PyMySQL: the driver's own arguments pass through.
    return creds.connect(cursorclass=pymysql.cursors.DictCursor, autocommit=True)
