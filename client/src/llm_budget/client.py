"""``BudgetClient`` (sync) and ``AsyncBudgetClient``: one method per request of the service.

Each public method is declared once, on ``_Client``, as a function that turns its arguments into
the ``Call`` of one described request (``_routes.Endpoint``). ``@operation`` derives both methods
from it: on ``BudgetClient`` the call is sent and its result returned; on ``AsyncBudgetClient``
the method is a coroutine function that does the same with ``httpx.AsyncClient``. Both send with
the one retry plan of ``_transport``. So the two clients have the same methods, signatures and
docstrings, and send the same requests, by construction (a test checks it).

Results are the dataclasses of ``llm_budget.models`` with Decimal money (USD), errors the
exceptions of ``llm_budget.errors``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from types import MethodType, TracebackType
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload
from urllib.parse import urlsplit

import httpx

from llm_budget import _routes as routes
from llm_budget._routes import Amount, Duration, money, plain, price_body, settle_form
from llm_budget._transport import USER_AGENT, Call, RetryPolicy, send, send_async
from llm_budget.guard import AsyncGuard, Guard
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
)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")
H = TypeVar("H", httpx.Client, httpx.AsyncClient)
G = TypeVar("G", Guard, AsyncGuard)
Messages = Sequence[Mapping[str, Any]]

DEFAULT_TIMEOUT = 10.0


def _headers(api_key: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    merged = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    merged.update(headers or {})
    if api_key is not None:
        merged["Authorization"] = f"Bearer {api_key}"
    return merged


# ---- deriving the sync and the async method from one declaration -----------------------------------


def _public(method: Callable[..., Any], declared: Callable[..., Any], returns: object, owner: str) -> None:
    """Give a derived method the declaration's name, docstring and signature (its result type
    ``returns`` in place of the declared ``Call[...]``), as ``help()`` and ``inspect`` show."""
    functools.update_wrapper(method, declared)
    method.__qualname__ = f"{owner}.{declared.__name__}"
    signature = inspect.signature(declared)
    hints = typing.get_type_hints(declared)
    parameters = [
        p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
    ]
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=returns
    )


class _Operation(Generic[P, T]):
    """A public method declared once as ``build(self, ...) -> Call[T]``: on a ``BudgetClient``
    it sends the call and returns ``T``; on an ``AsyncBudgetClient`` it is a coroutine function
    returning ``T``. The overloads of ``__get__`` give each client its own static type."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        (result,) = typing.get_args(typing.get_type_hints(build)["return"])

        def sync_method(client: BudgetClient, /, *args: Any, **kwargs: Any) -> Any:
            return send(client.http, build(client, *args, **kwargs), client.retry)

        async def async_method(client: AsyncBudgetClient, /, *args: Any, **kwargs: Any) -> Any:
            return await send_async(client.http, build(client, *args, **kwargs), client.retry)

        _public(sync_method, build, result, "BudgetClient")
        _public(async_method, build, result, "AsyncBudgetClient")
        self.methods: dict[bool, Callable[..., Any]] = {False: sync_method, True: async_method}

    @overload
    def __get__(
        self, client: None, owner: type[BudgetClient]
    ) -> Callable[Concatenate[BudgetClient, P], T]: ...

    @overload
    def __get__(
        self, client: None, owner: type[AsyncBudgetClient]
    ) -> Callable[Concatenate[AsyncBudgetClient, P], Coroutine[Any, Any, T]]: ...

    @overload
    def __get__(self, client: BudgetClient, owner: object) -> Callable[P, T]: ...

    @overload
    def __get__(self, client: AsyncBudgetClient, owner: object) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, client: object, owner: Any) -> Any:
        if not hasattr(owner, "_asynchronous"):  # read on _Client itself: the declaration
            return self
        method = self.methods[owner._asynchronous]
        return method if client is None else MethodType(method, client)


def operation(build: Callable[Concatenate[Any, P], Call[T]]) -> _Operation[P, T]:
    """Declare a public method of both clients by the ``Call`` its arguments make."""
    return _Operation(build)


class _SyncPages(Protocol[T_co]):
    def __call__(self, page_size: int | None = None) -> Iterator[T_co]: ...


