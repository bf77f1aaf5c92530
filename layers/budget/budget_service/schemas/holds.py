"""Holds: the hold request and the answers of hold, settle and release."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from budget_service.schemas.common import (
    Identifier,
    Model,
    Money,
    Number,
    StrictModel,
    TokenCount,
)
from budget_service.schemas.costs import MESSAGES_MAX, ChatMessage, CostRequest, TokensUsed

HOLD_TTL_DEFAULT = 600


HOLD_TTL_MAX = 3600


HoldTtl = Annotated[int, Field(ge=1, le=HOLD_TTL_MAX, strict=True)]


class HoldRequest(StrictModel):
    """Either ``{"amount"}`` (USD), or ``{"model", "messages", "max_tokens"?}`` priced as
    projected-cost prices it (without ``max_tokens``, the output is sized as the project's hold
    sizing says); optional ``ttl_seconds`` (default 600, at most 3,600)."""

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


class HoldResponse(Model):
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
    output_tokens: int | None = Field(
        default=None, description="the output tokens a priced hold reserves (see sized_by)"
    )
    sized_by: str | None = Field(
        default=None,
        description="how output_tokens was chosen: max_tokens (the request's), learned (the"
        " project's percentile of this model's settled outputs), model_max_output (LiteLLM's"
        " max_output_tokens: no history yet), project_default (the model has no maximum)",
    )
    capped: bool | None = Field(
        default=None, description="true: the project's max_hold capped this priced hold's amount"
    )
    idempotency_key: str | None = None
    replayed: bool = Field(default=False, description="true: this Idempotency-Key made the hold before")


class SettleRequest(CostRequest):
    """Any form of ``/cost``, and optional ``output_tokens``: the call's output tokens, for hold
    sizing, when the form carries no usage (``{"model", "cost"}``)."""

    output_tokens: TokenCount | None = None


OUTPUT_TOKENS_MAX = 10_000_000


class HoldSizingIn(StrictModel):
    """A project's hold sizing (every field optional; a PUT replaces the whole setting)."""

    max_hold: Money | None = Field(
        default=None, description="USD: no priced hold reserves more (a per-request hold cap)"
    )
    default_max_output_tokens: Annotated[int, Field(ge=1, le=OUTPUT_TOKENS_MAX, strict=True)] | None = Field(
        default=None,
        description="output tokens held without max_tokens nor history for a model whose maximum"
        " output LiteLLM's map does not give (default 4096)",
    )
    percentile: Annotated[int, Field(ge=50, le=100, strict=True)] | None = Field(
        default=None, description="the percentile of settled outputs a hold reserves (default 95)"
    )
    min_samples: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] | None = Field(
        default=None, description="settles counted before the percentile is used (default 20)"
    )

    @model_validator(mode="after")
    def _positive_cap(self) -> HoldSizingIn:
        if self.max_hold is not None and self.max_hold <= 0:
            raise ValueError("max_hold must be greater than 0 (or null: no cap)")
        return self


class HoldSizingRecord(Model):
    project: str
    max_hold: Number | None = Field(description="USD; null: no per-request hold cap")
    default_max_output_tokens: int
    percentile: int
    min_samples: int
    created_at: str | None = Field(description="null: the project set nothing (these are the defaults)")
    updated_at: str | None


class SettleResponse(Model):
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


class ReleaseResponse(Model):
    hold_id: str
    project: str
    user: str
    amount: Number
    state: str = Field(description="the hold's state now")
    released: bool = Field(
        description="true when this request freed the hold; false when it had"
        " already been settled, released or expired"
    )
