"""The service's records stay cheap to create at import: each Lambda function's cold start is held
to 1.5x a bare boto3 handler's, and a dataclass costs ~0.6 ms (frozen: ~1.2 ms) to create, as
``dataclasses`` compiles its generated methods with exec() when the class is made; a
``typing.NamedTuple`` or a plain class costs a tenth of that. A fresh interpreter imports every
function's handler module with dataclass creation recorded: the only budget_service dataclasses
created are the ones below, each left for its reason."""

import json
import subprocess
import sys

from localdev import template

ALLOWED = {
    # An exception (store_levels.LevelWriter raises it): a NamedTuple cannot subclass Exception.
    "budget_service.store.levels:Cancelled",
    # The scheduled reset job's counters, incremented in place (setattr) and dumped with asdict;
    # no API function imports it.
    "budget_service.domain.resets:ResetSummary",
}

PROBE = r"""
import dataclasses, importlib.util, json, sys, time

created = []
process_class = dataclasses._process_class

def recording(cls, *args, **kwargs):
    start = time.perf_counter()
    try:
        return process_class(cls, *args, **kwargs)
    finally:
        created.append((cls.__module__ + ":" + cls.__qualname__, time.perf_counter() - start))

dataclasses._process_class = recording
sys.path.insert(0, sys.argv[1])
out = {}
handlers = json.loads(sys.argv[3])
for function_id, code_uri in json.loads(sys.argv[2]).items():
    before = len(created)
    sys.path.insert(0, code_uri)
    module_file = code_uri + "/" + handlers[function_id].rsplit(".", 1)[0] + ".py"
    spec = importlib.util.spec_from_file_location("app_" + function_id, module_file)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    sys.path.remove(code_uri)
    out[function_id] = [(name, round(s * 1000, 2)) for name, s in created[before:]
                        if name.startswith("budget_service.")]
print(json.dumps(out))
"""


def test_functions_create_no_budget_service_dataclass_but_the_allowed_ones():
    functions = {fid: str(spec.code_uri) for fid, spec in template.functions().items()}
    handlers = {fid: spec.handler for fid, spec in template.functions().items()}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(template.LAYER_DIR), json.dumps(functions), json.dumps(handlers)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    by_function = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(by_function) == set(functions)
    # Modules are imported once: a class shows under the first function (in template order) that
    # imports it. Together they are every budget_service dataclass any function creates at import.
    created = {name for names in by_function.values() for name, _ in names}
    assert created == ALLOWED, (
        "budget_service dataclasses created when the functions import (ms each; make a new record "
        "a typing.NamedTuple or a plain class, or add it to ALLOWED with its reason): "
        f"{ {fid: names for fid, names in by_function.items() if names} }"
    )
