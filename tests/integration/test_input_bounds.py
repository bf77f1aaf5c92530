"""Input bounds: every limit in the unit DynamoDB counts (bytes), and no body, header or
path reaches a 5xx. Each reproduced failure (once a 5xx) is a case here; each checks nothing was written.
"""

from __future__ import annotations

import json

import pytest
from boto3.dynamodb.types import TypeSerializer
from conftest import TABLE_NAME, Response

from budget_service.api.http import MAX_JSON_DEPTH, MAX_NUMBER_CHARS
from budget_service.core.errors import InvalidInput
from budget_service.schemas import ID_MAX_BYTES, MAX_MODELS_PER_USER, MONEY_MAX
from budget_service.store import base as store_module
from localdev.events import api_gateway_event

USER = "/projects/{project}/users/{user}"
COST = "/projects/{project}/users/{user}/cost"
EMOJI_256 = "\U0001f600" * 256  # 256 characters, 1,024 bytes: once a 500
KEY_255 = "k" * 255


def items(aws) -> int:
    return aws.scan(TableName=TABLE_NAME, Select="COUNT")["Count"]


def error_of(response, status: int) -> dict:
    assert response.status == status, response
    return response.json()["error"]


def id_of_bytes(n: int, char: str = "\u20ac") -> str:
    """An id of exactly `n` bytes of UTF-8, mostly 3-byte characters."""
    width = len(char.encode())
    return char * (n // width) + "x" * (n % width)


def put(api, project, user, body=None):
    return api.call("PUT", USER, {"project": project, "user": user}, body=body or {"total_budget": 10})


# ---- item 3: ids and keys in bytes ----------------------------------------------------------------


def test_a_path_id_of_4_byte_characters_is_a_422_not_a_500(api, aws):
    assert "bytes" in error_of(put(api, "k", EMOJI_256), 422)["message"]
    assert error_of(api.call("GET", USER, {"project": "k", "user": EMOJI_256}), 422)
    assert error_of(put(api, EMOJI_256, "u"), 422)
    assert items(aws) == 0


def test_ids_are_limited_in_bytes_not_characters(api, aws):
    assert put(api, id_of_bytes(ID_MAX_BYTES), id_of_bytes(ID_MAX_BYTES)).status == 201
    written = items(aws)  # the budget and its audit entry (the history's record of the write)
    error_of(put(api, "p", id_of_bytes(ID_MAX_BYTES + 1)), 422)
    error_of(put(api, id_of_bytes(ID_MAX_BYTES + 1), "u"), 422)
    assert items(aws) == written  # the refused ones wrote nothing


def test_set_budget_with_one_oversized_user_writes_nothing(api, aws):
    entry = {"total_budget": 1}
    response = api.set_budget("k", {"ok1": entry, EMOJI_256: entry, "ok2": entry})
    assert "bytes" in json.dumps(error_of(response, 422))
    assert items(aws) == 0
    assert error_of(api.set_budget(EMOJI_256, {"ok": entry}), 422)
    assert items(aws) == 0


def test_the_longest_ids_with_the_longest_idempotency_key_fit_the_ledger_key(api, aws):
    # The case: 256 characters of 3 bytes with a 255-character key was a 500.
    three_byte_256 = "\u20ac" * 256
    body = {"model": "m", "cost": 1}
    put(api, "p", "short")
    r = api.call(
        "POST",
        COST,
        {"project": "p", "user": three_byte_256},
        body=body,
        headers={"Idempotency-Key": KEY_255},
    )
    error_of(r, 422)
    longest = id_of_bytes(ID_MAX_BYTES)
    assert put(api, id_of_bytes(ID_MAX_BYTES), longest).status == 201
    path = {"project": id_of_bytes(ID_MAX_BYTES), "user": longest}
    first = api.call("POST", COST, path, body=body, headers={"Idempotency-Key": KEY_255})
    assert first.status == 200, first
    again = api.call("POST", COST, path, body=body, headers={"Idempotency-Key": KEY_255})
    assert again.status == 200 and again.json()["replayed"] is True


def test_every_composite_key_of_the_longest_ids_fits_dynamodb():
    project, user = id_of_bytes(ID_MAX_BYTES, "\U0001f600"), id_of_bytes(ID_MAX_BYTES, "\U0001f600")
    assert len(store_module.project_key(project).encode()) <= store_module.PARTITION_KEY_MAX_BYTES
    assert len(store_module.user_key(user).encode()) <= store_module.SORT_KEY_MAX_BYTES
    ledger = store_module.ledger_key(user, KEY_255)
    # Room left in a sort key for what later keys add (HOLD#, PERIOD#..., AUDIT#...).
    assert store_module.SORT_KEY_MAX_BYTES - len(ledger.encode()) >= 400


@pytest.mark.parametrize(
    "build",
    [
        lambda: store_module.project_key("p" * 2041),
        lambda: store_module.user_key("u" * 1020),
        lambda: store_module.ledger_key("u" * 500, "k" * 600),
        lambda: store_module.user_key("\ud800"),
    ],
)
def test_the_store_refuses_a_key_dynamodb_would_refuse(build):
    with pytest.raises(InvalidInput):
        build()


def test_a_cursor_naming_an_oversized_user_is_a_422(api, aws):
    put(api, "p", "u")
    cursor = store_module.encode_cursor("u" * 5000)
    r = api.call("GET", "/projects/{project}/users", {"project": "p"}, query={"cursor": cursor[:2048]})
    assert r.status == 422, r


def worst_case_budget_item(model_bytes: int = ID_MAX_BYTES) -> dict:
    """The largest budget item the limits allow: longest ids, every optional attribute, and
    MAX_MODELS_PER_USER models with the longest names and the longest numbers."""
    serialize = TypeSerializer().serialize
    longest_money = MONEY_MAX - MONEY_MAX.scaleb(-37)  # 999999999999.9999999999999999999999999
    names = [f"{i:04d}" + id_of_bytes(model_bytes - 4, "\u00e9") for i in range(MAX_MODELS_PER_USER)]
    project, user = id_of_bytes(ID_MAX_BYTES), id_of_bytes(ID_MAX_BYTES)
    item = {
        "pk": store_module.project_key(project),
        "sk": store_module.user_key(user),
        "project": project,
        "user": user,
        "total_budget": longest_money,
        "current_cost": longest_money,
        "model_cost": {n: longest_money for n in names},
        "created_at": longest_money,
        "updated_at": longest_money,
        "version": longest_money,
        "duration": "monthly",
        "duration_days": longest_money,
        "timezone": "America/Argentina/ComodRivadavia",
        "period_start": longest_money,
        "reset_at": longest_money,
        "reset_shard": "RESET#0",
    }
    return {k: serialize(v) for k, v in item.items()}


def test_the_largest_budget_item_the_limits_allow_is_under_400_kb():
    size = store_module.item_size(worst_case_budget_item())
    assert size < store_module.ITEM_MAX_BYTES * 0.75, size


def test_item_size_counts_bytes_as_dynamodb_does():
    assert store_module.item_size({"a": {"S": "\u00e9"}}) == 1 + 2
    assert store_module.item_size({"n": {"N": "12345"}}) == 1 + 4
    assert store_module.item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1
    assert store_module.item_size({"n": {"N": "1" * 38}}) == 1 + 20


def test_a_thousand_models_of_2_byte_characters_fit_and_the_user_keeps_working(api, aws):
    # The case: 1,000 names of 2-byte characters overflowed the item (500s, then every
    # cost for the user a 500). At the byte limit they fit; one byte over is a 422.
    names = {f"{i:04d}" + id_of_bytes(ID_MAX_BYTES - 4, "\u00e9"): 0.001 for i in range(MAX_MODELS_PER_USER)}
    assert all(len(n.encode()) == ID_MAX_BYTES for n in names)
    response = api.set_budget("big", {"u": {"total_budget": 100, "model_cost": names}})
    assert response.status == 200, response
    name = next(iter(names))
    r = api.call("POST", COST, {"project": "big", "user": "u"}, body={"model": name, "cost": 1})
    assert r.status == 200, r
    too_long = {"x" + id_of_bytes(ID_MAX_BYTES, "\u00e9"): 1}
    error_of(api.set_budget("big", {"v": {"total_budget": 1, "model_cost": too_long}}), 422)
    error_of(
        api.call(
            "POST", COST, {"project": "big", "user": "u"}, body={"model": next(iter(too_long)), "cost": 1}
        ),
        422,
    )
    assert api.call("GET", USER, {"project": "big", "user": "v"}).status == 404


# ---- item 4: numbers and nesting ------------------------------------------------------------------


def test_a_5000_digit_integer_is_a_400(api, aws):
    put(api, "p", "u")
    before = items(aws)
    for text in [
        '{"model": "m", "cost": %s}' % ("9" * 5000),
        '{"model": "m", "usage": {"prompt_tokens": %s}}' % ("1" * 5000),
        '{"model": "m", "cost": 0.%s}' % ("1" * 5000),
        '{"model": "m", "cost": 1e%s}' % ("9" * 5000),
    ]:
        r = api.call("POST", COST, {"project": "p", "user": "u"}, body=text)
        error = error_of(r, 400)
        assert error["code"] == "invalid_body" and str(MAX_NUMBER_CHARS) in error["message"]
    assert items(aws) == before
    assert api.call("GET", USER, {"project": "p", "user": "u"}).json()["current_cost"] == 0


@pytest.mark.parametrize("number", ["1e999999999", "1E+99999", "-0", "1e-999999999", "9" * 99])
def test_extreme_numbers_within_the_length_bound_are_4xx_or_accepted(api, aws, number):
    put(api, "p", "u")
    r = api.call("POST", COST, {"project": "p", "user": "u"}, body='{"model": "m", "cost": %s}' % number)
    assert r.status in (200, 422), r


def test_a_huge_query_number_is_a_422(api, aws):
    r = api.call("GET", "/projects/{project}/users", {"project": "p"}, query={"limit": "9" * 5000})
    assert r.status == 422, r


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000])
def test_deep_nesting_is_a_400(api, aws, depth):
    put(api, "p", "u")
    before = items(aws)
    nested = "[" * depth + "]" * depth
    r = api.call(
        "POST", COST, {"project": "p", "user": "u"}, body='{"model": "m", "cost": 1, "extra": %s}' % nested
    )
    assert error_of(r, 400)["code"] == "invalid_body"
    objects = '{"a":' * depth + "1" + "}" * depth
    r = api.call("POST", "/set_budget", body='{"project_name": "p", "user_dict": %s}' % objects)
    assert error_of(r, 400)["code"] == "invalid_body"
    assert items(aws) == before


