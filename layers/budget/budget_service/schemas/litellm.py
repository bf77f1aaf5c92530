"""The litellm hosted protocol: /get_budget and /set_budget bodies and answers."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    ConfigDict,
    Field,
)

from budget_service.core.numbers import (
    MAX_MODELS_PER_USER,
    MAX_USERS_PER_SET_BUDGET,
)
from budget_service.schemas.common import (
    Days,
    Epoch,
    Identifier,
    Model,
    Money,
    Number,
    OmitsNoneModel,
)


class LitellmEntry(Model):
    """One user's entry as litellm's BudgetManager writes it. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    total_budget: Money
    current_cost: Money | None = None
    model_cost: dict[Identifier, Money] | None = Field(default=None, max_length=MAX_MODELS_PER_USER)
    duration: Days | None = None
    created_at: Epoch | None = None
    last_updated_at: Epoch | None = None


class GetBudgetRequest(Model):
    model_config = ConfigDict(extra="ignore")

    project_name: Identifier


class SetBudgetRequest(Model):
    model_config = ConfigDict(extra="ignore")

    project_name: Identifier
    user_dict: dict[Identifier, LitellmEntry] = Field(max_length=MAX_USERS_PER_SET_BUDGET)


class LitellmEntryOut(OmitsNoneModel):
    total_budget: Number
    current_cost: Number
    model_cost: dict[str, Number]
    duration: Number | None = Field(default=None, description="days (rolling period length)")
    created_at: Number | None = None
    last_updated_at: Number | None = Field(default=None, description="start of the period")


class GetBudgetResponse(OmitsNoneModel):
    status: Literal["success", "error"]
    data: dict[str, LitellmEntryOut] | None = None
    message: str | None = None


class SetBudgetResponse(Model):
    status: Literal["success"]
    written: list[str] = Field(description="users whose stored entry changed")
    unchanged: list[str] = Field(description="users whose stored entry already said the same")
    stale_spend_ignored: list[str] = Field(
        description="users whose entry came from a client copy the server has no record of (loaded"
        " from an earlier version of the service) and carried spend of a period the server has"
        " already closed; that spend was not applied (settings were)"
    )
    uncertain_spend_kept: list[str] = Field(
        default_factory=list,
        description="users whose entry brought spend the server cannot place in one period (the"
        " client last saved, or first stamped its entry, before the current period began, or it"
        " zeroed its totals without a reset): counted once, in the current period",
    )
