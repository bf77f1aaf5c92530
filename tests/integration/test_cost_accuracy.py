"""Cost accuracy. Four mispricings reproduced (exact values from LiteLLM 1.110.2), every usage
shape and price dimension against LiteLLM's own cost functions, every model-name form against
LiteLLM's resolution, the 0/0 rule, and per-project prices."""

from __future__ import annotations

import functools
import json
import random
import types
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litellm_reference import litellm, litellm_cost

from budget_service.core.errors import UnknownModel, UnpricedUsage
from budget_service.domain.costs import price as price_request
from budget_service.pricing import project as project_prices
from budget_service.pricing.prices import cost_of, default_table
from budget_service.schemas import CostRequest, UsageIn
from budget_service.schemas.usage import TokenUsage, UsageContext, to_token_usage
from scripts import refresh_prices

COST = "/projects/{project}/users/{user}/cost"
PRICE = "/projects/{project}/prices/{model}"
WHO = {"project": "acme", "user": "alice"}
TOLERANCE = Decimal("1e-12")


@pytest.fixture
def budget(api):
    response = api.call("PUT", "/projects/{project}/users/{user}", WHO, body={"total_budget": 100})
    assert response.status == 201, response
    return api


def post_cost(api, body, who=WHO):
    return api.call("POST", COST, who, body=json.dumps(body))


def spend(api, who=WHO) -> Decimal:
    return api.call("GET", "/projects/{project}/users/{user}", who).json()["current_cost"]


# ---- the four reproductions ------------------------------------------------------------------------


def test_audio_tokens_bill_at_the_audio_rates(budget):
    completion = {
        "model": "gpt-4o-audio-preview-2024-12-17",
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "prompt_tokens_details": {"audio_tokens": 800, "text_tokens": 200},
            "completion_tokens_details": {"audio_tokens": 400, "text_tokens": 100},
        },
    }
    answer = post_cost(budget, {"completion": completion}).json()
    # 200 x 2.5e-6 + 800 x 4e-5 (audio in) + 100 x 1e-5 + 400 x 8e-5 (audio out); was 0.0075
    assert answer["cost"] == Decimal("0.0655")
    assert answer["tokens"]["audio_tokens"] == 800 and answer["tokens"]["output_audio_tokens"] == 400


RESPONSES_USAGE = {
    "input_tokens": 328,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 52,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 380,
}


def test_openai_responses_usage_is_priced(budget):
    answer = post_cost(budget, {"model": "gpt-4o", "usage": RESPONSES_USAGE}).json()
    assert answer["cost"] == Decimal("0.00134") and answer["priced_as"] == "gpt-4o"


def test_a_whole_responses_object_is_priced_as_completion(budget):
    response_object = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1741476542,
        "status": "completed",
        "model": "gpt-4o-2024-08-06",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "hi"}],
            }
        ],
        "usage": RESPONSES_USAGE,
        "service_tier": "default",
    }
    answer = post_cost(budget, {"completion": response_object}).json()
    assert answer["cost"] == Decimal("0.00134") and answer["priced_as"] == "gpt-4o-2024-08-06"


def test_bedrock_converse_route_with_cross_region_prefix_is_priced(budget):
    body = {
        "model": "bedrock/converse/us.deepseek.r1-v1:0",
        "usage": {"prompt_tokens": 1000, "completion_tokens": 1000},
    }
    answer = post_cost(budget, body).json()
    assert answer["cost"] == Decimal("0.00675") and answer["priced_as"] == "us.deepseek.r1-v1:0"


def test_a_paid_model_the_map_prices_0_0_is_unknown_not_free(budget):
    response = post_cost(budget, {"model": "deepseek-v3-2-251201", "usage": {"prompt_tokens": 100_000}})
    assert response.status == 422, response
    error = response.json()["error"]
    assert error["code"] == "unknown_model" and "cost" in error["message"] and "0/0" in error["message"]
    assert spend(budget) == 0


def test_a_model_free_on_purpose_costs_nothing(budget):
    answer = post_cost(budget, {"model": "ollama/llama3", "usage": {"prompt_tokens": 100_000}}).json()
    assert answer["cost"] == 0 and answer["priced_as"] == "ollama/llama3"
    assert "local" in default_table().entry("ollama/llama3")["free"]


