"""A project cap under concurrency, through the local HTTP server: 50 users, 8 threads
holding and settling against the project's cap. The admitted spend never exceeds the cap, and the
project's spend is the sum of its users' spend."""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests

from localdev.ready_time import ServerProcess

USERS, THREADS = 50, 8
CAP = Decimal("5")


@pytest.fixture(scope="module")
def local():
    proc = ServerProcess()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.close()


def test_50_users_8_threads_never_spend_past_the_project_cap(local):
    base = f"{local.url}/projects/cap-{uuid.uuid4().hex[:8]}"
    assert requests.put(f"{base}/budget", json={"total_budget": float(CAP)}, timeout=30).status_code == 201
    for i in range(USERS):
        assert requests.put(f"{base}/users/u{i:02d}", json={"total_budget": 1}, timeout=30).status_code == 201
    assert requests.post(f"{local.url}/_local/stats/reset", timeout=30).status_code == 200
    barrier = threading.Barrier(THREADS)
    admitted: list[Decimal] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        barrier.wait()
        refusals = 0
        while refusals < 6:
            user = f"u{rng.randrange(USERS):02d}"
            amount = Decimal(rng.choice(["0.05", "0.1", "0.2", "0.3"]))
            hold = session.post(f"{base}/users/{user}/holds", json={"amount": float(amount)}, timeout=60)
            if hold.status_code == 402:
                refusals += 1
                continue
            assert hold.status_code == 201, hold.text
            cost = amount * Decimal(rng.choice(["0.5", "1"]))  # the call cost up to its hold
            settled = session.post(
                f"{base}/users/{user}/holds/{hold.json()['hold_id']}/settle",
                json={"model": "m", "cost": float(cost)},
                timeout=60,
            )
            assert settled.status_code == 200, settled.text
            with lock:
                admitted.append(cost)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(worker, range(THREADS)))
    # The server ran them concurrently, each in a container of its own (its own count).
    assert requests.get(f"{local.url}/_local/stats", timeout=30).json()["max_in_flight"] > 1
    project = requests.get(f"{base}/budget", timeout=30).json()
    users = requests.get(f"{base}/users", params={"limit": 100}, timeout=30).json()["users"]
    spent = sum(admitted, Decimal(0))
    assert spent <= CAP
    assert Decimal(str(project["current_cost"])) == spent
    assert sum(Decimal(str(u["current_cost"])) for u in users) == spent
    assert project["held"] == 0 and project["users"] == USERS
    assert sum(Decimal(str(u["held"])) for u in users) == 0
