"""litellm's hosted protocol: its entries to budgets, and the ``set_budget`` merge rules.

litellm's ``BudgetManager`` keeps the user dict ``get_budget`` served and posts all of it on every
``save_data`` (litellm/budget_manager.py): ``update_cost`` adds each cost to ``current_cost`` and
``model_cost``; ``reset_on_duration`` zeroes both and sets ``last_updated_at`` to its own
``time.time()`` once ``now - last_updated_at >= duration`` days; ``create_budget`` replaces the
entry, with ``created_at = last_updated_at`` of its choosing. Nothing else in an entry changes.

So the server does not guess from timestamps what a client's totals hold. ``get_budget`` hands
each user's entry out with a fresh ``created_at`` marker (the budget's creation second plus a
random fraction) and records what it served under that marker (core.records.Lineage, one per
client copy); a ``create_budget`` value is recorded the first time it is seen. A save of a known
copy is then exact, per user:

* new spend: the entry's totals minus what this copy had counted for its ``last_updated_at``
  (what it was served, then what its previous saves brought); after the client's own reset (a
  new ``last_updated_at``) all of its totals are new. Totals below what was counted are a save
  that arrived after a later one (litellm saves from a thread per change) and add nothing; so
  does litellm's ``reset_cost``, which zeroes totals without a new ``last_updated_at``, until
  they pass what was counted. New spend is added to
  the server's current period once (a resent save adds nothing); when it may have been spent
  before that period began (the copy's last counted moment is earlier: a rollover or a manual
  reset came between), the user is listed in ``uncertain_spend_kept``: counted in the current
  period, since the server cannot tell which period it was spent in;
* settings: ``total_budget`` and ``duration`` change only when they differ from what this copy
  was served or last sent (a caller setting a new one); an echo, such as the days left of a
  calendar period after a manual reset, never changes the rule or its timezone.

Users not stored yet are created with their spend (in the current period of the entry's rolling
rule; ``uncertain_spend_kept`` when the entry's own period had already ended). An entry with no
record of its copy falls back to ``legacy_merge`` (spend merged as the larger, reported).
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
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
from budget_service.core.records import COUNTED_KEPT, ZERO, Budget, ClosedPeriod, Counted, Lineage
from budget_service.schemas import LitellmEntry
from budget_service.schemas.common import quantize_money

# Entries come back through a JSON float: a period length of 30.958333... days is 1e-7 s off.
TOLERANCE_SECONDS = Decimal(1)
# The years whose period lengths a calendar rule is matched against, around now: a leap year
# and both DST transitions are always among them.
YEARS_BACK, YEARS_AHEAD = 5, 1


class Merge(NamedTuple):
    """The budget to store, what became of the entry's spend (at most one flag is set), and the
    client copy's next recorded state (None: nothing to record)."""

    budget: Budget
    stale_spend_ignored: bool = False
    uncertain_spend_kept: bool = False
    # Kept for callers that record a closed period with the write; no merge closes one today.
    replaced: ClosedPeriod | None = None
    lineage: Lineage | None = None


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
    """The budget a user not stored yet gets from `entry` (see ``create_from_entry``)."""
    return create_from_entry(project, user, entry, now).budget


def create_from_entry(project: str, user: str, entry: LitellmEntry, now: Decimal) -> Merge:
    """A user new to the server: its budget, with all of the entry's spend, and its copy's record.

    A ``duration`` is a rolling rule anchored at the entry's ``last_updated_at`` (litellm's
    ``create_budget`` may stamp an import-time ``created_at``, so that period may have ended):
    the spend counts in the window of that rule containing `now`, flagged uncertain when the
    entry's own period began before it (it may have been spent in an earlier window).
    """
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
    uncertain = False
    if entry.duration is not None:
        anchor = min(entry.last_updated_at, now) if entry.last_updated_at is not None else now
        budget = budget._replace(period_start=anchor, reset_at=None).with_period_from(now)
        assert budget.period_start is not None
        uncertain = current_cost > 0 and anchor < budget.period_start
    return Merge(
        budget, uncertain_spend_kept=uncertain, lineage=_next_lineage(project, user, entry, None, now)
    )


