"""Pydantic models of what crosses the API: request bodies, validated identifiers, responses.

Numbers arrive as Decimal (the JSON body is parsed with ``parse_float=Decimal``) and are bounded
so that every value we store fits a DynamoDB Number (38 significant digits) even after additions.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal
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
    model_serializer,
    model_validator,
)

from budget_service.periods import Duration, zone

# Identifiers: project, user and model names. No control characters (they break logs and keys).
ID_MAX_LENGTH = 256
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
]

# set_budget: users per request, and models per user's model_cost. Each user is one item written
# with its own conditional PutItem; 1,000 models of 256 characters keep an item near 300 KB, under
# DynamoDB's 400 KB item limit. 2,000 users at a few ms per write finish well inside the 29 s
# API Gateway allows (and the handler stops early and reports progress if they do not).
MAX_USERS_PER_SET_BUDGET = 2_000
MAX_MODELS_PER_USER = 1_000

# Money: below 10^12 dollars, kept to 25 decimal places: 12 + 25 digits fit DynamoDB's 38, and
# every float litellm sends from 1e-9 up (17 significant digits) is kept exactly.
MONEY_MAX = Decimal("1e12")
MONEY_QUANTUM = Decimal("1e-25")
# Epoch seconds, to the nanosecond (a float time.time() keeps all its digits), up to year 5138.
EPOCH_MAX = Decimal("1e11")
EPOCH_QUANTUM = Decimal("1e-9")
# litellm's numeric duration, in days (it sends 1, 7, 28 or 365); at most ten years.
DAYS_MAX = Decimal(3660)
DAYS_QUANTUM = Decimal("1e-12")


# Arithmetic on stored numbers uses DynamoDB's own precision (38 digits), not Python's default 28,
# so that a quantized amount (up to 13 + 24 digits) is never rounded.
DECIMAL_CONTEXT = Context(prec=38, rounding=ROUND_HALF_EVEN)


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


TimezoneName = Annotated[
    str | None, Field(default=None, max_length=64), AfterValidator(_check_timezone)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- litellm hosted protocol -------------------------------------------------------------------


class LitellmEntry(BaseModel):
    """One user's entry as litellm's BudgetManager writes it. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    total_budget: Money
    current_cost: Money | None = None
    model_cost: dict[Identifier, Money] | None = Field(default=None, max_length=MAX_MODELS_PER_USER)
    duration: Days | None = None
    created_at: Epoch | None = None
    last_updated_at: Epoch | None = None


class GetBudgetRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    project_name: Identifier


class SetBudgetRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    project_name: Identifier
    user_dict: dict[Identifier, LitellmEntry] = Field(max_length=MAX_USERS_PER_SET_BUDGET)


class _OmitsNone(BaseModel):
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


class SetBudgetResponse(BaseModel):
    status: Literal["success"]
    written: list[str] = Field(description="users whose stored entry changed")
    unchanged: list[str] = Field(description="users whose stored entry already said the same")
    stale_spend_ignored: list[str] = Field(
        description="users whose entry carried spend of a period the server has already closed;"
        " that spend was not applied (settings were)"
    )


# ---- native API --------------------------------------------------------------------------------


class PutBudgetRequest(_Strict):
    total_budget: Money
    duration: Duration | None = None
    timezone: TimezoneName = None


class BudgetRecord(BaseModel):
    project: str
    user: str
    total_budget: Number
    current_cost: Number
    remaining: Number
    held: Number = Field(description="sum of the live holds' amounts (USD)")
    available: Number = Field(
        description="what a new hold may still reserve: total_budget - current_cost - held, at"
        " least 0 (USD)"
    )
    model_cost: dict[str, Number]
    duration: str | None = Field(
        description="daily/weekly/monthly/yearly; for budgets written by litellm with a numeric"
        " duration, 'rolling:<days>d'"
    )
    timezone: str | None
    period_start: str | None
    reset_at: str | None
    created_at: str
    updated_at: str


class BudgetList(BaseModel):
    users: list[BudgetRecord]
    next_cursor: str | None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict] | dict | None = Field(
        default=None,
        description="validation problems (a list), or, for a set_budget stopped part way, which"
        " users were written, unchanged, not_written and not_confirmed",
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


# ---- cost updates (issue 4) --------------------------------------------------------------------

# Token counts: whole numbers (a JSON 1.5 or "1" is rejected, not rounded), at most 10^9 per call.
TOKENS_MAX = 1_000_000_000
TokenCount = Annotated[int, Field(ge=0, le=TOKENS_MAX, strict=True)]
# Text to count: bounded by the request body limit (http.MAX_BODY_BYTES) anyway.
MESSAGES_MAX = 10_000


class PromptTokensDetails(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cached_tokens: TokenCount | None = None
    cache_creation_tokens: TokenCount | None = None


class CompletionTokensDetails(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reasoning_tokens: TokenCount | None = None


class UsageIn(BaseModel):
    """A usage block as OpenAI and LiteLLM report it: ``prompt_tokens`` includes cached and
    cache-written tokens, ``completion_tokens`` includes reasoning tokens. Other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt_tokens: TokenCount
    completion_tokens: TokenCount = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    # LiteLLM's names for Anthropic-style cache counts (also part of prompt_tokens).
    cache_read_input_tokens: TokenCount | None = None
    cache_creation_input_tokens: TokenCount | None = None

    @property
    def cached_tokens(self) -> int:
        if self.cache_read_input_tokens is not None:  # LiteLLM lets this one win, too
            return self.cache_read_input_tokens
        details = self.prompt_tokens_details
        return (details.cached_tokens if details else None) or 0

    @property
    def cache_creation_tokens(self) -> int:
        if self.cache_creation_input_tokens is not None:
            return self.cache_creation_input_tokens
        details = self.prompt_tokens_details
        return (details.cache_creation_tokens if details else None) or 0

    @property
    def reasoning_tokens(self) -> int:
        details = self.completion_tokens_details
        return (details.reasoning_tokens if details else None) or 0

    @model_validator(mode="after")
    def _consistent(self) -> UsageIn:
        if self.cached_tokens + self.cache_creation_tokens > self.prompt_tokens:
            raise ValueError(
                "cached plus cache-creation tokens exceed prompt_tokens (prompt_tokens must"
                " include them, as OpenAI and LiteLLM report usage)"
            )
        if self.reasoning_tokens > self.completion_tokens:
            raise ValueError("reasoning_tokens exceed completion_tokens (which must include them)")
        return self


class CompletionIn(BaseModel):
    """An OpenAI-format chat completion (e.g. LiteLLM's ModelResponse as JSON): model and usage
    are read, the rest is ignored."""

    model_config = ConfigDict(extra="ignore")

    model: Identifier
    usage: UsageIn


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


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=64)


class ChatMessage(BaseModel):
    """An OpenAI-format chat message; fields beyond these are kept and counted when they are text."""

    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=64)
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=ID_MAX_LENGTH)


class ProjectedCostRequest(_Strict):
    model: Identifier
    messages: list[ChatMessage] = Field(min_length=1, max_length=MESSAGES_MAX)
    max_tokens: TokenCount | None = None


class TokensUsed(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0


class CostResponse(BaseModel):
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


class ProjectedCostResponse(BaseModel):
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


class HoldResponse(BaseModel):
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


class SettleResponse(BaseModel):
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


class ReleaseResponse(BaseModel):
    hold_id: str
    project: str
    user: str
    amount: Number
    state: str = Field(description="the hold's state now")
    released: bool = Field(description="true when this request freed the hold; false when it had"
                                       " already been settled, released or expired")
