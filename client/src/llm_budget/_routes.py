"""Every request of the service, described once (``Endpoint``), for the sync and async clients.

A description says what goes on the wire and what comes back: the method, the path template and
its parameters, the JSON body's shape (a ``TypedDict``, the fields the client may send), the query
parameters, fixed headers, whether an Idempotency-Key goes with it, how to read the answer, and
the errors particular to it. ``Endpoint.call`` turns one into a ``Call`` that ``_transport``
sends; the clients' public methods (``llm_budget.client``) are declared once on top of these.

Paths and bodies follow the service's OpenAPI document (``openapi.json``; a test checks every
description against it). Writes that are not idempotent by nature (cost, hold, adjustment) carry
an Idempotency-Key: the caller's, or a fresh uuid4 made here once per call, so the client's own
retries reuse it and are charged once. Helpers for the cost forms, money and prices live here too.
"""

# No `from __future__ import annotations` here: a TypedDict reads Required and NotRequired from
# evaluated annotations only (not strings), and the bodies' required keys are part of the contract.
import hashlib
import re
import string
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, NotRequired, Required, TypedDict, TypeVar
from urllib.parse import quote

import httpx

from llm_budget import _json
from llm_budget._transport import Call
from llm_budget.errors import (
    BudgetError,
    BudgetExceeded,
    BudgetNotFound,
    HoldNotFound,
    IdempotencyKeyReused,
    NotFound,
    UnknownModel,
)
from llm_budget.models import (
    Adjustment,
    Budget,
    CostResult,
    Hold,
    LedgerEntry,
    LevelBudget,
    Page,
    Period,
    Price,
    ProjectedCost,
    Release,
    SetBudgetResult,
    Settlement,
    SpendReport,
    parse,
)

T = TypeVar("T")

Amount = Decimal | int | float | str
"""Money given to the client (USD). A float is read by its shortest repr (``0.1`` is
``Decimal("0.1")``), never through float arithmetic; a str must be a decimal number."""

Duration = str | None
"""``daily``, ``weekly``, ``monthly``, ``yearly`` (calendar-aligned), or None (no period)."""


# ---- request bodies: the fields each request may send (checked against openapi.json) ----------


class PutUserBody(TypedDict):
    """``PUT /projects/{project}/users/{user}``: USD per calendar ``duration`` (or None)."""

    total_budget: Decimal
    duration: str | None
    timezone: NotRequired[str]
    team: NotRequired[str]


class DefaultUserBody(TypedDict):
    """The budget a project gives a user it has not seen (USD per ``duration``)."""

    total_budget: Decimal
    duration: NotRequired[str | None]
    timezone: NotRequired[str | None]


class LevelBody(TypedDict):
    """``PUT`` of a project's or a team's cap: USD per calendar ``duration`` (or None)."""

    total_budget: Decimal
    duration: str | None
    timezone: NotRequired[str]
    default_user_budget: NotRequired[DefaultUserBody]


class CostBody(TypedDict, total=False):
    """One cost form (``cost_form``); ``if_within_budget`` only when recording a cost."""

    model: str
    usage: Any
    completion: dict[str, Any]
    input_text: str
    output_text: str
    cost: Decimal
    if_within_budget: bool


class ProjectedCostBody(TypedDict):
    """A chat call to price: ``messages`` (OpenAI format) plus ``max_tokens`` of output."""

    model: str
    messages: list[Any]
    max_tokens: NotRequired[int]


class HoldBody(TypedDict, total=False):
    """A hold of ``amount`` USD, or of a call's projected cost; ``ttl_seconds`` to expiry."""

    amount: Decimal
    model: str
    messages: list[Any]
    max_tokens: int
    ttl_seconds: int


class AdjustmentBody(TypedDict):
    """A debit (positive ``amount``, USD) or credit (negative), with its ``reason``."""

    amount: Decimal
    reason: str
    model: NotRequired[str]


class PriceBody(TypedDict, total=False):
    """A project's price for a model: rates in USD per token (``web_search`` per request)."""

    provider: str
    input: Required[Decimal]
    output: Required[Decimal]
    cache_read: Decimal
    cache_creation: Decimal
    cache_creation_1h: Decimal
    cache_creation_12h: Decimal
    reasoning: Decimal
    input_audio: Decimal
    output_audio: Decimal
    cache_read_audio: Decimal
    input_image: Decimal
    output_image: Decimal
    cache_read_image: Decimal
    input_video: Decimal
    output_video: Decimal
    tiers: list[dict[str, Any]]
    web_search: dict[str, Decimal]
    web_search_unit: str
    free: str | None


