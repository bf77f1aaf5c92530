"""Budget levels: project and team caps and the default user budget."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from budget_service.core.periods import Duration
from budget_service.schemas.common import (
    AlertThresholds,
    Model,
    Money,
    Number,
    StrictModel,
    TimezoneName,
)


class DefaultUserBudget(StrictModel):
    total_budget: Money
    duration: Duration | None = None
    timezone: TimezoneName = None


class LevelRequest(StrictModel):
    """A project or team cap: ``total_budget`` (USD), its own ``duration`` and ``timezone``; for
    the project, an optional ``default_user_budget`` that the first cost or hold for an unknown
    user creates that user from, and optional ``default_alert_thresholds`` for its budgets that
    have none of their own (README, Alerts)."""

    total_budget: Money
    duration: Duration | None = None
    timezone: TimezoneName = None
    default_user_budget: DefaultUserBudget | None = None
    default_alert_thresholds: AlertThresholds = None


class DefaultUserBudgetRecord(Model):
    """The project's default user budget as a record shows it (its amount a JSON number)."""

    total_budget: Number
    duration: str | None = None
    timezone: str | None = None


class LevelRecord(Model):
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
    default_user_budget: DefaultUserBudgetRecord | None = Field(
        default=None, description="the project's, if any"
    )
    default_alert_thresholds: list[Number] | None = Field(
        default=None,
        description="the project's default alert thresholds for its budgets without their own"
        " (null: the deployment's default; [] turns them off)",
    )
    duration: str | None
    timezone: str | None
    period_start: str | None
    reset_at: str | None
    created_at: str
    updated_at: str


class TeamList(Model):
    teams: list[LevelRecord]
    next_cursor: str | None
