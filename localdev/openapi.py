"""One OpenAPI document for the whole API, merged from each function's Powertools resolver.

Each API function's module has an ``app``, a Powertools ``APIGatewayRestResolver`` with validation
(``budget_service.api.http.create_app``): the schema comes from the annotations and pydantic models
that validate its requests. The template decides which of those routes are exposed, so the
document lists exactly the template's routes, under the template's (API Gateway) paths.

Powertools documents only a 200 and its own 422 shape; ``describe_errors`` then makes the
document say what the API really answers: every error as ``{"error": {"code", "message",
"details"?}}`` with the statuses each route can give (400/401/402/403/404/413/422/429/503), 201
for a PUT that creates and 204 for a DELETE, and the bearer API key.

``python -m localdev.openapi`` rewrites ``openapi.json``; ``--check`` fails if it is out of date.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import re
import sys
from functools import lru_cache
from pathlib import Path

from localdev import template

OUTPUT = template.ROOT / "openapi.json"
LOCAL_SERVER = "http://127.0.0.1:3000"
_METHOD_ORDER = ["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _normalize(path: str) -> str:
    # API Gateway's greedy {proxy+} is {proxy} in the resolver's schema.
    return re.sub(r"\{(\w+)\+\}", r"{\1}", path)


def build_document() -> dict:
    tpl = template.load_template()
    description = str(tpl.get("Description", "")).strip()
    stage = template.plain_values(tpl.get("Parameters", {}).get("StageName", {})).get("Default", "v1")
    doc: dict = {
        "openapi": None,
        "info": {
            "title": description.split(":", 1)[0] or "API",
            "description": description,
            # The API is versioned by its stage name (the first segment of the deployed URL).
            "version": stage,
        },
        "servers": [{"url": LOCAL_SERVER, "description": "make dev"}],
        "paths": {},
        "components": {"schemas": {}},
    }
    schemas_by_function: dict[str, dict] = {}
    paths: dict[str, dict] = {}
    routes = sorted(
        template.api_routes(),
        key=lambda r: (r.path, _METHOD_ORDER.index(r.method) if r.method in _METHOD_ORDER else 99),
    )
    for route in routes:
        if route.function_id not in schemas_by_function:
            app = template.load_module(route.function_id).app
            schemas_by_function[route.function_id] = json.loads(app.get_openapi_json_schema())
        schema = schemas_by_function[route.function_id]
        doc["openapi"] = doc["openapi"] or schema["openapi"]
        source = schema["paths"].get(_normalize(route.path), {})
        methods = (
            ["get", "put", "post", "patch", "delete", "head", "options"]
            if route.method == "ANY"
            else [route.method.lower()]
        )
        for method in methods:
            if method not in source:
                continue
            operation = dict(source[method])
            operation.setdefault("tags", [route.function_id])
            paths.setdefault(route.path, {})[method] = operation
        for name, component in schema.get("components", {}).get("schemas", {}).items():
            known = doc["components"]["schemas"].setdefault(name, component)
            if known != component:
                raise ValueError(f"schema {name!r} differs between functions; rename one of the models")
    doc["paths"] = paths
    doc["openapi"] = doc["openapi"] or "3.1.0"
    describe_errors(doc)
    doc["components"]["schemas"] = dict(sorted(doc["components"]["schemas"].items()))
    return doc


# ---- the real responses -------------------------------------------------------------------------

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "machine-readable, e.g. forbidden"},
                "message": {"type": "string", "description": "for humans"},
                "details": {
                    "description": "validation problems (a list of {field, problem}), or, for a"
                    " set_budget stopped part way, which users were written, unchanged,"
                    " not_written and not_confirmed",
                    "anyOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}],
                },
            },
        }
    },
}

_ERRORS = {
    "400": "The body is not valid JSON (invalid_json); is not a JSON object, nests deeper than 32"
    " levels, has a number over 100 characters or a string that is not Unicode (invalid_body); or a"
    " header that may appear once (Authorization, Content-Type, Idempotency-Key) appears twice"
    " (duplicate_header).",
    "401": "No valid API key (unauthorized): send Authorization: Bearer <key>.",
    "403": "The key may not do this: another project, or a role without this operation (forbidden).",
    "402": "The budget cannot cover it (budget_exceeded); nothing was written. details name each"
    " level that refused and what it had available.",
    "404": "No budget for this user (budget_not_found), no such hold of this user"
    " (hold_not_found), no such project budget or team (level_not_found), or no project price"
    " for this model (price_not_found).",
    "413": "The body is over 1 MiB (payload_too_large).",
    "422": "The request is out of shape or out of range (validation_error, unknown_model, ...), or"
    " would take a budget level's spend or holds past 4x10^12 USD per period"
    " (spend_limit_exceeded: details name the level and field); nothing was written.",
    "429": "Throttled by API Gateway (the stage's rate limit); retry after Retry-After.",
    "503": "DynamoDB is throttling or failing (service_unavailable), or concurrent writers on one"
    " item outlasted the service's own retries (write_contention); nothing was written, or"
    " details say exactly what was; retry after Retry-After (repeating converges).",
}
_HEADERS = {
    "401": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    "429": {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
    "503": {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
}
# Routes that can refuse for lack of budget: 402.
_REFUSING = {
    ("post", "/projects/{project}/users/{user}/cost"),  # with if_within_budget
    ("post", "/projects/{project}/users/{user}/holds"),
}
# POST routes that answer 201 (they create something).
_CREATES = {("post", "/projects/{project}/users/{user}/holds")}
# DELETE routes that answer 200 with a body (releasing a hold says what it did), not 204.
_DELETE_WITH_BODY = {"/projects/{project}/users/{user}/holds/{hold_id}"}
_SECURITY_SCHEME = "ApiKey"


def _error_statuses(method: str, path: str, operation: dict) -> list[str]:
    statuses = ["400", "401", "403", "429", "503"]
    has_body = "requestBody" in operation
    if has_body:
        statuses += ["413"]
    if has_body or operation.get("parameters"):
        statuses.append("422")
    if (
        "{user}" in path or "{team}" in path or "{model}" in path or path.endswith("/budget")
    ) and method != "put":
        statuses.append("404")
    if (method, path) in _REFUSING:
        statuses.append("402")
    return sorted(statuses)


def describe_errors(doc: dict) -> None:
    schemas = doc["components"]["schemas"]
    schemas["Error"] = ERROR_SCHEMA
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            responses.pop("422", None)  # Powertools' HTTPValidationError: not what we send
            # Powertools' ResponseValidationError: an answer out of its own model, a bug the API
            # answers as any internal error (500 internal_error), which the document leaves out.
            responses.pop("500", None)
            if method == "delete" and path not in _DELETE_WITH_BODY:
                responses.pop("200", None)
                responses["204"] = {"description": "Deleted."}
            if method == "put" and "200" in responses:
                responses["200"] = {**responses["200"], "description": "Replaced."}
                responses["201"] = {**responses["200"], "description": "Created."}
            if (method, path) in _CREATES and "200" in responses:
                responses["201"] = {**responses.pop("200"), "description": "Created."}
            for status in _error_statuses(method, path, operation):
                responses[status] = {"description": _ERRORS[status], "content": error_ref}
                if status in _HEADERS:
                    responses[status]["headers"] = _HEADERS[status]
            operation["responses"] = dict(sorted(responses.items()))
            operation["security"] = [{_SECURITY_SCHEME: []}]
    doc["components"]["securitySchemes"] = {
        _SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "A project-scoped API key (make key): Authorization: Bearer llmb_...",
        }
    }
    _drop_unreferenced(doc)


def _drop_unreferenced(doc: dict) -> None:
    """Remove component schemas nothing refers to any more (Powertools' validation errors)."""
    schemas = doc["components"]["schemas"]
    while True:
        text = json.dumps({k: v for k, v in doc.items() if k != "components"}) + json.dumps(
            {k: v for k, v in schemas.items()}
        )
        unused = [name for name in schemas if f'"#/components/schemas/{name}"' not in text]
        if not unused:
            return
        for name in unused:
            del schemas[name]


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


DOCS_PATH = "/docs"
DOCS_ASSETS = DOCS_PATH + "/static/"


@lru_cache(maxsize=4)
def _swagger_ui(title: str):
    """swagger-ui-py's page for our document: Swagger UI's own HTML and static build (pinned in
    requirements-dev.txt), served from this server, so /docs works offline."""
    from swagger_ui.core import ApplicationDocument

    ui = ApplicationDocument(
        None,
        url_prefix=DOCS_PATH,
        config_rel_url="/openapi.json",
        title=title,
        parameters={
            # No request to the online validator (Swagger UI's default badge): offline.
            "validatorUrl": "null",
            "persistAuthorization": "true",
            "tryItOutEnabled": "true",
        },
    )
    ui.parameters["url"] = json.dumps("/openapi.json")  # the document this server serves
    return ui


def docs_page(doc: dict) -> str:
    """``GET /docs``: Swagger UI on ``/openapi.json``, interactive ("Try it out" calls this server;
    "Authorize" takes an API key when AUTH=1), with its scripts and styles from ``/docs/static/``."""
    return _swagger_ui(str(doc.get("info", {}).get("title", "API"))).doc_html


def docs_asset(name: str) -> tuple[bytes, str] | None:
    """``GET /docs/static/<name>``: a file of Swagger UI's static build and its content type, or
    None when there is no such file (names are looked up, never joined into a path)."""
    static = Path(_swagger_ui("API").static_dir)
    files = {p.name: p for p in static.iterdir() if p.is_file()}
    found = files.get(name)
    if found is None:
        return None
    content_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type.endswith("javascript"):
        content_type += "; charset=utf-8"
    return found.read_bytes(), content_type


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if openapi.json is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render(build_document())
    if args.check:
        if not args.output.exists() or args.output.read_text() != text:
            print(f"{args.output} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