def _next_lineage(
    project: str,
    user: str,
    entry: LitellmEntry,
    known: Lineage | None,
    now: Decimal,
    counted: tuple[Counted, ...] | None = None,
) -> Lineage | None:
    """The copy's record after this save (None: no ``created_at`` to name it). `counted`: the
    counts to keep (default: the entry's totals as the only ones)."""
    if entry.created_at is None:
        return None
    if counted is None:
        counted = (Counted(entry.last_updated_at, entry.current_cost or ZERO, dict(entry.model_cost or {})),)
    return Lineage(
        project=project,
        user=user,
        marker=entry.created_at,
        total_budget=entry.total_budget,
        duration=entry.duration,
        counted=counted,
        acked_at=now,
        version=known.version if known is not None else 0,
    )


def served_form(value: Decimal, quantum: Decimal | None = None) -> Decimal:
    """`value` as a litellm client sends it back: read as a float from the JSON served, written
    with ``repr``, parsed and quantized as the request models do (money by default)."""
    echoed = Decimal(repr(float(value)))
    return quantize_money(echoed) if quantum is None else echoed.quantize(quantum).normalize()


def serve(budget: Budget, marker: Decimal, now: Decimal) -> tuple[dict, Lineage]:
    """The entry ``get_budget`` serves for `budget` (as of `now`) under `marker` (its
    ``created_at``), and the record of what was served, in the form the client sends it back."""
    from budget_service.core.numbers import DAYS_QUANTUM, EPOCH_QUANTUM

    entry = budget.as_of(now).to_litellm_entry()
    entry["created_at"] = marker
    duration, start = entry.get("duration"), entry.get("last_updated_at")
    lineage = Lineage(
        project=budget.project,
        user=budget.user,
        marker=marker,
        total_budget=served_form(entry["total_budget"]),
        duration=served_form(duration, DAYS_QUANTUM) if duration is not None else None,
        counted=(
            Counted(
                served_form(start, EPOCH_QUANTUM) if start is not None else None,
                served_form(entry["current_cost"]),
                {m: served_form(c) for m, c in entry["model_cost"].items()},
            ),
        ),
        acked_at=now,
    )
    return entry, lineage


def merge_entry(
    stored: Budget | None, entry: LitellmEntry, now: Decimal, lineage: Lineage | None = None
) -> Merge:
    """The budget to store after `entry` arrives for a user stored as `stored`, and the record of
    the entry's client copy: `lineage` is its record (None: unknown, or no ``created_at``).

    `stored` must have no ended period (the caller closes it first: ``records.roll``).
    """
    if stored is None:
        raise ValueError("use create_from_entry for users not stored yet")
    current = stored.as_of(now)
    if entry.created_at is None:  # nothing names the copy: the cautious merge
        return legacy_merge(current, entry, now)
    if lineage is None:
        if _second(entry.created_at) == _second(stored.created_at):
            # The budget's creation second, as get_budget serves it: a copy whose serving has no
            # record (served by an earlier version, or idle past the record's lifetime).
            merged = legacy_merge(current, entry, now)
            return merged._replace(lineage=_next_lineage(stored.project, stored.user, entry, None, now))
        # A copy the client made itself (create_budget): what it sets is explicit, and all of
        # its totals were added since.
        since = max(entry.created_at, entry.last_updated_at or entry.created_at)
        settings = _explicit_rule(current, entry, now)._replace(total_budget=entry.total_budget)
        return _count(settings, entry, None, min(since, now), now, None, ())
    return _merge_known(current, entry, lineage, now)


def _second(epoch: Decimal) -> Decimal:
    return epoch.to_integral_value(rounding=ROUND_FLOOR)


def _same(a: Decimal | None, b: Decimal | None) -> bool:
    """Equal as a value served and echoed (both come through a float; a relative 1e-9 is far
    below any change a caller makes and far above a float's rounding)."""
    if a is None or b is None:
        return a is b
    return abs(a - b) <= Decimal("1e-9") * max(Decimal(1), abs(b))


