"""The HTTP edge shared by the API functions: Powertools' REST resolver with validation, error
mapping in one place, the Lambda entry.

Routes are declared with Powertools' ``APIGatewayRestResolver(enable_validation=True)``: path,
query and header parameters as ``Annotated[..., Path/Query/Header(...)]``, the body as a pydantic
model, the answer as a model or a ``Response``; the same annotations generate ``openapi.json``.
Bodies are parsed with ``parse_float=Decimal`` so money arrives exact, and must be JSON objects
within bounds of nesting and number length (``parse_json``: else a 400 ``invalid_body``); headers
that may appear once and appear twice are a 400 ``duplicate_header``. pydantic rejects anything out
of shape with a 422 before a handler runs, so nothing is written. Every error, Powertools' own
validation errors included, leaves as ``{"error": {"code", "message", "details"?}}``.

Authorization, for every route, here and nowhere else: the API's Lambda authorizer puts the key's
scope in ``requestContext.authorizer``. Before the body is even parsed, a request without a valid
scope is a 401 and a role that may not do the route's operation a 403; after validation, the
project the handler is about to touch (the ``project`` path parameter, or ``project_name`` in the
body) must be one of the key's, or it is a 403. ``API_AUTH=off`` (the default ``make dev`` and unit
tests) turns this off; anything else, or unset, enforces it.

DynamoDB failures that survive the client's retries (throttling, timeouts, 5xx) are a 503 with
``Retry-After`` whose ``details.outcome`` says whether nothing was written (``not_written``) or
the write may have landed (``unknown``: an attempt timed out or lost its connection after it
was sent); other unexpected errors a 500, logged with the request id but never the event.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import typing
from collections.abc import Callable, Iterable
from decimal import Decimal
from http import HTTPStatus
from itertools import chain
from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import AfterValidator

from budget_service.core.errors import BudgetError, Forbidden, PayloadTooLarge, Unauthorized
from budget_service.core.numbers import ID_MAX_LENGTH, ID_PATTERN, fits_id_bytes, plain_number
from budget_service.domain import auth
from budget_service.observability import logger, metrics, tracer
from budget_service.store.base import (
    NOT_WRITTEN,
    STORE_ERRORS,
    UNKNOWN,
    start_request,
    unavailable,
    write_outcome,
)

JSON = content_types.APPLICATION_JSON
MAX_BODY_BYTES = 1_048_576
AUTH_ENV = "API_AUTH"
RETRY_AFTER_SECONDS = 1

# What a 503 says, by what the failed DynamoDB call may have written (store.write_outcome); the
# answer's details carry the same as {"outcome": "not_written" | "unknown"}.
UNAVAILABLE_MESSAGES = {
    NOT_WRITTEN: "the budget store is unavailable right now (throttled or failing); nothing was"
    " written; retry",
    UNKNOWN: "the budget store did not answer in time (timed out, or the connection dropped):"
    " the change may or may not have been applied. Retrying is safe with the same"
    " Idempotency-Key, and for PUT, DELETE and set_budget, which converge; otherwise GET the"
    " budget first to see whether it was applied",
}

# Path parameters of the native routes: the same id rules as in bodies (schemas' Identifier: at
# most ID_MAX_BYTES bytes of UTF-8), checked before the handler. pydantic's pattern engine gives
# `$` its JSON Schema meaning (the very end), so an id ending in a newline does not match.
ProjectId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="1 to 256 bytes of UTF-8 (percent-encoded in the path), no control characters",
    ),
    AfterValidator(fits_id_bytes),
]
UserId = ProjectId


def auth_enforced() -> bool:
    """Authorization is on unless API_AUTH says off (fail closed when unset)."""
    return os.environ.get(AUTH_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


# Bounds on what a body may hold, checked as it is parsed (every body is parsed here, by
# parse_json): deeper nesting or longer numbers than any request needs are a 400
# before validation runs, never a RecursionError or Python's int-from-str limit (a 500).
MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 100
# Headers whose meaning a second copy would make ambiguous: a 400, not a guess at which one counts.
SINGLE_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class BodyRejected(json.JSONDecodeError):
    """A body that is not JSON the API takes: not an object, nested deeper than MAX_JSON_DEPTH, a
    number longer than MAX_NUMBER_CHARS, or a string that is not Unicode text. HTTP 400
    ``invalid_body``. A JSONDecodeError, so Powertools reports it as a body that did not parse
    (a RequestValidationError caused by it)."""

    code = "invalid_body"

    def __init__(self, message: str) -> None:
        super().__init__(message, "", 0)
        self.message = message


def _number(parse: Callable[[str], object]) -> Callable[[str], object]:
    def bounded(text: str) -> object:
        if len(text) > MAX_NUMBER_CHARS:
            raise BodyRejected(f"a number in the body is over {MAX_NUMBER_CHARS} characters long")
        return parse(text)

    return bounded


_parse_int, _parse_decimal = _number(int), _number(Decimal)


def parse_json(text: str) -> dict:
    """A request body: a JSON object, numbers with a fraction or exponent as Decimal (money arrives
    exact), within MAX_JSON_DEPTH and MAX_NUMBER_CHARS. Raises json.JSONDecodeError (BodyRejected
    for a body that parses but is out of bounds)."""
    try:
        value = json.loads(text, parse_float=_parse_decimal, parse_int=_parse_int)
    except RecursionError:  # json's C scanner recurses once per level: far past MAX_JSON_DEPTH
        raise BodyRejected(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise BodyRejected(f"the body must be a JSON object, not {_json_kind(value)}")
    _check_nodes(value, check_text=_ESCAPED_SURROGATE.search(text) is not None)
    return value


def _json_kind(value) -> str:
    """What a parsed JSON value is, in JSON's terms (an error message's, not Python's ``NoneType``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):  # float: NaN, Infinity
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


