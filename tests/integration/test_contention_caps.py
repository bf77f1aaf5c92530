"""Caps under DynamoDB's real concurrency: many containers at once, against the contention model
(transactions keep their items in flight for a window; conflicting requests are refused as
DynamoDB refuses them). Each test asserts that its requests overlapped (the Api's own count of
calls in flight) and that the model did refuse some (so the retries were exercised), then that
no answer was a 409 or a 5xx, spend is exact to the last digit and nothing is left held."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from conftest import IN_PROCESS_CONTENTION

from budget_service.store import base as store_module
from budget_service.store.levels import PROJECT_SK, get_level, team_sk

pytestmark = pytest.mark.skipif(IN_PROCESS_CONTENTION is None, reason="LOCAL_DYNAMODB_CONFLICTS=0")

USER = "/projects/{project}/users/{user}"
HOLDS = "/projects/{project}/users/{user}/holds"
SETTLE = "/projects/{project}/users/{user}/holds/{hold_id}/settle"
PROJECT = "/projects/{project}/budget"
TEAM = "/projects/{project}/teams/{team}"
RESET = "/projects/{project}/users/{user}/reset"


@pytest.fixture
def contention():
    """The in-process model, counters at zero, a 10 ms window; restored afterwards."""
    model = IN_PROCESS_CONTENTION
    before = (model.window_s, model.partition_wcu)
    model.configure(window_s=0.010)
    model.reset_stats()
    yield model
    model.configure(*before)


def _hold_and_settle(api, project: str, user: str, amount: float, actual: float) -> tuple[int, int | None]:
    """One hold and its settle; the two statuses (None: no settle, the hold was refused)."""
    who = {"project": project, "user": user}
    held = api.call("POST", HOLDS, who, body={"amount": amount})
    if held.status != 201:
        return held.status, None
    settled = api.call(
        "POST", SETTLE, {**who, "hold_id": held.json()["hold_id"]}, body={"model": "m", "cost": actual}
    )
    return held.status, settled.status


def _levels(aws, project: str, team: str) -> tuple[dict, dict]:
    store = store_module.BudgetStore("budgets-test", client=aws)
    return get_level(store, project, PROJECT_SK), get_level(store, project, team_sk(team))


def test_64_containers_hold_and_settle_for_100_users_under_project_and_team_caps(api, aws, contention):
    project, team = "busy", "research"
    assert api.call("PUT", PROJECT, {"project": project}, body={"total_budget": 1000}).status in (200, 201)
    assert api.call("PUT", TEAM, {"project": project, "team": team}, body={"total_budget": 900}).status in (
        200,
        201,
    )
    users = [f"u{i}" for i in range(100)]
    for user in users:
        body = {"total_budget": 10, "team": team}
        assert api.call("PUT", USER, {"project": project, "user": user}, body=body).status == 201
    contention.reset_stats()
    rounds = 3
    start = threading.Barrier(64)

    def worker(w: int) -> list[tuple[int, int | None]]:
        start.wait()  # start together: the requests overlap
        return [
            _hold_and_settle(api, project, users[(w * rounds + r) % 100], 0.05, 0.013) for r in range(rounds)
        ]

    with ThreadPoolExecutor(64) as pool:
        statuses = [s for result in pool.map(worker, range(64)) for s in result]
    assert Counter(statuses) == Counter({(201, 200): 64 * rounds})  # no 409, no 5xx, no refusal
    assert api.max_in_flight() > 8
    assert contention.stats()["conflicts"] > 0  # the model refused some: the retries absorbed them
    spent = Decimal("0.013") * 64 * rounds
    project_level, team_level = _levels(aws, project, team)
    for level in (project_level, team_level):
        assert (level["current_cost"], level["held"]) == (spent, 0)
        assert level["available"] == level["total_budget"] - spent
    store = store_module.BudgetStore("budgets-test", client=aws)
    budgets = [store.get(project, user) for user in users]
    assert sum(b.current_cost for b in budgets) == spent
    assert all(b.held == 0 for b in budgets)


def test_a_tight_project_cap_spends_exactly_its_amount(api, aws, contention):
    """$1 on the project; 32 callers hold 0.01 and settle 0.01 until refused: exactly $1.00 is
    spent, nothing past it and nothing left unusable."""
    project, team = "tight", "t"
    api.call("PUT", PROJECT, {"project": project}, body={"total_budget": 1})
    api.call("PUT", TEAM, {"project": project, "team": team}, body={"total_budget": 100})
    for i in range(32):
        api.call("PUT", USER, {"project": project, "user": f"c{i}"}, body={"total_budget": 100, "team": team})
    contention.reset_stats()
    start = threading.Barrier(32)

    def caller(i: int) -> Counter:
        start.wait()
        seen: Counter = Counter()
        while True:
            held, settled = _hold_and_settle(api, project, f"c{i}", 0.01, 0.01)
            seen[(held, settled)] += 1
            if held != 201:
                return seen

    with ThreadPoolExecutor(32) as pool:
        seen = sum(pool.map(caller, range(32)), Counter())
    assert seen == Counter({(201, 200): 100, (402, None): 32})
    assert api.max_in_flight() > 4
    project_level, team_level = _levels(aws, project, team)
    assert (project_level["current_cost"], project_level["held"], project_level["available"]) == (1, 0, 0)
    assert team_level["current_cost"] == 1


def test_16_containers_on_one_user(api, aws, contention):
    """An agent running 16 calls at once on one user: each waits its turn on the user's item,
    none is refused or fails."""
    project = "agent"
    api.call("PUT", PROJECT, {"project": project}, body={"total_budget": 100})
    api.call("PUT", USER, {"project": project, "user": "bot"}, body={"total_budget": 50})
    # A longer window: on a 2-core machine a handler's own work takes longer than 10 ms, so a
    # wider window is what makes 16 callers of one item meet each other as they would on AWS.
    contention.configure(window_s=0.025)
    contention.reset_stats()
    start = threading.Barrier(16)

    def worker(_: int) -> list[tuple[int, int | None]]:
        start.wait()
        return [_hold_and_settle(api, project, "bot", 0.2, 0.11) for _ in range(2)]

    with ThreadPoolExecutor(16) as pool:
        statuses = [s for result in pool.map(worker, range(16)) for s in result]
    assert Counter(statuses) == Counter({(201, 200): 32})
    assert api.max_in_flight() > 4
    assert contention.stats()["conflicts"] > 0
    store = store_module.BudgetStore("budgets-test", client=aws)
    bot = store.get(project, "bot")
    assert (bot.current_cost, bot.held) == (Decimal("0.11") * 32, 0)


def _wait_for(predicate, timeout: float = 30.0) -> None:
    """Wait until `predicate()` holds (a condition, checked every millisecond), or fail."""
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not predicate():
            assert not done.wait(0.001), "the condition never held"
    finally:
        deadline.cancel()


@pytest.mark.parametrize("write", ["put", "reset", "set_budget"])
def test_single_item_writes_that_meet_a_transaction_in_flight_are_retried(api, aws, contention, write):
    """A PUT, a reset or a set_budget on a user whose item a charge's transaction has in flight:
    DynamoDB refuses it (TransactionConflictException, or a cancelled transaction for the writes
    that record history); the service retries and answers without a 5xx."""
    project = f"single-{write}"
    who = {"project": project, "user": "ann"}
    api.call("PUT", USER, who, body={"total_budget": 1000})
    contention.configure(window_s=0.3)  # the charge keeps the user's item in flight for 300 ms
    contention.reset_stats()

    def single() -> int:
        if write == "put":
            return api.call("PUT", USER, who, body={"total_budget": 900}).status
        if write == "reset":
            return api.call("POST", RESET, who).status
        user_dict = {"ann": {"total_budget": 900, "current_cost": 0}}
        return api.call("POST", "/set_budget", body={"project_name": project, "user_dict": user_dict}).status

    with ThreadPoolExecutor(1) as pool:
        charge = pool.submit(api.call, "POST", USER + "/cost", who, body={"model": "m", "cost": 0.001})
        _wait_for(lambda: contention.stats()["in_flight_items"] > 0)  # the charge is in flight now
        status = single()
        assert charge.result().status == 200
    assert api.max_in_flight() > 1
    assert contention.stats()["conflicts"] >= 1  # the single write met the charge in flight
    assert status in (200, 201)
    ann = store_module.BudgetStore("budgets-test", client=aws).get(project, "ann")
    if write == "reset":
        assert (ann.current_cost, ann.total_budget) == (0, 1000)  # the reset came after the charge
    else:
        assert (ann.total_budget, ann.current_cost) == (900, Decimal("0.001"))  # the charge kept


def test_a_large_charge_on_a_roomy_level_leaves_it_in_normal_mode(api, aws, contention):
    """A hold larger than a slice's share (1000 / 8) but far from the cap is set aside on the
    level's own item; the level stays dealt in shares, not serialized on one item."""
    project = "roomy"
    api.call("PUT", PROJECT, {"project": project}, body={"total_budget": 1000})
    api.call("PUT", USER, {"project": project, "user": "big"}, body={"total_budget": 1000})
    held = api.call("POST", HOLDS, {"project": project, "user": "big"}, body={"amount": 200})
    assert held.status == 201, held
    items = [i for i in map(store_module.plain_item, aws.scan(TableName="budgets-test")["Items"])]
    project_items = [
        i for i in items if i["pk"] == f"PROJECT#{project}" and "available" in i and i["sk"] != "USER#big"
    ]
    assert len(project_items) > 1 and not any(i.get("tight") for i in project_items)
    assert all(i["available"] >= 0 for i in project_items)
    assert sum(i["available"] for i in project_items) == 800


def test_conflict_retries_end_with_the_requests_retry_time():
    """However many retries are left, a request past its retry time answers 503 (Contention)."""
    import time as _time

    from budget_service.core.errors import Contention
    from budget_service.store.base import REQUEST_RETRY_SECONDS, conflict_backoff, start_request

    start_request(now=_time.monotonic() - REQUEST_RETRY_SECONDS - 1)
    with pytest.raises(Contention):
        conflict_backoff(0, "budget p/u")
    start_request()
    conflict_backoff(0, "budget p/u")  # within its time: sleeps a few milliseconds at most
