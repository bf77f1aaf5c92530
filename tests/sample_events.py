"""The sample events in events/, invoked as `sam local invoke -e` would: their documented statuses
and the helpers the tests that replay them share."""

import json

from conftest import Response, lambda_context

from localdev import template

# In this order on an empty table (the README's API table gives the same statuses).
DOCUMENTED = [
    ("PutProjectBudget", 201),
    ("PutTeam", 201),
    ("GetProjectBudget", 200),
    ("GetTeam", 200),
    ("ListTeams", 200),
    ("PutBudget", 201),
    ("GetBudget", 200),
    ("ListBudgets", 200),
    ("ResetBudget", 200),
    ("UpdateCost", 200),
    ("Adjust", 201),
    ("ListPeriods", 200),
    ("Ledger", 200),
    ("SpendReport", 200),
    ("ProjectedCost", 200),
    ("PutPrice", 201),
    ("GetPrice", 200),
    ("ListPrices", 200),
    ("DeletePrice", 204),
    ("CreateHold", 201),
    ("SettleHold", 200),  # the hold CreateHold made (hold ids are random: substituted)
    ("ReleaseHold", 200),  # already settled: harmless, says released: false
    ("PutHoldSizing", 200),
    ("GetHoldSizing", 200),
    ("DeleteBudget", 204),
    ("DeleteTeam", 204),
    ("DeleteProjectBudget", 204),
    ("LitellmSetBudget", 200),
    ("LitellmGetBudget", 200),
]


def invoke(route: template.ApiRoute, event: dict) -> Response:
    """What ``sam local invoke <Function> -e <event>`` does: the template's handler, called."""
    return Response(template.load_handler(route.function_id)(event, lambda_context(route.function_id)))


def with_hold_id(event: dict, hold_id: str | None) -> dict:
    """A sample event for a hold route, naming the hold a previous sample created."""
    sample = (event.get("pathParameters") or {}).get("hold_id")
    if sample is None or hold_id is None:
        return event
    text = json.dumps(event).replace(sample, hold_id)
    return json.loads(text)
