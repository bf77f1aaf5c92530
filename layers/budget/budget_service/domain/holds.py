"""Holds: reserve a call's worst-case cost before the call, settle or release it after.

LiteLLM's own pattern (check ``get_current_cost <= get_total_budget``, call, ``update_cost``)
admits every caller that checked before the first one paid. A hold is the check and the
reservation in one conditional write, so concurrent callers can never together reserve more than
a budget's headroom (``available``). Each operation is one DynamoDB TransactWriteItems
(store_holds.HoldStore); the hold item's state machine makes settling, releasing and expiring
each happen once, whoever gets there first. Amounts are USD (Decimal); times epoch seconds.
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import NamedTuple

from budget_service.core.errors import BudgetExceeded, IdempotencyKeyReused, InvalidInput
from budget_service.core.records import iso
from budget_service.domain import budgets, costs, hold_sizing
from budget_service.pricing.prices import ModelPrice, PriceTable, cost_of
from budget_service.pricing.project import for_project
from budget_service.schemas import (
    DECIMAL_CONTEXT,
    HoldRequest,
    HoldResponse,
    ReleaseResponse,
    SettleRequest,
    SettleResponse,
    quantize_money,
)
from budget_service.schemas.usage import TokenUsage
from budget_service.store.base import BudgetStore, default_store
from budget_service.store.holds import EXPIRED, HELD, RELEASED, HoldStore, amount_of, make_hold_id

log = logging.getLogger(__name__)


class _Priced(NamedTuple):
    """What a hold reserves: the amount (USD) and, for a hold by messages, how it was sized."""

    amount: Decimal
    priced_as: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    sized_by: str | None = None
    capped: bool | None = None


def _priced_amount(store: BudgetStore, project: str, request: HoldRequest, now: Decimal) -> _Priced:
    """The amount to hold: the request's ``amount``; or the prompt plus the output the project's
    hold sizing gives (domain.hold_sizing), priced as projected cost prices it, then capped by the
    project's ``max_hold``."""
    if request.amount is not None:
        return _Priced(request.amount)
    assert request.model is not None and request.messages is not None
    # The project's own price wins, as for projected cost. UnknownModel (422) before counting.
    prices = for_project(store, project)
    model_price = prices.price(request.model)
    from budget_service.pricing import tokens

    messages = [m.model_dump(exclude_none=True) for m in request.messages]
    prompt_tokens = tokens.count_messages(messages, request.model)
    settings = hold_sizing.settings_for(store, project)
    sizing_model = sizing_model_of(prices.table, request.model)
    sizing = hold_sizing.size_output(
        store,
        project,
        sizing_model,
        _max_output(prices.table, request.model, model_price),
        request.max_tokens,
        settings,
        now,
    )
    usage = TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=sizing.output_tokens)
    amount = costs.checked_money(cost_of(model_price, usage).total)
    if amount <= 0:
        raise InvalidInput(f"model {request.model!r} prices this call at 0: nothing to hold; pass amount")
    capped = settings.max_hold is not None and amount > settings.max_hold
    if settings.max_hold is not None and capped:
        amount = costs.checked_money(settings.max_hold)
    return _Priced(amount, model_price.name, prompt_tokens, sizing.output_tokens, sizing.sized_by, capped)


def sizing_model_of(table: PriceTable, model: str) -> str:
    """The name a model's output histogram is kept under: its entry in the shipped table (so
    ``openai/gpt-4o-mini`` and ``gpt-4o-mini`` share one), else the name as given."""
    return table.resolve_name(model) or model


def _max_output(table: PriceTable, model: str, model_price: ModelPrice) -> int | None:
    if model_price.max_output is not None:
        return model_price.max_output
    key = table.resolve_name(model)  # a project's own price: the shipped entry's maximum
    return table.price(key).max_output if key is not None else None


