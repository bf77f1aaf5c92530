"""Usage as each major API reports it -> the token counts the price table bills (TokenUsage).

Each provider documents its own usage block; these are the conversions (and LiteLLM 1.110.2 makes
the same ones, in its provider transformations, before it prices a call):

- OpenAI Chat Completions: ``prompt_tokens`` includes cached, cache-written, audio and image
  tokens; ``completion_tokens`` includes reasoning, audio and image tokens. Taken as they are.
  DeepSeek's ``prompt_cache_hit_tokens`` are cache reads (LiteLLM's ``Usage`` maps them to
  ``cached_tokens``), ``prompt_cache_miss_tokens`` the rest of the prompt. xAI counts reasoning
  tokens outside ``completion_tokens`` (``total_tokens`` = prompt + completion + reasoning): they
  are added to the output, as LiteLLM's xAI calculator does.
  Where modality counts overlap the cache (OpenAI counts cached audio inside ``audio_tokens`` and
  reports no split), cache reads come first and the modalities bill what is left, in the order
  audio, image, video (LiteLLM's ``generic_cost_per_token`` rule).
- OpenAI Responses: ``input_tokens`` / ``output_tokens`` and their ``*_details`` mean what
  ``prompt_tokens`` / ``completion_tokens`` mean in Chat Completions; cache writes split by
  lifetime in ``cache_write_tokens_details`` (30 minutes: the base write rate; 12 hours: its own).
- Anthropic Messages: ``input_tokens`` EXCLUDES cache reads (``cache_read_input_tokens``) and cache
  writes (``cache_creation_input_tokens``, split by TTL in ``cache_creation``), so the prompt is
  their sum; ``server_tool_use.web_search_requests`` counts web searches.
- Gemini ``usageMetadata``: ``promptTokenCount`` includes ``cachedContentTokenCount``; output is
  ``candidatesTokenCount`` plus ``thoughtsTokenCount`` (unless ``totalTokenCount`` shows the
  candidates already include them); ``trafficType`` names the service tier (as LiteLLM maps it:
  ``ON_DEMAND_PRIORITY`` priority; ``FLEX``, ``ON_DEMAND_FLEX``, ``BATCH`` flex); ``toolUsePromptTokenCount`` bills as prompt unless the call
  was grounded with Google Search (Google does not bill those then); modalities come from
  ``promptTokensDetails``, ``cacheTokensDetails``, ``candidatesTokensDetails``.
- Bedrock Converse: ``inputTokens`` EXCLUDES ``cacheReadInputTokens`` and ``cacheWriteInputTokens``;
  ``cacheDetails`` splits writes by TTL (5m, 1h).

Counts that do not add up (a part larger than its whole) are refused with a ValueError, which the
request model reports as a 422: a cost is never guessed from an inconsistent usage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from budget_service.core.errors import UnpricedUsage

if TYPE_CHECKING:
    from budget_service.schemas import CompletionIn, UsageIn

SHAPE_HELP = (
    "a usage needs prompt_tokens (OpenAI Chat Completions), input_tokens (OpenAI Responses or"
    " Anthropic Messages), promptTokenCount (Gemini usageMetadata) or inputTokens (Bedrock Converse)"
)


class TokenUsage(NamedTuple):
    """Token counts of one call, in OpenAI's convention (every count a whole number of tokens).

    Prompt side, all parts of ``prompt_tokens``: ``cached_tokens`` (cache reads, of which
    ``cached_audio_tokens`` and ``cached_image_tokens`` are audio and image),
    ``cache_creation_tokens`` (cache writes, of which ``cache_creation_1h_tokens`` and
    ``cache_creation_12h_tokens`` have those TTLs; the rest are 5-minute writes), ``audio_tokens``,
    ``image_tokens`` (cached ones included), ``video_tokens``. Output side, all parts of
    ``completion_tokens``: ``reasoning_tokens``, ``output_audio_tokens``, ``output_image_tokens``,
    ``output_video_tokens``. ``web_search_requests``: server-side web searches the call made.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_1h_tokens: int = 0
    cache_creation_12h_tokens: int = 0
    cached_audio_tokens: int = 0
    cached_image_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0
    video_tokens: int = 0
    output_audio_tokens: int = 0
    output_image_tokens: int = 0
    output_video_tokens: int = 0
    web_search_requests: int = 0

    def problems(self) -> list[str]:
        """What makes the counts inconsistent (empty when they add up)."""
        out = []
        uncached_media = (
            (self.audio_tokens - self.cached_audio_tokens)
            + (self.image_tokens - self.cached_image_tokens)
            + self.video_tokens
        )
        if self.cached_audio_tokens > self.audio_tokens or self.cached_image_tokens > self.image_tokens:
            out.append("cached audio/image tokens exceed the audio/image tokens they are part of")
        if self.cached_audio_tokens + self.cached_image_tokens > self.cached_tokens:
            out.append("cached audio plus image tokens exceed cached_tokens")
        if self.cache_creation_1h_tokens + self.cache_creation_12h_tokens > self.cache_creation_tokens:
            out.append("cache writes by TTL exceed the cache-creation tokens")
        if self.cached_tokens + self.cache_creation_tokens + uncached_media > self.prompt_tokens:
            out.append(
                "cached, cache-written, audio, image and video tokens exceed prompt_tokens"
                " (which must include them)"
            )
        if (
            self.reasoning_tokens
            + self.output_audio_tokens
            + self.output_image_tokens
            + self.output_video_tokens
            > self.completion_tokens
        ):
            out.append(
                "reasoning, audio, image and video output tokens exceed completion_tokens"
                " (which must include them)"
            )
        return out


