"""One OpenAPI document for the whole API, merged from each function's Powertools resolver.

Each API function's module has an ``app`` (Powertools ``APIGatewayRestResolver`` with validation)
that generates the schema of its own routes from the pydantic models. The template decides which
of those routes are exposed, so the document lists exactly the template's routes, under the
template's (API Gateway) paths.

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
    doc["components"]["schemas"] = dict(sorted(doc["components"]["schemas"].items()))
    doc["openapi"] = doc["openapi"] or "3.1.0"
    return doc


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
