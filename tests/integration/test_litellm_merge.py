"""The set_budget merge with the real litellm client: the three ways a stock hosted client lost
spend or a rule, each replayed on a controlled clock (handlers in process, tests/litellm_harness)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from litellm_harness import client, litellm_in_process, run_job, spend

from budget_service.store.history import HistoryStore

USER = "/projects/{project}/users/{user}"


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def record(api, project: str, user: str) -> dict:
    r = api.call("GET", USER, {"project": project, "user": user})
    assert r.status == 200, r
    return r.json()


def closed_spend(store, project: str, user: str) -> Decimal:
    items, _ = HistoryStore(store).periods_page(project, "USER", user, limit=100)
    return sum((item["spend"] for item in items), Decimal(0))


def _exact(value) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def near(a, b) -> bool:
    """Equal but for litellm's float sums."""
    return abs(_exact(a) - _exact(b)) < Decimal("1e-12")


@pytest.mark.parametrize("timezone", [None, "America/New_York"])
def test_the_documented_hosted_pattern_keeps_spend_after_the_scheduled_reset(api, store, timezone):
    """A long-lived client that never resets itself; the job resets the daily budget just after
    midnight; the client goes on spending and saving: each day keeps what was spent in it."""
    with litellm_in_process(api, at("2027-03-10T15:00:00Z")) as (clock, http):
        body = {"total_budget": 5, "duration": "daily", "timezone": timezone}
        assert api.call("PUT", USER, {"project": "doc", "user": "ann"}, body=body).status == 201
        manager = client("doc")
        day1 = spend(manager, "ann", n=1) + spend(manager, "ann", n=2)
        midnight = record(api, "doc", "ann")["reset_at"]
        clock.now = at(midnight) + 30  # the job runs just after midnight
        assert run_job(clock, store).reset == 1
        clock.now += 60
        day2 = spend(manager, "ann", n=3)
        reply = manager.save_data()
        assert "ann" not in reply["stale_spend_ignored"]
        clock.now += 60
        day2 += spend(manager, "ann", n=4)
        assert near(record(api, "doc", "ann")["current_cost"], day2)
        assert near(closed_spend(store, "doc", "ann"), day1)
        # the next midnight: the same again
        clock.now = at(record(api, "doc", "ann")["reset_at"]) + 30
        run_job(clock, store)
        clock.now += 10
        day3 = spend(manager, "ann", n=5)
        assert near(record(api, "doc", "ann")["current_cost"], day3)
        assert near(closed_spend(store, "doc", "ann"), day1 + day2)


def test_a_manual_reset_then_a_client_reset_keeps_the_calendar_rule(api, store):
    """After POST .../reset on a monthly Europe/Paris budget, a client is served the days left as
    `duration`; its own reset and save echo that number back, which must not become a rule."""
    with litellm_in_process(api, at("2027-01-10T12:00:00Z")) as (clock, http):
        body = {"total_budget": 20, "duration": "monthly", "timezone": "Europe/Paris"}
        assert api.call("PUT", USER, {"project": "paris", "user": "bob"}, body=body).status == 201
        clock.now = at("2027-01-15T11:00:00Z")
        assert api.call("POST", USER + "/reset", {"project": "paris", "user": "bob"}).status == 200
        manager = client("paris")
        assert manager.user_dict["bob"]["duration"] == pytest.approx(16.5)
        clock.now = at("2027-02-01T08:00:00Z")
        manager.update_budget_all_users()  # its period ended: it resets and saves
        cost = spend(manager, "bob")
        stored = record(api, "paris", "bob")
        assert (stored["duration"], stored["timezone"]) == ("monthly", "Europe/Paris")
        assert (stored["period_start"], stored["reset_at"]) == (
            "2027-01-31T23:00:00Z",
            "2027-02-28T23:00:00Z",
        )
        assert near(stored["current_cost"], cost)


def test_a_user_new_to_the_server_whose_period_ended_keeps_its_spend(api, store):
    """litellm's create_budget takes an import-time created_at: the entry's period may have ended
    by the time it first reaches the server. Its spend is kept, said so, and in the reports."""
    with litellm_in_process(api, at("2027-05-03T09:00:00Z")) as (clock, http):
        manager = client("imported", autosave=False)
        manager.create_budget(
            total_budget=3, user="cy", duration="daily", created_at=at("2027-05-01T08:00:00Z")
        )
        cost = spend(manager, "cy") + spend(manager, "cy", n=1)
        reply = manager.save_data()
        assert reply["written"] == ["cy"]
        assert reply["uncertain_spend_kept"] == ["cy"]
        stored = record(api, "imported", "cy")
        assert near(stored["current_cost"], cost)
        assert stored["duration"] == "rolling:1d"
        periods = api.call("GET", USER + "/periods", {"project": "imported", "user": "cy"})
        if periods.status == 200:  # the current period leads the user's periods
            assert near(periods.json()["periods"][0]["spend"], cost)
        # a later save of the same client adds only what it added since
        extra = spend(manager, "cy", n=2)
        manager.save_data()
        assert near(record(api, "imported", "cy")["current_cost"], cost + extra)


def test_concurrent_saves_of_one_copy_count_its_spend_once(api, store):
    """litellm saves from a thread per change: the same copy's saves race. Each user's write is
    conditional on both the budget and the copy's record, so a save counts against what the
    other one counted, never against what both read."""
    import threading

    from conftest import run_threads

    with litellm_in_process(api, at("2027-06-01T10:00:00Z")) as (clock, http):
        body = {"total_budget": 5, "duration": "monthly"}
        assert api.call("PUT", USER, {"project": "race", "user": "di"}, body=body).status == 201
        manager = client("race", autosave=False)
        added = spend(manager, "di") + spend(manager, "di", n=1)
        start = threading.Barrier(4)

        def save() -> None:
            start.wait()
            assert manager.save_data()["status"] == "success"

        run_threads([threading.Thread(target=save) for _ in range(4)])
        assert near(record(api, "race", "di")["current_cost"], added)
