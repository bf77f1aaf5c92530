"""litellm's hosted protocol: its entries to budgets, and the ``set_budget`` merge rules.

litellm's ``BudgetManager`` sends its whole user dict on every save, from any number of processes,
each holding a copy loaded at start (litellm/budget_manager.py: ``save_data`` posts the dict;
``reset_on_duration`` zeroes ``current_cost`` and ``model_cost`` and sets ``last_updated_at`` to
its own ``time.time()`` once ``now - last_updated_at >= duration`` days). The merge makes that
safe: a stale or concurrent client can never lower the spend of the period the server is in, nor
change a budget's rule by sending back what it was given. Per user:

* not stored: created from the entry;
* ``total_budget`` from the entry replaces the stored one;
* the rule: an entry whose ``duration`` is what this budget's rule could have handed a client
  keeps the rule (see ``_keeps_rule``); any other ``duration`` is a new rolling rule, and no
  ``duration`` removes the period;
* spend, by where the entry's own period ``[last_updated_at, + duration)`` lies against the
  server's current period ``[period_start, reset_at)``:
  - it starts in the current period (the client loaded it, or reset itself in it): the larger of
    stored and entry, per model, with ``current_cost`` at least the sum of ``model_cost``; a
    rolling period restarts at a client's later reset;
  - it is a period the server closed (it ended before the current one began, or starts where a
    period the server handed out started: a rollover or a manual reset closed it): the entry's
    spend is ignored and reported (``stale_spend_ignored``), as litellm's own reset would drop it;
  - it started earlier but is neither (a client that reset itself at another moment, e.g. one
    whose ``duration`` is a shorter month): the server cannot tell how much of that spend falls
    in the current period, so it keeps it, merged as the larger, and reports it
    (``uncertain_spend_kept``). Spend is never dropped on a guess.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from budget_service.core.numbers import SUM_CONTEXT
from budget_service.core.periods import (
    SECONDS_PER_DAY,
    Duration,
    calendar_period,
    to_datetime,
    to_epoch,
)
from budget_service.core.records import ZERO, Budget, ClosedPeriod
from budget_service.schemas import LitellmEntry

# Entries come back through a JSON float: a period length of 30.958333... days is 1e-7 s off.
TOLERANCE_SECONDS = Decimal(1)
# The years whose period lengths a calendar rule is matched against, around now: a leap year
# and both DST transitions are always among them.
YEARS_BACK, YEARS_AHEAD = 5, 1


class Merge(NamedTuple):
    """The budget to store, and what became of the entry's spend (at most one flag is set)."""

    budget: Budget
    stale_spend_ignored: bool = False
    uncertain_spend_kept: bool = False
    # The client reset a rolling period: the stored spend it replaced, as a closed period to
    # record in the history with the write, so no recorded cost falls out of every period.
    replaced: ClosedPeriod | None = None


def _max_spend(stored: Budget, entry: LitellmEntry) -> tuple[Decimal, dict[str, Decimal]]:
    """The larger of stored and entry, per model; ``current_cost`` is at least the sum of the
    models (litellm adds each cost to both, so when two stale clients each added to a different
    model, the sum of the per-model maxima is the true total)."""
    models = dict(stored.model_cost)
    for model, cost in (entry.model_cost or {}).items():
        models[model] = max(models.get(model, ZERO), cost)
    return max(stored.current_cost, entry.current_cost or ZERO, _sum(models)), models


def _entry_spend(entry: LitellmEntry) -> tuple[Decimal, dict[str, Decimal]]:
    models = dict(entry.model_cost or {})
    return max(entry.current_cost or ZERO, _sum(models)), models


def _sum(models: dict[str, Decimal]) -> Decimal:
    """The exact sum (1,000 models of up to SPEND_MAX need more than 38 digits: set_budget
    refuses a sum over SPEND_MAX before storing it, budgets._check_spend_limit)."""
    total = ZERO
    for cost in models.values():
        total = SUM_CONTEXT.add(total, cost)
    return total


@lru_cache(maxsize=1024)
def _lengths_in_year(duration: Duration, timezone: str | None, year: int) -> frozenset[int]:
    """The lengths, in seconds, of the periods of a calendar rule that start in `year` (UTC)."""
    start = to_epoch(to_datetime(Decimal(0)).replace(year=year))
    end = to_epoch(to_datetime(Decimal(0)).replace(year=year + 1))
    lengths, t = set(), start
    while t < end:
        period = calendar_period(duration, timezone, t)
        lengths.add(int(period.end - period.start))
        t = period.end
    return frozenset(lengths)


def rule_lengths(duration: Duration, timezone: str | None, now: Decimal) -> frozenset[int]:
    """Every length (seconds) a period of the rule has in the years around `now`: 28 to 31 days
    for a monthly rule, each with the zone's DST shifts; what ``get_budget`` can have handed out."""
    year = to_datetime(now).year
    lengths: set[int] = set()
    for y in range(max(year - YEARS_BACK, 1971), min(year + YEARS_AHEAD, 9998) + 1):
        lengths |= _lengths_in_year(duration, timezone, y)
    return frozenset(lengths)


def _near(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) < TOLERANCE_SECONDS


def _is_boundary(budget: Budget, instant: Decimal) -> bool:
    """Whether `instant` is (within the tolerance) a period boundary of a calendar budget."""
    assert budget.duration is not None
    if not 0 < instant < Decimal("1e11"):
        return False
    period = calendar_period(budget.duration, budget.timezone, instant)
    return _near(period.start, instant) or _near(period.end, instant)


