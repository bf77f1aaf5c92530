"""The web console's files, served as they are: by the stack's ConsoleFunction (API Gateway
``GET /console`` and ``GET /console/{proxy+}``, this module is its handler) and by ``make dev``
(localdev.server imports ``asset``), so both answer the same bytes with the same headers.

The console holds no data and no secret: every number on it comes from the API, read with the
key the user types. So the files are public (no authorizer on their routes), and the headers
confine the page: scripts, styles and requests only from its own origin, no framing.

Standard library only: no layer needed, a cold start of a few milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent
# What may be served: the page, its script and style, and the vendored chart library. Nothing
# else in this folder (this module, package.json, node_modules) is reachable.
SERVED = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "vendor/chart.umd.min.js": "text/javascript; charset=utf-8",
    "vendor/chart.js.LICENSE.md": "text/markdown; charset=utf-8",
}
# Same origin only: the API the console reads is the one that serves it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A deploy changes the files under the same names: revalidate rather than serve stale ones.
    "Cache-Control": "no-cache",
}


class Asset(NamedTuple):
    body: bytes
    content_type: str
    headers: dict[str, str]


def asset(path: str) -> Asset | None:
    """The file at `path` under /console/ ("" or "/" is index.html); None if it is not one of
    SERVED (an unknown name, a directory, ``..``: never a file outside the list)."""
    name = path.strip("/") or "index.html"
    content_type = SERVED.get(name)
    if content_type is None:
        return None
    return Asset((ROOT / name).read_bytes(), content_type, {"Content-Type": content_type, **HEADERS})


def lambda_handler(event: dict, context: object) -> dict:
    """API Gateway (REST, proxy integration) -> the file, or a 404 in the API's error shape.
    ``GET /console`` redirects to ``/console/`` so the page's relative URLs resolve under it."""
    path_parameters = event.get("pathParameters") or {}
    if event.get("resource") == "/console":
        stage = (event.get("requestContext") or {}).get("stage")
        location = f"/{stage}/console/" if stage else "/console/"
        return {"statusCode": 301, "headers": {"Location": location}, "body": ""}
    found = asset(path_parameters.get("proxy") or "")
    if found is None:
        return {
            "statusCode": 404,
            "headers": {"Content-Type": "application/json"},
            "body": '{"error": {"code": "not_found", "message": "no such file"}}',
        }
    # Every file here is text (UTF-8), so no binary media types are needed on the API.
    return {
        "statusCode": 200,
        "headers": found.headers,
        "body": found.body.decode("utf-8"),
        "isBase64Encoded": False,
    }
