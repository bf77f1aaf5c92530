"""Native per-user budgets: PUT body, the budget record and the page of budgets."""

from __future__ import annotations

from pydantic import (
    Field,
)

from budget_service.core.periods import Duration
from budget_service.schemas.common import (
    AlertThresholds,
    Identifier,
    Model,
    Money,
    Number,
    StrictModel,
    TimezoneName,
)


class PutBudgetRequest(StrictModel):
    total_budget: Money
    duration: Duration | None = None
    timezone: TimezoneName = None
    alert_thresholds: AlertThresholds = None
    team: Identifier | None = Field(
        default=None,
        description="a team of the project (it must exist): the user's spend also counts toward it",
    )


class BudgetRecord(Model):
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


class BudgetList(Model):
    users: list[BudgetRecord]
    next_cursor: str | None
