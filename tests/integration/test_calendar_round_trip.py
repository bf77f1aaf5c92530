"""Calendar budgets through litellm's client round trip, replayed through the handlers on a
controlled clock (budget_service.core.clock): a January client keeps the monthly rule in February,
rolling labels and small costs are plain, stale clients on different models add up, and a reset
zeroes spend within the calendar period."""

import datetime as dt
import json
from decimal import Decimal

import pytest

from budget_service.core import clock

USER = "/projects/{project}/users/{user}"


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def now():
    """Set the service's clock: now(iso)."""
    current = {"t": at("2027-01-20T12:00:00Z")}
    clock.use(lambda: current["t"])

    def move(text: str) -> float:
        current["t"] = at(text)
        return current["t"]

    yield move
    clock.use(None)


def as_sent(entry: dict) -> dict:
    """An entry as litellm holds it (JSON numbers as floats)."""
    return json.loads(json.dumps(entry, default=float))


def record(api, project="P", user="bob"):
    r = api.call("GET", USER, {"project": project, "user": user})
    assert r.status == 200, r
    return r.json()


def test_finding_1_a_january_client_keeps_the_monthly_rule_in_february(api, now):
    r = api.call(
        "PUT", USER, {"project": "P", "user": "bob"}, body='{"total_budget": 20, "duration": "monthly"}'
    )
    assert r.status == 201, r
    loaded = as_sent(api.get_budget("P").json()["data"]["bob"])
    assert loaded["duration"] == 31 and loaded["last_updated_at"] == int(at("2027-01-01T00:00:00Z"))
    # 2027-02-01T00:00:30Z: litellm's update_budget_all_users() fires (31 days since 1 January),
    # then update_cost and save_data.
    t = now("2027-02-01T00:00:30Z")
    client = dict(loaded, current_cost=0.5, model_cost={"gpt-4o": 0.5}, last_updated_at=t)
    reply = api.set_budget("P", {"bob": client}).json()
    assert reply["written"] == ["bob"] and not reply["uncertain_spend_kept"]
    feb = record(api)
    assert (feb["duration"], feb["timezone"]) == ("monthly", None)
    assert (feb["period_start"], feb["reset_at"]) == ("2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z")
    assert feb["current_cost"] == 0.5
    now("2027-03-01T00:00:01Z")
    march = record(api)
    assert march["current_cost"] == 0 and march["reset_at"] == "2027-04-01T00:00:00Z"
    # The same client, before its own next reset (4 March), sends 0.75: the 0.5 counted in
    # February stays there; the 0.25 it added since is counted in March, and since it may have
    # been spent before 1 March the answer says so.
    client["current_cost"], client["model_cost"] = 0.75, {"gpt-4o": 0.75}
    reply = api.set_budget("P", {"bob": client}).json()
    assert reply["uncertain_spend_kept"] == ["bob"]
    assert record(api)["current_cost"] == 0.25 and record(api)["duration"] == "monthly"


@pytest.mark.parametrize("days", [30, 10, 90, 180, 0.5, 1.25])
def test_finding_2_rolling_labels_are_plain(api, now, days):
    t = at("2027-01-20T12:00:00Z")
    entry = {"total_budget": 1, "duration": days, "created_at": t, "last_updated_at": t}
    assert api.set_budget("L", {"u": entry}).status == 200
    body = api.call("GET", USER, {"project": "L", "user": "u"})
    assert body.json()["duration"] == f"rolling:{Decimal(str(days)).normalize():f}d"
    assert "E" not in body.text and "e-" not in body.text


def test_finding_2_small_costs_are_plain_in_json(api, now):
    api.call("PUT", USER, {"project": "S", "user": "u"}, body='{"total_budget": 1}')
    r = api.call(
        "POST", USER + "/cost", {"project": "S", "user": "u"}, body='{"model": "gpt-4o", "cost": 0.0000015}'
    )
    assert r.status == 200 and '"cost":0.0000015' in r.text and "e-" not in r.text.lower()


def test_finding_3_two_stale_clients_on_different_models_add_up(api, now):
    t = at("2027-01-20T00:00:00Z")
    base = {
        "total_budget": 10,
        "current_cost": 2,
        "model_cost": {"a": 1, "b": 1},
        "duration": 7,
        "created_at": t,
        "last_updated_at": t,
    }
    api.set_budget("T", {"u": base})
    # two clients load the same entry; one adds 1 to a, the other 1 to b
    first = as_sent(api.get_budget("T").json()["data"]["u"])
    second = as_sent(api.get_budget("T").json()["data"]["u"])
    api.set_budget("T", {"u": dict(first, current_cost=3, model_cost={"a": 2, "b": 1})})
    api.set_budget("T", {"u": dict(second, current_cost=3, model_cost={"a": 1, "b": 2})})
    stored = record(api, "T", "u")
    assert stored["model_cost"] == {"a": 2, "b": 2} and stored["current_cost"] == 4


def test_finding_4_reset_on_a_calendar_budget_zeroes_spend_within_the_calendar_period(api, now):
    api.call(
        "PUT",
        USER,
        {"project": "R", "user": "u"},
        body='{"total_budget": 20, "duration": "monthly", "timezone": "Europe/Paris"}',
    )
    api.call("POST", USER + "/cost", {"project": "R", "user": "u"}, body='{"model": "m", "cost": 5}')
    before_reset = as_sent(api.get_budget("R").json()["data"]["u"])
    now("2027-01-21T08:00:00Z")
    r = api.call("POST", USER + "/reset", {"project": "R", "user": "u"})
    assert r.status == 200, r
    body = r.json()
    assert body["current_cost"] == 0 and body["model_cost"] == {}
    assert (body["duration"], body["timezone"]) == ("monthly", "Europe/Paris")
    assert body["period_start"] == "2027-01-21T08:00:00Z"  # the counted spend starts now
    assert body["reset_at"] == "2027-01-31T23:00:00Z"  # still the calendar boundary (Paris)
    # litellm sees the days left, so its own reset fires at the same boundary ...
    entry = as_sent(api.get_budget("R").json()["data"]["u"])
    assert entry["last_updated_at"] + entry["duration"] * 86400 == pytest.approx(at("2027-01-31T23:00:00Z"))
    # ... and a client that loaded before the reset cannot bring the zeroed spend back: only
    # the 1 it added counts (it may predate the reset, which the answer says).
    reply = api.set_budget("R", {"u": dict(before_reset, current_cost=6, model_cost={"m": 6})}).json()
    assert reply["uncertain_spend_kept"] == ["u"] and not reply["stale_spend_ignored"]
    assert record(api, "R", "u")["current_cost"] == 1 and record(api, "R", "u")["duration"] == "monthly"
    # One that loaded after it adds its spend and keeps the rule (it echoes the days left).
    reply = api.set_budget("R", {"u": dict(entry, current_cost=1, model_cost={"m": 1})}).json()
    assert reply["written"] == ["u"] and not reply["uncertain_spend_kept"]
    after = record(api, "R", "u")
    assert after["current_cost"] == 2 and after["reset_at"] == "2027-01-31T23:00:00Z"
    assert (after["duration"], after["timezone"]) == ("monthly", "Europe/Paris")
    # The next period is the calendar month again.
    now("2027-02-01T00:00:00Z")
    feb = record(api, "R", "u")
    assert (feb["period_start"], feb["reset_at"]) == ("2027-01-31T23:00:00Z", "2027-02-28T23:00:00Z")
