"""A small REST router for API Gateway proxy events: match the route, bind and validate its
arguments, call the handler, serialize what it returns.

Why not Powertools' ``APIGatewayRestResolver(enable_validation=True)``, which this service used
before cold starts were measured: importing ``aws_lambda_powertools.event_handler`` loads every resolver Powertools
has (AppSync, Bedrock agents, VPC Lattice, asyncio...) and its OpenAPI models, and the first
request builds a pydantic validator for every parameter of the route and for its response. That
was 60-90 ms of a ~250 ms floor on every cold start (``make bench``, section 3), and the cold-start
target is every function within 1.5x of a bare boto3 handler. API Gateway has already matched the route
by the time the event arrives, so what is left is small: this module keeps Powertools' way of
declaring routes (``@app.get("/projects/<project>")``, ``Annotated[..., Query(...)]`` parameters,
a pydantic body model, ``Response[Model]`` results) and does only what this API uses.

- Path parameters: from the percent-encoded ``path`` (as the client sent it), decoded; checked
  with the ``Path`` marker's rules without pydantic (``check`` is an extra rule, e.g. the
  UTF-8 byte limit of ids).
- Query parameters and headers: validated with a pydantic ``TypeAdapter`` built on first use,
  with the marker's constraints (``ge``, ``le``, ``max_length``).
- The body: parsed by the caller's JSON reader, validated by the route's pydantic model.
- Invalid input raises ``RequestInvalid`` with pydantic-style errors (``loc`` starts with
  ``path``, ``query``, ``header`` or ``body``); the caller answers it (a 4xx).

The OpenAPI document is still Powertools' own: ``openapi_resolver`` registers the same handlers,
with the markers translated to Powertools' params, on a validating resolver, at build time only
(``python -m localdev.openapi``), so the published schema and the validation here read the same
annotations.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

JSON = "application/json"
T = TypeVar("T")


class _Param:
    """A parameter marker: where the value comes from and the constraints it must meet
    (the keyword arguments of Powertools' ``Path``/``Query``/``Header``, which the OpenAPI
    document is built with)."""

    source = ""

    def __init__(self, *, check: Callable[[Any], Any] | None = None, **constraints: Any) -> None:
        self.check = check
        self.constraints = constraints
        self.alias: str | None = constraints.get("alias")


class Path(_Param):
    """A path parameter (``<name>`` in the rule): ``min_length``, ``max_length``, ``pattern``,
    ``description``; ``check`` a further rule raising ValueError."""

    source = "path"


class Query(_Param):
    """A query string parameter: ``alias`` (its name in the URL), ``ge``, ``le``, ``max_length``,
    ``description``."""

    source = "query"


class Header(_Param):
    """A request header: ``alias`` is its name (case-insensitive)."""

    source = "header"


class Response(Generic[T]):
    """A handler's answer with its own status, content type or headers. ``body`` is a pydantic
    model (serialized as JSON), text (sent as is) or None (no body, e.g. a 204)."""

    def __init__(
        self,
        status_code: int,
        content_type: str | None = JSON,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = int(status_code)
        self.content_type = content_type
        self.body = body
        self.headers = dict(headers or {})


class RequestInvalid(Exception):
    """Input that does not meet a route's declared rules: HTTP 422 (or 400 for a body that is not
    JSON, ``cause`` set to the parse error). ``errors`` are pydantic-style dicts (``loc``,
    ``msg``, ``type``)."""

    def __init__(self, errors: list[dict], cause: Exception | None = None) -> None:
        super().__init__(errors)
        self._errors = errors
        self.cause = cause

    def errors(self) -> list[dict]:
        return self._errors


class RouteNotFound(Exception):
    """No route of this router matches the method and path (HTTP 404)."""


class _Binding:
    # Route and _Binding are plain classes: a dataclass exec()s its generated methods when
    # created, ~1 ms of every API function's cold start for these two.
    def __init__(
        self,
        name: str,
        source: str,
        key: str,
        default: Any,
        required: bool,
        marker: _Param | None = None,
        model: Any = None,
        annotation: Any = None,
    ) -> None:
        self.name = name
        self.source = source  # path, query, header, body
        self.key = key  # the name in the request
        self.default = default
        self.required = required
        self.marker = marker
        self.model = model  # the body's pydantic model
        self.annotation = annotation
        self._adapter: Any = None

    def adapter(self):
        # Built on first use: only routes with query or header parameters import pydantic here.
        if self._adapter is None:
            from pydantic import Field, TypeAdapter

            keep = {"ge", "le", "gt", "lt", "min_length", "max_length", "pattern"}
            rules = {k: v for k, v in (self.marker.constraints if self.marker else {}).items() if k in keep}
            self._adapter = TypeAdapter(
                typing.Annotated[self.annotation, Field(**rules)] if rules else self.annotation
            )
        return self._adapter


class Route:
    def __init__(self, method: str, rule: str, handler: Callable, responses: dict | None = None) -> None:
        self.method = method
        self.rule = rule  # /projects/<project>/users/<user>
        self.handler = handler
        self.responses = responses
        regex = re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", rule)
        self.pattern = re.compile(f"^{regex}/*$")  # any trailing slashes, as Powertools' REST resolver
        self._bindings: list[_Binding] | None = None

    def bindings(self) -> list[_Binding]:
        """What each handler parameter is bound from, read from its annotations on first use."""
        if self._bindings is None:
            self._bindings = _bind(self)
        return self._bindings


def _bind(route: Route) -> list[_Binding]:
    hints = typing.get_type_hints(route.handler, include_extras=True)
    path_names = set(route.pattern.groupindex)
    out = []
    for name, param in inspect.signature(route.handler).parameters.items():
        annotation = hints.get(name, Any)
        base, marker = annotation, None
        if typing.get_origin(annotation) is typing.Annotated:
            base, *extras = typing.get_args(annotation)
            marker = next((m for m in extras if isinstance(m, _Param)), None)
        required = param.default is inspect.Parameter.empty
        default = None if required else param.default
        if name in path_names:
            out.append(_Binding(name, "path", name, default, True, marker, annotation=base))
        elif marker is not None:
            key = marker.alias or name
            out.append(_Binding(name, marker.source, key, default, required, marker, annotation=base))
        else:
            out.append(_Binding(name, "body", name, default, required, model=base, annotation=base))
    return out


@functools.lru_cache(maxsize=64)
def _pattern(pattern: str) -> re.Pattern:
    """`pattern` (a pydantic / JSON Schema pattern) compiled for Python's ``re`` with the meaning
    pydantic gives it: an unescaped ``$`` matches only at the very end (``\\Z``). In Python's ``re``
    it also matches before a final newline, which let a path id ending in ``%0A`` pass the id
    pattern that refuses control characters."""
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def check_path_value(value: str, marker: _Param | None) -> str | None:
    """The problem with a path parameter's value under its marker's rules, or None. The value is
    decoded with ``surrogateescape``: bytes that are not UTF-8 (``%FF``, overlong forms, encoded
    surrogates) are refused here, never replaced (two such ids would name one record)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be percent-encoded UTF-8 text"
    rules = marker.constraints if marker else {}
    if len(value) < rules.get("min_length", 0):
        return f"String should have at least {rules['min_length']} character"
    if "max_length" in rules and len(value) > rules["max_length"]:
        return f"String should have at most {rules['max_length']} characters"
    if "pattern" in rules and not _pattern(rules["pattern"]).search(value):
        return f"String should match pattern '{rules['pattern']}'"
    if marker is not None and marker.check is not None:
        try:
            marker.check(value)
        except ValueError as exc:
            return f"Value error, {exc}"
    return None


