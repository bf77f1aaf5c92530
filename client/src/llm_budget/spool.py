"""A bounded spool of cost records the service could not take when they were made.

The litellm callback records every call's cost after the call. When the service cannot be
reached then (an outage, a timeout; ``Unavailable``), the record is not lost: it goes into this
spool, and one background thread retries the spool, oldest first, until the service answers.
Every record carries its Idempotency-Key (a settle is keyed by its hold), so a record that
reached the service before its answer was lost is still charged once.

Bounded: at most ``max_records``. When full, the oldest record is dropped to make room, and each
drop is logged at ERROR with its user, key and cost (and counted in ``dropped`` and
``dropped_cost``), so an operator knows exactly what was not recorded. A record the service
refuses for good (a 4xx: an unknown user, a malformed record) is dropped and logged the same way.
The spool lives in the process: records still in it when the process ends are lost, and
``close`` logs them.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llm_budget.errors import BudgetError, Unavailable

log = logging.getLogger("llm_budget.spool")


@dataclass
class SpooledRecord:
    """One deferred write: ``send(client)`` does it (a record_cost or a settle). ``user``,
    ``key`` and ``cost`` (USD, when known) say what it was, for the log of a drop."""

    user: str
    key: str | None
    cost: Decimal | None
    send: Callable[[Any], object]
    attempts: int = field(default=0)


class CostSpool:
    """Records waiting for the service; ``add`` them, a daemon thread sends them.

    ``client_factory``: makes the sync client the thread sends with (called once, lazily).
    ``max_records``: the bound. ``retry_seconds``: the first wait after a failed try, doubled up
    to ``max_retry_seconds`` while the service stays away.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        max_records: int = 10_000,
        retry_seconds: float = 1.0,
        max_retry_seconds: float = 30.0,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self._client_factory = client_factory
        self.max_records = max_records
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self._records: deque[SpooledRecord] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.sent = 0
        self.dropped = 0
        self.dropped_cost = Decimal(0)

    def __len__(self) -> int:
        with self._cond:
            return len(self._records)

    def add(self, record: SpooledRecord) -> None:
        """Keep `record` for a later try (dropping the oldest when full, logged)."""
        with self._cond:
            if len(self._records) >= self.max_records:
                self._drop(self._records.popleft(), "the spool is full")
            self._records.append(record)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llm-budget-spool", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        log.warning(
            "llm_budget: the service is unavailable; the cost of %r (key %s) is spooled (%d waiting)",
            record.user,
            record.key,
            len(self),
        )

    def _drop(self, record: SpooledRecord, why: str) -> None:
        self.dropped += 1
        if record.cost is not None:
            self.dropped_cost += record.cost
        log.error(
            "llm_budget: dropped an unrecorded cost (%s): user %r, key %s, cost %s USD;"
            " %d dropped so far, %s USD in all",
            why,
            record.user,
            record.key,
            record.cost if record.cost is not None else "unknown",
            self.dropped,
            self.dropped_cost,
        )

    def _run(self) -> None:
        client = None
        wait = self.retry_seconds
        while True:
            with self._cond:
                while not self._records and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                record = self._records[0]
            try:
                client = client or self._client_factory()
                record.attempts += 1
                record.send(client)
            except Unavailable as exc:
                log.info(
                    "llm_budget: spool: the service is still unavailable (%s); retry in %.1fs", exc, wait
                )
                with self._cond:
                    self._cond.wait(timeout=wait)  # woken early only by close()
                wait = min(wait * 2, self.max_retry_seconds)
                continue
            except (BudgetError, ValueError, TypeError) as exc:
                with self._cond:
                    if self._records and self._records[0] is record:
                        self._records.popleft()
                        self._drop(record, f"the service refused it: {exc}")
                continue
            with self._cond:
                if self._records and self._records[0] is record:
                    self._records.popleft()
                self.sent += 1
                empty = not self._records
            wait = self.retry_seconds
            if empty:
                log.warning("llm_budget: spool: the service is back; every spooled cost is recorded")

    def close(self) -> None:
        """Stop the thread; records still waiting are logged as dropped."""
        with self._cond:
            self._closed = True
            while self._records:
                self._drop(self._records.popleft(), "the process is stopping")
            self._cond.notify_all()
