"""Typed results: frozen dataclasses with Decimal money (USD) and aware datetimes (UTC).

Each is built from the service's JSON by ``parse``: known fields are converted to their declared
type (money to ``Decimal`` exactly, ISO 8601 or epoch-second times to ``datetime``), and fields
this version of the client does not know are kept in ``extra`` rather than dropped, so a newer
service never breaks an older client.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar, Union

T = TypeVar("T")

_EXTRA = "extra"


def _json_name(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("json", f.name))


_Shape = tuple[dict[str, Any], dict[str, "dataclasses.Field[Any]"]]
_shapes: dict[type[Any], _Shape] = {}


def _shape(cls: type[Any]) -> _Shape:
    """A dataclass's resolved field types, and its fields by JSON name (resolved once)."""
    shape = _shapes.get(cls)
    if shape is None:
        fields = {_json_name(f): f for f in dataclasses.fields(cls)}
        shape = _shapes[cls] = (typing.get_type_hints(cls), fields)
    return shape


def parse(cls: type[T], data: object) -> T:
    """Build dataclass ``cls`` from a JSON object; unknown keys go to its ``extra`` field.

    Raises ValueError when ``data`` is not an object or lacks a required field.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    hints, known = _shape(cls)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        f = known.get(key)
        if f is None or f.name == _EXTRA:
            extra[key] = value
        else:
            kwargs[f.name] = _convert(hints[f.name], value, key)
    if _EXTRA in hints:
        kwargs[_EXTRA] = extra
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"unexpected answer for {cls.__name__}: {exc}") from None


def _convert(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, name) if len(args) == 1 else value
    if tp is Any or tp is object:
        return value
    if value is None:
        return None
    if tp is Decimal:
        if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        return Decimal(value)
    if tp is datetime:
        return _datetime(value, name)
    if tp in (str, int, bool):
        return value
    if origin is dict:
        _, value_type = typing.get_args(tp)
        return {str(k): _convert(value_type, v, name) for k, v in dict(value).items()}
    if origin is list:
        (item_type,) = typing.get_args(tp)
        return [_convert(item_type, v, name) for v in value]
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return parse(tp, value)
    return value


def _datetime(value: object, name: str) -> datetime:
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return datetime.fromtimestamp(int(value), UTC).replace(
            microsecond=int((Decimal(value) % 1) * 1_000_000)
        )
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"{name}: expected a time, got {value!r}")


# ---- budgets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """A user's budget record. Money in USD; times UTC.

    ``remaining`` is ``total_budget - current_cost``; ``held`` the sum of live holds and
    ``available`` what a new hold may still reserve (services with holds). ``duration`` is
    ``daily``/``weekly``/``monthly``/``yearly``, ``rolling:<days>d`` for budgets litellm wrote, or
    None.
    """

    project: str
    user: str
    total_budget: Decimal
    current_cost: Decimal
    remaining: Decimal | None = None
    model_cost: dict[str, Decimal] = field(default_factory=dict)
    held: Decimal | None = None
    available: Decimal | None = None
    duration: str | None = None
    timezone: str | None = None
    team: str | None = None
    period_start: datetime | None = None
    reset_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created: bool | None = None
    """True when the PUT created the budget (201), False when it replaced one (200)."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_cursor`` back to get the next (None: no more)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class DefaultUserBudget:
    """The budget a project gives a user it has not seen (``total_budget`` USD per period)."""

    total_budget: Decimal
    duration: str | None = None
    timezone: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LevelBudget:
    """A project's or a team's cap over its users' spend (USD), with its own period.

    ``users`` (and for a project ``teams``) count its members where the service reports them.
    """

    project: str
    total_budget: Decimal
    current_cost: Decimal
    team: str | None = None
    level: str | None = None
    remaining: Decimal | None = None
    held: Decimal | None = None
    available: Decimal | None = None
    model_cost: dict[str, Decimal] = field(default_factory=dict)
    duration: str | None = None
    timezone: str | None = None
    period_start: datetime | None = None
    reset_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    users: int | None = None
    teams: int | None = None
    default_user_budget: DefaultUserBudget | None = None
    created: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---- costs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    """The tokens a cost was priced from."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CostResult:
    """What a cost update charged (``cost``, USD). The balance after it (``current_cost``,
    ``remaining``) is None where the service could not say in the same request (a DynamoDB
    transaction returns no values; ``get_user`` reads it). ``replayed``: this key was already
    used; nothing was charged this time and the first result is answered."""

    project: str
    user: str
    model: str
    cost: Decimal
    current_cost: Decimal | None = None
    total_budget: Decimal | None = None
    remaining: Decimal | None = None
    budget_exceeded: bool | None = None
    tokens: Tokens | None = None
    priced_as: str | None = None
    idempotency_key: str | None = None
    replayed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProjectedCost:
    """What a call would cost before it is made: the prompt's tokens priced, plus ``max_tokens``
    of output when given (USD), and whether the current spend plus that fits the budget."""

    project: str
    user: str
    model: str
    projected_cost: Decimal
    priced_as: str | None = None
    prompt_tokens: int | None = None
    prompt_cost: Decimal | None = None
    max_tokens: int | None = None
    completion_cost: Decimal | None = None
    current_cost: Decimal | None = None
    projected_total: Decimal | None = None
    total_budget: Decimal | None = None
    remaining_after: Decimal | None = None
    within_budget: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---- holds --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    """A reservation of ``amount`` USD against every level of a user's budget, until it is
    settled, released, or it expires at ``expires_at``. ``available`` is what the budget can
    still reserve where the service says (a hold is one DynamoDB transaction, which returns no
    values: ``get_user`` reads it). ``replayed``: this Idempotency-Key made the hold before."""

    hold_id: str
    amount: Decimal
    expires_at: datetime | None = None
    available: Decimal | None = None
    project: str | None = None
    user: str | None = None
    state: str | None = None
    created_at: datetime | None = None
    priced_as: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    """The output tokens a priced hold reserves; ``sized_by`` says how they were chosen
    (``max_tokens``, ``learned``, ``model_max_output``, ``project_default``)."""
    sized_by: str | None = None
    capped: bool | None = None
    """True: the project's ``max_hold`` capped the amount."""
    idempotency_key: str | None = None
    replayed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settlement:
    """A settled hold: ``cost`` charged (USD, in full even above the hold), ``released`` USD of
    the hold freed. ``settled_from``: ``held``, or ``released``/``expired`` when the hold had been
    freed first (the cost is still charged, once). ``replayed``: settled before; this is the first
    result and nothing was charged again."""

    hold_id: str
    cost: Decimal
    amount: Decimal | None = None
    released: Decimal | None = None
    state: str | None = None
    settled_from: str | None = None
    settled_at: datetime | None = None
    project: str | None = None
    user: str | None = None
    model: str | None = None
    priced_as: str | None = None
    tokens: Tokens | None = None
    replayed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Release:
    """A release: ``released`` is True when this request freed the hold, False when it had
    already been settled, released or expired (repeating a release is harmless); ``state`` is
    the hold's state now."""

    hold_id: str
    state: str | None = None
    released: bool | None = None
    amount: Decimal | None = None
    project: str | None = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---- history ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """One period of a budget, as ``GET …/periods`` lists it: the current one (``current`` True)
    or a closed one (``closed_by``: rollover, job, reset, delete...), with its ``spend`` (per model
    in ``model_cost``), budget and holds at close, USD; times as the service gives them."""

    period_start: datetime | None = None
    period_end: datetime | None = None
    total_budget: Decimal | None = None
    spend: Decimal | None = None
    model_cost: dict[str, Decimal] = field(default_factory=dict)
    held: Decimal | None = None
    current: bool | None = None
    closed_by: str | None = None
    closed_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Adjustment:
    """A debit (positive ``amount``) or credit (negative) applied to a user's spend (USD)."""

    amount: Decimal
    reason: str | None = None
    model: str | None = None
    applied: Decimal | None = None
    current_cost: Decimal | None = None
    idempotency_key: str | None = None
    replayed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerEntry:
    """One change to a budget other than spend (adjustment, reset, settings change, delete)."""

    at: datetime | None = None
    action: str | None = None
    key_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpendReport:
    """Spend per user and per model over the periods that started in [``from_``, ``to``) (USD).

    The service's full answer is kept in ``extra`` (``users``, ``models``, ``totals``).
    """

    from_: datetime | None = field(default=None, metadata={"json": "from"})
    to: datetime | None = None
    total: Decimal | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---- prices -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """A project's own price for ``model``, winning over the shipped table for that project.

    ``price`` holds the fields as stored (``input``, ``output``, ``cache_read``, ... in USD per
    token as Decimals; ``tiers``, ``web_search``, ``free``, ``provider``); costs priced by it show
    ``priced_as`` (``project:<model>``).
    """

    model: str
    price: dict[str, Any] = field(default_factory=dict)
    priced_as: str | None = None
    project: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---- litellm compat -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SetBudgetResult:
    """``set_budget``'s answer: which users changed, which already said the same, and whose spend
    belonged to a period the server had already closed (settings applied, spend ignored)."""

    status: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale_spend_ignored: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