def test_nesting_within_the_bound_is_validated_as_usual(api, aws):
    put(api, "p", "u")
    nested = "[" * (MAX_JSON_DEPTH - 3) + "]" * (MAX_JSON_DEPTH - 3)
    body = '{"completion": {"model": "gpt-4o", "usage": {"prompt_tokens": 1}, "choices": %s}}' % nested
    assert api.call("POST", COST, {"project": "p", "user": "u"}, body=body).status == 200


def test_a_lone_surrogate_in_any_string_is_a_400(api, aws):
    put(api, "p", "u")
    before = items(aws)
    for body in [
        '{"model": "m", "input_text": "a\\ud800b"}',
        '{"model": "m\\udfff", "cost": 1}',
        '{"project_name": "p", "user_dict": {"\\ud83d": {"total_budget": 1}}}',
    ]:
        route = "/set_budget" if "project_name" in body else COST
        params = None if route == "/set_budget" else {"project": "p", "user": "u"}
        assert error_of(api.call("POST", route, params, body=body), 400)["code"] == "invalid_body"
    # A surrogate pair is a real character (here U+1F600) and is fine.
    r = api.call("POST", COST, {"project": "p", "user": "u"}, body='{"model": "m\\ud83d\\ude00", "cost": 1}')
    assert r.status == 200 and r.json()["model"] == "m\U0001f600"
    assert items(aws) == before