class UsageContext(NamedTuple):
    """What a usage says besides token counts that can change the price: the search context size
    of a web search (OpenAI: low/medium/high), the service tier, Anthropic's inference_geo and speed."""

    search_context_size: str | None = None
    service_tier: str | None = None
    inference_geo: str | None = None
    speed: str | None = None


def shape_of(u: UsageIn) -> str:
    """chat, responses, anthropic, gemini or bedrock. ValueError when none or several match."""
    found = []
    if u.prompt_tokens is not None:
        found.append("chat")
    if u.input_tokens is not None or u.output_tokens is not None:
        anthropic = any(
            v is not None
            for v in (
                u.cache_read_input_tokens,
                u.cache_creation_input_tokens,
                u.cache_creation,
                u.server_tool_use,
                u.inference_geo,
                u.speed,
            )
        )
        found.append("anthropic" if anthropic and "chat" not in found else "responses")
    if u.promptTokenCount is not None or u.candidatesTokenCount is not None:
        found.append("gemini")
    if u.inputTokens is not None or u.outputTokens is not None:
        found.append("bedrock")
    if not found:
        raise ValueError(SHAPE_HELP)
    if len(found) > 1:
        raise ValueError(f"the usage mixes the shapes of several APIs ({', '.join(found)}); send one")
    if found == ["anthropic"] and (u.input_tokens_details is not None or u.output_tokens_details is not None):
        raise ValueError(
            "the usage mixes Anthropic cache fields with OpenAI Responses details; send one shape"
        )
    return found[0]


def _web_searches(*counts: int | None) -> int:
    return next((c for c in counts if c), 0)


