"""SnapStart priming: on Lambda, each API function registers a before-snapshot hook
that does the first call's request-independent work (pydantic validators of its routes' models;
for the cost and hold functions, the price table and both tiktoken encodings), so environments
restored from the snapshot start with it done. Lambda's runtime provides ``snapshot_restore_py``;
here a stand-in module records the hooks, in a fresh interpreter per function."""

import json
import subprocess
import sys

import pytest

from localdev import template

PROBE = r"""
import json, sys, types, typing
hooks = []
sys.modules["snapshot_restore_py"] = types.SimpleNamespace(
    register_before_snapshot=hooks.append, register_after_restore=lambda fn: None
)
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import app
from budget_service.pricing import tokens

def complete():
    # The body models, read from the handlers' annotations (as Powertools reads them), without
    # building the routes' validation (which priming is to do).
    out = {}
    for route in app.app.routes:
        hints = typing.get_type_hints(route.func, include_extras=True)
        for name, hint in hints.items():
            if name != "return" and hasattr(hint, "__pydantic_complete__"):
                out[hint.__name__] = bool(hint.__pydantic_complete__)
    return out

before = {"models": complete(), "encodings": tokens.loaded_encodings()}
for hook in hooks:
    hook()
after = {"models": complete(), "encodings": tokens.loaded_encodings()}
print(json.dumps({"hooks": len(hooks), "before": before, "after": after}))
"""


def _probe(function_id: str) -> dict:
    spec = template.functions()[function_id]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(spec.code_uri), str(template.LAYER_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("function_id", ["UpdateCostFunction", "HoldsFunction"])
def test_counting_functions_prime_their_models_prices_and_encodings_before_the_snapshot(function_id):
    probe = _probe(function_id)
    assert probe["hooks"] == 1
    assert probe["before"]["encodings"] == []
    assert not any(probe["before"]["models"].values())  # deferred until first use, or priming
    assert probe["after"]["encodings"] == ["cl100k_base", "o200k_base"]
    assert probe["after"]["models"] and all(probe["after"]["models"].values())


def test_other_api_functions_prime_their_models_and_load_no_encoding():
    probe = _probe("BudgetsFunction")
    assert probe["hooks"] == 1
    assert probe["after"]["encodings"] == []
    assert probe["after"]["models"] and all(probe["after"]["models"].values())
