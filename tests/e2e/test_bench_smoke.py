"""`make bench` cannot rot: every benchmark runs at its smallest size (``python -m bench --quick``)
and produces well-formed results. Nothing here is about time: counts are checked, times only for
being measured at all."""

import json
import math
import os
import subprocess
import sys

import pytest

from localdev import template

SECTIONS = {
    "update_cost": "1. Update cost",
    "resets": "2. Reset job",
    "cold_start": "3. Cold start",
    "tokens": "4. Token counting",
    "dynamodb_ops": "5. DynamoDB requests",
    "latency": "6. Route latency",
    "cost_model": "7. Cost model",
    "holds": "8. Hard caps",
    "levels": "9. Budget levels",
    "hold_sizing": "10. Hold sizing",
    "contention": "11. Contention",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--out",
            str(out / "RESULTS.md"),
            "--json",
            str(out / "results.json"),
        ],
        cwd=template.ROOT,
        capture_output=True,
        text=True,
        timeout=480,  # a bound for a loaded 2-core machine, not a measure of speed
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return (out / "RESULTS.md").read_text(), json.loads((out / "results.json").read_text()), proc.stdout


def measured(stat: dict) -> bool:
    return all(math.isfinite(stat[k]) and stat[k] > 0 for k in ("median", "min", "max")) and (
        stat["min"] <= stat["median"] <= stat["max"]
    )


def test_every_section_writes_well_formed_tables(quick_run):
    markdown, results, stdout = quick_run
    assert set(results["sections"]) == set(SECTIONS)
    for key, heading in SECTIONS.items():
        assert f"## {heading}" in markdown
        section = results["sections"][key]
        assert section["tables"], key
        for table in section["tables"]:
            assert table["rows"], (key, table["title"])
            for row in table["rows"]:
                assert len(row) == len(table["columns"]) and all(cell.strip() for cell in row), (key, row)
    assert "## Machine and versions" in markdown and "litellm 1.110.2" in markdown
    assert markdown in stdout  # make bench prints what it writes


def test_update_cost_counts_both_paths(quick_run):
    _, results, _ = quick_run
    figures = results["sections"]["update_cost"]["data"]["10"]
    assert figures["litellm_save_statuses"] == [200]
    litellm, native = figures["litellm"], figures["native"]
    assert native["dynamodb_requests"]["median"] == 1
    assert litellm["http_requests"]["median"] == 2  # update_cost's background save + save_data
    assert litellm["items_read"]["median"] >= 2 * 10  # each save reads the whole project
    assert litellm["bytes_sent"]["median"] > native["bytes_sent"]["median"] > 0
    for path in (litellm, native):
        assert measured(path["seconds"])


def test_resets_reads_only_the_due_and_the_baseline_reads_everything(quick_run):
    _, results, _ = quick_run
    figures = results["sections"]["resets"]["data"]["1000"]
    assert figures["due"] == 10
    # Each due budget: its index entry, and the GetItem a rollover makes to record the closed
    # period's spend, for the history; the baseline reads the whole table, and the same GetItems.
    assert figures["job"]["items_read"]["median"] == 2 * 10
    assert figures["scan_baseline"]["items_read"]["median"] == 1000 + 10 + 10  # + the periods it wrote
    assert measured(figures["job"]["seconds"]) and measured(figures["scan_baseline"]["seconds"])


def test_cold_start_imports_and_invokes(quick_run):
    _, results, _ = quick_run
    ((function, figures),) = results["sections"]["cold_start"]["data"].items()
    assert function in template.functions()
    assert figures["statuses"] == ["200"] and figures["reference_statuses"] == ["200"]
    assert measured(figures["import_s"]) and measured(figures["invoke_s"])
    for key in ("whole_s", "reference_whole_s", "traced_whole_s", "cpu_s", "reference_cpu_s"):
        assert measured(figures[key]), key
    assert figures["ratio"] > 0 and figures["traced_ratio"] > 0
    assert figures["within_line"] == (figures["ratio"] <= 1.25)
    assert figures["ratio_of_medians"] > 0 and figures["traced_ratio_of_medians"] > 0
    assert figures["importtime_top"] and all(secs > 0 for _, secs in figures["importtime_top"])
    # As shipped: the SnapStart hook ran before the first request, which was timed after it.
    assert figures["shipped_hooks"] == [1]
    assert measured(figures["shipped_prime_s"]) and measured(figures["shipped_invoke_s"])
    # The reference replays the requests the function made: the same DynamoDB work on both sides.
    # (a cold container first reads the project's own prices, then writes the cost)
    assert figures["dynamodb_requests"] == ["query", "transact_write_items"]
    # Tracing on really traced (segments reached the bench's stand-in daemon); off loads no SDK.
    assert all(n > 0 for n in figures["xray_datagrams"])
    assert figures["peak_rss_bytes"]["median"] > 0 and figures["reference_peak_rss_bytes"]["median"] > 0


