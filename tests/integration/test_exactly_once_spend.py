"""Every spend-changing write (cost with and without a key, hold, settle, release) and DELETE is
applied exactly once when botocore retries after a late or lost answer: the fault-injecting DynamoDB endpoint applies the
request and loses its answer; botocore's retry carries the same ClientRequestToken, which
DynamoDB (and the embedded one) answers as the first success. And an Idempotency-Key belongs to
one budget: reusing it for another budget is refused, not applied there."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from localdev.faults import Fault

PUT = "/projects/{project}/users/{user}"
COST = "/projects/{project}/users/{user}/cost"
HOLDS = "/projects/{project}/users/{user}/holds"
SETTLE = "/projects/{project}/users/{user}/holds/{hold_id}/settle"
RELEASE = "/projects/{project}/users/{user}/holds/{hold_id}"
LOST = [Fault.LATE, Fault.DROP]


@pytest.fixture
def who(faulty_api):
    who = {"project": f"once-{uuid.uuid4().hex[:8]}", "user": "alice"}
    assert faulty_api.call("PUT", PUT, who, body={"total_budget": 10}).status == 201
    return who


def stored(server_store, who):
    return server_store.get(who["project"], who["user"])


@pytest.mark.parametrize("fault", LOST, ids=lambda f: f.value)
@pytest.mark.parametrize("key", [None, "k-lost"])
def test_a_cost_whose_answer_is_lost_is_charged_once_and_answered_as_new(
    faulty_api, faulty_dynamodb, server_store, who, fault, key
):
    faulty_dynamodb.add("TransactWriteItems", fault)
    headers = {"Idempotency-Key": key} if key else None
    response = faulty_api.call("POST", COST, who, body={"model": "m", "cost": 1}, headers=headers)
    assert response.status == 200, response
    assert response.json()["replayed"] is False  # the retry is the same request, not a replay
    # The last two: the cost and its retry (the PUT that made the budget is a transaction too: it
    # carries its audit entry).
    assert faulty_dynamodb.faults("TransactWriteItems")[-2:] == [fault, None]  # it was retried
    assert stored(server_store, who).current_cost == 1


@pytest.mark.parametrize("fault", LOST, ids=lambda f: f.value)
def test_a_delete_whose_answer_is_lost_answers_204(faulty_api, faulty_dynamodb, server_store, who, fault):
    faulty_dynamodb.add("TransactWriteItems", fault)
    response = faulty_api.call("DELETE", PUT, who)
    assert response.status == 204, response
    assert stored(server_store, who) is None


@pytest.mark.parametrize("fault", LOST, ids=lambda f: f.value)
def test_hold_settle_and_release_whose_answers_are_lost_apply_once(
    faulty_api, faulty_dynamodb, server_store, who, fault
):
    faulty_dynamodb.add("TransactWriteItems", fault)
    held = faulty_api.call("POST", HOLDS, who, body={"amount": 2})
    assert held.status == 201, held
    budget = stored(server_store, who)
    assert (budget.held, budget.available) == (2, 8)

    faulty_dynamodb.add("TransactWriteItems", fault)
    settled = faulty_api.call(
        "POST",
        SETTLE,
        {**who, "hold_id": held.json()["hold_id"]},
        body=json.dumps({"model": "m", "cost": 0.5}),
    )
    assert settled.status == 200 and settled.json()["replayed"] is False, settled
    budget = stored(server_store, who)
    assert (budget.current_cost, budget.held, budget.available) == (Decimal("0.5"), 0, Decimal("9.5"))

    other = faulty_api.call("POST", HOLDS, who, body={"amount": 3}).json()
    faulty_dynamodb.add("TransactWriteItems", fault)
    released = faulty_api.call("DELETE", RELEASE, {**who, "hold_id": other["hold_id"]})
    assert released.status == 200 and released.json()["released"] is True, released
    budget = stored(server_store, who)
    assert (budget.current_cost, budget.held, budget.available) == (Decimal("0.5"), 0, Decimal("9.5"))


def test_an_idempotency_key_belongs_to_one_budget(served_api, server_store):
    who = {"project": f"incarnation-{uuid.uuid4().hex[:8]}", "user": "alice"}
    key = {"Idempotency-Key": "k-old"}
    body = json.dumps({"model": "m", "cost": 1})
    served_api.call("PUT", PUT, who, body={"total_budget": 10})
    assert served_api.call("POST", COST, who, body=body, headers=key).json()["replayed"] is False
    assert served_api.call("DELETE", PUT, who).status == 204

    gone = served_api.call("POST", COST, who, body=body, headers=key)
    assert gone.status == 404 and gone.json()["error"]["code"] == "budget_not_found"  # not a replay

    served_api.call("PUT", PUT, who, body={"total_budget": 10})
    fresh = served_api.call("POST", COST, who, body=body, headers=key)
    assert fresh.status == 200 and fresh.json()["replayed"] is False
    assert stored(server_store, who).current_cost == 1  # charged by the new budget
    again = served_api.call("POST", COST, who, body=body, headers=key)
    assert again.json()["replayed"] is True and stored(server_store, who).current_cost == 1

    # The same for a hold made with a key.
    hold = served_api.call("POST", HOLDS, who, body={"amount": 2}, headers={"Idempotency-Key": "h-old"})
    served_api.call("DELETE", PUT, who)
    served_api.call("PUT", PUT, who, body={"total_budget": 10})
    renewed = served_api.call("POST", HOLDS, who, body={"amount": 2}, headers={"Idempotency-Key": "h-old"})
    assert renewed.status == 201 and renewed.json()["replayed"] is False
    assert renewed.json()["hold_id"] != hold.json()["hold_id"]
    assert stored(server_store, who).held == 2
