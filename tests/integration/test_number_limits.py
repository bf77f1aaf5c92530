"""Number limits: no input can make a stored sum outgrow a DynamoDB Number (38 significant digits).

Each amount is at most MONEY_MAX (10^12) at 25 decimal places, but sums grow by atomic adds: on
DynamoDB the eleventh cost of 999999999999.9999999999999999999999999 to one budget needs 39
digits, a ValidationException, a 500. The embedded DynamoDB refuses such a number as DynamoDB
does (tests/integration/test_embedded_numbers.py), and these tests drive every write that adds money
through the handlers against it (`served_api`): a budget level's spend and holds stay within
+-SPEND_MAX (core/numbers.py), a write that would pass it is a 422 ``spend_limit_exceeded`` that
writes nothing, and what was accepted before stays exact.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import uuid
from decimal import Context, Decimal

import pytest
import requests
from conftest import TABLE_NAME
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from budget_service.core.numbers import MONEY_MAX, MONEY_QUANTUM, SPEND_MAX, STORED_MAX
from budget_service.store import levels as store_levels
from budget_service.store.levels import Move, over_limit
from localdev.dynamodb import client_for, storable
from localdev.ready_time import ServerProcess

USER = "/projects/{project}/users/{user}"
COST = USER + "/cost"
HOLDS = USER + "/holds"
SETTLE = USER + "/holds/{hold_id}/settle"
RELEASE = USER + "/holds/{hold_id}"
ADJUST = USER + "/adjustments"
RESET = USER + "/reset"
PROJECT = "/projects/{project}/budget"
TEAM = "/projects/{project}/teams/{team}"
REPORT = "/projects/{project}/spend"

NEAR = Decimal("999999999999.9999999999999999999999999")  # the largest amount below MONEY_MAX
# Arithmetic here is exact (Python's default context keeps 28 digits, and must stay the default:
# the handlers run in this thread, and a test must not hide their rounding).
EXACT = Context(prec=80)
FOUR = EXACT.multiply(4, NEAR)  # 3999999999999.9999999999999999999999996: four fit under SPEND_MAX
DAY = Decimal(86400)


def dumps(body) -> str:
    """JSON with Decimals written as exact numbers."""
    return json.dumps(body, default=lambda d: f"@@{d}@@").replace('"@@', "").replace('@@"', "")


def new_project() -> str:
    return f"limits-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def table(dynamodb_server):
    return client_for(dynamodb_server)


def snapshot(table, project: str) -> list[dict]:
    """Every item of the project (its budgets, levels, ledger, holds, periods, audit), as stored."""
    pages = table.get_paginator("query").paginate(
        TableName=TABLE_NAME,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"PROJECT#{project}"}},
        ConsistentRead=True,
    )
    return [item for page in pages for item in page["Items"]]


def stored(table, project: str, sk: str) -> dict:
    key = {"pk": {"S": f"PROJECT#{project}"}, "sk": {"S": sk}}
    return table.get_item(TableName=TABLE_NAME, Key=key, ConsistentRead=True)["Item"]


def spend(table, project: str, sk: str) -> Decimal:
    return Decimal(stored(table, project, sk)["current_cost"]["N"])


def numbers_in(value) -> list[str]:
    """Every Number (its text) in a raw DynamoDB item or attribute value."""
    if isinstance(value, dict):
        if "N" in value and len(value) == 1:
            return [value["N"]]
        return [n for v in value.values() for n in numbers_in(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers_in(v)]
    return []


def refused(response, fields: set[tuple[str, str, str]] | None = None) -> dict:
    """The 422 spend_limit_exceeded error; `fields`, when given, are its (level, name, field)."""
    assert response.status == 422, response
    error = response.json()["error"]
    assert error["code"] == "spend_limit_exceeded", error
    if fields is not None:
        assert {(d["level"], d["name"], d["field"]) for d in error["details"]} == fields, error
    return error


def put_user(api, project: str, user: str, **settings) -> None:
    body = {"total_budget": 10, **settings}
    response = api.call("PUT", USER, {"project": project, "user": user}, body=dumps(body))
    assert response.status in (200, 201), response


def cost(api, project: str, user: str, amount: Decimal, **extra):
    headers = extra.pop("headers", None)
    body = dumps({"model": "m", "cost": amount, **extra})
    return api.call("POST", COST, {"project": project, "user": user}, body=body, headers=headers)


# ---- /cost ---------------------------------------------------------------------------------------


def test_costs_past_the_limit_are_a_422_that_writes_nothing_and_the_sum_stays_exact(served_api, table):
    p = new_project()
    put_user(served_api, p, "u")
    for _ in range(4):
        assert cost(served_api, p, "u", NEAR).status == 200
    before = snapshot(table, p)
    error = refused(
        cost(served_api, p, "u", NEAR), {("user", "u", "current_cost"), ("user", "u", "model_cost[m]")}
    )
    assert error["details"][0]["stored"] == FOUR and error["details"][0]["limit"] == SPEND_MAX
    assert "4000000000000" in error["message"]
    # The same with an Idempotency-Key: no ledger item either, so the key is not used up.
    refused(cost(served_api, p, "u", NEAR, headers={"Idempotency-Key": "k1"}))
    assert snapshot(table, p) == before
    user = stored(table, p, "USER#u")
    assert Decimal(user["current_cost"]["N"]) == FOUR
    assert Decimal(user["model_cost"]["M"]["m"]["N"]) == FOUR
    assert Decimal(user["available"]["N"]) == EXACT.subtract(10, FOUR)
    # Up to the limit exactly, and not one quantum more.
    rest = EXACT.subtract(SPEND_MAX, FOUR)
    assert rest == 4 * MONEY_QUANTUM
    assert cost(served_api, p, "u", rest).status == 200
    assert spend(table, p, "USER#u") == SPEND_MAX
    refused(cost(served_api, p, "u", MONEY_QUANTUM))
    # A reset starts a new period: the key refused before charges now, once.
    assert served_api.call("POST", RESET, {"project": p, "user": "u"}).status == 200
    first = cost(served_api, p, "u", NEAR, headers={"Idempotency-Key": "k1"})
    assert first.status == 200 and not first.json()["replayed"]
    assert spend(table, p, "USER#u") == NEAR


def test_without_the_limit_the_embedded_dynamodb_refuses_the_sum_as_dynamodb_would(
    served_api, table, monkeypatch
):
    # What the limit prevents: with it lifted, the eleventh cost needs 39 digits; DynamoDB's
    # ValidationError cancels the transaction, which the service can only answer with a 500.
    # (Its bounds, 10^20 - amount, round to 38 digits: still far above any sum here.)
    monkeypatch.setattr(store_levels, "SPEND_MAX", Decimal("1e20"))
    p = new_project()
    put_user(served_api, p, "u")
    for _ in range(10):
        assert cost(served_api, p, "u", NEAR).status == 200
    before = snapshot(table, p)
    response = cost(served_api, p, "u", NEAR)
    assert response.status == 500, response
    assert snapshot(table, p) == before
    assert spend(table, p, "USER#u") == EXACT.multiply(
        10, NEAR
    )  # 9999999999999.999999999999999999999999: 38 digits


def test_a_team_and_project_summing_users_refuse_at_their_limit_naming_them(served_api, table):
    p = new_project()
    assert (
        served_api.call("PUT", PROJECT, {"project": p}, body=dumps({"total_budget": MONEY_MAX})).status == 201
    )
    assert (
        served_api.call("PUT", TEAM, {"project": p, "team": "t"}, body=dumps({"total_budget": 1})).status
        == 201
    )
    for user in ("u1", "u2", "u3", "u4", "u5"):
        put_user(served_api, p, user, team="t")
    for user in ("u1", "u2", "u3", "u4"):
        assert cost(served_api, p, user, NEAR).status == 200  # each user far below the limit
    before = snapshot(table, p)
    error = refused(
        cost(served_api, p, "u5", NEAR),
        {
            ("team", "t", "current_cost"),
            ("team", "t", "model_cost[m]"),
            ("project", p, "current_cost"),
            ("project", p, "model_cost[m]"),
        },
    )
    assert "team 't'" in error["message"] and f"project {p!r}" in error["message"]
    # Also with if_within_budget, although every level is over budget too: the limit is the
    # refusal a larger budget would not cure, so it is the one answered (422, not 402).
    refused(cost(served_api, p, "u5", NEAR, if_within_budget=True))
    assert snapshot(table, p) == before
    assert [spend(table, p, sk) for sk in ("USER#u5", "TEAM#t", "PROJECT")] == [0, FOUR, FOUR]
    # Over budget but within the limit is still a 402, and an unknown user still a 404.
    to_the_limit = EXACT.subtract(SPEND_MAX, FOUR)
    over_budget = cost(served_api, p, "u5", to_the_limit, if_within_budget=True)
    assert (over_budget.status, over_budget.json()["error"]["code"]) == (402, "budget_exceeded")
    missing = cost(served_api, p, "nobody", NEAR)
    assert (missing.status, missing.json()["error"]["code"]) == (404, "budget_not_found")


# ---- holds ---------------------------------------------------------------------------------------


def test_settles_charging_more_than_held_stop_at_the_limit_and_the_hold_can_still_be_released(
    served_api, table
):
    p = new_project()
    put_user(served_api, p, "u")
    holds = []
    for _ in range(5):
        response = served_api.call("POST", HOLDS, {"project": p, "user": "u"}, body=dumps({"amount": 1}))
        assert response.status == 201, response
        holds.append(response.json()["hold_id"])
    for hold_id in holds[:4]:  # a settle charges the actual cost in full, far above its hold
        settle = served_api.call(
            "POST",
            SETTLE,
            {"project": p, "user": "u", "hold_id": hold_id},
            body=dumps({"model": "m", "cost": NEAR}),
        )
        assert settle.status == 200, settle
    before = snapshot(table, p)
    last = {"project": p, "user": "u", "hold_id": holds[4]}
    refused(served_api.call("POST", SETTLE, last, body=dumps({"model": "m", "cost": NEAR})), None)
    assert snapshot(table, p) == before  # the hold is still held, nothing charged
    user = stored(table, p, "USER#u")
    assert (Decimal(user["current_cost"]["N"]), Decimal(user["held"]["N"])) == (FOUR, 1)
    released = served_api.call("DELETE", RELEASE, last)
    assert released.status == 200 and released.json()["released"] is True
    assert Decimal(stored(table, p, "USER#u")["held"]["N"]) == 0


# ---- adjustments ----------------------------------------------------------------------------------


def adjust(api, project: str, user: str, amount: Decimal, key: str, **extra):
    body = dumps({"amount": amount, "reason": "correction", **extra})
    return api.call(
        "POST", ADJUST, {"project": project, "user": user}, body=body, headers={"Idempotency-Key": key}
    )


def test_debits_stop_at_the_limit_and_a_credit_makes_room(served_api, table):
    p = new_project()
    put_user(served_api, p, "u")
    for n in range(4):
        assert adjust(served_api, p, "u", NEAR, f"debit-{n}").status == 201
    before = snapshot(table, p)
    refused(adjust(served_api, p, "u", NEAR, "debit-4"), {("user", "u", "current_cost")})
    assert snapshot(table, p) == before  # no ledger item, no audit entry
    assert adjust(served_api, p, "u", NEAR.copy_negate(), "credit-0").status == 201
    assert adjust(served_api, p, "u", NEAR, "debit-4").status == 201  # the refused key is still free
    assert spend(table, p, "USER#u") == FOUR


def test_credits_cannot_take_a_team_below_minus_the_limit(served_api, table):
    # A team counts what its users spend while in it; a credit of spend made before a user
    # joined takes the team below zero. Round trips of that kind stop at -SPEND_MAX.
    p = new_project()
    assert (
        served_api.call("PUT", TEAM, {"project": p, "team": "t"}, body=dumps({"total_budget": 1})).status
        == 201
    )
    put_user(served_api, p, "u")
    keys = (f"k{n}" for n in itertools.count())
    for round_ in range(2):
        put_user(served_api, p, "u")  # out of the team: spend that the team does not see
        for _ in range(2 if round_ else 4):
            assert cost(served_api, p, "u", NEAR).status == 200
        put_user(served_api, p, "u", team="t")  # in it, credit that spend back
        for _ in range(2 if round_ else 4):
            response = adjust(served_api, p, "u", NEAR.copy_negate(), next(keys), model="m")
            if response.status != 201:
                break
    assert response.status == 422, response
    refused(response, {("team", "t", "current_cost"), ("team", "t", "model_cost[m]")})
    assert response.json()["error"]["details"][0]["limit"] == -SPEND_MAX
    assert spend(table, p, "TEAM#t") == FOUR.copy_negate()
    assert spend(table, p, "USER#u") == EXACT.multiply(2, NEAR)  # the refused credit changed nothing


def test_a_credit_larger_than_a_37_digit_spend_clamps_to_it_exactly(served_api, table):
    # Python's default context keeps 28 digits: -spend was rounded to -10^12, whose floor the
    # spend never reached, and the credit ended in a 409.
    p = new_project()
    put_user(served_api, p, "u")
    assert cost(served_api, p, "u", NEAR).status == 200
    response = adjust(served_api, p, "u", MONEY_MAX.copy_negate(), "credit", model="m")
    assert response.status == 201, response
    assert response.json()["clamped"] is True
    user = stored(table, p, "USER#u")
    assert Decimal(user["current_cost"]["N"]) == 0 and Decimal(user["model_cost"]["M"]["m"]["N"]) == 0
    assert Decimal(user["available"]["N"]) == 10


def test_releasing_a_hold_of_29_significant_digits_frees_it_exactly(served_api, table):
    p = new_project()
    put_user(served_api, p, "u", total_budget=MONEY_MAX)
    amount = Decimal("1234.1234567890123456789012345")
    hold = served_api.call("POST", HOLDS, {"project": p, "user": "u"}, body=dumps({"amount": amount}))
    assert hold.status == 201, hold
    assert Decimal(stored(table, p, "USER#u")["held"]["N"]) == amount
    hold_id = hold.json()["hold_id"]
    assert served_api.call("DELETE", RELEASE, {"project": p, "user": "u", "hold_id": hold_id}).status == 200
    user = stored(table, p, "USER#u")
    assert (Decimal(user["held"]["N"]), Decimal(user["available"]["N"])) == (0, MONEY_MAX)


# ---- set_budget -----------------------------------------------------------------------------------


def test_set_budget_refuses_a_merge_over_the_limit_before_writing_anything(served_api, table):
    p = new_project()
    five_models = {f"m{n}": NEAR for n in range(5)}  # litellm's current_cost is at least their sum
    body = {
        "project_name": p,
        "user_dict": {"ok": {"total_budget": 1}, "big": {"total_budget": 1, "model_cost": five_models}},
    }
    response = served_api.call("POST", "/set_budget", body=dumps(body))
    error = refused(response, {("user", "big", "current_cost")})
    assert error["details"][0]["would_store"] == EXACT.multiply(5, NEAR)
    assert snapshot(table, p) == []
    # Four models fit, exactly; the stored user then merges with what is sent.
    body["user_dict"] = {"big": {"total_budget": 1, "model_cost": {f"m{n}": NEAR for n in range(4)}}}
    assert served_api.call("POST", "/set_budget", body=dumps(body)).status == 200
    assert spend(table, p, "USER#big") == FOUR
    before = snapshot(table, p)
    body["user_dict"] = {"ok": {"total_budget": 1}, "big": {"total_budget": 1, "model_cost": {"m9": NEAR}}}
    refused(served_api.call("POST", "/set_budget", body=dumps(body)), {("user", "big", "current_cost")})
    assert snapshot(table, p) == before
    refused(cost(served_api, p, "big", NEAR))


# ---- periods and the report ------------------------------------------------------------------------


def test_each_period_keeps_its_own_limit_and_the_report_sums_them_exactly(served_api, table, clock):
    p = new_project()
    put_user(served_api, p, "u", duration="daily")
    for _day in range(3):
        for _ in range(4):
            assert cost(served_api, p, "u", NEAR).status == 200
        refused(cost(served_api, p, "u", NEAR))
        clock.now += DAY  # the next cost rolls the period over, recording the closed one
    assert cost(served_api, p, "u", Decimal(1)).status == 200
    periods = [i for i in snapshot(table, p) if i["sk"]["S"].startswith("PERIOD#")]
    assert sorted(Decimal(i["spend"]["N"]) for i in periods) == [FOUR] * 3
    report = served_api.call(
        "GET",
        REPORT,
        {"project": p},
        query={"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
        headers={"Accept": "text/csv"},
    )
    assert report.status == 200, report
    rows = list(csv.reader(io.StringIO(report.text)))
    # 12 x NEAR = 11999999999999.9999999999999999999999988: 39 digits, more than DynamoDB keeps.
    assert rows[-1] == ["", "", "11999999999999.9999999999999999999999988", "3"]


# ---- through make dev's server ---------------------------------------------------------------------


@pytest.mark.e2e  # a make dev server of its own, in a subprocess
def test_through_the_local_server_the_fifth_largest_cost_is_a_422():
    server = ServerProcess()
    try:
        server.wait_ready()
        url = server.url + "/projects/p/users/u"
        assert requests.put(url, json={"total_budget": 10}, timeout=30).status_code == 201
        body = '{"model": "m", "cost": 999999999999.9999999999999999999999999}'
        headers = {"Content-Type": "application/json"}
        answers = [requests.post(url + "/cost", data=body, headers=headers, timeout=30) for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 422]
        assert answers[-1].json()["error"]["code"] == "spend_limit_exceeded"
        assert requests.get(url, timeout=30).json()["current_cost"] == float(FOUR)
    finally:
        server.close()


# ---- every stored number fits, whatever is accepted -------------------------------------------------

AMOUNTS = st.one_of(
    st.just(NEAR),
    st.just(MONEY_MAX),
    st.decimals(min_value=0, max_value=MONEY_MAX, places=25, allow_nan=False, allow_infinity=False),
)
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["cost", "cost_key", "debit", "credit", "hold", "settle", "set_budget"]),
        st.sampled_from(["a", "b"]),
        AMOUNTS,
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_no_accepted_sequence_stores_a_number_dynamodb_would_refuse(served_api, table, steps):
    p = new_project()
    api = served_api
    assert api.call("PUT", PROJECT, {"project": p}, body=dumps({"total_budget": MONEY_MAX})).status == 201
    body = dumps({"total_budget": MONEY_MAX})
    assert api.call("PUT", TEAM, {"project": p, "team": "t"}, body=body).status == 201
    holds: dict[str, list[str]] = {}
    for user in ("a", "b"):
        put_user(api, p, user, total_budget=MONEY_MAX, team="t")
        holds[user] = [  # held now, settled later for whatever the step costs (a settle charges in full)
            api.call("POST", HOLDS, {"project": p, "user": user}, body=dumps({"amount": 1})).json()["hold_id"]
            for _ in range(3)
        ]
    for _ in range(3):  # "a", the team and the project start near the limit
        assert cost(api, p, "a", NEAR).status == 200
    keys = (f"k{n}" for n in itertools.count())
    for action, user, amount in steps:
        who = {"project": p, "user": user}
        if action == "cost":
            response = cost(api, p, user, amount)
        elif action == "cost_key":
            response = cost(api, p, user, amount, headers={"Idempotency-Key": next(keys)})
        elif action in ("debit", "credit"):
            signed = amount if action == "debit" else amount.copy_negate()
            response = adjust(api, p, user, signed or MONEY_QUANTUM, next(keys))
        elif action == "hold":
            response = api.call("POST", HOLDS, who, body=dumps({"amount": amount or MONEY_QUANTUM}))
            if response.status == 201:
                holds[user].append(response.json()["hold_id"])
        elif action == "settle" and holds[user]:
            hold = {**who, "hold_id": holds[user][-1]}
            response = api.call("POST", SETTLE, hold, body=dumps({"model": "m", "cost": amount}))
            if response.status == 200:
                holds[user].pop()
        elif action == "settle":
            continue
        else:
            entry = {"total_budget": 1, "model_cost": {"x": amount, "y": NEAR}}
            response = api.call(
                "POST", "/set_budget", body=dumps({"project_name": p, "user_dict": {user: entry}})
            )
        assert response.status < 500, (action, amount, response)
        if response.status >= 400:
            code = response.json()["error"]["code"]
            assert code in ("spend_limit_exceeded", "budget_exceeded"), response
            event(f"refused: {code}")
    for item in snapshot(table, p):
        for text in numbers_in({k: v for k, v in item.items() if k not in ("pk", "sk")}):
            assert storable(Decimal(text)), (item["sk"], text)
        for field in ("current_cost", "held"):
            if field in item:
                assert Decimal(item[field]["N"]).copy_abs() <= SPEND_MAX, (item["sk"], field)


# ---- the arithmetic behind the limit (core/numbers.py), without DynamoDB --------------------------------

BOUNDED = st.decimals(
    min_value=-SPEND_MAX, max_value=SPEND_MAX, places=25, allow_nan=False, allow_infinity=False
)
SIGNED_AMOUNTS = st.decimals(
    min_value=-MONEY_MAX, max_value=MONEY_MAX, places=25, allow_nan=False, allow_infinity=False
)


@settings(max_examples=300, deadline=None)
@given(
    total=st.decimals(min_value=0, max_value=MONEY_MAX, places=25, allow_nan=False, allow_infinity=False),
    spend_=BOUNDED,
    held=BOUNDED,
    model=BOUNDED,
    spend_delta=SIGNED_AMOUNTS,
    held_delta=SIGNED_AMOUNTS,
)
def test_a_move_the_conditions_admit_keeps_every_stored_number_within_38_digits(
    total, spend_, held, model, spend_delta, held_delta
):
    exact = EXACT
    old = {"current_cost": spend_, "held": held, "model_cost": {"m": model}}
    move = Move(spend=spend_delta, held=held_delta, model="m")
    if over_limit(old, move):
        return  # refused: nothing written
    after = {
        "current_cost": exact.add(spend_, spend_delta),
        "model": exact.add(model, spend_delta),
        "held": exact.add(held, held_delta),
    }
    after["available"] = exact.subtract(exact.subtract(total, after["current_cost"]), after["held"])
    for name, value in after.items():
        assert value.copy_abs() < STORED_MAX, (name, value)
        assert storable(value), (name, value)
    assert all(after[n].copy_abs() <= SPEND_MAX for n in ("current_cost", "model", "held"))