def _check_nodes(value: dict, *, check_text: bool) -> None:
    """Depth within MAX_JSON_DEPTH, without recursion; with `check_text`, every string (and key)
    must be Unicode text: JSON can escape a lone surrogate (``"\\ud800"``), which no UTF-8 encoder
    (boto3, tiktoken, logs) takes."""
    stack: list[tuple[dict | list, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BodyRejected(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        parts: Iterable = chain(node.keys(), node.values()) if isinstance(node, dict) else node
        for part in parts:
            if isinstance(part, (dict, list)):
                stack.append((part, depth + 1))
            elif check_text and isinstance(part, str):
                try:
                    part.encode("utf-8")
                except UnicodeEncodeError:
                    raise BodyRejected(
                        "a string in the body has a lone surrogate (not Unicode text)"
                    ) from None


def _values_sent(event: dict) -> dict[tuple[str, str], list]:
    """Every value sent for each query parameter (by name) and header (by lower-case name: header
    names are case-insensitive). API Gateway keeps every copy in the multi-value maps and the last
    in ``queryStringParameters``/``headers``; as Powertools reads them, a name in a multi-value map
    takes its values from there, and the single-value map fills in names it lacks (hand-written
    events, ``sam local invoke -e``)."""
    sent: dict[tuple[str, str], list] = {}
    maps = (
        ("query", "multiValueQueryStringParameters", "queryStringParameters"),
        ("header", "multiValueHeaders", "headers"),
    )
    for source, multi_field, single_field in maps:
        fold = str if source == "query" else (lambda name: str(name).lower())
        multi: dict[str, list] = {}
        for name, values in (event.get(multi_field) or {}).items():
            multi.setdefault(fold(name), []).extend(values or ())
        in_multi = set(multi)
        for name, value in (event.get(single_field) or {}).items():
            if fold(name) not in in_multi and value is not None:
                multi.setdefault(fold(name), []).append(value)
        sent.update({(source, name): values for name, values in multi.items()})
    return sent


def _duplicated_header(sent: dict[tuple[str, str], list]) -> str | None:
    """The first of SINGLE_HEADERS the request carries more than once (`sent`: _values_sent), or
    None."""
    return next((h for h in SINGLE_HEADERS if len(sent.get(("header", h.lower()), ())) > 1), None)


def _as_sent(event: dict, sent: dict[tuple[str, str], list]) -> dict:
    """`event` with its query and header maps rebuilt from `sent`, every copy of a name in its
    multi-value map (header names lower-cased), the last in the single-value one. Powertools then
    sees each copy: a parameter the route takes once, sent twice, is a 422 (which copy counts
    would be a guess; for ``?purge=false&purge=true`` a destructive one), also when the copies'
    names differ only in case or sit only in the single-value map, where a dict keeps one."""
    out = dict(event)
    for source, multi_field, single_field in (
        ("query", "multiValueQueryStringParameters", "queryStringParameters"),
        ("header", "multiValueHeaders", "headers"),
    ):
        multi = {name: list(values) for (kind, name), values in sent.items() if kind == source}
        out[multi_field] = multi or None
        out[single_field] = {name: values[-1] for name, values in multi.items()} or None
    return out


def dumps(value) -> str:
    """JSON text with every number in plain notation (``0.00001``, never ``1e-05``).

    The resolver's serializer: responses reach it as plain Python values (Powertools has already
    encoded models, Decimals as floats). ``json.dumps`` writes small and large floats in
    exponent form; this writes each float's shortest round-trip digits in plain notation, so the
    same float parses back. Strings are escaped by ``json.dumps``.
    """
    return "".join(_encode(value))


def _encode(value):
    if value is None or isinstance(value, (bool, str)):
        yield json.dumps(value)
    elif isinstance(value, int):
        yield str(value)
    elif isinstance(value, (float, Decimal)):
        yield plain_number(value)
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            if i:
                yield ","
            yield json.dumps(key if isinstance(key, str) else str(key))
            yield ":"
            yield from _encode(item)
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _encode(item)
        yield "]"
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def error_body(code: str, message: str, details=None) -> str:
    """The JSON text of an error answer (``details`` left out when empty)."""
    error: dict = {"code": code, "message": message}
    if details:
        error["details"] = details
    return dumps({"error": error})


def error_response(
    status: int, code: str, message: str, details=None, headers: dict | None = None
) -> Response:
    """An error answer: ``{"error": {"code", "message", "details"?}}`` with `status`."""
    return Response(
        status_code=int(status), content_type=JSON, body=error_body(code, message, details), headers=headers
    )


def _proxy_error(status: int, code: str, message: str, headers: dict | None = None) -> dict:
    """An error as a Lambda proxy result, for answers given before the resolver runs."""
    return {
        "statusCode": int(status),
        "headers": {"Content-Type": JSON, **(headers or {})},
        "body": error_body(code, message),
        "isBase64Encoded": False,
    }


def _scope(event: dict) -> auth.Scope | None:
    context = (event.get("requestContext") or {}).get("authorizer")
    return auth.Scope.from_context(context)


def _refuse_early(event: dict) -> dict | None:
    """401 without a valid scope, 403 for a role that may not do this route; before parsing."""
    scope = _scope(event)
    if scope is None:
        return _proxy_error(
            Unauthorized.status,
            Unauthorized.code,
            "send a valid API key: Authorization: Bearer <key>",
            {"WWW-Authenticate": "Bearer"},
        )
    method, resource = event.get("httpMethod") or "", event.get("resource") or ""
    permission = auth.route_permission(method, resource)
    if not scope.allows(permission):
        return _proxy_error(
            Forbidden.status,
            Forbidden.code,
            f"a {scope.role.value} key may not do this ({permission.value} is needed)",
        )
    if not scope.allows_route(method, resource):
        return _proxy_error(
            Forbidden.status, Forbidden.code, "a user key reads its own user only, not project-wide routes"
        )
    return None


def key_id_of(event: dict) -> str | None:
    """The id of the API key that made this request (from the authorizer's context), for the
    audit ledger; None when there is none (API keys off, e.g. ``make dev``)."""
    scope = _scope(event)
    return scope.key_id if scope is not None else None


def _project_of(route_args: dict) -> str | None:
    """The project a validated request is about: the path's, or ``project_name`` in the body."""
    project = route_args.get("project")
    if isinstance(project, str):
        return project
    for value in route_args.values():
        name = getattr(value, "project_name", None)
        if isinstance(name, str):
            return name
    return None


def _enforce_scope(app: App, next_middleware: Callable) -> Response:
    """A global middleware, so after validation, on the values the handler will get: the key must
    cover the project. Raises Unauthorized or Forbidden."""
    if auth_enforced():
        event = app.current_event.raw_event
        scope = _scope(event)
        if scope is None:
            raise Unauthorized("send a valid API key: Authorization: Bearer <key>")
        resource = event.get("resource") or ""
        permission = auth.route_permission(event.get("httpMethod") or "", resource)
        arguments = app.context.get("_route_args") or {}
        user = arguments.get("user")
        auth.check(
            scope,
            permission,
            _project_of(arguments),
            user if isinstance(user, str) else None,
            resource=resource,
        )
    return next_middleware(app)


# An error names each field and problem, clipped: a field's path holds the request's own dict keys
# (user ids, model names) and up to MAX_ERROR_DETAILS problems can name the same long key, so
# unclipped, a 100 KB body answered 5 MB (past Lambda's 6 MB response limit: a 502).
MAX_ERROR_DETAILS = 50
MAX_ERROR_PART_CHARS = 80


def _clip(text: str, limit: int = MAX_ERROR_PART_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(errors: list[dict]) -> tuple[str, list[dict]]:
    """A validation error's message and details: at most MAX_ERROR_DETAILS, each part of a field's
    path clipped to MAX_ERROR_PART_CHARS characters and each problem to 500."""
    details = []
    for err in errors[:MAX_ERROR_DETAILS]:
        loc = [_clip(str(part)) for part in err.get("loc", ()) if part != "body"] or ["body"]
        details.append({"field": ".".join(loc), "problem": _clip(str(err.get("msg", "invalid")), 500)})
    first = details[0] if details else {"field": "body", "problem": "invalid"}
    message = f"{first['field']}: {first['problem']}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return message, details


def json_response(status: int, model) -> Response:
    """A response with a status other than 200 and a model body (serialized as JSON)."""
    return Response(status_code=int(status), content_type=JSON, body=model)


def _utf8_text(value: str) -> bool:
    """Whether a path value decoded with ``surrogateescape`` was UTF-8 (holds no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class App(APIGatewayRestResolver):
    """One function's routes: Powertools' REST resolver with validation, adapted to what API
    Gateway sends and to running handlers from several threads (the tests do).

    - Path arguments: API Gateway sends ``path`` percent-encoded, as the client sent it; they are
      decoded (``a%20b`` is the project ``a b``; ``%23`` and ``%2F`` are ``#`` and ``/``) before
      validation. Bytes that are not UTF-8 (``%FF``, overlong forms, encoded surrogates) are a 422,
      never replaced by U+FFFD (two such ids would name one record).
    - A path segment is anything but ``/`` (Powertools' own pattern leaves out characters such
      as ``"`` or ``#`` sent raw, which would turn a bad id into a 404 instead of a 422).
    - Powertools keeps the event being handled and the Lambda context on its BaseRouter class,
      one for the whole process. Lambda hands a process one event at a time, but the tests invoke
      handlers from several threads at once: kept per thread here, one request's body can never
      reach another's handler.
    """

    _handling = threading.local()

    @property
    def current_event(self):
        return self._handling.event

    @current_event.setter
    def current_event(self, event) -> None:
        self._handling.event = event

    @property
    def lambda_context(self):
        return self._handling.context

    @lambda_context.setter
    def lambda_context(self, context) -> None:
        self._handling.context = context

    @property
    def routes(self) -> list:
        """Every route registered (Powertools' ``Route``: ``method``, ``func``, ``dependant``)."""
        return [*self._static_routes, *self._dynamic_routes]

    def key_id(self) -> str | None:
        """The id of the API key that made the request being handled (for the audit ledger), or
        None when API keys are off."""
        return key_id_of(self.current_event.raw_event)

    @staticmethod
    def _compile_regex(
        rule: str, base_regex: str = "^{}/*$"
    ):  # any trailing slashes, as Powertools' REST resolver
        return re.compile(base_regex.format(re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", rule)))

    def _to_proxy_event(self, event: dict):
        proxy = super()._to_proxy_event(event)
        self._handling.event = proxy
        return proxy

    def resolve(self, event, context):
        self._handling.context = context
        return super().resolve(event, context)

    def _call_route(self, route, route_arguments):
        decoded = {name: unquote(value, errors="surrogateescape") for name, value in route_arguments.items()}
        not_utf8 = [name for name, value in decoded.items() if not _utf8_text(value)]
        if not_utf8:
            problem = "Value error, must be percent-encoded UTF-8 text"
            errors = [{"loc": ("path", name), "msg": problem, "type": "value_error"} for name in not_utf8]
            return self._call_exception_handler(RequestValidationError(errors), route)
        return super()._call_route(route, decoded)


def _invalid_request(exc: RequestValidationError) -> Response:
    """Powertools' validation errors in the API's shape: 400 for a body that is not JSON (or not
    JSON the API takes), else 422 ``validation_error`` naming each field and problem."""
    if isinstance(exc.__cause__, BodyRejected):
        return error_response(HTTPStatus.BAD_REQUEST, BodyRejected.code, exc.__cause__.message)
    errors = [dict(err) for err in exc.errors()]
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(HTTPStatus.BAD_REQUEST, "invalid_json", "the request body is not valid JSON")
    message, details = _describe(errors)
    return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", message, details)


def _domain_error(exc: BudgetError) -> Response:
    """A domain refusal with its own status and code (503s with ``Retry-After``)."""
    metrics.add_metric(name=f"Error_{exc.code}", unit=MetricUnit.Count, value=1)
    headers = None
    if exc.status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers = {"Retry-After": str(getattr(exc, "retry_after_seconds", RETRY_AFTER_SECONDS))}
    return error_response(exc.status, exc.code, exc.message, exc.details, headers)


def _store_failed(exc: Exception) -> Response:
    """A DynamoDB failure after the client's own retries: throttled, timed out or a 5xx is a 503
    saying what may have been written; anything else is an internal error."""
    if not unavailable(exc):
        return _internal_error(exc)
    outcome = write_outcome(exc)
    logger.warning(
        "DynamoDB unavailable",
        extra={"error": type(exc).__name__, "outcome": outcome, "detail": str(exc)[:300]},
    )
    metrics.add_metric(name="StoreUnavailable", unit=MetricUnit.Count, value=1)
    return error_response(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "service_unavailable",
        UNAVAILABLE_MESSAGES[outcome],
        {"outcome": outcome},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _internal_error(exc: Exception) -> Response:
    """A 500; the traceback is logged, never the event (no body or header reaches the log). An
    answer that does not meet its own declared model (ResponseValidationError) lands here too."""
    logger.exception("unhandled error", extra={"error": type(exc).__name__})
    metrics.add_metric(name="InternalError", unit=MetricUnit.Count, value=1)
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error")


def _no_route(_exc: Exception) -> Response:
    return error_response(HTTPStatus.NOT_FOUND, "not_found", "no such route")


def create_app() -> App:
    """The resolver of one API function (see App), every error mapped to the API's shape here:
    validation (400/422), the domain's own statuses, 503 for a store that is unavailable, 404 for
    no route, 500 for anything else (logged)."""
    app = App(
        enable_validation=True,
        json_body_deserializer=parse_json,
        serializer=dumps,
        # An answer out of its own model is the service's fault: a 500, never Powertools' 422.
        response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
        # Never the debug mode (POWERTOOLS_DEV): it prints every event, Authorization included.
        debug=False,
    )
    app.use(middlewares=[_enforce_scope])
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(BudgetError)(_domain_error)
    app.exception_handler(list(STORE_ERRORS))(_store_failed)
    app.exception_handler([ResponseValidationError, Exception])(_internal_error)
    app.not_found(_no_route)
    return app


def _as_json(event: dict) -> dict:
    """The API speaks only JSON: every body is read as JSON, whatever its Content-Type says.

    Powertools would parse ``curl -d``'s default (form-urlencoded) as a form, turning a JSON body
    into one bogus field; with this it is read as the JSON it is, or answered 400 if it is not.
    """
    if not event.get("body"):
        return event
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    headers["Content-Type"] = JSON
    multi["Content-Type"] = [JSON]
    return {**event, "headers": headers, "multiValueHeaders": multi}


def _utf8(base64_body: str) -> bool:
    """Whether a base64 body (API Gateway sends binary this way) decodes to UTF-8 text."""
    try:
        base64.b64decode(base64_body, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return True


def _models_of(route) -> list:
    """The pydantic models a route validates: its body's and its answer's (read from the
    handler's annotations, the ones Powertools reads)."""
    hints = typing.get_type_hints(route.func, include_extras=True)
    models = []
    for name, hint in hints.items():
        if name == "return" and typing.get_origin(hint) is Response:
            hint = typing.get_args(hint)[0]
        if hasattr(hint, "model_rebuild"):
            models.append(hint)
    return models


def prime(app: App, encodings: tuple[str, ...] = ()) -> None:
    """The first call's work that depends on no request: every route's validation plan
    (Powertools' dependant: its pydantic fields) and the validators and serializers of its body
    and answer models (pydantic builds them on first use), and, for routes that count tokens or
    price usage, the tiktoken `encodings` and the price table."""
    for route in app.routes:
        _ = route.dependant, route.body_field
        for model in _models_of(route):
            model.model_rebuild()
    if encodings:
        from budget_service.pricing import prices as pricing
        from budget_service.pricing import tokens

        pricing.default_table()
        for name in encodings:
            tokens.get_encoding(name)


def register_priming(app: App, encodings: tuple[str, ...]) -> bool:
    """Under SnapStart (template.yaml), run `prime` before Lambda takes the snapshot, so every
    environment restored from it starts with that work done (AWS calls this priming). The hook
    module is part of Lambda's python3.12+ runtime; elsewhere nothing is registered (False)."""
    try:
        from snapshot_restore_py import register_before_snapshot  # type: ignore[import-not-found]
    except ImportError:  # not on Lambda
        return False
    register_before_snapshot(lambda: prime(app, encodings))
    return True


def lambda_entry(app: App, prime_encodings: tuple[str, ...] = ()) -> Callable:
    """The Lambda handler for a resolver: logging with the request id, tracing, metrics. Answers
    what the resolver never needs to see (a body over MAX_BODY_BYTES or not UTF-8, a duplicated
    single header, no key or the wrong role) itself. Registers SnapStart priming
    (`register_priming`), with the tiktoken encodings the routes count with."""
    register_priming(app, prime_encodings)

    # log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: events carry keys and bodies.
    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict, context) -> dict:
        start_request()  # conflict retries stop in time for a 503, before the function times out
        body = event.get("body") or ""
        try:
            size = len(body.encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates: an event written by hand (sam local invoke -e)
            return _proxy_error(HTTPStatus.BAD_REQUEST, "invalid_json", "the request body is not UTF-8 JSON")
        if size > MAX_BODY_BYTES:
            return _proxy_error(
                PayloadTooLarge.status,
                PayloadTooLarge.code,
                f"the request body is over {MAX_BODY_BYTES} bytes",
            )
        sent = _values_sent(event)
        duplicated = _duplicated_header(sent)
        if duplicated:
            return _proxy_error(
                HTTPStatus.BAD_REQUEST,
                "duplicate_header",
                f"the {duplicated} header may be sent once; this request has it more than once",
            )
        if auth_enforced():
            refused = _refuse_early(event)
            if refused is not None:
                return refused
        if event.get("isBase64Encoded") and body and not _utf8(body):
            return _proxy_error(HTTPStatus.BAD_REQUEST, "invalid_json", "the request body is not UTF-8 JSON")
        return app.resolve(_as_json(_as_sent(event, sent)), context)

    return handler
