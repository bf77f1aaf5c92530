"""``make bench`` = ``python -m bench``: run every benchmark, write bench/RESULTS.md, print it.

Options: ``--quick`` (each benchmark at its smallest size, one round: what tests/e2e/test_bench_smoke.py
runs), ``--only KEY[,KEY]`` (update_cost, resets, cold_start, tokens, dynamodb_ops, latency,
cost_model, holds, levels, hold_sizing, contention), ``--out PATH``
(default bench/RESULTS.md, for a full run only: a quick or partial run just prints unless given
one), ``--json PATH`` (the raw figures too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.common import ROOT, BenchRuntime, Section, Table

SECTIONS = (
    "dynamodb_ops",
    "update_cost",
    "resets",
    "latency",
    "cold_start",
    "tokens",
    "cost_model",
    "holds",
    "levels",
    "hold_sizing",
    "contention",
)
# as RESULTS.md shows them
ORDER = (
    "update_cost",
    "resets",
    "cold_start",
    "tokens",
    "dynamodb_ops",
    "latency",
    "cost_model",
    "holds",
    "levels",
    "hold_sizing",
    "contention",
)
PACKAGES = (
    "litellm",
    "boto3",
    "botocore",
    "moto",
    "tiktoken",
    "pydantic",
    "aws-lambda-powertools",
    "Werkzeug",
    "requests",
    "httpx",
)


def machine() -> Table:
    table = Table(["item", "value"])
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    table.add("date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M"))
    table.add("machine", f"{platform.system()} {platform.release()} {platform.machine()}")
    table.add("CPU", f"{cpu}, {cores} cores available to this process")
    table.add("memory", memory)
    table.add("Python", f"{platform.python_implementation()} {platform.python_version()}")
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    table.add("packages", ", ".join(versions))
    table.add("commit", _git_commit())
    return table


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else "unknown"


def key_figures(sections: dict[str, Section]) -> list[str]:
    """A few headline numbers, each taken from the sections' data."""
    lines = []
    cost = sections.get("update_cost")
    sizes = {int(k): v for k, v in (cost.data if cost else {}).items() if k.isdigit()}
    saved = [u for u, d in sizes.items() if d["litellm_save_statuses"] == [200]]
    if saved:
        users = max(saved)
        a, b = sizes[users]["litellm"], sizes[users]["native"]
        lines.append(
            f"Recording one user's spend in a project of {users:,} users: the litellm hosted"
            f" client sends {a['bytes_sent']['median'] / b['bytes_sent']['median']:,.0f}× the bytes,"
            f" makes {a['dynamodb_requests']['median']:g} DynamoDB requests (reading"
            f" {a['items_read']['median']:,.0f} items) against {b['dynamodb_requests']['median']:g},"
            f" and takes {a['seconds']['median'] / b['seconds']['median']:,.0f}× as long"
            f" ({a['seconds']['median'] * 1000:,.0f} ms vs {b['seconds']['median'] * 1000:,.1f} ms)."
        )
    for users in sorted(u for u, d in sizes.items() if d["litellm_save_statuses"] != [200]):
        codes = [c for c in sizes[users]["litellm_save_statuses"] if c != 200]
        lines.append(
            f"At {users:,} users litellm's saves are refused (HTTP {', '.join(map(str, codes))}:"
            f" {sizes[users]['litellm']['bytes_sent']['median'] / 2 / 1048576:.2f} MiB per save);"
            f" the native route still takes {sizes[users]['native']['seconds']['median'] * 1000:,.1f} ms"
            " and 1 DynamoDB request."
        )
    resets = sections.get("resets")
    if resets and resets.data:
        total = max(resets.data, key=int)
        d = resets.data[total]
        lines.append(
            f"Reset job over {int(total):,} budgets with {d['due']} due: reads"
            f" {d['job']['items_read']['median']:,.0f} items in {d['job']['seconds']['median'] * 1000:,.0f} ms;"
            f" the full-table Scan baseline reads {d['scan_baseline']['items_read']['median']:,.0f}"
            f" in {d['scan_baseline']['seconds']['median'] * 1000:,.0f} ms."
        )
    cold = sections.get("cold_start")
    if cold and cold.data:
        from bench.cold_start import LINE

        worst = max(cold.data.items(), key=lambda kv: kv[1]["ratio"])
        over = sorted(f for f, d in cold.data.items() if d["ratio"] > LINE)
        lines.append(
            f"Cold start without SnapStart (whole process: import + first invocation) over the"
            f" design-libraries reference (boto3 and its client, Powertools' validating resolver,"
            f" pydantic; the same DynamoDB requests): at most {worst[1]['ratio']:.2f}× ({worst[0]},"
            f" {worst[1]['whole_s']['median'] * 1000:,.0f} ms vs"
            f" {worst[1]['reference_whole_s']['median'] * 1000:,.0f} ms), tracing off (median of the"
            f" rounds' ratios); {len(cold.data) - len(over)} of {len(cold.data)} functions within {LINE}×"
            + (f" (over: {', '.join(over)})." if over else ".")
        )
        shipped = [d["shipped_invoke_s"]["median"] for d in cold.data.values() if d.get("shipped_invoke_s")]
        if shipped:
            lines.append(
                f"As shipped (SnapStart, primed before the snapshot): the first request takes"
                f" {min(shipped) * 1000:,.0f}–{max(shipped) * 1000:,.0f} ms in process."
            )
    tokens = sections.get("tokens")
    if tokens and "fresh_service" in tokens.data:
        s, lt = tokens.data["fresh_service"], tokens.data["fresh_litellm"]
        first = lambda d: (d["import_s"]["median"] + d["first_s"]["median"]) * 1000  # noqa: E731
        lines.append(
            "Token counting, fresh process: import + first call"
            f" {first(s):,.0f} ms for the service's counter (loads tiktoken),"
            f" {first(lt):,.0f} ms for litellm.token_counter."
        )
    if tokens and any("service_over_tiktoken" in v for v in tokens.data.values()):
        shares = [v["service_over_tiktoken"] for v in tokens.data.values() if "service_over_tiktoken" in v]
        lines.append(
            f"Token counting runs at {min(shares):.2f}–{max(shares):.2f} of tiktoken's own encode"
            " on the same inputs."
        )
    latency = sections.get("latency")
    hot = [(k, v) for k, v in (latency.data if latency else {}).items() if "outside_p50_s" in v]
    for key, v in hot:
        lines.append(
            f"{key}: p50 {v['p50_s'] * 1000:.1f} ms, p99 {v['p99_s'] * 1000:.1f} ms through the local"
            f" server; {v['outside_p50_s'] * 1000:.2f} ms (p50) of the handler is outside its DynamoDB request."
        )
    model = sections.get("cost_model")
    if model and "with Idempotency-Key" in model.data:
        lines.append(
            f"One million charged calls cost ${model.data['with Idempotency-Key']['total']:.2f} on AWS"
            f" (${model.data['without a key']['total']:.2f} without an Idempotency-Key); the assumed"
            f" LiteLLM Proxy stack costs ${model.data['litellm_proxy_monthly']['total']:,.0f} a month at any volume."
        )
    ops = sections.get("dynamodb_ops")
    if ops and "cost" in ops.data:
        lines.append(
            f"A native cost update is {ops.data['cost']['requests']} DynamoDB request"
            f" ({ops.data['cost']['wcu']:g} WCU); with an Idempotency-Key,"
            f" {ops.data['cost_key']['requests']} ({ops.data['cost_key']['wcu']:g} WCU)."
        )
    caps = sections.get("holds")
    if caps and caps.data:
        callers = max(caps.data, key=int)
        check, hold = caps.data[callers]["check_then_charge"], caps.data[callers]["hold_then_settle"]
        lines.append(
            f"{callers} concurrent callers on a budget of 10 calls: check-then-charge admitted"
            f" {check['admitted_calls']} ({check['overshoot']:.2f}× the budget), hold-then-settle"
            f" {hold['admitted_calls']} ({hold['overshoot']:.2f}×)."
        )
    lines += _contention_figures(sections.get("contention"))
    return lines


