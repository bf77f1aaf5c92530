"""DynamoDB failing under each write path: throttling, a DynamoDB 5xx and a timeout that
outlive the client's retries give a 503 JSON error with Retry-After, and the stored state stays
what it was before, or becomes the fully applied write; a set_budget stopped part way says exactly
which users were written, and sending it again converges.

The handlers run in process against the embedded DynamoDB server (a real HTTP endpoint), and
failures are injected at botocore's ``before-send`` event: the request never leaves the process,
so nothing is written by a refused call, and botocore's own retry logic (standard mode, bounded
attempts) runs for real. Its backoff delays are recorded instead of slept.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from budget_service.store import base as store_module
from budget_service.store.base import CLIENT_CONFIG

P, U = "{project}", "{user}"
ATTEMPTS = 3  # the first try and two retries


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_):
        yield self.body


def throttled(request):
    body = {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "Rate exceeded"}
    return AWSResponse(request.url, 400, {"x-amzn-RequestId": "t"}, _Raw(json.dumps(body).encode()))


def internal_error(request):
    body = {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "Internal error"}
    return AWSResponse(request.url, 500, {"x-amzn-RequestId": "i"}, _Raw(json.dumps(body).encode()))


def timed_out(request):
    raise ReadTimeoutError(endpoint_url=request.url)


FAILURES = {"throttling": throttled, "internal_error": internal_error, "timeout": timed_out}


class Injector:
    """Fails chosen DynamoDB operations of the handlers' client, after `after` calls succeed."""

    def __init__(self, client) -> None:
        self.client = client
        self.calls: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self._hooks: list[tuple[str, object]] = []

    def fail(self, operation: str, failure, after: int = 0) -> None:
        def hook(request, **_):
            self.calls[operation] = self.calls.get(operation, 0) + 1
            if self.calls[operation] > after:
                self.failed[operation] = self.failed.get(operation, 0) + 1
                return failure(request)
            return None

        event = f"before-send.dynamodb.{operation}"
        # First, so nothing else answers for it.
        self.client.meta.events.register_first(event, hook)
        self._hooks.append((event, hook))

    def clear(self) -> None:
        for event, hook in self._hooks:
            self.client.meta.events.unregister(event, hook)
        self._hooks.clear()


@pytest.fixture
def inject(served_api, backoff):
    injector = Injector(store_module.default_store().client)
    yield injector
    injector.clear()


def snapshot(server_store, project: str) -> list[dict]:
    """Every item of the project (budgets and idempotency ledger), as stored."""
    response = server_store.client.query(
        TableName=server_store.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"PROJECT#{project}"}},
        ConsistentRead=True,
    )
    return response["Items"]


def assert_unavailable(response) -> None:
    assert response.status == 503, response
    assert response.json()["error"]["code"] == "service_unavailable"
    headers = {k.lower(): v for k, v in (response.raw.get("headers") or {}).items()}
    multi = {k.lower(): v for k, v in (response.raw.get("multiValueHeaders") or {}).items()}
    assert headers.get("retry-after") == "1" or multi.get("retry-after") == ["1"], response.raw


def test_client_config_is_standard_retries_bounded_with_timeouts():
    assert CLIENT_CONFIG.retries == {"mode": "standard", "total_max_attempts": ATTEMPTS}
    assert CLIENT_CONFIG.connect_timeout == 1 and CLIENT_CONFIG.read_timeout == 2
    client = store_module.BudgetStore("t").client  # what the handlers get
    assert client.meta.config.retries["mode"] == "standard"
    assert client.meta.config.read_timeout == 2


def _write_paths(api, project: str):
    """(name, DynamoDB operation, the request) of every write route, on an existing budget."""
    user = {"project": project, "user": "alice"}
    return [
        (
            "put_budget",
            "TransactWriteItems",
            lambda: api.call("PUT", f"/projects/{P}/users/{U}", user, body={"total_budget": 50}),
        ),
        ("reset", "TransactWriteItems", lambda: api.call("POST", f"/projects/{P}/users/{U}/reset", user)),
        ("delete", "TransactWriteItems", lambda: api.call("DELETE", f"/projects/{P}/users/{U}", user)),
        (
            "cost",
            "TransactWriteItems",
            lambda: api.call("POST", f"/projects/{P}/users/{U}/cost", user, body={"model": "m", "cost": 2}),
        ),
        (
            "cost_idempotent",
            "TransactWriteItems",
            lambda: api.call(
                "POST",
                f"/projects/{P}/users/{U}/cost",
                user,
                body={"model": "m", "cost": 2},
                headers={"Idempotency-Key": "k-1"},
            ),
        ),
        (
            "set_budget",
            "TransactWriteItems",
            lambda: api.set_budget(project, {"alice": {"total_budget": 70, "current_cost": 9}}),
        ),
    ]


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize(
    "path", range(6), ids=["put_budget", "reset", "delete", "cost", "cost_idempotent", "set_budget"]
)
def test_a_failing_write_is_a_503_and_writes_nothing_then_the_retry_applies_it(
    served_api, server_store, inject, backoff, path, failure
):
    project = f"fail-{uuid.uuid4().hex[:8]}"
    created = served_api.call(
        "PUT", f"/projects/{P}/users/{U}", {"project": project, "user": "alice"}, body={"total_budget": 10}
    )
    assert created.status == 201
    assert (
        served_api.call(
            "POST",
            f"/projects/{P}/users/{U}/cost",
            {"project": project, "user": "alice"},
            body={"model": "m", "cost": 1},
        ).status
        == 200
    )
    name, operation, request = _write_paths(served_api, project)[path]
    before = snapshot(server_store, project)

    inject.fail(operation, FAILURES[failure])
    response = request()
    assert_unavailable(response)
    # A timeout after sending may have landed (here it never left the process, but the service
    # cannot know that); DynamoDB's error answers mean nothing was written.
    outcome = "unknown" if failure == "timeout" else "not_written"
    assert response.json()["error"]["details"]["outcome"] == outcome
    # The client tried three times (standard mode, max_attempts=3), backing off in between.
    assert inject.failed[operation] == ATTEMPTS
    assert len(backoff) == ATTEMPTS - 1
    assert snapshot(server_store, project) == before  # nothing written

    inject.clear()
    again = request()
    assert again.status in (200, 204), again
    budget = server_store.get(project, "alice")
    expected = {
        "put_budget": lambda b: b.total_budget == 50 and b.current_cost == 1,
        "reset": lambda b: b.current_cost == 0,
        "delete": lambda b: b is None,
        "cost": lambda b: b.current_cost == 3,
        "cost_idempotent": lambda b: b.current_cost == 3,
        "set_budget": lambda b: b.total_budget == 70 and b.current_cost == 9,
    }[name]
    assert expected(budget), budget


