"""Schemathesis against the local server's own /openapi.json: for every operation, a bounded,
deterministic run of generated requests (valid and invalid) must get no 5xx and no answer that
breaks the document (undocumented status, content type, headers or body shape).

The server is ``make dev``'s (open: no API key needed) on 127.0.0.1, with its embedded DynamoDB;
nothing else is contacted.
"""

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from localdev import template
from localdev.ready_time import ServerProcess

EXAMPLES_PER_OPERATION = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def local_url():
    proc = ServerProcess()
    try:
        proc.wait_ready()
        yield proc.url
    finally:
        output = proc.output()
        proc.close()
        # Every request was answered by a handler or the gateway, never by a crash.
        assert "Traceback" not in output, output[-3000:]


@pytest.fixture(scope="module")
def api_schema(local_url):
    return schemathesis.openapi.from_url(f"{local_url}/openapi.json")


def operations() -> list[tuple[str, str]]:
    # From the committed document (a test keeps it equal to what the server serves).
    doc = json.loads((template.ROOT / "openapi.json").read_text())
    return [(path, method) for path, ops in doc["paths"].items() for method in ops]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("path", "method"), operations())
def test_no_5xx_and_every_answer_matches_the_document(api_schema, path, method, mode):
    operation = api_schema[path][method]
    answered: dict[int, int] = {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # the same examples on every run
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case):
        response = case.call_and_validate(checks=CHECKS, timeout=30)
        answered[response.status_code] = answered.get(response.status_code, 0) + 1

    run()
    print(f"\n{method.upper()} {path} {mode.value}: {dict(sorted(answered.items()))}")
    assert answered, "no request was made"
