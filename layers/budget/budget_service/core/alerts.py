"""Budget threshold alerts: which thresholds a change to a budget level crossed, and
sending each crossing once as a ``Budget Threshold Crossed`` event.

Input is one DynamoDB stream record of the table (NEW_AND_OLD_IMAGES): the item before and after
a write, as Python values (numbers as Decimal). Only budget *level* items count, whatever their
level, because they all use the same attribute names (the table's shared data model):

* user    ``pk = PROJECT#<project>``, ``sk = USER#<user>``
* team    ``pk = PROJECT#<project>``, ``sk = TEAM#<team>``
* project ``pk = PROJECT#<project>``, ``sk = PROJECT``

Everything else (holds, ledger, closed periods, alerts themselves) is ignored.

The rule. A level's *alert period* starts at the later of its ``period_start`` and its
``last_reset_at`` (a manual reset), else at ``created_at`` for a budget that has neither. A
threshold ``t`` is *reached* by a state when ``spend > 0`` and ``spend >= t * total_budget``.
A change crosses ``t`` when the new state reaches it and the old state does not, where an old
state of an earlier alert period (or no old state) counts as reaching nothing. Spend is
``current_cost``; holds (``held``) are not spend until settled.

With a fixed total this is the usual ``old_spend < t * total <= new_spend`` (old spend counting
as 0 across a period boundary). Each state is judged against its own total, so raising a budget
above its spend re-arms the thresholds it uncovers, and lowering it below its spend fires the
thresholds that spend now passes, once.

Each crossing gets a stable ``alert_id``: a hash of project, level, id, alert period start,
threshold and total budget. A redelivered record gives the same id; a new period or a new total
gives new ids. Delivery (``deliver``) records each id sent in the table (``sk = ALERT#<id>``) after
EventBridge accepted it and skips ids already recorded, so a redelivered batch puts no second
event, and a threshold crossed again in the same period (after a credit lowered spend) does not
fire again. The one gap is a failure between PutEvents and that record: the retry puts the event
again with the same ``alert_id`` (at least once; consumers that must not see a duplicate dedupe
on ``alert_id``). A crossing is never dropped: if PutEvents fails, the record fails and the
stream retries it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import NamedTuple, Protocol

from budget_service.core.numbers import DECIMAL_CONTEXT
from budget_service.core.records import iso

EVENT_SOURCE = "llm-budget"
DETAIL_TYPE = "Budget Threshold Crossed"
PROJECT_PREFIX = "PROJECT#"
LEVEL_PREFIXES = {"USER#": "user", "TEAM#": "team"}
PROJECT_SK = "PROJECT"
# The service default when neither the budget nor its project names thresholds (template
# parameter AlertDefaultThresholds -> this variable).
DEFAULT_THRESHOLDS_ENV = "ALERT_DEFAULT_THRESHOLDS"
FALLBACK_THRESHOLDS = (Decimal("0.8"), Decimal("1"))
ZERO = Decimal(0)


def parse_thresholds(text: str | None) -> tuple[Decimal, ...]:
    """``"0.8,1"`` -> (Decimal('0.8'), Decimal('1')): sorted, unique, each in (0, 10].

    Raises ValueError for anything else (a bad deployment parameter should fail loudly)."""
    if text is None or not text.strip():
        return ()
    values = set()
    for part in text.split(","):
        value = Decimal(part.strip())
        if not (ZERO < value <= 10):
            raise ValueError(f"alert threshold {part!r} is not in (0, 10]")
        values.add(value.normalize(DECIMAL_CONTEXT))
    return tuple(sorted(values))


def service_default_thresholds() -> tuple[Decimal, ...]:
    """The deployment's default thresholds (``ALERT_DEFAULT_THRESHOLDS``, e.g. ``0.8,1``)."""
    text = os.environ.get(DEFAULT_THRESHOLDS_ENV)
    return FALLBACK_THRESHOLDS if text is None else parse_thresholds(text)


class LevelState(NamedTuple):
    """One budget level as a stream image shows it. Money in USD, times in epoch seconds."""

    project: str
    level: str  # "user", "team" or "project"
    level_id: str  # the user, the team, or the project's own name
    total_budget: Decimal
    spend: Decimal
    alert_period_start: Decimal
    period_end: Decimal | None
    thresholds: tuple[Decimal, ...] | None  # None: inherit the project default

    def reaches(self, threshold: Decimal) -> bool:
        return self.spend > ZERO and self.spend >= DECIMAL_CONTEXT.multiply(threshold, self.total_budget)

    def same_alert_period(self, other: LevelState) -> bool:
        return (self.project, self.level, self.level_id, self.alert_period_start) == (
            other.project,
            other.level,
            other.level_id,
            other.alert_period_start,
        )


def level_key(pk: str, sk: str) -> tuple[str, str, str] | None:
    """(project, level, id) for a level item's key; None for any other item."""
    if not pk.startswith(PROJECT_PREFIX):
        return None
    project = pk[len(PROJECT_PREFIX) :]
    if sk == PROJECT_SK:
        return project, "project", project
    for prefix, level in LEVEL_PREFIXES.items():
        if sk.startswith(prefix):
            return project, level, sk[len(prefix) :]
    return None


