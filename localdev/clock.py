"""The local runtime's clock: the wall clock, or one shifted to another instant.

``make dev`` installs it as the service's clock (``budget_service.core.clock.use``), so handlers, lazy
rollovers and the local scheduler all read it. ``LOCAL_CLOCK_START=2027-01-31T23:59:00Z`` starts
it at that instant, running forward in real time from there; ``POST /_local/clock`` moves it
(``{"now": iso}`` or ``{"advance_seconds": n}``, optionally ``"frozen": true`` to stop it where
it is put, which tests use), and ``GET /_local/clock`` shows it. Lambda in AWS never loads this.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping

ENV_START = "LOCAL_CLOCK_START"
ENV_FROZEN = "LOCAL_CLOCK_FROZEN"


class ClockError(ValueError):
    """A clock setting that cannot be used (the message says why)."""


def parse_instant(text: str) -> float:
    """Epoch seconds of an ISO 8601 instant with a zone (``Z`` or ``+hh:mm``)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise ClockError(f"{text!r} is not an ISO 8601 instant (e.g. 2027-01-31T23:59:00Z)") from exc
    if moment.tzinfo is None:
        raise ClockError(f"{text!r} has no zone; add Z for UTC or an offset like +01:00")
    return moment.timestamp()


def iso(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class LocalClock:
    """Epoch seconds: the wall clock plus an offset, or a frozen instant.

    Thread-safe; `on_change(old, new)` callbacks run after every move (the scheduler wakes up).
    """

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen_at: float | None = None
        self.listeners: list[Callable[[float, float], None]] = []

    def time(self) -> float:
        with self._lock:
            return self._frozen_at if self._frozen_at is not None else self._wall() + self._offset

    def set(self, now: float, *, frozen: bool | None = None) -> None:
        """Put the clock at `now`; it runs on from there unless frozen (None: as it was)."""
        with self._lock:
            old = self._frozen_at if self._frozen_at is not None else self._wall() + self._offset
            keep_frozen = self._frozen_at is not None if frozen is None else frozen
            self._frozen_at = now if keep_frozen else None
            self._offset = now - self._wall()
        self._changed(old, now)

    def advance(self, seconds: float, *, frozen: bool | None = None) -> None:
        self.set(self.time() + seconds, frozen=frozen)

    def _changed(self, old: float, new: float) -> None:
        for listener in list(self.listeners):
            listener(old, new)

    def state(self) -> dict:
        now = self.time()
        with self._lock:
            frozen = self._frozen_at is not None
        return {
            "now": iso(now),
            "epoch": now,
            "shifted_by_seconds": round(now - self._wall(), 6),
            "frozen": frozen,
        }

    def apply(self, body: Mapping) -> dict:
        """A ``POST /_local/clock`` body: ``{"now": iso}`` or ``{"advance_seconds": n}``, and
        optionally ``"frozen": bool``. Returns the new state; ClockError for a bad body."""
        if not isinstance(body, Mapping):
            raise ClockError('send a JSON object: {"now": "2027-01-31T23:59:00Z"} or {"advance_seconds": 60}')
        unknown = set(body) - {"now", "advance_seconds", "frozen"}
        if unknown:
            raise ClockError(f"unknown field(s): {', '.join(sorted(unknown))}")
        frozen = body.get("frozen")
        if frozen is not None and not isinstance(frozen, bool):
            raise ClockError("frozen must be true or false")
        if ("now" in body) == ("advance_seconds" in body):
            raise ClockError('give exactly one of "now" (ISO 8601) and "advance_seconds" (a number)')
        if "now" in body:
            if not isinstance(body["now"], str):
                raise ClockError('"now" must be an ISO 8601 string')
            self.set(parse_instant(body["now"]), frozen=frozen)
        else:
            seconds = body["advance_seconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise ClockError('"advance_seconds" must be a number')
            self.advance(float(seconds), frozen=frozen)
        return self.state()


def from_environ(environ: Mapping[str, str]) -> LocalClock:
    """The clock ``make dev`` runs on: shifted to ``LOCAL_CLOCK_START`` when it is set
    (``LOCAL_CLOCK_FROZEN=1`` stops it there), else the wall clock."""
    clock = LocalClock()
    start = environ.get(ENV_START, "").strip()
    frozen = environ.get(ENV_FROZEN, "").strip().lower() in ("1", "true", "yes", "on")
    if start:
        clock.set(parse_instant(start), frozen=frozen)
    return clock
