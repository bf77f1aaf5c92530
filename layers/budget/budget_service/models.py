"""Pydantic models of what crosses the API: request bodies, validated identifiers, responses.

Numbers arrive as Decimal (the JSON body is parsed with ``parse_float=Decimal``) and are bounded
so that every value we store fits a DynamoDB Number (38 significant digits) even after additions.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StringConstraints,
    field_validator,
    model_serializer,
    model_validator,
)

from budget_service.limits import (  # noqa: F401  (defined without pydantic; re-exported here)
    DAYS_MAX,
    DAYS_QUANTUM,
    DECIMAL_CONTEXT,
    EPOCH_MAX,
    EPOCH_QUANTUM,
    ID_MAX_BYTES,
    ID_MAX_LENGTH,
    ID_PATTERN,
    MAX_MODELS_PER_USER,
    MAX_USERS_PER_SET_BUDGET,
    MONEY_MAX,
    MONEY_QUANTUM,
    fits_id_bytes,
    plain_number,
    utf8_size,
)
from budget_service.periods import Duration, zone

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN),
    AfterValidator(fits_id_bytes),
]


def _quantizer(quantum: Decimal):
    def quantize(value: Decimal) -> Decimal:
        return value.quantize(quantum, context=DECIMAL_CONTEXT).normalize(DECIMAL_CONTEXT)

    return quantize


def _number_only(value):
    # pydantic would read "10" or true as a number; a JSON client that sends them has a bug.
    if isinstance(value, (str, bool)):
        raise ValueError("must be a JSON number")
    return value


quantize_money = _quantizer(MONEY_QUANTUM)

Money = Annotated[
    Decimal,
    BeforeValidator(_number_only),
    Field(ge=0, le=MONEY_MAX, allow_inf_nan=False),
    AfterValidator(quantize_money),
]
Epoch = Annotated[
    Decimal,
    BeforeValidator(_number_only),
    Field(ge=0, le=EPOCH_MAX, allow_inf_nan=False),
    AfterValidator(_quantizer(EPOCH_QUANTUM)),
]
Days = Annotated[
    Decimal,
    BeforeValidator(_number_only),
    Field(gt=0, le=DAYS_MAX, allow_inf_nan=False),
    AfterValidator(_quantizer(DAYS_QUANTUM)),
]


def _json_number(value: Decimal) -> int | float:
    # JSON output renders numbers as numbers (litellm adds to them); exact where integral.
    return int(value) if value == value.to_integral_value() else float(value)


# A Decimal in a response: exact inside, a JSON number outside.
Number = Annotated[Decimal, PlainSerializer(_json_number, return_type=int | float, when_used="json")]


def _check_timezone(name: str | None) -> str | None:
    if name is not None:
        zone(name)  # raises ValueError, which pydantic reports as a validation error
    return name


TimezoneName = Annotated[str | None, Field(default=None, max_length=64), AfterValidator(_check_timezone)]


class _Model(BaseModel):
    """Every model here builds its validator on first use, not at import: a function pays only
    for the models of its own routes (make bench's cold start; pydantic's ``defer_build``)."""

    model_config = ConfigDict(defer_build=True)


class _Strict(_Model):
    model_config = ConfigDict(extra="forbid")


# ---- litellm hosted protocol -------------------------------------------------------------------


class LitellmEntry(_Model):
    """One user's entry as litellm's BudgetManager writes it. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    total_budget: Money
    current_cost: Money | None = None
    model_cost: dict[Identifier, Money] | None = Field(default=None, max_length=MAX_MODELS_PER_USER)
    duration: Days | None = None
    created_at: Epoch | None = None
    last_updated_at: Epoch | None = None


class GetBudgetRequest(_Model):
    model_config = ConfigDict(extra="ignore")

    project_name: Identifier


class SetBudgetRequest(_Model):
    model_config = ConfigDict(extra="ignore")

    project_name: Identifier
    user_dict: dict[Identifier, LitellmEntry] = Field(max_length=MAX_USERS_PER_SET_BUDGET)