def test_every_0_0_model_kept_says_why_it_is_free():
    table = default_table()
    zero = [
        n for n in table.names() if Decimal(table.entry(n)["input"]) == 0 == Decimal(table.entry(n)["output"])
    ]
    assert zero and all(table.entry(n).get("free") for n in zero)
    assert {n for n in zero if "cloud" in n} == set()  # Ollama's hosted models are not local


# ---- every chat model, every dimension, every usage shape -------------------------------------------

TABLE = default_table()
CHAT_MODELS = sorted(n for n in TABLE.names() if TABLE.entry(n)["mode"] == "chat")
# Left out of the comparison, with the reason (none by name: the rules LiteLLM applies that this
# service does not, keep a model out of the table instead, see refresh_prices.UNSUPPORTED).
EXCLUDED: dict[str, str] = {}
# LiteLLM raises for some of the table's names on their own (it cannot tell their provider from the
# bare name, or needs the provider's login, e.g. github_copilot); those are compared nowhere, and
# there must be few.
MAX_NOT_PRICED_BY_LITELLM = 200


def usage_for(price, rng: random.Random, above: int | None = None) -> TokenUsage:
    """A usage with a count in every dimension (so every rate the model has, and every fallback it
    lacks, is exercised); `above` puts the prompt over that tier threshold."""
    prompt = (above + rng.randint(1, 5000)) if above is not None else rng.randint(2_000, 100_000)
    left = prompt

    def take(most: int) -> int:
        nonlocal left
        n = min(rng.randint(1, max(most, 1)), left)
        left -= n
        return n

    cached = take(prompt // 5)
    creation = take(prompt // 5)
    audio, image, video = take(prompt // 10), take(prompt // 10), take(prompt // 10)
    cached_audio = min(cached // 3, rng.randint(0, cached))
    cached_image = min(cached // 3, rng.randint(0, cached - cached_audio))
    one_hour = rng.randint(0, creation)
    twelve_hours = rng.randint(0, creation - one_hour)
    completion = rng.randint(100, 20_000)
    reasoning, out_audio, out_image, out_video = (rng.randint(0, completion // 5) for _ in range(4))
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_creation_tokens=creation,
        cache_creation_1h_tokens=one_hour,
        cache_creation_12h_tokens=twelve_hours,
        cached_audio_tokens=cached_audio,
        cached_image_tokens=cached_image,
        audio_tokens=audio + cached_audio,
        image_tokens=image + cached_image,
        video_tokens=video,
        reasoning_tokens=reasoning,
        output_audio_tokens=out_audio,
        output_image_tokens=out_image,
        output_video_tokens=out_video,
        web_search_requests=rng.choice([0, 1, 3]),
    )


def check_against_litellm(name: str, usage: TokenUsage, context: UsageContext, ours) -> str | None:
    """None when `ours` (a cost, or the UnpricedUsage we raised) agrees with LiteLLM; else why not.
    A refusal agrees when LiteLLM charges the unpriced web search nothing (it has no price either)."""
    theirs = litellm_cost(name, usage, context)
    if isinstance(ours, UnpricedUsage):
        without = litellm_cost(name, usage._replace(web_search_requests=0), context)
        if usage.web_search_requests and abs(theirs - without) <= TOLERANCE:
            return None
        return f"refused ({ours.message}) where LiteLLM charges {theirs}"
    if abs(ours - theirs) > TOLERANCE:
        return f"ours {ours} != LiteLLM {theirs}"
    return None


def ours_or_refusal(price, usage, context):
    try:
        return cost_of(price, usage, context).total
    except UnpricedUsage as refused:
        return refused


def test_every_chat_model_every_dimension_equals_litellm():
    """Each chat model the table keeps, with a usage in every dimension below its tiers and one above
    its highest tier, costs what LiteLLM's cost_per_token (plus its web search cost) says."""
    rng = random.Random(16)
    compared, not_priced_by_litellm, mismatches = 0, [], []
    for name in CHAT_MODELS:
        if name in EXCLUDED:
            continue
        price = TABLE.price(name)
        usages = [usage_for(price, rng)]
        if price.tiers:
            usages.append(usage_for(price, rng, above=price.tiers[-1].above))
        context = UsageContext(search_context_size=rng.choice([None, "low", "medium", "high"]))
        try:
            problems = [
                check_against_litellm(name, u, context, ours_or_refusal(price, u, context)) for u in usages
            ]
        except Exception:  # noqa: BLE001 (LiteLLM cannot price this name on its own)
            not_priced_by_litellm.append(name)
            continue
        mismatches += [(name, p) for p in problems if p]
        compared += 1
    assert mismatches == []
    assert compared > 3000, compared
    assert len(not_priced_by_litellm) < MAX_NOT_PRICED_BY_LITELLM, not_priced_by_litellm


def test_exclusions_name_real_models_with_reasons():
    for name, reason in EXCLUDED.items():
        assert name in TABLE.names() and reason.strip()


# Usage shapes: what each API's usage block can say, and how it says it.
def project(shape: str, u: TokenUsage) -> TokenUsage:
    """`u` as far as `shape` can express it (what it cannot say, it reports as plain text tokens)."""
    if shape in ("chat", "responses"):
        return u
    if shape == "anthropic":  # cache reads, writes by 5m/1h, web search; no modalities or breakdown
        return TokenUsage(
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            cached_tokens=u.cached_tokens,
            cache_creation_tokens=u.cache_creation_tokens,
            cache_creation_1h_tokens=u.cache_creation_1h_tokens,
            web_search_requests=u.web_search_requests,
        )
    if shape == "gemini":  # no cache writes in usageMetadata
        return u._replace(cache_creation_tokens=0, cache_creation_1h_tokens=0, cache_creation_12h_tokens=0)
    assert shape == "bedrock"  # cache reads, writes by 5m/1h; nothing else
    return TokenUsage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        cached_tokens=u.cached_tokens,
        cache_creation_tokens=u.cache_creation_tokens,
        cache_creation_1h_tokens=u.cache_creation_1h_tokens,
        web_search_requests=u.web_search_requests,
    )


def render(shape: str, u: TokenUsage, context: UsageContext) -> dict:
    """The usage block `shape`'s API would send for `u` (already projected)."""
    search = {"search_context_size": context.search_context_size} if context.search_context_size else {}
    if shape in ("chat", "responses"):
        details = {
            "cached_tokens": u.cached_tokens,
            "cached_tokens_details": {
                "audio_tokens": u.cached_audio_tokens,
                "image_tokens": u.cached_image_tokens,
            },
            "cache_creation_tokens": u.cache_creation_tokens,
            "cache_creation_token_details": {
                "ephemeral_5m_input_tokens": u.cache_creation_tokens
                - u.cache_creation_1h_tokens
                - u.cache_creation_12h_tokens,
                "ephemeral_1h_input_tokens": u.cache_creation_1h_tokens,
                "ephemeral_12h_input_tokens": u.cache_creation_12h_tokens,
            },
            "audio_tokens": u.audio_tokens,
            "image_tokens": u.image_tokens,
            "video_tokens": u.video_tokens,
        }
        out = {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": u.output_audio_tokens,
            "image_tokens": u.output_image_tokens,
            "video_tokens": u.output_video_tokens,
        }
        names = (
            ("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details")
            if shape == "chat"
            else ("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")
        )
        block = dict(zip(names, (u.prompt_tokens, u.completion_tokens, details, out), strict=True))
        block["total_tokens"] = u.prompt_tokens + u.completion_tokens
        if u.web_search_requests:
            block["web_search_requests"] = u.web_search_requests
        return {**block, **search}
    if shape == "anthropic":
        block = {
            "input_tokens": u.prompt_tokens - u.cached_tokens - u.cache_creation_tokens,
            "cache_read_input_tokens": u.cached_tokens,
            "cache_creation_input_tokens": u.cache_creation_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": u.cache_creation_tokens - u.cache_creation_1h_tokens,
                "ephemeral_1h_input_tokens": u.cache_creation_1h_tokens,
            },
            "output_tokens": u.completion_tokens,
            "server_tool_use": {"web_search_requests": u.web_search_requests},
            "service_tier": "standard",
        }
        for field in ("inference_geo", "speed"):
            if getattr(context, field) is not None:
                block[field] = getattr(context, field)
        return block
    if shape == "gemini":
        candidates = u.completion_tokens - u.reasoning_tokens
        text_in = u.prompt_tokens - u.audio_tokens - u.image_tokens - u.video_tokens
        block = {
            "promptTokenCount": u.prompt_tokens,
            "candidatesTokenCount": candidates,
            "thoughtsTokenCount": u.reasoning_tokens,
            "cachedContentTokenCount": u.cached_tokens,
            "totalTokenCount": u.prompt_tokens + u.completion_tokens,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": text_in},
                {"modality": "AUDIO", "tokenCount": u.audio_tokens},
                {"modality": "IMAGE", "tokenCount": u.image_tokens},
                {"modality": "VIDEO", "tokenCount": u.video_tokens},
            ],
            "cacheTokensDetails": [
                {
                    "modality": "TEXT",
                    "tokenCount": u.cached_tokens - u.cached_audio_tokens - u.cached_image_tokens,
                },
                {"modality": "AUDIO", "tokenCount": u.cached_audio_tokens},
                {"modality": "IMAGE", "tokenCount": u.cached_image_tokens},
            ],
            "candidatesTokensDetails": [
                {
                    "modality": "TEXT",
                    "tokenCount": candidates
                    - u.output_audio_tokens
                    - u.output_image_tokens
                    - u.output_video_tokens,
                },
                {"modality": "AUDIO", "tokenCount": u.output_audio_tokens},
                {"modality": "IMAGE", "tokenCount": u.output_image_tokens},
                {"modality": "VIDEO", "tokenCount": u.output_video_tokens},
            ],
        }
        if u.web_search_requests:
            block["web_search_requests"] = u.web_search_requests
        return block
    block = {
        "inputTokens": u.prompt_tokens - u.cached_tokens - u.cache_creation_tokens,
        "outputTokens": u.completion_tokens,
        "totalTokens": u.prompt_tokens + u.completion_tokens,
        "cacheReadInputTokens": u.cached_tokens,
        "cacheWriteInputTokens": u.cache_creation_tokens,
        "cacheDetails": [
            {"ttl": "5m", "inputTokens": u.cache_creation_tokens - u.cache_creation_1h_tokens},
            {"ttl": "1h", "inputTokens": u.cache_creation_1h_tokens},
        ],
    }
    if u.web_search_requests:
        block["web_search_requests"] = u.web_search_requests
    return {**block, **search}


SHAPES = ("chat", "responses", "anthropic", "gemini", "bedrock")


@functools.lru_cache(maxsize=1)
def priced_by_litellm() -> list[str]:
    """The chat models LiteLLM prices by their name alone (the others: MAX_NOT_PRICED_BY_LITELLM)."""
    out = []
    for name in CHAT_MODELS:
        try:
            litellm.cost_per_token(model=name, prompt_tokens=1, completion_tokens=1)
        except Exception:  # noqa: BLE001, S112 (LiteLLM cannot price the bare name)
            continue
        out.append(name)
    return out


@st.composite
def calls(draw):
    name = draw(st.sampled_from(priced_by_litellm()))
    price = TABLE.price(name)
    rng = random.Random(draw(st.integers(0, 2**32)))
    above = draw(st.sampled_from([None, *(t.above for t in price.tiers)]))
    usage = usage_for(price, rng, above=above)
    anthropic = (price.provider or "") == "anthropic"
    context = UsageContext(
        search_context_size=draw(st.sampled_from([None, "low", "medium", "high"])),
        inference_geo=draw(st.sampled_from([None, "us", "global"])) if anthropic else None,
        speed=draw(st.sampled_from([None, "fast"])) if anthropic else None,
    )
    return name, usage, context


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls())
def test_every_usage_shape_costs_what_litellm_says(call):
    """Generated calls on sampled chat models, sent in each API's usage shape through the cost
    request model and pricing: the shape converts to the counts it says, and the cost equals LiteLLM's."""
    name, usage, context = call
    for shape in SHAPES:
        expected = project(shape, usage)
        shape_context = context if shape == "anthropic" else context._replace(inference_geo=None, speed=None)
        if shape in ("anthropic", "gemini"):
            shape_context = shape_context._replace(search_context_size=None)
        block = render(shape, expected, shape_context)
        tokens, parsed_context = to_token_usage(UsageIn.model_validate(block))
        assert tokens == expected, (shape, tokens._asdict(), expected._asdict())
        request = CostRequest.model_validate({"model": name, "usage": block})
        try:
            ours = price_request(request).cost
        except UnpricedUsage as refused:
            ours = refused
        problem = check_against_litellm(name, expected, parsed_context, ours)
        assert problem is None, (shape, name, problem)


def test_gemini_whole_response_with_grounding_is_priced_per_prompt():
    response = {
        "modelVersion": "gemini-2.5-flash",
        "candidates": [
            {"content": {"parts": [{"text": "hi"}]}, "groundingMetadata": {"webSearchQueries": ["a", "b"]}}
        ],
        "usageMetadata": {
            "promptTokenCount": 1000,
            "candidatesTokenCount": 200,
            "thoughtsTokenCount": 50,
            "toolUsePromptTokenCount": 300,
            "totalTokenCount": 1550,
        },
    }
    event = price_request(CostRequest.model_validate({"completion": response}))
    # grounded: the tool-use tokens are not billed; one grounded prompt at the medium price
    usage = TokenUsage(prompt_tokens=1000, completion_tokens=250, reasoning_tokens=50, web_search_requests=2)
    assert event.tokens == usage
    assert abs(event.cost - litellm_cost("gemini-2.5-flash", usage)) <= TOLERANCE


def test_a_dimension_the_price_cannot_bill_is_refused_not_charged_at_another_rate():
    with pytest.raises(UnpricedUsage) as err:
        cost_of(TABLE.price("gpt-4o"), TokenUsage(prompt_tokens=10), UsageContext(service_tier="scale"))
    assert err.value.status == 422 and "cost" in err.value.message
    no_search_price = next(
        n
        for n in CHAT_MODELS
        if not TABLE.price(n).web_search and (TABLE.price(n).provider or "") == "openai"
    )
    with pytest.raises(UnpricedUsage):
        cost_of(TABLE.price(no_search_price), TokenUsage(prompt_tokens=10, web_search_requests=1))


# Dimensions LiteLLM's map prices that no usage shape here carries, or that this service does not
# bill: each is refused (422, pass cost), never charged at another rate.
DIMENSIONS_LEFT_OUT = {
    "a service tier LiteLLM does not know (scale)": {
        "model": "gpt-4o",
        "usage": {"prompt_tokens": 10, "service_tier": "scale"},
    },
    "batch on a model LiteLLM's map gives no batch rates": {
        "model": "claude-mythos-preview",
        "usage": {"input_tokens": 10, "output_tokens": 1, "service_tier": "batch"},
    },
    "Gemini trafficType LiteLLM does not price (provisioned throughput)": {
        "model": "gemini-2.5-flash",
        "usage": {"promptTokenCount": 10, "trafficType": "PROVISIONED_THROUGHPUT"},
    },
    "Grounding with Google Maps (google_maps_grounding_cost_per_query)": {
        "completion": {
            "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": 10},
            "candidates": [{"groundingMetadata": {"groundingChunks": [{"maps": {"uri": "x"}}]}}],
        }
    },
    "web search on a model without a web search price": {
        "model": "ft:gpt-4o-mini-2024-07-18",
        "usage": {"prompt_tokens": 10, "web_search_requests": 1},
    },
}


@pytest.mark.parametrize("why", sorted(DIMENSIONS_LEFT_OUT))
def test_dimensions_left_out_are_refused(budget, why):
    response = post_cost(budget, DIMENSIONS_LEFT_OUT[why])
    assert response.status == 422 and response.json()["error"]["code"] == "unpriced_usage", response
    assert "cost" in response.json()["error"]["message"]
    assert spend(budget) == 0


def test_an_anthropic_message_as_completion(budget):
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 500,
            "cache_read_input_tokens": 2000,
            "cache_creation_input_tokens": 1000,
            "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
            "output_tokens": 300,
            "server_tool_use": {"web_search_requests": 2},
            "service_tier": "standard",
        },
    }
    answer = post_cost(budget, {"completion": message}).json()
    usage = TokenUsage(
        prompt_tokens=3500,
        completion_tokens=300,
        cached_tokens=2000,
        cache_creation_tokens=1000,
        cache_creation_1h_tokens=600,
        web_search_requests=2,
    )
    assert abs(answer["cost"] - litellm_cost("claude-sonnet-4-5-20250929", usage)) <= TOLERANCE
    assert (
        answer["tokens"]["cache_creation_1h_tokens"] == 600 and answer["tokens"]["web_search_requests"] == 2
    )


