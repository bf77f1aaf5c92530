"""Logger, Tracer and Metrics, created once per Lambda container and shared by every module.

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE (set in template.yaml's Globals).

Logs are JSON lines (Powertools), each with the API Gateway request id as ``correlation_id``.
Nothing logs an event, a body or a header (http.py turns Powertools' event logging off); as a
last line of defence every line is scrubbed of anything shaped like an API key or a bearer token.

Tracing costs a cold start only where it is on. Powertools' Tracer turns itself off outside
Lambda, under SAM local and with POWERTOOLS_TRACE_DISABLED, yet still imports the X-Ray SDK and
patches every library it knows (~0.2 s of a ~0.3 s floor, measured by ``make bench``); there it
gets a provider that does nothing, so the SDK (aws_xray_sdk.core) is never imported (Powertools
still flips the SDK's global off switch, a one-module import). Where tracing is on (Lambda
with ``Tracing: Active``) the SDK patches botocore alone: the DynamoDB calls are the only I/O this
service makes, and patching every other library it knows costs ~70 ms more at init.
"""

import re
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

# An API key (budget_service.domain.auth.KEY_PREFIX) anywhere, and the value of any Bearer credential.
_SECRETS = re.compile(r"llmb_[A-Za-z0-9_-]+|(?i:(bearer)\s+)[^\s\"',}]+")


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: f"{m.group(1)} ***" if m.group(1) else "llmb_***", text)


class RedactingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: Any) -> str:
        return redact(super().serialize(log))


class _NoSegment(BaseSegment):
    def close(self, end_time=None): ...
    def add_subsegment(self, subsegment): ...
    def remove_subsegment(self, subsegment): ...
    def put_annotation(self, key, value): ...
    def put_metadata(self, key, value, namespace="default"): ...
    def add_exception(self, exception, stack, remote=False): ...


class NoTracing(BaseProvider):
    """A Powertools tracing provider that records nothing (where tracing is off)."""

    @contextmanager
    def in_subsegment(self, name=None, **kwargs):
        yield _NoSegment()

    @asynccontextmanager
    async def in_subsegment_async(self, name=None, **kwargs):
        yield _NoSegment()

    def put_annotation(self, key, value): ...
    def put_metadata(self, key, value, namespace="default"): ...
    def patch(self, modules): ...
    def patch_all(self): ...


def tracing_enabled() -> bool:
    """Powertools' own rule (on in Lambda, off under SAM local or POWERTOOLS_TRACE_DISABLED)."""
    return not Tracer._is_tracer_disabled()


def make_tracer() -> Tracer:
    if not tracing_enabled():
        return Tracer(provider=NoTracing(), auto_patch=False)
    traced = Tracer(auto_patch=False)
    traced.patch(["botocore"])
    return traced


logger = Logger(logger_formatter=RedactingFormatter())
tracer = make_tracer()
metrics = Metrics()