class _OmitsNone(_Model):
    """Leaves out absent fields, as litellm's own entries do (it keys on their presence)."""

    @model_serializer(mode="wrap")
    def _omit_none(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


class LitellmEntryOut(_OmitsNone):
    total_budget: Number
    current_cost: Number
    model_cost: dict[str, Number]
    duration: Number | None = Field(default=None, description="days (rolling period length)")
    created_at: Number | None = None
    last_updated_at: Number | None = Field(default=None, description="start of the period")


class GetBudgetResponse(_OmitsNone):
    status: Literal["success", "error"]
    data: dict[str, LitellmEntryOut] | None = None
    message: str | None = None


class SetBudgetResponse(_Model):
    status: Literal["success"]
    written: list[str] = Field(description="users whose stored entry changed")
    unchanged: list[str] = Field(description="users whose stored entry already said the same")
    stale_spend_ignored: list[str] = Field(
        description="users whose entry carried spend of a period the server has already closed;"
        " that spend was not applied (settings were)"
    )
    uncertain_spend_kept: list[str] = Field(
        default_factory=list,
        description="users whose entry's period began before the server's current one without"
        " being a period the server closed (a client that reset itself at another moment): the"
        " server cannot tell how much of that spend falls in the current period, so it kept it"
        " (merged as the larger, per model) rather than drop any; reload the client"
        " (load_data) to align it with the current period",
    )


# ---- native API --------------------------------------------------------------------------------


# Alert thresholds (issue 18): fractions of a budget's total, each in (0, 10] (above 1 alerts on
# overspend, which /cost records), to 6 decimal places, at most 10 per budget. Stored sorted and
# without duplicates; [] turns a budget's alerts off, null/absent inherits the project default.
MAX_ALERT_THRESHOLDS = 10
ALERT_THRESHOLD_MAX = Decimal(10)


def _sorted_thresholds(values: list[Decimal] | None) -> tuple[Decimal, ...] | None:
    if values is None:
        return None
    return tuple(sorted({v.normalize(DECIMAL_CONTEXT) for v in values}))


AlertThreshold = Annotated[
    Decimal,
    BeforeValidator(_number_only),
    Field(gt=0, le=ALERT_THRESHOLD_MAX, decimal_places=6, allow_inf_nan=False),
]
AlertThresholds = Annotated[
    list[AlertThreshold] | None,
    Field(
        default=None,
        max_length=MAX_ALERT_THRESHOLDS,
        description="fractions of total_budget that trigger a Budget Threshold Crossed event"
        " (e.g. [0.5, 0.8, 1.0]); null inherits the project default, [] turns alerts off",
    ),
    AfterValidator(_sorted_thresholds),
]


class PutBudgetRequest(_Strict):
    total_budget: Money
    duration: Duration | None = None
    timezone: TimezoneName = None
    alert_thresholds: AlertThresholds = None
    team: Identifier | None = Field(
        default=None,
        description="a team of the project (it must exist): the user's spend also"
        " counts toward it (issue 14)",
    )


class BudgetRecord(_Model):
    project: str
    user: str
    total_budget: Number
    current_cost: Number
    remaining: Number
    held: Number = Field(description="sum of the live holds' amounts (USD)")
    available: Number = Field(
        description="what a new hold may still reserve: total_budget - current_cost - held, at least 0 (USD)"
    )
    model_cost: dict[str, Number]
    team: str | None = Field(default=None, description="the team the user's spend also counts toward")
    duration: str | None = Field(
        description="daily/weekly/monthly/yearly; for budgets written by litellm with a numeric"
        " duration, 'rolling:<days>d'"
    )
    timezone: str | None
    period_start: str | None
    reset_at: str | None
    created_at: str
    updated_at: str
    alert_thresholds: list[Number] | None = Field(
        default=None, description="this budget's own thresholds; null: the project default"
    )


class BudgetList(_Model):
    users: list[BudgetRecord]
    next_cursor: str | None


class ErrorBody(_Model):
    code: str
    message: str
    details: list[dict] | dict | None = Field(
        default=None,
        description="validation problems (a list), or, for a set_budget stopped part way, which"
        " users were written, unchanged, not_written and not_confirmed",
    )


class ErrorResponse(_Model):
    error: ErrorBody


# ---- cost updates (issue 4) --------------------------------------------------------------------

# Token counts: whole numbers (a JSON 1.5 or "1" is rejected, not rounded), at most 10^9 per call.
TOKENS_MAX = 1_000_000_000
TokenCount = Annotated[int, Field(ge=0, le=TOKENS_MAX, strict=True)]
# Text to count: bounded by the request body limit (http.MAX_BODY_BYTES) anyway.
MESSAGES_MAX = 10_000


class _Lenient(_Model):
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


class PromptTokensDetails(_Lenient):
    """OpenAI Chat Completions ``prompt_tokens_details`` / Responses ``input_tokens_details``
    (with LiteLLM's additions): every count is part of the prompt's tokens."""

    cached_tokens: TokenCount | None = None
    cached_tokens_details: CachedTokensDetails | None = None
    cache_creation_tokens: TokenCount | None = None
    cache_write_tokens: TokenCount | None = None
    cache_creation_token_details: CacheCreationDetails | None = None
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
      and ``cache_creation_input_tokens`` (part of prompt_tokens there).
    - OpenAI Responses: ``input_tokens`` (includes cached), ``input_tokens_details``,
      ``output_tokens`` (includes reasoning), ``output_tokens_details``.
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
        from budget_service.usage_shapes import shape_of

        return shape_of(self)

    @model_validator(mode="after")
    def _consistent(self) -> UsageIn:
        from budget_service.usage_shapes import to_token_usage

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


class CostRequest(_Strict):
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
        " budget_exceeded and nothing is written (issue 13)",
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


class ContentPart(_Model):
    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=64)