@pytest.mark.parametrize(
    "block, problem",
    [
        ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}}, "exceed"),
        ({"input_tokens": 5, "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 2}}, "exceed"),
        (
            {"inputTokens": 5, "cacheWriteInputTokens": 4, "cacheDetails": [{"ttl": "1h", "inputTokens": 5}]},
            "add up",
        ),
        ({"prompt_tokens": 5, "input_tokens": 5}, "mixes"),
        ({"total_tokens": 5}, "prompt_tokens"),
    ],
)
def test_usage_that_does_not_add_up_is_a_422_and_writes_nothing(budget, block, problem):
    response = post_cost(budget, {"model": "gpt-4o", "usage": block})
    assert response.status == 422 and problem in response.text, response
    assert spend(budget) == 0


# ---- model names ----------------------------------------------------------------------------------


def name_forms(key: str, provider: str) -> list[str]:
    """The forms a caller may write for the map entry `key`: the key, its model part in another case,
    with the provider prefix, Bedrock's routes, regions and cross-region prefixes, a dated snapshot."""
    forms = []
    if "/" in key:
        head, rest = key.split("/", 1)
        forms.append(f"{head}/{rest.upper()}")
    elif provider:
        forms.append(f"{provider.split('-', 1)[0]}/{key}")
    if provider.startswith("bedrock"):
        base = key.split("/")[-1]
        forms += [
            f"bedrock/converse/{base}",
            f"bedrock/invoke/{base}",
            f"bedrock/us-west-2/{base}",
            f"bedrock/us.{base}",
            f"bedrock/eu.{base}",
            f"bedrock/apac.{base}",
            f"bedrock/global.{base}",
        ]
    forms.append(f"{key}-2099-01-01")
    return forms


