"""Usage fields and service tiers providers report, priced as LiteLLM prices them: xAI reasoning
outside completion_tokens, DeepSeek's cache fields, OpenAI Responses cache-write lifetimes, service
tiers (OpenAI service_tier, Vertex trafficType, Anthropic batch), spend keyed by the model the
price resolved to; and a property test against ``litellm.completion_cost`` on the same response.

Each amount below is what LiteLLM 1.110.2's ``completion_cost`` gives for the same response."""

from __future__ import annotations

import copy
import functools
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litellm_reference import litellm

from budget_service.core.errors import UnpricedUsage
from budget_service.domain.costs import price as price_request
from budget_service.pricing.prices import default_table
from budget_service.schemas import CostRequest

COST = "/projects/{project}/users/{user}/cost"
WHO = {"project": "acme", "user": "alice"}
TOLERANCE = Decimal("1e-12")


@pytest.fixture
def budget(api):
    response = api.call("PUT", "/projects/{project}/users/{user}", WHO, body={"total_budget": 100})
    assert response.status == 201, response
    return api


def post_cost(api, body):
    return api.call("POST", COST, WHO, body=json.dumps(body))


def charged(api, body) -> dict:
    response = post_cost(api, body)
    assert response.status == 200, response
    return response.json()


# ---- the reproductions ------------------------------------------------------------------------------


def test_xai_reasoning_outside_completion_tokens_is_priced(budget):
    """xAI reports reasoning apart (total_tokens = prompt + completion + reasoning); was a 422."""
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1700,
        "completion_tokens_details": {"reasoning_tokens": 500},
    }
    answer = charged(budget, {"model": "xai/grok-4.20", "usage": usage})
    # 1000 x 1.25e-6 + (200 + 500) x 2.5e-6
    assert answer["cost"] == Decimal("0.003")
    assert answer["tokens"]["completion_tokens"] == 700 and answer["tokens"]["reasoning_tokens"] == 500


def test_deepseek_cache_hits_bill_at_the_cache_read_rate(budget):
    """DeepSeek's prompt_cache_hit_tokens are cache reads (was: all at the input rate, 0.002954)."""
    usage = {
        "prompt_tokens": 10000,
        "completion_tokens": 500,
        "total_tokens": 10500,
        "prompt_cache_hit_tokens": 8000,
        "prompt_cache_miss_tokens": 2000,
    }
    answer = charged(budget, {"model": "deepseek/deepseek-chat", "usage": usage})
    # 2000 x 2.8e-7 + 8000 x 2.8e-8 + 500 x 4.2e-7
    assert answer["cost"] == Decimal("0.000994") and answer["tokens"]["cached_tokens"] == 8000


def test_deepseek_counts_that_do_not_add_up_are_a_422(budget):
    usage = {"prompt_tokens": 100, "prompt_cache_hit_tokens": 80, "prompt_cache_miss_tokens": 30}
    response = post_cost(budget, {"model": "deepseek/deepseek-chat", "usage": usage})
    assert response.status == 422 and "prompt_cache_miss_tokens" in response.text, response


