"""The console's chart library is the pinned release, unmodified: the committed file's SHA-256
is the one `make console-vendor` recorded, and its banner, package.json and package-lock.json
name the same exact version (the lock also holds the registry's checksum, which npm ci checks)."""

from __future__ import annotations

import hashlib
import json
import re

from localdev import template

CONSOLE = template.ROOT / "console"


def test_the_vendored_chart_library_is_the_pinned_version_unmodified():
    pinned = json.loads((CONSOLE / "package.json").read_text())["dependencies"]["chart.js"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin an exact version"
    lock = json.loads((CONSOLE / "package-lock.json").read_text())["packages"]["node_modules/chart.js"]
    assert lock["version"] == pinned and lock["integrity"].startswith("sha512-")
    library = (CONSOLE / "vendor" / "chart.umd.min.js").read_bytes()
    assert library.startswith(f"/*!\n * Chart.js v{pinned}\n".encode())
    recorded = dict(
        reversed(line.split()) for line in (CONSOLE / "vendor" / "SHA256SUMS").read_text().splitlines()
    )
    assert hashlib.sha256(library).hexdigest() == recorded["chart.umd.min.js"]
    assert (
        "MIT" in (CONSOLE / "vendor" / "chart.js.LICENSE.md").read_text()
        or "Permission is hereby granted" in (CONSOLE / "vendor" / "chart.js.LICENSE.md").read_text()
    )


def test_the_console_loads_nothing_from_another_origin():
    for name in ("index.html", "app.js", "style.css"):
        text = (CONSOLE / name).read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), name
        assert "cdn" not in text.lower(), name


def test_the_stacks_console_function_serves_the_files_make_dev_serves():
    handler = template.load_handler(template.CONSOLE_FUNCTION)
    index = handler({"resource": "/console/{proxy+}", "pathParameters": {"proxy": ""}}, None)
    assert index["statusCode"] == 200 and index["body"] == (CONSOLE / "index.html").read_text()
    assert "connect-src 'self'" in index["headers"]["Content-Security-Policy"]
    script = handler({"resource": "/console/{proxy+}", "pathParameters": {"proxy": "app.js"}}, None)
    assert script["headers"]["Content-Type"].startswith("text/javascript")
    # The bare path redirects under the stage, so the page's relative URLs resolve.
    bare = handler({"resource": "/console", "requestContext": {"stage": "v1"}}, None)
    assert bare["statusCode"] == 301 and bare["headers"]["Location"] == "/v1/console/"
    for name in (
        "serve.py",
        "package.json",
        "../template.yaml",
        "vendor",
        "node_modules/chart.js/package.json",
    ):
        missing = handler({"resource": "/console/{proxy+}", "pathParameters": {"proxy": name}}, None)
        assert missing["statusCode"] == 404, name
        assert json.loads(missing["body"])["error"]["code"] == "not_found"