def level_state(item: dict | None) -> LevelState | None:
    """The level an item (plain values) is, or None: not a level item, or not a budget yet."""
    if not item or "pk" not in item or "sk" not in item:
        return None
    key = level_key(item["pk"], item["sk"])
    if key is None or item.get("total_budget") is None:
        return None
    starts = [item[k] for k in ("period_start", "last_reset_at") if item.get(k) is not None]
    start = max(starts) if starts else item.get("created_at", ZERO)
    thresholds = item.get("alert_thresholds")
    return LevelState(
        project=key[0],
        level=key[1],
        level_id=key[2],
        total_budget=Decimal(item["total_budget"]),
        spend=Decimal(item.get("current_cost", ZERO)),
        alert_period_start=Decimal(start),
        period_end=item.get("reset_at"),
        thresholds=tuple(Decimal(t) for t in thresholds) if thresholds is not None else None,
    )


def _plain_number(value: Decimal) -> str:
    return format(value.normalize(DECIMAL_CONTEXT), "f")


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


class Alert(NamedTuple):
    """One threshold crossed by one level in one alert period."""

    project: str
    level: str
    level_id: str
    threshold: Decimal
    spend: Decimal
    total_budget: Decimal
    period_start: Decimal
    period_end: Decimal | None
    crossed_at: Decimal  # epoch seconds: when the write that crossed it happened

    @property
    def alert_id(self) -> str:
        """Stable over redeliveries; new for a new period or a new total (which re-arms)."""
        parts = [
            self.project,
            self.level,
            self.level_id,
            _plain_number(self.period_start),
            _plain_number(self.threshold),
            _plain_number(self.total_budget),
        ]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]

    def detail(self) -> dict:
        """The event's ``detail`` (JSON-ready; money as JSON numbers, times ISO 8601 UTC)."""
        return {
            "alert_id": self.alert_id,
            "project": self.project,
            "level": self.level,
            "id": self.level_id,
            "threshold": _json_number(self.threshold),
            "spend": _json_number(self.spend),
            "total_budget": _json_number(self.total_budget),
            "period_start": iso(self.period_start),
            "period_end": iso(self.period_end),
            "crossed_at": iso(self.crossed_at),
        }


def crossed_thresholds(
    old: LevelState | None, new: LevelState, thresholds: Iterable[Decimal]
) -> list[Decimal]:
    """The thresholds `new` reaches and `old` (when in the same alert period) did not; ascending."""
    prior = old if old is not None and old.same_alert_period(new) else None
    return sorted(t for t in set(thresholds) if new.reaches(t) and not (prior and prior.reaches(t)))


def may_cross(old: LevelState | None, new: LevelState) -> bool:
    """False when no threshold can have been crossed (so no thresholds need looking up)."""
    if new.spend <= ZERO:
        return False
    if old is None or not old.same_alert_period(new):
        return True
    return new.spend > old.spend or new.total_budget != old.total_budget


def alerts_for_change(
    old_item: dict | None,
    new_item: dict | None,
    crossed_at: Decimal,
    project_thresholds: Callable[[str], Sequence[Decimal]],
) -> list[Alert]:
    """The alerts one write (old item -> new item) raises, ascending by threshold.

    `project_thresholds(project)` gives the thresholds a level without its own uses (the
    project's default, else the service default); it is called only when a crossing is possible.
    A deleted item (no new image) raises none.
    """
    new = level_state(new_item)
    if new is None:
        return []
    old = level_state(old_item)
    if not may_cross(old, new):
        return []
    thresholds = new.thresholds if new.thresholds is not None else project_thresholds(new.project)
    return [
        Alert(
            project=new.project,
            level=new.level,
            level_id=new.level_id,
            threshold=t,
            spend=new.spend,
            total_budget=new.total_budget,
            period_start=new.alert_period_start,
            period_end=new.period_end,
            crossed_at=crossed_at,
        )
        for t in crossed_thresholds(old, new, thresholds)
    ]


# ---- delivery ------------------------------------------------------------------------------------


class AlertLedger(Protocol):
    """Which alert ids were sent (budget_service.store.alerts.AlertLedgerStore)."""

    def already_sent(self, alert: Alert) -> bool: ...

    def mark_sent(self, alert: Alert) -> None: ...


class AlertBus(Protocol):
    """Where events go (budget_service.store.alerts.EventBridgeBus)."""

    def put(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Put one event per alert, in order; returns the alerts whose entries failed."""
        ...


class AlertDeliveryFailed(Exception):
    """EventBridge refused some entries; the stream record must be retried."""


def deliver(alerts: Sequence[Alert], ledger: AlertLedger, bus: AlertBus) -> list[Alert]:
    """Put the alerts not sent yet and record them as sent; returns those put now.

    Raises AlertDeliveryFailed when any entry failed (after recording the ones that went), so the
    record is retried and only the failed ones are put again.
    """
    pending = [a for a in alerts if not ledger.already_sent(a)]
    if not pending:
        return []
    failed = bus.put(pending)
    failed_ids = {a.alert_id for a in failed}
    sent = [a for a in pending if a.alert_id not in failed_ids]
    for alert in sent:
        ledger.mark_sent(alert)
    if failed:
        raise AlertDeliveryFailed(
            f"EventBridge refused {len(failed)} of {len(pending)} alert event(s); will retry"
        )
    return sent


def handle_change(
    old_item: dict | None,
    new_item: dict | None,
    crossed_at: Decimal,
    *,
    ledger: AlertLedger,
    bus: AlertBus,
    project_thresholds: Callable[[str], Sequence[Decimal]],
) -> list[Alert]:
    """One stream record: the alerts it raises, each put once. Returns the alerts put now."""
    alerts = alerts_for_change(old_item, new_item, crossed_at, project_thresholds)
    return deliver(alerts, ledger, bus) if alerts else []
