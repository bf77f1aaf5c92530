"""The cost routes through their handler (in-process moto): the four forms, one DynamoDB request
per update in both paths, idempotent replays, period rollover, projected cost, and bad input that
gets a 4xx and writes nothing."""

import json
from decimal import Decimal

import litellm
import pytest

from budget_service.pricing.prices import cost_of, default_table
from budget_service.schemas.usage import TokenUsage
from budget_service.store import base as store_module
from budget_service.store.levels import LevelWriter

COST = "/projects/{project}/users/{user}/cost"
PROJECTED = "/projects/{project}/users/{user}/projected-cost"
WHO = {"project": "acme", "user": "alice"}


@pytest.fixture
def budget(api):
    response = api.call("PUT", "/projects/{project}/users/{user}", WHO, body={"total_budget": 1})
    assert response.status == 201, response
    return api


@pytest.fixture
def requests_made(aws):
    """The DynamoDB operations the handler's client sends, one entry per HTTP request."""
    client = store_module.default_store().client
    sent: list[str] = []

    def record(event_name, **kwargs):
        sent.append(event_name.rsplit(".", 1)[-1])

    client.meta.events.register("before-sign.dynamodb", record)
    yield sent
    client.meta.events.unregister("before-sign.dynamodb", record)


def table_items(aws) -> list[dict]:
    return sorted(aws.scan(TableName="budgets-test")["Items"], key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def stored(store, user="alice"):
    return store.get("acme", user)


def dumps(body) -> str:
    """JSON with Decimals written as exact number literals (the service parses them exactly)."""
    if isinstance(body, str):
        return body
    return json.dumps(body, default=lambda d: f"@@{d}@@").replace('"@@', "").replace('@@"', "")


def post_cost(api, body, key=None, who=WHO):
    return api.call("POST", COST, who, body=dumps(body), headers={"Idempotency-Key": key} if key else None)


def price(model, **usage):
    return cost_of(default_table().price(model), TokenUsage(**usage)).total


def test_usage_form(budget, store):
    body = {
        "model": "gpt-4o",
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 400},
        },
    }
    response = post_cost(budget, body)
    assert response.status == 200, response
    answer = response.json()
    assert answer["cost"] == Decimal("0.003")  # 600 x 2.5e-6 + 400 x 1.25e-6 + 100 x 1e-5
    assert answer["current_cost"] is None  # one transaction: no values back (GET the budget)
    assert answer["priced_as"] == "gpt-4o"
    after = stored(store)
    assert after.current_cost == Decimal("0.003") and after.remaining == Decimal("0.997")
    assert after.available == Decimal("0.997")
    assert answer["tokens"]["cached_tokens"] == 400
    assert stored(store).model_cost == {"gpt-4o": Decimal("0.003")}