def _openai(
    u: UsageIn, prompt: int, completion: int, details, out_details
) -> tuple[TokenUsage, UsageContext]:
    d = details
    # LiteLLM's Usage: cache_read_input_tokens, else DeepSeek's prompt_cache_hit_tokens, else cached_tokens.
    cached = _first_count(u.cache_read_input_tokens, u.prompt_cache_hit_tokens, d and d.cached_tokens)
    if u.prompt_cache_hit_tokens is not None and u.prompt_cache_miss_tokens is not None:
        if u.prompt_cache_hit_tokens + u.prompt_cache_miss_tokens != prompt:
            raise ValueError(
                f"prompt_cache_hit_tokens ({u.prompt_cache_hit_tokens}) and prompt_cache_miss_tokens"
                f" ({u.prompt_cache_miss_tokens}) do not add up to the prompt's {prompt} tokens"
            )
    one_hour, twelve_hours, lifetimes = _write_lifetimes(d)
    if u.cache_creation_input_tokens is not None:
        creation = u.cache_creation_input_tokens
    else:
        creation = (d and (d.cache_write_tokens or d.cache_creation_tokens)) or lifetimes
    cached_split = d.cached_tokens_details if d else None
    cached_audio = (cached_split and cached_split.audio_tokens) or 0
    cached_image = (cached_split and cached_split.image_tokens) or 0
    cached_text = (cached_split and cached_split.text_tokens) or 0
    audio = (d and d.audio_tokens) or 0
    image = (d and d.image_tokens) or 0
    video = (d and d.video_tokens) or 0
    text = (d and d.text_tokens) or 0
    if cached_audio > audio or cached_image > image or (text and cached_text > text):
        raise ValueError("cached_tokens_details exceed the prompt's audio/image/text tokens they are part of")
    uncached_text = max(text - cached_text, 0)
    if (cached or creation) and uncached_text + cached + creation + (audio - cached_audio) + (
        image - cached_image
    ) + video > prompt:
        # The modality counts include cached tokens: cache first, then audio, image, video.
        budget = max(prompt - cached - creation, 0)
        a = min(audio - cached_audio, budget)
        i = min(image - cached_image, budget - a)
        video = min(video, budget - a - i)
        audio, image = a + cached_audio, i + cached_image
    elif text:
        rest = prompt - cached - creation - (audio - cached_audio) - (image - cached_image) - video
        if uncached_text != rest:
            raise ValueError(
                f"prompt text_tokens ({text}) do not add up with the other prompt counts to the"
                f" prompt's {prompt} tokens"
            )
    o = out_details
    reasoning = (o and o.reasoning_tokens) or 0
    out_audio = (o and o.audio_tokens) or 0
    out_image = (o and o.image_tokens) or 0
    out_video = (o and o.video_tokens) or 0
    out_text = (o and o.text_tokens) or 0
    if out_text:
        others = out_audio + out_image + out_video
        nested = min(reasoning, out_text, max(out_text + reasoning + others - completion, 0))
        if out_text - nested != completion - reasoning - others:
            raise ValueError(
                f"completion text_tokens ({out_text}) do not add up with the other output counts to the"
                f" output's {completion} tokens"
            )
    tokens = TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_creation_tokens=creation,
        cache_creation_1h_tokens=one_hour,
        cache_creation_12h_tokens=twelve_hours,
        cached_audio_tokens=cached_audio,
        cached_image_tokens=cached_image,
        audio_tokens=audio,
        image_tokens=image,
        video_tokens=video,
        reasoning_tokens=reasoning,
        output_audio_tokens=out_audio,
        output_image_tokens=out_image,
        output_video_tokens=out_video,
        web_search_requests=_web_searches(
            u.web_search_requests,
            u.server_tool_use.web_search_requests if u.server_tool_use else None,
            d and d.web_search_requests,
        ),
    )
    return tokens, UsageContext(u.search_context_size, u.service_tier, u.inference_geo, u.speed)


def _first_count(*counts: int | None) -> int:
    return next((c for c in counts if c is not None), 0)


def _write_lifetimes(d) -> tuple[int, int, int]:
    """(1-hour writes, 12-hour writes, all writes the lifetimes count) of a prompt's details:
    LiteLLM's ``cache_creation_token_details`` (Anthropic's 5m/1h, OpenAI's 30m/12h), else the
    Responses API's ``cache_write_tokens_details`` (30 minutes, 12 hours)."""
    ttl = d.cache_creation_token_details if d else None
    if ttl is not None:
        return (
            ttl.ephemeral_1h_input_tokens or 0,
            ttl.ephemeral_12h_input_tokens or 0,
            sum((getattr(ttl, f) or 0) for f in CacheTTLFields),
        )
    writes = d.cache_write_tokens_details if d else None
    if writes is not None:
        thirty, twelve = writes.ttl_30m_tokens or 0, writes.ttl_12h_tokens or 0
        return 0, twelve, thirty + twelve
    return 0, 0, 0


def _reasoning_outside(u: UsageIn, prompt: int, completion: int, out_details) -> int:
    """The reasoning tokens a usage counts outside its output (xAI: ``total_tokens`` = prompt +
    completion + reasoning), 0 when they are part of it (LiteLLM's xAI calculator adds them)."""
    reasoning = (out_details and out_details.reasoning_tokens) or 0
    if reasoning and u.total_tokens is not None and u.total_tokens == prompt + completion + reasoning:
        return reasoning
    return 0


