"""Hold sizing through the handlers on in-process moto: a hold by messages without max_tokens
covers the prompt and the model's maximum output until the project has history, then follows
what the settled calls produced; the project's settings (default output, percentile, per-request
cap); the histogram's buckets."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from budget_service.domain import hold_sizing
from budget_service.pricing.prices import cost_of, default_table
from budget_service.schemas.usage import TokenUsage

PUT = "/projects/{project}/users/{user}"
HOLDS = "/projects/{project}/users/{user}/holds"
SETTLE = "/projects/{project}/users/{user}/holds/{hold_id}/settle"
SIZING = "/projects/{project}/hold-sizing"
WHO = {"project": "sizing", "user": "alice"}
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in one line."}]


@pytest.fixture
def budget(api, clock):
    assert api.call("PUT", PUT, WHO, body={"total_budget": 1000}).status == 201
    return api


def hold(api, **body):
    response = api.call("POST", HOLDS, WHO, body=json.dumps({"model": MODEL, "messages": MESSAGES, **body}))
    assert response.status == 201, response
    return response.json()


def settle(api, hold_id, **body):
    response = api.call("POST", SETTLE, {**WHO, "hold_id": hold_id}, body=json.dumps(body))
    assert response.status == 200, response
    return response.json()


def price_of(prompt_tokens: int, output_tokens: int, model: str = MODEL) -> Decimal:
    usage = TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=output_tokens)
    return cost_of(default_table().price(model), usage).total


def test_buckets_hold_their_tokens_and_step_by_a_fifth_at_most():
    for tokens in [0, 1, 16, 17, 20, 21, 100, 1000, 4096, 16384, 123457]:
        bucket = hold_sizing.bucket_of(tokens)
        assert hold_sizing.bucket_upper(bucket) >= tokens
        assert bucket == 0 or hold_sizing.bucket_upper(bucket - 1) < tokens
    assert hold_sizing.bucket_upper(40) / hold_sizing.bucket_upper(39) < 1.2
    counts = {hold_sizing.bucket_of(t): 0 for t in (100, 2000)}
    counts[hold_sizing.bucket_of(100)] = 95
    counts[hold_sizing.bucket_of(2000)] = 5
    assert hold_sizing.percentile_tokens(counts, 95) == hold_sizing.bucket_upper(hold_sizing.bucket_of(100))
    assert hold_sizing.percentile_tokens(counts, 96) == hold_sizing.bucket_upper(hold_sizing.bucket_of(2000))


def test_without_history_a_hold_covers_the_prompt_and_the_models_maximum_output(budget):
    h = hold(budget)
    max_output = default_table().price(MODEL).max_output
    assert max_output == 16384  # LiteLLM's max_output_tokens for the model
    assert h["sized_by"] == "model_max_output" and h["output_tokens"] == max_output
    assert h["amount"] == price_of(h["prompt_tokens"], max_output)
    assert h["capped"] is False


def test_with_max_tokens_the_hold_is_the_calls_own_bound(budget):
    h = hold(budget, max_tokens=100)
    assert h["sized_by"] == "max_tokens" and h["output_tokens"] == 100
    assert h["amount"] == price_of(h["prompt_tokens"], 100)


def test_after_settles_the_estimate_follows_what_the_calls_produced(budget):
    settings = budget.call("GET", SIZING, {"project": "sizing"}).json()
    assert settings["min_samples"] == 20 and settings["percentile"] == 95
    # 19 settles: not enough history yet.
    outputs = [120] * 18 + [900]
    for tokens in outputs:
        h = hold(budget)
        settle(
            budget,
            h["hold_id"],
            model=MODEL,
            usage={"prompt_tokens": h["prompt_tokens"], "completion_tokens": tokens},
        )
    assert hold(budget)["sized_by"] == "model_max_output"
    # The 20th (a cost form, with output_tokens for sizing): now the 95th percentile is learned.
    h = hold(budget)
    settle(budget, h["hold_id"], model=MODEL, cost=0.0001, output_tokens=130)
    learned = hold(budget)
    expected = hold_sizing.bucket_upper(hold_sizing.bucket_of(130))  # 19 of 20 are <= 130
    assert learned["sized_by"] == "learned" and learned["output_tokens"] == expected
    assert learned["amount"] == price_of(learned["prompt_tokens"], expected)
    # Calls that now produce more move the estimate up.
    for _ in range(20):
        h = hold(budget)
        settle(budget, h["hold_id"], model=MODEL, usage={"prompt_tokens": 10, "completion_tokens": 3000})
    moved = hold(budget)
    assert moved["sized_by"] == "learned"
    assert moved["output_tokens"] == hold_sizing.bucket_upper(hold_sizing.bucket_of(3000))
    # A replayed settle counts nothing twice; an amount hold teaches nothing.
    again = settle(budget, h["hold_id"], model=MODEL, usage={"prompt_tokens": 10, "completion_tokens": 3000})
    assert again["replayed"] is True


def test_the_project_default_the_percentile_and_the_per_request_cap(budget):
    put = budget.call(
        "PUT",
        SIZING,
        {"project": "sizing"},
        body=json.dumps(
            {"max_hold": 0.001, "percentile": 50, "min_samples": 2, "default_max_output_tokens": 1000}
        ),
    )
    assert put.status == 200, put
    assert put.json()["max_hold"] == Decimal("0.001") and put.json()["created_at"] is not None
    # A model LiteLLM's map gives no maximum output: the project's default (a project price).
    price = {"input": 0.000001, "output": 0.000002}
    assert (
        budget.call(
            "PUT",
            "/projects/{project}/prices/{model}",
            {"project": "sizing", "model": "in-house"},
            body=json.dumps(price),
        ).status
        == 201
    )
    h = hold(budget, model="in-house")
    assert h["sized_by"] == "project_default" and h["output_tokens"] == 1000
    # The cap: no priced hold reserves more than max_hold.
    big = hold(budget, max_tokens=16000)
    assert big["capped"] is True and big["amount"] == Decimal("0.001")
    for tokens in (40, 40, 5000):
        h = hold(budget, max_tokens=10)
        settle(budget, h["hold_id"], model=MODEL, usage={"prompt_tokens": 10, "completion_tokens": tokens})
    median = hold(budget)
    assert median["sized_by"] == "learned" and median["output_tokens"] == hold_sizing.bucket_upper(
        hold_sizing.bucket_of(40)
    )


@pytest.mark.parametrize(
    "body",
    [
        {"max_hold": 0},
        {"max_hold": -1},
        {"percentile": 49},
        {"percentile": 101},
        {"min_samples": 0},
        {"default_max_output_tokens": 0},
        {"percentile": 95.5},
        {"surprise": 1},
    ],
)
def test_bad_settings_are_a_422_that_writes_nothing(budget, body):
    response = budget.call("PUT", SIZING, {"project": "sizing"}, body=json.dumps(body))
    assert response.status == 422, response
    assert budget.call("GET", SIZING, {"project": "sizing"}).json()["created_at"] is None
