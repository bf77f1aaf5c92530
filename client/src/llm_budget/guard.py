"""Hold before a call, settle after: ``client.guard(...)`` as a (sync or async) context manager.

::

    with client.guard("alice", model="gpt-4o-mini", messages=messages, max_tokens=256) as guard:
        response = litellm.completion(model="gpt-4o-mini", messages=messages, max_tokens=256)
        guard.settle(response)

Entering holds the call's worst-case cost (the service projects ``messages`` plus ``max_tokens``
of output, or holds ``amount``) against every level of the user's budget, and raises
``BudgetExceeded`` when it does not fit, before any money is spent. ``settle`` charges what the
call cost (from a litellm ``ModelResponse``, an OpenAI response or its dict, or a bare usage) and
frees the rest. An exception in the block releases the hold and propagates. A block that ends
without ``settle`` is charged the amount held: the call may have been made, and the hold is the
most it could have cost, so spend is never under-counted. A guard serves one block. An async
guard cancelled while asking for its hold releases the hold once the service answers (in the
background: the cancel is not delayed), rather than leave it reserving the budget to its TTL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from llm_budget._routes import Amount
from llm_budget.errors import BudgetError
from llm_budget.models import Hold, Settlement

if TYPE_CHECKING:
    from llm_budget.client import AsyncBudgetClient, BudgetClient

log = logging.getLogger("llm_budget")

UNSETTLED_MODEL = "unsettled-guard"
"""The model name a block that ended without ``settle`` is charged under (with its hold)."""

# Releases of holds whose guard was cancelled while asking for them (kept until they finish).
_LATE_RELEASES: set[asyncio.Task[Any]] = set()


class _GuardBase:
    def __init__(
        self,
        user: str,
        *,
        model: str | None,
        messages: Sequence[Mapping[str, Any]] | None,
        max_tokens: int | None,
        amount: Amount | None,
        ttl_seconds: int | None,
    ) -> None:
        if amount is None and (model is None or messages is None):
            raise ValueError("guard needs model and messages (and max_tokens), or an amount")
        self.user = user
        self.model = model
        self.messages = messages
        self.max_tokens = max_tokens
        self.amount = amount
        self.ttl_seconds = ttl_seconds
        self.hold: Hold | None = None
        self.settlement: Settlement | None = None

    @property
    def hold_id(self) -> str:
        if self.hold is None:
            raise RuntimeError("the guard holds nothing yet: use it in a with block")
        return self.hold.hold_id

    def _unused(self) -> None:
        # A second block on one guard would take a hold its exit never settles nor releases.
        if self.hold is not None:
            raise RuntimeError("a guard holds once: make a new one with client.guard(...)")

    def _hold_args(self) -> dict[str, Any]:
        if self.amount is not None:
            return {"amount": self.amount, "ttl_seconds": self.ttl_seconds}
        return {
            "model": self.model,
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "ttl_seconds": self.ttl_seconds,
        }

    def _settle_args(
        self, response: object, model: str | None, usage: object, cost: Amount | None
    ) -> dict[str, Any]:
        if self.settlement is not None:
            raise RuntimeError("this guard is already settled")
        # A bare usage or cost is priced as the guarded model unless told otherwise.
        return {"response": response, "model": model or self.model, "usage": usage, "cost": cost}

    def _unsettled_cost(self) -> Decimal:
        assert self.hold is not None
        return self.hold.amount


class Guard(_GuardBase):
    """``BudgetClient.guard``: see the module's docstring."""

    def __init__(self, client: BudgetClient, user: str, **kwargs: Any) -> None:
        super().__init__(user, **kwargs)
        self.client = client

    def __enter__(self) -> Self:
        self._unused()
        self.hold = self.client.hold(self.user, **self._hold_args())
        return self

    def settle(
        self,
        response: object = None,
        *,
        model: str | None = None,
        usage: object = None,
        cost: Amount | None = None,
    ) -> Settlement:
        """Charge the call's actual cost (from ``response``, or ``usage``/``cost`` priced as
        ``model``, default the guarded model) and free the rest of the hold."""
        args = self._settle_args(response, model, usage, cost)
        self.settlement = self.client.settle(self.user, self.hold_id, **args)
        return self.settlement

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.hold is None or self.settlement is not None:
            return
        if exc_type is not None:
            try:
                self.client.release(self.user, self.hold_id)
            except BudgetError:  # never mask the block's own error; the hold expires anyway
                log.warning("could not release hold %s; it expires at its TTL", self.hold_id)
            return
        self.settle(model=self.model or UNSETTLED_MODEL, cost=self._unsettled_cost())


class AsyncGuard(_GuardBase):
    """``AsyncBudgetClient.guard``: ``async with``, and ``await guard.settle(response)``."""

    def __init__(self, client: AsyncBudgetClient, user: str, **kwargs: Any) -> None:
        super().__init__(user, **kwargs)
        self.client = client

    async def __aenter__(self) -> Self:
        self._unused()
        self.hold = await hold_or_release_late(self.client, self.user, **self._hold_args())
        return self

    async def settle(
        self,
        response: object = None,
        *,
        model: str | None = None,
        usage: object = None,
        cost: Amount | None = None,
    ) -> Settlement:
        """See ``Guard.settle``."""
        args = self._settle_args(response, model, usage, cost)
        self.settlement = await self.client.settle(self.user, self.hold_id, **args)
        return self.settlement

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.hold is None or self.settlement is not None:
            return
        if exc_type is not None:
            try:
                await self.client.release(self.user, self.hold_id)
            except BudgetError:
                log.warning("could not release hold %s; it expires at its TTL", self.hold_id)
            return
        await self.settle(model=self.model or UNSETTLED_MODEL, cost=self._unsettled_cost())


async def hold_or_release_late(client: AsyncBudgetClient, user: str, **hold_args: Any) -> Hold:
    """``await client.hold(user, **hold_args)``, safe to cancel. A task cancelled while the hold
    is asked for (a caller gone, a ``wait_for`` timeout) never sees the hold the service may
    still make; it is released as soon as the service answers, in the background (the cancel is
    not delayed), rather than left reserving the budget until its TTL. Used by ``AsyncGuard`` and
    the LiteLLM Proxy pre-call hook. Raises what ``hold`` raises."""
    pending = asyncio.ensure_future(client.hold(user, **hold_args))
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        pending.add_done_callback(lambda answered: _release_late(client, user, answered))
        raise


def _release_late(client: AsyncBudgetClient, user: str, answered: asyncio.Future[Hold]) -> None:
    if answered.cancelled() or answered.exception() is not None:
        return  # no hold was made
    release = answered.get_loop().create_task(client.release(user, answered.result().hold_id))
    _LATE_RELEASES.add(release)  # the loop keeps only a weak reference to a task
    release.add_done_callback(_released_late)


def _released_late(release: asyncio.Task[Any]) -> None:
    _LATE_RELEASES.discard(release)
    if not release.cancelled() and release.exception() is not None:
        log.warning(
            "could not release the hold of a cancelled call; it expires at its TTL: %s", release.exception()
        )
