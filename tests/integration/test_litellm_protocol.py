"""The hosted protocol litellm's BudgetManager speaks: /get_budget and /set_budget."""

import time
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def test_unknown_project_is_http_200_with_status_error(api):
    r = api.get_budget("nobody-here")
    assert r.status == 200
    body = r.json()
    assert body["status"] == "error" and "nobody-here" in body["message"]


def litellm_entry(total, cost=None, models=None, duration=None, stamp=None):
    """An entry shaped as BudgetManager builds it (floats; timestamps only with a duration)."""
    entry = {"total_budget": total}
    if duration is not None:
        entry.update(duration=duration, created_at=stamp, last_updated_at=stamp)
    if cost is not None:
        entry["current_cost"] = cost
    if models is not None:
        entry["model_cost"] = models
    return entry


def as_decimals(value):
    """The JSON text of `value` read back with Decimal numbers (what the server parses)."""
    import json

    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)


def served(data: dict, sent: dict) -> dict:
    """`data` with each ``created_at`` checked and dropped: get_budget serves a fresh marker
    there (the creation second plus a fraction), which names the client copy in its saves."""
    out = {}
    for user, entry in data.items():
        if user not in sent:
            continue
        entry = dict(entry)
        marker = entry.pop("created_at")
        if "created_at" in sent[user]:
            assert int(marker) == int(Decimal(repr(sent[user]["created_at"])))
        out[user] = entry
    return out


def sent_form(sent: dict) -> dict:
    return {u: {k: v for k, v in e.items() if k != "created_at"} for u, e in as_decimals(sent).items()}


def test_set_then_get_returns_the_same_entries(api):
    now = time.time()
    sent = {
        "alice": litellm_entry(10.0, 0.00123, {"gpt-4o-mini": 0.00023, "gpt-4o": 0.001}, 28, now - 5),
        "bob": litellm_entry(2.5, 0.30000000000000004, {"gpt-4o": 0.30000000000000004}),
        "carol": litellm_entry(100, 0, {}, 365, now - 86400),
    }
    r = api.set_budget("acme", sent)
    assert r.status == 200 and r.json()["status"] == "success"
    assert sorted(r.json()["written"]) == ["alice", "bob", "carol"]
    got = api.get_budget("acme").json()
    assert got["status"] == "success"
    assert served(got["data"], sent) == sent_form(sent)