class ChatMessage(_Model):
    """An OpenAI-format chat message; fields beyond these are kept and counted when they are text."""

    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=64)
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=ID_MAX_LENGTH)


class ProjectedCostRequest(_Strict):
    model: Identifier
    messages: list[ChatMessage] = Field(min_length=1, max_length=MESSAGES_MAX)
    max_tokens: TokenCount | None = None


class TokensUsed(_Model):
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


class CostResponse(_Model):
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


class ProjectedCostResponse(_Model):
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


# ---- per-project prices (issue 16) -------------------------------------------------------------

# A price per token (or per web search request), in USD: the same bounds and exactness as Money.
Rate = Money
MAX_PRICE_TIERS = 16


class PriceTierIn(_Strict):
    """A long-context tier: from a prompt over `above` tokens, these rates replace the base ones."""

    above: TokenCount
    input: Rate | None = None
    output: Rate | None = None
    cache_read: Rate | None = None
    cache_creation: Rate | None = None
    cache_creation_1h: Rate | None = None
    cache_creation_12h: Rate | None = None
    input_audio: Rate | None = None


class WebSearchPriceIn(_Strict):
    low: Rate | None = None
    medium: Rate | None = None
    high: Rate | None = None


class PriceIn(_Strict):
    """A project's own price for a model: the fields of the shipped table (USD per token; web
    search USD per request). Rates left out fall back as the table's do (cache and modality rates
    to the input rate, output-side rates to the output rate, TTL write rates to cache_creation).
    A price of 0 input and 0 output must say why it is free (`free`), as the table does."""

    provider: str | None = Field(
        default=None,
        max_length=64,
        description="the LiteLLM provider whose billing rules apply (xai, perplexity, gemini...);"
        " default: the provider of the table entry the model resolves to, if any",
    )
    input: Rate
    output: Rate
    cache_read: Rate | None = None
    cache_creation: Rate | None = None
    cache_creation_1h: Rate | None = None
    cache_creation_12h: Rate | None = None
    reasoning: Rate | None = None
    input_audio: Rate | None = None
    output_audio: Rate | None = None
    cache_read_audio: Rate | None = None
    input_image: Rate | None = None
    output_image: Rate | None = None
    cache_read_image: Rate | None = None
    input_video: Rate | None = None
    output_video: Rate | None = None
    tiers: list[PriceTierIn] | None = Field(default=None, max_length=MAX_PRICE_TIERS)
    web_search: WebSearchPriceIn | None = None
    web_search_unit: Literal["per_query", "per_prompt"] | None = None
    free: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="why this model costs nothing (required for a 0/0 price)",
    )

    @model_validator(mode="after")
    def _free_on_purpose(self) -> PriceIn:
        if self.input == 0 and self.output == 0 and self.free is None:
            raise ValueError("a price of 0 input and 0 output must say why it is free (free: reason)")
        if self.tiers and len({t.above for t in self.tiers}) != len(self.tiers):
            raise ValueError("two tiers have the same threshold")
        return self


