"""3. Cold start per function: as the template ships it (SnapStart), and without SnapStart beside
a reference process made of the design's own libraries.

For every function in template.yaml (discovered, so new functions are covered), fresh
interpreters (bench/cold_start_child.py) import the handler module as Lambda's runtime does and
invoke it once with its sample event from events/, against the bench's embedded DynamoDB.

* First one recording run per function, under ``python -X importtime``: it writes down the
  DynamoDB requests the handler made, and its self import times, summed per top-level package,
  show which modules dominate.
* Then REPEATS rounds, each of fresh processes in turn: the **reference** (bench/reference/app.py:
  boto3 and its client, Powertools' validating ``APIGatewayRestResolver`` with a pydantic body
  model, Logger and Metrics; it resolves the event and replays the recorded requests; no service
  code), the function **without SnapStart** with tracing off (as ``make dev``) and with tracing
  on as Lambda runs it under ``Tracing: Active`` (segments sent over UDP to a socket the bench
  reads), and the function **as shipped**: imported, its SnapStart before-snapshot hooks run (the
  priming the template deploys), then the first request timed in the same process.

The ratio is the median over rounds of the function's whole-process time over the reference's in
the same round (they run back to back); the ratio of the two medians is reported beside it. The
line is 1.25x: the service's own code may add at most a quarter to what its libraries cost.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from decimal import Decimal

from bench.common import ROOT, BenchRuntime, Section, Stat, Table

REPEATS = 9
CHILD = ROOT / "bench" / "cold_start_child.py"
# The design's libraries and no service code: boto3 and its client, Powertools' validating
# resolver with a pydantic model, Logger and Metrics (bench/reference/app.py).
REFERENCE_DIR = ROOT / "bench" / "reference"
LINE = 1.25  # a function's whole process over the reference's, without SnapStart
# A sampled trace header, as Lambda sets _X_AMZN_TRACE_ID for each invocation under active tracing.
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
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


def child_command(function_id: str, *, reference_dir=None, importtime: bool = False) -> list[str]:
    """The child's command line for a function, or for a reference handler in `reference_dir`
    (bench/reference) given the function's event, timeout and memory."""
    from localdev import template

    spec = template.functions()[function_id]
    code_uri, handler_path, name = spec.code_uri, spec.handler, function_id
    if reference_dir is not None:
        code_uri, handler_path, name = reference_dir, "app.lambda_handler", f"{function_id}-reference"
    event = event_file(function_id)
    timeout = template.function_setting(function_id, "Timeout", 3)
    memory = template.function_setting(function_id, "MemorySize", 128)
    module, handler = handler_path.rsplit(".", 1)
    return [
        sys.executable,
        *(["-X", "importtime"] if importtime else []),
        str(CHILD),
        str(code_uri),
        module,
        handler,
        name,
        event or "-",
        str(timeout),
        str(memory),
    ]