money = st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=1e9, allow_nan=False))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    total=money,
    models=st.dictionaries(
        st.sampled_from(["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "o3"]), money, max_size=4
    ),
    duration=st.sampled_from([None, 1, 7, 28, 365]),
    age=st.floats(min_value=0, max_value=0.9),
)
def test_any_litellm_entry_round_trips_as_decimals(api, total, models, duration, age):
    cost = sum(models.values())
    stamp = time.time() - age * 86400 * (duration or 1)
    user = f"u{time.perf_counter_ns()}"
    sent = {user: litellm_entry(total, cost, models, duration, stamp)}
    assert api.set_budget("roundtrip", sent).status == 200
    got = served(api.get_budget("roundtrip").json()["data"], sent)[user]
    expected = sent_form(sent)[user]
    # litellm's current_cost is a float sum, which can fall a last digit short of the exact sum of
    # its own per-model costs; the merge keeps current_cost at least that sum (so a
    # round trip through litellm never loses spend).
    # JSON renders it as a float (what litellm reads), so compare at a float's precision.
    exact = max(expected["current_cost"], sum(expected["model_cost"].values(), Decimal(0)))
    expected["current_cost"] = as_decimals(float(exact))
    assert got == expected


def test_users_missing_from_the_body_stay(api):
    api.set_budget("keep", {"a": litellm_entry(1, 0.5, {"m": 0.5}), "b": litellm_entry(2, 1, {"m": 1})})
    r = api.set_budget("keep", {"b": litellm_entry(3, 1.5, {"m": 1.5})})
    assert r.status == 200 and r.json()["written"] == ["b"]
    sent = {"a": litellm_entry(1), "b": litellm_entry(3)}
    data = served(api.get_budget("keep").json()["data"], sent)
    assert data["a"]["current_cost"] == Decimal("0.5")
    assert data["b"] == as_decimals(litellm_entry(3, 1.5, {"m": 1.5}))


def test_a_stale_client_cannot_lower_spend(api):
    api.set_budget("stale", {"a": litellm_entry(10, 4, {"gpt-4o": 3, "o3": 1})})
    r = api.set_budget("stale", {"a": litellm_entry(10, 2, {"gpt-4o": 2})})
    assert r.json()["unchanged"] == ["a"]
    got = api.get_budget("stale").json()["data"]["a"]
    assert got["current_cost"] == 4 and got["model_cost"] == {"gpt-4o": 3, "o3": 1}


def test_a_copy_loaded_before_the_period_ended_adds_only_what_it_added(api, clock):
    """A client loaded the day's entry; the day ended (the server closed it) before it saved:
    only its addition counts, in the current day, and the answer says it may be the last day's."""
    stamp = float(clock.now) - 60
    api.set_budget("periods", {"a": litellm_entry(10, 1, {"m": 1}, 1, stamp)})
    loaded = api.get_budget("periods").json()["data"]["a"]
    clock.now += 86400
    sent = {
        **loaded,
        "current_cost": loaded["current_cost"] + Decimal("0.5"),
        "model_cost": {"m": Decimal("1.5")},
    }
    r = api.set_budget("periods", {"a": as_floats(sent)})
    assert r.status == 200 and r.json()["uncertain_spend_kept"] == ["a"]
    assert api.get_budget("periods").json()["data"]["a"]["current_cost"] == Decimal("0.5")
    r = api.set_budget("periods", {"a": as_floats(sent)})  # the same save again adds nothing
    assert r.json()["unchanged"] == ["a"]
    assert api.get_budget("periods").json()["data"]["a"]["current_cost"] == Decimal("0.5")


def as_floats(entry: dict) -> dict:
    """An entry as litellm sends it back (its JSON numbers read as floats)."""
    import json

    return json.loads(json.dumps(entry, default=float))


def test_a_client_side_reset_counts_what_it_spent_since(api):
    now = time.time()
    stamp = now - 86400 - 30
    # A user new to the server whose entry's day already ended: its spend counts, said so.
    r = api.set_budget("reset", {"a": litellm_entry(10, 6, {"m": 6}, 1, stamp)})
    assert r.json()["uncertain_spend_kept"] == ["a"]
    # The same client's reset_on_duration fired: spend zeroed, last_updated_at = its now.
    reset = dict(litellm_entry(10, 0.25, {"m": 0.25}, 1, stamp), last_updated_at=now - 10)
    r = api.set_budget("reset", {"a": reset})
    assert r.status == 200 and r.json()["written"] == ["a"]
    got = api.get_budget("reset").json()["data"]["a"]
    assert got["current_cost"] == Decimal("6.25")  # the period is the server's: [stamp + 1 day, ...)
    assert got["last_updated_at"] == as_decimals(stamp + 86400)


def test_native_budgets_appear_in_get_budget_in_litellm_shape(api):
    r = api.call(
        "PUT",
        "/projects/{project}/users/{user}",
        {"project": "mixed", "user": "n"},
        body={"total_budget": 5, "duration": "monthly"},
    )
    assert r.status == 201
    record = r.json()
    entry = api.get_budget("mixed").json()["data"]["n"]
    assert set(entry) == {
        "total_budget",
        "current_cost",
        "model_cost",
        "duration",
        "created_at",
        "last_updated_at",
    }
    assert entry["total_budget"] == 5 and entry["current_cost"] == 0 and entry["model_cost"] == {}
    # The client's own reset check (now - last_updated_at >= duration days) fires at our reset_at.
    from datetime import datetime

    reset_at = datetime.fromisoformat(record["reset_at"].replace("Z", "+00:00")).timestamp()
    assert entry["last_updated_at"] + entry["duration"] * 86400 == Decimal(int(reset_at))
    assert entry["duration"] in (28, 29, 30, 31)


def test_ids_with_reserved_characters_work_on_the_native_api(api):
    """API Gateway sends the path percent-encoded; the ids handlers see are the decoded ones."""
    project, user = "team a/b", "user#1 ü"
    r = api.call(
        "PUT",
        "/projects/{project}/users/{user}",
        {"project": project, "user": user},
        body={"total_budget": 3},
    )
    assert r.status == 201, r
    assert (r.json()["project"], r.json()["user"]) == (project, user)
    r = api.call("GET", "/projects/{project}/users/{user}", {"project": project, "user": user})
    assert r.status == 200 and r.json()["user"] == user
    assert user in api.get_budget(project).json()["data"]
