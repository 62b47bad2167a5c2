"""Rotation.resolve(): one staging-label guard from one DescribeSecret, then the registered step."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rotation.adapters import AdapterRegistry
from rotation.adapters.base import DEADLINE, AdapterOptions
from rotation.config import Settings
from rotation.errors import (
    NotPendingError,
    RotationError,
    RotationNotEnabledError,
    RotationTimeoutError,
    UnknownStepError,
    UnknownTokenError,
)
from rotation.event import STEPS, RotationEvent
from rotation.logs import logger
from rotation.secrets import (
    CURRENT,
    PENDING,
    SecretsManager,
    SecretState,
    aws_client,
)
from rotation.steps import DEFAULT_STEPS, StepContext, StepFunction

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from rotation.metrics import StepMetrics

# Database work must end this long before Lambda would kill the invocation, so the failure is
# ours to report (and the step's to retry), not a silent timeout.
SAFETY_MARGIN_S = 2.0
MIN_BUDGET_S = 1.0


def make_client(settings: Settings) -> SecretsManagerClient:
    """A Secrets Manager client with timeouts well inside a Lambda timeout."""
    # Secrets Manager answers in milliseconds; short attempts leave room for retries, and the
    # wrapper's deadline check stops a new attempt that could outlast the invocation.
    client: SecretsManagerClient = aws_client("secretsmanager", settings.endpoint_url)
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
        ))
        for warning in self.settings.deprecations:  # once per container: settings are read once
            logger.warning(warning, extra={"cause": "configuration"})
        self._steps: dict[str, StepFunction] = dict(DEFAULT_STEPS)
        self._metrics: StepMetrics | None = None

    def step(self, name: str) -> Callable[[StepFunction], StepFunction]:
        """Decorator replacing one step: ``@app.step("setSecret")``."""
        if name not in STEPS:
            raise UnknownStepError(f"unknown step {name!r}", hint="valid steps are "
                                   + ", ".join(STEPS))

        def register(func: StepFunction) -> StepFunction:
            self._steps[name] = func
            return func

        return register

    def resolve(self, raw_event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Run the event's step. ``context`` (the Lambda context) bounds database timeouts by the
        invocation's remaining time."""
        started = time.perf_counter()
        logger.clear_state()
        try:
            event = RotationEvent.from_dict(raw_event)
        except RotationError as exc:
            logger.error(f"rejected event: {exc}", extra=_failure(exc, started))
            raise
        logger.append_keys(step=event.step, secret_id=event.secret_id,
                           token_prefix=event.token_prefix, strategy=self.settings.strategy)
        ctx: StepContext | None = None
        secret_arn = event.secret_id
        failure: BaseException | None = None
        remaining = _remaining_seconds(context)
        self.secrets.deadline = (None if remaining is None
                                 else time.monotonic() + remaining - SAFETY_MARGIN_S)
        deadline = DEADLINE.set(self.secrets.deadline)  # every database wait ends before it
        try:
            adapters = self._adapters_within(remaining, event.step)
            state = self.secrets.describe(event.secret_id)
            secret_arn = state.arn
            logger.append_keys(secret_arn=state.arn)
            ctx = StepContext(event, state, self.settings, self.secrets, adapters)
            if self._guard(event, state):
                outcome = "already current"
            else:
                self._steps[event.step](ctx)
                outcome = ctx.outcome
        except RotationError as exc:
            failure = exc
            logger.error(f"{event.step} failed: {exc}",
                         extra={**_failure(exc, started), "engine": ctx.engine if ctx else None})
            raise
        except Exception as exc:  # a bug or an unmapped driver error: still say where
            failure = exc
            logger.exception(f"{event.step} failed with an unexpected {type(exc).__name__}",
                             extra={"outcome": "failed", "error_class": type(exc).__name__,
                                    "cause": "internal"})
            raise
        finally:
            DEADLINE.reset(deadline)
            self._emit_metrics(event, ctx, secret_arn, failure, started)
        duration = round((time.perf_counter() - started) * 1000, 1)
        logger.info(f"{event.step} finished: {outcome}",
                    extra={"outcome": outcome, "duration_ms": duration,
                           "engine": ctx.engine if ctx else None})
        return {"Step": event.step, "SecretId": event.secret_id, "Outcome": outcome}

    def _adapters_within(self, remaining: float | None, step: str) -> AdapterRegistry:
        """The adapters, with timeouts cut to fit the time this invocation has left."""
        if remaining is None:
            return self.adapters
        budget = remaining - SAFETY_MARGIN_S
        if budget < MIN_BUDGET_S:
            raise RotationTimeoutError(
                f"only {remaining:.1f} s of the Lambda timeout are left before {step}",
                hint="raise the function's Timeout (30 s or more); Secrets Manager retries the "
                     "step")
        options = self.adapters.options
        if budget >= options.connect_timeout + options.statement_timeout:
            return self.adapters
        share = budget / 2  # a login, then one statement
        return self.adapters.with_options(replace(
            options, connect_timeout=min(options.connect_timeout, share),
            statement_timeout=min(options.statement_timeout, share)))

    def _emit_metrics(self, event: RotationEvent, ctx: StepContext | None, secret_arn: str,
                      failure: BaseException | None, started: float) -> None:
        if self._metrics is None:
            from rotation.metrics import StepMetrics

            self._metrics = StepMetrics()
        try:
            self._metrics.emit(
                step=event.step, engine=ctx.engine if ctx else "unknown",
                strategy=self.settings.strategy, failed=failure is not None,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                secret_arn=secret_arn, token_prefix=event.token_prefix,
                cause=getattr(failure, "category", "internal") if failure else None)
        except Exception:  # metrics must never turn a rotation into a failure
            logger.exception("could not publish metrics")

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


def _remaining_seconds(context: Any) -> float | None:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(getter):
        return None
    try:
        return float(getter()) / 1000
    except (TypeError, ValueError):
        return None


def _failure(exc: RotationError, started: float) -> dict[str, Any]:
    return {"outcome": "failed", "error_class": type(exc).__name__, "cause": exc.category,
            "fix": exc.hint, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
