"""Shared field types and base classes of the API models: ids, money, epochs, days, numbers in
responses, timezones, alert thresholds and the error body."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_serializer,
)

from budget_service.core.numbers import (  # noqa: F401  (defined without pydantic; re-exported here)
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
from budget_service.core.periods import check_timezone_name

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN),
    AfterValidator(fits_id_bytes),
]


def _quantizer(quantum: Decimal):
    def quantize(value: Decimal) -> Decimal:
        return value.quantize(quantum, context=DECIMAL_CONTEXT).normalize(DECIMAL_CONTEXT)

    return quantize


def number_only(value):
    """A before-validator for numeric fields: ValueError (a 422) for a JSON string or boolean.

    pydantic would read "10" or true as a number; a JSON client that sends them has a bug."""
    if isinstance(value, (str, bool)):
        raise ValueError("must be a JSON number")
    return value


quantize_money = _quantizer(MONEY_QUANTUM)


Money = Annotated[
    Decimal,
    BeforeValidator(number_only),
    Field(ge=0, le=MONEY_MAX, allow_inf_nan=False),
    AfterValidator(quantize_money),
]


Epoch = Annotated[
    Decimal,
    BeforeValidator(number_only),
    Field(ge=0, le=EPOCH_MAX, allow_inf_nan=False),
    AfterValidator(_quantizer(EPOCH_QUANTUM)),
]


Days = Annotated[
    Decimal,
    BeforeValidator(number_only),
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
        check_timezone_name(name)  # raises ValueError, which pydantic reports as a validation error
    return name


TimezoneName = Annotated[str | None, Field(default=None, max_length=64), AfterValidator(_check_timezone)]


class Model(BaseModel):
    """Every model here builds its validator on first use, not at import: a function pays only
    for the models of its own routes (make bench's cold start; pydantic's ``defer_build``)."""

    model_config = ConfigDict(defer_build=True)


class StrictModel(Model):
    """A request body: a field it does not declare is a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class OmitsNoneModel(Model):
    """Leaves out absent fields, as litellm's own entries do (it keys on their presence)."""

    @model_serializer(mode="wrap")
    def _omit_none(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


# Alert thresholds: fractions of a budget's total, each in (0, 10] (above 1 alerts on
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
    BeforeValidator(number_only),
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


class ErrorBody(Model):
    code: str
    message: str
    details: list[dict] | dict | None = Field(
        default=None,
        description="validation problems (a list), or, for a set_budget stopped part way, which"
        " users were written, unchanged, not_written and not_confirmed",
    )


class ErrorResponse(Model):
    error: ErrorBody


# Token counts: whole numbers (a JSON 1.5 or "1" is rejected, not rounded), at most 10^9 per call.
TOKENS_MAX = 1_000_000_000


TokenCount = Annotated[int, Field(ge=0, le=TOKENS_MAX, strict=True)]