class Router:
    """Routes of one Lambda function. ``get/put/post/delete(rule)`` register a handler; ``resolve``
    answers an API Gateway REST proxy event with a Lambda proxy result.

    The event and Lambda context being handled are kept per thread (``event``, ``lambda_context``):
    Lambda hands a process one event at a time, but the tests invoke handlers from several
    threads at once, and one request's body must never reach another's handler.
    """

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._handling = threading.local()

    def route(self, rule: str, method: str, responses: dict | None = None) -> Callable:
        def register(handler: Callable) -> Callable:
            self.routes.append(Route(method.upper(), rule, handler, responses))
            return handler

        return register

    def get(self, rule: str, responses: dict | None = None) -> Callable:
        return self.route(rule, "GET", responses)

    def put(self, rule: str, responses: dict | None = None) -> Callable:
        return self.route(rule, "PUT", responses)

    def post(self, rule: str, responses: dict | None = None) -> Callable:
        return self.route(rule, "POST", responses)

    def delete(self, rule: str, responses: dict | None = None) -> Callable:
        return self.route(rule, "DELETE", responses)

    @property
    def event(self) -> dict:
        """The raw API Gateway event being handled (this thread's)."""
        return self._handling.event

    @property
    def lambda_context(self) -> Any:
        return self._handling.context

    def match(self, event: dict) -> tuple[Route, dict[str, str]]:
        """The route for the event's method and path, and its path arguments (decoded).
        Raises RouteNotFound."""
        method = str(event.get("httpMethod") or "").upper()
        path = str(event.get("path") or "")
        for route in self.routes:
            if route.method == method:
                found = route.pattern.match(path)
                if found:
                    args = found.groupdict().items()
                    return route, {k: unquote(v, errors="surrogateescape") for k, v in args}
        raise RouteNotFound(f"{method} {path}")

    def arguments(
        self, route: Route, path_args: dict[str, str], event: dict, body: Callable[[], Any]
    ) -> dict:
        """The handler's keyword arguments, validated. `body` returns the parsed JSON body (or
        None when there is none) and raises json.JSONDecodeError for one that does not parse.
        Raises RequestInvalid."""
        errors: list[dict] = []
        kwargs: dict[str, Any] = {}
        sent = values_sent(event)
        for b in route.bindings():
            if b.source == "path":
                value = path_args[b.key]
                problem = check_path_value(value, b.marker)
                if problem:
                    errors.append({"loc": ("path", b.key), "msg": problem, "type": "value_error"})
                kwargs[b.name] = value
            elif b.source in ("query", "header"):
                values = sent.get((b.source, b.key if b.source == "query" else b.key.lower()), [])
                if len(values) > 1:  # which copy counts would be a guess (Powertools: a 422 too)
                    msg = f"Sent {len(values)} times; send it once"
                    errors.append({"loc": (b.source, b.key), "msg": msg, "type": "multiple_values"})
                    continue
                raw = values[0] if values else None
                if raw is None:
                    if b.required:
                        errors.append({"loc": (b.source, b.key), "msg": "Field required", "type": "missing"})
                    kwargs[b.name] = b.default
                    continue
                from pydantic import ValidationError

                try:
                    kwargs[b.name] = b.adapter().validate_python(raw, strict=False)
                except ValidationError as exc:
                    errors += [{**e, "loc": (b.source, b.key, *e["loc"])} for e in exc.errors()]
            else:
                from pydantic import ValidationError

                try:
                    data = body()
                except ValueError as exc:  # json.JSONDecodeError, BodyRejected
                    raise RequestInvalid(
                        [{"loc": ("body",), "msg": str(exc), "type": "json_invalid"}], exc
                    ) from exc
                if data is None:
                    if b.required:
                        errors.append({"loc": ("body",), "msg": "Field required", "type": "missing"})
                    kwargs[b.name] = b.default
                    continue
                try:
                    kwargs[b.name] = b.model.model_validate(data)
                except ValidationError as exc:
                    errors += [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        if errors:
            raise RequestInvalid(errors)
        return kwargs


def values_sent(event: dict) -> dict[tuple[str, str], list]:
    """Every value sent for each query parameter (by name) and header (by lower-case name: header
    names are case-insensitive). API Gateway keeps every copy in the multi-value maps and the last
    in ``queryStringParameters``/``headers``; as in Powertools, a name in a multi-value map takes
    its values from there, and the single-value map fills in names it lacks (hand-written events)."""
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


def serialize(value: Any, dumps: Callable[[Any], str]) -> tuple[str, str | None]:
    """A handler's body as (text, content type): a pydantic model as JSON (by alias, numbers as
    its serializers say), text as is, None as no body."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return value, None
    return dumps(value.model_dump(mode="json", by_alias=True)), JSON


def openapi_resolver(router: Router):
    """A Powertools ``APIGatewayRestResolver`` with validation, holding this router's routes with
    their markers translated to Powertools' ``Path``/``Query``/``Header`` and ``Response``: its
    ``get_openapi_json_schema()`` is the routes' OpenAPI document. Build time only (imports
    Powertools' event handler)."""
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from aws_lambda_powertools.event_handler import Response as PowertoolsResponse
    from aws_lambda_powertools.event_handler.openapi import params
    from pydantic import AfterValidator

    kinds = {"path": params.Path, "query": params.Query, "header": params.Header}

    def translate(annotation: Any) -> Any:
        if typing.get_origin(annotation) is typing.Annotated:
            base, *extras = typing.get_args(annotation)
            out: list[Any] = []
            for extra in extras:
                if isinstance(extra, _Param):
                    out.append(kinds[extra.source](**extra.constraints))
                    if extra.check is not None:
                        out.append(AfterValidator(extra.check))
                else:
                    out.append(extra)
            return typing.Annotated[tuple([translate(base), *out])]
        if typing.get_origin(annotation) is Response:
            return PowertoolsResponse[typing.get_args(annotation)]  # type: ignore[misc]
        if annotation is Response:
            return PowertoolsResponse
        return annotation

    resolver = APIGatewayRestResolver(enable_validation=True)
    for route in router.routes:
        hints = typing.get_type_hints(route.handler, include_extras=True)
        signature = inspect.signature(route.handler)
        parameters = [
            p.replace(annotation=translate(hints.get(name, p.annotation)))
            for name, p in signature.parameters.items()
        ]
        returns = translate(hints.get("return", signature.return_annotation))

        def stub(**kwargs: Any) -> Any:  # never called: only read for its signature
            raise NotImplementedError

        stub.__name__ = route.handler.__name__
        stub.__doc__ = route.handler.__doc__
        stub.__signature__ = signature.replace(parameters=parameters, return_annotation=returns)  # type: ignore[attr-defined]
        resolver.route(route.rule, route.method, responses=route.responses)(stub)
    return resolver
