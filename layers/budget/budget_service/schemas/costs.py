"""Cost updates and projections: usage blocks of every provider's shape, the
cost request in its four forms, chat messages to count, and their answers."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    model_validator,
)

from budget_service.core.numbers import (
    ID_MAX_LENGTH,
)
from budget_service.schemas.common import (
    Identifier,
    Model,
    Money,
    Number,
    StrictModel,
    TokenCount,
)

# Text to count: bounded by the request body limit (http.MAX_BODY_BYTES) anyway.
MESSAGES_MAX = 10_000


class _Lenient(Model):
    model_config = ConfigDict(extra="ignore")


class CachedTokensDetails(_Lenient):
    audio_tokens: TokenCount | None = None
    image_tokens: TokenCount | None = None
    text_tokens: TokenCount | None = None


class CacheCreationDetails(_Lenient):
    """Cache writes by TTL (LiteLLM's cache_creation_token_details; Anthropic's cache_creation)."""

    ephemeral_5m_input_tokens: TokenCount | None = None
    ephemeral_30m_input_tokens: TokenCount | None = None
    ephemeral_1h_input_tokens: TokenCount | None = None
    ephemeral_12h_input_tokens: TokenCount | None = None


class CacheWriteTokensDetails(_Lenient):
    """OpenAI Responses ``input_tokens_details.cache_write_tokens_details``: cache writes by lifetime."""

    ttl_30m_tokens: TokenCount | None = None
    ttl_12h_tokens: TokenCount | None = None


class PromptTokensDetails(_Lenient):
    """OpenAI Chat Completions ``prompt_tokens_details`` / Responses ``input_tokens_details``
    (with LiteLLM's additions): every count is part of the prompt's tokens."""

    cached_tokens: TokenCount | None = None
    cached_tokens_details: CachedTokensDetails | None = None
    cache_creation_tokens: TokenCount | None = None
    cache_write_tokens: TokenCount | None = None
    cache_creation_token_details: CacheCreationDetails | None = None
    cache_write_tokens_details: CacheWriteTokensDetails | None = None
    audio_tokens: TokenCount | None = None
    image_tokens: TokenCount | None = None
    video_tokens: TokenCount | None = None
    text_tokens: TokenCount | None = None
    web_search_requests: TokenCount | None = None


class CompletionTokensDetails(_Lenient):
    """OpenAI ``completion_tokens_details`` / Responses ``output_tokens_details``: every count is part
    of the output's tokens."""

    reasoning_tokens: TokenCount | None = None
    audio_tokens: TokenCount | None = None
    image_tokens: TokenCount | None = None
    video_tokens: TokenCount | None = None
    text_tokens: TokenCount | None = None


class ServerToolUse(_Lenient):
    web_search_requests: TokenCount | None = None


class ModalityCount(_Lenient):
    """Gemini's ``{"modality": "TEXT"|"AUDIO"|"IMAGE"|"VIDEO"|"DOCUMENT", "tokenCount": n}``."""

    modality: str = Field(max_length=32)
    tokenCount: TokenCount = 0


class BedrockCacheDetail(_Lenient):
    ttl: str | None = Field(default=None, max_length=16)
    inputTokens: TokenCount = 0


class UsageIn(_Lenient):
    """A usage block, in the shape any of these APIs reports it (other fields are ignored):

    - OpenAI Chat Completions (and LiteLLM): ``prompt_tokens`` (includes cached, cache-written,
      audio and image tokens), ``completion_tokens`` (includes reasoning, audio, image tokens),
      ``prompt_tokens_details``, ``completion_tokens_details``; LiteLLM's ``cache_read_input_tokens``
      and ``cache_creation_input_tokens`` (part of prompt_tokens there); DeepSeek's
      ``prompt_cache_hit_tokens`` / ``prompt_cache_miss_tokens`` (cache reads and the rest of the
      prompt); ``total_tokens`` (xAI counts reasoning outside ``completion_tokens``, which a
      ``total_tokens`` of prompt + completion + reasoning shows).
    - OpenAI Responses: ``input_tokens`` (includes cached), ``input_tokens_details`` (cache writes
      by lifetime in ``cache_write_tokens_details``: ``ttl_30m_tokens``, ``ttl_12h_tokens``),
      ``output_tokens`` (includes reasoning), ``output_tokens_details``, ``total_tokens``.
    - Anthropic Messages: ``input_tokens`` (EXCLUDES ``cache_read_input_tokens`` and
      ``cache_creation_input_tokens``), ``cache_creation`` (``ephemeral_5m_input_tokens``,
      ``ephemeral_1h_input_tokens``), ``output_tokens``, ``server_tool_use.web_search_requests``,
      ``service_tier``, ``inference_geo``, ``speed``. Told apart from Responses by its cache fields.
    - Gemini ``usageMetadata``: ``promptTokenCount`` (includes ``cachedContentTokenCount``),
      ``candidatesTokenCount``, ``thoughtsTokenCount``, ``toolUsePromptTokenCount``,
      ``promptTokensDetails`` / ``cacheTokensDetails`` / ``candidatesTokensDetails`` by modality.
    - Bedrock Converse: ``inputTokens`` (EXCLUDES ``cacheReadInputTokens`` and
      ``cacheWriteInputTokens``), ``outputTokens``, ``cacheDetails`` (writes by TTL).

    Any shape may add ``web_search_requests`` (server-side web searches made) and
    ``search_context_size`` (OpenAI web search: low/medium/high).
    """

    # OpenAI Chat Completions / LiteLLM
    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    cache_read_input_tokens: TokenCount | None = None
    cache_creation_input_tokens: TokenCount | None = None
    total_tokens: TokenCount | None = None
    # DeepSeek
    prompt_cache_hit_tokens: TokenCount | None = None
    prompt_cache_miss_tokens: TokenCount | None = None
    # OpenAI Responses / Anthropic Messages
    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    input_tokens_details: PromptTokensDetails | None = None
    output_tokens_details: CompletionTokensDetails | None = None
    cache_creation: CacheCreationDetails | None = None
    server_tool_use: ServerToolUse | None = None
    service_tier: str | None = Field(default=None, max_length=64)
    inference_geo: str | None = Field(default=None, max_length=64)
    speed: str | None = Field(default=None, max_length=64)
    # Gemini usageMetadata
    promptTokenCount: TokenCount | None = None
    candidatesTokenCount: TokenCount | None = None
    cachedContentTokenCount: TokenCount | None = None
    thoughtsTokenCount: TokenCount | None = None
    toolUsePromptTokenCount: TokenCount | None = None
    totalTokenCount: TokenCount | None = None
    promptTokensDetails: list[ModalityCount] | None = Field(default=None, max_length=16)
    cacheTokensDetails: list[ModalityCount] | None = Field(default=None, max_length=16)
    candidatesTokensDetails: list[ModalityCount] | None = Field(default=None, max_length=16)
    trafficType: str | None = Field(default=None, max_length=64)
    # Bedrock Converse
    inputTokens: TokenCount | None = None
    outputTokens: TokenCount | None = None
    cacheReadInputTokens: TokenCount | None = None
    cacheWriteInputTokens: TokenCount | None = None
    cacheDetails: list[BedrockCacheDetail] | None = Field(default=None, max_length=16)
    # any shape
    web_search_requests: TokenCount | None = None
    search_context_size: Literal["low", "medium", "high"] | None = None

    @property
    def shape(self) -> str:
        """Which API's usage this is: chat, responses, anthropic, gemini or bedrock."""
        from budget_service.schemas.usage import shape_of

        return shape_of(self)

    @model_validator(mode="after")
    def _consistent(self) -> UsageIn:
        from budget_service.schemas.usage import to_token_usage

        to_token_usage(self)  # raises ValueError when the shape is unknown or the counts do not add up
        return self


class CompletionIn(_Lenient):
    """A whole response of one of these APIs; its model and usage are read, the rest ignored:
    an OpenAI-format chat completion (e.g. LiteLLM's ModelResponse as JSON), an OpenAI Responses
    object (its ``web_search_call`` output items count as web searches), an Anthropic Message, or a
    Gemini ``generateContent`` response (``modelVersion``, ``usageMetadata``; grounding web search
    queries in ``candidates[].groundingMetadata.webSearchQueries``)."""

    model: Identifier | None = None
    modelVersion: Identifier | None = None
    usage: UsageIn | None = None
    usageMetadata: UsageIn | None = None
    service_tier: str | None = Field(default=None, max_length=64)
    output: list[dict] | None = Field(default=None, max_length=10_000)
    candidates: list[dict] | None = Field(default=None, max_length=1_000)

    @property
    def model_name(self) -> str:
        return self.model or self.modelVersion  # type: ignore[return-value]

    @property
    def usage_block(self) -> UsageIn:
        return self.usage or self.usageMetadata  # type: ignore[return-value]

    @model_validator(mode="after")
    def _model_and_usage(self) -> CompletionIn:
        if self.model is None and self.modelVersion is None:
            raise ValueError("the completion names no model (model, or Gemini's modelVersion)")
        if (self.usage is None) == (self.usageMetadata is None):
            raise ValueError("the completion must carry one usage block (usage, or Gemini's usageMetadata)")
        return self


class CostRequest(StrictModel):
    """Exactly one of four forms:

    ``{"model", "usage"}``, ``{"completion"}``, ``{"model", "input_text", "output_text"?}``,
    ``{"model", "cost"}``.
    """

    model: Identifier | None = None
    usage: UsageIn | None = None
    completion: CompletionIn | None = None
    input_text: str | None = None
    output_text: str | None = None
    cost: Money | None = None
    if_within_budget: StrictBool = Field(
        default=False,
        description="charge only a cost that fits the budget's available headroom; else 402"
        " budget_exceeded and nothing is written (a hard cap, as holds enforce)",
    )

    @property
    def form(self) -> str:
        return next(name for name, present in self._forms().items() if present)

    def _forms(self) -> dict[str, bool]:
        return {
            "usage": self.usage is not None,
            "completion": self.completion is not None,
            "text": self.input_text is not None or self.output_text is not None,
            "cost": self.cost is not None,
        }

    @model_validator(mode="after")
    def _exactly_one_form(self) -> CostRequest:
        given = [name for name, present in self._forms().items() if present]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of: usage (with model), completion, input_text/output_text"
                f" (with model), cost (with model); got {', '.join(given) or 'none'}"
            )
        if given == ["completion"]:
            if self.model is not None:
                raise ValueError("with completion, the model comes from the completion; drop model")
        elif self.model is None:
            raise ValueError(f"model is required with {given[0]}")
        return self