def _keeps_rule(stored: Budget, entry: LitellmEntry, now: Decimal) -> bool:
    """True when the entry's ``duration`` is one the stored rule could have handed a client.

    ``get_budget`` reports a calendar budget as ``duration`` = its current period's length and
    ``last_updated_at`` = the period's start. A client keeps that length across boundaries (one
    that loaded in January sends 31 back in February, and after its own reset), so any length a
    period of the rule has (``rule_lengths``) keeps the rule, as does an entry whose period ends
    on one of the rule's boundaries (a period shortened by a manual reset). litellm's own
    ``create_budget`` words map to 1, 7, 28 and 365 days, which are lengths of the daily, weekly,
    monthly and yearly rules, so naming the same rule keeps it too; a length of another rule is
    a change to a rolling period of that many days.
    """
    if entry.duration is None:
        return False
    seconds = entry.duration * SECONDS_PER_DAY
    if stored.duration is None:
        return stored.duration_days is not None and _near(stored.duration_days * SECONDS_PER_DAY, seconds)
    if any(_near(seconds, Decimal(length)) for length in rule_lengths(stored.duration, stored.timezone, now)):
        return True
    return entry.last_updated_at is not None and _is_boundary(stored, entry.last_updated_at + seconds)


def _handed_out(settings: Budget, start: Decimal, seconds: Decimal) -> bool:
    """Whether [start, start + seconds) is a period ``get_budget`` reported before the current one
    began: a calendar period of the rule, or the period a manual reset cut short (it started at
    ``previous_period_start`` and ran to the same calendar ``reset_at``, or for a rolling rule for
    its length). A client's own reset at that very instant with another length is not one."""
    before_reset = settings.previous_period_start is not None and _near(start, settings.previous_period_start)
    if settings.duration is not None:
        period = calendar_period(settings.duration, settings.timezone, start)
        if _near(period.start, start) and _near(period.end - period.start, seconds):
            return True
        return before_reset and settings.reset_at is not None and _near(start + seconds, settings.reset_at)
    return (
        before_reset
        and settings.duration_days is not None
        and _near(settings.duration_days * SECONDS_PER_DAY, seconds)
    )


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
    budget = budget._replace(period_start=start, reset_at=None).with_period_from(start)
    # An entry whose own period has already ended brings no spend into the current one.
    return budget.as_of(now)


def merge_entry(stored: Budget | None, entry: LitellmEntry, now: Decimal) -> Merge:
    """The budget to store after `entry` arrives for a user stored as `stored` (None: new)."""
    if stored is None:
        raise ValueError("use new_budget_from_entry for users not stored yet")
    current = stored.as_of(now)
    # litellm stamps last_updated_at with its own clock: one ahead of ours must not plant a
    # period start in the future.
    client_start = min(entry.last_updated_at, now) if entry.last_updated_at is not None else None

    # Settings: the entry's replace the stored ones, unless it sends back what the rule gave it.
    if entry.duration is None:
        settings = current._replace(
            duration=None,
            duration_days=None,
            timezone=None,
            period_start=None,
            reset_at=None,
            previous_period_start=None,
        )
    elif _keeps_rule(current, entry, now):
        settings = current
    else:  # a new rolling rule; its period runs from the client's period start
        anchor = client_start if client_start is not None else current.period_start or now
        settings = current._replace(
            duration=None,
            duration_days=entry.duration,
            timezone=None,
            period_start=anchor,
            previous_period_start=None,
        ).with_period_from(now)
    settings = settings._replace(total_budget=entry.total_budget)

    # Spend: where does the entry's own period lie against the server's current one?
    stale = uncertain = False
    # The client's reset re-anchors a rolling period but keeps its spend (never dropped): nothing
    # is replaced, so nothing is closed here; `replaced` stays None (the history's record of replaced
    # spend has nothing to record under this merge).
    replaced: ClosedPeriod | None = None
    start = settings.period_start
    if client_start is None or start is None or entry.duration is None:
        spend = _max_spend(settings, entry)
    elif client_start >= start:
        # The client loaded this period or reset itself in it: everything it holds was recorded
        # since `start`. A rolling period restarts at a client's later reset (litellm's rule), and
        # keeps what others recorded since `start` (never dropped; at most the few seconds
        # between the server's rollover and the client's reset are counted in the new period).
        if settings.duration is None and client_start > start:
            settings = settings._replace(period_start=client_start).with_period_from(client_start)
        spend = _max_spend(settings, entry)
    elif client_start + entry.duration * SECONDS_PER_DAY <= start + TOLERANCE_SECONDS or _handed_out(
        settings, client_start, entry.duration * SECONDS_PER_DAY
    ):
        stale, spend = True, (settings.current_cost, dict(settings.model_cost))
    else:
        uncertain, spend = True, _max_spend(settings, entry)

    merged = settings._replace(current_cost=spend[0], model_cost=spend[1], updated_at=now)
    return Merge(merged, stale_spend_ignored=stale, uncertain_spend_kept=uncertain, replaced=replaced)


def same_state(a: Budget, b: Budget) -> bool:
    """True when storing `b` over `a` would change nothing a reader can see."""
    ignore = {"updated_at", "version", "write_ids"}
    return all(getattr(a, name) == getattr(b, name) for name in Budget._fields if name not in ignore)
