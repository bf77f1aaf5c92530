"""Bad input gets a clear 4xx JSON error and writes nothing."""

import json

import pytest

USER = "/projects/{project}/users/{user}"
GOOD_ENTRY = {"total_budget": 10, "current_cost": 1, "model_cost": {"m": 1}}


def items(aws) -> int:
    return aws.scan(TableName="budgets-test", Select="COUNT")["Count"]


def assert_rejected(response, status=422, mentions=None):
    assert response.status == status, response
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if mentions:
        assert mentions in error["message"] or mentions in json.dumps(error.get("details")), error


def set_budget_raw(api, text):
    return api.call("POST", "/set_budget", body=text)


BAD_SET_BUDGET_BODIES = {
    "missing project_name": ({"user_dict": {"u": GOOD_ENTRY}}, "project_name"),
    "empty project_name": ({"project_name": "", "user_dict": {"u": GOOD_ENTRY}}, "project_name"),
    "project_name not a string": ({"project_name": 7, "user_dict": {}}, "project_name"),
    "user_dict not an object": ({"project_name": "p", "user_dict": ["u"]}, "user_dict"),
    "user_dict missing": ({"project_name": "p"}, "user_dict"),
    "negative budget": ({"project_name": "p", "user_dict": {"u": {"total_budget": -1}}}, "total_budget"),
    "negative cost": (
        {"project_name": "p", "user_dict": {"u": {"total_budget": 1, "current_cost": -0.5}}},
        "current_cost",
    ),
    "negative model cost": (
        {"project_name": "p", "user_dict": {"u": {"total_budget": 1, "model_cost": {"m": -1}}}},
        "model_cost",
    ),
    "non-numeric budget": (
        {"project_name": "p", "user_dict": {"u": {"total_budget": "ten"}}},
        "total_budget",
    ),
    "numeric string budget": (
        {"project_name": "p", "user_dict": {"u": {"total_budget": "10"}}},
        "total_budget",
    ),
    "boolean budget": ({"project_name": "p", "user_dict": {"u": {"total_budget": True}}}, "total_budget"),
    "budget over the limit": (
        {"project_name": "p", "user_dict": {"u": {"total_budget": 1e13}}},
        "total_budget",
    ),
    "zero duration": (
        {"project_name": "p", "user_dict": {"u": {"total_budget": 1, "duration": 0}}},
        "duration",
    ),
    "text duration": (
        {"project_name": "p", "user_dict": {"u": {"total_budget": 1, "duration": "monthly"}}},
        "duration",
    ),
    "empty user id": ({"project_name": "p", "user_dict": {"": GOOD_ENTRY}}, "user_dict"),
    "user id over 256": ({"project_name": "p", "user_dict": {"u" * 257: GOOD_ENTRY}}, "user_dict"),
    "user id with a control character": (
        {"project_name": "p", "user_dict": {"a\nb": GOOD_ENTRY}},
        "user_dict",
    ),
    "project id over 256": ({"project_name": "p" * 257, "user_dict": {"u": GOOD_ENTRY}}, "project_name"),
    "project id with a control character": (
        {"project_name": "p\x00", "user_dict": {"u": GOOD_ENTRY}},
        "project_name",
    ),
    "model name with a control character": (
        {"project_name": "p", "user_dict": {"u": {"total_budget": 1, "model_cost": {"m\x1b": 1}}}},
        "model_cost",
    ),
    "entry not an object": ({"project_name": "p", "user_dict": {"u": 5}}, "user_dict"),
}


@pytest.mark.parametrize("case", sorted(BAD_SET_BUDGET_BODIES))
def test_set_budget_rejects(api, aws, case):
    body, field = BAD_SET_BUDGET_BODIES[case]
    assert_rejected(api.call("POST", "/set_budget", body=body), mentions=field)
    assert items(aws) == 0


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected(api, aws, token):
    text = '{"project_name": "p", "user_dict": {"u": {"total_budget": TOKEN}}}'.replace("TOKEN", token)
    assert_rejected(set_budget_raw(api, text), mentions="total_budget")
    text = '{"project_name": "p", "user_dict": {"u": {"total_budget": 1, "current_cost": TOKEN}}}'.replace(
        "TOKEN", token
    )
    assert_rejected(set_budget_raw(api, text), mentions="current_cost")
    assert_rejected(api.call("PUT", USER, {"project": "p", "user": "u"}, body=f'{{"total_budget": {token}}}'))
    assert items(aws) == 0


