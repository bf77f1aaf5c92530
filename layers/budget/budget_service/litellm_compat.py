"""litellm's hosted protocol: its entries to budgets, and the ``set_budget`` merge rules.

litellm's ``BudgetManager`` sends its whole user dict on every save, from any number of processes,
each holding a copy loaded at start. The merge makes that safe: a stale or concurrent client can
never lower the spend of the period the server is in. Per user:

* not stored: created from the entry;
* ``total_budget`` and ``duration`` from the entry replace the stored settings;
* spend, by which period the entry's ``last_updated_at`` falls in, compared to the stored one:
  - a newer period (the client reset it): the entry's spend is taken;
  - the same period, or no period on either side: the larger of stored and entry, per field and
    per model;
  - an older period (the server already rolled over): the entry's spend is ignored and reported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal

from budget_service.budget import ZERO, Budget
from budget_service.models import LitellmEntry
from budget_service.periods import SECONDS_PER_DAY


@dataclass(frozen=True)
class Merge:
    budget: Budget
    stale_spend_ignored: bool = False


def _max_spend(stored: Budget, entry: LitellmEntry) -> tuple[Decimal, dict[str, Decimal]]:
    models = dict(stored.model_cost)
    for model, cost in (entry.model_cost or {}).items():
        models[model] = max(models.get(model, ZERO), cost)
    return max(stored.current_cost, entry.current_cost or ZERO), models


def _entry_spend(entry: LitellmEntry) -> tuple[Decimal, dict[str, Decimal]]:
    return entry.current_cost or ZERO, dict(entry.model_cost or {})


def _keeps_calendar_rule(stored: Budget, entry: LitellmEntry) -> bool:
    """A calendar budget round-tripped through litellm comes back with its period's length."""
    if stored.duration is None or entry.duration is None or stored.period_start is None:
        return False
    assert stored.reset_at is not None
    reported = stored.reset_at - stored.period_start
    return abs(entry.duration * SECONDS_PER_DAY - reported) < 1


def new_budget_from_entry(project: str, user: str, entry: LitellmEntry, now: Decimal) -> Budget:
    current_cost, model_cost = _entry_spend(entry)
    budget = Budget(
        project=project,
        user=user,
        total_budget=entry.total_budget,
        created_at=min(entry.created_at, now) if entry.created_at is not None else now,
        updated_at=now,
        current_cost=current_cost,
        model_cost=model_cost,
        duration_days=entry.duration,
    )
    if entry.duration is None:
        return budget
    start = min(entry.last_updated_at, now) if entry.last_updated_at is not None else now
    budget = dataclasses.replace(budget, period_start=start, reset_at=None).with_period_from(start)
    # An entry whose own period has already ended brings no spend into the current one.
    return budget.as_of(now)


def merge_entry(stored: Budget | None, entry: LitellmEntry, now: Decimal) -> Merge:
    """The budget to store after `entry` arrives for a user stored as `stored` (None: new)."""
    if stored is None:
        raise ValueError("use new_budget_from_entry for users not stored yet")
    current = stored.as_of(now)
    # litellm stamps last_updated_at with its own clock: one ahead of ours must not plant a
    # period start in the future.
    client_start = (
        min(entry.last_updated_at, now) if entry.last_updated_at is not None else None
    )

    # Settings: the entry's replace the stored ones.
    if entry.duration is None:
        settings = dataclasses.replace(
            current, duration=None, duration_days=None, timezone=None,
            period_start=None, reset_at=None,
        )
    elif _keeps_calendar_rule(current, entry):
        settings = current
    elif current.duration_days == entry.duration and current.duration is None:
        settings = current
    else:  # a new rolling rule; its period runs from the client's period start
        anchor = client_start if client_start is not None else current.period_start or now
        settings = dataclasses.replace(
            current, duration=None, duration_days=entry.duration, timezone=None,
            period_start=anchor,
        ).with_period_from(now)
    settings = dataclasses.replace(settings, total_budget=entry.total_budget)

    # Spend: which period does the entry speak of?
    stale = False
    if client_start is None or settings.period_start is None:
        spend = _max_spend(settings, entry)
    elif settings.duration is not None:  # calendar: compare the periods containing each start
        entry_period = settings.period_at(client_start)
        if entry_period is not None and entry_period.start < settings.period_start:
            stale, spend = True, (settings.current_cost, dict(settings.model_cost))
        else:
            spend = _max_spend(settings, entry)
    elif client_start > settings.period_start:  # rolling: the client reset; re-anchor on it
        spend = _entry_spend(entry)
        settings = dataclasses.replace(settings, period_start=client_start).with_period_from(
            client_start
        ).as_of(now)
    elif client_start < settings.period_start:
        stale, spend = True, (settings.current_cost, dict(settings.model_cost))
    else:
        spend = _max_spend(settings, entry)

    merged = dataclasses.replace(
        settings, current_cost=spend[0], model_cost=spend[1], updated_at=now
    )
    return Merge(merged, stale_spend_ignored=stale)


def same_state(a: Budget, b: Budget) -> bool:
    """True when storing `b` over `a` would change nothing a reader can see."""
    ignore = {"updated_at", "version", "write_ids"}
    return all(
        getattr(a, f.name) == getattr(b, f.name)
        for f in dataclasses.fields(Budget)
        if f.name not in ignore
    )
