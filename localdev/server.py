"""Local runtime: template.yaml's API and schedules, served in process over an embedded DynamoDB.

``python -m localdev.server`` (what ``make dev`` runs):

- starts the embedded DynamoDB (moto) and creates the table from template.yaml, or, when
  ``AWS_ENDPOINT_URL_DYNAMODB`` is set, uses that endpoint and ``TABLE_NAME`` (creating the table
  only if it does not exist);
- serves every ``Api`` event of template.yaml on http://127.0.0.1:$PORT (default 3000) by calling
  the declared handler with the REST (v1) proxy event API Gateway would send, and turning the
  proxy result back into HTTP;
- runs the template's scheduled functions on their schedule;
- reads the table's DynamoDB stream and invokes the functions with a ``DynamoDB`` event as
  Lambda's event source mapping would (localdev/streams.py; ``GET /_local/streams``);
- stands in for the template's EventBridge bus (localdev/eventbridge.py): the functions'
  PutEvents land here, ``GET /_local/events`` lists them, and with ``ALERT_WEBHOOK_URL`` set
  each is POSTed there with ``ALERT_WEBHOOK_SECRET`` in the connection's header;
- ``POST /_local/invoke/{FunctionLogicalId}`` invokes any function with the body as its event;
- ``GET``/``POST /_local/clock`` show and move the clock the handlers and schedules run on
  (localdev/clock.py; ``LOCAL_CLOCK_START`` starts it shifted);
- ``GET /openapi.json`` describes the API; ``GET /docs`` is Swagger UI on it (offline: its files
  come from the swagger-ui-py package, served under ``/docs/static/``).
- ``GET /console/`` is the web console: the files of console/, as the stack's ConsoleFunction
  serves them (console/serve.py), read from disk on each request so an edit shows on reload.

Auth: by default the API is open (``API_AUTH=off`` for the handlers). With ``AUTH=1`` the
template's Lambda authorizer runs in front of every API route, as API Gateway runs it
(localdev/auth.py): ``Authorization: Bearer <key>`` is required, answers are cached for the
template's TTL (``AUTH_CACHE_TTL`` overrides it), and handlers enforce the key's scope. Mint a
key with ``make key`` against this server's DynamoDB (the command is printed at start).
``/_local/invoke``, ``/openapi.json``, ``/docs`` and ``/console`` stay open (the console's files
hold no data; its requests to the API carry the key the user types).

Concurrent requests run concurrently, each in a container of its own (localdev/containers.py):
the server is threaded, and each function has a pool of handler instances, each serving one
request at a time as a Lambda container does (Powertools resolvers keep the current event on the
module-level app, so two requests must not share one). A request that finds every container of
its function busy gets a new one, up to ``LOCAL_MAX_CONTAINERS`` per function (default 16);
past that it waits for one to come free (Lambda would throttle it).

The embedded DynamoDB models DynamoDB's transaction conflicts and per-partition write capacity
(localdev/contention.py): on by default, ``LOCAL_DYNAMODB_CONFLICTS=0 make dev`` turns it off,
``LOCAL_DYNAMODB_CONFLICT_WINDOW_MS`` and ``LOCAL_DYNAMODB_PARTITION_WCU`` tune it.

``GET /_local/stats`` shows how many API requests run now and the most that ran at once
(``{"in_flight", "max_in_flight", "started", "containers": {function: {"containers", "busy",
"max_busy", "invocations"}}, "dynamodb": <the contention counters, or null>}``);
``POST /_local/stats/reset`` starts the high-water marks and counters again.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from werkzeug.datastructures import Headers
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from localdev import events, openapi, template
from localdev.containers import DEFAULT_MAX_CONTAINERS, ContainerPool, InFlight, max_containers_from

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

    from localdev.auth import LocalAuthorizer
    from localdev.clock import LocalClock
    from localdev.dynamodb import EmbeddedDynamoDB
    from localdev.schedules import Scheduler

DEFAULT_PORT = 3000
DEFAULT_TABLE = "llm-budget-local"
HOST = "127.0.0.1"
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
# Headers a proxy result may not set: the server computes them for the bytes it sends.
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}
INVOKE_PREFIX = "/_local/invoke/"
CLOCK_PATH = "/_local/clock"
STATS_PATH = "/_local/stats"
CONSOLE_PATH = "/console"


# ---- routing: API Gateway's resource matching ------------------------------------------------


@dataclass(frozen=True)
class Match:
    route: template.ApiRoute
    path_parameters: dict[str, str]


class RouteTable:
    """The template's Api routes, matched the way API Gateway matches resources.

    Matching runs on the raw (still percent-encoded) path split at "/", and each captured segment
    is then decoded, so ``a%2Fb`` is one path parameter ``a/b``. A literal segment beats a
    ``{param}``, which beats a greedy ``{param+}``.
    """

    def __init__(self, routes: list[template.ApiRoute]) -> None:
        self.routes = routes
        self.resources: dict[str, list[template.ApiRoute]] = {}
        for route in routes:
            self.resources.setdefault(route.path, []).append(route)

    @staticmethod
    def _match(resource: str, segments: list[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
        pattern = resource.strip("/").split("/") if resource.strip("/") else []
        params: dict[str, str] = {}
        rank: list[int] = []
        for i, part in enumerate(pattern):
            if part.startswith("{") and part.endswith("+}"):
                rest = segments[i:]
                if not rest or "" in rest:
                    return None
                params[part[1:-2]] = "/".join(unquote(s) for s in rest)
                return (*rank, 2), params
            if i >= len(segments) or segments[i] == "":
                return None
            if part.startswith("{") and part.endswith("}"):
                params[part[1:-1]] = unquote(segments[i])
                rank.append(1)
            elif unquote(segments[i]) == part:
                rank.append(0)
            else:
                return None
        if len(segments) != len(pattern):
            return None
        return tuple(rank), params

    def find(self, method: str, raw_path: str) -> tuple[Match | None, list[str]]:
        """The route for method and path, or (None, methods the path allows: [] if unknown)."""
        segments = raw_path.strip("/").split("/") if raw_path.strip("/") else []
        candidates = []
        for resource, routes in self.resources.items():
            found = self._match(resource, segments)
            if found:
                candidates.append((found[0], found[1], routes))
        candidates.sort(key=lambda c: c[0])
        allowed: list[str] = []
        for _rank, params, routes in candidates:
            for route in routes:
                if route.method in (method, "ANY"):
                    return Match(route, params), []
            allowed += [r.method for r in routes if r.method not in allowed]
        return None, allowed


# ---- the proxy event and result ---------------------------------------------------------------


def _parse_query(raw: str) -> dict[str, list[str]] | None:
    """API Gateway's query parameters: percent-decoded ("+" stays "+"), every value kept."""
    multi: dict[str, list[str]] = {}
    for pair in raw.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        multi.setdefault(unquote(name), []).append(unquote(value))
    return multi or None


