"""The scheduled reset: roll over every budget whose period has ended, and release every hold whose
time ran out, touching only those.

litellm's ``update_budget_all_users`` walks every user in memory. Ours reads the sparse
``due-for-reset`` index, shard by shard, for ``reset_at <= now``: its cost grows with the budgets
that are due, not with all budgets. Each due budget gets one conditional write (``reset_period``)
that lands only if the item still has the ``reset_at`` and rule the index showed, so each period
rolls over exactly once, whether this job, a concurrent run, or a lazy rollover by a write to
that user gets there first; the others are no-ops, counted as ``skipped``.

The job stops starting new work when ``keep_going()`` says so (the handler asks how much Lambda
time is left), and leaves the rest to the next run: nothing it does is lost or done twice.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import Enum

from budget_service.core.records import DueReset, iso
from budget_service.observability import logger
from budget_service.store.base import RESET_SHARDS, BudgetStore, default_store

PAGE_SIZE = 100
WORKERS = 8  # concurrent conditional writes; boto3's default connection pool has 10


class Outcome(Enum):
    RESET = "reset"
    SKIPPED = "skipped"
    FAILED = "failed"
    LEFT = "left"


@dataclass
class ResetSummary:
    """What one run did. ``due = reset + skipped + failed + left``.

    * ``reset``: budgets this run rolled over;
    * ``skipped``: due in the index, but already rolled over by someone else (another run, a cost
      update or ``set_budget`` rolling the period lazily, a manual reset, a new rule);
    * ``failed``: the write failed (e.g. throttled past the client's retries): still due, so the
      next run retries them;
    * ``left``: due, but not attempted because time ran low (counted without reading them);
      ``left_exact`` is False when that count stopped early and is a lower bound;
    * ``complete``: every shard was read to its end.
    """

    now: Decimal
    due: int = 0
    reset: int = 0
    skipped: int = 0
    failed: int = 0
    left: int = 0
    left_exact: bool = True
    complete: bool = True
    # Expired holds, from the index partitions HOLDS#<n>: released by this run, found
    # already settled/released/expired by someone else, or failed (still due: the next run).
    holds_expired: int = 0
    holds_skipped: int = 0
    holds_failed: int = 0
    # Team and project levels, from the index partitions LEVELS#<n>, the same way.
    levels_reset: int = 0
    levels_skipped: int = 0
    levels_failed: int = 0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["now"] = iso(self.now)
        return data


def _always() -> bool:
    return True


def update_budget_all_users(
    now: Decimal,
    store: BudgetStore | None = None,
    *,
    keep_going: Callable[[], bool] = _always,
    page_size: int = PAGE_SIZE,
    workers: int = WORKERS,
) -> ResetSummary:
    """Roll over every budget whose period ended at or before `now`, until `keep_going()` fails."""
    store = store or default_store()
    summary = ResetSummary(now=now)

    def reset_one(due: DueReset) -> Outcome:
        if not keep_going():
            return Outcome.LEFT
        try:
            landed = store.reset_period(due, due.next_period(now), now)
        except Exception:  # one budget's failure must not stop the others; it stays due
            logger.exception("reset failed", extra={"project": due.project, "user": due.user})
            return Outcome.FAILED
        return Outcome.RESET if landed else Outcome.SKIPPED

    stopped_at: tuple[int, dict | None] | None = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reset") as pool:
        for shard in range(RESET_SHARDS):
            after: dict | None = None
            while stopped_at is None:
                if not keep_going():
                    stopped_at = (shard, after)
                    break
                page, after = store.due_for_reset(shard, now, limit=page_size, after=after)
                outcomes = list(pool.map(reset_one, page))
                for outcome in outcomes:
                    setattr(summary, outcome.value, getattr(summary, outcome.value) + 1)
                if Outcome.LEFT in outcomes:
                    # Count the rest from after this page: the next shard when this was its last.
                    stopped_at = (shard, after) if after is not None else (shard + 1, None)
                elif after is None:
                    break
            if stopped_at is not None:
                break

    if stopped_at is not None:
        summary.complete = False
        first_shard, after = stopped_at
        for shard in range(first_shard, RESET_SHARDS):
            count, exact = store.count_due(shard, now, after=after if shard == first_shard else None)
            summary.left += count
            summary.left_exact = summary.left_exact and exact
    summary.due = summary.reset + summary.skipped + summary.failed + summary.left
    if stopped_at is None:
        roll_due_levels(now, store, summary, keep_going=keep_going, page_size=page_size)
        expire_due_holds(now, store, summary, keep_going=keep_going, page_size=page_size, workers=workers)
    return summary


def roll_due_levels(
    now: Decimal,
    store: BudgetStore,
    summary: ResetSummary,
    *,
    keep_going: Callable[[], bool] = _always,
    page_size: int = PAGE_SIZE,
) -> None:
    """Roll over every team and project level whose period ended (index partitions
    ``LEVELS#<n>``), each with one UpdateItem conditional on the ``reset_at`` the index showed:
    a charge that rolled it over lazily first makes it a no-op (``levels_skipped``)."""
    from budget_service.store.levels import due_levels, roll_level

    for shard in range(RESET_SHARDS):
        after: dict | None = None
        while keep_going():
            page, after = due_levels(store, shard, now, limit=page_size, after=after)
            for project, sk, entry in page:
                try:
                    landed = roll_level(store.client, store.table_name, project, sk, entry, now)
                except Exception:  # one level's failure must not stop the others; it stays due
                    logger.exception("level rollover failed", extra={"project": project, "level": sk})
                    summary.levels_failed += 1
                    continue
                if landed:
                    summary.levels_reset += 1
                else:
                    summary.levels_skipped += 1
            if after is None:
                break
        else:
            summary.complete = False
            return


def expire_due_holds(
    now: Decimal,
    store: BudgetStore,
    summary: ResetSummary,
    *,
    keep_going: Callable[[], bool] = _always,
    page_size: int = PAGE_SIZE,
    workers: int = WORKERS,
) -> None:
    """Release every hold whose time ran out (``held -> expired``), from the due-for-reset index's
    ``HOLDS#<n>`` partitions: the cost grows with the holds due. Each is one TransactWriteItems
    conditional on the hold still being held, so a settle or release racing it wins or loses
    whole. Counts into `summary`; stops when `keep_going()` fails (the rest stay due)."""
    from budget_service.store.holds import EXPIRED, HoldStore

    holds = HoldStore(store)

    def expire_one(due) -> str:
        try:
            _, changed = holds.finish(due.project, due.user, due.hold_id, now, EXPIRED)
        except Exception:  # one hold's failure must not stop the others; it stays due
            logger.exception("hold expiry failed", extra={"project": due.project, "user": due.user})
            return "holds_failed"
        return "holds_expired" if changed else "holds_skipped"

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="expire") as pool:
        for shard in range(RESET_SHARDS):
            after: dict | None = None
            while keep_going():
                page, after = holds.due(shard, now, limit=page_size, after=after)
                for outcome in pool.map(expire_one, page):
                    setattr(summary, outcome, getattr(summary, outcome) + 1)
                if after is None:
                    break
            else:
                summary.complete = False
                return
