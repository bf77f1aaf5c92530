"""3. Cold start per function: import time and first invocation, each in a fresh process.

For every function in template.yaml, a fresh interpreter (bench/cold_start_child.py) imports the
handler module as Lambda's runtime does and invokes it once with its sample event from events/,
against the bench's embedded DynamoDB; median (min–max) over five processes. One more process per
function runs under ``python -X importtime``; its self times, summed per top-level package, show
which modules dominate.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict

from bench.common import ROOT, BenchRuntime, Section, Stat, Table

REPEATS = 5
CHILD = ROOT / "bench" / "cold_start_child.py"
# The sample event each function's first invocation gets (events/<name>.json). Functions not
# listed use their first API route's event, or events/<snake_case_name>.json; with none, the
# function is only imported.
EVENTS = {
    "GetBudgetFunction": "litellm_get_budget",
    "SetBudgetFunction": "litellm_set_budget",
    "BudgetsFunction": "get_budget",
    "UpdateCostFunction": "update_cost",
    "ResetBudgetsFunction": "reset_budgets_schedule",
}
LAMBDA_LAYER_ROOT = "/opt/python"


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def event_file(function_id: str) -> str | None:
    from localdev import template

    names = [EVENTS[function_id]] if function_id in EVENTS else []
    names += [_snake(r.event_id) for r in template.api_routes() if r.function_id == function_id]
    names.append(_snake(function_id.removesuffix("Function")))
    for name in names:
        path = ROOT / "events" / f"{name}.json"
        if path.exists():
            return str(path)
    return None


def function_environment(function_id: str, table: str) -> dict[str, str]:
    """The Environment template.yaml gives this function (Globals, then its own), resolved for
    local use: the table's Ref is `table`, parameters take their defaults, /opt/python is the
    layer directory."""
    from localdev import template

    tpl = template.load_template()
    params = {n: str(p["Default"]) for n, p in (tpl.get("Parameters") or {}).items() if "Default" in p}
    scopes = [tpl.get("Globals", {}).get("Function", {}), tpl["Resources"][function_id].get("Properties", {})]
    env: dict[str, str] = {}
    for scope in scopes:
        for name, value in ((scope.get("Environment") or {}).get("Variables") or {}).items():
            if isinstance(value, dict) and "Ref" in value:
                value = table if value["Ref"] == template.TABLE_RESOURCE else params.get(value["Ref"])
            if isinstance(value, (str, int, float, bool)) and str(value) != "":
                value = str(value)
                if value == LAMBDA_LAYER_ROOT or value.startswith(LAMBDA_LAYER_ROOT + "/"):
                    value = str(template.LAYER_DIR) + value[len(LAMBDA_LAYER_ROOT):]
                env[str(name)] = value
    return env


def _setting(function_id: str, key: str, default):
    from localdev import template

    tpl = template.load_template()
    props = tpl["Resources"][function_id].get("Properties", {})
    value = props.get(key, tpl.get("Globals", {}).get("Function", {}).get(key, default))
    return value if isinstance(value, (int, float, str)) else default


def child_command(function_id: str, *, importtime: bool = False) -> list[str]:
    from localdev import template

    spec = template.functions()[function_id]
    module, handler = spec.handler.rsplit(".", 1)
    return [
        sys.executable, *(["-X", "importtime"] if importtime else []), str(CHILD),
        str(spec.code_uri), module, handler, function_id, event_file(function_id) or "-",
        str(_setting(function_id, "Timeout", 3)), str(_setting(function_id, "MemorySize", 128)),
    ]


def child_env(rt: BenchRuntime, function_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "PYTHON"))}
    env.update(function_environment(function_id, rt.table))
    env.update(
        TABLE_NAME=rt.table,
        AWS_ENDPOINT_URL_DYNAMODB=rt.dynamodb_url,
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        AWS_REGION=os.environ.get("AWS_REGION", "us-east-1"),
        API_AUTH="off",
        POWERTOOLS_TRACE_DISABLED="true",  # no X-Ray daemon here (as make dev)
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("AWS_SESSION_TOKEN", None)
    return env


def run_child(rt: BenchRuntime, function_id: str, *, importtime: bool = False) -> tuple[dict, str]:
    proc = subprocess.run(
        child_command(function_id, importtime=importtime), env=child_env(rt, function_id),
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"cold start of {function_id} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len("BENCH-RESULT "):]), proc.stderr


_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def import_profile(stderr: str) -> dict[str, float]:
    """Self import time in seconds per top-level package, from ``-X importtime`` output."""
    totals: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            totals[m.group(4).split(".")[0]] += int(m.group(1)) / 1e6
    return dict(totals)


def prepare(rt: BenchRuntime) -> None:
    """The budget the sample events name (acme/alice), so each first invocation does real work."""
    import requests

    with open(ROOT / "events" / "put_budget.json") as f:
        body = json.loads(json.load(f)["body"])
    response = requests.put(f"{rt.url}/projects/acme/users/alice", json=body, timeout=30)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"could not create acme/alice: {response.status_code} {response.text}")
    response = requests.post(
        f"{rt.url}/set_budget",
        json={"project_name": "acme", "user_dict": {"bob": {"total_budget": 10, "current_cost": 0}}},
        timeout=30,
    )
    response.raise_for_status()


def run(rt: BenchRuntime, *, quick: bool = False, functions: list[str] | None = None) -> Section:
    from localdev import template

    prepare(rt)
    all_functions = list(template.functions())
    functions = functions or (["UpdateCostFunction"] if quick else all_functions)
    repeats = 1 if quick else REPEATS
    section = Section(
        "cold_start",
        "3. Cold start per function (fresh process each)",
        intro=(
            "Each measurement is a new `python` process (bench/cold_start_child.py) that puts the"
            " layer and the function's code on `sys.path`, imports the handler module (import"
            " time), then calls the handler once with its sample event from `events/` against"
            f" the embedded DynamoDB (first invocation: boto3 client creation, lazy imports, the"
            f" request). Median (min–max) of {repeats} processes. The last column is one more"
            " process under `python -X importtime` (import and first invocation): self import"
            " time summed per top-level package, largest first. The interpreter's own start is"
            " in neither figure. Tracing is off (no X-Ray daemon), as in `make dev`."
        ),
    )
    table = Table([
        "function", "sample event", "import", "first invocation", "import + first invocation",
        "status", "modules that dominate (self import time, -X importtime)",
    ])
    section.tables.append(table)
    for function_id in functions:
        runs = [run_child(rt, function_id)[0] for _ in range(repeats)]
        imports = Stat.of(r["import_s"] for r in runs)
        invoked = [r for r in runs if "invoke_s" in r]
        invokes = Stat.of(r["invoke_s"] for r in invoked) if invoked else None
        totals = Stat.of(r["import_s"] + r.get("invoke_s", 0.0) for r in runs)
        _, stderr = run_child(rt, function_id, importtime=True)
        profile = import_profile(stderr)
        everything = sum(profile.values()) or 1.0
        top = sorted(profile.items(), key=lambda kv: -kv[1])[:5]
        event = event_file(function_id)
        table.add(
            function_id,
            os.path.basename(event) if event else "— (import only)",
            imports.fmt(digits=0),
            invokes.fmt(digits=0) if invokes else "—",
            totals.fmt(digits=0),
            ", ".join(sorted({str(r.get("status", "—")) for r in runs})),
            ", ".join(f"{name} {secs * 1000:.0f} ms ({secs / everything:.0%})" for name, secs in top),
        )
        section.data[function_id] = {
            "repeats": repeats,
            "event": os.path.basename(event) if event else None,
            "import_s": imports.as_dict(),
            "invoke_s": invokes.as_dict() if invokes else None,
            "total_s": totals.as_dict(),
            "statuses": sorted({str(r.get("status")) for r in runs}),
            "importtime_total_s": everything,
            "importtime_top": [[name, secs] for name, secs in top],
        }
    section.notes.append(
        "Import times are of this machine's CPython "
        f"{sys.version.split()[0]}; Lambda (python3.13, arm64, 512 MB) will differ, but which"
        " packages dominate carries over."
    )
    return section