def proxy_event(request: Request, match: Match, stage: str, request_id: str | None = None) -> dict:
    """The REST API (v1) Lambda proxy event API Gateway builds for this request."""
    raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
    raw_path = urlsplit(raw_uri).path or "/"

    headers = Headers(request.headers)
    client_ip = request.remote_addr or "127.0.0.1"
    forwarded = headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{forwarded}, {client_ip}" if forwarded else client_ip
    headers["X-Forwarded-Port"] = str(request.environ.get("SERVER_PORT", ""))
    headers["X-Forwarded-Proto"] = request.scheme
    multi: dict[str, list[str]] = {}
    for name, value in headers.items():
        multi.setdefault(name, []).append(value)

    raw_body = request.get_data(cache=True)
    body: str | None
    is_base64 = False
    if not raw_body:
        body = None
    else:
        try:
            body = raw_body.decode("utf-8")
        except UnicodeDecodeError:
            body, is_base64 = base64.b64encode(raw_body).decode("ascii"), True

    return events.rest_proxy_event(
        method=request.method,
        resource=match.route.path,
        path=raw_path,  # API Gateway passes the path still percent-encoded
        headers=multi,
        query=_parse_query(request.environ.get("QUERY_STRING", "")),
        path_parameters=match.path_parameters,
        body=body,
        is_base64=is_base64,
        stage=stage,
        request_id=request_id,
        domain=request.host,
        source_ip=client_ip,
        protocol=request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
    )