def _contention_figures(section: Section | None) -> list[str]:
    if not section or not section.data.get("runs"):
        return []
    data, lines = section.data, []
    top = data["caps_over_users"]["containers"]
    caps, users, hot = (data["runs"][f"{w}/{top}"] for w in ("caps", "users", "hot_user"))
    lines.append(
        f"Contention ({data['window_ms']} ms in flight), {top} containers holding and settling:"
        f" with team and project caps, {caps['new']['per_second']:.1f} calls/s on escrow slices"
        f" against {caps['old']['per_second']:.1f} on one item per level"
        f" ({caps['new_over_old']:.2f}×); users only {users['new']['per_second']:.1f} calls/s, so caps"
        f" cost {data['caps_over_users']['new']:.2f}× of the users-only throughput (wanted ≥ 0.7×);"
        f" one hot user {hot['new']['per_second']:.1f} calls/s; errors"
        f" {max(d[k]['error_rate'] for d in (caps, users, hot) for k in ('old', 'new')):.1%} at most."
        " On this 2-core machine (CPU bound)."
    )
    results = data.get("model", {}).get("results", {})
    if "1/10" in results and "8/10" in results:
        lines.append(
            f"Model at AWS's limits (10 ms in flight, split for heat assumed): one project sustains"
            f" {results['8/10']['per_second']:,.0f} calls/s (hold + settle) with 8 slices against"
            f" {results['1/10']['per_second']:,.0f} with one item per level; on a single partition"
            f" {data['model']['partition_ceiling']:.1f} calls/s whatever the slices."
        )
    return lines