class GetBudgetBody(TypedDict):
    """litellm's ``POST /get_budget``."""

    project_name: str


class SetBudgetBody(TypedDict):
    """litellm's ``POST /set_budget``: entries by user (``total_budget``, ``current_cost``,
    ``model_cost`` in USD; ``duration`` in days; ``created_at``/``last_updated_at`` epoch s)."""

    project_name: str
    user_dict: dict[str, Any]


def money(value: Amount) -> Decimal:
    """``value`` as an exact Decimal (see ``Amount``). Raises ValueError for NaN, infinities,
    booleans and text that is not a number."""
    if isinstance(value, bool):
        raise ValueError("money must be a number, not a bool")
    if isinstance(value, float):
        result = Decimal(repr(value))
    else:
        try:
            result = Decimal(value)
        except ArithmeticError:
            raise ValueError(f"{value!r} is not a number") from None
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite amount")
    return result


def segment(value: str) -> str:
    """One path segment, percent-encoded (ids may hold ``/``, spaces, anything printable)."""
    if not value:
        raise ValueError("ids must not be empty")
    return quote(value, safe="")


def new_key() -> str:
    """A fresh Idempotency-Key (uuid4)."""
    return str(uuid.uuid4())


# What the service accepts in an Idempotency-Key is 1 to 255 visible ASCII characters other
# than "," (how proxies join repeated headers); a value is kept as is up to 200 of them.
_KEY_VALUE = re.compile(r"^[\x21-\x2b\x2d-\x7e]{1,200}$")


def idempotency_key(prefix: str, value: str) -> str:
    """``prefix:value`` when that is a valid Idempotency-Key (visible ASCII but ",", short),
    else ``prefix:sha256:<hex of value>``: a response id of any form keys its charge."""
    if _KEY_VALUE.match(value):
        return f"{prefix}:{value}"
    return f"{prefix}:sha256:{hashlib.sha256(value.encode()).hexdigest()}"


def plain(value: object) -> Any:
    """A pydantic model (litellm's ModelResponse and Usage, OpenAI's objects), a dataclass-free
    mapping or a JSON value, as plain JSON values. ``None`` fields of models are left out."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(exclude_none=True, mode="json", warnings=False)
        except TypeError:  # pydantic v1-style objects
            return dump()
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, Mapping):
        return to_dict()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _field(value: object, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def completion_parts(response: object) -> tuple[str | None, Any, str | None]:
    """``(model, usage, id)`` of a chat completion in any form: litellm's ``ModelResponse``, an
    OpenAI response object, or its dict. Only these are sent, never the generated content."""
    model, usage, response_id = (_field(response, name) for name in ("model", "usage", "id"))
    if usage is None:
        raise TypeError(f"not a completion with usage: {type(response).__name__}")
    return (
        model if isinstance(model, str) else None,
        plain(usage),
        response_id if isinstance(response_id, str) else None,
    )


def looks_like_usage(value: object) -> bool:
    """True for a usage block (OpenAI chat or Responses, Anthropic, Gemini shapes) rather than a
    whole response."""
    keys = ("prompt_tokens", "input_tokens", "promptTokenCount", "inputTokens")
    return _field(value, "usage") is None and any(_field(value, k) is not None for k in keys)


def settle_form(
    response: object = None,
    *,
    model: str | None = None,
    usage: object = None,
    completion: object = None,
    input_text: str | None = None,
    output_text: str | None = None,
    cost: Amount | None = None,
) -> CostBody:
    """The cost form for ``response`` (a completion, or a bare usage priced as ``model``) or for
    the explicit form given; see ``cost_form``."""
    if response is not None:
        if looks_like_usage(response):
            usage = response
        else:
            completion = response
    return cost_form(
        model=model,
        usage=usage,
        completion=completion,
        input_text=input_text,
        output_text=output_text,
        cost=cost,
    )


def cost_form(
    *,
    model: str | None = None,
    usage: object = None,
    completion: object = None,
    input_text: str | None = None,
    output_text: str | None = None,
    cost: Amount | None = None,
) -> CostBody:
    """The body of one cost form (exactly one of ``usage`` with ``model``, ``completion``,
    ``input_text``/``output_text`` with ``model``, ``cost`` with ``model``). A completion is sent
    as its model and usage only. Raises ValueError for none or several forms."""
    given = [
        name
        for name, present in (
            ("usage", usage is not None),
            ("completion", completion is not None),
            ("text", input_text is not None or output_text is not None),
            ("cost", cost is not None),
        )
        if present
    ]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of usage (with model), completion, input_text/output_text (with"
            f" model) or cost (with model); got {', '.join(given) or 'none'}"
        )
    if completion is not None:
        completion_model, completion_usage, _ = completion_parts(completion)
        return {"completion": {"model": completion_model, "usage": completion_usage}}
    if model is None:
        raise ValueError(f"model is required with {given[0]}")
    body: CostBody = {"model": model}
    if usage is not None:
        body["usage"] = plain(usage)
    elif cost is not None:
        body["cost"] = money(cost)
    else:
        if input_text is not None:
            body["input_text"] = input_text
        if output_text is not None:
            body["output_text"] = output_text
    return body


# Price fields that are words, not rates (every other value is a rate in USD, or a count).
_PRICE_WORDS = frozenset({"provider", "free", "web_search_unit"})


def price_body(fields: Mapping[str, object]) -> dict[str, Any]:
    """A price's PUT body: rates (USD per token, per request for web search) as exact Decimals,
    in nested tiers and web_search too; token counts (``above``) and words kept as they are."""

    def convert(key: str, value: object) -> object:
        if key in _PRICE_WORDS or value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, Mapping):
            return {str(k): convert(str(k), v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(key, v) for v in value]
        if isinstance(value, (Decimal, float, str)):
            return money(value)
        raise TypeError(f"{key}: {type(value).__name__} is not a price")

    return {name: convert(name, value) for name, value in fields.items()}


# ---- answers -------------------------------------------------------------------------------------

Reader = Callable[[httpx.Response, Mapping[str, str]], T]
"""How to read a 2xx answer: the response and the call's path parameters (unencoded)."""