def console_response(path: str) -> Response:
    """A static file of the web console (console/serve.py decides which and with what headers);
    ``/console`` redirects to ``/console/`` as the stack's function does."""
    if path == CONSOLE_PATH:
        return Response("", status=301, headers={"Location": CONSOLE_PATH + "/"})
    found = _console_module().asset(path[len(CONSOLE_PATH) :])
    if found is None:
        return _error(404, "not_found", f"no such file: {path}")
    return Response(found.body, headers=found.headers)


def _console_module():
    """console/serve.py, imported by path (console/ is a function's code, not a package)."""
    import importlib.util

    module = sys.modules.get("_console_serve")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "_console_serve", template.ROOT / "console" / "serve.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["_console_serve"] = module
    return module


def _json_response(status: int, payload, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload), status=status, headers=headers, content_type="application/json")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return _json_response(status, {"error": {"code": code, "message": message}}, headers)


def proxy_response(result) -> Response:
    """An HTTP response from a Lambda proxy result, as API Gateway makes it."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        print(f"malformed Lambda proxy response: {result!r:.500}", file=sys.stderr)
        return _json_response(502, {"message": "Internal server error"})
    headers = Headers()
    multi = result.get("multiValueHeaders") or {}
    for name, values in multi.items():
        for value in values:
            headers.add(name, str(value))
    # A header in both maps keeps only the multiValueHeaders values (API Gateway's merge rule).
    multi_names = {name.lower() for name in multi}
    for name, value in (result.get("headers") or {}).items():
        if name.lower() not in multi_names:
            headers.add(name, str(value))
    for name in list(headers.keys()):
        if name.lower() in _HOP_BY_HOP:
            del headers[name]
    if "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"  # API Gateway's default
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except binascii.Error:
            print("Lambda proxy response: isBase64Encoded but body is not base64", file=sys.stderr)
            return _json_response(502, {"message": "Internal server error"})
    else:
        data = body.encode("utf-8")
    return Response(data, status=result["statusCode"], headers=headers)


# ---- invoking handlers ------------------------------------------------------------------------


class Invoker:
    """Calls template functions in process, each invocation in a container of its own from a
    pool of at most `max_containers` per function (see the module docstring)."""

    def __init__(self, max_containers: int | None = DEFAULT_MAX_CONTAINERS) -> None:
        self.pool = ContainerPool(max_containers)
        self.specs = template.functions()

    def load_all(self) -> None:
        """Import every function's first container now (import errors show at start)."""
        for function_id in self.specs:
            template.load_handler(function_id)

    def invoke(self, function_id: str, event) -> object:
        return self.pool.invoke(function_id, event, template.lambda_context(function_id))


# ---- the WSGI application ---------------------------------------------------------------------


