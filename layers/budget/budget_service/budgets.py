"""Budget operations: what each route does, in terms of the entity and the store."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from budget_service.budget import Budget
from budget_service.errors import BudgetNotFound, Contention, InvalidInput, ServiceUnavailable
from budget_service.litellm_compat import merge_entry, new_budget_from_entry, same_state
from budget_service.models import (
    EPOCH_QUANTUM,
    MAX_MODELS_PER_USER,
    LitellmEntry,
    PutBudgetRequest,
)
from budget_service.store import (
    NOT_WRITTEN,
    STORE_ERRORS,
    UNKNOWN,
    BudgetStore,
    decode_cursor,
    encode_cursor,
    unavailable,
    write_outcome,
)


def utc_now() -> Decimal:
    return Decimal(repr(time.time())).quantize(EPOCH_QUANTUM)


# ---- litellm hosted protocol -------------------------------------------------------------------


def project_entries(store: BudgetStore, project: str, now: Decimal) -> dict[str, dict] | None:
    """The project's users in litellm's shape, as of `now`; None for an unknown project."""
    entries = {b.user: b.as_of(now).to_litellm_entry() for b in store.iter_project(project)}
    return entries or None


@dataclass
class SetBudgetResult:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale_spend_ignored: list[str] = field(default_factory=list)


def _progress(result: SetBudgetResult, not_written: list[str], not_confirmed: list[str]) -> dict:
    """A stopped set_budget's details: each user's state, and the request's `outcome`:
    ``not_written`` (nothing), ``partially_written`` (exactly `written`), or ``unknown``
    (`not_confirmed` may have landed)."""
    if not_confirmed:
        outcome = UNKNOWN
    else:
        outcome = "partially_written" if result.written else NOT_WRITTEN
    return {
        "outcome": outcome,
        "written": result.written,
        "unchanged": result.unchanged,
        "stale_spend_ignored": result.stale_spend_ignored,
        "not_written": not_written,
        "not_confirmed": not_confirmed,
    }


def set_budget(
    store: BudgetStore,
    project: str,
    user_dict: dict[str, LitellmEntry],
    now: Decimal,
    keep_going: Callable[[], bool] = lambda: True,
) -> SetBudgetResult:
    """Merge a litellm user dict into the project. The caller has validated all of it.

    Each user is one conditional write (its own item, well under DynamoDB's 400 KB; see the
    limits in models.py). When DynamoDB fails for good part way (throttled, timing out, 5xx after
    the client's retries), or `keep_going` says time is up, this stops and raises
    ServiceUnavailable (503) whose details list the users written or unchanged so far, those not
    written, and the one in flight whose write may or may not have landed (a timeout). The merge
    is idempotent, so sending the same request again converges on the fully applied write.
    """
    result = SetBudgetResult()
    stored = {b.user: b for b in store.iter_project(project)} if user_dict else {}
    _check_model_counts(stored, user_dict, now)
    users = list(user_dict.items())
    for index, (user, entry) in enumerate(users):
        if not keep_going():
            raise ServiceUnavailable(
                "out of time before every user was written; send the same request again",
                details=_progress(result, [u for u, _ in users[index:]], []),
            )
        stale = wrote = False

        def change(current: Budget | None, user: str = user, entry: LitellmEntry = entry):
            nonlocal stale, wrote
            if current is None:
                wrote = True
                return new_budget_from_entry(project, user, entry, now)
            merged = merge_entry(current, entry, now)
            stale = merged.stale_spend_ignored
            wrote = not same_state(current, merged.budget)
            return merged.budget if wrote else None

        try:
            store.update(project, user, change, seen=stored.get(user))
        except Contention as exc:
            exc.details = _progress(result, [u for u, _ in users[index:]], [])
            raise
        except STORE_ERRORS as exc:
            if not unavailable(exc):
                raise
            # A timeout or a dropped connection after sending leaves this user's write unknown.
            maybe = [user] if write_outcome(exc) == UNKNOWN else []
            raise ServiceUnavailable(
                "the budget store failed part way (throttled, timed out or unavailable); details"
                " say which users were written"
                + (" and whose write may or may not have been applied (not_confirmed)" if maybe else "")
                + "; send the same request again to finish (the merge makes that safe)",
                details=_progress(result, [u for u, _ in users[index:] if u not in maybe], maybe),
            ) from exc
        (result.written if wrote else result.unchanged).append(user)
        if stale:
            result.stale_spend_ignored.append(user)
    return result


def _check_model_counts(stored: dict[str, Budget], user_dict: dict[str, LitellmEntry], now: Decimal):
    """The merge keeps every model of stored and sent; refuse, before writing anything, a union
    over the per-user limit (it keeps each item well under DynamoDB's 400 KB)."""
    over = [
        user
        for user, entry in user_dict.items()
        if user in stored
        and len(set(stored[user].as_of(now).model_cost) | set(entry.model_cost or {}))
        > MAX_MODELS_PER_USER
    ]
    if over:
        raise InvalidInput(
            f"{len(over)} user(s) would track more than {MAX_MODELS_PER_USER} models: "
            + ", ".join(repr(u) for u in over[:5])
        )


# ---- native API --------------------------------------------------------------------------------


def read_budget(store: BudgetStore, project: str, user: str, now: Decimal) -> Budget:
    budget = store.get(project, user)
    if budget is None:
        raise BudgetNotFound.for_user(project, user)
    return budget.as_of(now)


def put_budget(
    store: BudgetStore, project: str, user: str, settings: PutBudgetRequest, now: Decimal
) -> tuple[Budget, bool]:
    """Create or replace a budget's settings. Spend of the current period is kept."""
    created = False

    def change(current: Budget | None) -> Budget:
        nonlocal created
        created = current is None
        base = (
            current.as_of(now)
            if current is not None
            else Budget(project=project, user=user, total_budget=settings.total_budget,
                        created_at=now, updated_at=now)
        )
        rule_changed = (base.duration, base.timezone, base.duration_days) != (
            settings.duration, settings.timezone, None,
        )
        updated = dataclasses.replace(
            base,
            total_budget=settings.total_budget,
            duration=settings.duration,
            duration_days=None,
            timezone=settings.timezone,
            updated_at=now,
        )
        return updated.with_period_from(now) if rule_changed or created else updated

    budget = store.update(project, user, change)
    assert budget is not None
    return budget, created


def list_budgets(
    store: BudgetStore, project: str, limit: int, cursor: str | None, now: Decimal
) -> tuple[list[Budget], str | None]:
    after = decode_cursor(cursor) if cursor else None
    budgets, last = store.list_page(project, limit=limit, after_user=after)
    return [b.as_of(now) for b in budgets], (encode_cursor(last) if last else None)


def reset_budget(store: BudgetStore, project: str, user: str, now: Decimal) -> Budget:
    """Zero the spend now and start a new period (a rolling period restarts at `now`)."""

    def change(current: Budget | None) -> Budget:
        if current is None:
            raise BudgetNotFound.for_user(project, user)
        restarted = current.with_spend_zeroed()
        if current.duration_days is not None:
            restarted = dataclasses.replace(restarted, period_start=now)
        return dataclasses.replace(restarted.with_period_from(now), updated_at=now)

    budget = store.update(project, user, change)
    assert budget is not None
    return budget


def delete_budget(store: BudgetStore, project: str, user: str) -> None:
    if not store.delete(project, user):
        raise BudgetNotFound.for_user(project, user)
