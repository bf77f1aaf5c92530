"""One OpenAPI document for the whole API, merged from each function's Powertools resolver.

Each API function's module has an ``app`` (Powertools ``APIGatewayRestResolver`` with validation)
that generates the schema of its own routes from the pydantic models. The template decides which
of those routes are exposed, so the document lists exactly the template's routes, under the
template's (API Gateway) paths.

Powertools documents only a 200 and its own 422 shape; ``describe_errors`` then makes the
document say what the API really answers: every error as ``{"error": {"code", "message",
"details"?}}`` with the statuses each route can give (400/401/402/403/404/409/413/422/429/503), 201
for a PUT that creates and 204 for a DELETE, and the bearer API key.

``python -m localdev.openapi`` rewrites ``openapi.json``; ``--check`` fails if it is out of date.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
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
    stage = template._plain(tpl.get("Parameters", {}).get("StageName", {})).get("Default", "v1")
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
        methods = ["get", "put", "post", "patch", "delete", "head", "options"] if route.method == "ANY" else [route.method.lower()]
        for method in methods:
            if method not in source:
                continue
            operation = dict(source[method])
            operation.setdefault("tags", [route.function_id])
            paths.setdefault(route.path, {})[method] = operation
        for name, component in schema.get("components", {}).get("schemas", {}).items():
            known = doc["components"]["schemas"].setdefault(name, component)
            if known != component:
                raise ValueError(
                    f"schema {name!r} differs between functions; rename one of the models"
                )
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
    "400": "The body is not valid JSON (invalid_json).",
    "401": "No valid API key (unauthorized): send Authorization: Bearer <key>.",
    "403": "The key may not do this: another project, or a role without this operation (forbidden).",
    "402": "The budget cannot cover it (budget_exceeded); nothing was written. details name each"
    " level that refused and what it had available.",
    "404": "No budget for this user (budget_not_found), or no such hold of this user"
    " (hold_not_found).",
    "409": "Too many concurrent writers on one budget (write_contention); retry.",
    "413": "The body is over 1 MiB (payload_too_large).",
    "422": "The request is out of shape or out of range (validation_error, unknown_model, ...).",
    "429": "Throttled by API Gateway (the stage's rate limit); retry after Retry-After.",
    "503": "DynamoDB is throttling or failing (service_unavailable); nothing was written, or"
    " details say exactly what was; retry after Retry-After (repeating converges).",
}
_HEADERS = {
    "401": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    "429": {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
    "503": {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
}
# Routes whose write may lose a race too often (the read-modify-write loop): 409.
_CONTENDED = {
    ("put", "/projects/{project}/users/{user}"),
    ("post", "/projects/{project}/users/{user}/reset"),
    ("post", "/projects/{project}/users/{user}/cost"),
    ("post", "/set_budget"),
    ("post", "/projects/{project}/users/{user}/holds"),
    ("post", "/projects/{project}/users/{user}/holds/{hold_id}/settle"),
    ("delete", "/projects/{project}/users/{user}/holds/{hold_id}"),
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
    statuses = ["401", "403", "429", "503"]
    has_body = "requestBody" in operation
    if has_body:
        statuses += ["400", "413"]
    if has_body or operation.get("parameters"):
        statuses.append("422")
    if "{user}" in path and method != "put":
        statuses.append("404")
    if (method, path) in _CONTENDED:
        statuses.append("409")
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
        unused = [
            name for name in schemas
            if f'"#/components/schemas/{name}"' not in text
        ]
        if not unused:
            return
        for name in unused:
            del schemas[name]


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def docs_page(doc: dict) -> str:
    """A self-contained HTML page (no CDN, works offline) listing every operation."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(doc['info']['title'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "h2{border-top:1px solid #ccc;padding-top:1rem}code,pre{background:#f4f4f4;padding:.1rem .3rem}"
        "pre{padding:.5rem;overflow:auto}.m{font-weight:bold;text-transform:uppercase}</style>",
        "</head><body>",
        f"<h1>{e(doc['info']['title'])} <small>{e(str(doc['info']['version']))}</small></h1>",
        f"<p>{e(doc['info'].get('description', ''))}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> "
        "(load it into any OpenAPI viewer).</p>",
    ]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            parts.append(f"<h2><span class='m'>{e(method)}</span> <code>{e(path)}</code></h2>")
            if op.get("description"):
                parts.append(f"<p>{e(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append("<h3>Parameters</h3><ul>")
                for p in params:
                    required = " (required)" if p.get("required") else ""
                    parts.append(
                        f"<li><code>{e(p['name'])}</code> in {e(p['in'])}{required}: "
                        f"<code>{e(json.dumps(p.get('schema', {})))}</code></li>"
                    )
                parts.append("</ul>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                parts.append("<h3>Request body</h3>" + _schema_block(doc, body.get("schema", {})))
            parts.append("<h3>Responses</h3><ul>")
            for status, response in op.get("responses", {}).items():
                parts.append(f"<li><b>{e(status)}</b> {e(response.get('description', ''))}")
                content = response.get("content", {}).get("application/json")
                if content:
                    parts.append(_schema_block(doc, content.get("schema", {})))
                parts.append("</li>")
            parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _schema_block(doc: dict, schema: dict) -> str:
    ref = schema.get("$ref", "")
    name = ref.rsplit("/", 1)[-1] if ref else ""
    resolved = doc["components"]["schemas"].get(name, schema) if name else schema
    title = f"<code>{html.escape(name)}</code>" if name else "schema"
    return (
        f"<details><summary>{title}</summary>"
        f"<pre>{html.escape(json.dumps(resolved, indent=2))}</pre></details>"
    )


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