class LocalGateway:
    """API Gateway in front of the template's functions, plus the local-only routes."""

    def __init__(
        self,
        routes: RouteTable,
        invoke: Callable[[str, object], object],
        functions: set[str],
        stage: str,
        openapi: Callable[[], dict],
        docs_page: Callable[[dict], str],
        authorizer=None,
        event_bus=None,
        streams=(),
        clock=None,
        requests: InFlight | None = None,
        stats: Callable[[], dict] | None = None,
        reset_stats: Callable[[], None] | None = None,
    ) -> None:
        self.requests = requests or InFlight()  # API requests running now, and the most at once
        self.extra_stats = stats  # more for GET /_local/stats (containers, DynamoDB)
        self.reset_extra_stats = reset_stats
        self.clock = clock  # localdev.clock.LocalClock, or None: no /_local/clock route
        self.authorizer = authorizer  # localdev.auth.LocalAuthorizer, or None: open
        self.event_bus = event_bus  # localdev.eventbridge.LocalEventBus, or None
        self.streams = streams  # localdev.streams.StreamPoller, one per stream event
        self.routes = routes
        self.invoke = invoke
        self.functions = functions
        self.stage = stage
        self.openapi = openapi
        self.docs_page = docs_page

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except Exception:  # a bug here must still answer, like API Gateway's 5xx
            traceback.print_exc()
            response = _json_response(500, {"message": "Internal server error"})
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        """The answer to one request: the local endpoints, then /docs and the console, then the
        API's routes."""
        if request.content_length and request.content_length > MAX_REQUEST_BYTES:
            return _json_response(413, {"message": "Request Too Long"})
        for answer in (self.local_endpoint, self.pages):
            response = answer(request)
            if response is not None:
                return response
        return self.api(request)

    def local_endpoint(self, request: Request) -> Response | None:
        """The EventBridge stand-in, /_local/* and ``sam local invoke``; None for any other request."""
        path = request.path
        if request.headers.get("X-Amz-Target", "").startswith("AWSEvents.") and request.method == "POST":
            if self.event_bus is None:
                return _error(404, "not_found", "template.yaml declares no EventBridge bus")
            return self.event_bus.handle(request)
        if path == "/_local/events" and request.method == "GET":
            return _json_response(200, {"events": self.event_bus.events() if self.event_bus else []})
        if path == "/_local/events/faults" and request.method == "POST":
            if self.event_bus is None:
                return _error(404, "not_found", "template.yaml declares no EventBridge bus")
            body = request.get_json(silent=True) or {}
            self.event_bus.set_faults(int(body.get("fail_after_put", 0)))
            return _json_response(200, {"fail_after_put": int(body.get("fail_after_put", 0))})
        if path == "/_local/streams" and request.method == "GET":
            return _json_response(200, {"mappings": [p.status() for p in self.streams]})
        if path.startswith(INVOKE_PREFIX):
            if request.method != "POST":
                return _error(405, "method_not_allowed", "use POST", {"Allow": "POST"})
            return self.local_invoke(path[len(INVOKE_PREFIX) :], request)
        if path == CLOCK_PATH and self.clock is not None:
            return self.local_clock(request)
        if path == STATS_PATH and request.method == "GET":
            return _json_response(200, self.stats())
        if path == STATS_PATH + "/reset" and request.method == "POST":
            self.requests.reset()
            if self.reset_extra_stats is not None:
                self.reset_extra_stats()
            return _json_response(200, self.stats())
        return None

    def pages(self, request: Request) -> Response | None:
        """/openapi.json, the Swagger UI page and its assets, the console; None for any other request."""
        path = request.path
        if request.method != "GET":
            return None
        if path == "/openapi.json":
            doc = dict(self.openapi())
            doc["servers"] = [{"url": request.host_url.rstrip("/"), "description": "this server"}]
            return _json_response(200, doc)
        if path in ("/docs", "/docs/"):
            return Response(self.docs_page(self.openapi()), content_type="text/html; charset=utf-8")
        if path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/"):
            return console_response(path)
        if path.startswith(openapi.DOCS_ASSETS):
            asset = openapi.docs_asset(path[len(openapi.DOCS_ASSETS) :])
            if asset is None:
                return _error(404, "not_found", f"no such file: {path}")
            return Response(asset[0], content_type=asset[1], headers={"Cache-Control": "max-age=3600"})
        return None

    def api(self, request: Request) -> Response:
        """A template route, as API Gateway serves it: matched on the raw path, authorized (with
        AUTH=1), its function invoked with a proxy event; 404/405 when no route matches."""
        path = request.path
        raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or path
        match, allowed = self.routes.find(request.method, urlsplit(raw_uri).path or "/")
        if match is None:
            if allowed:
                return _error(
                    405,
                    "method_not_allowed",
                    f"{request.method} is not allowed on {path}; allowed: {', '.join(allowed)}",
                    {"Allow": ", ".join(allowed)},
                )
            return _error(404, "not_found", f"no route for {request.method} {path}")

        request_id = str(uuid.uuid4())
        event = proxy_event(request, match, self.stage, request_id)
        if self.authorizer is not None:
            denied = self.authorize(request, urlsplit(raw_uri).path or "/", event)
            if denied is not None:
                denied.headers["x-amzn-RequestId"] = request_id
                return denied
        try:
            with self.requests.track():
                result = self.invoke(match.route.function_id, event)
        except Exception:
            # What the Lambda service reports to API Gateway for an unhandled error.
            traceback.print_exc()
            response = _json_response(502, {"message": "Internal server error"})
        else:
            response = proxy_response(result)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    def authorize(self, request: Request, path: str, event: dict) -> Response | None:
        """The authorizer's refusal (401/403), or None with its context put in the event."""
        from localdev.auth import Denied

        decision = self.authorizer.authorize(request.headers, request.method, path)
        if isinstance(decision, Denied):
            return Response(
                decision.body,
                status=decision.status,
                headers=decision.headers,
                content_type="application/json",
            )
        event["requestContext"]["authorizer"] = decision
        return None

    def stats(self) -> dict:
        """GET /_local/stats (see the module docstring)."""
        return {**self.requests.snapshot(), **(self.extra_stats() if self.extra_stats else {})}

    def local_clock(self, request: Request) -> Response:
        """``GET``: the clock; ``POST {"now": iso} | {"advance_seconds": n}`` (+ ``"frozen"``): move it."""
        from localdev.clock import ClockError

        if request.method == "GET":
            return _json_response(200, self.clock.state())
        if request.method != "POST":
            return _error(405, "method_not_allowed", "use GET or POST", {"Allow": "GET, POST"})
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except json.JSONDecodeError as exc:
            return _error(400, "invalid_json", f"the body is not valid JSON: {exc}")
        try:
            state = self.clock.apply(body)
        except ClockError as exc:
            return _error(400, "invalid_clock", str(exc))
        print(f"clock: now {state['now']}", flush=True)
        return _json_response(200, state)

    def local_invoke(self, function_id: str, request: Request) -> Response:
        """``sam local invoke -e``: the body is the event, the answer is the handler's result."""
        if function_id not in self.functions:
            return _error(
                404,
                "function_not_found",
                f"no function {function_id!r} in template.yaml; known: {', '.join(sorted(self.functions))}",
            )
        raw = request.get_data(as_text=True)
        try:
            event = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            return _error(400, "invalid_json", f"the event is not valid JSON: {exc}")
        try:
            result = self.invoke(function_id, event)
        except Exception as exc:
            traceback.print_exc()
            return _function_error(type(exc).__name__, str(exc), exc)
        try:
            body = json.dumps(result)
        except (TypeError, ValueError) as exc:
            # The Lambda runtime cannot serialize the result either (e.g. a Decimal).
            return _function_error("Runtime.MarshalError", f"Unable to marshal response: {exc}", exc)
        return Response(body, status=200, content_type="application/json")


