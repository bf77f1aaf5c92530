"""History and audit: adjustments, closed periods, spend reports, the ledger."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from budget_service.core.numbers import (
    MONEY_MAX,
)
from budget_service.schemas.common import (
    Identifier,
    Model,
    Number,
    StrictModel,
    number_only,
    quantize_money,
)

SignedMoney = Annotated[
    Decimal,
    BeforeValidator(number_only),
    Field(ge=-MONEY_MAX, le=MONEY_MAX, allow_inf_nan=False),
    AfterValidator(quantize_money),
]


class AdjustmentRequest(StrictModel):
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


class AdjustmentResponse(Model):
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


class PeriodRecord(Model):
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


class PeriodList(Model):
    project: str
    user: str
    periods: list[PeriodRecord]
    next_cursor: str | None


class SpendRow(Model):
    user: str
    spend: Number
    model_cost: dict[str, Number]
    periods: int
    model_periods: dict[str, int] = Field(
        default_factory=dict, description="per model: how many of the user's periods had spend on it"
    )


class SpendReport(Model):
    project: str
    range_from: str = Field(alias="from", serialization_alias="from")
    range_to: str = Field(alias="to", serialization_alias="to")
    total: Number
    model_cost: dict[str, Number]
    periods: int
    model_periods: dict[str, int] = Field(
        default_factory=dict, description="per model: how many periods had spend on it"
    )
    users: list[SpendRow]

    model_config = ConfigDict(populate_by_name=True)


class LedgerEntry(Model):
    action: str = Field(description="create, settings, reset, delete, adjustment")
    at: str
    key_id: str | None
    details: dict


class Ledger(Model):
    project: str
    user: str
    entries: list[LedgerEntry]
    next_cursor: str | None = None