def test_a_failing_read_before_any_write_is_a_503_and_writes_nothing(served_api, server_store, inject):
    project = f"fail-{uuid.uuid4().hex[:8]}"
    inject.fail("Query", throttled)
    assert_unavailable(served_api.set_budget(project, {"u1": {"total_budget": 1}}))
    assert_unavailable(served_api.get_budget(project))
    inject.clear()
    inject.fail("Query", timed_out)  # a read that timed out wrote nothing either
    response = served_api.get_budget(project)
    assert_unavailable(response)
    assert response.json()["error"]["details"]["outcome"] == "not_written"
    assert snapshot(server_store, project) == []


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_set_budget_stopped_part_way_reports_each_user_and_repeating_converges(
    served_api, server_store, inject, failure
):
    project = f"part-{uuid.uuid4().hex[:8]}"
    seeded = served_api.set_budget(project, {"u0": {"total_budget": 5}})
    assert seeded.status == 200
    user_dict = {f"u{i}": {"total_budget": 10 + i, "current_cost": i} for i in range(6)}
    # u0 exists (its budget changes 5 -> 10): every user is a write.
    inject.fail("TransactWriteItems", FAILURES[failure], after=3)  # three users land, the fourth fails
    response = served_api.set_budget(project, user_dict)
    assert_unavailable(response)
    details = response.json()["error"]["details"]
    assert details["written"] == ["u0", "u1", "u2"]
    if failure == "timeout":  # the fourth may or may not have landed: said so
        assert details["not_confirmed"] == ["u3"] and details["not_written"] == ["u4", "u5"]
        assert details["outcome"] == "unknown"
    else:  # DynamoDB refused it: not written
        assert details["not_confirmed"] == [] and details["not_written"] == ["u3", "u4", "u5"]
        assert details["outcome"] == "partially_written"
    # Each user is exactly as reported: the written ones fully, the others untouched.
    for i in range(6):
        budget = server_store.get(project, f"u{i}")
        if f"u{i}" in details["written"]:
            assert (budget.total_budget, budget.current_cost) == (10 + i, i)
        elif i == 0:
            assert (budget.total_budget, budget.current_cost) == (5, 0)
        else:
            assert budget is None

    inject.clear()
    repeated = served_api.set_budget(project, user_dict)
    assert repeated.status == 200, repeated
    body = repeated.json()
    assert body["unchanged"] == ["u0", "u1", "u2"] and body["written"] == ["u3", "u4", "u5"]
    once_more = served_api.set_budget(project, user_dict)
    assert once_more.json()["written"] == []  # converged: a third send changes nothing
    stored = served_api.get_budget(project).json()["data"]
    assert {u: (e["total_budget"], e["current_cost"]) for u, e in stored.items()} == {
        f"u{i}": (Decimal(10 + i), Decimal(i)) for i in range(6)
    }


def test_set_budget_out_of_time_stops_before_a_write_and_reports(served_api, server_store, monkeypatch):
    """The handler stops starting writes with RESERVE_MS left and answers 503 with progress."""
    from localdev import template

    module = template.load_module("SetBudgetFunction")
    project = f"late-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(module, "RESERVE_MS", 10**9)  # as if the Lambda had no time left
    response = served_api.set_budget(project, {"a": {"total_budget": 1}, "b": {"total_budget": 2}})
    assert_unavailable(response)
    assert response.json()["error"]["details"]["not_written"] == ["a", "b"]
    assert response.json()["error"]["details"]["outcome"] == "not_written"
    assert snapshot(server_store, project) == []


def test_a_non_retryable_store_error_is_a_500_json_not_a_crash(served_api, inject):
    def access_denied(request):
        body = {"__type": "com.amazon.coral.service#AccessDeniedException", "message": "no"}
        return AWSResponse(request.url, 400, {}, _Raw(json.dumps(body).encode()))

    inject.fail("GetItem", access_denied)
    response = served_api.call("GET", f"/projects/{P}/users/{U}", {"project": "p", "user": "u"})
    assert response.status == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error"}}