def child_env(
    rt: BenchRuntime,
    function_id: str,
    table: str,
    *,
    traced: bool = False,
    xray_address: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The function's environment from template.yaml, pointed at the bench's table. Tracing off
    (as ``make dev``), or `traced`: as Lambda runs a function under ``Tracing: Active``
    (LAMBDA_TASK_ROOT, a sampled _X_AMZN_TRACE_ID, the daemon's address)."""
    from localdev import template

    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "PYTHON"))}
    for name in ("LAMBDA_TASK_ROOT", "_X_AMZN_TRACE_ID", "AWS_XRAY_DAEMON_ADDRESS", "AWS_SAM_LOCAL"):
        env.pop(name, None)
    env.update(template.function_environment(table, [function_id]))
    env.update(
        TABLE_NAME=table,
        AWS_ENDPOINT_URL_DYNAMODB=rt.dynamodb_url,
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        AWS_REGION=os.environ.get("AWS_REGION", "us-east-1"),
        API_AUTH="off",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if traced:
        env.update(
            LAMBDA_TASK_ROOT=str(ROOT / "functions"),
            AWS_LAMBDA_FUNCTION_NAME=function_id,
            _X_AMZN_TRACE_ID=TRACE_HEADER,
            AWS_XRAY_DAEMON_ADDRESS=xray_address or "127.0.0.1:2000",
            AWS_XRAY_CONTEXT_MISSING="LOG_ERROR",
        )
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"  # no X-Ray daemon here (as make dev)
    env.update(extra or {})
    env.pop("AWS_SESSION_TOKEN", None)
    return env


def run_child(
    rt: BenchRuntime,
    function_id: str,
    table: str,
    *,
    reference_dir=None,
    importtime: bool = False,
    traced: bool = False,
    xray_address: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[dict, str]:
    """One fresh process running `function_id`'s handler, or the reference handler in `reference_dir`
    in that function's environment; its BENCH-RESULT plus ``whole_s`` (spawn to exit, timed
    here), and its stderr."""
    command = child_command(function_id, reference_dir=reference_dir, importtime=importtime)
    env = child_env(rt, function_id, table, traced=traced, xray_address=xray_address, extra=extra_env)
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    whole_s = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"cold start of {'a reference beside ' if reference_dir else ''}{function_id} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    result = json.loads(lines[-1][len("BENCH-RESULT ") :])
    result["whole_s"] = whole_s
    return result, proc.stderr


class XRaySink:
    """A UDP socket standing in for the X-Ray daemon: counts the datagrams (segment documents)
    the traced runs send, proof that tracing was really on."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        host, port = self.sock.getsockname()[:2]
        self.address = f"{host}:{port}"

    def drain(self) -> int:
        count = 0
        while True:
            try:
                self.sock.recv(65536)
            except BlockingIOError:
                return count
            count += 1

    def close(self) -> None:
        self.sock.close()


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
    from budget_service.core.periods import Duration
    from budget_service.core.records import Budget
    from budget_service.store.base import budget_to_item
    from localdev import template

    name = f"bench-cold-start-{uuid.uuid4().hex[:6]}"
    client = rt.client()
    template.create_table(client, name)
    now = Decimal(int(time.time()))
    alice = Budget(
        project="acme",
        user="alice",
        total_budget=Decimal(25),
        created_at=now,
        updated_at=now,
        duration=Duration.MONTHLY,
        timezone="Europe/Paris",
    ).with_period_from(now)
    bob = Budget(
        project="acme",
        user="bob",
        total_budget=Decimal(10),
        created_at=now,
        updated_at=now,
        duration_days=Decimal(28),
        period_start=now,
    ).with_period_from(now)
    seed_items(client, name, [budget_to_item(alice), budget_to_item(bob)])
    return name


def run(rt: BenchRuntime, *, quick: bool = False, functions: list[str] | None = None) -> Section:
    from budget_service.pricing import tokens
    from localdev import template

    table_name = prepare(rt)
    # Bytecode for the service's own code too, as pip leaves it for the packages (the children
    # never write any): otherwise every process would compile the layer afresh.
    import compileall

    for directory in (template.LAYER_DIR, ROOT / "functions", REFERENCE_DIR):
        compileall.compile_dir(str(directory), quiet=1)
    all_functions = list(template.functions())  # every function the template declares
    functions = functions or (["UpdateCostFunction"] if quick else all_functions)
    repeats = 1 if quick else REPEATS
    section = Section(
        "cold_start",
        "3. Cold start per function: as shipped (SnapStart), and without it beside the design's libraries",
        intro=(
            "For each function in template.yaml, each figure is a new `python` process"
            " (bench/cold_start_child.py) that puts the layer and the function's code on `sys.path`,"
            " imports the handler module and calls it once with its sample event from `events/`,"
            " against a small table of its own on the embedded DynamoDB. **As shipped**: the"
            " template deploys SnapStart, and Lambda runs each API function's before-snapshot hook"
            " (its priming: the routes' validators; for the cost and hold functions the price table"
            " and both tiktoken encodings) before the snapshot; the child runs the hooks the same"
            " way (a stand-in `snapshot_restore_py`), then times the first request in the same"
            " process. Restoring a snapshot is Lambda's and is not measured here. **Without"
            " SnapStart** the whole process is timed, spawn to exit, by the bench: interpreter"
            " start, import, first invocation, exit (Lambda's init plus first invoke). The"
            " **reference** (bench/reference/app.py) is the design's own libraries and no service"
            " code: it imports boto3 and creates its DynamoDB client, Powertools' validating"
            " `APIGatewayRestResolver` with one route and a pydantic body and response model,"
            " Logger and Metrics; it resolves the same event and makes the same DynamoDB requests"
            " the function's first invocation made (recorded, then replayed). Each of"
            f" {repeats} round(s) runs the reference, then the function (tracing off, on, as"
            " shipped), back to back; times are medians (min–max). **Ratio** is the median of the"
            " rounds' ratios (a round's function over that round's reference), which a burst of"
            " load on this machine moves far less than the ratio of the two medians, given beside"
            f" it. The line is **{LINE}×**: the service's own code may add at most a quarter to"
            " what its libraries cost. **Tracing on** is the function as Lambda runs it under the"
            " template's `Tracing: Active` (LAMBDA_TASK_ROOT and a sampled _X_AMZN_TRACE_ID set;"
            " the X-Ray SDK sends its segments to a UDP socket the bench reads and counts)."
        ),
    )
    table = Table(
        [
            "function",
            "sample event",
            "as shipped: first request after priming",
            "priming (before the snapshot)",
            "first request without SnapStart (in process)",
            "reference: whole process",
            "function without SnapStart, tracing off: whole process",
            f"ratio (line {LINE}×)",
            "ratio of medians",
            "function, tracing on (X-Ray)",
            "ratio",
            "X-Ray segments sent",
            "reference + tiktoken's load of the encodings the call counted with",
            "ratio",
            "status",
        ]
    )
    detail = Table(
        [
            "function",
            "CPU time, whole process (function / reference = ratio)",
            "import (in process)",
            "first invocation",
            "reference: import + invocation",
            "peak memory (function / reference)",
            "modules loaded (function / reference)",
            "DynamoDB requests",
            "modules that dominate (self import time, -X importtime, tracing off)",
        ],
        title="Inside the process without SnapStart (tracing off): import, first invocation, memory, what is imported",
    )
    section.tables += [table, detail]
    sink = XRaySink()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
            for function_id in functions:
                calls_file = os.path.join(tmp, f"{function_id}.json")
                recorded, stderr = run_child(
                    rt, function_id, table_name, importtime=True, extra_env={"BENCH_RECORD_CALLS": calls_file}
                )
                reference_env = {"BENCH_REFERENCE_CALLS": calls_file}
                with open(calls_file) as f:
                    calls = json.load(f)
                encodings = counted_encodings(recorded)
                counting_env = {
                    **reference_env,
                    "BENCH_REFERENCE_ENCODINGS": ",".join(encodings),
                    "TIKTOKEN_CACHE_DIR": str(tokens.ENCODING_DIR),  # the layer's files, as the function
                }
                runs: dict[str, list[dict]] = {
                    k: [] for k in ("reference", "plain", "traced", "shipped", "counting")
                }
                datagrams: list[int] = []
                for _ in range(repeats):
                    # The reference, then the function at once: a burst of load on the machine
                    # (they last seconds here) then slows both of a round alike, and the round's
                    # ratio holds (the headline is the median of the rounds' ratios).
                    runs["reference"].append(
                        run_child(
                            rt, function_id, table_name, reference_dir=REFERENCE_DIR, extra_env=reference_env
                        )[0]
                    )
                    runs["plain"].append(run_child(rt, function_id, table_name)[0])
                    sink.drain()
                    runs["traced"].append(
                        run_child(rt, function_id, table_name, traced=True, xray_address=sink.address)[0]
                    )
                    datagrams.append(sink.drain())
                    runs["shipped"].append(
                        run_child(rt, function_id, table_name, extra_env={"BENCH_SNAPSTART": "1"})[0]
                    )
                    if encodings:
                        runs["counting"].append(
                            run_child(
                                rt,
                                function_id,
                                table_name,
                                reference_dir=REFERENCE_DIR,
                                extra_env=counting_env,
                            )[0]
                        )
                # 200, or None where the function has no sample event (imported only, as is the reference)
                expected = {"200"} if event_file(function_id) else {"None"}
                answered = {str(r.get("status")) for r in runs["reference"]} - expected
                if answered:  # a reference that did not replay the requests is no reference
                    raise RuntimeError(f"the reference beside {function_id} answered {answered}")
                section.data[function_id] = _figures(
                    function_id, repeats, recorded, stderr, calls, runs, datagrams
                )
                _rows(table, detail, function_id, section.data[function_id])
    finally:
        sink.close()
    ratios = {f: d["ratio"] for f, d in section.data.items()}
    over = sorted(f for f, r in ratios.items() if r > LINE)
    section.notes += [
        f"Without SnapStart, {len(ratios) - len(over)} of {len(ratios)} functions are within {LINE}×"
        f" of the reference (largest {max(ratios.values()):.2f}×, {max(ratios, key=ratios.__getitem__)};"
        " median of the rounds' ratios of whole processes)"
        + (f"; over the line: {', '.join(over)}." if over else "."),
        f"With tracing on: at most {max(d['traced_ratio'] for d in section.data.values()):.2f}×."
        " As ratios of medians:"
        f" at most {max(d['ratio_of_medians'] for d in section.data.values()):.2f}× (tracing off).",
        "As shipped, the first request after priming is the function's own work and one DynamoDB"
        " round trip (its client and connections are made on the first invocation, never put in"
        " the snapshot); the restore itself is Lambda's.",
        'Reproduce: `make bench BENCH_ARGS="--only cold_start"` (or `python -m bench --only cold_start`).',
        "Times are this machine's CPython "
        f"{sys.version.split()[0]} with bytecode caches present (as pip installs packages);"
        " Lambda (python3.13, arm64) differs in absolute terms, but the reference runs the same"
        " interpreter, so the ratio carries over. The in-process figures leave out the"
        " interpreter's start, which both pay.",
    ]
    return section


def counted_encodings(recorded: dict) -> list[str]:
    """The encodings a first invocation counted tokens with (tiktoken's, loaded)."""
    return sorted(recorded.get("encodings") or [])


def _paired(runs: list[dict], references: list[dict]) -> float:
    """The median over rounds of run / reference (whole-process times of the same round)."""
    return Stat.of(r["whole_s"] / f["whole_s"] for r, f in zip(runs, references, strict=True)).median


def _figures(function_id, repeats, recorded, stderr, calls, runs, datagrams) -> dict:
    profile = import_profile(stderr)
    everything = sum(profile.values()) or 1.0
    top = sorted(profile.items(), key=lambda kv: -kv[1])[:5]
    event = event_file(function_id)
    reference, plain, traced, shipped, counting = (
        runs[k] for k in ("reference", "plain", "traced", "shipped", "counting")
    )
    whole = Stat.of(r["whole_s"] for r in plain)
    reference_whole = Stat.of(r["whole_s"] for r in reference)
    traced_whole = Stat.of(r["whole_s"] for r in traced)
    invoked = [r for r in plain if "invoke_s" in r]
    shipped_invoked = [r for r in shipped if "invoke_s" in r]
    return {
        "repeats": repeats,
        "event": os.path.basename(event) if event else None,
        "import_s": Stat.of(r["import_s"] for r in plain).as_dict(),
        "invoke_s": Stat.of(r["invoke_s"] for r in invoked).as_dict() if invoked else None,
        "total_s": Stat.of(r["import_s"] + r.get("invoke_s", 0.0) for r in plain).as_dict(),
        "whole_s": whole.as_dict(),
        "reference_whole_s": reference_whole.as_dict(),
        "reference_total_s": Stat.of(r["import_s"] + r.get("invoke_s", 0.0) for r in reference).as_dict(),
        "traced_whole_s": traced_whole.as_dict(),
        "shipped_invoke_s": Stat.of(r["invoke_s"] for r in shipped_invoked).as_dict()
        if shipped_invoked
        else None,
        "shipped_prime_s": Stat.of(r.get("prime_s", 0.0) for r in shipped).as_dict(),
        "shipped_hooks": sorted({r.get("hooks", 0) for r in shipped}),
        "cpu_s": Stat.of(r["cpu_s"] for r in plain).as_dict(),
        "reference_cpu_s": Stat.of(r["cpu_s"] for r in reference).as_dict(),
        "cpu_ratio": Stat.of(r["cpu_s"] for r in plain).median
        / Stat.of(r["cpu_s"] for r in reference).median,
        # Headline: the median of the rounds' ratios (each round's function over its own reference).
        "ratio": _paired(plain, reference),
        "within_line": _paired(plain, reference) <= LINE,
        "traced_ratio": _paired(traced, reference),
        "ratio_of_medians": whole.median / reference_whole.median,
        "traced_ratio_of_medians": traced_whole.median / reference_whole.median,
        "peak_rss_bytes": Stat.of(r["peak_rss_bytes"] for r in plain).as_dict(),
        "reference_peak_rss_bytes": Stat.of(r["peak_rss_bytes"] for r in reference).as_dict(),
        "modules": Stat.of(r["modules"] for r in plain).median,
        "reference_modules": Stat.of(r["modules"] for r in reference).median,
        "dynamodb_requests": [method for method, _ in calls],
        "xray_datagrams": datagrams,
        "statuses": sorted({str(r.get("status")) for r in plain + traced + shipped}),
        "reference_statuses": sorted({str(r.get("status")) for r in reference}),
        "encodings": recorded.get("encodings") or [],
        "counted": counted_encodings(recorded),
        "counting_whole_s": Stat.of(r["whole_s"] for r in counting).as_dict() if counting else None,
        "counting_ratio": _paired(plain, counting) if counting else None,
        "importtime_total_s": everything,
        "importtime_top": [[name, secs] for name, secs in top],
    }


def _rows(table: Table, detail: Table, function_id: str, d: dict) -> None:
    s = lambda key: Stat(**d[key])  # noqa: E731
    mib = lambda key: f"{d[key]['median'] / 1048576:.0f} MiB"  # noqa: E731
    flag = "" if d["within_line"] else " (over)"
    table.add(
        function_id,
        d["event"] or "— (import only)",
        s("shipped_invoke_s").fmt(digits=0) if d["shipped_invoke_s"] else "—",
        s("shipped_prime_s").fmt(digits=0) if d["shipped_hooks"] != [0] else "— (no hook)",
        s("invoke_s").fmt(digits=0) if d["invoke_s"] else "—",
        s("reference_whole_s").fmt(digits=0),
        s("whole_s").fmt(digits=0),
        f"**{d['ratio']:.2f}×**{flag}",
        f"{d['ratio_of_medians']:.2f}×",
        s("traced_whole_s").fmt(digits=0),
        f"{d['traced_ratio']:.2f}×",
        f"{min(d['xray_datagrams'])}–{max(d['xray_datagrams'])}"
        if min(d["xray_datagrams"]) != max(d["xray_datagrams"])
        else str(d["xray_datagrams"][0]),
        f"{s('counting_whole_s').fmt(digits=0)} ({', '.join(d['counted'])})"
        if d.get("counting_whole_s")
        else "— (counted no tokens)",
        f"{d['counting_ratio']:.2f}×" if d.get("counting_ratio") else "—",
        ", ".join(d["statuses"]),
    )
    requests: dict[str, int] = {}
    for method in d["dynamodb_requests"]:
        requests[method] = requests.get(method, 0) + 1
    total = d["importtime_total_s"]
    detail.add(
        function_id,
        f"{d['cpu_s']['median'] * 1000:,.0f} / {d['reference_cpu_s']['median'] * 1000:,.0f} ms = {d['cpu_ratio']:.2f}×",
        s("import_s").fmt(digits=0),
        s("invoke_s").fmt(digits=0) if d["invoke_s"] else "—",
        s("reference_total_s").fmt(digits=0),
        f"{mib('peak_rss_bytes')} / {mib('reference_peak_rss_bytes')}",
        f"{d['modules']:.0f} / {d['reference_modules']:.0f}",
        ", ".join(f"{m}×{n}" if n > 1 else m for m, n in requests.items()) or "none",
        ", ".join(f"{name} {secs * 1000:.0f} ms ({secs / total:.0%})" for name, secs in d["importtime_top"]),
    )