def test_one_invalid_entry_means_nothing_is_written(api, aws):
    body = {"project_name": "p", "user_dict": {f"ok{i}": GOOD_ENTRY for i in range(5)}}
    body["user_dict"]["bad"] = {"total_budget": -1}
    assert_rejected(api.call("POST", "/set_budget", body=body), mentions="bad")
    assert items(aws) == 0
    assert api.get_budget("p").json()["status"] == "error"


@pytest.mark.parametrize("route", ["/set_budget", "/get_budget"])
@pytest.mark.parametrize("text", ['{"project_name": ', "not json", "", "[1, 2]"])
def test_a_body_that_is_not_a_json_object_is_4xx(api, aws, route, text):
    r = api.call("POST", route, body=text)
    assert r.status in (400, 422), r
    assert r.json()["error"]["message"]
    assert items(aws) == 0


def test_get_budget_rejects_a_missing_or_empty_project(api):
    assert_rejected(api.call("POST", "/get_budget", body={}), mentions="project_name")
    assert_rejected(api.call("POST", "/get_budget", body={"project_name": ""}), mentions="project_name")


BAD_PUT_BODIES = {
    "unknown duration": {"total_budget": 1, "duration": "fortnightly"},
    "numeric duration": {"total_budget": 1, "duration": 7},
    "negative budget": {"total_budget": -3},
    "non-numeric budget": {"total_budget": "lots"},
    "missing budget": {"duration": "daily"},
    "unknown timezone": {"total_budget": 1, "duration": "daily", "timezone": "Mars/Olympus"},
    # The host's own zoneinfo files, which ZoneInfo opens too: their meaning depends on the machine.
    "host's localtime": {"total_budget": 1, "duration": "daily", "timezone": "localtime"},
    "host's posixrules": {"total_budget": 1, "duration": "daily", "timezone": "posixrules"},
    "leap-second variant": {"total_budget": 1, "duration": "daily", "timezone": "right/UTC"},
    "posix/ copy": {"total_budget": 1, "duration": "monthly", "timezone": "posix/Europe/Paris"},
    "unknown field": {"total_budget": 1, "budget": 2},
}


@pytest.mark.parametrize("case", sorted(BAD_PUT_BODIES))
def test_put_rejects(api, aws, case):
    assert_rejected(api.call("PUT", USER, {"project": "p", "user": "u"}, body=BAD_PUT_BODIES[case]))
    assert items(aws) == 0


@pytest.mark.parametrize(
    "project,user",
    [("p" * 257, "u"), ("p", "u" * 257), ("p\x07", "u"), ("p", "line\nbreak"), ("p", "\x7f")],
)
def test_native_ids_too_long_or_with_control_characters(api, aws, project, user):
    r = api.call("PUT", USER, {"project": project, "user": user}, body={"total_budget": 1})
    assert_rejected(r)
    assert_rejected(api.call("GET", USER, {"project": project, "user": user}))
    assert items(aws) == 0


def test_an_empty_id_in_the_path_is_a_4xx(api, aws):
    r = api.call("PUT", USER, {"project": "", "user": "u"}, body={"total_budget": 1})
    assert 400 <= r.status < 500 and r.json()["error"]["message"]
    assert items(aws) == 0


def test_a_body_over_the_limit_is_413(api, aws):
    big = {"project_name": "p", "user_dict": {f"u{i}": GOOD_ENTRY for i in range(40000)}}
    r = api.call("POST", "/set_budget", body=big)
    assert_rejected(r, status=413)
    assert items(aws) == 0


FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends by default


@pytest.mark.parametrize("headers", [FORM, {"Content-Type": "text/plain"}, {"Content-Type": ""}])
def test_a_json_body_is_read_as_json_whatever_its_content_type(api, aws, headers):
    body = json.dumps({"total_budget": 10, "duration": "daily"})
    r = api.call("PUT", USER, {"project": "p", "user": "u"}, body=body, headers=headers)
    assert r.status == 201, r
    assert r.json()["total_budget"] == 10


def test_a_form_body_is_a_400_not_a_form(api, aws):
    r = api.call("PUT", USER, {"project": "p", "user": "u"}, body="total_budget=10", headers=FORM)
    assert_rejected(r, 400)
    assert items(aws) == 0
