"""Pydantic models of what crosses the API: request bodies, validated identifiers, responses.

Numbers arrive as Decimal (the JSON body is parsed with ``parse_float=Decimal``) and are bounded
so that every value we store fits a DynamoDB Number (38 significant digits) even after additions.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

from budget_service.periods import Duration, zone

# Identifiers: project, user and model names. No control characters (they break logs and keys).
ID_MAX_LENGTH = 256
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
]

# Money: at most 10^12 dollars, kept to 24 decimal places (well below any real token price),
# so a sum of many still has fewer than DynamoDB's 38 significant digits.
MONEY_MAX = Decimal("1e12")
MONEY_QUANTUM = Decimal("1e-24")
# Epoch seconds, to the nanosecond (a float time.time() keeps all its digits), up to year 5138.
EPOCH_MAX = Decimal("1e11")
EPOCH_QUANTUM = Decimal("1e-9")
# litellm's numeric duration, in days (it sends 1, 7, 28 or 365); at most ten years.
DAYS_MAX = Decimal(3660)
DAYS_QUANTUM = Decimal("1e-12")


def _quantizer(quantum: Decimal):
    def quantize(value: Decimal) -> Decimal:
        return value.quantize(quantum).normalize()

    return quantize


Money = Annotated[
    Decimal,
    Field(ge=0, le=MONEY_MAX, allow_inf_nan=False),
    AfterValidator(_quantizer(MONEY_QUANTUM)),
]
Epoch = Annotated[
    Decimal,
    Field(ge=0, le=EPOCH_MAX, allow_inf_nan=False),
    AfterValidator(_quantizer(EPOCH_QUANTUM)),
]
Days = Annotated[
    Decimal,
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
    model_cost: dict[Identifier, Money] | None = None
    duration: Days | None = None
    created_at: Epoch | None = None
    last_updated_at: Epoch | None = None


class GetBudgetRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    project_name: Identifier


class SetBudgetRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    project_name: Identifier
    user_dict: dict[Identifier, LitellmEntry]


class LitellmEntryOut(BaseModel):
    total_budget: Number
    current_cost: Number
    model_cost: dict[str, Number]
    duration: Number | None = Field(default=None, description="days (rolling period length)")
    created_at: Number | None = None
    last_updated_at: Number | None = Field(default=None, description="start of the period")


class GetBudgetResponse(BaseModel):
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
    details: list[dict] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