def test_completion_form_takes_model_and_usage_from_a_litellm_response(budget, store):
    completion = litellm.ModelResponse(
        model="gpt-4o-mini",
        choices=[{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop", "index": 0}],
        usage={
            "prompt_tokens": 20,
            "completion_tokens": 7,
            "total_tokens": 27,
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    )
    response = post_cost(budget, {"completion": json.loads(completion.model_dump_json())})
    assert response.status == 200, response
    expected = price("gpt-4o-mini", prompt_tokens=20, completion_tokens=7)
    assert response.json()["cost"] == expected
    assert stored(store).model_cost == {"gpt-4o-mini": expected}


def test_text_form_counts_with_tiktoken(budget):
    body = {"model": "openai/gpt-4o", "input_text": "Summarise this, please.", "output_text": "Done."}
    answer = post_cost(budget, body).json()
    prompt = litellm.token_counter(model="gpt-4o", text=body["input_text"])
    completion = litellm.token_counter(model="gpt-4o", text=body["output_text"])
    assert (answer["tokens"]["prompt_tokens"], answer["tokens"]["completion_tokens"]) == (prompt, completion)
    assert answer["cost"] == price("gpt-4o", prompt_tokens=prompt, completion_tokens=completion)
    assert answer["model"] == "openai/gpt-4o"


def test_cost_form_adds_exactly(budget, store):
    for amount in ["0.1", "0.2", "0.000000000000000000000001"]:
        assert post_cost(budget, {"model": "my-model", "cost": Decimal(amount)}).status == 200
    budget_after = stored(store)
    assert budget_after.current_cost == Decimal("0.300000000000000000000001")
    assert budget_after.model_cost == {"my-model": Decimal("0.300000000000000000000001")}


def test_each_update_bumps_the_version(budget, store):
    before = stored(store).version
    post_cost(budget, {"model": "m", "cost": 1})
    post_cost(budget, {"model": "m", "cost": 1}, key="k-1")
    assert stored(store).version == before + 2


def test_spend_past_the_budget_is_recorded_and_shown(budget):
    """/cost records spend that already happened: never refused for lack of budget."""
    for _ in range(2):
        assert post_cost(budget, {"model": "m", "cost": Decimal("0.6")}).status == 200
    record = budget.call("GET", "/projects/{project}/users/{user}", WHO).json()
    assert record["current_cost"] == Decimal("1.2") and record["remaining"] == 0
    assert record["available"] == 0 and record["held"] == 0


def test_if_within_budget_charges_only_what_fits(budget, store, aws):
    assert post_cost(budget, {"model": "m", "cost": Decimal("0.6"), "if_within_budget": True}).status == 200
    before = table_items(aws)
    refused = post_cost(budget, {"model": "m", "cost": Decimal("0.6"), "if_within_budget": True}, key="w-1")
    assert refused.status == 402, refused
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["details"] == [
        {"level": "user", "name": "alice", "available": Decimal("0.4"), "needed": Decimal("0.6")}
    ]
    assert table_items(aws) == before  # nothing written, the ledger entry neither
    assert post_cost(budget, {"model": "m", "cost": Decimal("0.4"), "if_within_budget": True}).status == 200
    assert stored(store).current_cost == 1 and stored(store).available == 0
    bad = post_cost(budget, {"model": "m", "cost": 1, "if_within_budget": "yes"})
    assert bad.status == 422


def test_one_request_per_update_without_a_key(budget, requests_made):
    for _ in range(3):
        assert post_cost(budget, {"model": "gpt-4o", "usage": {"prompt_tokens": 10}}).status == 200
    # A transaction, not an UpdateItem: botocore keeps its ClientRequestToken across retries.
    # The project's own prices are read once (a Query) and cached per container (a warm
    # container from an earlier test may have them already).
    assert requests_made in (["Query"] + ["TransactWriteItems"] * 3, ["TransactWriteItems"] * 3)


def test_one_request_per_update_with_a_key_and_per_replay(budget, requests_made, store):
    body = {"model": "gpt-4o", "usage": {"prompt_tokens": 10, "completion_tokens": 3}}
    first = post_cost(budget, body, key="req-1")
    second = post_cost(budget, body, key="req-2")
    replay = post_cost(budget, body, key="req-1")
    # Query: the project's prices, cached. The replay reads the budget once to tell its own key
    # from a deleted budget's.
    assert requests_made[-4:] == ["TransactWriteItems"] * 3 + ["GetItem"]
    assert requests_made[:-4] in (["Query"], [])  # unless a warm container has them cached
    assert (first.status, second.status, replay.status) == (200, 200, 200)
    assert replay.json()["replayed"] is True and first.json()["replayed"] is False
    assert replay.json()["cost"] == first.json()["cost"]
    assert replay.json()["tokens"] == first.json()["tokens"]
    assert stored(store).current_cost == 2 * first.json()["cost"]


def test_idempotent_answer_has_no_balance_because_transactions_return_none(budget):
    answer = post_cost(budget, {"model": "m", "cost": 1}, key="k").json()
    assert answer["cost"] == 1 and answer["current_cost"] is None and answer["budget_exceeded"] is None


def test_a_key_reused_for_a_different_request_is_refused(budget, store):
    assert post_cost(budget, {"model": "m", "cost": 1}, key="k").status == 200
    response = post_cost(budget, {"model": "m", "cost": 2}, key="k")
    assert response.status == 422 and response.json()["error"]["code"] == "idempotency_key_reused"
    assert stored(store).current_cost == 1


def test_ledger_keys_are_unambiguous_when_ids_contain_hash(store):
    """EVENT#a#b#c could be user "a#b" with key "c" or user "a" with key "b#c"; the length prefix
    keeps them apart. (User ids with '#' arrive through litellm's set_budget user_dict.)"""
    from budget_service.core.records import Budget

    now = Decimal(1_800_000_000)
    for user in ("a#b", "a"):
        store.save(Budget(project="acme", user=user, total_budget=Decimal(5), created_at=now, updated_at=now))
    ledger = {"kind": "cost", "model": "m", "cost": Decimal(1), "fingerprint": "f", "expires_at": 1}
    writer = LevelWriter(store)
    assert writer.add_cost("acme", "a#b", "m", Decimal(1), now, ledger={**ledger, "key": "c"}) is None
    assert writer.add_cost("acme", "a", "m", Decimal(1), now, ledger={**ledger, "key": "b#c"}) is None
    assert stored(store, "a").current_cost == 1 and stored(store, "a#b").current_cost == 1
    assert store.get_ledger("acme", "a#b", "c")["user"] == "a#b"
    assert store.get_ledger("acme", "a", "b#c")["user"] == "a"


def test_ledger_item_has_a_ttl(budget, aws):
    post_cost(budget, {"model": "m", "cost": 1}, key="ttl-key")
    (ledger,) = [i for i in table_items(aws) if i["sk"]["S"].startswith("EVENT#")]
    assert ledger["sk"]["S"] == "EVENT#5:alice#ttl-key"
    assert int(ledger["expires_at"]["N"]) > int(Decimal(ledger["created_at"]["N"]))


def _end_the_period(store, aws):
    """A daily budget whose period ended a day ago, with spend in it."""
    current = stored(store)
    ended = current._replace(
        duration=None,
        duration_days=Decimal(1),
        current_cost=Decimal("0.7"),
        model_cost={"old": Decimal("0.7")},
        period_start=current.created_at - 2 * 86400,
        reset_at=current.created_at - 86400,
    )
    store.save(ended)


@pytest.mark.parametrize("key", [None, "roll-key"])
def test_an_ended_period_rolls_over_before_the_cost_lands(budget, store, aws, requests_made, key):
    _end_the_period(store, aws)
    requests_made.clear()
    response = post_cost(budget, {"model": "m", "cost": Decimal("0.25")}, key=key)
    assert response.status == 200, response
    after = stored(store)
    assert after.current_cost == Decimal("0.25") and after.model_cost == {"m": Decimal("0.25")}
    assert after.reset_at > after.period_start and after.reset_at > store_module.Decimal(0)
    write = "TransactWriteItems"
    assert requests_made == [write, "TransactWriteItems", write]  # failed write, the rollover, the write
    requests_made.clear()
    post_cost(budget, {"model": "m", "cost": Decimal("0.25")}, key=None if key is None else "k2")
    assert requests_made == [write]  # once per period


def test_projected_cost(budget, store):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name three colours."},
    ]
    response = budget.call(
        "POST", PROJECTED, WHO, body={"model": "gpt-4o", "messages": messages, "max_tokens": 50}
    )
    assert response.status == 200, response
    answer = response.json()
    prompt = litellm.token_counter(model="gpt-4o", messages=messages)
    assert answer["prompt_tokens"] == prompt
    assert answer["prompt_cost"] == price("gpt-4o", prompt_tokens=prompt)
    assert answer["completion_cost"] == price("gpt-4o", completion_tokens=50)
    assert answer["projected_cost"] == price("gpt-4o", prompt_tokens=prompt, completion_tokens=50)
    assert answer["within_budget"] is True and answer["current_cost"] == 0
    post_cost(budget, {"model": "m", "cost": Decimal("0.9999")})
    tight = budget.call(
        "POST", PROJECTED, WHO, body={"model": "gpt-4o", "messages": messages, "max_tokens": 50}
    )
    assert tight.json()["within_budget"] is False and tight.json()["remaining_after"] == 0
    assert stored(store).current_cost == Decimal("0.9999")  # projecting writes nothing


BAD_BODIES = [
    ("no form", {"model": "gpt-4o"}, 422),
    ("empty", {}, 422),
    ("two forms", {"model": "gpt-4o", "cost": 1, "usage": {"prompt_tokens": 1}}, 422),
    (
        "completion and model",
        {"model": "gpt-4o", "completion": {"model": "gpt-4o", "usage": {"prompt_tokens": 1}}},
        422,
    ),
    ("cost without model", {"cost": 1}, 422),
    ("negative cost", {"model": "m", "cost": -0.01}, 422),
    ("NaN cost", '{"model": "m", "cost": NaN}', 422),
    ("Infinity cost", '{"model": "m", "cost": Infinity}', 422),
    ("huge cost", {"model": "m", "cost": 1e13}, 422),
    ("string cost", {"model": "m", "cost": "abc"}, 422),
    ("negative tokens", {"model": "gpt-4o", "usage": {"prompt_tokens": -1}}, 422),
    ("fractional tokens", {"model": "gpt-4o", "usage": {"prompt_tokens": 1.5}}, 422),
    ("string tokens", {"model": "gpt-4o", "usage": {"prompt_tokens": "10"}}, 422),
    (
        "fractional completion tokens",
        {"model": "gpt-4o", "usage": {"prompt_tokens": 1, "completion_tokens": 0.5}},
        422,
    ),
    (
        "cached over prompt",
        {"model": "gpt-4o", "usage": {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 2}}},
        422,
    ),
    (
        "reasoning over completion",
        {
            "model": "gpt-4o",
            "usage": {
                "prompt_tokens": 1,
                "completion_tokens": 1,
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
        },
        422,
    ),
    ("unknown model", {"model": "no-such-model", "usage": {"prompt_tokens": 10}}, 422),
    ("unknown model, text", {"model": "no-such-model", "input_text": "hi"}, 422),
    ("unknown field", {"model": "m", "cost": 1, "costs": 2}, 422),
    ("not json", "{", 400),
    ("over the body limit", {"model": "gpt-4o", "input_text": "x" * (1024 * 1024)}, 413),
]


@pytest.mark.parametrize("name, body, status", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_4xx_json_and_writes_nothing(budget, aws, name, body, status):
    before = table_items(aws)
    response = budget.call("POST", COST, WHO, body=dumps(body), headers={"Idempotency-Key": "bad-1"})
    assert response.status == status, response
    assert response.json()["error"]["code"]
    if name == "unknown model":
        assert "cost" in response.json()["error"]["message"]
    assert table_items(aws) == before


def test_bad_idempotency_key_is_422(budget, aws):
    before = table_items(aws)
    response = post_cost(budget, {"model": "m", "cost": 1}, key="has space")
    assert response.status == 422 and table_items(aws) == before


@pytest.mark.parametrize("key", [None, "unknown-user-key"])
def test_unknown_user_is_404_and_creates_nothing(api, aws, key):
    before = table_items(aws)
    response = post_cost(api, {"model": "m", "cost": 1}, key=key, who={"project": "acme", "user": "nobody"})
    assert response.status == 404 and response.json()["error"]["code"] == "budget_not_found"
    projected = api.call(
        "POST",
        PROJECTED,
        {"project": "acme", "user": "nobody"},
        body={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert projected.status == 404
    assert table_items(aws) == before


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4o", "messages": []},
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1},
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2.5},
        {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}],
        },
    ],
)
def test_projected_cost_bad_input_is_422(budget, aws, body):
    before = table_items(aws)
    assert budget.call("POST", PROJECTED, WHO, body=body).status == 422
    assert table_items(aws) == before