class _AsyncPages(Protocol[T_co]):
    def __call__(self, page_size: int | None = None) -> AsyncIterator[T_co]: ...


class _Pages(Generic[T]):
    """``iter_*``: every item of a paged listing (``list(limit, cursor) -> Page[T]``), page by
    page; an iterator on ``BudgetClient``, an async iterator on ``AsyncBudgetClient``."""

    def __init__(self, listing: _Operation[[int | None, str | None], Page[T]], doc: str) -> None:
        build = listing.build

        def sync_pages(client: BudgetClient, page_size: int | None = None) -> Iterator[T]:
            cursor: str | None = None
            while True:
                page = send(client.http, build(client, page_size, cursor), client.retry)
                yield from page.items
                if not page.next_cursor:
                    return
                cursor = page.next_cursor

        async def async_pages(client: AsyncBudgetClient, page_size: int | None = None) -> AsyncIterator[T]:
            cursor: str | None = None
            while True:
                page = await send_async(client.http, build(client, page_size, cursor), client.retry)
                for item in page.items:
                    yield item
                if not page.next_cursor:
                    return
                cursor = page.next_cursor

        self.methods: dict[bool, Callable[..., Any]] = {False: sync_pages, True: async_pages}
        (page,) = typing.get_args(typing.get_type_hints(build)["return"])
        (item,) = typing.get_args(page)
        iterators: dict[bool, object] = {False: Iterator[item], True: AsyncIterator[item]}  # type: ignore[valid-type]
        for asynchronous, method in self.methods.items():
            method.__doc__ = doc
            method.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
                [
                    inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                    inspect.Parameter(
                        "page_size",
                        inspect.Parameter.POSITIONAL_OR_KEYWORD,
                        default=None,
                        annotation=int | None,
                    ),
                ],
                return_annotation=iterators[asynchronous],
            )

    def __set_name__(self, owner: type[Any], name: str) -> None:
        for method in self.methods.values():
            method.__name__ = name
        self.methods[False].__qualname__ = f"BudgetClient.{name}"
        self.methods[True].__qualname__ = f"AsyncBudgetClient.{name}"

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Callable[..., Any]: ...

    @overload
    def __get__(self, client: BudgetClient, owner: object) -> _SyncPages[T]: ...

    @overload
    def __get__(self, client: AsyncBudgetClient, owner: object) -> _AsyncPages[T]: ...

    def __get__(self, client: object, owner: Any) -> Any:
        if not hasattr(owner, "_asynchronous"):  # read on _Client itself: the declaration
            return self
        method = self.methods[owner._asynchronous]
        return method if client is None else MethodType(method, client)


# ---- the methods, declared once ----------------------------------------------------------------------