def test_every_name_form_resolves_to_the_entry_litellm_uses_or_is_refused():
    """For every entry of the table, each form resolves to an entry LiteLLM prices the same call at
    exactly (so the same entry: a different one would differ on some rate), or is refused. A bare
    name (no provider prefix) that LiteLLM cannot route alone is compared with the prefix added:
    this service takes bare names of listed models, in any case, and their dated snapshots."""
    usage = TokenUsage(prompt_tokens=1000, completion_tokens=1000, cached_tokens=100)
    wrong, resolved = [], 0
    for key in TABLE.names():
        provider = TABLE.entry(key).get("provider") or ""
        for form in name_forms(key, provider):
            ours = TABLE.resolve_name(form)
            if ours is None:
                continue
            resolved += 1
            cost = cost_of(TABLE.price(ours), usage).total
            attempts = (
                [form] if "/" in form else [form, f"{provider}/{form}", f"{provider.split('-', 1)[0]}/{form}"]
            )
            theirs = None
            for attempt in attempts:
                try:
                    theirs = litellm_cost(attempt, usage)
                    break
                except Exception:  # noqa: BLE001, S112 (LiteLLM refuses the name)
                    continue
            if theirs is None or abs(cost - theirs) > TOLERANCE:
                wrong.append((form, ours, str(cost), str(theirs)))
    assert wrong == [], wrong
    assert resolved > 8_000, resolved


