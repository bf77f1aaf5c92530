"""Logger, Tracer and Metrics, created once per Lambda container and shared by every module.

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE (set in template.yaml's Globals).

Logs are JSON lines (Powertools), each with the API Gateway request id as ``correlation_id``.
Nothing logs an event, a body or a header (http.py turns Powertools' event logging off); as a
last line of defence every line is scrubbed of anything shaped like an API key or a bearer token.
"""

import re
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

# An API key (budget_service.auth.KEY_PREFIX) anywhere, and the value of any Bearer credential.
_SECRETS = re.compile(r"llmb_[A-Za-z0-9_-]+|(?i:(bearer)\s+)[^\s\"',}]+")


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: f"{m.group(1)} ***" if m.group(1) else "llmb_***", text)


class RedactingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: Any) -> str:
        return redact(super().serialize(log))


logger = Logger(logger_formatter=RedactingFormatter())
tracer = Tracer()
metrics = Metrics()
