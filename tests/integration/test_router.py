"""The HTTP edge (budget_service.api.http: Powertools' resolver) under hostile input: every
answer is a 4xx JSON error that writes nothing, never a 5xx, an exception out of the handler, or
a silently changed id."""

import pytest
from conftest import Response, lambda_context
from pydantic import TypeAdapter, ValidationError

from budget_service.api.http import ProjectId
from localdev import template
from localdev.events import api_gateway_event

USER = "/projects/{project}/users/{user}"


def items(aws) -> int:
    return aws.scan(TableName="budgets-test", Select="COUNT")["Count"]


def invoke(method: str, resource: str, event: dict) -> Response:
    route = next(r for r in template.api_routes() if (r.method, r.path) == (method, resource))
    return Response(template.load_handler(route.function_id)(event, lambda_context(route.function_id)))


def put_user_at(raw_path: str) -> dict:
    """A PUT of a user budget whose `path` is `raw_path`, as the client sent it."""
    event = api_gateway_event("PUT", USER, {"project": "p", "user": "u"}, body={"total_budget": 1})
    event["path"] = raw_path
    return event


def assert_invalid(response: Response, status: int = 422) -> dict:
    assert response.status == status, response
    error = response.json()["error"]
    assert error["code"] and error["message"], error
    return error


@pytest.mark.parametrize("value", ["alice\n", "\n", "a\nb", "alice\r\n"])
def test_a_path_id_ending_in_a_newline_breaks_the_id_pattern(value):
    # Python's `$` also matches before a final newline; pydantic's (the body's rule) does not.
    with pytest.raises(ValidationError):
        TypeAdapter(ProjectId).validate_python(value)


@pytest.mark.parametrize("encoded", ["alice%0A", "alice%0a", "%0A"])
def test_an_encoded_newline_in_a_path_id_is_refused_and_nothing_written(aws, encoded):
    response = invoke("PUT", USER, put_user_at(f"/projects/p/users/{encoded}"))
    assert "path.user" in assert_invalid(response)["message"]
    assert items(aws) == 0


@pytest.mark.parametrize(
    "encoded",
    [
        "%FF",  # not UTF-8 at all
        "a%FEb",
        "%C0%AF",  # overlong "/"
        "%ED%A0%80",  # a UTF-16 surrogate encoded as UTF-8
        "%E2%82",  # truncated sequence
    ],
)
def test_a_path_id_that_is_not_utf8_is_refused_not_replaced(aws, encoded):
    # Decoded leniently, %FF and %FE would both be the user "\ufffd": one budget, two names.
    response = invoke("PUT", USER, put_user_at(f"/projects/p/users/{encoded}"))
    error = assert_invalid(response)
    assert "path.user" in error["message"] and "UTF-8" in error["message"], error
    assert items(aws) == 0


def test_a_path_id_that_is_utf8_still_decodes(aws):
    response = invoke("PUT", USER, put_user_at("/projects/p/users/%C3%A9t%C3%A9%2Fx"))
    assert response.status == 201, response
    assert response.json()["user"] == "été/x"


@pytest.mark.parametrize(
    "query",
    [
        {"to": "9999-12-31T23:59:59-14:00"},  # year 10000 in UTC
        {"from": "0001-01-01T00:00:00+14:00"},  # year 0 in UTC
    ],
)
def test_a_report_range_beyond_the_calendar_in_utc_is_a_422(aws, query):
    event = api_gateway_event("GET", "/projects/{project}/spend", {"project": "p"}, query=query)
    assert_invalid(invoke("GET", "/projects/{project}/spend", event))


def test_a_body_with_a_raw_lone_surrogate_is_a_400(aws):
    # `sam local invoke -e` with "\ud800" in the event's body: the string holds a lone surrogate.
    event = put_user_at("/projects/p/users/u")
    event["body"] = '{"total_budget": 1, "timezone": "\ud800"}'
    assert_invalid(invoke("PUT", USER, event), 400)
    assert items(aws) == 0


def twice(event: dict, where: str, name: str, values: list[str]) -> dict:
    """`event` with `name` sent once per value, as API Gateway passes a repeated query parameter
    or header (every copy in the multi-value map, the last in the single-value one)."""
    single, multi = (
        ("queryStringParameters", "multiValueQueryStringParameters")
        if where == "query"
        else ("headers", "multiValueHeaders")
    )
    event[single] = {**(event[single] or {}), name: values[-1]}
    event[multi] = {**(event[multi] or {}), name: values}
    return event


