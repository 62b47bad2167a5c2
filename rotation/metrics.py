"""CloudWatch metrics in embedded metric format (EMF), through Powertools Metrics.

Two documents per invocation, printed to stdout (CloudWatch Logs turns them into metrics):

* ``StepSucceeded`` / ``StepFailed`` (Count) and ``StepDuration`` (Milliseconds), dimensions
  ``service``, ``step``, ``engine``, ``strategy``;
* ``RotationSucceeded`` (after a successful finishSecret) / ``RotationFailed`` (any failed step),
  dimension ``service`` only, so one alarm covers every engine and strategy.

Namespace from ``POWERTOOLS_METRICS_NAMESPACE`` (default ``SecretsRotation``), service from
``POWERTOOLS_SERVICE_NAME`` (default ``rotation``); ``POWERTOOLS_METRICS_DISABLED=true`` turns
them off. Metadata carries the secret ARN, token prefix and failure cause: never a secret value.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics

DEFAULT_NAMESPACE = "SecretsRotation"


class StepMetrics:
    def __init__(self) -> None:
        from aws_lambda_powertools import Metrics

        self.namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
        self.service = os.environ.get("POWERTOOLS_SERVICE_NAME") or "rotation"
        self._metrics: Metrics = Metrics(namespace=self.namespace, service=self.service)

    def emit(self, *, step: str, engine: str, strategy: str, failed: bool, duration_ms: float,
             secret_arn: str, token_prefix: str, cause: str | None = None) -> None:
        """Publish one invocation's metrics; called from a ``finally`` so failures count too."""
        from aws_lambda_powertools.metrics import MetricUnit

        metrics = self._metrics
        metrics.clear_metrics()
        metadata = {"secret_arn": secret_arn, "token_prefix": token_prefix}
        if cause:
            metadata["cause"] = cause
        metrics.add_dimension("step", step)
        metrics.add_dimension("engine", engine)
        metrics.add_dimension("strategy", strategy)
        metrics.add_metric("StepFailed" if failed else "StepSucceeded", MetricUnit.Count, 1)
        metrics.add_metric("StepDuration", MetricUnit.Milliseconds, duration_ms)
        for key, value in metadata.items():
            metrics.add_metadata(key, value)
        metrics.flush_metrics()
        if failed or step == "finishSecret":
            for key, value in metadata.items():
                metrics.add_metadata(key, value)
            metrics.add_metric("RotationFailed" if failed else "RotationSucceeded",
                               MetricUnit.Count, 1)
            metrics.flush_metrics()