def _anthropic(u: UsageIn) -> tuple[TokenUsage, UsageContext]:
    read = u.cache_read_input_tokens or 0
    ttl = u.cache_creation
    ttl_total = sum((getattr(ttl, f) or 0) for f in CacheTTLFields) if ttl else 0
    write = u.cache_creation_input_tokens if u.cache_creation_input_tokens is not None else ttl_total
    return TokenUsage(
        prompt_tokens=(u.input_tokens or 0) + read + write,
        completion_tokens=u.output_tokens or 0,
        cached_tokens=read,
        cache_creation_tokens=write,
        cache_creation_1h_tokens=(ttl and ttl.ephemeral_1h_input_tokens) or 0,
        cache_creation_12h_tokens=(ttl and ttl.ephemeral_12h_input_tokens) or 0,
        web_search_requests=_web_searches(
            u.web_search_requests, u.server_tool_use.web_search_requests if u.server_tool_use else None
        ),
    ), UsageContext(u.search_context_size, u.service_tier, u.inference_geo, u.speed)


CacheTTLFields = (
    "ephemeral_5m_input_tokens",
    "ephemeral_30m_input_tokens",
    "ephemeral_1h_input_tokens",
    "ephemeral_12h_input_tokens",
)


def _by_modality(counts) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts or ():
        modality = c.modality.upper()
        modality = "TEXT" if modality == "DOCUMENT" else modality
        out[modality] = out.get(modality, 0) + c.tokenCount
    return out


# cost_calculator._GEMINI_TRAFFIC_TYPE_TO_SERVICE_TIER: Vertex/Gemini trafficType -> service tier.
TRAFFIC_TIERS: dict[str, str | None] = {
    "ON_DEMAND": None,
    "ON_DEMAND_PRIORITY": "priority",
    "FLEX": "flex",
    "ON_DEMAND_FLEX": "flex",
    "BATCH": "flex",
}


def _traffic_tier(traffic_type: str | None) -> str | None:
    """The service tier of a Gemini/Vertex ``trafficType`` (another value is kept as it is, and
    pricing refuses it)."""
    if traffic_type is None:
        return None
    upper = traffic_type.upper()
    return TRAFFIC_TIERS[upper] if upper in TRAFFIC_TIERS else traffic_type


def _gemini(u: UsageIn, grounding_queries: int = 0) -> tuple[TokenUsage, UsageContext]:
    prompt_total = u.promptTokenCount or 0
    candidates = u.candidatesTokenCount or 0
    thoughts = u.thoughtsTokenCount or 0
    tool_use = u.toolUsePromptTokenCount or 0
    searches = _web_searches(u.web_search_requests, grounding_queries)
    inclusive = prompt_total + candidates + tool_use == (u.totalTokenCount or 0)
    prompt_mod = _by_modality(u.promptTokensDetails)
    cache_mod = _by_modality(u.cacheTokensDetails)
    out_mod = _by_modality(u.candidatesTokensDetails)
    billable_tool_use = 0 if searches else tool_use  # Google bills grounding per request instead
    completion = candidates + (0 if inclusive else thoughts)
    tier = _traffic_tier(u.trafficType)
    return TokenUsage(
        prompt_tokens=prompt_total + billable_tool_use,
        completion_tokens=completion,
        cached_tokens=u.cachedContentTokenCount or 0,
        cached_audio_tokens=cache_mod.get("AUDIO", 0),
        cached_image_tokens=cache_mod.get("IMAGE", 0),
        audio_tokens=prompt_mod.get("AUDIO", 0),
        image_tokens=prompt_mod.get("IMAGE", 0),
        video_tokens=max(prompt_mod.get("VIDEO", 0) - cache_mod.get("VIDEO", 0), 0),
        reasoning_tokens=thoughts,
        output_audio_tokens=out_mod.get("AUDIO", 0),
        output_image_tokens=out_mod.get("IMAGE", 0),
        output_video_tokens=out_mod.get("VIDEO", 0),
        web_search_requests=searches,
    ), UsageContext(u.search_context_size, tier)


