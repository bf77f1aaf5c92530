"""Holds under concurrency: the hard cap through the local HTTP server, and the races
that must each charge once (a settle against the expiry, two settles of one hold)."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from conftest import run_threads

from budget_service.store.holds import EXPIRED, HoldStore
from localdev.ready_time import ServerProcess

PUT = "/projects/{project}/users/{user}"
HOLDS = "/projects/{project}/users/{user}/holds"
SETTLE = "/projects/{project}/users/{user}/holds/{hold_id}/settle"


@pytest.fixture(scope="module")
def local():
    proc = ServerProcess()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.close()


def test_64_concurrent_holds_of_010_on_100_admit_exactly_10(local):
    base = f"{local.url}/projects/cap-{uuid.uuid4().hex[:8]}/users/alice"
    assert requests.put(base, json={"total_budget": 1}, timeout=30).status_code == 201
    assert requests.post(f"{local.url}/_local/stats/reset", timeout=30).status_code == 200
    barrier = threading.Barrier(64)

    def hold(_: int) -> requests.Response:
        session = requests.Session()
        barrier.wait()
        return session.post(base + "/holds", data='{"amount": 0.10}', timeout=60)

    with ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(hold, range(64)))
    statuses = sorted(a.status_code for a in answers)
    # The server ran them concurrently, each in a container of its own (its own count).
    assert requests.get(f"{local.url}/_local/stats", timeout=30).json()["max_in_flight"] > 1
    assert statuses == [201] * 10 + [402] * 54, statuses
    for refused in (a for a in answers if a.status_code == 402):
        error = refused.json()["error"]
        assert error["code"] == "budget_exceeded" and error["details"][0]["available"] < 0.1
    record = requests.get(base, timeout=30).json()
    assert record["held"] == 1 and record["available"] == 0 and record["current_cost"] == 0

    # Settling each for less frees the rest: exactly what was charged is spent.
    admitted = [a.json()["hold_id"] for a in answers if a.status_code == 201]
    for hold_id in admitted:
        settled = requests.post(
            f"{base}/holds/{hold_id}/settle", json={"model": "m", "cost": 0.05}, timeout=30
        )
        assert settled.status_code == 200, settled.text
    record = requests.get(base, timeout=30).json()
    assert record["current_cost"] == 0.5 and record["held"] == 0 and record["available"] == 0.5


ROUNDS = 12


def _race(served_api, server_store, who, second) -> list:
    """ROUNDS holds, each settled by one thread while `second` acts on it from another."""
    outcomes = []
    for _ in range(ROUNDS):
        hold_id = served_api.call("POST", HOLDS, who, body={"amount": 1}).json()["hold_id"]
        barrier = threading.Barrier(2)
        results: dict = {}

        # Each round's hold, barrier and results are bound as defaults (the threads run within it).
        def settle(barrier=barrier, results=results, hold_id=hold_id) -> None:
            barrier.wait()
            results["settle"] = served_api.call(
                "POST",
                SETTLE,
                {**who, "hold_id": hold_id},
                body=json.dumps({"model": "m", "cost": 0.25}),
            )

        def other(barrier=barrier, results=results, hold_id=hold_id) -> None:
            barrier.wait()
            results["other"] = second(hold_id)

        run_threads([threading.Thread(target=settle), threading.Thread(target=other)])
        outcomes.append(results)
    return outcomes


def _overlapped(served_api) -> None:
    """Two calls of the races through the Api ran at once at least once (the Api's own count);
    only where both sides of the race are Api calls (the expiry race's other side is the store)."""
    assert served_api.max_in_flight() > 1


def test_a_settle_racing_the_expiry_charges_once_and_frees_once(served_api, server_store):
    who = {"project": f"race-{uuid.uuid4().hex[:8]}", "user": "alice"}
    served_api.call("PUT", PUT, who, body={"total_budget": 100})
    holds = HoldStore(server_store)
    now = Decimal(10**10)  # after every hold's expiry: what the job does to a due hold

    outcomes = _race(
        served_api,
        server_store,
        who,
        lambda hold_id: holds.finish(who["project"], who["user"], hold_id, now, EXPIRED),
    )
    for results in outcomes:
        assert results["settle"].status == 200, results
    budget = server_store.get(who["project"], who["user"])
    assert budget.current_cost == Decimal("0.25") * ROUNDS  # every settle charged, once
    assert budget.held == 0 and budget.available == 100 - budget.current_cost
    late = sum(r["settle"].json()["settled_from"] == "expired" for r in outcomes)
    expired = sum(r["other"][1] for r in outcomes)
    assert late == expired  # a settle that lost the race was charged without freeing again


def test_two_settles_of_one_hold_charge_once(served_api, server_store):
    who = {"project": f"race-{uuid.uuid4().hex[:8]}", "user": "bob"}
    served_api.call("PUT", PUT, who, body={"total_budget": 100})
    outcomes = _race(
        served_api,
        server_store,
        who,
        lambda hold_id: served_api.call(
            "POST", SETTLE, {**who, "hold_id": hold_id}, body=json.dumps({"model": "m", "cost": 0.25})
        ),
    )
    for results in outcomes:
        pair = [results["settle"].json(), results["other"].json()]
        assert sorted(p["replayed"] for p in pair) == [False, True]
        assert pair[0]["cost"] == pair[1]["cost"] == 0.25
    budget = server_store.get(who["project"], who["user"])
    assert budget.current_cost == Decimal("0.25") * ROUNDS and budget.held == 0
    _overlapped(served_api)
    assert budget.available == 100 - budget.current_cost
