"""A clock for ``make dev`` that can be moved forward, so periods end without waiting.

``POST /_local/clock {"advance_s": 86400}`` moves the handlers' "now" (``budgets.utc_now``, which
every handler and the domain use) a day ahead; ``GET /_local/clock`` shows the offset. Only
forward: time that went back would let a period end twice. The stream's record times, the
scheduler and the server's own logs keep the real time.
"""

from __future__ import annotations

import threading
import time as _real_time


class LocalClock:
    """Stands in for the ``time`` module in budget_service.budgets: ``time()`` plus an offset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.offset_s = 0.0

    def time(self) -> float:
        return _real_time.time() + self.offset_s

    def __getattr__(self, name):  # anything else the module might use: the real one
        return getattr(_real_time, name)

    def advance(self, seconds: float) -> float:
        if not seconds >= 0:
            raise ValueError("the clock only moves forward: advance_s must be >= 0")
        with self._lock:
            self.offset_s += float(seconds)
            return self.offset_s

    def install(self) -> LocalClock:
        import budget_service.budgets as budgets  # on sys.path once the functions are loaded

        budgets.time = self
        return self