def _function_error(error_type: str, message: str, exc: BaseException) -> Response:
    """The Lambda Invoke API's answer for a function error: HTTP 200 with this header."""
    return _json_response(
        200,
        {
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": traceback.format_tb(exc.__traceback__),
        },
        {"X-Amz-Function-Error": "Unhandled"},
    )


# ---- configuration and startup ----------------------------------------------------------------


def _ensure_table(client, table_name: str) -> bool:
    """Create the table from the template unless it exists; True if created."""
    try:
        client.describe_table(TableName=table_name)
        return False
    except client.exceptions.ResourceNotFoundException:
        template.create_table(client, table_name)
        return True


def _event_bus(env, notes: list[str]):
    """The local stand-in for the template's EventBridge bus (None if it declares none), with the
    webhook rule when ``ALERT_WEBHOOK_URL`` is set."""
    from localdev.eventbridge import LocalEventBus

    buses = template.resources("AWS::Events::EventBus")
    if not buses:
        return None
    params = template.parameter_defaults()
    name = template.literal(next(iter(buses.values()))["Properties"]["Name"], params, env["AWS_REGION"])
    url = env.get("ALERT_WEBHOOK_URL") or None
    header = pattern = None
    for res in template.resources("AWS::Events::Connection").values():
        header = res["Properties"]["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyName"]
    for res in template.resources("AWS::Events::Rule").values():
        pattern = template.plain_values(res["Properties"].get("EventPattern"))
    bus = LocalEventBus(
        name,
        env["AWS_REGION"],
        webhook_url=url,
        webhook_header=header,
        webhook_secret=env.get("ALERT_WEBHOOK_SECRET"),
        webhook_pattern=pattern,
        log=lambda m: print(m, flush=True),
    )
    notes.append(
        f"EventBridge bus {name}: in memory, GET /_local/events"
        + (
            f"; each event POSTed to {url} ({header} header)"
            if url
            else "; ALERT_WEBHOOK_URL=<url> to POST each event"
        )
    )
    return bus