class PriceRecord(_Model):
    project: str
    model: str
    price: dict = Field(description="the price as stored (the fields of PUT), numbers as JSON numbers")
    priced_as: str = Field(description="what priced_as shows for costs priced by it: project:<model>")
    created_at: str
    updated_at: str


# ---- holds (issue 13) --------------------------------------------------------------------------

HOLD_TTL_DEFAULT = 600
HOLD_TTL_MAX = 3600
HoldTtl = Annotated[int, Field(ge=1, le=HOLD_TTL_MAX, strict=True)]


class HoldRequest(_Strict):
    """Either ``{"amount"}`` (USD), or ``{"model", "messages", "max_tokens"?}`` priced as
    projected-cost prices it; optional ``ttl_seconds`` (default 600, at most 3,600)."""

    amount: Money | None = None
    model: Identifier | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=MESSAGES_MAX)
    max_tokens: TokenCount | None = None
    ttl_seconds: HoldTtl = HOLD_TTL_DEFAULT

    @model_validator(mode="after")
    def _one_form(self) -> HoldRequest:
        priced = self.model is not None or self.messages is not None or self.max_tokens is not None
        if (self.amount is None) == (not priced):
            raise ValueError('give either "amount", or "model" and "messages" (with "max_tokens")')
        if priced and (self.model is None or self.messages is None):
            raise ValueError('"model" and "messages" go together')
        if self.amount is not None and self.amount <= 0:
            raise ValueError("amount must be greater than 0")
        return self


class HoldResponse(_Model):
    hold_id: str = Field(description="opaque; ends with the amount. Settle or release with it")
    project: str
    user: str
    amount: Number = Field(description="USD reserved")
    state: str = Field(description="held, settled, released or expired")
    created_at: str
    expires_at: str = Field(description="when the hold is released if not settled first")
    available: Number | None = Field(
        default=None,
        description="null: a hold is one DynamoDB transaction, which returns no values; GET the"
        " budget for its held and available (a refused hold's 402 names what was available)",
    )
    priced_as: str | None = Field(default=None, description="the price entry a priced hold used")
    prompt_tokens: int | None = None
    idempotency_key: str | None = None
    replayed: bool = Field(default=False, description="true: this Idempotency-Key made the hold before")


class SettleResponse(_Model):
    hold_id: str
    project: str
    user: str
    state: Literal["settled"] = "settled"
    amount: Number = Field(description="USD the hold reserved")
    model: str
    cost: Number = Field(description="USD charged (in full, even above the hold)")
    released: Number = Field(description="USD of the hold freed unused by this settle")
    settled_from: str = Field(
        description="held; or released/expired: the hold was freed before this settle, which"
        " then only charged the cost"
    )
    settled_at: str
    tokens: TokensUsed | None = None
    priced_as: str | None = None
    replayed: bool = Field(default=False, description="true: settled before; nothing charged again")


class ReleaseResponse(_Model):
    hold_id: str
    project: str
    user: str
    amount: Number
    state: str = Field(description="the hold's state now")
    released: bool = Field(
        description="true when this request freed the hold; false when it had"
        " already been settled, released or expired"
    )


