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


# botocore logs request parameters and responses (new and current passwords) at DEBUG: keep the
# SDK's loggers at INFO or above whatever the root level, so DEBUG logging cannot leak them.
for _name in ("botocore", "boto3", "urllib3", "s3transfer"):
    _sdk = logging.getLogger(_name)
    if _sdk.getEffectiveLevel() < logging.INFO or _sdk.level == logging.NOTSET:
        _sdk.setLevel(logging.INFO)

logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "rotation"),
    logger_formatter=RedactingFormatter(),
)
# Our handler prints the scrubbed JSON line; a root handler (Lambda's runtime installs one) would
# print the same record again, unformatted and unscrubbed.
logging.getLogger(logger.name).propagate = False
