"""The budget entity: one user's budget in one project, as the domain sees it."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, localcontext
from types import MappingProxyType
from typing import Any, NamedTuple

from budget_service.core.numbers import DECIMAL_CONTEXT, plain_number
from budget_service.core.periods import Duration, Period, calendar_period, rolling_period, to_datetime

ZERO = Decimal(0)
# The default of a mapping field: read-only, so the one instance every default shares stays empty.
NO_ENTRIES: Mapping[str, Any] = MappingProxyType({})


def iso(epoch: Decimal | None) -> str | None:
    if epoch is None:
        return None
    return to_datetime(epoch).isoformat().replace("+00:00", "Z")


def rule_period(
    duration: Duration | None,
    duration_days: Decimal | None,
    timezone: str | None,
    period_start: Decimal | None,
    now: Decimal,
) -> Period | None:
    """The period a budget's rule puts `now` in: calendar, rolling from `period_start`, or None."""
    if duration is not None:
        return calendar_period(duration, timezone, now)
    if duration_days is not None:
        anchor = period_start if period_start is not None else now
        return rolling_period(anchor, duration_days, now)
    return None


class Budget(NamedTuple):
    project: str
    user: str
    total_budget: Decimal
    created_at: Decimal
    updated_at: Decimal
    current_cost: Decimal = ZERO
    model_cost: Mapping[str, Decimal] = NO_ENTRIES
    # Sum of the amounts of this budget's live holds (USD); kept across period rollovers.
    held: Decimal = ZERO
    # The team (a budget level of the project) the user's spend also counts toward.
    team: str | None = None
    # At most one of the two period rules is set: a calendar duration, or litellm's rolling days.
    duration: Duration | None = None
    duration_days: Decimal | None = None
    timezone: str | None = None
    period_start: Decimal | None = None
    reset_at: Decimal | None = None
    # The start of the period before the current one (closed by a rollover or a manual reset):
    # the last period start the server handed out before this one, which litellm clients that
    # loaded before the change still send back as their last_updated_at (see litellm_compat).
    previous_period_start: Decimal | None = None
    # Optimistic-concurrency counter; every write bumps it. 0 means "not stored yet".
    version: int = 0
    # Ids of the latest version-conditional writes (newest first): how a write whose answer was
    # lost recognises itself when botocore's retry fails the version condition (store.save).
    write_ids: tuple[str, ...] = ()
    # Alerts: fractions of total_budget to alert at; None inherits the project's
    # default, () turns alerts off for this budget. last_reset_at: when spend was last zeroed by
    # a manual reset, so alerts re-arm even when the calendar period_start stays the same.
    alert_thresholds: tuple[Decimal, ...] | None = None
    last_reset_at: Decimal | None = None

    @property
    def has_period(self) -> bool:
        return self.duration is not None or self.duration_days is not None

    def period_at(self, now: Decimal) -> Period | None:
        """The period this budget's rule puts `now` in (None for a budget without a period)."""
        return rule_period(self.duration, self.duration_days, self.timezone, self.period_start, now)

    def as_of(self, now: Decimal) -> Budget:
        """This budget as it stands at `now`: a period that has ended reads as rolled over."""
        if self.reset_at is None or now < self.reset_at:
            return self
        period = self.period_at(now)
        assert period is not None  # reset_at is only set on budgets with a period
        return self.with_spend_zeroed()._replace(
            period_start=period.start,
            reset_at=period.end,
            previous_period_start=self.period_start,
        )

    def with_period_from(self, now: Decimal) -> Budget:
        """Set period_start/reset_at from the rule: the period containing `now`."""
        period = self.period_at(now)
        if period is None:
            return self._replace(period_start=None, reset_at=None)
        return self._replace(period_start=period.start, reset_at=period.end)

    def with_spend_zeroed(self) -> Budget:
        return self._replace(current_cost=ZERO, model_cost={})

    @property
    def remaining(self) -> Decimal:
        return max(DECIMAL_CONTEXT.subtract(self.total_budget, self.current_cost), ZERO)

    @property
    def available(self) -> Decimal:
        """What a new hold may still reserve: ``total_budget - current_cost - held`` (USD).

        Stored on the item as ``available`` and moved by every write with ``SET available =
        available + :delta`` (a DynamoDB condition cannot add, so a hold's condition reads this
        stored headroom). Negative when spend outgrew the budget (spend is never refused).
        """
        with localcontext(DECIMAL_CONTEXT):
            return self.total_budget - self.current_cost - self.held

    def duration_label(self) -> str | None:
        if self.duration is not None:
            return self.duration.value
        if self.duration_days is not None:
            return f"rolling:{plain_number(self.duration_days)}d"
        return None

    def to_record(self) -> dict:
        """The native API's budget record."""
        return {
            "project": self.project,
            "user": self.user,
            "total_budget": self.total_budget,
            "current_cost": self.current_cost,
            "remaining": self.remaining,
            "held": self.held,
            "available": max(self.available, ZERO),
            "model_cost": dict(self.model_cost),
            "team": self.team,
            "duration": self.duration_label(),
            "timezone": self.timezone,
            "period_start": iso(self.period_start),
            "reset_at": iso(self.reset_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "alert_thresholds": (list(self.alert_thresholds) if self.alert_thresholds is not None else None),
        }

    def to_litellm_entry(self) -> dict:
        """The entry litellm's BudgetManager keeps for a user.

        A calendar budget reports its current period's length as ``duration`` and the period's
        start as ``last_updated_at``, so the client's own ``reset_on_duration`` fires exactly at
        our ``reset_at``.
        """
        entry: dict = {
            "total_budget": self.total_budget,
            "current_cost": self.current_cost,
            "model_cost": dict(self.model_cost),
        }
        if self.has_period and self.period_start is not None and self.reset_at is not None:
            entry["duration"] = (
                self.duration_days
                if self.duration_days is not None
                else Period(self.period_start, self.reset_at).length_days
            )
            entry["created_at"] = self.created_at
            entry["last_updated_at"] = self.period_start
        return entry


class DueReset(NamedTuple):
    """A budget as the due-for-reset index shows it: its key, the ``reset_at`` it is due at, and
    the rule attributes the index projects, which are all the next period needs."""

    project: str
    user: str
    reset_at: Decimal
    duration: Duration | None = None
    duration_days: Decimal | None = None
    timezone: str | None = None
    period_start: Decimal | None = None

    def next_period(self, now: Decimal) -> Period:
        """The period to reset into: the one the rule puts `now` in (a late run skips none)."""
        period = rule_period(self.duration, self.duration_days, self.timezone, self.period_start, now)
        if period is None:  # an index entry always has a rule; an item without one is not indexed
            raise ValueError(f"budget {self.project}/{self.user} has reset_at but no period rule")
        return period


# ---- history: what a write closes and what it records ------------------------------------------

USER_LEVEL = "USER"


class ClosedPeriod(NamedTuple):
    """A period (or the part of one a manual reset ended) as it closed: kept as its own item.

    ``start``/``end``: epoch seconds (``end`` is the period's ``reset_at`` for a rollover, the
    moment of the reset or delete otherwise); ``spend`` and ``model_cost`` in USD; ``held``: the
    live holds at close (they carry into the next period); ``closed_by``: ``rollover`` (lazily, in
    a write to the budget), ``job`` (the scheduled reset), ``reset`` (POST .../reset),
    ``set_budget`` (a litellm client reset its period), ``delete``. ``level``/``level_id``: which
    budget level (``USER`` and the user id; teams and the project use their own kinds).
    """

    project: str
    level: str
    level_id: str
    start: Decimal
    end: Decimal
    total_budget: Decimal
    spend: Decimal
    model_cost: dict[str, Decimal]
    held: Decimal
    closed_by: str
    closed_at: Decimal
    budget_created_at: Decimal | None = None

    @classmethod
    def of(cls, budget: Budget, *, end: Decimal, closed_at: Decimal, closed_by: str) -> ClosedPeriod:
        """The user budget's current period (spend as stored) closing at `end`. A budget without a
        period rule counts its spend from its ``created_at``."""
        start = budget.period_start if budget.period_start is not None else budget.created_at
        return cls(
            project=budget.project,
            level=USER_LEVEL,
            level_id=budget.user,
            start=min(start, end),
            end=end,
            total_budget=budget.total_budget,
            spend=budget.current_cost,
            model_cost=dict(budget.model_cost),
            held=budget.held,
            closed_by=closed_by,
            closed_at=closed_at,
            budget_created_at=budget.created_at,
        )


class AuditEntry(NamedTuple):
    """One change to a budget other than spend, for its audit ledger: ``action`` (``create``,
    ``settings``, ``reset``, ``delete``, ``adjustment``), when (epoch seconds), the API key id that
    made it (None when API keys are off, e.g. ``make dev``), and ``details`` (for settings: ``old``
    and ``new``)."""

    project: str
    level: str
    level_id: str
    action: str
    at: Decimal
    key_id: str | None
    details: Mapping[str, Any] = NO_ENTRIES


class Counted(NamedTuple):
    """What the server has counted of one litellm client copy's totals while its entry carried
    `last_updated_at` (None: an entry without a period): ``current_cost``, ``model_cost`` (USD)."""

    last_updated_at: Decimal | None
    current_cost: Decimal
    model_cost: Mapping[str, Decimal]


class Lineage(NamedTuple):
    """What one litellm client copy of a user's entry was served and has had counted since.

    litellm's hosted ``BudgetManager`` keeps the entry ``get_budget`` served and sends it back on
    every ``save_data``, adding each cost to ``current_cost`` and ``model_cost``; its own
    ``reset_on_duration`` zeroes both and sets ``last_updated_at`` to its clock. It never changes
    ``created_at`` (only ``create_budget`` does, to a value of its own). So ``created_at`` names the
    copy: ``get_budget`` serves each user a fresh ``marker`` there and records what it served; a
    ``create_budget`` value is recorded when first seen. Each save counts the part of the entry's
    totals beyond what was counted for its ``last_updated_at``, and records the new counts in the
    same transaction as the budget.

    ``counted``: per ``last_updated_at`` the copy has sent (newest first, at most COUNTED_KEPT):
    litellm saves from a background thread per change, so a save from before the client's reset
    can arrive after one from after it, and is counted against its own state. ``total_budget``/
    ``duration`` (days): as last served or set, so an echo is told from a change. ``acked_at``: when
    the copy was last served or counted (epoch seconds), the earliest moment its next additions
    can have been spent. ``version``: the item's optimistic-concurrency counter (0: not stored).
    """

    project: str
    user: str
    marker: Decimal
    total_budget: Decimal
    duration: Decimal | None
    counted: tuple[Counted, ...]
    acked_at: Decimal
    version: int = 0


# How many of a copy's periods (its resets) keep their counts: a late save from further back is
# from before several resets, whose spend litellm dropped.
COUNTED_KEPT = 4


class Write(NamedTuple):
    """What a change to a budget stores in one conditional write: the budget, the periods it
    closes and its audit entries (store.BudgetStore.update writes them in one transaction), and
    the litellm client copy whose counted state moves with it (``lineage``, conditional on its
    version in the same transaction)."""

    budget: Budget
    closed: tuple[ClosedPeriod, ...] = ()
    audit: tuple[AuditEntry, ...] = ()
    lineage: Lineage | None = None


def roll(budget: Budget, now: Decimal, *, closed_by: str = "rollover") -> Write:
    """`budget` with an ended period rolled over, and the closed period to record with it.

    The one place a rollover is decided: every path that rolls a stored period over (a cost or
    hold rolling it lazily, the scheduled job, a manual reset, PUT, set_budget) calls this and
    stores the Write in one conditional write, so a rollover never happens without its record.
    A period still running: the budget unchanged and nothing closed.
    """
    if budget.reset_at is None or now < budget.reset_at:
        return Write(budget)
    closed = ClosedPeriod.of(budget, end=budget.reset_at, closed_at=now, closed_by=closed_by)
    return Write(budget.as_of(now), closed=(closed,))
