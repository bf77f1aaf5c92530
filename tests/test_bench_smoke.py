"""`make bench` cannot rot: every benchmark runs at its smallest size (``python -m bench --quick``)
and produces well-formed results. Nothing here is about time: counts are checked, times only for
being measured at all."""

import json
import math
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
    "holds": "6. Hard caps",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out / "RESULTS.md"),
         "--json", str(out / "results.json")],
        cwd=template.ROOT, capture_output=True, text=True, timeout=240,
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
    assert figures["job"]["items_read"]["median"] == 10
    assert figures["scan_baseline"]["items_read"]["median"] == 1000
    assert measured(figures["job"]["seconds"]) and measured(figures["scan_baseline"]["seconds"])


def test_cold_start_imports_and_invokes(quick_run):
    _, results, _ = quick_run
    (function, figures), = results["sections"]["cold_start"]["data"].items()
    assert function in template.functions()
    assert figures["statuses"] == ["200"]
    assert measured(figures["import_s"]) and measured(figures["invoke_s"])
    assert figures["importtime_top"] and all(secs > 0 for _, secs in figures["importtime_top"])


def test_token_counting_agrees_with_litellm(quick_run):
    _, results, _ = quick_run
    data = results["sections"]["tokens"]["data"]
    cases = [v for v in data.values() if "tokens_service" in v]
    assert cases and all(c["tokens_service"] == c["tokens_litellm"] > 0 for c in cases)
    for case in cases:
        assert measured(case["service_tokens_per_s"]) and measured(case["litellm_tokens_per_s"])
    for who in ("fresh_service", "fresh_litellm"):
        assert measured(data[who]["first_s"]) and measured(data[who]["import_s"])


def test_dynamodb_ops_counts_every_route(quick_run):
    _, results, _ = quick_run
    data = results["sections"]["dynamodb_ops"]["data"]
    routes = {(r.method, r.path) for r in template.api_routes()}
    assert len(data) >= len(routes)  # each route at least once, plus the scheduled reset
    assert data["cost"]["operations"] == ["TransactWriteItems"] and data["cost"]["wcu"] == 2
    for op in ("hold", "hold_key", "settle", "release"):
        assert data[op]["operations"] == ["TransactWriteItems"], (op, data[op])
    assert data["cost_key"]["operations"] == ["TransactWriteItems"] and data["cost_key"]["wcu"] == 4
    assert data["get"]["operations"] == ["GetItem"] and data["get"]["wcu"] == 0
    assert data["reset_job"]["operations"].count("UpdateItem") == 1


def test_hold_then_settle_never_overshoots(quick_run):
    _, results, _ = quick_run
    for figures in results["sections"]["holds"]["data"].values():
        hold = figures["hold_then_settle"]
        assert hold["admitted_calls"] == 10 and hold["spend"] <= hold["budget"]
        assert figures["check_then_charge"]["admitted_calls"] >= 10


def test_committed_results_are_from_a_full_run():
    text = (template.ROOT / "bench" / "RESULTS.md").read_text()
    assert "--quick" not in text
    for heading in SECTIONS.values():
        assert f"## {heading}" in text
    for users in ("10", "100", "1,000", "10,000"):
        assert f"| {users} |" in text