def test_a_repeated_query_parameter_is_a_422_not_the_last_copy(aws):
    # As under Powertools' validating resolver: which copy counts is a guess; for purge, a
    # destructive one (?purge=false&purge=true).
    put = api_gateway_event("PUT", USER, {"project": "p", "user": "u"}, body={"total_budget": 1})
    assert invoke("PUT", USER, put).status == 201
    before = items(aws)
    delete = api_gateway_event("DELETE", USER, {"project": "p", "user": "u"})
    error = assert_invalid(invoke("DELETE", USER, twice(delete, "query", "purge", ["false", "true"])))
    assert "query.purge" in error["message"], error
    assert items(aws) == before
    users = "/projects/{project}/users"
    listing = twice(api_gateway_event("GET", users, {"project": "p"}), "query", "limit", ["abc", "5"])
    assert "query.limit" in assert_invalid(invoke("GET", users, listing))["message"]


def test_a_repeated_header_is_a_422_not_the_last_copy(aws):
    spend = "/projects/{project}/spend"
    event = api_gateway_event("GET", spend, {"project": "p"})
    event = twice(event, "header", "Accept", ["text/csv", "application/json"])
    # Header names are case-insensitive; Powertools names them in lower case (as openapi.json does).
    assert "header.accept" in assert_invalid(invoke("GET", spend, event))["message"]
    # Copies under names that differ in case are copies too.
    event = api_gateway_event("GET", spend, {"project": "p"})
    event["multiValueHeaders"] = {
        **event["multiValueHeaders"],
        "accept": ["text/csv"],
        "Accept": ["text/csv"],
    }
    assert_invalid(invoke("GET", spend, event))


def test_a_single_query_parameter_and_header_still_bind(aws):
    spend = "/projects/{project}/spend"
    event = api_gateway_event(
        "GET", spend, {"project": "p"}, query={"from": "2026-01-01"}, headers={"accept": "text/csv"}
    )
    response = invoke("GET", spend, event)
    assert response.status == 200, response
    assert response.text.startswith("user,model,spend,periods")


@pytest.mark.parametrize(
    "body, kind",
    [
        ("null", "null"),
        ("[]", "an array"),
        ('"x"', "a string"),
        ("1.5", "a number"),
        ("true", "a boolean"),
        ("NaN", "a number"),
    ],
)
def test_a_body_that_is_not_an_object_is_named_in_json_terms(aws, body, kind):
    event = put_user_at("/projects/p/users/u")
    event["body"] = body
    error = assert_invalid(invoke("PUT", USER, event), 400)
    assert error["message"] == f"the body must be a JSON object, not {kind}", error
    assert items(aws) == 0


def test_an_error_does_not_echo_long_input_once_per_problem(aws):
    # Each problem's field names the (too long) user id: 50 of them echoed a 100 KB body 50
    # times, a 5 MB answer; past Lambda's 6 MB response limit the caller gets a 502.
    entry = {"total_budget": "x", "model_cost": {f"m{i}": "x" for i in range(60)}}
    body = {"project_name": "p", "user_dict": {"K" * 100_000: entry}}
    event = api_gateway_event("POST", "/set_budget", body=body)
    response = invoke("POST", "/set_budget", event)
    error = assert_invalid(response)
    assert len(response.text) < 64_000, len(response.text)
    assert len(error["details"]) == 50
    assert error["details"][1]["field"].endswith(".total_budget"), error["details"][1]
    assert items(aws) == 0


@pytest.mark.parametrize("trailing", ["/", "//"])
def test_trailing_slashes_match_the_route_as_under_powertools(aws, trailing):
    # Powertools' REST resolver matched ^rule/*$; a route must not turn into a 404 by a slash.
    assert invoke("PUT", USER, put_user_at("/projects/p/users/u")).status == 201
    event = api_gateway_event("GET", USER, {"project": "p", "user": "u"})
    event["path"] += trailing
    response = invoke("GET", USER, event)
    assert response.status == 200, response
    assert response.json()["user"] == "u"


def test_a_hand_written_event_with_only_the_multi_value_maps_binds_them(aws):
    # `sam local invoke -e`: as Powertools read them, the multi-value maps count on their own.
    assert invoke("PUT", USER, put_user_at("/projects/p/users/u")).status == 201
    users = "/projects/{project}/users"
    event = api_gateway_event("GET", users, {"project": "p"})
    event["queryStringParameters"] = None
    event["multiValueQueryStringParameters"] = {"limit": ["abc"]}
    assert "query.limit" in assert_invalid(invoke("GET", users, event))["message"]
    spend = "/projects/{project}/spend"
    event = api_gateway_event("GET", spend, {"project": "p"})
    event["headers"] = None
    event["multiValueHeaders"] = {"accept": ["text/csv"]}
    assert invoke("GET", spend, event).text.startswith("user,model,spend,periods")
    # Only the single-value maps, two names differing in case: two copies, as in multiValueHeaders.
    event = api_gateway_event("GET", spend, {"project": "p"})
    event["multiValueHeaders"] = None
    event["headers"] = {"accept": "text/csv", "Accept": "application/json"}
    assert_invalid(invoke("GET", spend, event))