def test_cold_start_covers_every_template_function():
    from bench import cold_start

    for function_id in template.functions():
        command = cold_start.child_command(function_id)
        assert command[-4] == function_id  # every function gets a run (new ones included)
    assert (cold_start.REFERENCE_DIR / "app.py").exists()


def test_contention_runs_every_workload_and_both_designs(quick_run):
    _, results, _ = quick_run
    data = results["sections"]["contention"]["data"]
    assert data["window_ms"] == 10
    for workload in ("users", "caps", "hot_user"):
        for threads in (1, 4):
            row = data["runs"][f"{workload}/{threads}"]
            for design in ("old", "new"):
                figures = row[design]
                assert figures["calls"] > 0 and figures["per_second"] > 0, (workload, threads, design)
                assert 0 < figures["p50_s"] <= figures["p99_s"]
                # Nothing is refused with these budgets, and contention never reaches the caller.
                assert figures["error_rate"] == 0 and set(figures["statuses"]) <= {"200", "201"}, figures
            assert row["new_over_old"] > 0
    assert data["caps_over_users"]["containers"] == 4 and data["caps_over_users"]["new"] > 0


def test_contention_model_gains_with_slices():
    """The model alone (pure Python): more slices sustain more calls, a longer window fewer, and
    nothing passes the bound the window sets. Counts of a seeded simulation, not times."""
    from bench import contention_model

    data = contention_model.section_data(quick=True)["results"]
    one, eight = data["1/10"], data["8/10"]
    for r in (one, eight):
        assert 0 < r["per_second"] <= r["bound"] and r["at"]["failed"] <= r["at"]["calls"] * 0.001
    assert eight["per_second"] > 2 * one["per_second"]
    busy = contention_model.simulate(40.0, 1, 0.010, span_s=1.0)
    assert busy["admitted"] + busy["failed"] == busy["calls"] and busy["conflicts"] > 0


def test_no_xray_sdk_where_tracing_is_off():
    code = (
        "import sys; from budget_service import observability as o;"
        " print(o.tracing_enabled(), 'aws_xray_sdk.core' in sys.modules, type(o.tracer.provider).__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LAMBDA_TASK_ROOT",)}
    env.update(POWERTOOLS_TRACE_DISABLED="true", PYTHONPATH=str(template.LAYER_DIR))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False", "NoTracing"], out.stderr[-2000:]