class ContentPart(Model):
    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=64)


class ChatMessage(Model):
    """An OpenAI-format chat message; fields beyond these are kept and counted when they are text."""

    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=64)
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=ID_MAX_LENGTH)


class ProjectedCostRequest(StrictModel):
    model: Identifier
    messages: list[ChatMessage] = Field(min_length=1, max_length=MESSAGES_MAX)
    max_tokens: TokenCount | None = None


class TokensUsed(Model):
    """The tokens priced, in OpenAI's convention (see pricing.TokenUsage: each detail count is part
    of prompt_tokens or completion_tokens)."""

    prompt_tokens: int
    completion_tokens: int
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


class CostResponse(Model):
    project: str
    user: str
    model: str
    cost: Number = Field(description="what this update added, in USD")
    current_cost: Number | None = Field(
        description="always null: every cost update is one DynamoDB transaction, which returns no"
        " values (GET the budget to read its spend)"
    )
    total_budget: Number | None
    remaining: Number | None
    budget_exceeded: bool | None
    tokens: TokensUsed | None = Field(default=None, description="the tokens priced (not in the cost form)")
    priced_as: str | None = Field(default=None, description="the price table entry the model resolved to")
    idempotency_key: str | None = None
    replayed: bool = Field(
        default=False, description="true when this Idempotency-Key was already used: nothing charged"
    )


class ProjectedCostResponse(Model):
    project: str
    user: str
    model: str
    priced_as: str
    prompt_tokens: int
    prompt_cost: Number
    max_tokens: int | None
    completion_cost: Number = Field(description="cost of max_tokens of output (0 without max_tokens)")
    projected_cost: Number = Field(description="prompt_cost + completion_cost")
    current_cost: Number
    projected_total: Number = Field(description="current_cost + projected_cost")
    total_budget: Number
    remaining_after: Number
    within_budget: bool
