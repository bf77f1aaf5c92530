"""Every sample event in events/ works with `sam local invoke -e` semantics: the handler the
template names answers it with the status the README documents."""

import json

from conftest import Response, lambda_context

from localdev import template

# In this order on an empty table (the README's API table gives the same statuses).
DOCUMENTED = [
    ("PutBudget", 201),
    ("GetBudget", 200),
    ("ListBudgets", 200),
    ("ResetBudget", 200),
    ("UpdateCost", 200),
    ("ProjectedCost", 200),
    ("PutPrice", 201),
    ("GetPrice", 200),
    ("ListPrices", 200),
    ("DeletePrice", 204),
    ("DeleteBudget", 204),
    ("LitellmSetBudget", 200),
    ("LitellmGetBudget", 200),
]


def test_documented_statuses_cover_every_route():
    assert sorted(e for e, _ in DOCUMENTED) == sorted(r.event_id for r in template.api_routes())


def invoke(route: template.ApiRoute, event: dict) -> Response:
    """What ``sam local invoke <Function> -e <event>`` does: the template's handler, called."""
    return Response(template.load_handler(route.function_id)(event, lambda_context(route.function_id)))


def test_each_event_gives_its_documented_status(aws):
    routes = {r.event_id: r for r in template.api_routes()}
    for event_id, status in DOCUMENTED:
        route = routes[event_id]
        response = invoke(route, json.loads(route.event_file.read_text()))
        assert response.status == status, (event_id, response)
        if response.status != 204:
            assert response.raw["multiValueHeaders"]["Content-Type"] == ["application/json"]
            response.json()