class _RequestLog(WSGIRequestHandler):
    """One access-log line per request of ours; the embedded DynamoDB's requests stay quiet
    (both servers log through the "werkzeug" logger, which main() turns down)."""

    def log_request(self, code="-", size="-") -> None:
        print(
            f'{self.address_string()} "{self.requestline}" {getattr(code, "value", code)}',
            file=sys.stderr,
            flush=True,
        )


class LocalRuntime:
    """Everything ``make dev`` runs, started and stopped together."""

    def __init__(self, port: int, environ=os.environ) -> None:
        self.port = port
        self.environ = environ
        self.dynamodb: EmbeddedDynamoDB | None = None
        self.http: BaseWSGIServer | None = None
        self.scheduler: Scheduler | None = None
        self.authorizer: LocalAuthorizer | None = None
        self.clock: LocalClock | None = None
        self.event_bus = None
        self.invoker: Invoker | None = None
        self.streams: list = []
        self.notes: list[str] = []

    def start(self) -> LocalRuntime:
        from werkzeug.serving import make_server

        from localdev import schedules
        from localdev.dynamodb import EmbeddedDynamoDB, client_for

        env = self.environ
        env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", "us-east-1"))
        env.setdefault("AWS_REGION", env["AWS_DEFAULT_REGION"])
        # No X-Ray daemon locally.
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
        external = env.get("AWS_ENDPOINT_URL_DYNAMODB")
        if external:
            table = env.get("TABLE_NAME") or DEFAULT_TABLE
            import boto3

            if boto3.Session().get_credentials() is None:
                # DynamoDB Local wants a signature but accepts any key.
                env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "local", "local"
            client = boto3.client("dynamodb", endpoint_url=external)
            created = _ensure_table(client, table)
            self.notes.append(f"DynamoDB: {external}, table {table} ({'created' if created else 'existing'})")
        else:
            table = env.get("TABLE_NAME") or DEFAULT_TABLE
            # Fake credentials: nothing here may ever reach real AWS.
            env.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local")
            env.pop("AWS_SESSION_TOKEN", None)
            env.pop("AWS_PROFILE", None)
            from localdev.contention import ContentionModel

            contention = ContentionModel.from_environ(env)
            self.dynamodb = EmbeddedDynamoDB(contention=contention).start()
            env["AWS_ENDPOINT_URL_DYNAMODB"] = self.dynamodb.url
            template.create_table(client_for(self.dynamodb.url), table)
            self.notes.append(f"DynamoDB: embedded (moto) at {self.dynamodb.url}, table {table}")
            self.notes.append(
                "DynamoDB contention: off (LOCAL_DYNAMODB_CONFLICTS=0)"
                if contention is None
                else f"DynamoDB contention: transactions in flight {contention.window_s * 1000:g} ms,"
                f" {contention.partition_wcu:g} WCU/s per partition key (0: off); LOCAL_DYNAMODB_CONFLICTS=0"
                " turns it off"
            )
        for name, value in template.function_environment(table).items():
            if name not in ("TABLE_NAME", "AWS_ENDPOINT_URL_DYNAMODB"):
                env.setdefault(name, value)
        env["TABLE_NAME"] = table
        auth_on = env.get("AUTH", "").strip().lower() in ("1", "true", "on", "yes")
        env["API_AUTH"] = "on" if auth_on else "off"  # the handlers' check follows the gateway's

        invoker = self.invoker = Invoker(max_containers_from(env))
        invoker.load_all()  # import errors show now, and the first request is not slow

        # One clock for handlers, lazy rollovers and schedules (the layer is imported by now).
        from budget_service.core import clock as service_clock
        from localdev import clock as local_clock

        clock = self.clock = local_clock.from_environ(env)
        service_clock.use(clock.time)

        doc_lock = threading.Lock()
        doc_cache: list[dict] = []

        def openapi_doc() -> dict:
            with doc_lock:
                if not doc_cache:
                    doc_cache.append(openapi.build_document())
                return doc_cache[0]

        stage = template.parameter_defaults().get("StageName", "v1")
        routes = RouteTable(template.api_routes())
        for r in routes.routes:
            if r.path in ("/openapi.json", "/docs") or r.path.startswith("/_local/"):
                self.notes.append(f"warning: {r.method} {r.path} is shadowed by a local route")
        authorizer = None
        if auth_on:
            from localdev import auth

            params = template.parameter_defaults()
            if env.get("AUTH_CACHE_TTL"):
                params["AuthCacheTtlSeconds"] = env["AUTH_CACHE_TTL"]
            spec = auth.from_template(params)
            if spec is None:
                raise ValueError("AUTH=1, but template.yaml's API has no DefaultAuthorizer")
            authorizer = auth.LocalAuthorizer(spec, invoker.invoke, env["AWS_REGION"], stage)
            self.notes.append(
                f"auth: on ({spec.function_id}, Authorization: Bearer <key>, cached {spec.ttl_seconds}s);"
                f" mint a key: AWS_ENDPOINT_URL_DYNAMODB={env['AWS_ENDPOINT_URL_DYNAMODB']}"
                f" AWS_DEFAULT_REGION={env['AWS_DEFAULT_REGION']}"
                f" TABLE_NAME={table} make key PROJECT=<project> ROLE=admin"
            )
        else:
            self.notes.append("auth: off (AUTH=1 to require API keys)")
        self.authorizer = authorizer
        self.event_bus = _event_bus(env, self.notes)
        app = LocalGateway(
            routes,
            invoker.invoke,
            set(invoker.specs),
            stage,
            openapi_doc,
            openapi.docs_page,
            authorizer,
            self.event_bus,
            self.streams,
            self.clock,
            stats=self._stats,
            reset_stats=self._reset_stats,
        )
        self.http = make_server(HOST, self.port, app, threaded=True, request_handler=_RequestLog)
        self.port = self.http.server_port
        state = clock.state()
        self.notes.append(
            f"clock: {state['now']}"
            + (
                f" (shifted by {state['shifted_by_seconds']:+.0f}s, {local_clock.ENV_START})"
                if env.get(local_clock.ENV_START)
                else " (wall clock)"
            )
            + f"; move it: curl -X POST {self.url}{CLOCK_PATH} -d '{{\"advance_seconds\": 60}}'"
        )
        if self.event_bus is not None:
            # The functions' boto3 events client talks to the stand-in above, on this server.
            env["AWS_ENDPOINT_URL_EVENTBRIDGE"] = self.url
            env["ALERT_BUS_NAME"] = self.event_bus.bus_name
        # Streams before serving: the socket is bound already (a PutEvents from the first
        # invocation waits in its backlog), and the server answers only once start-up is done.
        self._start_streams(env, table, invoker)
        self._http_thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self._http_thread.start()

        found, skipped = schedules.from_template(template.scheduled_events(), template.parameter_defaults())
        self.notes += [f"schedule skipped: {why}" for why in skipped]
        self.scheduler = schedules.Scheduler(
            found,
            invoker.invoke,
            env["AWS_REGION"],
            now=lambda: datetime.fromtimestamp(clock.time(), UTC),
            log=lambda m: print(m, flush=True),
        )
        clock.listeners.append(self.scheduler.clock_moved)
        self.scheduler.start()
        for s in found:
            self.notes.append(
                f"schedule {s.expression} -> {s.function_id} (next {s.next_run:%Y-%m-%d %H:%M:%S} UTC)"
            )
        return self

    def _start_streams(self, env, table: str, invoker: Invoker) -> None:
        import boto3

        from localdev import streams

        found = template.stream_events()
        if not found:
            return
        endpoint = env["AWS_ENDPOINT_URL_DYNAMODB"]
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=env["AWS_REGION"])
        stream_client = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name=env["AWS_REGION"])
        for function_id, event_id, props in found:
            mapping, notes = streams.StreamMapping.from_template(function_id, event_id, props)
            self.notes += notes
            try:
                poller = streams.StreamPoller(
                    mapping,
                    stream_client,
                    dynamodb,
                    table,
                    invoker.invoke,
                    log=lambda m: print(m, flush=True),
                ).start()
            except (ValueError, KeyError) as exc:
                self.notes.append(f"stream {function_id}.{event_id} skipped: {exc}")
                continue
            self.streams.append(poller)
            self.notes.append(
                f"stream {table} -> {function_id} (batch {mapping.batch_size},"
                f" {'filtered' if mapping.filters else 'unfiltered'}); GET {self.url}/_local/streams"
            )

    def _stats(self) -> dict:
        model = self.dynamodb.contention if self.dynamodb is not None else None
        return {
            "containers": self.invoker.pool.stats() if self.invoker else {},
            "dynamodb": model.stats() if model is not None else None,
        }

    def _reset_stats(self) -> None:
        if self.invoker is not None:
            self.invoker.pool.reset_stats()
        if self.dynamodb is not None and self.dynamodb.contention is not None:
            self.dynamodb.contention.reset_stats()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        for poller in self.streams:
            poller.stop()
        if self.event_bus:
            self.event_bus.stop()
        if self.clock is not None:
            from budget_service.core import clock as service_clock

            service_clock.use(None)
        if self.scheduler:
            self.scheduler.stop()
        if self.http:
            self.http.shutdown()
            self.http.server_close()
        if self.dynamodb:
            self.dynamodb.stop()


