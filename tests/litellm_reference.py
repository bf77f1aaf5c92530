"""LiteLLM 1.110.2's own cost of a usage, as the reference the cost engine is checked against.

Builds LiteLLM's ``Usage`` from our ``TokenUsage`` (every detail field it reads) and prices it with
``litellm.cost_per_token`` plus LiteLLM's built-in tool cost (web search), as ``completion_cost``
adds them. Returns Decimal(repr(float)) sums, so a comparison to 1e-12 is meaningful.
"""

from __future__ import annotations

import os
from decimal import Decimal

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
from litellm.litellm_core_utils.llm_cost_calc.tool_call_cost_tracking import (
    StandardBuiltInToolCostTracking,
)
from litellm.types.utils import ModelResponse, Usage

from budget_service.schemas.usage import TokenUsage, UsageContext


def litellm_usage(u: TokenUsage, context: UsageContext | None = None) -> Usage:
    context = context or UsageContext()
    prompt_details: dict = {}
    if u.cached_tokens:
        prompt_details["cached_tokens"] = u.cached_tokens
    if u.cached_audio_tokens or u.cached_image_tokens:
        prompt_details["cached_tokens_details"] = {
            "audio_tokens": u.cached_audio_tokens,
            "image_tokens": u.cached_image_tokens,
        }
    if u.cache_creation_tokens:
        prompt_details["cache_creation_tokens"] = u.cache_creation_tokens
        if u.cache_creation_1h_tokens or u.cache_creation_12h_tokens:
            prompt_details["cache_creation_token_details"] = {
                "ephemeral_5m_input_tokens": u.cache_creation_tokens
                - u.cache_creation_1h_tokens
                - u.cache_creation_12h_tokens,
                "ephemeral_1h_input_tokens": u.cache_creation_1h_tokens,
                "ephemeral_12h_input_tokens": u.cache_creation_12h_tokens,
            }
    for name in ("audio_tokens", "image_tokens", "video_tokens"):
        if getattr(u, name):
            prompt_details[name] = getattr(u, name)
    if u.web_search_requests:
        prompt_details["web_search_requests"] = u.web_search_requests
    completion_details: dict = {}
    for ours, theirs in (
        ("reasoning_tokens", "reasoning_tokens"),
        ("output_audio_tokens", "audio_tokens"),
        ("output_image_tokens", "image_tokens"),
        ("output_video_tokens", "video_tokens"),
    ):
        if getattr(u, ours):
            completion_details[theirs] = getattr(u, ours)
    kwargs: dict = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }
    if prompt_details:
        kwargs["prompt_tokens_details"] = prompt_details
    if completion_details:
        kwargs["completion_tokens_details"] = completion_details
    if u.web_search_requests:
        kwargs["server_tool_use"] = {"web_search_requests": u.web_search_requests}
        kwargs["server_side_tool_usage_details"] = {"web_search_calls": u.web_search_requests}
    if context.inference_geo is not None:
        kwargs["inference_geo"] = context.inference_geo
    if context.speed is not None:
        kwargs["speed"] = context.speed
    return Usage(**kwargs)


def litellm_cost(model: str, u: TokenUsage, context: UsageContext | None = None) -> Decimal:
    """LiteLLM's cost of `u` on `model` (tokens + web search), as an exact Decimal of its floats."""
    context = context or UsageContext()
    usage = litellm_usage(u, context)
    prompt, completion = litellm.cost_per_token(model=model, usage_object=usage)
    total = Decimal(repr(prompt)) + Decimal(repr(completion))
    if u.web_search_requests:
        provider = litellm.get_llm_provider(model)[1]
        params = (
            {"web_search_options": {"search_context_size": context.search_context_size}}
            if context.search_context_size
            else {}
        )
        tools = StandardBuiltInToolCostTracking.get_cost_for_built_in_tools(
            model=model,
            response_object=ModelResponse(),
            usage=litellm_usage(u, context),
            custom_llm_provider=provider,
            standard_built_in_tools_params=params,
        )
        total += Decimal(repr(tools))
    return total