def test_responses_cache_writes_bill_by_lifetime(budget):
    """OpenAI Responses splits cache writes into 30-minute and 12-hour ones (was: all at the 30m rate, 0.043)."""
    usage = {
        "input_tokens": 10000,
        "output_tokens": 100,
        "input_tokens_details": {
            "cached_tokens": 0,
            "cache_write_tokens": 6000,
            "cache_write_tokens_details": {"ttl_30m_tokens": 2000, "ttl_12h_tokens": 4000},
        },
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    answer = charged(budget, {"model": "gpt-5.6", "usage": usage})
    # 4000 x 5e-6 input + 2000 x 5e-6 (30m write) + 4000 x 1e-5 (12h write) + 100 x 3e-5 output
    assert answer["cost"] == Decimal("0.068") and answer["tokens"]["cache_creation_12h_tokens"] == 4000


GPT5 = {"prompt_tokens": 10000, "completion_tokens": 1000}


@pytest.mark.parametrize(
    "body, cost",
    [
        ({"completion": {"model": "gpt-5", "usage": GPT5, "service_tier": "flex"}}, "0.01125"),
        ({"completion": {"model": "gpt-5", "usage": GPT5, "service_tier": "priority"}}, "0.045"),
        ({"completion": {"model": "gpt-5", "usage": GPT5, "service_tier": "default"}}, "0.0225"),
        (
            {
                "model": "vertex_ai/gemini-2.5-flash",
                "usage": {
                    "promptTokenCount": 10000,
                    "candidatesTokenCount": 1000,
                    "totalTokenCount": 11000,
                    "trafficType": "ON_DEMAND_FLEX",
                },
            },
            "0.00275",
        ),
        (
            {
                "model": "vertex_ai/gemini-2.5-flash",
                "usage": {
                    "promptTokenCount": 10000,
                    "candidatesTokenCount": 1000,
                    "totalTokenCount": 11000,
                    "trafficType": "ON_DEMAND_PRIORITY",
                },
            },
            "0.0099",
        ),
        (
            {
                "model": "claude-sonnet-4-5-20250929",
                "usage": {
                    "input_tokens": 1000,
                    "output_tokens": 10,
                    "server_tool_use": {"web_search_requests": 2},
                    "service_tier": "batch",
                },
            },
            # 1000 x 1.5e-6 + 10 x 7.5e-6 (batch rates) + 2 searches x 0.01
            "0.021575",
        ),
    ],
    ids=[
        "openai-flex",
        "openai-priority",
        "openai-default",
        "vertex-flex",
        "vertex-priority",
        "anthropic-batch",
    ],
)
def test_service_tiers_bill_at_their_rates(budget, body, cost):
    """Was a 422 unpriced_usage for every tier but the standard one."""
    assert charged(budget, body)["cost"] == Decimal(cost)


def test_one_model_under_two_names_is_one_spend_entry(budget):
    """gpt-4o and openai/gpt-4o are priced as gpt-4o: their spend is one entry (was two)."""
    usage = {"prompt_tokens": 1000, "completion_tokens": 100}
    charged(budget, {"model": "gpt-4o", "usage": usage})
    charged(budget, {"model": "openai/gpt-4o", "usage": usage})
    charged(budget, {"model": "openai/gpt-4o-2099-01-01", "cost": 1})  # already priced: resolved too
    charged(budget, {"model": "my-own-model", "cost": 2})  # unknown to the table: as sent
    record = budget.call("GET", "/projects/{project}/users/{user}", WHO).json()
    assert record["model_cost"] == {"gpt-4o": Decimal("1.007"), "my-own-model": 2}


# ---- the property test --------------------------------------------------------------------------------

TABLE = default_table()
SAMPLE_PER_PROVIDER = 3
GEMINI_TRAFFIC = {"flex": "ON_DEMAND_FLEX", "priority": "ON_DEMAND_PRIORITY"}


def _gemini_family(provider: str) -> bool:
    return provider == "gemini" or provider.startswith("vertex_ai")


def _litellm_prices(name: str) -> bool:
    try:
        litellm.cost_per_token(model=name, prompt_tokens=1, completion_tokens=1)
    except Exception:  # noqa: BLE001 (LiteLLM cannot price the bare name)
        return False
    return True


@functools.lru_cache(maxsize=1)
def sampled_models() -> dict[str, list[str]]:
    """Per provider of the table's chat models: a few models LiteLLM prices by name, spread over the
    provider's sorted list, plus a few with service-tier or batch rates (deterministic)."""
    by_provider: dict[str, list[str]] = {}
    for name in sorted(TABLE.names()):
        entry = TABLE.entry(name)
        if entry["mode"] == "chat":
            by_provider.setdefault(entry.get("provider") or "", []).append(name)
    out = {}
    for provider, names in sorted(by_provider.items()):
        tiered = [n for n in names if TABLE.entry(n).get("service_tiers")]
        plain = [n for n in names if n not in tiered]
        picked = []
        for group in (plain, tiered):
            step = max(len(group) // SAMPLE_PER_PROVIDER, 1)
            picked += [n for n in group[::step] if _litellm_prices(n)][:SAMPLE_PER_PROVIDER]
        if picked:
            out[provider] = picked
    return out


@st.composite
def usages(draw, provider: str, tiers: list[str]):
    """(shape, the raw usage block as the provider's API reports it, the response's service tier)."""
    shapes = ["openai", "deepseek", "anthropic", "responses"] + (["xai"] if provider == "xai" else [])
    shape = draw(st.sampled_from(shapes))
    prompt = draw(st.one_of(st.integers(0, 20_000), st.integers(190_000, 300_000)))
    cached = draw(st.integers(0, prompt // 2))
    written = draw(st.integers(0, (prompt - cached) // 2))
    twelve_hours = draw(st.integers(0, written))
    one_hour = draw(st.integers(0, written - twelve_hours))
    left = prompt - cached - written
    audio = draw(st.integers(0, left // 4))
    image = draw(st.integers(0, left // 4))
    video = draw(st.integers(0, left // 4))
    completion = draw(st.integers(0, 20_000))
    reasoning = draw(st.integers(0, completion))
    out_audio = draw(st.integers(0, (completion - reasoning) // 3))
    out_image = draw(st.integers(0, (completion - reasoning) // 3))
    tier = draw(st.sampled_from([None, "auto", "default", *tiers]))
    if shape == "openai":  # Chat Completions with LiteLLM's details (cache writes by TTL, modalities)
        block = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {
                "cached_tokens": cached,
                "cache_write_tokens": written,
                "cache_creation_token_details": {
                    "ephemeral_5m_input_tokens": written - one_hour - twelve_hours,
                    "ephemeral_1h_input_tokens": one_hour,
                    "ephemeral_12h_input_tokens": twelve_hours,
                },
                "audio_tokens": audio,
                "image_tokens": image,
                "video_tokens": video,
            },
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": out_audio,
                "image_tokens": out_image,
            },
        }
    elif shape == "deepseek":
        block = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_cache_hit_tokens": cached,
            "prompt_cache_miss_tokens": prompt - cached,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    elif shape == "anthropic":  # LiteLLM's Usage with Anthropic's cache fields (part of prompt_tokens)
        block = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": written,
        }
    elif shape == "xai":  # reasoning counted outside completion_tokens
        block = {
            "prompt_tokens": prompt,
            "completion_tokens": completion - reasoning,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    else:  # OpenAI Responses, cache writes by lifetime
        block = {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
            "input_tokens_details": {
                "cached_tokens": cached,
                "cache_write_tokens": written,
                "cache_write_tokens_details": {
                    "ttl_30m_tokens": written - twelve_hours,
                    "ttl_12h_tokens": twelve_hours,
                },
            },
            "output_tokens_details": {"reasoning_tokens": reasoning},
        }
    return shape, block, tier


@st.composite
def calls(draw):
    models = sampled_models()
    provider = draw(st.sampled_from(sorted(models)))
    name = draw(st.sampled_from(models[provider]))
    rates = TABLE.entry(name).get("service_tiers", {})
    tiers = sorted(t for t in rates if t != "batches")
    if _gemini_family(provider):
        tiers = [t for t in tiers if t in GEMINI_TRAFFIC]  # what a trafficType can name
    if "input" in rates.get("batches", {}):
        tiers.append("batch")
    tiers.append("priority")  # a tier the model may lack: its standard rates, as in LiteLLM
    shape, block, tier = draw(usages(provider, tiers))
    return name, provider, shape, block, tier


def litellm_completion_cost(name: str, provider: str, shape: str, block: dict, tier: str | None) -> Decimal:
    """litellm.completion_cost of the response carrying `block` (as LiteLLM's Usage normalises it)
    and `tier` (the response's service_tier; Vertex's trafficType; a batch output line)."""
    if shape == "responses":
        from litellm.responses.utils import ResponseAPILoggingUtils

        usage = ResponseAPILoggingUtils.transform_response_api_usage_to_chat_usage(copy.deepcopy(block))
    else:
        usage = litellm.Usage(**copy.deepcopy(block))
    response = litellm.ModelResponse(model=name, usage=usage)
    kwargs = {}
    if tier == "batch":
        kwargs["call_type"] = "retrieve_batch"
    elif tier is not None and _gemini_family(provider) and tier in GEMINI_TRAFFIC:
        response._hidden_params = {"provider_specific_fields": {"traffic_type": GEMINI_TRAFFIC[tier]}}
    elif tier is not None:
        response.service_tier = tier
    return Decimal(repr(litellm.completion_cost(completion_response=response, model=name, **kwargs)))


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(calls())
def test_the_cost_of_every_usage_shape_and_tier_equals_litellms(call):
    """Usage in each shape LiteLLM's Usage normalises (OpenAI details, DeepSeek cache fields,
    Anthropic cache fields, xAI reasoning outside the output, Responses cache-write lifetimes),
    on sampled models of every provider, at every tier the model has: the service's cost is
    litellm.completion_cost's for the same response."""
    name, provider, shape, block, tier = call
    completion = {"model": name, "usage": block}
    if tier is not None:
        completion["service_tier"] = tier
    request = CostRequest.model_validate({"completion": completion})
    try:
        ours = price_request(request).cost
    except UnpricedUsage as refused:
        pytest.fail(f"{name} {shape} {tier}: refused ({refused.message})")
    theirs = litellm_completion_cost(name, provider, shape, block, tier)
    assert abs(ours - theirs) <= TOLERANCE, (name, shape, tier, block, str(ours), str(theirs))


def test_the_sample_covers_every_provider_and_the_tiers():
    models = sampled_models()
    providers = {
        TABLE.entry(n).get("provider") or "" for n in TABLE.names() if TABLE.entry(n)["mode"] == "chat"
    }
    assert len(models) > 0.9 * len(providers), sorted(providers - models.keys())
    sampled = [n for names in models.values() for n in names]
    tiers = {t for n in sampled for t in TABLE.entry(n).get("service_tiers", {})}
    assert {"flex", "priority", "batches"} <= tiers