def _merge_known(current: Budget, entry: LitellmEntry, lineage: Lineage, now: Decimal) -> Merge:
    """A save of a copy the server has a record of: only the totals beyond what was counted for
    the entry's ``last_updated_at`` are new."""
    settings = current
    # An entry with no spend fields at all is create_budget's, again (litellm's default
    # created_at is one import-time value, so a process's every create_budget names one copy):
    # what it says is set explicitly, even when the same as before. Its counts stay: the same
    # entry also rides, late, on the background saves of the create_budget calls that follow.
    fresh = entry.current_cost is None and entry.model_cost is None
    if fresh or not _same(entry.total_budget, lineage.total_budget):
        settings = settings._replace(total_budget=entry.total_budget)
    if fresh or not _same(entry.duration, lineage.duration):
        settings = _explicit_rule(settings, entry, now)
    earlier = [c for c in lineage.counted if not _same(c.last_updated_at, entry.last_updated_at)]
    base = next((c for c in lineage.counted if _same(c.last_updated_at, entry.last_updated_at)), None)
    since = lineage.acked_at
    if base is None:
        newest = max(
            (c.last_updated_at for c in lineage.counted if c.last_updated_at is not None), default=None
        )
        if entry.last_updated_at is not None and newest is not None and entry.last_updated_at < newest:
            # A save from before resets the copy made since, older than its kept counts: the
            # client dropped that spend in its reset; whatever of it was counted stays counted.
            return Merge(settings._replace(updated_at=now), stale_spend_ignored=True)
        # The client reset (litellm stamps last_updated_at with its clock): every total is new,
        # spent after that reset and after the last count.
        if entry.last_updated_at is not None:
            since = max(since, min(entry.last_updated_at, now))
    return _count(settings, entry, base, since, now, lineage, tuple(earlier))


def _count(
    settings: Budget,
    entry: LitellmEntry,
    base: Counted | None,
    since: Decimal,
    now: Decimal,
    lineage: Lineage | None,
    earlier: tuple[Counted, ...],
) -> Merge:
    """Add the entry's totals beyond `base` (what was counted for its ``last_updated_at``; None:
    nothing) to the current period, as spent after `since`. Totals below `base` are a save that
    arrived after a later one of the same copy: nothing of them is new."""
    base_cost = base.current_cost if base is not None else ZERO
    base_models = base.model_cost if base is not None else {}
    models = dict(settings.model_cost)
    counted_models = dict(base_models)
    added = False
    for model, total in (entry.model_cost or {}).items():
        extra = total - base_models.get(model, ZERO)
        if extra > 0:
            models[model] = SUM_CONTEXT.add(models.get(model, ZERO), extra)
            counted_models[model] = total
            added = True
    sent_cost = entry.current_cost or ZERO
    extra_cost = max(sent_cost - base_cost, ZERO)
    cost = max(SUM_CONTEXT.add(settings.current_cost, extra_cost), _sum(models))
    added = added or extra_cost > 0
    before_period = settings.period_start is not None and since < settings.period_start
    merged = settings._replace(current_cost=cost, model_cost=models, updated_at=now)
    now_counted = Counted(entry.last_updated_at, max(sent_cost, base_cost), counted_models)
    kept = tuple(
        sorted((now_counted, *earlier), key=lambda c: c.last_updated_at or ZERO, reverse=True)[:COUNTED_KEPT]
    )
    record = _next_lineage(settings.project, settings.user, entry, lineage, now, kept)
    return Merge(merged, uncertain_spend_kept=added and before_period, lineage=record)


def same_lineage(a: Lineage | None, b: Lineage | None) -> bool:
    """True when recording `b` over `a` would change nothing but the moment it was counted."""
    if a is None or b is None:
        return a is b
    return a._replace(acked_at=ZERO, version=0) == b._replace(acked_at=ZERO, version=0)


def _explicit_rule(current: Budget, entry: LitellmEntry, now: Decimal) -> Budget:
    """`current` with the period rule `entry` sets: none, the stored one (a length of it), or a
    new rolling rule anchored at the entry's period start."""
    client_start = min(entry.last_updated_at, now) if entry.last_updated_at is not None else None
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
    return settings


def legacy_merge(stored: Budget, entry: LitellmEntry, now: Decimal) -> Merge:
    """The merge for an entry whose client copy the server has no record of (one loaded from an
    earlier version of this service, or idle past the record's lifetime): the entry's own period
    against the server's, spend merged as the larger (never added: it may hold what was served)."""
    current = stored.as_of(now)
    client_start = min(entry.last_updated_at, now) if entry.last_updated_at is not None else None
    settings = _explicit_rule(current, entry, now)._replace(total_budget=entry.total_budget)

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
