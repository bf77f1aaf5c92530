"""`make dev` installs only requirements-dev.txt: the local server, every handler, /docs and the key
CLI must run without anything requirements-test.txt adds. A subprocess where importing a test-only
package fails starts the server and uses it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from localdev import template

TEST_ONLY = [
    "litellm",
    "cfnlint",
    "samtranslator",
    "pytest",
    "hypothesis",
    "schemathesis",
    "openapi_spec_validator",
    "sympy",
    "ruff",
    "mypy",
    "httpx",
]

CHILD = textwrap.dedent("""
    import importlib.abc, json, os, sys, urllib.request

    class TestOnly(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not in requirements-dev.txt")
            return None

    sys.meta_path.insert(0, TestOnly())
    os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    from localdev.server import LocalRuntime

    runtime = LocalRuntime(0).start()
    def call(method, path, body=None):
        request = urllib.request.Request(runtime.url + path, method=method,
                                         data=json.dumps(body).encode() if body else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    try:
        assert call("PUT", "/projects/p/users/u", {"total_budget": 5})[0] == 201
        status, body = call("POST", "/projects/p/users/u/cost",
                            {"model": "gpt-4o-mini", "input_text": "hello", "output_text": "hi"})
        assert status == 200 and json.loads(body)["cost"] > 0, body
        assert call("GET", "/docs")[0] == 200
        assert call("GET", "/docs/static/swagger-ui-bundle.js")[0] == 200
        import budget_service.api.keys  # the key CLI's module
        print("SERVED")
    finally:
        runtime.stop()
""")


def test_the_server_runs_on_serving_requirements_alone():
    env_code = f"BLOCKED = {set(TEST_ONLY)!r}\n" + CHILD
    result = subprocess.run(
        [sys.executable, "-c", env_code],
        cwd=template.ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": f"layers/budget{os.pathsep}."},
    )
    assert "SERVED" in result.stdout, result.stderr[-3000:]


def test_requirements_dev_has_no_test_only_package():
    lines = (template.ROOT / "requirements-dev.txt").read_text().lower().splitlines()
    serving = "\n".join(line for line in lines if not line.startswith("#"))
    for name in [
        "litellm",
        "cfn-lint",
        "pytest",
        "hypothesis",
        "schemathesis",
        "ruff",
        "mypy",
        "moto[server",
    ]:
        assert name not in serving, name
