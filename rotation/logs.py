"""The framework's one logger: Powertools JSON lines, scrubbed of every registered secret value.

Level from ``POWERTOOLS_LOG_LEVEL`` / ``LOG_LEVEL`` (Powertools reads them), service name from
``POWERTOOLS_SERVICE_NAME`` (default ``rotation``).
"""

from __future__ import annotations

import logging
import os

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from rotation._redact import redact


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, with registered secret values replaced in the final line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "rotation"),
    logger_formatter=RedactingFormatter(),
)
