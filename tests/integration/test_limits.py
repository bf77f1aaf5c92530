"""The documented limits, each a 4xx JSON error that writes nothing."""

import json

from budget_service.api.http import MAX_BODY_BYTES
from budget_service.schemas import ID_MAX_LENGTH, MAX_MODELS_PER_USER, MAX_USERS_PER_SET_BUDGET

P, U = "{project}", "{user}"


def error_code(response):
    return response.json()["error"]["code"]


def test_users_per_set_budget(api, store):
    too_many = {f"u{i}": {"total_budget": 1} for i in range(MAX_USERS_PER_SET_BUDGET + 1)}
    response = api.set_budget("limits", too_many)
    assert response.status == 422 and error_code(response) == "validation_error"
    assert "2000" in response.json()["error"]["message"]
    assert store.get("limits", "u0") is None
    at_limit = {f"u{i}": {"total_budget": 1} for i in range(MAX_USERS_PER_SET_BUDGET)}
    assert api.set_budget("limits", at_limit).json()["status"] == "success"


def test_models_per_entry(api, store):
    models = {f"m{i}": 0.1 for i in range(MAX_MODELS_PER_USER + 1)}
    response = api.set_budget("limits", {"u": {"total_budget": 1, "model_cost": models}})
    assert response.status == 422
    assert store.get("limits", "u") is None


def test_body_size(api):
    body = json.dumps({"project_name": "p", "user_dict": {}, "pad": "x" * MAX_BODY_BYTES})
    response = api.call("POST", "/set_budget", body=body)
    assert response.status == 413 and error_code(response) == "payload_too_large"


def test_identifier_length_and_characters(api, store):
    for bad in ["x" * (ID_MAX_LENGTH + 1), "tab\there", "nul\x00", "del\x7f"]:
        response = api.call(
            "PUT", f"/projects/{P}/users/{U}", {"project": "p", "user": bad}, body={"total_budget": 1}
        )
        assert response.status == 422, repr(bad)
        assert api.get_budget(bad).status == 422, repr(bad)
    ok = "ünïcode #/% ok " + "y" * 200
    assert (
        api.call(
            "PUT", f"/projects/{P}/users/{U}", {"project": "p", "user": ok}, body={"total_budget": 1}
        ).status
        == 201
    )


def test_numeric_ranges(api, store):
    user = {"project": "p", "user": "n"}
    for budget in [-1, 1e12 + 1, "1", True, None]:
        response = api.call("PUT", f"/projects/{P}/users/{U}", user, body={"total_budget": budget})
        assert response.status == 422, budget
    assert store.get("p", "n") is None
    for entry in [
        {"total_budget": 1, "duration": 0},
        {"total_budget": 1, "duration": 3661},
        {"total_budget": 1, "current_cost": -0.5},
        {"total_budget": 1, "created_at": -1},
    ]:
        assert api.set_budget("p", {"n": entry}).status == 422, entry
    assert store.get("p", "n") is None
    api.call("PUT", f"/projects/{P}/users/{U}", user, body={"total_budget": 1})
    for cost in [
        {"model": "m", "cost": -1},
        {"model": "m", "usage": {"prompt_tokens": 10**9 + 1}},
        {"model": "m", "usage": {"prompt_tokens": 1.5}},
    ]:
        assert api.call("POST", f"/projects/{P}/users/{U}/cost", user, body=cost).status == 422, cost
    response = api.call("GET", f"/projects/{P}/users", {"project": "p"}, query={"limit": "1001"})
    assert response.status == 422


def test_models_per_budget_are_capped_on_every_path(api, aws):
    """Items must stay under DynamoDB's 400 KB: a budget tracks at most MAX_MODELS_PER_USER models."""
    from budget_service.schemas import MAX_MODELS_PER_USER

    full = {f"model-{i:04d}": 0.001 for i in range(MAX_MODELS_PER_USER)}
    assert api.set_budget("cap", {"u": {"total_budget": 100, "model_cost": full}}).status == 200
    cost = "/projects/{project}/users/{user}/cost"
    # A model already tracked is fine; a new one is a 422 that writes nothing.
    assert (
        api.call(
            "POST", cost, {"project": "cap", "user": "u"}, body={"model": "model-0001", "cost": 1}
        ).status
        == 200
    )
    r = api.call("POST", cost, {"project": "cap", "user": "u"}, body={"model": "one-too-many", "cost": 1})
    assert r.status == 422 and str(MAX_MODELS_PER_USER) in r.json()["error"]["message"], r
    # set_budget: the union of stored and sent models is checked before anything is written.
    more = {"total_budget": 100, "model_cost": {"another": 5}}
    r = api.set_budget("cap", {"fresh": {"total_budget": 1}, "u": more})
    assert r.status == 422, r
    data = api.get_budget("cap").json()["data"]
    assert "fresh" not in data and len(data["u"]["model_cost"]) == MAX_MODELS_PER_USER
    # current_cost covers its models: the 1,000 sent (1.0, the entry had no current_cost) + 1.
    assert data["u"]["current_cost"] == 2