def create_hold(
    store: BudgetStore,
    project: str,
    user: str,
    request: HoldRequest,
    now: Decimal,
    idempotency_key: str | None = None,
) -> HoldResponse:
    """Reserve the amount (or the call's projected cost) on the user's budget for ``ttl_seconds``.

    One TransactWriteItems. Refused (BudgetExceeded, 402, nothing written) when the budget's
    ``available`` is less than the amount; a refusal first releases the user's holds that have
    expired (the scheduled job may not have run yet) and tries once more, so an expired hold
    never blocks a new one. Unknown user: BudgetNotFound (404). With an Idempotency-Key a repeat
    answers the first hold (``replayed``); the same key for a different request is a 422.
    """
    key = costs.check_idempotency_key(idempotency_key)
    priced = _priced_amount(store, project, request, now)
    amount = priced.amount
    # Random even with an Idempotency-Key: the key's ledger item, put in the same transaction,
    # is what makes a retry find the first hold (and a deleted budget's key start afresh).
    hold_id = make_hold_id(uuid.uuid4().hex, amount)
    expires_at = now + request.ttl_seconds
    holds = HoldStore(store)
    ledger = None
    digest = None
    if key is not None:
        digest = costs.fingerprint_of(request.model_dump(mode="json", exclude_none=True))
        ledger = {
            "key": key,
            "kind": "hold",
            "hold_id": hold_id,
            "fingerprint": digest,
            "created_at": now,
            "expires_at": int(now) + costs.IDEMPOTENCY_TTL_SECONDS,
        }
    attributes = {
        "priced_as": priced.priced_as,
        "prompt_tokens": priced.prompt_tokens,
        "output_tokens": priced.output_tokens,
        "sized_by": priced.sized_by,
        "capped": priced.capped,
        "idempotency_key": key,
    }
    try:
        first = holds.create(
            project, user, hold_id, amount, expires_at, now, attributes=attributes, ledger=ledger
        )
    except BudgetExceeded:
        if not release_expired(holds, project, user, now):
            raise
        first = holds.create(
            project, user, hold_id, amount, expires_at, now, attributes=attributes, ledger=ledger
        )
    if first is not None:
        if first.get("kind") != "hold" or first.get("fingerprint") != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was already used for a different request to this user;"
                " use a new key for a new hold"
            )
        stored = holds.get(project, user, first["hold_id"]) or {}
        return _hold_answer(
            project,
            user,
            first["hold_id"],
            stored
            or {
                "amount": amount_of(first["hold_id"]),
                "state": HELD,
                "created_at": first["created_at"],
                "hold_expires_at": first["created_at"],
            },
            key=key,
            replayed=True,
        )
    item = {
        "amount": amount,
        "state": HELD,
        "created_at": now,
        "hold_expires_at": expires_at,
        **attributes,
    }
    return _hold_answer(project, user, hold_id, item, key=key)


def _hold_answer(
    project: str, user: str, hold_id: str, item: dict, *, key=None, replayed=False
) -> HoldResponse:
    return HoldResponse(
        hold_id=hold_id,
        project=project,
        user=user,
        amount=item["amount"],
        state=item["state"],
        created_at=iso(item["created_at"]) or "",
        expires_at=iso(item["hold_expires_at"]) or "",
        priced_as=item.get("priced_as"),
        prompt_tokens=int(item["prompt_tokens"]) if item.get("prompt_tokens") is not None else None,
        output_tokens=int(item["output_tokens"]) if item.get("output_tokens") is not None else None,
        sized_by=item.get("sized_by"),
        capped=item.get("capped"),
        idempotency_key=key,
        replayed=replayed,
    )


def release_expired(holds: HoldStore, project: str, user: str, now: Decimal) -> int:
    """Expire the user's holds that are past their time (one Query, one write each); how many."""
    expired = 0
    for hold_id in holds.expired_of_user(project, user, now):
        _, changed = holds.finish(project, user, hold_id, now, EXPIRED)
        expired += changed
    return expired