def test_authorizer_and_reset_job_do_not_import_pydantic():
    for function_id in ("AuthorizerFunction", "ResetBudgetsFunction"):
        spec = template.functions()[function_id]
        code = f"import sys; sys.path[:0] = [{str(spec.code_uri)!r}]; import app; print('pydantic' in sys.modules)"
        env = dict(
            os.environ,
            POWERTOOLS_TRACE_DISABLED="true",
            TABLE_NAME="t",
            AWS_DEFAULT_REGION="us-east-1",
            PYTHONPATH=str(template.LAYER_DIR),
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == "False", (function_id, out.stderr[-2000:])


def test_latency_covers_every_route_and_splits_the_hot_path(quick_run):
    _, results, _ = quick_run
    data = results["sections"]["latency"]["data"]
    routes = {f"{r.method} {r.path}" for r in template.api_routes() if r.event_file.exists()}
    assert routes <= set(data)
    from bench.latency import other_ids

    for route in template.api_routes():
        key = f"{route.method} {route.path}"
        if key not in routes:
            continue
        figures = data[key]
        assert figures["requests"] > 0 and 0 < figures["p50_s"] <= figures["p99_s"] <= figures["max_s"]
        # Every request does the route's work (never an error answer), at least where the bench
        # makes all the ids itself (a route on a thing with its own id creates it first).
        # The project level (``/budget``) is one item per project that the bench's own PUT creates and
        # DELETE removes, in route order: a 404 there means "not there now", not a failed route.
        shared = bool(other_ids(route)) or route.path.endswith("/budget")
        ok = range(200, 300) if not shared else range(200, 500)
        assert all(int(code) in ok for code in figures["statuses"]), (key, figures["statuses"])
    cost = data["POST /projects/{project}/users/{user}/cost"]
    assert 0 < cost["outside_p50_s"] < cost["handler_p50_s"] and cost["dynamodb_p50_s"] > 0


def test_cost_model_adds_up(quick_run):
    _, results, _ = quick_run
    data = results["sections"]["cost_model"]["data"]
    with_key, without = data["with Idempotency-Key"], data["without a key"]
    # counted in section 5: a cost is a transaction (its retry token) with the project's
    # ConditionCheck, ×2; the key adds its ledger item
    assert with_key["wcu"] == 6 and without["wcu"] == 4
    for figure in (with_key, without):
        assert abs(sum(figure["parts"].values()) - figure["total"]) < 1e-9
        assert figure["parts"]["API Gateway (REST)"] == 3.5 and figure["billed_seconds"] > 0
    assert with_key["total"] > without["total"]
    assert data["litellm_proxy_monthly"]["total"] > 0


def test_token_counting_agrees_with_litellm(quick_run):
    _, results, _ = quick_run
    data = results["sections"]["tokens"]["data"]
    cases = [v for v in data.values() if "tokens_service" in v]
    assert cases and all(c["tokens_service"] == c["tokens_litellm"] > 0 for c in cases)
    for case in cases:
        assert measured(case["service_tokens_per_s"]) and measured(case["litellm_tokens_per_s"])
        assert measured(case["tiktoken_tokens_per_s"]) and case["service_over_tiktoken"] > 0
    for who in ("fresh_service", "fresh_litellm"):
        assert measured(data[who]["first_s"]) and measured(data[who]["import_s"])


def test_dynamodb_ops_counts_every_route(quick_run):
    _, results, _ = quick_run
    data = results["sections"]["dynamodb_ops"]["data"]
    routes = {(r.method, r.path) for r in template.api_routes()}
    assert len(data) >= len(routes)  # each route at least once, plus the scheduled reset
    # The budget and the ConditionCheck that the project has no cap, each x2 (a transaction).
    assert data["cost"]["operations"] == ["TransactWriteItems"] and data["cost"]["wcu"] == 4
    for op in ("hold", "hold_key", "release"):
        assert data[op]["operations"] == ["TransactWriteItems"], (op, data[op])
    # A settle with usage also counts the output for hold sizing: one UpdateItem, outside it.
    assert data["settle"]["operations"] == ["TransactWriteItems", "UpdateItem"], data["settle"]
    assert data["cost_key"]["operations"] == ["TransactWriteItems"] and data["cost_key"]["wcu"] == 6
    assert data["get"]["operations"] == ["GetItem"] and data["get"]["wcu"] == 0
    # A rollover reads the budget, then writes it with its closed period (the history).
    assert data["reset_job"]["operations"].count("GetItem") == 1
    assert data["reset_job"]["operations"].count("TransactWriteItems") == 1


def test_hold_then_settle_never_overshoots(quick_run):
    _, results, _ = quick_run
    for figures in results["sections"]["holds"]["data"].values():
        hold = figures["hold_then_settle"]
        assert hold["admitted_calls"] == 10 and hold["spend"] <= hold["budget"]
        assert figures["check_then_charge"]["admitted_calls"] >= 10


def test_every_charge_is_one_request_whatever_the_levels(quick_run):
    _, results, _ = quick_run
    data = results["sections"]["levels"]["data"]
    for levels in (1, 2, 3):
        assert data[f"levels_{levels}"]["requests_per_charge"] == 1
        assert data[f"levels_{levels}"]["operations"] == ["TransactWriteItems"]


def test_committed_results_are_from_a_full_run():
    text = (template.ROOT / "bench" / "RESULTS.md").read_text()
    assert "--quick" not in text
    for heading in SECTIONS.values():
        assert f"## {heading}" in text
    for users in ("10", "100", "1,000", "10,000"):
        assert f"| {users} |" in text
