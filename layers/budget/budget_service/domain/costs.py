"""Cost updates and projected cost: what the cost routes do, in terms of pricing, tokens and the store.

A cost update prices the request (one of four forms), then makes one DynamoDB request: a
TransactWriteItems, which also puts the Idempotency-Key's ledger item when one is given (see
store_levels.LevelWriter.add_cost; a replay costs one GetItem more).
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import NamedTuple

from budget_service.core.errors import IdempotencyKeyReused, InvalidInput
from budget_service.core.idempotency import (  # noqa: F401  (re-exported: holds and history use them)
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_TTL_SECONDS,
    check_idempotency_key,
    fingerprint_of,
)
from budget_service.core.records import Budget
from budget_service.domain import budgets
from budget_service.domain.budgets import read_budget
from budget_service.pricing.prices import cost_of, default_table
from budget_service.pricing.project import PROJECT_PRICE_PREFIX, ProjectPrices, for_project
from budget_service.schemas import (
    DECIMAL_CONTEXT,
    MONEY_MAX,
    CostRequest,
    CostResponse,
    ProjectedCostRequest,
    ProjectedCostResponse,
    TokensUsed,
    plain_number,
    quantize_money,
)
from budget_service.schemas.usage import TokenUsage, completion_usage, to_token_usage
from budget_service.store.base import BudgetStore, default_store
from budget_service.store.levels import LevelWriter

# How long an Idempotency-Key is remembered (DynamoDB TTL; deletion may lag up to a couple of
# days, and until then the key still answers as a replay).


class PricedEvent(NamedTuple):
    model: str  # as the caller named it (what the answer shows)
    cost: Decimal
    priced_as: str | None = None
    tokens: TokenUsage | None = None
    # The key of the spend in model_cost: the model the price resolved to (see spend_key).
    key: str = ""

    @property
    def spend_key(self) -> str:
        return self.key or self.model


def spend_key(priced_as: str) -> str:
    """The model_cost key of spend priced as `priced_as`: the price table's key the name resolved
    to (``openai/gpt-4o`` and ``gpt-4o`` are both ``gpt-4o``), or a project price's model name, so
    one model is one entry in records, periods and reports whatever name a call used."""
    return priced_as.removeprefix(PROJECT_PRICE_PREFIX)


def checked_money(value: Decimal) -> Decimal:
    """A priced cost (USD) quantized to money's places; InvalidInput (422) above MONEY_MAX.

    Compared before quantizing: a cost of 10^13 USD or more has no room for 25 decimal places in
    the 38-digit context (quantize raises InvalidOperation, a 500), and a project price of up to
    MONEY_MAX per token can reach that. A value within it cannot round past it."""
    if value > MONEY_MAX:
        raise InvalidInput(
            f"the priced cost {plain_number(value)} is over the limit of {plain_number(MONEY_MAX)}"
        )
    return quantize_money(value)


def price(request: CostRequest, project_prices: ProjectPrices | None = None) -> PricedEvent:
    """The cost of one request (USD). Unknown model (in a priced form): UnknownModel, 422; a usage
    naming what the model's price cannot bill: UnpricedUsage, 422. `project_prices` (the project's
    own prices) win over the shipped table."""
    form = request.form
    if form == "cost":
        assert request.model is not None and request.cost is not None
        # Already priced: keyed by the table's model the name resolves to, else as sent (no read of
        # the project's prices: this form stays one DynamoDB request).
        key = default_table().resolve_name(request.model) or request.model
        return PricedEvent(model=request.model, cost=request.cost, key=key)
    lookup = project_prices.price if project_prices is not None else default_table().price
    if form == "text":
        assert request.model is not None
        model_price = lookup(request.model)  # unknown model fails before counting
        from budget_service.pricing import tokens

        usage = TokenUsage(
            prompt_tokens=tokens.count_text(request.input_text or "", request.model),
            completion_tokens=tokens.count_text(request.output_text or "", request.model),
        )
        return PricedEvent(
            request.model,
            checked_money(cost_of(model_price, usage).total),
            model_price.name,
            usage,
            spend_key(model_price.name),
        )
    if form == "usage":
        assert request.model is not None and request.usage is not None
        model = request.model
        usage, context = to_token_usage(request.usage)
    else:
        assert request.completion is not None
        model = request.completion.model_name
        usage, context = completion_usage(request.completion)
    model_price = lookup(model)
    return PricedEvent(
        model,
        checked_money(cost_of(model_price, usage, context).total),
        model_price.name,
        usage,
        spend_key(model_price.name),
    )


def project_prices_for(store: BudgetStore, project: str, request: CostRequest) -> ProjectPrices | None:
    """The project's prices, when the request needs pricing (not for the ``cost`` form)."""
    return None if request.form == "cost" else for_project(store, project)


def fingerprint(request: CostRequest) -> str:
    """What a replay must repeat: the same request (as validated), hashed."""
    body = request.model_dump(mode="json", exclude_none=True)
    if not request.if_within_budget:  # absent and false are the same request (and older keys')
        body.pop("if_within_budget", None)
    return fingerprint_of(body)


