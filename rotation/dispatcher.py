"""Rotation.resolve(): one staging-label guard from one DescribeSecret, then the registered step."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rotation.adapters import AdapterRegistry
from rotation.adapters.base import AdapterOptions
from rotation.config import Settings
from rotation.errors import (
    NotPendingError,
    RotationError,
    RotationNotEnabledError,
    UnknownStepError,
    UnknownTokenError,
)
from rotation.event import STEPS, RotationEvent
from rotation.logs import logger
from rotation.secrets import CURRENT, PENDING, SecretsManager, SecretState
from rotation.steps import DEFAULT_STEPS, StepContext, StepFunction

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


def make_client(settings: Settings) -> SecretsManagerClient:
    """A Secrets Manager client with timeouts well inside a Lambda timeout."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=10,
                    retries={"max_attempts": 3, "mode": "standard"})
    client: SecretsManagerClient = boto3.client(
        "secretsmanager", endpoint_url=settings.endpoint_url, config=config)
    return client


class Rotation:
    """The rotation app: settings, Secrets Manager wrapper, adapters and the step registry."""

    def __init__(self, settings: Settings | None = None, *,
                 client: SecretsManagerClient | None = None,
                 adapters: AdapterRegistry | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.secrets = SecretsManager(client or make_client(self.settings))
        self.adapters = adapters or AdapterRegistry(AdapterOptions(
            ca_bundle=self.settings.ca_bundle,
            connect_timeout=self.settings.connect_timeout,
            dual_password=self.settings.mysql_dual_password,
        ))
        self._steps: dict[str, StepFunction] = dict(DEFAULT_STEPS)

    def step(self, name: str) -> Callable[[StepFunction], StepFunction]:
        """Decorator replacing one step: ``@app.step("setSecret")``."""
        if name not in STEPS:
            raise UnknownStepError(f"unknown step {name!r}", hint="valid steps are "
                                   + ", ".join(STEPS))

        def register(func: StepFunction) -> StepFunction:
            self._steps[name] = func
            return func

        return register

    def resolve(self, raw_event: Mapping[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        logger.clear_state()
        try:
            event = RotationEvent.from_dict(raw_event)
        except RotationError as exc:
            logger.error(f"rejected event: {exc}", extra=_failure(exc, started))
            raise
        logger.append_keys(step=event.step, secret_id=event.secret_id,
                           token_prefix=event.token_prefix, strategy=self.settings.strategy)
        try:
            state = self.secrets.describe(event.secret_id)
            logger.append_keys(secret_arn=state.arn)
            if self._guard(event, state):
                outcome = "already current"
            else:
                ctx = StepContext(event, state, self.settings, self.secrets, self.adapters)
                self._steps[event.step](ctx)
                outcome = ctx.outcome
        except RotationError as exc:
            logger.error(f"{event.step} failed: {exc}", extra=_failure(exc, started))
            raise
        duration = round((time.perf_counter() - started) * 1000, 1)
        logger.info(f"{event.step} finished: {outcome}",
                    extra={"outcome": outcome, "duration_ms": duration})
        return {"Step": event.step, "SecretId": event.secret_id, "Outcome": outcome}

    @staticmethod
    def _guard(event: RotationEvent, state: SecretState) -> bool:
        """True when there is nothing to do; raises when the step must not run."""
        if not state.rotation_enabled:
            raise RotationNotEnabledError(
                f"rotation is not enabled for secret {state.arn}",
                hint="enable rotation on the secret (RotateSecret with a rotation function)")
        stages = state.versions.get(event.client_request_token)
        if stages is None:
            raise UnknownTokenError(
                f"ClientRequestToken {event.token_prefix}... is not a version of secret "
                f"{state.arn}", hint="invoke with the token Secrets Manager sent")
        if CURRENT in stages:
            logger.info(f"{event.step}: version {event.token_prefix} is already AWSCURRENT; "
                        "nothing to do")
            return True
        if PENDING not in stages:
            raise NotPendingError(
                f"version {event.token_prefix}... of secret {state.arn} is not AWSPENDING",
                hint="this rotation was superseded; Secrets Manager starts a new one")
        return False


def _failure(exc: RotationError, started: float) -> dict[str, Any]:
    return {"outcome": "failed", "error_class": type(exc).__name__, "cause": exc.category,
            "fix": exc.hint, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