def render(sections: dict[str, Section], header: Table, seconds: float, quick: bool) -> str:
    parts = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m bench{' --quick' if quick else ''}`); the whole run took"
        f" {seconds / 60:.1f} minutes ({seconds:.0f} s). Medians, with (min–max) over the repeated"
        " runs each section states; ratios are of medians unless a section says otherwise. Nothing here is asserted; a smoke run"
        " of every benchmark at its smallest size is part of `make test`"
        " (tests/e2e/test_bench_smoke.py).",
        "",
        "## Machine and versions",
        "",
        header.markdown(),
        "",
    ]
    figures = key_figures(sections)
    if figures:
        parts += ["## Key figures", ""] + [f"- {line}" for line in figures] + [""]
    for key in ORDER:
        if key in sections:
            parts += [sections[key].markdown(), ""]
    return "\n".join(parts).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smallest sizes, one round (smoke run)")
    parser.add_argument(
        "--out",
        help="where to write the markdown (default: bench/RESULTS.md for a full run;"
        " a --quick or --only run only prints, unless given)",
    )
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # keep handler logs out of the output
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    started = time.perf_counter()
    header = machine()
    sections: dict[str, Section] = {}

    def timed_section(key: str, fn) -> None:
        print(f"[bench] {key} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        section = fn()
        section.seconds = time.perf_counter() - t0
        sections[key] = section
        print(f"[bench] {key} done in {section.seconds:.1f} s", file=sys.stderr, flush=True)

    needs_runtime = [k for k in chosen if k not in ("tokens", "cost_model", "hold_sizing", "contention")]
    if needs_runtime:
        from bench import cold_start, dynamodb_ops, holds, latency, levels, resets, update_cost

        runners = {
            "dynamodb_ops": lambda rt: dynamodb_ops.run(rt, quick=args.quick),
            "update_cost": lambda rt: update_cost.run(rt, quick=args.quick),
            "resets": lambda rt: resets.run(rt, quick=args.quick),
            "cold_start": lambda rt: cold_start.run(rt, quick=args.quick),
            "latency": lambda rt: latency.run(rt, quick=args.quick),
            "holds": lambda rt: holds.run(rt, quick=args.quick),
            "levels": lambda rt: levels.run(rt, quick=args.quick),
        }
        with BenchRuntime() as rt:
            for key in SECTIONS:
                if key in needs_runtime:
                    timed_section(key, lambda key=key: runners[key](rt))
    if "tokens" in chosen:
        from bench import token_counting

        timed_section("tokens", lambda: token_counting.run(quick=args.quick))

    if "hold_sizing" in chosen:
        from bench import hold_sizing

        timed_section("hold_sizing", lambda: hold_sizing.run(quick=args.quick))

    if "contention" in chosen:
        from bench import contention

        say = lambda text: print(f"[bench] contention: {text}", file=sys.stderr, flush=True)  # noqa: E731
        timed_section("contention", lambda: contention.run(quick=args.quick, progress=say))

    if "cost_model" in chosen:
        from bench import cost_model

        timed_section("cost_model", lambda: cost_model.run(sections, quick=args.quick))

    seconds = time.perf_counter() - started
    text = render(sections, header, seconds, args.quick)
    out = args.out or (None if args.quick or args.only else str(ROOT / "bench" / "RESULTS.md"))
    if out:
        Path(out).write_text(text)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "quick": args.quick,
                    "seconds": seconds,
                    "machine": dict(header.rows),
                    "sections": {k: s.as_dict() for k, s in sections.items()},
                },
                indent=2,
                default=str,
            )
        )
    print(text)
    print(f"[bench] {'wrote ' + out if out else 'done'} in {seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