# ---- history, adjustments, audit (issue 17) ----------------------------------------------------

SignedMoney = Annotated[
    Decimal,
    BeforeValidator(_number_only),
    Field(ge=-MONEY_MAX, le=MONEY_MAX, allow_inf_nan=False),
    AfterValidator(quantize_money),
]


class AdjustmentRequest(_Strict):
    amount: SignedMoney = Field(description="USD: a debit (> 0) or a credit (< 0); not 0")
    reason: str = Field(min_length=1, max_length=500)
    model: Identifier | None = Field(
        default=None, description="the model whose spend this corrects (model_cost[model] moves too)"
    )

    @field_validator("amount")
    @classmethod
    def _not_zero(cls, value: Decimal) -> Decimal:
        if value == 0:
            raise ValueError("must not be 0: a debit is positive, a credit negative")
        return value


class AdjustmentResponse(_Model):
    project: str
    user: str
    amount: Number = Field(description="what was asked (USD)")
    applied: Number = Field(
        description="what was applied (USD): the amount, or for a credit larger than the spend,"
        " minus the spend (spend never goes below 0)"
    )
    clamped: bool
    model: str | None
    reason: str
    key_id: str | None = Field(description="the API key that made it (null when API keys are off)")
    idempotency_key: str
    created_at: str
    replayed: bool = False


class PeriodRecord(_Model):
    period_start: str
    period_end: str | None = Field(description="for the current period: when it ends (null: no period rule)")
    current: bool = Field(description="the period running now (not closed yet)")
    total_budget: Number
    spend: Number
    model_cost: dict[str, Number]
    held: Number
    closed_by: str | None = Field(
        description="rollover, job, reset, set_budget, delete; pending: ended but not rolled over"
        " yet (recorded by the next write or the scheduled job); null for the current period"
    )
    closed_at: str | None


class PeriodList(_Model):
    project: str
    user: str
    periods: list[PeriodRecord]
    next_cursor: str | None


class SpendRow(_Model):
    user: str
    spend: Number
    model_cost: dict[str, Number]
    periods: int


class SpendReport(_Model):
    project: str
    range_from: str = Field(alias="from", serialization_alias="from")
    range_to: str = Field(alias="to", serialization_alias="to")
    total: Number
    model_cost: dict[str, Number]
    periods: int
    users: list[SpendRow]

    model_config = ConfigDict(populate_by_name=True)


class LedgerEntry(_Model):
    action: str = Field(description="create, settings, reset, delete, adjustment")
    at: str
    key_id: str | None
    details: dict


class Ledger(_Model):
    project: str
    user: str
    entries: list[LedgerEntry]
    next_cursor: str | None = None


# ---- budget levels (issue 14) -----------------------------------------------------------------


class DefaultUserBudget(_Strict):
    total_budget: Money
    duration: Duration | None = None
    timezone: TimezoneName = None


class LevelRequest(_Strict):
    """A project or team cap: ``total_budget`` (USD), its own ``duration`` and ``timezone``; for
    the project, an optional ``default_user_budget`` that the first cost or hold for an unknown
    user creates that user from."""

    total_budget: Money
    duration: Duration | None = None
    timezone: TimezoneName = None
    default_user_budget: DefaultUserBudget | None = None


class LevelRecord(_Model):
    project: str
    level: Literal["project", "team"]
    team: str | None = None
    total_budget: Number
    current_cost: Number = Field(description="spend of the level's current period (USD)")
    remaining: Number
    held: Number
    available: Number
    model_cost: dict[str, Number]
    users: int = Field(description="user budgets that count toward this level")
    default_user_budget: dict | None = Field(default=None, description="the project's, if any")
    duration: str | None
    timezone: str | None
    period_start: str | None
    reset_at: str | None
    created_at: str
    updated_at: str


class PriceList(_Model):
    prices: list[PriceRecord]


class TeamList(_Model):
    teams: list[LevelRecord]
    next_cursor: str | None
