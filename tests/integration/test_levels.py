"""Budget levels through their handlers on in-process moto: project and team caps,
every charge moving all levels in one transaction, refusals naming the level, periods per level,
and bad input that writes nothing."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from conftest import CLOCK_START

from budget_service.store import base as store_module
from budget_service.store.levels import PROJECT_SK, get_level, team_sk

USER = "/projects/{project}/users/{user}"
PROJECT = "/projects/{project}/budget"
TEAM = "/projects/{project}/teams/{team}"
TEAMS = "/projects/{project}/teams"
COST = USER + "/cost"
HOLDS = USER + "/holds"
SETTLE = USER + "/holds/{hold_id}/settle"
RELEASE = USER + "/holds/{hold_id}"
T0 = CLOCK_START  # the clock fixture starts here (2027-01-15T08:00:00Z)


def dumps(body) -> str:
    return json.dumps(body, default=lambda d: f"@@{d}@@").replace('"@@', "").replace('@@"', "")


@pytest.fixture
def acme(api, clock):
    """The README's example: project cap $100/month, team "research" $30, user alice $10 in it."""
    assert (
        api.call(
            "PUT", PROJECT, {"project": "acme"}, body={"total_budget": 100, "duration": "monthly"}
        ).status
        == 201
    )
    assert (
        api.call(
            "PUT",
            TEAM,
            {"project": "acme", "team": "research"},
            body={"total_budget": 30, "duration": "monthly"},
        ).status
        == 201
    )
    created = api.call(
        "PUT",
        USER,
        {"project": "acme", "user": "alice"},
        body={"total_budget": 10, "duration": "daily", "team": "research"},
    )
    assert created.status == 201, created
    return api


def levels(aws) -> tuple:
    store = store_module.BudgetStore("budgets-test", client=aws)
    user = store.get("acme", "alice")
    team = get_level(store, "acme", team_sk("research"))
    project = get_level(store, "acme", PROJECT_SK)
    return user, team, project


def spend_of(aws):
    user, team, project = levels(aws)
    return user.current_cost, team["current_cost"], project["current_cost"]