def _bedrock(u: UsageIn) -> tuple[TokenUsage, UsageContext]:
    read = u.cacheReadInputTokens or 0
    write = u.cacheWriteInputTokens or 0
    one_hour = 0
    if u.cacheDetails:
        by_ttl = {"5m": 0, "1h": 0}
        for d in u.cacheDetails:
            if d.ttl not in by_ttl:
                raise ValueError(f"cacheDetails names a TTL ({d.ttl!r}) this service cannot price; pass cost")
            by_ttl[d.ttl] += d.inputTokens
        if sum(by_ttl.values()) != write:
            raise ValueError("cacheDetails do not add up to cacheWriteInputTokens")
        one_hour = by_ttl["1h"]
    return TokenUsage(
        prompt_tokens=(u.inputTokens or 0) + read + write,
        completion_tokens=u.outputTokens or 0,
        cached_tokens=read,
        cache_creation_tokens=write,
        cache_creation_1h_tokens=one_hour,
        web_search_requests=u.web_search_requests or 0,
    ), UsageContext(u.search_context_size, u.service_tier)


def to_token_usage(u: UsageIn, *, grounding_queries: int = 0) -> tuple[TokenUsage, UsageContext]:
    """The token counts and pricing context of a usage block. ValueError when it is not one
    shape or its counts do not add up."""
    shape = shape_of(u)
    if shape == "chat":
        prompt, completion = u.prompt_tokens or 0, u.completion_tokens or 0
        out = u.completion_tokens_details
        completion += _reasoning_outside(u, prompt, completion, out)
        tokens, context = _openai(u, prompt, completion, u.prompt_tokens_details, out)
    elif shape == "responses":
        prompt, completion = u.input_tokens or 0, u.output_tokens or 0
        out = u.output_tokens_details
        completion += _reasoning_outside(u, prompt, completion, out)
        tokens, context = _openai(u, prompt, completion, u.input_tokens_details, out)
    elif shape == "anthropic":
        tokens, context = _anthropic(u)
    elif shape == "gemini":
        tokens, context = _gemini(u, grounding_queries)
    else:
        tokens, context = _bedrock(u)
    problems = tokens.problems()
    if problems:
        raise ValueError("; ".join(problems))
    return tokens, context


def _count_web_search_calls(output: list[dict] | None) -> int:
    return sum(1 for item in output or () if isinstance(item, dict) and item.get("type") == "web_search_call")


def _grounding_queries(candidates: list[dict] | None) -> int:
    """Google Search grounding queries of a Gemini response. Grounding with Google Maps (chunks
    with ``maps``) is billed per request at a price this service does not apply: UnpricedUsage."""
    total = 0
    for candidate in candidates or ():
        metadata = candidate.get("groundingMetadata") if isinstance(candidate, dict) else None
        chunks = metadata.get("groundingChunks") if isinstance(metadata, dict) else None
        if isinstance(chunks, list) and any(isinstance(c, dict) and c.get("maps") for c in chunks):
            raise UnpricedUsage(
                "the response was grounded with Google Maps, which this service does not price:"
                ' pass the call\'s price as "cost" instead',
                details=[{"field": "completion.candidates", "problem": "Google Maps grounding; pass cost"}],
            )
        queries = metadata.get("webSearchQueries") if isinstance(metadata, dict) else None
        if isinstance(queries, list):
            total += len(queries)
    return total


def completion_usage(c: CompletionIn) -> tuple[TokenUsage, UsageContext]:
    """The token counts of a whole response: its usage block, plus what the response says outside
    it (Responses ``web_search_call`` items, Gemini grounding queries, the top-level service tier)."""
    tokens, context = to_token_usage(c.usage_block, grounding_queries=_grounding_queries(c.candidates))
    calls = _count_web_search_calls(c.output)
    if calls and not tokens.web_search_requests:
        tokens = tokens._replace(web_search_requests=calls)
    if c.service_tier is not None and context.service_tier is None:
        context = UsageContext(
            context.search_context_size, c.service_tier, context.inference_geo, context.speed
        )
    return tokens, context
