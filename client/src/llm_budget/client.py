"""``BudgetClient`` (sync) and ``AsyncBudgetClient``: one method per route of the service.

Both send the same calls (``_routes.Routes``) with the same retry rule (``_transport``); results
are the dataclasses of ``llm_budget.models`` with Decimal money (USD), errors the exceptions of
``llm_budget.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import httpx

from llm_budget._routes import Amount, Duration, Routes, settle_form
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
Messages = Sequence[Mapping[str, Any]]

DEFAULT_TIMEOUT = 10.0


def _headers(api_key: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    merged = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    merged.update(headers or {})
    if api_key is not None:
        merged["Authorization"] = f"Bearer {api_key}"
    return merged


class _Base:
    def __init__(self, api_base: str, project: str, retry: RetryPolicy | None) -> None:
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
        self._routes = Routes(project)


class BudgetClient(_Base):
    """Synchronous client for one project of the budget service.

    ``api_base``: the service's URL (``make dev``'s http://127.0.0.1:3000, or the stack's
    ``ApiUrl``); ``api_key``: a project key (sent as ``Authorization: Bearer``); ``project``: the
    project every call is about (``for_project`` gives a client for another one). ``headers`` are
    added to every request; ``timeout`` is seconds per try; ``retry`` the retry policy;
    ``http_client`` an ``httpx.Client`` to use instead of the client's own (its base URL and
    headers are left as they are).

    Thread-safe (httpx's client is); close it, or use it as a context manager.
    """

    def __init__(
        self,
        api_base: str,
        api_key: str | None = None,
        *,
        project: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(api_base, project, retry)
        self._api_key = api_key
        self._extra_headers = dict(headers or {})
        self._timeout = timeout
        self._owns_http = http_client is None
        self.http = http_client or httpx.Client(
            base_url=api_base, headers=_headers(api_key, headers), timeout=timeout
        )

    def for_project(self, project: str) -> BudgetClient:
        """A client for ``project`` sharing this one's connections (close only this one)."""
        other = BudgetClient(
            self.api_base, self._api_key, project=project, retry=self.retry, http_client=self.http
        )
        return other

    def close(self) -> None:
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

    def _send(self, call: Call[T]) -> T:
        return send(self.http, call, self.retry)

    # ---- user budgets

    def put_user(
        self,
        user: str,
        total_budget: Amount,
        duration: Duration = None,
        *,
        timezone: str | None = None,
        team: str | None = None,
    ) -> Budget:
        """Create or replace ``user``'s budget: ``total_budget`` USD per ``duration`` (``daily``,
        ``weekly``, ``monthly``, ``yearly``: calendar periods in UTC or ``timezone``; None: no
        period), optionally in ``team``. Spend of the current period is kept. ``Budget.created``
        says whether it was new."""
        return self._send(self._routes.put_user(user, total_budget, duration, timezone, team))

    def get_user(self, user: str) -> Budget:
        """``user``'s budget record. Raises BudgetNotFound."""
        return self._send(self._routes.get_user(user))

    def delete_user(self, user: str, *, purge: bool = False) -> None:
        """Remove ``user``'s budget (``purge``: its history and ledger too). Raises
        BudgetNotFound."""
        self._send(self._routes.delete_user(user, purge))

    def list_users(self, limit: int | None = None, cursor: str | None = None) -> Page[Budget]:
        """One page of the project's budgets (``limit`` 1-1000, service default 100)."""
        return self._send(self._routes.list_users(limit, cursor))

    def iter_users(self, page_size: int | None = None) -> Iterator[Budget]:
        """Every budget of the project, page by page."""
        cursor: str | None = None
        while True:
            page = self.list_users(page_size, cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def reset_user(self, user: str) -> Budget:
        """Zero ``user``'s spend now and start a new period. Raises BudgetNotFound."""
        return self._send(self._routes.reset_user(user))

    # ---- costs

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
    ) -> CostResult:
        """Record spend that happened, in one of four forms: ``usage`` (with ``model``), a
        ``completion`` (litellm ModelResponse, OpenAI object or dict: only its model and usage are
        sent), ``input_text``/``output_text`` (with ``model``, counted by the service), or ``cost``
        already priced (USD, with ``model``). Charged once per ``idempotency_key`` (one is made if
        not given, so the client's retries are charged once). ``if_within_budget``: charge only if
        it fits, else BudgetExceeded. Raises UnknownModel (pass ``cost``), BudgetNotFound."""
        form = settle_form(
            model=model,
            usage=usage,
            completion=completion,
            input_text=input_text,
            output_text=output_text,
            cost=cost,
        )
        return self._send(self._routes.record_cost(user, form, if_within_budget, idempotency_key))

    def projected_cost(
        self, user: str, *, model: str, messages: Messages, max_tokens: int | None = None
    ) -> ProjectedCost:
        """What a chat call would cost (prompt tokens, plus ``max_tokens`` of output) and whether
        it fits ``user``'s budget. Writes nothing."""
        return self._send(self._routes.projected_cost(user, model, messages, max_tokens))

    # ---- holds

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
    ) -> Hold:
        """Reserve ``amount`` USD, or the projected cost of a call (``model``, ``messages``,
        ``max_tokens``), against every level of ``user``'s budget, for ``ttl_seconds`` (service
        default 600). Raises BudgetExceeded (naming the refusing levels; nothing written)."""
        return self._send(
            self._routes.hold(user, amount, model, messages, max_tokens, ttl_seconds, idempotency_key)
        )

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
    ) -> Settlement:
        """Charge the call's actual cost against the hold (in full, even above it) and free the
        rest, exactly once. ``response``: a completion, or a bare usage priced as ``model``; or
        give one cost form as for ``record_cost``."""
        form = settle_form(
            response,
            model=model,
            usage=usage,
            completion=completion,
            input_text=input_text,
            output_text=output_text,
            cost=cost,
        )
        return self._send(self._routes.settle(user, hold_id, form))

    def release(self, user: str, hold_id: str) -> Release:
        """Release a hold unused; repeating is harmless."""
        return self._send(self._routes.release(user, hold_id))

    def guard(
        self,
        user: str,
        *,
        model: str | None = None,
        messages: Messages | None = None,
        max_tokens: int | None = None,
        amount: Amount | None = None,
        ttl_seconds: int | None = None,
    ) -> Guard:
        """A context manager that holds before its block and settles after (see ``Guard``)."""
        return Guard(
            self,
            user,
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            amount=amount,
            ttl_seconds=ttl_seconds,
        )

    # ---- levels

    def put_project_budget(
        self,
        total_budget: Amount,
        duration: Duration = None,
        *,
        timezone: str | None = None,
        default_user_budget: Mapping[str, Any] | None = None,
    ) -> LevelBudget:
        """Set the project-wide cap (USD per ``duration``) and, optionally, the budget a new user
        gets (``{"total_budget", "duration", "timezone"}``)."""
        return self._send(
            self._routes.put_project_budget(total_budget, duration, timezone, default_user_budget)
        )

    def get_project_budget(self) -> LevelBudget:
        return self._send(self._routes.get_project_budget())

    def delete_project_budget(self) -> None:
        self._send(self._routes.delete_project_budget())

    def put_team(
        self,
        team: str,
        total_budget: Amount,
        duration: Duration = None,
        *,
        timezone: str | None = None,
    ) -> LevelBudget:
        """Create or replace ``team``'s cap (USD per ``duration``); users join with
        ``put_user(..., team=team)``."""
        return self._send(self._routes.put_team(team, total_budget, duration, timezone))

    def get_team(self, team: str) -> LevelBudget:
        return self._send(self._routes.get_team(team))

    def delete_team(self, team: str) -> None:
        self._send(self._routes.delete_team(team))

    def list_teams(self, limit: int | None = None, cursor: str | None = None) -> Page[LevelBudget]:
        return self._send(self._routes.list_teams(limit, cursor))

    # ---- history

    def list_periods(self, user: str, limit: int | None = None, cursor: str | None = None) -> Page[Period]:
        """``user``'s current period, then closed ones newest first."""
        return self._send(self._routes.list_periods(user, limit, cursor))

    def spend_report(self, from_: str | None = None, to: str | None = None) -> SpendReport:
        """Spend per user and per model over the periods that started in [``from_``, ``to``)
        (ISO 8601)."""
        return self._send(self._routes.spend_report(from_, to))

    def spend_report_csv(self, from_: str | None = None, to: str | None = None) -> str:
        """The spend report as CSV text."""
        return self._send(self._routes.spend_report_csv(from_, to))

    def adjust(
        self,
        user: str,
        amount: Amount,
        reason: str,
        *,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> Adjustment:
        """Debit (positive ``amount``, USD) or credit (negative) ``user``'s spend, with a
        ``reason`` kept in the audit ledger; applied once per ``idempotency_key``."""
        return self._send(self._routes.adjust(user, amount, reason, model, idempotency_key))

    def ledger(self, user: str, limit: int | None = None, cursor: str | None = None) -> Page[LedgerEntry]:
        """``user``'s audit ledger: adjustments, resets, settings changes, deletes."""
        return self._send(self._routes.ledger(user, limit, cursor))

    # ---- prices

    def put_price(self, model: str, *, input: Amount, output: Amount, **fields: object) -> Price:
        """Set this project's own price for ``model`` (admin): ``input`` and ``output`` in USD
        per token, and any other field of the shipped table (``cache_read``, ``cache_creation``,
        ``reasoning``, ``input_audio``, ..., ``tiers=[{"above": tokens, "input": ...}]``,
        ``web_search={"low": ...}`` USD per request, ``free="why"`` for a 0/0 price,
        ``provider``). It wins over the table for this project; ``Price.created`` says whether
        it was new."""
        return self._send(self._routes.put_price(model, {"input": input, "output": output, **fields}))

    def get_price(self, model: str) -> Price:
        """This project's own price for ``model``. Raises NotFound."""
        return self._send(self._routes.get_price(model))

    def delete_price(self, model: str) -> None:
        """Remove this project's price for ``model``: the shipped table prices it again."""
        self._send(self._routes.delete_price(model))

    def list_prices(self) -> list[Price]:
        """Every price this project has set."""
        return self._send(self._routes.list_prices())

    # ---- litellm hosted protocol

    def litellm_get_budget(self) -> dict[str, dict[str, Any]]:
        """``POST /get_budget``: every user's entry in litellm's shape ({} for a new project)."""
        return self._send(self._routes.litellm_get_budget())

    def litellm_set_budget(self, user_dict: Mapping[str, Mapping[str, Any]]) -> SetBudgetResult:
        """``POST /set_budget``: merge litellm entries (the larger spend wins per field)."""
        return self._send(self._routes.litellm_set_budget(user_dict))


class AsyncBudgetClient(_Base):
    """``BudgetClient`` for asyncio: the same methods, awaited (``iter_*`` are async iterators,
    ``guard`` an async context manager). Use it from one event loop; close it with
    ``await client.aclose()`` or ``async with``."""

    def __init__(
        self,
        api_base: str,
        api_key: str | None = None,
        *,
        project: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(api_base, project, retry)
        self._api_key = api_key
        self._owns_http = http_client is None
        self.http = http_client or httpx.AsyncClient(
            base_url=api_base, headers=_headers(api_key, headers), timeout=timeout
        )

    def for_project(self, project: str) -> AsyncBudgetClient:
        """A client for ``project`` sharing this one's connections (close only this one)."""
        return AsyncBudgetClient(
            self.api_base, self._api_key, project=project, retry=self.retry, http_client=self.http
        )

    async def aclose(self) -> None:
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

    async def _send(self, call: Call[T]) -> T:
        return await send_async(self.http, call, self.retry)

    # ---- user budgets

    async def put_user(
        self,
        user: str,
        total_budget: Amount,
        duration: Duration = None,
        *,
        timezone: str | None = None,
        team: str | None = None,
    ) -> Budget:
        """See ``BudgetClient.put_user``."""
        return await self._send(self._routes.put_user(user, total_budget, duration, timezone, team))

    async def get_user(self, user: str) -> Budget:
        return await self._send(self._routes.get_user(user))

    async def delete_user(self, user: str, *, purge: bool = False) -> None:
        await self._send(self._routes.delete_user(user, purge))

    async def list_users(self, limit: int | None = None, cursor: str | None = None) -> Page[Budget]:
        return await self._send(self._routes.list_users(limit, cursor))

    async def iter_users(self, page_size: int | None = None) -> AsyncIterator[Budget]:
        cursor: str | None = None
        while True:
            page = await self.list_users(page_size, cursor)
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def reset_user(self, user: str) -> Budget:
        return await self._send(self._routes.reset_user(user))

    # ---- costs

    async def record_cost(
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
    ) -> CostResult:
        """See ``BudgetClient.record_cost``."""
        form = settle_form(
            model=model,
            usage=usage,
            completion=completion,
            input_text=input_text,
            output_text=output_text,
            cost=cost,
        )
        return await self._send(self._routes.record_cost(user, form, if_within_budget, idempotency_key))

    async def projected_cost(
        self, user: str, *, model: str, messages: Messages, max_tokens: int | None = None
    ) -> ProjectedCost:
        return await self._send(self._routes.projected_cost(user, model, messages, max_tokens))

    # ---- holds

    async def hold(
        self,
        user: str,
        *,
        amount: Amount | None = None,
        model: str | None = None,
        messages: Messages | None = None,
        max_tokens: int | None = None,
        ttl_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> Hold:
        """See ``BudgetClient.hold``."""
        return await self._send(
            self._routes.hold(user, amount, model, messages, max_tokens, ttl_seconds, idempotency_key)
        )

    async def settle(
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
    ) -> Settlement:
        """See ``BudgetClient.settle``."""
        form = settle_form(
            response,
            model=model,
            usage=usage,
            completion=completion,
            input_text=input_text,
            output_text=output_text,
            cost=cost,
        )
        return await self._send(self._routes.settle(user, hold_id, form))

    async def release(self, user: str, hold_id: str) -> Release:
        return await self._send(self._routes.release(user, hold_id))

    def guard(
        self,
        user: str,
        *,
        model: str | None = None,
        messages: Messages | None = None,
        max_tokens: int | None = None,
        amount: Amount | None = None,
        ttl_seconds: int | None = None,
    ) -> AsyncGuard:
        """An async context manager that holds before its block and settles after (see
        ``AsyncGuard``)."""
        return AsyncGuard(
            self,
            user,
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            amount=amount,
            ttl_seconds=ttl_seconds,
        )

    # ---- levels

    async def put_project_budget(
        self,
        total_budget: Amount,
        duration: Duration = None,
        *,
        timezone: str | None = None,
        default_user_budget: Mapping[str, Any] | None = None,
    ) -> LevelBudget:
        return await self._send(
            self._routes.put_project_budget(total_budget, duration, timezone, default_user_budget)
        )

    async def get_project_budget(self) -> LevelBudget:
        return await self._send(self._routes.get_project_budget())

    async def delete_project_budget(self) -> None:
        await self._send(self._routes.delete_project_budget())

    async def put_team(
        self,
        team: str,
        total_budget: Amount,
        duration: Duration = None,
        *,
        timezone: str | None = None,
    ) -> LevelBudget:
        return await self._send(self._routes.put_team(team, total_budget, duration, timezone))

    async def get_team(self, team: str) -> LevelBudget:
        return await self._send(self._routes.get_team(team))

    async def delete_team(self, team: str) -> None:
        await self._send(self._routes.delete_team(team))

    async def list_teams(self, limit: int | None = None, cursor: str | None = None) -> Page[LevelBudget]:
        return await self._send(self._routes.list_teams(limit, cursor))

    # ---- history

    async def list_periods(
        self, user: str, limit: int | None = None, cursor: str | None = None
    ) -> Page[Period]:
        return await self._send(self._routes.list_periods(user, limit, cursor))

    async def spend_report(self, from_: str | None = None, to: str | None = None) -> SpendReport:
        return await self._send(self._routes.spend_report(from_, to))

    async def spend_report_csv(self, from_: str | None = None, to: str | None = None) -> str:
        return await self._send(self._routes.spend_report_csv(from_, to))

    async def adjust(
        self,
        user: str,
        amount: Amount,
        reason: str,
        *,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> Adjustment:
        return await self._send(self._routes.adjust(user, amount, reason, model, idempotency_key))

    async def ledger(
        self, user: str, limit: int | None = None, cursor: str | None = None
    ) -> Page[LedgerEntry]:
        return await self._send(self._routes.ledger(user, limit, cursor))

    # ---- prices

    async def put_price(self, model: str, *, input: Amount, output: Amount, **fields: object) -> Price:
        """See ``BudgetClient.put_price``."""
        return await self._send(self._routes.put_price(model, {"input": input, "output": output, **fields}))

    async def get_price(self, model: str) -> Price:
        return await self._send(self._routes.get_price(model))

    async def delete_price(self, model: str) -> None:
        await self._send(self._routes.delete_price(model))

    async def list_prices(self) -> list[Price]:
        return await self._send(self._routes.list_prices())

    # ---- litellm hosted protocol

    async def litellm_get_budget(self) -> dict[str, dict[str, Any]]:
        return await self._send(self._routes.litellm_get_budget())

    async def litellm_set_budget(self, user_dict: Mapping[str, Mapping[str, Any]]) -> SetBudgetResult:
        return await self._send(self._routes.litellm_set_budget(user_dict))