def _body(response: httpx.Response) -> Any:
    return _json.loads(response.content)


def _one(cls: type[T]) -> Reader[T]:
    def read(response: httpx.Response, path: Mapping[str, str]) -> T:
        return parse(cls, _body(response))

    return read


def _created(cls: type[T]) -> Reader[T]:
    """A PUT's answer: the record, with ``created`` true when the service answered 201."""

    def read(response: httpx.Response, path: Mapping[str, str]) -> T:
        data = _body(response)
        if isinstance(data, dict):
            data = {**data, "created": response.status_code == 201}
        return parse(cls, data)

    return read


def _page(cls: type[T], *keys: str) -> Reader[Page[T]]:
    def read(response: httpx.Response, path: Mapping[str, str]) -> Page[T]:
        data = _body(response)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        items: list[Any] = next((data[k] for k in keys if isinstance(data.get(k), list)), [])
        return Page([parse(cls, item) for item in items], data.get("next_cursor"))

    return read


def _with_hold_id(cls: type[T]) -> Reader[T]:
    """An answer about a hold, with its ``hold_id`` from the path when the body leaves it out
    (a release may answer 200 with no body)."""

    def read(response: httpx.Response, path: Mapping[str, str]) -> T:
        data = _body(response) if response.content else {}
        if not isinstance(data, dict):
            data = {}
        return parse(cls, {"hold_id": path["hold_id"], **data})

    return read


def _prices(response: httpx.Response, path: Mapping[str, str]) -> list[Price]:
    return [parse(Price, item) for item in _body(response).get("prices", [])]


def _none(response: httpx.Response, path: Mapping[str, str]) -> None:
    return None


