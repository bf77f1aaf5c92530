"""Every budget write path but the cost (PUT, set_budget, reset, DELETE) is applied exactly once
when botocore retries after DynamoDB applied an attempt whose answer was late or lost, and its
answer is truthful: the fault proxy (localdev/faults.py) sits between the handlers and the
embedded DynamoDB.

- A lost (dropped) or late answer, then a good one: the write is applied once, and the answer is
  what a fault-free request would have answered (201 for a create, 204 for a delete, the record
  that was written), even when another writer changed the budget between the attempt and its
  retry (a reset must not zero spend recorded in between).
- Every answer lost: 503 with outcome "unknown", and still applied once.
- Refused before it landed: 503 with outcome "not_written", and nothing written.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from localdev.faults import Fault

P, U = "{project}", "{user}"
USER = "/projects/{project}/users/{user}"


def _path(project: str) -> dict:
    return {"project": project, "user": "alice"}


def _project() -> str:
    return f"once-{uuid.uuid4().hex[:10]}"


def _spend_meanwhile(server_store, project: str, amount: str):
    """Another writer records spend straight in DynamoDB, as a cost update does (an ADD)."""

    def spend() -> None:
        server_store.client.update_item(
            TableName=server_store.table_name,
            Key={"pk": {"S": f"PROJECT#{project}"}, "sk": {"S": "USER#alice"}},
            UpdateExpression="SET current_cost = current_cost + :c ADD version :one",
            ExpressionAttributeValues={":c": {"N": amount}, ":one": {"N": "1"}},
        )

    return spend


def _seed(api, project: str, total: int = 10, spend: int = 1) -> int:
    """alice with `total` and `spend` recorded; returns the stored version."""
    assert api.call("PUT", USER, _path(project), body={"total_budget": total}).status == 201
    if spend:
        cost = api.call("POST", USER + "/cost", _path(project), body={"model": "m", "cost": spend})
        assert cost.status == 200, cost
    return 2 if spend else 1


LOST = [Fault.DROP, Fault.LATE]


@pytest.mark.parametrize("fault", LOST)
def test_put_that_creates(faulty_api, faulty_dynamodb, server_store, fault):
    project = _project()
    faulty_dynamodb.add("TransactWriteItems", fault)
    response = faulty_api.call("PUT", USER, _path(project), body={"total_budget": 10})
    assert response.status == 201, response  # it was created by this request: said so
    assert response.json()["total_budget"] == 10
    stored = server_store.get(project, "alice")
    assert (stored.total_budget, stored.version) == (10, 1)
    assert faulty_dynamodb.faults("TransactWriteItems") == [fault, None]  # the retry found its own write


@pytest.mark.parametrize("fault", LOST)
def test_put_that_replaces_with_another_write_in_between(faulty_api, faulty_dynamodb, server_store, fault):
    project = _project()
    version = _seed(faulty_api, project)

    def another_put() -> None:  # a concurrent PUT lands between our attempt and its retry
        server_store.update(project, "alice", lambda b: b._replace(total_budget=Decimal(99)))

    faulty_dynamodb.add("TransactWriteItems", fault, then=another_put)
    response = faulty_api.call("PUT", USER, _path(project), body={"total_budget": 50})
    assert response.status == 200, response
    assert response.json()["total_budget"] == 50  # what this request wrote
    stored = server_store.get(project, "alice")
    # Ours landed once, then the other writer's: applying ours again would make it 50 (version + 3).
    assert (stored.total_budget, stored.current_cost, stored.version) == (99, 1, version + 2)


@pytest.mark.parametrize("fault", LOST)
def test_reset_keeps_spend_recorded_between_its_attempt_and_the_retry(
    faulty_api, faulty_dynamodb, server_store, fault
):
    project = _project()
    version = _seed(faulty_api, project, spend=5)
    faulty_dynamodb.add("TransactWriteItems", fault, then=_spend_meanwhile(server_store, project, "2"))
    response = faulty_api.call("POST", USER + "/reset", _path(project))
    assert response.status == 200, response
    assert response.json()["current_cost"] == 0  # the reset, as it was written
    stored = server_store.get(project, "alice")
    # Reset once (5 -> 0), then 2 was spent; resetting again would have lost the 2.
    assert (stored.current_cost, stored.version) == (2, version + 2)


@pytest.mark.parametrize("fault", LOST)
def test_set_budget(faulty_api, faulty_dynamodb, server_store, fault):
    project = _project()
    assert faulty_api.set_budget(project, {"alice": {"total_budget": 5, "current_cost": 1}}).status == 200
    faulty_dynamodb.add("TransactWriteItems", fault, then=_spend_meanwhile(server_store, project, "0.5"))
    response = faulty_api.set_budget(
        project, {"alice": {"total_budget": 7, "current_cost": 3}, "bob": {"total_budget": 1}}
    )
    assert response.status == 200, response
    assert response.json()["written"] == ["alice", "bob"]  # alice's write landed: reported as written
    stored = server_store.get(project, "alice")
    assert (stored.total_budget, stored.current_cost, stored.version) == (7, Decimal("3.5"), 3)
    assert server_store.get(project, "bob").version == 1


@pytest.mark.parametrize("fault", LOST)
def test_delete(faulty_api, faulty_dynamodb, server_store, fault):
    project = _project()
    _seed(faulty_api, project)
    faulty_dynamodb.add("TransactWriteItems", fault)
    response = faulty_api.call("DELETE", USER, _path(project))
    assert response.status == 204, response  # not 404: the retry is answered as the delete it repeats
    assert server_store.get(project, "alice") is None
    assert faulty_dynamodb.faults("TransactWriteItems")[-2:] == [fault, None]  # after the seed's cost


# ---- every answer lost, or refused ---------------------------------------------------------------

# name: (the operation that writes, seed spend?, the request, the state it leaves: stored -> bool)
PATHS = {
    "put_create": (
        "TransactWriteItems",
        None,
        lambda api, p: api.call("PUT", USER, _path(p), body={"total_budget": 50}),
        lambda b, v: b is not None and b.total_budget == 50 and b.version == 1,
    ),
    "put_replace": (
        "TransactWriteItems",
        1,
        lambda api, p: api.call("PUT", USER, _path(p), body={"total_budget": 50}),
        lambda b, v: b.total_budget == 50 and b.current_cost == 1 and b.version == v + 1,
    ),
    "reset": (
        "TransactWriteItems",
        1,
        lambda api, p: api.call("POST", USER + "/reset", _path(p)),
        lambda b, v: b.current_cost == 0 and b.version == v + 1,
    ),
    "set_budget": (
        "TransactWriteItems",
        1,
        lambda api, p: api.set_budget(p, {"alice": {"total_budget": 50, "current_cost": 4}}),
        lambda b, v: (b.total_budget, b.current_cost, b.version) == (50, 4, v + 1),
    ),
    "delete": (
        "TransactWriteItems",
        1,
        lambda api, p: api.call("DELETE", USER, _path(p)),
        lambda b, v: b is None,
    ),
}


@pytest.mark.parametrize("name", sorted(PATHS))
def test_every_answer_lost_is_a_503_outcome_unknown_and_applied_once(
    faulty_api, faulty_dynamodb, server_store, name
):
    operation, spend, request, applied = PATHS[name]
    project = _project()
    version = _seed(faulty_api, project, spend=spend) if spend is not None else 0
    seen = len(faulty_dynamodb.faults(operation))
    faulty_dynamodb.add(operation, Fault.LATE, times=None)
    response = request(faulty_api, project)
    assert response.status == 503, response
    error = response.json()["error"]
    assert error["details"]["outcome"] == "unknown" and "may or may not" in error["message"]
    if name == "set_budget":
        assert error["details"]["not_confirmed"] == ["alice"]
    assert faulty_dynamodb.faults(operation)[seen:] == [Fault.LATE] * 3  # botocore tried three times
    assert applied(server_store.get(project, "alice"), version)  # once, not three times


@pytest.mark.parametrize("fault", [Fault.REFUSE, Fault.CUT])
@pytest.mark.parametrize("name", sorted(PATHS))
def test_failing_before_it_lands_writes_nothing(faulty_api, faulty_dynamodb, server_store, name, fault):
    operation, spend, request, _ = PATHS[name]
    project = _project()
    if spend is not None:
        _seed(faulty_api, project, spend=spend)
    before = server_store.get(project, "alice")
    faulty_dynamodb.add(operation, fault, times=None)
    response = request(faulty_api, project)
    assert response.status == 503, response
    # Refused by DynamoDB: nothing was written, and the answer says so. A cut connection looks to
    # the service like a lost answer: it cannot know, and says "unknown".
    assert response.json()["error"]["details"]["outcome"] == (
        "not_written" if fault is Fault.REFUSE else "unknown"
    )
    assert server_store.get(project, "alice") == before


@pytest.mark.parametrize("fault", LOST)
def test_a_cost_with_an_idempotency_key_whose_answer_was_lost_is_charged_once_and_not_a_replay(
    faulty_api, faulty_dynamodb, server_store, fault
):
    """The retry of its TransactWriteItems carries the same ClientRequestToken: DynamoDB answers
    it with the first one's success, so the service knows the charge is its own, not a replay."""
    project = _project()
    _seed(faulty_api, project, spend=0)
    faulty_dynamodb.add("TransactWriteItems", fault)
    response = faulty_api.call(
        "POST",
        USER + "/cost",
        _path(project),
        body={"model": "m", "cost": 2},
        headers={"Idempotency-Key": "k-1"},
    )
    assert response.status == 200, response
    assert response.json()["replayed"] is False
    assert server_store.get(project, "alice").current_cost == 2
    again = faulty_api.call(
        "POST",
        USER + "/cost",
        _path(project),
        body={"model": "m", "cost": 2},
        headers={"Idempotency-Key": "k-1"},
    )
    assert again.json()["replayed"] is True and server_store.get(project, "alice").current_cost == 2
