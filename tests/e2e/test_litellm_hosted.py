"""The real, pinned litellm.BudgetManager in hosted mode, against `make dev`'s server.

litellm's create_budget and update_cost also save from a background thread
(`_save_data_thread`), so the tests wait until the stored data shows what they expect before
asserting on it; a save that lands late must never lower anything either way.
"""

import threading
import uuid

import litellm
import pytest
import requests
from conftest import wait_until
from litellm import BudgetManager

from localdev.ready_time import ServerProcess

DURATIONS = {"daily": 1, "weekly": 7, "monthly": 28, "yearly": 365, None: None}
MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def url():
    proc = ServerProcess()
    try:
        proc.wait_ready()
        yield proc.url
    finally:
        proc.close()


def stored(url: str, project: str) -> dict:
    response = requests.post(url + "/get_budget", json={"project_name": project}, timeout=10)
    response.raise_for_status()
    body = response.json()
    return body["data"] if body["status"] == "success" else {}


def spend(manager: BudgetManager, user: str, n: int = 1) -> None:
    for i in range(n):
        manager.update_cost(
            user=user,
            model=MODEL,
            input_text=f"Summarise the budget report number {i} in one line, please.",
            output_text="Spend is within budget for every user this month." * (i + 1),
        )


def test_each_duration_update_cost_save_and_a_second_client_sees_it(url):
    project = f"hosted-{uuid.uuid4().hex[:8]}"
    first = BudgetManager(project_name=project, client_type="hosted", api_base=url)
    assert first.get_users() == []  # an unknown project loads as empty
    for duration in DURATIONS:
        first.create_budget(total_budget=10.0, user=f"user-{duration}", duration=duration)
    for duration in DURATIONS:
        spend(first, f"user-{duration}", n=2)
    reply = first.save_data()
    assert reply["status"] == "success"

    expected = {user: entry["current_cost"] for user, entry in first.user_dict.items()}
    assert all(cost > 0 for cost in expected.values())
    # Wait for the background saves too: every user stored with exactly the client's spend.
    data = wait_until(
        lambda: (
            (d := stored(url, project))
            and all(d.get(u, {}).get("current_cost") == c for u, c in expected.items())
            and d
        )
    )

    second = BudgetManager(project_name=project, client_type="hosted", api_base=url)
    assert sorted(second.get_users()) == sorted(first.get_users())
    for duration, days in DURATIONS.items():
        user = f"user-{duration}"
        mine, theirs = first.user_dict[user], second.user_dict[user]
        assert theirs["total_budget"] == 10.0
        assert second.get_current_cost(user) == first.get_current_cost(user)
        assert second.get_model_cost(user) == first.get_model_cost(user) == {MODEL: mine["current_cost"]}
        assert theirs.get("duration") == days
        if days is not None:
            assert theirs["last_updated_at"] == pytest.approx(mine["last_updated_at"])
    assert data[f"user-{None}"].get("duration") is None

    # The second client keeps spending from where the first left off.
    spend(second, "user-daily")
    second.save_data()
    assert second.get_current_cost("user-daily") > first.get_current_cost("user-daily")
    wait_until(
        lambda: stored(url, project)["user-daily"]["current_cost"] == second.get_current_cost("user-daily")
    )


def test_interleaved_clients_never_lower_a_users_cost(url):
    project = f"interleaved-{uuid.uuid4().hex[:8]}"
    seed = BudgetManager(project_name=project, client_type="hosted", api_base=url)
    seed.create_budget(total_budget=50.0, user="alice", duration="monthly")
    seed.save_data()
    wait_until(lambda: "alice" in stored(url, project))

    a = BudgetManager(project_name=project, client_type="hosted", api_base=url)
    b = BudgetManager(project_name=project, client_type="hosted", api_base=url)
    observed = []

    def observe() -> float:
        cost = stored(url, project)["alice"].get("current_cost", 0)
        observed.append(cost)
        return cost

    spend(a, "alice", n=3)
    a.save_data()
    assert observe() >= a.get_current_cost("alice")
    spend(b, "alice", n=1)  # b never saw a's spend: its total is lower
    assert b.get_current_cost("alice") < a.get_current_cost("alice")
    b.save_data()
    assert observe() >= a.get_current_cost("alice")  # the stale save lowered nothing
    spend(a, "alice", n=1)
    spend(b, "alice", n=1)
    b.save_data()
    a.save_data()
    # each client loaded 0 and sent only what it added: both clients' spend, each once
    both = a.get_current_cost("alice") + b.get_current_cost("alice")
    wait_until(lambda: observe() == pytest.approx(both, rel=1e-12))
    assert observed == sorted(observed)
    model_cost = stored(url, project)["alice"]["model_cost"][MODEL]
    assert model_cost == pytest.approx(a.get_model_cost("alice")[MODEL] + b.get_model_cost("alice")[MODEL])


def test_concurrent_saves_from_two_clients_count_both_clients_spend(url):
    project = f"racing-{uuid.uuid4().hex[:8]}"
    users = [f"u{i}" for i in range(5)]
    a = BudgetManager(project_name=project, client_type="hosted", api_base=url)
    for user in users:
        a.create_budget(total_budget=5.0, user=user, duration="weekly")
    a.save_data()
    wait_until(lambda: set(users) <= set(stored(url, project)))
    b = BudgetManager(project_name=project, client_type="hosted", api_base=url)
    for user in users:
        spend(a, user, n=2)
        spend(b, user, n=1)
    start = threading.Barrier(2)
    errors = []

    def save(manager):
        start.wait()
        for _ in range(5):
            try:
                assert manager.save_data()["status"] == "success"
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=save, args=(m,)) for m in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # both loaded 0 for every user: each user's spend is what both clients added, each once
    expected = {u: a.get_current_cost(u) + b.get_current_cost(u) for u in users}
    wait_until(
        lambda: all(
            stored(url, project)[u]["current_cost"] == pytest.approx(c, rel=1e-12)
            for u, c in expected.items()
        )
    )


def test_litellm_uses_the_local_cost_map():
    # The conftest sets LITELLM_LOCAL_MODEL_COST_MAP so litellm never fetches prices online.
    assert MODEL in litellm.model_cost
