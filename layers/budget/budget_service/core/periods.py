"""Budget periods.

Two kinds, both pure functions of (rule, anchor, now):

* calendar periods (native budgets): daily at 00:00, weekly on Monday 00:00, monthly on the 1st,
  yearly on 1 January, in UTC or in the budget's IANA timezone;
* rolling periods (budgets written by litellm with a numeric ``duration`` in days): back-to-back
  windows of that length starting at the anchor, so ``now - start >= duration`` means "ended",
  exactly as litellm's ``reset_on_duration`` decides.

Times are epoch seconds as ``Decimal``, the type DynamoDB numbers come back as.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import ROUND_FLOOR, Decimal
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SECONDS_PER_DAY = Decimal(86400)
UTC = dt.UTC


class Duration(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    YEARLY = "yearly"


class Period(NamedTuple):
    start: Decimal
    end: Decimal

    @property
    def length_days(self) -> Decimal:
        return (self.end - self.start) / SECONDS_PER_DAY


@lru_cache(maxsize=1)
def iana_names() -> frozenset[str]:
    """The names a budget's timezone may take: the IANA time zone database's, as the pinned
    ``tzdata`` package lists them (its ``zones`` file, 598 names in 2026.6, links such as
    ``US/Eastern`` included). ``ZoneInfo`` also opens the host's own files (``localtime``,
    ``posixrules``, ``right/...``, ``posix/...``), whose meaning depends on the machine the
    function runs on; a budget's calendar must not."""
    from importlib.resources import files

    return frozenset(files("tzdata").joinpath("zones").read_text(encoding="utf-8").split())


def check_timezone_name(name: str) -> None:
    """Raises ValueError unless `name` is an IANA timezone (``iana_names``) that loads."""
    if name not in iana_names():
        raise ValueError(
            f"unknown IANA timezone {name!r} (a name of the IANA time zone database, e.g. Europe/Paris)"
        )
    zone(name)


@lru_cache(maxsize=256)
def zone(name: str | None) -> dt.tzinfo:
    """The tzinfo for an IANA name (UTC when None). Raises ValueError for an unknown name."""
    if name is None:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA timezone {name!r}") from exc


def to_datetime(epoch: Decimal) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(epoch), UTC)


def to_epoch(moment: dt.datetime) -> Decimal:
    # Local boundaries are whole seconds; keep them exact.
    return Decimal(int(moment.timestamp()))


def _period_start_date(duration: Duration, day: dt.date) -> dt.date:
    if duration is Duration.DAILY:
        return day
    if duration is Duration.WEEKLY:
        return day - dt.timedelta(days=day.weekday())
    if duration is Duration.MONTHLY:
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def _next_start_date(duration: Duration, start: dt.date) -> dt.date:
    if duration is Duration.DAILY:
        return start + dt.timedelta(days=1)
    if duration is Duration.WEEKLY:
        return start + dt.timedelta(days=7)
    if duration is Duration.MONTHLY:
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start.replace(year=start.year + 1)


def _local_midnight(day: dt.date, tz: dt.tzinfo) -> Decimal:
    return to_epoch(dt.datetime(day.year, day.month, day.day, tzinfo=tz))


def calendar_period(duration: Duration, timezone: str | None, now: Decimal) -> Period:
    """The calendar period of `duration` in `timezone` that contains the instant `now`."""
    tz = zone(timezone)
    # Boundaries are whole seconds, so the floor of `now` is in the same period; it converts
    # exactly, where a float of an epoch with nanoseconds can round up across a boundary.
    local_day = to_datetime(now.to_integral_value(rounding=ROUND_FLOOR)).astimezone(tz).date()
    start_day = _period_start_date(duration, local_day)
    start = _local_midnight(start_day, tz)
    end = _local_midnight(_next_start_date(duration, start_day), tz)
    if now < start:  # a guard: cannot happen for the floor of `now` above
        return calendar_period(duration, timezone, start - 1)
    return Period(start, end)


def rolling_period(anchor: Decimal, days: Decimal, now: Decimal) -> Period:
    """The window of `days` containing `now`, in the back-to-back series starting at `anchor`."""
    length = days * SECONDS_PER_DAY
    if now < anchor:
        return Period(anchor, anchor + length)
    elapsed = ((now - anchor) / length).to_integral_value(rounding=ROUND_FLOOR)
    start = anchor + elapsed * length
    return Period(start, start + length)