@pytest.mark.parametrize(
    "name, key",
    [
        ("bedrock/converse/us.deepseek.r1-v1:0", "us.deepseek.r1-v1:0"),
        (
            "bedrock/invoke/anthropic.claude-3-5-sonnet-20241022-v2:0",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
        ),
        (
            "bedrock/us-west-2/anthropic.claude-3-5-sonnet-20241022-v2:0",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
        ),
        (
            "bedrock/apac.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
        ),
        (
            "bedrock/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        ("vertex_ai/gemini-2.5-pro", "gemini-2.5-pro"),
        ("openai/gpt-4o-2099-01-01", "gpt-4o"),
        ("anthropic/gpt-4o", None),  # an entry of another provider is never used
        ("openrouter/openai/gpt-4o", None),
        ("gemini/gemini-exp-1206", None),  # LiteLLM's entry is a 0/0 one: refused, not gemini-exp-1206
        ("bedrock_converse/amazon.nova-lite-v1:0", None),  # not a route LiteLLM takes
    ],
)
def test_name_forms(name, key):
    assert TABLE.resolve_name(name) == key


# ---- make prices -----------------------------------------------------------------------------------


def test_make_prices_works_offline_and_reports_what_it_drops(no_network, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(refresh_prices, "TABLE", tmp_path / "prices.json")
    assert refresh_prices.main(["--list-dropped"]) == 0
    err = capsys.readouterr().err
    assert "left out:" in err and "deepseek-v3-2-251201: priced 0/0 without being free on purpose" in err
    assert "priced by a token-range table" in err and "free on purpose" in err
    written = json.loads((tmp_path / "prices.json").read_text())
    assert written["unpriced"]["deepseek-v3-2-251201"]["why"].startswith("priced 0/0")


@pytest.fixture
def no_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# ---- per-project prices ----------------------------------------------------------------------------


def put_price(api, model, body, project="acme"):
    return api.call("PUT", PRICE, {"project": project, "model": model}, body=json.dumps(body))


def test_a_project_price_wins_for_that_project_only_and_deleting_restores(budget):
    other = {"project": "other", "user": "alice"}
    assert (
        budget.call("PUT", "/projects/{project}/users/{user}", other, body={"total_budget": 100}).status
        == 201
    )
    usage = {"prompt_tokens": 1000, "completion_tokens": 100}
    table_cost = post_cost(budget, {"model": "gpt-4o", "usage": usage}).json()["cost"]
    assert table_cost == Decimal("0.0035")

    created = put_price(budget, "gpt-4o", {"input": 0.000001, "output": 0.000002})
    assert created.status == 201, created
    assert created.json()["priced_as"] == "project:gpt-4o"
    assert put_price(budget, "gpt-4o", {"input": 0.000001, "output": 0.000002}).status == 200

    mine = post_cost(budget, {"model": "openai/gpt-4o", "usage": usage}).json()
    assert mine["cost"] == Decimal("0.0012") and mine["priced_as"] == "project:gpt-4o"
    theirs = post_cost(budget, {"model": "gpt-4o", "usage": usage}, who=other).json()
    assert theirs["cost"] == table_cost and theirs["priced_as"] == "gpt-4o"

    got = budget.call("GET", PRICE, {"project": "acme", "model": "gpt-4o"})
    assert got.status == 200 and got.json()["price"] == {
        "input": Decimal("0.000001"),
        "output": Decimal("0.000002"),
    }
    listed = budget.call("GET", "/projects/{project}/prices", {"project": "acme"}).json()["prices"]
    assert [p["model"] for p in listed] == ["gpt-4o"]

    assert budget.call("DELETE", PRICE, {"project": "acme", "model": "gpt-4o"}).status == 204
    assert budget.call("GET", PRICE, {"project": "acme", "model": "gpt-4o"}).status == 404
    assert budget.call("DELETE", PRICE, {"project": "acme", "model": "gpt-4o"}).status == 404
    restored = post_cost(budget, {"model": "gpt-4o", "usage": usage}).json()
    assert restored["cost"] == table_cost and restored["priced_as"] == "gpt-4o"


def test_a_project_prices_its_own_fine_tune_with_every_field(budget):
    model = "ft:gpt-4o-mini:acme::xyz"
    body = {
        "input": 0.000002,
        "output": 0.000008,
        "cache_read": 0.0000005,
        "input_audio": 0.00001,
        "tiers": [{"above": 100000, "input": 0.000004}],
        "web_search": {"medium": 0.01},
    }
    assert put_price(budget, model, body).status == 201
    answer = post_cost(
        budget,
        {
            "model": model,
            "usage": {
                "prompt_tokens": 1000,
                "completion_tokens": 10,
                "web_search_requests": 2,
                "prompt_tokens_details": {"cached_tokens": 200, "audio_tokens": 300},
            },
        },
    ).json()
    # 500 text x 2e-6 + 200 cached x 5e-7 + 300 audio x 1e-5 + 10 x 8e-6 + 2 searches x 0.01
    assert answer["cost"] == Decimal("0.02418") and answer["priced_as"] == f"project:{model}"


@pytest.mark.parametrize(
    "body",
    [
        {"input": 0, "output": 0},  # 0/0 must say why it is free
        {"input": -1, "output": 1},
        {"input": 1},
        {"input": 1, "output": 1, "cache_read": "0.1"},
        {"input": 1, "output": 1, "surprise": 1},
    ],
)
def test_a_bad_price_is_a_422_and_stores_nothing(budget, body):
    response = put_price(budget, "m", body)
    assert response.status == 422, response
    assert budget.call("GET", PRICE, {"project": "acme", "model": "m"}).status == 404


def test_a_free_project_model_costs_nothing_when_it_says_why(budget):
    assert (
        put_price(budget, "my-local-llm", {"input": 0, "output": 0, "free": "runs on our GPUs"}).status == 201
    )
    answer = post_cost(budget, {"model": "my-local-llm", "usage": {"prompt_tokens": 5000}}).json()
    assert answer["cost"] == 0 and answer["priced_as"] == "project:my-local-llm"


def test_a_cost_priced_past_the_money_limit_is_a_422_on_every_route_not_a_500(budget, aws):
    """A project price may be up to MONEY_MAX per token, so usage can price a call at 10^17 USD,
    whose 25 decimal places do not fit the 38-digit context: a 422 that writes nothing, on each
    route that prices (cost, settle, hold by messages, projected cost)."""
    assert put_price(budget, "pricey", {"input": 1e12, "output": 1e12}).status == 201
    before = aws.scan(TableName="budgets-test")["Items"]
    usage = {"prompt_tokens": 100000, "completion_tokens": 0}
    messages = [{"role": "user", "content": "word " * 20000}]
    hold = "/projects/{project}/users/{user}/holds"
    calls = [
        ("POST", COST, WHO, {"model": "pricey", "usage": usage}),
        ("POST", COST, WHO, {"model": "pricey", "input_text": "word " * 20000}),
        (
            "POST",
            hold + "/{hold_id}/settle",
            {**WHO, "hold_id": "0" * 32 + "-1"},
            {"model": "pricey", "usage": usage},
        ),
        ("POST", hold, WHO, {"model": "pricey", "messages": messages}),
        (
            "POST",
            "/projects/{project}/users/{user}/projected-cost",
            WHO,
            {"model": "pricey", "messages": messages},
        ),
    ]
    for method, path, who, body in calls:
        response = budget.call(method, path, who, body=json.dumps(body))
        assert response.status == 422, (path, response)
        assert "over the limit" in response.json()["error"]["message"]
    assert aws.scan(TableName="budgets-test")["Items"] == before


def test_other_containers_see_a_new_price_within_the_stated_staleness(store, monkeypatch):
    """Prices are cached per container for PRICE_CACHE_SECONDS; the writer's own container forgets
    its copy at once, another one (another client here) after the cache time."""
    import boto3

    from budget_service.schemas import PriceIn
    from budget_service.store.base import BudgetStore

    # A project of its own: the cache is keyed by the client's id(), which a collected client of
    # an earlier test may have had (its entry still fresh on this test's clock).
    project = f"acme-{uuid.uuid4().hex[:8]}"
    clock = [1000.0]
    # The prices module's own clock only: patching time.monotonic itself would move every clock
    # of this process (the contention model's among them).
    monkeypatch.setattr(project_prices, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    other_container = BudgetStore(
        store.table_name, client=boto3.client("dynamodb", region_name=store.client.meta.region_name)
    )
    assert project_prices.for_project(other_container, project).price("gpt-4o").name == "gpt-4o"
    project_prices.put_price(store, project, "gpt-4o", PriceIn(input=1, output=1), Decimal(1))
    assert project_prices.for_project(store, project).price("gpt-4o").name == "project:gpt-4o"
    clock[0] += project_prices.PRICE_CACHE_SECONDS - 1
    assert project_prices.for_project(other_container, project).price("gpt-4o").name == "gpt-4o"  # stale
    clock[0] += 2
    assert project_prices.for_project(other_container, project).price("gpt-4o").name == "project:gpt-4o"


def test_unknown_model_says_a_project_can_price_it():
    with pytest.raises(UnknownModel) as err:
        TABLE.price("my-own-model")
    assert "/prices/" in err.value.message
