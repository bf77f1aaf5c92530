"""The service's one clock: every handler, the reset job and lazy rollovers read time here.

In AWS this is the wall clock (``time.time()``). The local runtime (``make dev``) substitutes a
shifted clock with ``use()`` (localdev/clock.py), so a rollover, a reset run or a litellm client's
reset can be watched in seconds; nothing in the Lambda code path ever calls ``use()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from budget_service.core.numbers import EPOCH_QUANTUM

_source: Callable[[], float] = time.time


def utc_now() -> Decimal:
    """Now, as epoch seconds (UTC) to the nanosecond."""
    return Decimal(repr(_source())).quantize(EPOCH_QUANTUM)


def use(source: Callable[[], float] | None) -> None:
    """Read time from `source` (epoch seconds as a float) from now on; None: the wall clock."""
    global _source
    _source = source if source is not None else time.time
