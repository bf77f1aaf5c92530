"""Holds through their handlers on in-process moto: hold, settle, release, expiry,
one DynamoDB request each, idempotency, rollover, and bad input that writes nothing."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from conftest import CLOCK_START

from budget_service.domain.resets import update_budget_all_users
from budget_service.store import base as store_module
from budget_service.store.holds import hold_sk

PUT = "/projects/{project}/users/{user}"
COST = "/projects/{project}/users/{user}/cost"
HOLDS = "/projects/{project}/users/{user}/holds"
SETTLE = "/projects/{project}/users/{user}/holds/{hold_id}/settle"
RELEASE = "/projects/{project}/users/{user}/holds/{hold_id}"
WHO = {"project": "acme", "user": "alice"}
T0 = CLOCK_START  # the clock fixture starts here


@pytest.fixture
def budget(api, clock):
    response = api.call("PUT", PUT, WHO, body={"total_budget": 1})
    assert response.status == 201, response
    return api


@pytest.fixture
def requests_made(aws):
    client = store_module.default_store().client
    sent: list[str] = []

    def record(event_name, **kwargs):
        sent.append(event_name.rsplit(".", 1)[-1])

    client.meta.events.register("before-sign.dynamodb", record)
    yield sent
    client.meta.events.unregister("before-sign.dynamodb", record)


def dumps(body) -> str:
    if isinstance(body, str):
        return body
    return json.dumps(body, default=lambda d: f"@@{d}@@").replace('"@@', "").replace('@@"', "")


def hold(api, amount, *, key=None, who=WHO, **extra):
    body = {"amount": amount, **extra} if amount is not None else extra
    headers = {"Idempotency-Key": key} if key else None
    return api.call("POST", HOLDS, who, body=dumps(body), headers=headers)


def settle(api, hold_id, cost, who=WHO, model="m"):
    return api.call("POST", SETTLE, {**who, "hold_id": hold_id}, body=dumps({"model": model, "cost": cost}))


def charge(api, cost, who=WHO):
    return api.call("POST", COST, who, body=dumps({"model": "m", "cost": cost}))


def release(api, hold_id, who=WHO):
    return api.call("DELETE", RELEASE, {**who, "hold_id": hold_id})


def record(api, who=WHO) -> dict:
    response = api.call("GET", PUT, who)
    assert response.status == 200, response
    return response.json()


def table_items(aws) -> list[dict]:
    return sorted(aws.scan(TableName="budgets-test")["Items"], key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def test_hold_settle_release_move_held_available_and_spend(budget):
    created = hold(budget, Decimal("0.3"))
    assert created.status == 201, created
    h = created.json()
    assert h["amount"] == Decimal("0.3") and h["state"] == "held" and h["hold_id"].endswith("-0.3")
    assert h["expires_at"] == "2027-01-15T08:10:00Z"  # 600 s after T0, the default ttl
    assert (record(budget)["held"], record(budget)["available"]) == (Decimal("0.3"), Decimal("0.7"))

    settled = settle(budget, h["hold_id"], Decimal("0.12"))
    assert settled.status == 200, settled
    s = settled.json()
    assert s["cost"] == Decimal("0.12") and s["released"] == Decimal("0.18") and s["replayed"] is False
    assert s["settled_from"] == "held"
    after = record(budget)
    assert (after["current_cost"], after["held"], after["available"]) == (Decimal("0.12"), 0, Decimal("0.88"))
    assert after["model_cost"] == {"m": Decimal("0.12")}

    second = hold(budget, Decimal("0.5")).json()
    released = release(budget, second["hold_id"])
    assert released.status == 200 and released.json()["released"] is True
    assert (record(budget)["held"], record(budget)["available"]) == (0, Decimal("0.88"))
    again = release(budget, second["hold_id"])  # repeating is harmless
    assert again.status == 200 and again.json() | {} == {**released.json(), "released": False}
    assert record(budget)["available"] == Decimal("0.88")


def test_a_settle_is_charged_once_and_a_repeat_answers_the_first_result(budget):
    h = hold(budget, Decimal("0.2")).json()
    first = settle(budget, h["hold_id"], Decimal("0.15")).json()
    repeat = settle(budget, h["hold_id"], Decimal("0.9"))  # whatever the repeat says
    assert repeat.status == 200 and repeat.json() == {**first, "replayed": True}
    assert record(budget)["current_cost"] == Decimal("0.15")


def test_a_settle_above_its_hold_is_charged_in_full(budget):
    h = hold(budget, Decimal("0.1")).json()
    s = settle(budget, h["hold_id"], Decimal("1.4")).json()
    assert s["cost"] == Decimal("1.4") and s["released"] == 0
    after = record(budget)
    assert after["current_cost"] == Decimal("1.4") and after["held"] == 0 and after["available"] == 0


def test_a_settle_after_release_or_expiry_still_charges_once(budget, clock):
    h = hold(budget, Decimal("0.4")).json()
    release(budget, h["hold_id"])
    late = settle(budget, h["hold_id"], Decimal("0.3")).json()
    assert late["settled_from"] == "released" and late["released"] == 0
    assert settle(budget, h["hold_id"], Decimal("0.3")).json()["replayed"] is True
    assert record(budget)["current_cost"] == Decimal("0.3") and record(budget)["held"] == 0

    short = hold(budget, Decimal("0.2"), ttl_seconds=5).json()
    clock.now += 6
    summary = update_budget_all_users(clock.now)
    assert summary.holds_expired == 1
    assert record(budget)["held"] == 0
    late = settle(budget, short["hold_id"], Decimal("0.05")).json()
    assert late["settled_from"] == "expired"
    assert record(budget)["current_cost"] == Decimal("0.35") and record(budget)["held"] == 0


def test_a_hold_over_the_headroom_is_a_402_naming_what_was_available_and_writes_nothing(budget, aws):
    assert hold(budget, Decimal("0.75")).status == 201
    before = table_items(aws)
    refused = hold(budget, Decimal("0.3"), key="k-over")
    assert refused.status == 402, refused
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["details"] == [
        {"level": "user", "name": "alice", "available": Decimal("0.25"), "needed": Decimal("0.3")}
    ]
    assert table_items(aws) == before
    assert hold(budget, Decimal("0.25")).status == 201  # exactly what is left


def test_a_402_states_amounts_exactly_and_in_plain_notation(budget):
    """The message and details of a refusal: every amount in plain notation (never 1E+1 or 9E-7,
    README "Every number in a label or a JSON answer is in plain notation"), and exact (a Decimal
    of 25 places is not rounded to a float's 17 digits)."""
    assert hold(budget, Decimal("0.9999991")).status == 201
    refused = hold(budget, Decimal("10")).json()["error"]
    assert refused["message"] == "the budget cannot cover 10: user 'alice' has 0.0000009 available"
    needed = Decimal("0.0000009000000000000000001")
    details = hold(budget, needed).json()["error"]["details"]
    assert details == [
        {"level": "user", "name": "alice", "available": Decimal("0.0000009"), "needed": needed}
    ]


def test_an_expired_hold_never_blocks_a_new_one_even_before_the_job_runs(budget, clock):
    stale = hold(budget, Decimal("0.9"), ttl_seconds=60).json()
    assert hold(budget, Decimal("0.5")).status == 402
    clock.now += 61
    fresh = hold(budget, Decimal("0.5"))
    assert fresh.status == 201, fresh
    after = record(budget)
    assert after["held"] == Decimal("0.5") and after["available"] == Decimal("0.5")
    # The stale hold was expired, once: the job finds nothing left to do.
    assert update_budget_all_users(clock.now).holds_expired == 0
    assert release(budget, stale["hold_id"]).json() == {
        "hold_id": stale["hold_id"],
        "project": "acme",
        "user": "alice",
        "amount": Decimal("0.9"),
        "state": "expired",
        "released": False,
    }


def test_hold_settle_and_release_are_one_request_each_also_with_a_key(budget, requests_made):
    h = hold(budget, Decimal("0.1")).json()
    k = hold(budget, Decimal("0.1"), key="hold-key-1").json()
    settle(budget, h["hold_id"], Decimal("0.05"))
    release(budget, k["hold_id"])
    assert requests_made == ["TransactWriteItems"] * 4


def test_an_idempotency_key_answers_the_first_hold(budget, aws):
    first = hold(budget, Decimal("0.3"), key="req-9")
    repeat = hold(budget, Decimal("0.3"), key="req-9")
    assert first.status == repeat.status == 201
    assert repeat.json() == {**first.json(), "replayed": True}
    assert record(budget)["held"] == Decimal("0.3")
    other = hold(budget, Decimal("0.4"), key="req-9")
    assert other.status == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert record(budget)["held"] == Decimal("0.3")


def test_a_priced_hold_holds_the_projected_cost(budget):
    messages = [{"role": "user", "content": "Name three colours."}]
    projected = budget.call(
        "POST",
        "/projects/{project}/users/{user}/projected-cost",
        WHO,
        body={"model": "gpt-4o-mini", "messages": messages, "max_tokens": 100},
    ).json()
    h = hold(budget, None, model="gpt-4o-mini", messages=messages, max_tokens=100).json()
    assert h["amount"] == projected["projected_cost"] and h["priced_as"] == "gpt-4o-mini"
    assert h["prompt_tokens"] == projected["prompt_tokens"]


def test_holds_survive_a_period_rollover(api, clock, aws):
    api.call("PUT", PUT, WHO, body={"total_budget": 1, "duration": "daily"})
    assert charge(api, Decimal("0.5")).status == 200
    end = store_module.BudgetStore("budgets-test", client=aws).get("acme", "alice").reset_at
    clock.now = end - 600
    h = hold(api, Decimal("0.4"), ttl_seconds=3600).json()
    clock.now = end + 1  # the next day, with the hold still live
    rolled = record(api)
    assert (rolled["current_cost"], rolled["held"], rolled["available"]) == (
        0,
        Decimal("0.4"),
        Decimal("0.6"),
    )
    # The job rolls the period over in storage and keeps the hold.
    assert update_budget_all_users(clock.now).reset == 1
    stored = store_module.BudgetStore("budgets-test", client=aws).get("acme", "alice")
    assert (stored.current_cost, stored.held, stored.available) == (0, Decimal("0.4"), Decimal("0.6"))
    s = settle(api, h["hold_id"], Decimal("0.1")).json()
    assert s["settled_from"] == "held"
    after = record(api)
    assert (after["current_cost"], after["held"], after["available"]) == (Decimal("0.1"), 0, Decimal("0.9"))


def test_a_lazy_rollover_keeps_holds_too(api, clock, aws):
    api.call("PUT", PUT, WHO, body={"total_budget": 1, "duration": "daily"})
    end = store_module.BudgetStore("budgets-test", client=aws).get("acme", "alice").reset_at
    clock.now = end - 600
    hold(api, Decimal("0.3"), ttl_seconds=3600)
    clock.now = end + 1
    assert charge(api, Decimal("0.2")).status == 200
    stored = store_module.BudgetStore("budgets-test", client=aws).get("acme", "alice")
    assert (stored.current_cost, stored.held, stored.available) == (
        Decimal("0.2"),
        Decimal("0.3"),
        Decimal("0.5"),
    )


def test_put_recomputes_available_and_keeps_held(budget):
    hold(budget, Decimal("0.4"))
    charge(budget, Decimal("0.1"))
    assert budget.call("PUT", PUT, WHO, body={"total_budget": 2}).status == 200
    after = record(budget)
    assert (after["held"], after["available"]) == (Decimal("0.4"), Decimal("1.5"))


def test_a_hold_for_an_unknown_user_is_a_404(api, clock, aws):
    response = hold(api, Decimal("0.1"), who={"project": "acme", "user": "nobody"})
    assert response.status == 404 and response.json()["error"]["code"] == "budget_not_found"
    assert table_items(aws) == []


BAD_HOLDS = {
    "negative": {"amount": -1},
    "zero": {"amount": 0},
    "nan": '{"amount": NaN}',
    "infinite": '{"amount": Infinity}',
    "string": {"amount": "0.1"},
    "ttl zero": {"amount": 0.1, "ttl_seconds": 0},
    "ttl over an hour": {"amount": 0.1, "ttl_seconds": 3601},
    "ttl fraction": {"amount": 0.1, "ttl_seconds": 1.5},
    "both forms": {"amount": 0.1, "model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
    "neither": {},
    "model without messages": {"model": "gpt-4o"},
    "unknown model": {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
    "unknown field": {"amount": 0.1, "user": "bob"},
}


@pytest.mark.parametrize("body", BAD_HOLDS.values(), ids=BAD_HOLDS.keys())
def test_bad_holds_are_4xx_and_write_nothing(budget, aws, body):
    before = table_items(aws)
    response = budget.call("POST", HOLDS, WHO, body=dumps(body))
    assert 400 <= response.status < 500 and response.status != 404, response
    assert "error" in response.json()
    assert table_items(aws) == before


def test_a_hold_id_of_another_user_or_malformed_is_a_404_and_writes_nothing(budget, aws):
    budget.call("PUT", PUT, {"project": "acme", "user": "bob"}, body={"total_budget": 1})
    h = hold(budget, Decimal("0.2")).json()
    before = table_items(aws)
    bob = {"project": "acme", "user": "bob"}
    for hold_id in (h["hold_id"], h["hold_id"][:-1] + "5", "nope", "0" * 32 + "-1e5"):
        for response in (settle(budget, hold_id, Decimal("0.1"), who=bob), release(budget, hold_id, who=bob)):
            assert response.status == 404, (hold_id, response)
            assert response.json()["error"]["code"] == "hold_not_found"
    wrong_amount = h["hold_id"].rsplit("-", 1)[0] + "-0.3"
    assert settle(budget, wrong_amount, Decimal("0.1")).status == 404
    assert table_items(aws) == before


def test_settle_takes_every_cost_form_and_refuses_bad_ones(budget, aws):
    h = hold(budget, Decimal("0.5")).json()
    before = table_items(aws)
    params = {**WHO, "hold_id": h["hold_id"]}
    for body in (
        {"model": "no-such-model", "usage": {"prompt_tokens": 5}},
        {"model": "m", "cost": -1},
        {"model": "m", "cost": 1, "if_within_budget": True},
        {},
    ):
        response = budget.call("POST", SETTLE, params, body=dumps(body))
        assert response.status == 422, (body, response)
    assert table_items(aws) == before
    usage = budget.call(
        "POST", SETTLE, params, body={"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1000}}
    )
    assert usage.status == 200 and usage.json()["tokens"]["prompt_tokens"] == 1000


def test_finished_holds_leave_the_due_index_and_get_a_ttl(budget, aws):
    h = hold(budget, Decimal("0.2")).json()
    key = {"pk": {"S": "PROJECT#acme"}, "sk": {"S": hold_sk("alice", h["hold_id"])}}
    live = aws.get_item(TableName="budgets-test", Key=key)["Item"]
    assert live["reset_shard"]["S"].startswith("HOLDS#") and "expires_at" not in live
    release(budget, h["hold_id"])
    done = aws.get_item(TableName="budgets-test", Key=key)["Item"]
    assert "reset_shard" not in done and "reset_at" not in done and "expires_at" in done


def test_items_written_before_holds_get_available_on_their_next_write(budget, aws, store):
    """A budget item stored by an earlier version has no held/available: the first cost or hold
    rewrites it (version-conditional) and goes on."""
    aws.update_item(
        TableName="budgets-test",
        Key=store_module.budget_key("acme", "alice"),
        UpdateExpression="REMOVE held, available",
    )
    assert charge(budget, Decimal("0.25")).status == 200
    assert hold(budget, Decimal("0.5")).status == 201
    stored = store.get("acme", "alice")
    assert (stored.current_cost, stored.held, stored.available) == (
        Decimal("0.25"),
        Decimal("0.5"),
        Decimal("0.25"),
    )