def table_items(aws) -> list[dict]:
    return sorted(aws.scan(TableName="budgets-test")["Items"], key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


@pytest.fixture
def requests_made(aws):
    client = store_module.default_store().client
    sent: list[str] = []

    def record(event_name, **kwargs):
        sent.append(event_name.rsplit(".", 1)[-1])

    client.meta.events.register("before-sign.dynamodb", record)
    yield sent
    client.meta.events.unregister("before-sign.dynamodb", record)


ALICE = {"project": "acme", "user": "alice"}


def test_a_cost_moves_user_team_and_project_by_the_same_amount_in_one_request(acme, aws, requests_made):
    cost = Decimal("0.123456789012345678901234567")
    assert acme.call("POST", COST, ALICE, body=dumps({"model": "m", "cost": Decimal("0.5")})).status == 200
    requests_made.clear()  # the first charge in this container learnt alice's levels
    assert acme.call("POST", COST, ALICE, body=dumps({"model": "m", "cost": cost})).status == 200
    assert requests_made == ["TransactWriteItems"]
    expected = Decimal("0.5") + Decimal("0.1234567890123456789012346")  # quantized to 25 places
    assert spend_of(aws) == (expected, expected, expected)
    user, team, project = levels(aws)
    assert user.model_cost == team["model_cost"] == project["model_cost"] == {"m": expected}
    assert team["available"] == 30 - expected and project["available"] == 100 - expected


def test_a_hold_that_fits_the_user_but_not_the_team_is_refused_naming_it(acme, aws):
    bob = {"project": "acme", "user": "bob"}
    acme.call("PUT", USER, bob, body={"total_budget": 25, "team": "research"})
    assert acme.call("POST", HOLDS, bob, body={"amount": 24}).status == 201
    before = table_items(aws)
    refused = acme.call("POST", HOLDS, ALICE, body={"amount": 8})
    assert refused.status == 402, refused
    assert refused.json()["error"]["details"] == [
        {"level": "team", "name": "research", "available": 6, "needed": 8}
    ]
    assert table_items(aws) == before  # nothing written at any level
    assert acme.call("POST", HOLDS, ALICE, body={"amount": 6}).status == 201


def test_a_hold_over_the_project_cap_names_the_project(api, clock, aws):
    api.call("PUT", PROJECT, {"project": "acme"}, body={"total_budget": 5})
    api.call("PUT", USER, ALICE, body={"total_budget": 10})
    before = table_items(aws)
    refused = api.call("POST", HOLDS, ALICE, body={"amount": 6})
    assert refused.status == 402
    assert refused.json()["error"]["details"] == [
        {"level": "project", "name": "acme", "available": 5, "needed": 6}
    ]
    assert table_items(aws) == before
    both = api.call("POST", HOLDS, ALICE, body={"amount": 11})  # over the user and the project
    assert {d["level"] for d in both.json()["error"]["details"]} == {"user", "project"}


def test_hold_settle_release_move_every_level(acme, aws):
    h = acme.call("POST", HOLDS, ALICE, body={"amount": 4}).json()
    user, team, project = levels(aws)
    assert (user.held, team["held"], project["held"]) == (4, 4, 4)
    settled = acme.call("POST", SETTLE, {**ALICE, "hold_id": h["hold_id"]}, body={"model": "m", "cost": 1.5})
    assert settled.status == 200, settled
    user, team, project = levels(aws)
    assert (user.held, team["held"], project["held"]) == (0, 0, 0)
    assert spend_of(aws) == (Decimal("1.5"),) * 3
    assert (team["available"], project["available"]) == (Decimal("28.5"), Decimal("98.5"))
    other = acme.call("POST", HOLDS, ALICE, body={"amount": 2}).json()
    assert acme.call("DELETE", RELEASE, {**ALICE, "hold_id": other["hold_id"]}).json()["released"] is True
    user, team, project = levels(aws)
    assert (user.held, team["held"], project["held"]) == (0, 0, 0)
    assert (team["available"], project["available"]) == (Decimal("28.5"), Decimal("98.5"))


def test_holds_of_a_deleted_user_free_the_team_and_project_when_released_or_expired(acme, aws, clock):
    """Deleting a user leaves its live holds; releasing one (DELETE) or its expiry (the job) must
    still free what it reserved on the team and the project, or their held stays up for good
    and blocks everyone else's holds. A team deleted since is skipped."""
    from budget_service.domain.resets import update_budget_all_users

    released = acme.call("POST", HOLDS, ALICE, body={"amount": 4}).json()["hold_id"]
    expiring = acme.call("POST", HOLDS, ALICE, body={"amount": 3, "ttl_seconds": 60}).json()["hold_id"]
    kept = acme.call("POST", HOLDS, ALICE, body={"amount": 2}).json()["hold_id"]
    assert acme.call("DELETE", USER, ALICE).status == 204
    answer = acme.call("DELETE", RELEASE, {**ALICE, "hold_id": released})
    assert answer.status == 200 and answer.json()["released"] is True, answer
    _, team, project = levels(aws)
    assert (team["held"], project["held"]) == (5, 5)
    assert (team["available"], project["available"]) == (25, 95)
    assert acme.call("DELETE", RELEASE, {**ALICE, "hold_id": released}).json()["released"] is False
    clock.now += 61
    assert update_budget_all_users(clock.now).holds_expired == 1
    _, team, project = levels(aws)
    assert (team["held"], project["held"]) == (2, 2)
    assert acme.call("DELETE", RELEASE, {**ALICE, "hold_id": expiring}).json()["state"] == "expired"
    assert acme.call("DELETE", TEAM, {"project": "acme", "team": "research"}).status == 204
    assert acme.call("DELETE", RELEASE, {**ALICE, "hold_id": kept}).json()["released"] is True
    project = get_level(store_module.BudgetStore("budgets-test", client=aws), "acme", PROJECT_SK)
    assert (project["held"], project["available"]) == (0, 100)


def test_a_settle_frees_the_levels_its_hold_reserved_even_after_the_user_moved(acme, aws):
    acme.call("PUT", TEAM, {"project": "acme", "team": "ops"}, body={"total_budget": 50})
    h = acme.call("POST", HOLDS, ALICE, body={"amount": 3}).json()
    acme.call("PUT", USER, ALICE, body={"total_budget": 10, "duration": "daily", "team": "ops"})
    acme.call("POST", SETTLE, {**ALICE, "hold_id": h["hold_id"]}, body={"model": "m", "cost": 1})
    store = store_module.BudgetStore("budgets-test", client=aws)
    research, ops = get_level(store, "acme", team_sk("research")), get_level(store, "acme", team_sk("ops"))
    assert (research["held"], research["current_cost"]) == (0, 1)  # the team that authorized it
    assert (ops["held"], ops["current_cost"]) == (0, 0)
    acme.call("POST", COST, ALICE, body={"model": "m", "cost": 2})  # from now on: ops
    assert get_level(store, "acme", team_sk("ops"))["current_cost"] == 2
    assert get_level(store, "acme", team_sk("research"))["current_cost"] == 1


def test_a_cap_created_after_a_charge_is_moved_by_the_next(api, clock, aws):
    api.call("PUT", USER, ALICE, body={"total_budget": 10})
    api.call("POST", COST, ALICE, body={"model": "m", "cost": 1})  # the hint: no project level
    api.call("PUT", PROJECT, {"project": "acme"}, body={"total_budget": 5})
    api.call("POST", COST, ALICE, body={"model": "m", "cost": 2})
    store = store_module.BudgetStore("budgets-test", client=aws)
    assert get_level(store, "acme", PROJECT_SK)["current_cost"] == 2  # counted from its creation
    assert api.call("POST", HOLDS, ALICE, body={"amount": 4}).status == 402  # 3 left on the project
    assert api.call("DELETE", PROJECT, {"project": "acme"}).status == 204
    assert api.call("POST", HOLDS, ALICE, body={"amount": 4}).status == 201  # the cap is gone


def test_each_level_rolls_over_at_its_own_boundary_once(acme, clock, aws):
    acme.call("POST", COST, ALICE, body={"model": "m", "cost": 1})
    user, _, project = levels(aws)
    clock.now = user.reset_at + 1  # the next day: alice's daily period ended, the month did not
    acme.call("POST", COST, ALICE, body={"model": "m", "cost": 2})
    assert spend_of(aws) == (2, 3, 3)
    month_end = project["reset_at"]
    clock.now = month_end + 1  # the next month: every level rolls over
    acme.call("POST", COST, ALICE, body={"model": "m", "cost": 4})
    user, team, project = levels(aws)
    assert spend_of(aws) == (4, 4, 4)
    assert project["period_start"] == team["period_start"] == month_end
    # Rolled over once: one closed period each, holding the spend it closed.
    closed = [
        i for i in map(store_module.plain_item, table_items(aws)) if i.get("level") in ("TEAM", "PROJECT")
    ]
    closed = [i for i in closed if "history_pk" in i]
    assert sorted((i["level"], i["spend"]) for i in closed) == [("PROJECT", 3), ("TEAM", 3)]


def test_level_records(acme):
    acme.call("POST", HOLDS, ALICE, body={"amount": 2})
    acme.call("PUT", USER, {"project": "acme", "user": "bob"}, body={"total_budget": 1})
    project = acme.call("GET", PROJECT, {"project": "acme"}).json()
    assert (project["level"], project["users"], project["held"], project["available"]) == (
        "project",
        2,
        2,
        98,
    )
    assert project["duration"] == "monthly" and project["period_start"] == "2027-01-01T00:00:00Z"
    team = acme.call("GET", TEAM, {"project": "acme", "team": "research"}).json()
    assert (team["level"], team["team"], team["users"], team["total_budget"]) == ("team", "research", 1, 30)
    listed = acme.call("GET", TEAMS, {"project": "acme"}, query={"limit": "1"}).json()
    assert [t["team"] for t in listed["teams"]] == ["research"]
    assert acme.call("GET", USER, ALICE).json()["team"] == "research"
    for resource, params in ((PROJECT, {"project": "other"}), (TEAM, {"project": "acme", "team": "nope"})):
        missing = acme.call("GET", resource, params)
        assert missing.status == 404 and missing.json()["error"]["code"] == "level_not_found"


BAD_USERS = {
    "a team that does not exist": {"total_budget": 1, "team": "nope"},
    "a team of another project": {"total_budget": 1, "team": "elsewhere"},
}


@pytest.mark.parametrize("body", BAD_USERS.values(), ids=BAD_USERS.keys())
def test_bad_team_is_a_422_that_writes_nothing(acme, aws, body):
    acme.call("PUT", TEAM, {"project": "other", "team": "elsewhere"}, body={"total_budget": 1})
    before = table_items(aws)
    response = acme.call("PUT", USER, {"project": "acme", "user": "carol"}, body=body)
    assert response.status == 422, response
    assert table_items(aws) == before


@pytest.mark.parametrize(
    "body",
    [
        {"total_budget": 1, "duration": "fortnightly"},
        {"total_budget": -1},
        {"total_budget": 1, "timezone": "Mars/Olympus"},
        {"total_budget": 1, "x": 1},
    ],
)
def test_bad_level_settings_are_422_and_write_nothing(api, aws, body):
    for resource, params in ((PROJECT, {"project": "acme"}), (TEAM, {"project": "acme", "team": "t"})):
        response = api.call("PUT", resource, params, body=body)
        assert response.status == 422, (resource, response)
    assert table_items(aws) == []


def test_concurrent_first_requests_under_a_default_budget_create_the_user_once(served_api, server_store):
    import threading
    import uuid

    from conftest import run_threads

    project = f"defaults-{uuid.uuid4().hex[:8]}"
    put = served_api.call(
        "PUT",
        PROJECT,
        {"project": project},
        body={"total_budget": 100, "default_user_budget": {"total_budget": 2, "duration": "daily"}},
    )
    assert put.status == 201, put
    who = {"project": project, "user": "newcomer"}
    barrier = threading.Barrier(8)
    answers: list = []

    def first(n: int) -> None:
        barrier.wait()
        if n % 2:
            answers.append(served_api.call("POST", COST, who, body=json.dumps({"model": "m", "cost": 0.25})))
        else:
            answers.append(served_api.call("POST", HOLDS, who, body={"amount": 0.25}))

    run_threads([threading.Thread(target=first, args=(n,)) for n in range(8)])
    assert sorted(a.status for a in answers) == [200] * 4 + [201] * 4, answers
    user = server_store.get(project, "newcomer")
    assert (user.total_budget, user.current_cost, user.held, user.duration.value) == (2, 1, 1, "daily")
    assert user.available == 0
    project_level = get_level(server_store, project, PROJECT_SK)
    assert (project_level["current_cost"], project_level["held"]) == (1, 1)
    unknown = served_api.call(
        "POST", COST, {"project": "no-defaults", "user": "x"}, body={"model": "m", "cost": 1}
    )
    assert unknown.status == 404


def test_the_default_user_budget_is_shown_with_its_amount_as_a_json_number(api, clock):
    """Money in an answer is a JSON number, exact: the project record showed the default budget's
    total_budget as a string ("0.5"), which a JSON client adds to as text."""
    body = {"total_budget": 100, "default_user_budget": {"total_budget": 0.5, "duration": "daily"}}
    for answer in (
        api.call("PUT", PROJECT, {"project": "acme"}, body=body),
        api.call("GET", PROJECT, {"project": "acme"}),
    ):
        shown = json.loads(answer.text)["default_user_budget"]
        assert shown["total_budget"] == 0.5 and shown["duration"] == "daily", answer
        assert answer.json()["default_user_budget"]["total_budget"] == Decimal("0.5")


def test_the_project_budget_sets_the_projects_default_alert_thresholds(api, clock, aws):
    """README, Alerts: the project's default thresholds are the project budget item's
    default_alert_thresholds, which PUT /projects/{p}/budget sets (it answered 422, extra input)."""
    from budget_service.store.alerts import AlertLedgerStore

    defaults = AlertLedgerStore("budgets-test")
    body = {"total_budget": 100, "default_alert_thresholds": [0.9, 0.5, 0.9]}
    put = api.call("PUT", PROJECT, {"project": "acme"}, body=body)
    assert put.status == 201, put
    assert put.json()["default_alert_thresholds"] == [Decimal("0.5"), Decimal("0.9")]
    assert defaults.project_default_thresholds("acme") == (Decimal("0.5"), Decimal("0.9"))
    off = api.call(
        "PUT", PROJECT, {"project": "acme"}, body={"total_budget": 100, "default_alert_thresholds": []}
    )
    assert off.status == 200 and off.json()["default_alert_thresholds"] == []
    assert defaults.project_default_thresholds("acme") == ()
    inherit = api.call("PUT", PROJECT, {"project": "acme"}, body={"total_budget": 100})
    assert inherit.status == 200 and inherit.json()["default_alert_thresholds"] is None
    assert defaults.project_default_thresholds("acme") is None
    before = table_items(aws)
    for params, resource, bad in (
        ({"project": "acme", "team": "t"}, TEAM, {"total_budget": 1, "default_alert_thresholds": [0.5]}),
        ({"project": "acme"}, PROJECT, {"total_budget": 1, "default_alert_thresholds": [0]}),
    ):
        assert api.call("PUT", resource, params, body=bad).status == 422
    assert table_items(aws) == before


def test_a_default_budget_on_a_team_or_a_bad_one_is_a_422(api, aws):
    bad = [
        (
            {"project": "acme"},
            PROJECT,
            {"total_budget": 1, "default_user_budget": {"total_budget": 1, "duration": "hourly"}},
        ),
        (
            {"project": "acme", "team": "t"},
            TEAM,
            {"total_budget": 1, "default_user_budget": {"total_budget": 1}},
        ),
    ]
    for params, resource, body in bad:
        assert api.call("PUT", resource, params, body=body).status == 422
    assert table_items(aws) == []


@pytest.mark.parametrize("first", ["job", "charge"])
def test_the_job_and_a_charge_roll_each_level_over_once_whichever_comes_first(acme, clock, aws, first):
    """A monthly project and team over a daily user: at the month's end the scheduled job and a
    charge's lazy rollover race; each level's period rolls over exactly once."""
    from budget_service.domain.resets import update_budget_all_users

    acme.call("POST", COST, ALICE, body={"model": "m", "cost": 1})
    _, team, project = levels(aws)
    versions = (sum(team["slice_versions"]), sum(project["slice_versions"]))
    clock.now = project["reset_at"] + 5
    if first == "job":
        summary = update_budget_all_users(clock.now)
        assert (summary.levels_reset, summary.reset) == (2, 1)  # team, project; alice
        acme.call("POST", COST, ALICE, body={"model": "m", "cost": 2})
        assert update_budget_all_users(clock.now).levels_reset == 0
    else:
        acme.call("POST", COST, ALICE, body={"model": "m", "cost": 2})
        summary = update_budget_all_users(clock.now)
        assert summary.levels_reset == 0  # the charge rolled them over lazily: nothing due
    _, team, project = levels(aws)
    assert spend_of(aws) == (2, 2, 2)
    # One rollover (every slice once) and one charge (one slice) each since: the period rolled
    # over exactly once.
    slices_of = len(team["slice_versions"])
    assert (sum(team["slice_versions"]), sum(project["slice_versions"])) == (
        versions[0] + slices_of + 1,
        versions[1] + slices_of + 1,
    )
    assert project["period_start"] == clock.now - 5


@pytest.mark.parametrize("rolled_first", ["none", "user", "project"])
def test_a_charge_that_arrives_after_a_level_rolled_past_its_time_counts_in_the_new_period_everywhere(
    api, clock, aws, rolled_first
):
    """A charge timed just before a month end reaches DynamoDB after one of its levels has rolled
    over (by the job or another charge): every level counts it in the new period, none in a
    period another level has already closed and recorded. Nobody rolled over yet: the old
    periods, at its own time."""
    from moments import utc

    from budget_service.core.records import roll
    from budget_service.domain.resets import update_budget_all_users
    from budget_service.store.history import HistoryStore
    from budget_service.store.levels import LevelWriter, roll_level

    month_end = utc("2027-02-01T00:00:00")
    clock.now = month_end - 3600
    for resource, params, body in (
        (PROJECT, {"project": "acme"}, {"total_budget": 100, "duration": "monthly"}),
        (TEAM, {"project": "acme", "team": "research"}, {"total_budget": 30, "duration": "monthly"}),
        (USER, ALICE, {"total_budget": 10, "duration": "daily", "team": "research"}),
    ):
        assert api.call("PUT", resource, params, body=body).status == 201
    assert api.call("POST", COST, ALICE, body={"model": "m", "cost": 1}).status == 200
    store = store_module.BudgetStore("budgets-test", client=aws)
    after = month_end + 5
    if rolled_first == "user":
        store.update("acme", "alice", lambda current: roll(current, after))
    elif rolled_first == "project":
        assert roll_level(
            aws, "budgets-test", "acme", PROJECT_SK, get_level(store, "acme", PROJECT_SK), after
        )
    LevelWriter(store).add_cost("acme", "alice", "m", Decimal(2), month_end - 1)  # timed before it
    update_budget_all_users(after, store)  # rolls over whatever is left
    late_in_new = rolled_first != "none"
    history = HistoryStore(store)
    for kind, level_id in (("USER", "alice"), ("TEAM", "research"), ("PROJECT", "")):
        (closed,), _ = history.periods_page("acme", kind, level_id, limit=10)
        assert (closed["period_end"], closed["spend"]) == (month_end, 1 if late_in_new else 3), kind
    assert spend_of(aws) == ((2, 2, 2) if late_in_new else (0, 0, 0))
    user, team, project = levels(aws)
    assert user.period_start == team["period_start"] == project["period_start"] == month_end


def test_a_list_of_teams_counts_their_users_in_one_pass(api, clock, aws, requests_made):
    """Each team's `users` is right, and the page costs one pass over the project's users
    whatever the number of teams (not one COUNT Query, reading every user, per team)."""
    teams = {"t0": 3, "t1": 0, "t2": 2, "t3": 1}
    for team, n in teams.items():
        api.call("PUT", TEAM, {"project": "acme", "team": team}, body={"total_budget": 10})
        for i in range(n):
            user = {"project": "acme", "user": f"{team}-u{i}"}
            assert api.call("PUT", USER, user, body={"total_budget": 1, "team": team}).status == 201
    api.call("PUT", USER, {"project": "acme", "user": "loner"}, body={"total_budget": 1})
    api.call(
        "PUT", USER, {"project": "acme", "user": "t0-u0"}, body={"total_budget": 1, "team": "t2"}
    )  # moved
    requests_made.clear()
    listed = api.call("GET", TEAMS, {"project": "acme"}).json()
    assert {t["team"]: t["users"] for t in listed["teams"]} == {"t0": 2, "t1": 0, "t2": 3, "t3": 1}
    assert requests_made.count("Query") == 2  # the teams, then the users' teams (one page each)
    assert api.call("GET", TEAM, {"project": "acme", "team": "t2"}).json()["users"] == 3


def test_the_team_list_shows_each_teams_sums_over_its_slices(acme):
    """Charges land on the team's slices at random; the list shows what the team's own record
    shows, not the part on one item."""
    for _ in range(12):
        assert acme.call("POST", COST, ALICE, body={"model": "m", "cost": 0.25}).status == 200
    listed = acme.call("GET", "/projects/{project}/teams", {"project": "acme"}).json()
    one = acme.call("GET", TEAM, {"project": "acme", "team": "research"}).json()
    (research,) = [t for t in listed["teams"] if t["team"] == "research"]
    assert research["current_cost"] == one["current_cost"] == 3
    assert research["available"] == one["available"] == 27


def test_levels_written_before_slices_are_dealt_by_the_upgrade_step_and_then_hold(api, aws, monkeypatch):
    """A level of one item (as written before slices) is proven absent by a charge's random
    slice; the upgrade step deals it, after which its cap holds for charges from any container."""
    from budget_service.domain.levels import deal_every_level
    from budget_service.store import levels as store_levels

    monkeypatch.setenv("LEVEL_SLICES", "1")
    api.call("PUT", PROJECT, {"project": "old"}, body={"total_budget": 1})
    api.call("PUT", USER, {"project": "old", "user": "ann"}, body={"total_budget": 100})
    monkeypatch.setenv("LEVEL_SLICES", "8")
    store = store_module.BudgetStore("budgets-test", client=aws)
    assert list(store_levels.undealt_levels(store)) == [("old", PROJECT_SK)]
    assert deal_every_level(store) == 1
    assert list(store_levels.undealt_levels(store)) == []
    admitted = 0
    for _ in range(30):
        store_levels.remember(
            "budgets-test", "old", "ann", store_levels.Plan(None, set())
        )  # a cold container
        body = {"model": "m", "cost": 0.1, "if_within_budget": True}
        admitted += api.call("POST", COST, {"project": "old", "user": "ann"}, body=body).status == 200
    assert admitted == 10
    assert get_level(store, "old", PROJECT_SK)["current_cost"] == 1
