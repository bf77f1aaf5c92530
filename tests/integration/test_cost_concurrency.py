"""Concurrent cost updates of one user, through the handler, against the embedded DynamoDB server
(its own process, requests applied one at a time as DynamoDB applies them to an item)."""

import json
import threading
from decimal import Decimal

from conftest import run_threads

COST = "/projects/{project}/users/{user}/cost"
THREADS, UPDATES = 16, 50


def test_16_threads_x_50_updates_end_with_the_exact_decimal_sum(served_api, server_store):
    who = {"project": "race", "user": "hot"}
    created = served_api.call("PUT", "/projects/{project}/users/{user}", who, body={"total_budget": 1000})
    assert created.status in (200, 201), created
    start = server_store.get("race", "hot")
    barrier = threading.Barrier(THREADS)
    failures: list = []

    def amount(thread: int, n: int) -> Decimal:
        # Digits far below a float's precision: any float on the way would lose them.
        return Decimal(f"0.{thread + 1:02d}{n:03d}000000000000000007")

    def worker(thread: int) -> None:
        barrier.wait()  # all threads start together
        for n in range(UPDATES):
            model = f"model-{n % 3}"
            body = f'{{"model": "{model}", "cost": {amount(thread, n)}}}'
            response = served_api.call("POST", COST, who, body=body)
            if response.status != 200:
                failures.append(response)

    run_threads([threading.Thread(target=worker, args=(t,)) for t in range(THREADS)])
    assert served_api.max_in_flight() > 1  # the handlers really ran at once
    assert failures == []
    expected = sum((amount(t, n) for t in range(THREADS) for n in range(UPDATES)), Decimal(0))
    per_model = {
        f"model-{m}": sum(
            (amount(t, n) for t in range(THREADS) for n in range(UPDATES) if n % 3 == m), Decimal(0)
        )
        for m in range(3)
    }
    final = server_store.get("race", "hot")
    assert final.current_cost == expected
    assert final.model_cost == per_model
    assert final.version == start.version + THREADS * UPDATES


def test_one_idempotency_key_replayed_20_times_10_concurrently_charges_once(served_api, server_store):
    who = {"project": "race", "user": "idem"}
    served_api.call("PUT", "/projects/{project}/users/{user}", who, body={"total_budget": 10})
    body = json.dumps({"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 100}})
    headers = {"Idempotency-Key": "chatcmpl-once"}
    answers: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(10)

    def send() -> None:
        response = served_api.call("POST", COST, who, body=body, headers=headers)
        with lock:
            answers.append(response)

    def concurrent() -> None:
        barrier.wait()
        send()

    run_threads([threading.Thread(target=concurrent) for _ in range(10)])
    assert served_api.max_in_flight() > 1  # the handlers really ran at once
    for _ in range(10):
        send()
    assert [a.status for a in answers] == [200] * 20, answers
    assert sorted(a.json()["replayed"] for a in answers) == [False] + [True] * 19
    costs = {a.json()["cost"] for a in answers}
    (cost,) = costs
    assert cost == Decimal("0.0035")  # 1000 x 2.5e-6 + 100 x 1e-5
    assert server_store.get("race", "idem").current_cost == cost