def main() -> int:
    port_text = os.environ.get("PORT", str(DEFAULT_PORT))
    try:
        port = int(port_text)
    except ValueError:
        print(f"PORT must be a number, not {port_text!r}", file=sys.stderr)
        return 2
    stopped = threading.Event()
    # Set the flag from both signals; the main thread does the shutdown (not the handler).
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    try:
        runtime = LocalRuntime(port).start()
    except OSError as exc:
        print(f"cannot serve on {HOST}:{port}: {exc} (set PORT to use another port)", file=sys.stderr)
        return 1
    except ValueError as exc:  # a LOCAL_* setting that is not a number
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    for note in runtime.notes:
        print(note)
    for route in template.api_routes():
        print(f"  {route.method:6} {runtime.url}{route.path}  -> {route.function_id}")
    print(f"  POST   {runtime.url}{INVOKE_PREFIX}{{FunctionLogicalId}}  (event JSON as the body)")
    print(f"  GET    {runtime.url}/openapi.json   GET {runtime.url}/docs   GET {runtime.url}/console/")
    print(f"  GET    {runtime.url}/_local/events   GET {runtime.url}/_local/streams")
    print(f"  GET    {runtime.url}{STATS_PATH}   POST {runtime.url}{STATS_PATH}/reset")
    print(f"Serving on {runtime.url}  (Ctrl-C to stop)", flush=True)
    while not stopped.wait(timeout=1):  # a timed wait keeps the main thread responsive to signals
        pass
    print("stopping", flush=True)
    runtime.stop()
    return 0


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    sys.exit(main())