def _litellm_data(response: httpx.Response, path: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    data = _body(response)
    if data.get("status") == "error":  # an unknown project: nothing stored yet
        return {}
    users = data.get("data") or {}
    return {str(user): dict(entry) for user, entry in users.items()}


def _text(response: httpx.Response, path: Mapping[str, str]) -> str:
    return response.text


# ---- the descriptions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint(Generic[T]):
    """One request of the service, described once for both clients.

    ``method`` and ``path`` (a template, ``{name}`` for each path parameter) are as in
    ``openapi.json``. ``body``: the ``TypedDict`` of the JSON body (None: no body); ``query``: the
    query parameters it may send; ``headers``: fixed headers (an ``Accept``). ``keyed``: sends an
    Idempotency-Key (the caller's, or a fresh uuid4 per call, kept across the client's retries).
    ``read`` parses a 2xx answer. ``repeatable``: safe to resend when no answer came (see
    ``_transport``); ``gone_ok``: a DELETE whose retry finds nothing has done its work. ``errors``:
    the ``BudgetError`` classes particular to it (every request may also raise
    ``ValidationFailed``, ``AuthenticationFailed``, ``PermissionDenied`` and ``Unavailable``).
    """

    name: str
    method: str
    path: str
    read: Reader[T]
    body: type[Any] | None = None
    query: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    keyed: bool = False
    repeatable: bool = True
    gone_ok: bool = False
    errors: tuple[type[BudgetError], ...] = ()

    @property
    def path_params(self) -> tuple[str, ...]:
        """The names in ``path``, in order."""
        return tuple(name for _, name, _, _ in string.Formatter().parse(self.path) if name)

    def call(
        self,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str | None] | None = None,
        idempotency_key: str | None = None,
        **path: str,
    ) -> Call[T]:
        """The ``Call`` for these values: each path parameter percent-encoded as one segment,
        query values that are None left out. Raises ValueError for an empty id, and for path,
        body or query names the description does not have (a bug in the caller, not an input)."""
        if set(path) != set(self.path_params):
            raise ValueError(f"{self.name}: path parameters {sorted(path)}, expected {self.path_params}")
        if (body is None) != (self.body is None):
            raise ValueError(f"{self.name}: a body is {'required' if self.body else 'not sent'}")
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if not set(params) <= set(self.query):
            raise ValueError(f"{self.name}: query {sorted(params)}, expected some of {self.query}")
        headers = dict(self.headers)
        if self.keyed:
            headers["Idempotency-Key"] = idempotency_key or new_key()
        elif idempotency_key is not None:
            raise ValueError(f"{self.name} takes no Idempotency-Key")
        values = dict(path)
        read = self.read
        return Call(
            self.method,
            self.path.format(**{k: segment(v) for k, v in path.items()}),
            lambda response: read(response, values),
            body,
            params or None,
            headers,
            repeatable=self.repeatable,
            gone_ok=self.gone_ok,
        )


USER = "/projects/{project}/users/{user}"
HOLD = USER + "/holds/{hold_id}"
_MISSING_USER = (BudgetNotFound,)
_MISSING_LEVEL = (BudgetNotFound,)  # a project or team level not set: level_not_found

PUT_USER = Endpoint("put_user", "PUT", USER, _created(Budget), PutUserBody)
GET_USER = Endpoint("get_user", "GET", USER, _one(Budget), errors=_MISSING_USER)
DELETE_USER = Endpoint(
    "delete_user", "DELETE", USER, _none, query=("purge",), gone_ok=True, errors=_MISSING_USER
)
LIST_USERS = Endpoint(
    "list_users", "GET", "/projects/{project}/users", _page(Budget, "users"), query=("limit", "cursor")
)
# A reset repeated after a lost answer would zero spend recorded in between: it is retried only
# when the service answered that nothing was written (503/429/409).
RESET_USER = Endpoint(
    "reset_user", "POST", USER + "/reset", _one(Budget), repeatable=False, errors=_MISSING_USER
)
RECORD_COST = Endpoint(
    "record_cost",
    "POST",
    USER + "/cost",
    _one(CostResult),
    CostBody,
    keyed=True,
    errors=(BudgetNotFound, BudgetExceeded, UnknownModel, IdempotencyKeyReused),
)
PROJECTED_COST = Endpoint(
    "projected_cost",
    "POST",
    USER + "/projected-cost",
    _one(ProjectedCost),
    ProjectedCostBody,
    errors=(BudgetNotFound, UnknownModel),
)
HOLD_CREATE = Endpoint(
    "hold",
    "POST",
    USER + "/holds",
    _one(Hold),
    HoldBody,
    keyed=True,
    errors=(BudgetNotFound, BudgetExceeded, UnknownModel, IdempotencyKeyReused),
)
# Settled exactly once by hold id: a repeat answers the first result (replayed), so no key.
HOLD_SETTLE = Endpoint(
    "settle",
    "POST",
    HOLD + "/settle",
    _with_hold_id(Settlement),
    CostBody,
    errors=(HoldNotFound, UnknownModel),
)
HOLD_RELEASE = Endpoint("release", "DELETE", HOLD, _with_hold_id(Release), errors=(HoldNotFound,))