def tokens_out(usage: TokenUsage | None) -> TokensUsed | None:
    """The token counts as an answer shows them (None when the cost was given, not priced)."""
    if usage is None:
        return None
    return TokensUsed(**usage._asdict())


def tokens_record(usage: TokenUsage | None) -> dict | None:
    """The token counts as a ledger record keeps them: the non-zero ones only (None without usage)."""
    if usage is None:
        return None
    return {k: v for k, v in tokens_out(usage).model_dump().items() if v}  # type: ignore[union-attr]


def record_cost(
    store: BudgetStore,
    project: str,
    user: str,
    request: CostRequest,
    now: Decimal,
    idempotency_key: str | None = None,
) -> CostResponse:
    """Price `request` and add it to the user's spend with one DynamoDB request.

    With ``if_within_budget``, only a cost that fits the budget's ``available`` is charged, else
    BudgetExceeded (402) and nothing is written. The answer carries no balance (a transaction
    returns no values): GET the budget to read it.
    """
    key = check_idempotency_key(idempotency_key)
    event = price(request, project_prices_for(store, project, request))
    writer = LevelWriter(store)
    within = bool(request.if_within_budget)
    if key is None:
        writer.add_cost(project, user, event.spend_key, event.cost, now, within_budget=within)
        return _answer(project, user, event, None)

    digest = fingerprint(request)
    ledger = {
        "key": key,
        "kind": "cost",
        "model": event.model,
        "cost": event.cost,
        "priced_as": event.priced_as,
        "tokens": tokens_record(event.tokens),
        "fingerprint": digest,
        "created_at": now,
        "expires_at": int(now) + IDEMPOTENCY_TTL_SECONDS,
    }
    first = writer.add_cost(
        project, user, event.spend_key, event.cost, now, ledger=ledger, within_budget=within
    )
    if first is None:
        return _answer(project, user, event, None, key=key)
    if first.get("fingerprint") != digest:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was already used for a different request to this user;"
            " use a new key for a new cost"
        )
    tokens = first.get("tokens")
    replay = PricedEvent(
        model=first["model"],
        cost=first["cost"],
        priced_as=first.get("priced_as"),
        tokens=TokenUsage(**{k: int(v) for k, v in tokens.items()}) if tokens else None,
    )
    return _answer(project, user, replay, None, key=key, replayed=True)


def _answer(
    project: str,
    user: str,
    event: PricedEvent,
    budget: Budget | None,
    *,
    key: str | None = None,
    replayed: bool = False,
) -> CostResponse:
    return CostResponse(
        project=project,
        user=user,
        model=event.model,
        cost=event.cost,
        current_cost=budget.current_cost if budget else None,
        total_budget=budget.total_budget if budget else None,
        remaining=budget.remaining if budget else None,
        budget_exceeded=(budget.current_cost > budget.total_budget) if budget else None,
        tokens=tokens_out(event.tokens),
        priced_as=event.priced_as,
        idempotency_key=key,
        replayed=replayed,
    )


def projected_cost(
    store: BudgetStore, project: str, user: str, request: ProjectedCostRequest, now: Decimal
) -> ProjectedCostResponse:
    """What the call would cost: prompt tokens of the messages, plus max_tokens of output."""
    model_price = for_project(store, project).price(request.model)
    from budget_service.pricing import tokens

    messages = [m.model_dump(exclude_none=True) for m in request.messages]
    prompt_tokens = tokens.count_messages(messages, request.model)
    completion_tokens = request.max_tokens or 0
    cost = cost_of(model_price, TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))
    budget = read_budget(store, project, user, now)
    with localcontext(DECIMAL_CONTEXT):
        prompt_cost, completion_cost = checked_money(cost.prompt), checked_money(cost.completion)
        projected = prompt_cost + completion_cost
        total = budget.current_cost + projected
        remaining_after = max(budget.total_budget - total, Decimal(0))
    return ProjectedCostResponse(
        project=project,
        user=user,
        model=request.model,
        priced_as=model_price.name,
        prompt_tokens=prompt_tokens,
        prompt_cost=prompt_cost,
        max_tokens=request.max_tokens,
        completion_cost=completion_cost,
        projected_cost=projected,
        current_cost=budget.current_cost,
        projected_total=total,
        total_budget=budget.total_budget,
        remaining_after=remaining_after,
        within_budget=total <= budget.total_budget,
    )


# ---- what each route does: the service's store and clock, the rule above, the answer's model ----


def record(project: str, user: str, request: CostRequest, idempotency_key: str | None) -> CostResponse:
    """``POST /projects/{project}/users/{user}/cost``: record_cost now, in the service's store."""
    return record_cost(default_store(), project, user, request, budgets.utc_now(), idempotency_key)


def project(project: str, user: str, request: ProjectedCostRequest) -> ProjectedCostResponse:
    """``POST /projects/{project}/users/{user}/projected-cost``: projected_cost now."""
    return projected_cost(default_store(), project, user, request, budgets.utc_now())
