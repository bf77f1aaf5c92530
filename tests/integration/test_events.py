"""Every sample event in events/ works with `sam local invoke -e` semantics: the handler the
template names answers it with the status the README documents."""

import json

from sample_events import DOCUMENTED, invoke, with_hold_id

from localdev import template


def test_documented_statuses_cover_every_route():
    assert sorted(e for e, _ in DOCUMENTED) == sorted(r.event_id for r in template.api_routes())


def test_each_event_gives_its_documented_status(aws):
    routes = {r.event_id: r for r in template.api_routes()}
    hold_id = None
    for event_id, status in DOCUMENTED:
        route = routes[event_id]
        response = invoke(route, with_hold_id(json.loads(route.event_file.read_text()), hold_id))
        if event_id == "CreateHold":
            hold_id = response.json()["hold_id"]
        assert response.status == status, (event_id, response)
        if response.status != 204:
            assert response.raw["multiValueHeaders"]["Content-Type"] == ["application/json"]
            response.json()
