"""The native budget API: create, read, list with pagination, reset and delete."""

from datetime import datetime
from decimal import Decimal

USER = "/projects/{project}/users/{user}"
USERS = "/projects/{project}/users"


def put(api, project, user, **body):
    return api.call("PUT", USER, {"project": project, "user": user}, body=body)


def get(api, project, user):
    return api.call("GET", USER, {"project": project, "user": user})


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_create_read_replace(api):
    r = put(api, "acme", "alice", total_budget=25, duration="weekly", timezone="Asia/Tokyo")
    assert r.status == 201, r
    created = r.json()
    assert created["project"] == "acme" and created["user"] == "alice"
    assert created["total_budget"] == 25 and created["current_cost"] == 0 and created["remaining"] == 25
    assert created["duration"] == "weekly" and created["timezone"] == "Asia/Tokyo"
    start = datetime.fromisoformat(created["period_start"].replace("Z", "+00:00"))
    assert start.weekday() in (0, 6)  # Monday 00:00 in Tokyo is Sunday 15:00 UTC
    assert epoch(created["reset_at"]) - epoch(created["period_start"]) == 7 * 86400

    assert get(api, "acme", "alice").json() == created

    r = put(api, "acme", "alice", total_budget=30, duration="weekly", timezone="Asia/Tokyo")
    assert r.status == 200
    replaced = r.json()
    assert replaced["total_budget"] == 30 and replaced["period_start"] == created["period_start"]
    assert replaced["created_at"] == created["created_at"]


def test_replacing_settings_keeps_the_spend(api):
    api.set_budget("keep", {"u": {"total_budget": 10, "current_cost": 4, "model_cost": {"m": 4}}})
    r = put(api, "keep", "u", total_budget=6, duration="daily")
    assert r.status == 200
    assert r.json()["current_cost"] == 4 and r.json()["remaining"] == 2 and r.json()["duration"] == "daily"


def test_unknown_budget_is_404(api):
    r = get(api, "acme", "ghost")
    assert r.status == 404 and r.json()["error"]["code"] == "budget_not_found"
    assert api.call("DELETE", USER, {"project": "acme", "user": "ghost"}).status == 404
    assert api.call("POST", USER + "/reset", {"project": "acme", "user": "ghost"}).status == 404


def test_list_pages_through_every_user_once(api):
    names = [f"user-{i:03d}" for i in range(23)]
    for n in names:
        assert put(api, "big", n, total_budget=1).status == 201
    put(api, "other", "not-me", total_budget=1)
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "10"} | ({"cursor": cursor} if cursor else {})
        r = api.call("GET", USERS, {"project": "big"}, query=query)
        assert r.status == 200, r
        page = r.json()
        assert len(page["users"]) <= 10
        seen += [u["user"] for u in page["users"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names and pages >= 3


def test_list_of_an_empty_project_is_empty(api):
    r = api.call("GET", USERS, {"project": "void"})
    assert r.status == 200 and r.json() == {"users": [], "next_cursor": None}


def test_bad_cursor_and_limit_are_4xx(api):
    assert api.call("GET", USERS, {"project": "p"}, query={"cursor": "!!not-ours"}).status == 422
    assert api.call("GET", USERS, {"project": "p"}, query={"limit": "0"}).status == 422
    assert api.call("GET", USERS, {"project": "p"}, query={"limit": "1001"}).status == 422


def test_reset_zeroes_spend_and_starts_a_new_period(api):
    now = datetime.now().timestamp()
    api.set_budget(
        "r",
        {
            "u": {
                "total_budget": 10,
                "current_cost": 3,
                "model_cost": {"m": 3},
                "duration": 7,
                "created_at": now - 3600,
                "last_updated_at": now - 3600,
            }
        },
    )
    r = api.call("POST", USER + "/reset", {"project": "r", "user": "u"})
    assert r.status == 200, r
    body = r.json()
    assert body["current_cost"] == 0 and body["model_cost"] == {} and body["remaining"] == 10
    assert epoch(body["period_start"]) >= now - 1
    assert epoch(body["reset_at"]) - epoch(body["period_start"]) == 7 * 86400
    # litellm sees the new period too, and a stale client cannot bring the old spend back.
    entry = api.get_budget("r").json()["data"]["u"]
    assert entry["current_cost"] == 0 and entry["last_updated_at"] >= Decimal(str(now - 1))
    stale = {
        "total_budget": 10,
        "current_cost": 3,
        "model_cost": {"m": 3},
        "duration": 7,
        "created_at": now - 3600,
        "last_updated_at": now - 3600,
    }
    answer = api.set_budget("r", {"u": stale}).json()
    # The copy sends what it sent before the reset: nothing new, so nothing is counted again.
    assert answer["unchanged"] == ["u"] and answer["written"] == []
    assert get(api, "r", "u").json()["current_cost"] == 0


def test_delete_removes_the_budget(api):
    put(api, "d", "u", total_budget=1)
    r = api.call("DELETE", USER, {"project": "d", "user": "u"})
    assert r.status == 204 and r.text == ""
    assert get(api, "d", "u").status == 404
    assert api.get_budget("d").json()["status"] == "error"