# ---- item 5: objects only, headers once ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '[{"model": "m", "cost": 1}, {"model": "m", "cost": 2}]',
        "[]",
        "1",
        '"text"',
        "null",
        "true",
    ],
)
def test_a_body_that_is_not_an_object_is_a_400_and_writes_nothing(api, aws, body):
    put(api, "p", "u")
    r = api.call("POST", COST, {"project": "p", "user": "u"}, body=body)
    assert error_of(r, 400)["code"] == "invalid_body"
    for route in ("/set_budget", "/get_budget"):
        assert error_of(api.call("POST", route, body=body), 400)["code"] == "invalid_body"
    assert error_of(put(api, "p", "u", body=body), 400)
    assert api.call("GET", USER, {"project": "p", "user": "u"}).json()["current_cost"] == 0


def call_with_headers(api, method, resource, params, headers: dict[str, list[str]], body=None):
    route = api.routes[(method, resource)]
    from localdev import template
    from localdev.events import LambdaContext

    event = api_gateway_event(method, resource, params, body=body)
    multi = {k: v for k, v in event["multiValueHeaders"].items()}
    multi.update(headers)
    event["multiValueHeaders"] = multi
    event["headers"] = {k: v[-1] for k, v in multi.items()}
    return Response(template.load_handler(route.function_id)(event, LambdaContext(route.function_id)))


@pytest.mark.parametrize(
    "headers",
    [
        {"Idempotency-Key": ["k1", "k2"]},
        {"Idempotency-Key": ["k1"], "idempotency-key": ["k2"]},
        {"Authorization": ["Bearer a", "Bearer b"]},
        {"Content-Type": ["application/json", "text/plain"]},
    ],
)
def test_a_header_that_must_be_single_given_twice_is_a_400(api, aws, headers):
    put(api, "p", "u")
    r = call_with_headers(
        api, "POST", COST, {"project": "p", "user": "u"}, headers, body={"model": "m", "cost": 1}
    )
    assert error_of(r, 400)["code"] == "duplicate_header"
    assert api.call("GET", USER, {"project": "p", "user": "u"}).json()["current_cost"] == 0


def test_a_comma_joined_idempotency_key_is_a_422(api, aws):
    # What a proxy makes of two copies ("k1,k2"): not one key.
    put(api, "p", "u")
    r = api.call(
        "POST",
        COST,
        {"project": "p", "user": "u"},
        body={"model": "m", "cost": 1},
        headers={"Idempotency-Key": "k1,k2"},
    )
    error_of(r, 422)
    assert api.call("GET", USER, {"project": "p", "user": "u"}).json()["current_cost"] == 0


def test_repeated_harmless_headers_are_fine(api, aws):
    r = call_with_headers(
        api,
        "PUT",
        USER,
        {"project": "p", "user": "u"},
        {"Accept": ["application/json", "text/plain"]},
        body={"total_budget": 1},
    )
    assert r.status == 201, r