def settle_hold(
    store: BudgetStore, project: str, user: str, hold_id: str, request: SettleRequest, now: Decimal
) -> SettleResponse:
    """Charge the actual cost (any cost form of ``/cost``; in full, even above the hold: the
    settle is the top-up of a call that produced more than was held) and free the rest of the
    hold, once: one TransactWriteItems. A repeat answers the first result with ``replayed: true``
    and charges nothing. A hold already released or expired is still charged once (and frees
    nothing). Unknown hold (or another user's): HoldNotFound (404).

    A first settle that says the call's output tokens (its usage's ``completion_tokens``, or
    ``output_tokens``) then counts them in the model's histogram for hold sizing: one atomic
    UpdateItem ADD after the charge, never failing it."""
    amount = amount_of(hold_id)  # a malformed id is a 404 before any pricing or write
    if request.if_within_budget:
        raise InvalidInput("a settle always charges the actual cost; drop if_within_budget")
    event = costs.price(request, costs.project_prices_for(store, project, request))
    result = {
        "model": event.model,
        "cost": event.cost,
        "priced_as": event.priced_as,
        "tokens": costs.tokens_record(event.tokens),
    }
    hold_store = HoldStore(store)
    stored, replayed = hold_store.settle(project, user, hold_id, event.cost, event.spend_key, now, result)
    said = getattr(request, "output_tokens", None)  # a SettleRequest may say it; a CostRequest cannot
    output_tokens = event.tokens.completion_tokens if event.tokens is not None else said
    if not replayed and output_tokens is not None:
        _learn_output(store, project, event.model, output_tokens, now)
    tokens = stored.get("tokens")
    cost = stored["cost"]
    freed = (
        max(DECIMAL_CONTEXT.subtract(amount, cost), Decimal(0))
        if stored.get("settled_from") == HELD
        else Decimal(0)
    )
    return SettleResponse(
        hold_id=hold_id,
        project=project,
        user=user,
        amount=amount,
        model=stored["model"],
        cost=cost,
        released=quantize_money(freed),
        settled_from=stored.get("settled_from") or HELD,
        settled_at=iso(stored["settled_at"]) or "",
        tokens=costs.tokens_out(TokenUsage(**{k: int(v) for k, v in tokens.items()})) if tokens else None,
        priced_as=stored.get("priced_as"),
        replayed=replayed,
    )


def _learn_output(store: BudgetStore, project: str, model: str, output_tokens: int, now: Decimal) -> None:
    # Under the table entry the settle's model resolves to (what a hold by messages of that model
    # reads), with no read of the hold: any settled call of the model is a sample of its output.
    try:
        sizing_model = sizing_model_of(for_project(store, project).table, model)
        hold_sizing.record_output(store, project, sizing_model, output_tokens, now)
    except Exception:  # noqa: BLE001 - the charge is done; a lost sample only widens estimates
        log.warning("hold sizing: could not count the output of a settle of %r", model, exc_info=True)


def release_hold(store: BudgetStore, project: str, user: str, hold_id: str, now: Decimal) -> ReleaseResponse:
    """Free a hold unused (``held -> released``): one TransactWriteItems. Repeating, or releasing a
    hold already settled or expired, changes nothing and says so. Unknown hold: HoldNotFound."""
    amount = amount_of(hold_id)
    before, changed = HoldStore(store).finish(project, user, hold_id, now, RELEASED)
    return ReleaseResponse(
        hold_id=hold_id,
        project=project,
        user=user,
        amount=amount,
        state=RELEASED if changed else str((before or {}).get("state", RELEASED)),
        released=changed,
    )


# ---- what each route does: the service's store and clock, the rule above, the answer's model ----


def hold(project: str, user: str, request: HoldRequest, idempotency_key: str | None) -> HoldResponse:
    """``POST .../holds``: create_hold now (a replayed key answers the first hold, as it was)."""
    return create_hold(default_store(), project, user, request, budgets.utc_now(), idempotency_key)


def settle(project: str, user: str, hold_id: str, request: SettleRequest) -> SettleResponse:
    """``POST .../holds/{hold_id}/settle``: settle_hold now."""
    return settle_hold(default_store(), project, user, hold_id, request, budgets.utc_now())


def release(project: str, user: str, hold_id: str) -> ReleaseResponse:
    """``DELETE .../holds/{hold_id}``: release_hold now."""
    return release_hold(default_store(), project, user, hold_id, budgets.utc_now())
