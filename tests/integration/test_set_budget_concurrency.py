"""Concurrent litellm clients saving at once through the handler, against a real DynamoDB server."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from budget_service.domain.budgets import set_budget, utc_now
from budget_service.litellm.merge import merge_entry
from budget_service.schemas import LitellmEntry

WRITERS, ROUNDS, USERS = 8, 6, ["alice", "bob", "carol"]


def sent_cost(writer: int, round_: int) -> Decimal:
    return Decimal(round_ * WRITERS + writer + 1) / 1000  # rising across all writers


def test_racing_set_budget_calls_keep_the_largest_cost(served_api):
    project = "race-set"
    barrier = threading.Barrier(WRITERS)

    def save(body: dict) -> int:
        # A writer whose conflicts outlasted the service's retries gets 503 "retry" (how
        # often depends on how busy the machine is); sending the same body again is safe.
        for _ in range(50):
            status = served_api.set_budget(project, body).status
            if status != 503:
                return status
        return status

    def writer(w: int) -> list[int]:
        barrier.wait()  # start together so the requests really overlap
        statuses = []
        for r in range(ROUNDS):
            cost = float(sent_cost(w, r))  # JSON numbers, as litellm sends them
            body = {
                u: {"total_budget": 100, "current_cost": cost, "model_cost": {f"m{w % 3}": cost}}
                for u in USERS
            }
            statuses.append(save(body))
        return statuses

    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))
    assert served_api.max_in_flight() > 1  # the handlers really ran at once
    assert all(s == 200 for statuses in results for s in statuses), results

    data = served_api.get_budget(project).json()["data"]
    for u in USERS:
        largest = {
            f"m{m}": max(sent_cost(w, r) for r in range(ROUNDS) for w in range(WRITERS) if w % 3 == m)
            for m in range(3)
        }
        # every model's largest value survives, whichever writer sent it last ...
        assert data[u]["model_cost"] == largest, data[u]
        # ... and the total is their sum: each writer added to its own model (litellm adds each
        # cost to both), so the largest single total would be less than its own models' spend.
        assert data[u]["current_cost"] == sum(largest.values()), data[u]


def test_a_write_that_lost_the_race_is_applied_again_not_dropped(server_store):
    now = utc_now()
    set_budget(server_store, "race-two", {"u": LitellmEntry(total_budget=5, model_cost={"a": 1})}, now)
    seen = server_store.get("race-two", "u")
    # Another writer lands after our read ...
    set_budget(server_store, "race-two", {"u": LitellmEntry(total_budget=5, model_cost={"b": 2})}, now)
    # ... so our conditional write on what we saw fails, and the store re-reads and merges again.
    calls = []

    def change(current):
        calls.append(current.version)
        return merge_entry(current, LitellmEntry(total_budget=5, model_cost={"c": 3}), now).budget

    server_store.update("race-two", "u", change, seen=seen)
    final = server_store.get("race-two", "u")
    assert calls == [seen.version, seen.version + 1]
    assert final.model_cost == {"a": 1, "b": 2, "c": 3}
    assert final.version == seen.version + 2
