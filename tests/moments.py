"""Instants for tests, written as ISO local times: exact Decimal epoch seconds, as the service keeps them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

UTC = dt.UTC


def at(text: str, tz: str | None = None) -> Decimal:
    """Epoch seconds of an ISO local time in `tz` (UTC when None); exact to the microsecond."""
    moment = dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz) if tz else UTC)
    whole = int(moment.replace(microsecond=0).timestamp())
    return Decimal(whole) + Decimal(moment.microsecond) / Decimal(10**6)


def utc(text: str) -> Decimal:
    return at(text)