PROJECT_BUDGET = "/projects/{project}/budget"
TEAM = "/projects/{project}/teams/{team}"
PUT_PROJECT_BUDGET = Endpoint("put_project_budget", "PUT", PROJECT_BUDGET, _created(LevelBudget), LevelBody)
GET_PROJECT_BUDGET = Endpoint(
    "get_project_budget", "GET", PROJECT_BUDGET, _one(LevelBudget), errors=_MISSING_LEVEL
)
DELETE_PROJECT_BUDGET = Endpoint(
    "delete_project_budget", "DELETE", PROJECT_BUDGET, _none, gone_ok=True, errors=_MISSING_LEVEL
)
PUT_TEAM = Endpoint("put_team", "PUT", TEAM, _created(LevelBudget), LevelBody)
GET_TEAM = Endpoint("get_team", "GET", TEAM, _one(LevelBudget), errors=_MISSING_LEVEL)
DELETE_TEAM = Endpoint("delete_team", "DELETE", TEAM, _none, gone_ok=True, errors=_MISSING_LEVEL)
LIST_TEAMS = Endpoint(
    "list_teams",
    "GET",
    "/projects/{project}/teams",
    _page(LevelBudget, "teams"),
    query=("limit", "cursor"),
)

LIST_PERIODS = Endpoint(
    "list_periods",
    "GET",
    USER + "/periods",
    _page(Period, "periods"),
    query=("limit", "cursor"),
    errors=_MISSING_USER,
)
SPEND = "/projects/{project}/spend"
SPEND_REPORT = Endpoint("spend_report", "GET", SPEND, _one(SpendReport), query=("from", "to"))
SPEND_REPORT_CSV = Endpoint(
    "spend_report_csv", "GET", SPEND, _text, query=("from", "to"), headers={"Accept": "text/csv"}
)
ADJUST = Endpoint(
    "adjust",
    "POST",
    USER + "/adjustments",
    _one(Adjustment),
    AdjustmentBody,
    keyed=True,
    errors=(BudgetNotFound, IdempotencyKeyReused),
)
LEDGER = Endpoint(
    "ledger",
    "GET",
    USER + "/ledger",
    _page(LedgerEntry, "entries", "ledger", "items"),
    query=("limit", "cursor"),
    errors=_MISSING_USER,
)

PRICE = "/projects/{project}/prices/{model}"
PUT_PRICE = Endpoint("put_price", "PUT", PRICE, _created(Price), PriceBody)
GET_PRICE = Endpoint("get_price", "GET", PRICE, _one(Price), errors=(NotFound,))
DELETE_PRICE = Endpoint("delete_price", "DELETE", PRICE, _none, gone_ok=True, errors=(NotFound,))
LIST_PRICES = Endpoint("list_prices", "GET", "/projects/{project}/prices", _prices)

LITELLM_GET_BUDGET = Endpoint("litellm_get_budget", "POST", "/get_budget", _litellm_data, GetBudgetBody)
# set_budget merges by "keep the larger spend": repeating it changes nothing more.
LITELLM_SET_BUDGET = Endpoint(
    "litellm_set_budget", "POST", "/set_budget", _one(SetBudgetResult), SetBudgetBody
)

ENDPOINTS: tuple[Endpoint[Any], ...] = (
    PUT_USER,
    GET_USER,
    DELETE_USER,
    LIST_USERS,
    RESET_USER,
    RECORD_COST,
    PROJECTED_COST,
    HOLD_CREATE,
    HOLD_SETTLE,
    HOLD_RELEASE,
    PUT_PROJECT_BUDGET,
    GET_PROJECT_BUDGET,
    DELETE_PROJECT_BUDGET,
    PUT_TEAM,
    GET_TEAM,
    DELETE_TEAM,
    LIST_TEAMS,
    LIST_PERIODS,
    SPEND_REPORT,
    SPEND_REPORT_CSV,
    ADJUST,
    LEDGER,
    PUT_PRICE,
    GET_PRICE,
    DELETE_PRICE,
    LIST_PRICES,
    LITELLM_GET_BUDGET,
    LITELLM_SET_BUDGET,
)
"""Every request the clients send, one description each."""
