"""A secret on the local stack plus the means to drive its rotation through lambda_handler."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rotation import handler
from rotation.tools.local import ApiCallCounter, LocalRotationService
from tests.conftest import FakeLambdaContext


@dataclass
class Rig:
    """A secret on the local stack, the service driver, and the function's API-call counter."""

    sm: Any
    service: LocalRotationService
    arn: str
    db: Any  # the fake database, or the sandbox server
    calls: ApiCallCounter

    def invoke(self, event: dict[str, Any]) -> Any:
        """One Lambda invocation through the public handler, counting its API calls."""
        app = handler.get_app()
        if not getattr(app.secrets.client, "_counted", False):
            self.calls.attach(app.secrets.client)
            app.secrets.client._counted = True
        return handler.lambda_handler(event, FakeLambdaContext())

    def invoke_cold(self, event: dict[str, Any]) -> Any:
        handler.reset()
        return self.invoke(event)

    def value(self, stage: str) -> dict[str, Any]:
        versions = self.service.labels(self.arn)
        version_id = next(v for v, s in versions.items() if stage in s)
        raw = self.sm.get_secret_value(SecretId=self.arn, VersionId=version_id,
                                       VersionStage=stage)["SecretString"]
        data: dict[str, Any] = json.loads(raw)
        return data

    def has_value(self, version_id: str) -> bool:
        try:
            self.sm.get_secret_value(SecretId=self.arn, VersionId=version_id)
        except self.sm.exceptions.ResourceNotFoundException:
            return False
        return True

    def event(self, step: str, token: str, rotation_token: str | None = None) -> dict[str, Any]:
        event = {"Step": step, "SecretId": self.arn, "ClientRequestToken": token}
        if rotation_token:
            event["RotationToken"] = rotation_token
        return event


class ServerRigs:
    """Rigs for fresh users on a real (sandbox) server; ``drop_all`` removes the users."""

    def __init__(self, sm: Any, leak_scan: Any) -> None:
        self.sm = sm
        self.leak_scan = leak_scan
        self.created: list[tuple[Any, str]] = []

    def build(self, server: Any, engine: str, prefix: str = "app", **overrides: Any) -> Rig:
        import secrets
        import uuid

        username = f"{prefix}_{uuid.uuid4().hex[:10]}"
        password = "Init-" + secrets.token_urlsafe(18)
        self.leak_scan.add(password)
        server.create_login_user(username, password)
        self.created.extend([(server, username), (server, username + "_clone")])
        value = {"engine": engine, "host": server.host, "port": server.port,
                 "username": username, "password": password, "dbname": server.dbname,
                 **overrides}
        arn = self.sm.create_secret(Name=username, SecretString=json.dumps(value))["ARN"]
        service = LocalRotationService(self.sm)
        service.enable_rotation(arn)
        return Rig(self.sm, service, arn, server, ApiCallCounter())

    def drop_all(self) -> None:
        for server, username in reversed(self.created):
            server.drop_user(username)


def pg_can_login(server: Any, username: str, password: str) -> bool:
    """A verified TLS login to a sandbox PostgreSQL with psycopg directly: a check that does not
    go through the adapter under test."""
    import psycopg

    try:
        psycopg.connect(host=server.host, port=server.port, user=username, password=password,
                        dbname=server.dbname, sslmode="verify-full",
                        sslrootcert=server.ca_file, connect_timeout=5).close()
    except psycopg.OperationalError:
        return False
    return True
