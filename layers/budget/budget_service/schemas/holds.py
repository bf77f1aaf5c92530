"""Holds: the hold request and the answers of hold, settle and release."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from budget_service.schemas.common import (
    Identifier,
    Money,
    Number,
    TokenCount,
    _Model,
    _Strict,
)
from budget_service.schemas.costs import MESSAGES_MAX, ChatMessage, TokensUsed

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
