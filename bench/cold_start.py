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
import time
from collections import defaultdict
from decimal import Decimal

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


def event_file(function_id: str) -> str | None:
    from localdev import template

    names = [EVENTS[function_id]] if function_id in EVENTS else []
    names += [template.snake_case(r.event_id) for r in template.api_routes() if r.function_id == function_id]
    names.append(template.snake_case(function_id.removesuffix("Function")))
    for name in names:
        path = template.EVENTS_DIR / f"{name}.json"
        if path.exists():
            return str(path)
    return None


def child_command(function_id: str, *, importtime: bool = False) -> list[str]:
    from localdev import template

    spec = template.functions()[function_id]
    module, handler = spec.handler.rsplit(".", 1)
    return [
        sys.executable, *(["-X", "importtime"] if importtime else []), str(CHILD),
        str(spec.code_uri), module, handler, function_id, event_file(function_id) or "-",
        str(template.function_setting(function_id, "Timeout", 3)),
        str(template.function_setting(function_id, "MemorySize", 128)),
    ]


def child_env(rt: BenchRuntime, function_id: str, table: str) -> dict[str, str]:
    from localdev import template

    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "PYTHON"))}
    env.update(template.function_environment(table, [function_id]))
    env.update(
        TABLE_NAME=table,
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


def run_child(rt: BenchRuntime, function_id: str, table: str, *, importtime: bool = False) -> tuple[dict, str]:
    proc = subprocess.run(
        child_command(function_id, importtime=importtime), env=child_env(rt, function_id, table),
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


def prepare(rt: BenchRuntime) -> str:
    """A small table of its own on the embedded DynamoDB, holding the budgets the sample events
    name (acme/alice, acme/bob), so each first invocation does real work. Its own table: moto's
    TransactWriteItems and index Query take time in proportion to the table, which the other
    benchmarks fill with thousands of items; DynamoDB's do not."""
    import uuid

    from bench.common import seed_items
    from budget_service.budget import Budget
    from budget_service.periods import Duration
    from budget_service.store import budget_to_item
    from localdev import template

    name = f"bench-cold-start-{uuid.uuid4().hex[:6]}"
    client = rt.client()
    template.create_table(client, name)
    now = Decimal(int(time.time()))
    alice = Budget(project="acme", user="alice", total_budget=Decimal(25), created_at=now, updated_at=now,
                   duration=Duration.MONTHLY, timezone="Europe/Paris").with_period_from(now)
    bob = Budget(project="acme", user="bob", total_budget=Decimal(10), created_at=now, updated_at=now,
                 duration_days=Decimal(28), period_start=now).with_period_from(now)
    seed_items(client, name, [budget_to_item(alice), budget_to_item(bob)])
    return name


def run(rt: BenchRuntime, *, quick: bool = False, functions: list[str] | None = None) -> Section:
    from localdev import template

    table_name = prepare(rt)
    all_functions = list(template.functions())
    functions = functions or (["UpdateCostFunction"] if quick else all_functions)
    repeats = 1 if quick else REPEATS
    section = Section(
        "cold_start",
        "3. Cold start per function (fresh process each)",
        intro=(
            "Each measurement is a new `python` process (bench/cold_start_child.py) that puts the"
            " layer and the function's code on `sys.path`, imports the handler module (import"
            " time), then calls the handler once with its sample event from `events/` against a"
            " small table of its own on the embedded DynamoDB (first invocation: boto3 client"
            f" creation, lazy imports, the request). Median (min–max) of {repeats} processes. The last column is one more"
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
        runs = [run_child(rt, function_id, table_name)[0] for _ in range(repeats)]
        imports = Stat.of(r["import_s"] for r in runs)
        invoked = [r for r in runs if "invoke_s" in r]
        invokes = Stat.of(r["invoke_s"] for r in invoked) if invoked else None
        totals = Stat.of(r["import_s"] + r.get("invoke_s", 0.0) for r in runs)
        _, stderr = run_child(rt, function_id, table_name, importtime=True)
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