class _Client(Generic[H, G]):
    """What both clients share: construction and every request method (see the module)."""

    _asynchronous: ClassVar[bool]
    _http_type: Callable[..., H]
    _guard_type: Callable[..., G]

    def __init__(
        self,
        api_base: str,
        api_key: str | None = None,
        *,
        project: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        http_client: H | None = None,
    ) -> None:
        if not api_base:
            raise ValueError("api_base is required, e.g. http://127.0.0.1:3000 or the stack's ApiUrl")
        parts = urlsplit(api_base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # Else every call is retried and ends as "no answer from the service", which misleads.
            raise ValueError(
                f"api_base must be an http(s) URL, e.g. http://127.0.0.1:3000 or the stack's ApiUrl;"
                f" got {api_base!r}"
            )
        self.api_base = api_base
        self.project = project
        self.retry = retry or RetryPolicy()
        self._api_key = api_key
        self._owns_http = http_client is None
        self.http: H = http_client or self._http_type(
            base_url=api_base, headers=_headers(api_key, headers), timeout=timeout
        )

    def for_project(self, project: str) -> Self:
        """A client for ``project`` sharing this one's connections (close only this one)."""
        return type(self)(
            self.api_base, self._api_key, project=project, retry=self.retry, http_client=self.http
        )

    # ---- user budgets

    @operation
    def put_user(
        self,
        user: str,
        total_budget: Amount,
        duration: Duration = None,
        *,
        timezone: str | None = None,
        team: str | None = None,
    ) -> Call[Budget]:
        """Create or replace ``user``'s budget: ``total_budget`` USD per ``duration`` (``daily``,
        ``weekly``, ``monthly``, ``yearly``: calendar periods in UTC or the IANA ``timezone``;
        None: no period), optionally in ``team``. Spend of the current period is kept.
        Returns the ``Budget`` record; ``Budget.created`` says whether it was new."""
        body: routes.PutUserBody = {"total_budget": money(total_budget), "duration": duration}
        if timezone is not None:
            body["timezone"] = timezone
        if team is not None:
            body["team"] = team
        return routes.PUT_USER.call(project=self.project, user=user, body=body)

    @operation
    def get_user(self, user: str) -> Call[Budget]:
        """``user``'s budget record: ``total_budget``, ``current_cost``, ``remaining``, ``held``,
        ``available`` (USD), ``model_cost`` ({model: USD}), the period (``period_start``,
        ``reset_at``, UTC datetimes). Raises BudgetNotFound."""
        return routes.GET_USER.call(project=self.project, user=user)

    @operation
    def delete_user(self, user: str, *, purge: bool = False) -> Call[None]:
        """Remove ``user``'s budget (``purge``: its history and ledger too); returns None.
        Raises BudgetNotFound."""
        query = {"purge": "true" if purge else None}
        return routes.DELETE_USER.call(project=self.project, user=user, query=query)

    @operation
    def list_users(self, limit: int | None = None, cursor: str | None = None) -> Call[Page[Budget]]:
        """One page of the project's budgets (``limit`` 1-1000, service default 100): ``Page``
        with ``items`` and ``next_cursor`` (None on the last page)."""
        query = {"limit": None if limit is None else str(limit), "cursor": cursor}
        return routes.LIST_USERS.call(project=self.project, query=query)

    iter_users = _Pages(list_users, "Every budget of the project, page by page (``page_size`` per request).")

    @operation
    def reset_user(self, user: str) -> Call[Budget]:
        """Zero ``user``'s spend now and start a new period; returns the ``Budget`` record.
        Not repeated when its answer is lost (a second reset could zero spend recorded in
        between). Raises BudgetNotFound."""
        return routes.RESET_USER.call(project=self.project, user=user)

    # ---- costs

    @operation
    def record_cost(
        self,
        user: str,
        *,
        model: str | None = None,
        usage: object = None,
        completion: object = None,
        input_text: str | None = None,
        output_text: str | None = None,
        cost: Amount | None = None,
        if_within_budget: bool = False,
        idempotency_key: str | None = None,
    ) -> Call[CostResult]:
        """Record spend that happened, in one of four forms: ``usage`` (token counts, with
        ``model``), a ``completion`` (litellm ModelResponse, OpenAI object or dict: only its model
        and usage are sent), ``input_text``/``output_text`` (with ``model``, counted by the
        service), or ``cost`` already priced (USD, with ``model``). Charged once per
        ``idempotency_key`` (one is made if not given, so the client's retries are charged once).
        ``if_within_budget``: charge only if it fits. Returns ``CostResult`` (``cost`` USD,
        ``tokens``, ``replayed``). Raises ValueError for none or several forms, BudgetExceeded,
        UnknownModel (pass ``cost``), BudgetNotFound, IdempotencyKeyReused."""
        body = settle_form(
            model=model,
            usage=usage,
            completion=completion,
            input_text=input_text,
            output_text=output_text,
            cost=cost,
        )
        if if_within_budget:
            body["if_within_budget"] = True
        return routes.RECORD_COST.call(
            project=self.project, user=user, body=body, idempotency_key=idempotency_key
        )

    @operation
    def projected_cost(
        self, user: str, *, model: str, messages: Messages, max_tokens: int | None = None
    ) -> Call[ProjectedCost]:
        """What a chat call would cost (prompt tokens, plus ``max_tokens`` of output; USD) and
        whether it fits ``user``'s budget (``within_budget``). Writes nothing. Raises
        BudgetNotFound, UnknownModel."""
        body: routes.ProjectedCostBody = {"model": model, "messages": plain(list(messages))}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return routes.PROJECTED_COST.call(project=self.project, user=user, body=body)

    # ---- holds

    @operation
    def hold(
        self,
        user: str,
        *,
        amount: Amount | None = None,
        model: str | None = None,
        messages: Messages | None = None,
        max_tokens: int | None = None,
        ttl_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> Call[Hold]:
        """Reserve ``amount`` USD, or the projected cost of a call (``model``, ``messages``,
        ``max_tokens``), against every level of ``user``'s budget, for ``ttl_seconds`` (service
        default 600). Returns the ``Hold`` (``hold_id``, ``amount`` USD, ``expires_at``). Raises
        ValueError for neither or both, BudgetExceeded (naming the refusing levels; nothing
        written), BudgetNotFound, UnknownModel, IdempotencyKeyReused."""
        if (amount is None) == (model is None):
            raise ValueError("give either amount, or model with messages (and max_tokens)")
        body: routes.HoldBody
        if amount is not None:
            body = {"amount": money(amount)}
        else:
            if messages is None:
                raise ValueError("messages are required with model")
            body = {"model": str(model), "messages": plain(list(messages))}
            if max_tokens is not None:
                body["max_tokens"] = max_tokens
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        return routes.HOLD_CREATE.call(
            project=self.project, user=user, body=body, idempotency_key=idempotency_key
        )

    @operation
    def settle(
        self,
        user: str,
        hold_id: str,
        response: object = None,
        *,
        model: str | None = None,
        usage: object = None,
        completion: object = None,
        input_text: str | None = None,
        output_text: str | None = None,
        cost: Amount | None = None,
        output_tokens: int | None = None,
    ) -> Call[Settlement]:
        """Charge the call's actual cost against the hold (in full, even above it) and free the
        rest, exactly once. ``response``: a completion, or a bare usage priced as ``model``; or
        give one cost form as for ``record_cost``. ``output_tokens``: the call's output tokens,
        which teach the service's hold sizing when the form has no usage (``cost``). Returns the
        ``Settlement`` (``cost`` and ``released`` USD). Raises HoldNotFound, UnknownModel."""
        body = settle_form(
            response,
            model=model,
            usage=usage,
            completion=completion,
            input_text=input_text,
            output_text=output_text,
            cost=cost,
        )
        if output_tokens is not None and "usage" not in body and "completion" not in body:
            body = {**body, "output_tokens": int(output_tokens)}  # type: ignore[typeddict-unknown-key]
        return routes.HOLD_SETTLE.call(project=self.project, user=user, hold_id=hold_id, body=body)

    @operation
    def release(self, user: str, hold_id: str) -> Call[Release]:
        """Release a hold unused; repeating is harmless. Returns the ``Release``. Raises
        HoldNotFound."""
        return routes.HOLD_RELEASE.call(project=self.project, user=user, hold_id=hold_id)

    def guard(
        self,
        user: str,
        *,
        model: str | None = None,
        messages: Messages | None = None,
        max_tokens: int | None = None,
        amount: Amount | None = None,
        ttl_seconds: int | None = None,
    ) -> G:
        """A context manager that holds before its block and settles after: a ``Guard`` (sync
        ``with``) or an ``AsyncGuard`` (``async with``); see ``llm_budget.guard``."""
        return self._guard_type(
            self,
            user,
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            amount=amount,
            ttl_seconds=ttl_seconds,
        )

    # ---- levels

    @operation
    def put_project_budget(
        self,
        total_budget: Amount,
        duration: Duration = None,
        *,
        timezone: str | None = None,
        default_user_budget: Mapping[str, Any] | None = None,
    ) -> Call[LevelBudget]:
        """Set the project-wide cap (``total_budget`` USD per ``duration``) and, optionally, the
        budget a new user gets (``{"total_budget", "duration", "timezone"}``). Returns the
        ``LevelBudget``; ``created`` says whether it was new."""
        body: routes.LevelBody = {"total_budget": money(total_budget), "duration": duration}
        if timezone is not None:
            body["timezone"] = timezone
        if default_user_budget is not None:
            default = typing.cast(routes.DefaultUserBody, dict(default_user_budget))
            default["total_budget"] = money(default_user_budget["total_budget"])
            body["default_user_budget"] = default
        return routes.PUT_PROJECT_BUDGET.call(project=self.project, body=body)

    @operation
    def get_project_budget(self) -> Call[LevelBudget]:
        """The project-wide cap and its spend (``LevelBudget``, USD). Raises BudgetNotFound when
        the project has none."""
        return routes.GET_PROJECT_BUDGET.call(project=self.project)

    @operation
    def delete_project_budget(self) -> Call[None]:
        """Remove the project-wide cap; returns None. Raises BudgetNotFound."""
        return routes.DELETE_PROJECT_BUDGET.call(project=self.project)

    @operation
    def put_team(
        self,
        team: str,
        total_budget: Amount,
        duration: Duration = None,
        *,
        timezone: str | None = None,
    ) -> Call[LevelBudget]:
        """Create or replace ``team``'s cap (``total_budget`` USD per ``duration``); users join
        with ``put_user(..., team=team)``. Returns the ``LevelBudget``."""
        body: routes.LevelBody = {"total_budget": money(total_budget), "duration": duration}
        if timezone is not None:
            body["timezone"] = timezone
        return routes.PUT_TEAM.call(project=self.project, team=team, body=body)

    @operation
    def get_team(self, team: str) -> Call[LevelBudget]:
        """``team``'s cap and its spend (``LevelBudget``, USD). Raises BudgetNotFound."""
        return routes.GET_TEAM.call(project=self.project, team=team)

    @operation
    def delete_team(self, team: str) -> Call[None]:
        """Remove ``team``'s cap; returns None. Raises BudgetNotFound."""
        return routes.DELETE_TEAM.call(project=self.project, team=team)

    @operation
    def list_teams(self, limit: int | None = None, cursor: str | None = None) -> Call[Page[LevelBudget]]:
        """One page of the project's teams (``Page`` of ``LevelBudget``, ``next_cursor``)."""
        query = {"limit": None if limit is None else str(limit), "cursor": cursor}
        return routes.LIST_TEAMS.call(project=self.project, query=query)

    # ---- history

    @operation
    def list_periods(
        self, user: str, limit: int | None = None, cursor: str | None = None
    ) -> Call[Page[Period]]:
        """``user``'s current period, then closed ones newest first (``Page`` of ``Period``, spend
        in USD). Raises BudgetNotFound."""
        query = {"limit": None if limit is None else str(limit), "cursor": cursor}
        return routes.LIST_PERIODS.call(project=self.project, user=user, query=query)

    @operation
    def spend_report(self, from_: str | None = None, to: str | None = None) -> Call[SpendReport]:
        """Spend per user and per model (USD) over the periods that started in [``from_``,
        ``to``) (ISO 8601 times)."""
        return routes.SPEND_REPORT.call(project=self.project, query={"from": from_, "to": to})

    @operation
    def spend_report_csv(self, from_: str | None = None, to: str | None = None) -> Call[str]:
        """The spend report (see ``spend_report``) as CSV text."""
        return routes.SPEND_REPORT_CSV.call(project=self.project, query={"from": from_, "to": to})

    @operation
    def adjust(
        self,
        user: str,
        amount: Amount,
        reason: str,
        *,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> Call[Adjustment]:
        """Debit (positive ``amount``, USD) or credit (negative) ``user``'s spend, with a
        ``reason`` kept in the audit ledger; applied once per ``idempotency_key`` (one is made if
        not given). Returns the ``Adjustment``. Raises BudgetNotFound, IdempotencyKeyReused."""
        body: routes.AdjustmentBody = {"amount": money(amount), "reason": reason}
        if model is not None:
            body["model"] = model
        return routes.ADJUST.call(project=self.project, user=user, body=body, idempotency_key=idempotency_key)

    @operation
    def ledger(
        self, user: str, limit: int | None = None, cursor: str | None = None
    ) -> Call[Page[LedgerEntry]]:
        """``user``'s audit ledger: adjustments, resets, settings changes, deletes (``Page`` of
        ``LedgerEntry``). Raises BudgetNotFound."""
        query = {"limit": None if limit is None else str(limit), "cursor": cursor}
        return routes.LEDGER.call(project=self.project, user=user, query=query)

    # ---- prices

    @operation
    def put_price(self, /, model: str, *, input: Amount, output: Amount, **fields: object) -> Call[Price]:
        """Set this project's own price for ``model`` (admin): ``input`` and ``output`` in USD
        per token, and any other field of the shipped table (``cache_read``, ``cache_creation``,
        ``reasoning``, ``input_audio``, ..., ``tiers=[{"above": tokens, "input": ...}]``,
        ``web_search={"low": ...}`` USD per request, ``free="why"`` for a 0/0 price,
        ``provider``). It wins over the table for this project; ``Price.created`` says whether
        it was new."""
        body = price_body({"input": input, "output": output, **fields})
        return routes.PUT_PRICE.call(project=self.project, model=model, body=body)

    @operation
    def get_price(self, model: str) -> Call[Price]:
        """This project's own price for ``model`` (``Price``, USD per token). Raises NotFound."""
        return routes.GET_PRICE.call(project=self.project, model=model)

    @operation
    def delete_price(self, model: str) -> Call[None]:
        """Remove this project's price for ``model``: the shipped table prices it again. Raises
        NotFound."""
        return routes.DELETE_PRICE.call(project=self.project, model=model)

    @operation
    def list_prices(self) -> Call[list[Price]]:
        """Every price this project has set: a list of ``Price`` (rates in USD per token)."""
        return routes.LIST_PRICES.call(project=self.project)

    # ---- litellm hosted protocol

    @operation
    def litellm_get_budget(self) -> Call[dict[str, dict[str, Any]]]:
        """``POST /get_budget``: every user's entry in litellm's shape ({} for a new project):
        ``total_budget``, ``current_cost``, ``model_cost`` (USD); with a period ``duration``
        (days), ``created_at`` and ``last_updated_at`` (epoch seconds)."""
        return routes.LITELLM_GET_BUDGET.call(body={"project_name": self.project})

    @operation
    def litellm_set_budget(self, user_dict: Mapping[str, Mapping[str, Any]]) -> Call[SetBudgetResult]:
        """``POST /set_budget``: merge litellm entries (shape as ``litellm_get_budget``; the
        larger spend wins per field, settings replace). Returns the ``SetBudgetResult``."""
        body: routes.SetBudgetBody = {"project_name": self.project, "user_dict": plain(dict(user_dict))}
        return routes.LITELLM_SET_BUDGET.call(body=body)


class BudgetClient(_Client[httpx.Client, Guard]):
    """Synchronous client for one project of the budget service.

    ``api_base``: the service's URL (``make dev``'s http://127.0.0.1:3000, or the stack's
    ``ApiUrl``); ``api_key``: a project key (sent as ``Authorization: Bearer``); ``project``: the
    project every call is about (``for_project`` gives a client for another one). ``headers`` are
    added to every request; ``timeout`` is seconds per try; ``retry`` the retry policy;
    ``http_client`` an ``httpx.Client`` to use instead of the client's own (its base URL and
    headers are left as they are). Raises ValueError for an ``api_base`` that is not an http(s)
    URL.

    Every request method may raise, besides the errors its docstring names, ValidationFailed
    (a 4xx for the input; nothing written), AuthenticationFailed, PermissionDenied, and
    Unavailable (after the client's retries).

    Thread-safe (httpx's client is); close it, or use it as a context manager.
    """

    _asynchronous = False
    _http_type = httpx.Client
    _guard_type = Guard

    def close(self) -> None:
        """Close the connections, unless ``http_client`` was given (its owner closes it)."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncBudgetClient(_Client[httpx.AsyncClient, AsyncGuard]):
    """``BudgetClient`` for asyncio: the same methods, awaited (``iter_*`` are async iterators,
    ``guard`` an async context manager). Use it from one event loop; close it with
    ``await client.aclose()`` or ``async with``."""

    _asynchronous = True
    _http_type = httpx.AsyncClient
    _guard_type = AsyncGuard

    async def aclose(self) -> None:
        """Close the connections, unless ``http_client`` was given (its owner closes it)."""
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
