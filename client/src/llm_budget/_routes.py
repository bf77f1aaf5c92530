"""Every route of the service as a ``Call`` (request + parser), shared by both clients.

Paths and bodies follow the service's contract (README "API"). Writes that are not idempotent by
nature (cost, hold, adjustment) carry an Idempotency-Key: the caller's, or a fresh uuid4 made
here once per call, so the client's own retries reuse it and are charged once.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from llm_budget import _json
from llm_budget._transport import Call
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
) -> dict[str, Any]:
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
) -> dict[str, Any]:
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
        body: dict[str, Any] = {"completion": {"model": completion_model, "usage": completion_usage}}
        return body
    if model is None:
        raise ValueError(f"model is required with {given[0]}")
    body = {"model": model}
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


# ---- parsers -------------------------------------------------------------------------------------


def _body(response: httpx.Response) -> Any:
    return _json.loads(response.content)


def _one(cls: type[T]) -> Any:
    def read(response: httpx.Response) -> T:
        return parse(cls, _body(response))

    return read


def _budget(response: httpx.Response) -> Budget:
    data = _body(response)
    if isinstance(data, dict) and response.request.method == "PUT":
        data = {**data, "created": response.status_code == 201}
    return parse(Budget, data)


def _level(response: httpx.Response) -> LevelBudget:
    data = _body(response)
    if isinstance(data, dict) and response.request.method == "PUT":
        data = {**data, "created": response.status_code == 201}
    return parse(LevelBudget, data)


def _page(cls: type[T], *keys: str) -> Any:
    def read(response: httpx.Response) -> Page[T]:
        data = _body(response)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        items: list[Any] = next((data[k] for k in keys if isinstance(data.get(k), list)), [])
        return Page([parse(cls, item) for item in items], data.get("next_cursor"))

    return read


def _price(response: httpx.Response) -> Price:
    data = _body(response)
    if isinstance(data, dict) and response.request.method == "PUT":
        data = {**data, "created": response.status_code == 201}
    return parse(Price, data)


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


def _none(response: httpx.Response) -> None:
    return None


def _release(hold_id: str) -> Any:
    def read(response: httpx.Response) -> Release:
        if not response.content:
            return Release(hold_id=hold_id)
        data = _body(response)
        if isinstance(data, dict):
            return parse(Release, {"hold_id": hold_id, **data})
        return Release(hold_id=hold_id)

    return read


def _litellm_data(response: httpx.Response) -> dict[str, dict[str, Any]]:
    data = _body(response)
    if data.get("status") == "error":  # an unknown project: nothing stored yet
        return {}
    users = data.get("data") or {}
    return {str(user): dict(entry) for user, entry in users.items()}


def _text(response: httpx.Response) -> str:
    return response.text


# ---- routes --------------------------------------------------------------------------------------


def _query(**values: object) -> dict[str, str] | None:
    query = {k.rstrip("_"): str(v) for k, v in values.items() if v is not None}
    return query or None


def _key_header(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key or new_key()}


class Routes:
    """The calls of one project. Each method returns the ``Call`` a client sends."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.base = f"/projects/{segment(project)}"

    def user(self, user: str) -> str:
        return f"{self.base}/users/{segment(user)}"

    # -- user budgets

    def put_user(
        self,
        user: str,
        total_budget: Amount,
        duration: Duration,
        timezone: str | None,
        team: str | None,
    ) -> Call[Budget]:
        body: dict[str, Any] = {"total_budget": money(total_budget), "duration": duration}
        if timezone is not None:
            body["timezone"] = timezone
        if team is not None:
            body["team"] = team
        return Call("PUT", self.user(user), _budget, body)

    def get_user(self, user: str) -> Call[Budget]:
        return Call("GET", self.user(user), _budget)

    def delete_user(self, user: str, purge: bool) -> Call[None]:
        return Call(
            "DELETE",
            self.user(user),
            _none,
            params=_query(purge="true" if purge else None),
            gone_ok=True,
        )

    def list_users(self, limit: int | None, cursor: str | None) -> Call[Page[Budget]]:
        return Call(
            "GET", f"{self.base}/users", _page(Budget, "users"), params=_query(limit=limit, cursor=cursor)
        )

    def reset_user(self, user: str) -> Call[Budget]:
        # A reset repeated after a lost answer would zero spend recorded in between: it is
        # retried only when the service answered that nothing was written (503/429/409).
        return Call("POST", f"{self.user(user)}/reset", _budget, repeatable=False)

    # -- costs

    def record_cost(
        self,
        user: str,
        form: dict[str, Any],
        if_within_budget: bool,
        idempotency_key: str | None,
    ) -> Call[CostResult]:
        body = dict(form)
        if if_within_budget:
            body["if_within_budget"] = True
        return Call(
            "POST", f"{self.user(user)}/cost", _one(CostResult), body, headers=_key_header(idempotency_key)
        )

    def projected_cost(
        self, user: str, model: str, messages: Sequence[Mapping[str, Any]], max_tokens: int | None
    ) -> Call[ProjectedCost]:
        body: dict[str, Any] = {"model": model, "messages": plain(list(messages))}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return Call("POST", f"{self.user(user)}/projected-cost", _one(ProjectedCost), body)

    # -- holds

    def hold(
        self,
        user: str,
        amount: Amount | None,
        model: str | None,
        messages: Sequence[Mapping[str, Any]] | None,
        max_tokens: int | None,
        ttl_seconds: int | None,
        idempotency_key: str | None,
    ) -> Call[Hold]:
        if (amount is None) == (model is None):
            raise ValueError("give either amount, or model with messages (and max_tokens)")
        body: dict[str, Any]
        if amount is not None:
            body = {"amount": money(amount)}
        else:
            if messages is None:
                raise ValueError("messages are required with model")
            body = {"model": model, "messages": plain(list(messages))}
            if max_tokens is not None:
                body["max_tokens"] = max_tokens
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        return Call(
            "POST", f"{self.user(user)}/holds", _one(Hold), body, headers=_key_header(idempotency_key)
        )

    def settle(self, user: str, hold_id: str, form: dict[str, Any]) -> Call[Settlement]:
        # Exactly once by hold id: a repeat answers the first result (replayed), so no key.
        def read(response: httpx.Response) -> Settlement:
            data = _body(response)
            return parse(Settlement, {"hold_id": hold_id, **data} if isinstance(data, dict) else data)

        return Call("POST", f"{self.user(user)}/holds/{segment(hold_id)}/settle", read, form)

    def release(self, user: str, hold_id: str) -> Call[Release]:
        return Call("DELETE", f"{self.user(user)}/holds/{segment(hold_id)}", _release(hold_id))

    # -- levels

    def put_project_budget(
        self,
        total_budget: Amount,
        duration: Duration,
        timezone: str | None,
        default_user_budget: Mapping[str, Any] | None,
    ) -> Call[LevelBudget]:
        body: dict[str, Any] = {"total_budget": money(total_budget), "duration": duration}
        if timezone is not None:
            body["timezone"] = timezone
        if default_user_budget is not None:
            default = dict(default_user_budget)
            default["total_budget"] = money(default["total_budget"])
            body["default_user_budget"] = default
        return Call("PUT", f"{self.base}/budget", _level, body)

    def get_project_budget(self) -> Call[LevelBudget]:
        return Call("GET", f"{self.base}/budget", _level)

    def delete_project_budget(self) -> Call[None]:
        return Call("DELETE", f"{self.base}/budget", _none, gone_ok=True)

    def put_team(
        self, team: str, total_budget: Amount, duration: Duration, timezone: str | None
    ) -> Call[LevelBudget]:
        body: dict[str, Any] = {"total_budget": money(total_budget), "duration": duration}
        if timezone is not None:
            body["timezone"] = timezone
        return Call("PUT", f"{self.base}/teams/{segment(team)}", _level, body)

    def get_team(self, team: str) -> Call[LevelBudget]:
        return Call("GET", f"{self.base}/teams/{segment(team)}", _level)

    def delete_team(self, team: str) -> Call[None]:
        return Call("DELETE", f"{self.base}/teams/{segment(team)}", _none, gone_ok=True)

    def list_teams(self, limit: int | None, cursor: str | None) -> Call[Page[LevelBudget]]:
        return Call(
            "GET",
            f"{self.base}/teams",
            _page(LevelBudget, "teams"),
            params=_query(limit=limit, cursor=cursor),
        )

    # -- history

    def list_periods(self, user: str, limit: int | None, cursor: str | None) -> Call[Page[Period]]:
        return Call(
            "GET",
            f"{self.user(user)}/periods",
            _page(Period, "periods"),
            params=_query(limit=limit, cursor=cursor),
        )

    def spend_report(self, from_: str | None, to: str | None) -> Call[SpendReport]:
        return Call("GET", f"{self.base}/spend", _one(SpendReport), params=_query(from_=from_, to=to))

    def spend_report_csv(self, from_: str | None, to: str | None) -> Call[str]:
        return Call(
            "GET",
            f"{self.base}/spend",
            _text,
            params=_query(from_=from_, to=to),
            headers={"Accept": "text/csv"},
        )

    def adjust(
        self,
        user: str,
        amount: Amount,
        reason: str,
        model: str | None,
        idempotency_key: str | None,
    ) -> Call[Adjustment]:
        body: dict[str, Any] = {"amount": money(amount), "reason": reason}
        if model is not None:
            body["model"] = model
        return Call(
            "POST",
            f"{self.user(user)}/adjustments",
            _one(Adjustment),
            body,
            headers=_key_header(idempotency_key),
        )

    def ledger(self, user: str, limit: int | None, cursor: str | None) -> Call[Page[LedgerEntry]]:
        return Call(
            "GET",
            f"{self.user(user)}/ledger",
            _page(LedgerEntry, "entries", "ledger", "items"),
            params=_query(limit=limit, cursor=cursor),
        )

    # -- prices

    def put_price(self, model: str, fields: Mapping[str, object]) -> Call[Price]:
        return Call("PUT", f"{self.base}/prices/{segment(model)}", _price, price_body(fields))

    def get_price(self, model: str) -> Call[Price]:
        return Call("GET", f"{self.base}/prices/{segment(model)}", _price)

    def delete_price(self, model: str) -> Call[None]:
        return Call("DELETE", f"{self.base}/prices/{segment(model)}", _none, gone_ok=True)

    def list_prices(self) -> Call[list[Price]]:
        def read(response: httpx.Response) -> list[Price]:
            return [parse(Price, item) for item in _body(response).get("prices", [])]

        return Call("GET", f"{self.base}/prices", read)

    # -- litellm hosted protocol

    def litellm_get_budget(self) -> Call[dict[str, dict[str, Any]]]:
        return Call("POST", "/get_budget", _litellm_data, {"project_name": self.project})

    def litellm_set_budget(self, user_dict: Mapping[str, Mapping[str, Any]]) -> Call[SetBudgetResult]:
        # set_budget merges by "keep the larger spend": repeating it changes nothing more.
        body = {"project_name": self.project, "user_dict": plain(dict(user_dict))}
        return Call("POST", "/set_budget", _one(SetBudgetResult), body)
