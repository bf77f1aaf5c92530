"""HTTP plumbing shared by the API functions: the resolver, error mapping, the Lambda entry.

Bodies are parsed with ``parse_float=Decimal`` so money arrives exact; pydantic (Powertools'
validation) rejects anything out of shape with a 422 before a handler runs, so nothing is written.
Every error leaves as ``{"error": {"code", "message", "details"?}}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from http import HTTPStatus
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel

from budget_service.errors import BudgetError
from budget_service.observability import logger, metrics, tracer

MAX_BODY_BYTES = 1_048_576


def parse_json(text: str):
    return json.loads(text, parse_float=Decimal)


def error_body(code: str, message: str, details=None) -> str:
    error: dict = {"code": code, "message": message}
    if details:
        error["details"] = details
    return json.dumps({"error": error})


def error_response(status: int, code: str, message: str, details=None) -> Response:
    return Response(
        status_code=int(status),
        content_type=content_types.APPLICATION_JSON,
        body=error_body(code, message, details),
    )


def _describe(errors: list[dict]) -> tuple[str, list[dict]]:
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part != "body"] or ["body"]
        details.append({"field": ".".join(loc), "problem": str(err.get("msg", "invalid"))})
    first = details[0] if details else {"field": "body", "problem": "invalid"}
    message = f"{first['field']}: {first['problem']}"
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    return message, details[:50]


def json_response(status: int, model: BaseModel) -> Response:
    """A response with a status other than 200 and a model body (validated, then serialized)."""
    return Response(
        status_code=int(status),
        content_type=content_types.APPLICATION_JSON,
        body=model,
    )


class _RestResolver(APIGatewayRestResolver):
    """API Gateway (REST) sends ``path`` percent-encoded, as the client sent it, and Powertools
    takes route arguments from it: decode them, so validation and handlers see the real ids
    (``a%20b`` is the project ``a b``; ``%23`` and ``%2F`` are ``#`` and ``/``)."""

    def _call_route(self, route, route_arguments):
        decoded = {name: unquote(value) for name, value in route_arguments.items()}
        return super()._call_route(route, decoded)


def create_app() -> APIGatewayRestResolver:
    app = _RestResolver(
        enable_validation=True,
        json_body_deserializer=parse_json,
    )

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(err.get("type") == "json_invalid" for err in errors):
            return error_response(
                HTTPStatus.BAD_REQUEST, "invalid_json", "the request body is not valid JSON"
            )
        message, details = _describe(errors)
        return error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", message, details
        )

    @app.exception_handler(BudgetError)
    def _domain(exc: BudgetError) -> Response:
        metrics.add_metric(name=f"Error_{exc.code}", unit=MetricUnit.Count, value=1)
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.not_found
    def _no_route(_exc: Exception) -> Response:
        return error_response(HTTPStatus.NOT_FOUND, "not_found", "no such route")

    return app


def lambda_entry(app: APIGatewayRestResolver) -> Callable:
    """The Lambda handler for a resolver: logging with the request id, tracing, metrics."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict, context) -> dict:
        body = event.get("body") or ""
        if len(body.encode()) > MAX_BODY_BYTES:
            return {
                "statusCode": int(HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
                "headers": {"Content-Type": content_types.APPLICATION_JSON},
                "body": error_body(
                    "payload_too_large", f"the request body is over {MAX_BODY_BYTES} bytes"
                ),
                "isBase64Encoded": False,
            }
        return app.resolve(event, context)

    return handler
