"""BASELINE ONLY, not service code: the scheduled reset done the naive way, with a full-table Scan.

This is what a reset job looks like without the sparse due-for-reset index: read every item in the
table, keep the budgets whose ``reset_at`` has passed, and reset each with the same conditional
write the service uses (``BudgetStore.reset_period``) on the same thread pool. Only the reading
differs from ``budget_service.domain.resets.update_budget_all_users``, so the benchmark compares the cost
of finding the due budgets. It exists for bench/resets.py and nothing else imports it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from budget_service.core.records import DueReset
from budget_service.domain.resets import WORKERS
from budget_service.store.base import USER_PREFIX, BudgetStore, item_to_budget


def scan_and_reset(store: BudgetStore, now: Decimal, *, workers: int = WORKERS) -> dict:
    """Scan the whole table and reset every due budget. Returns counts like the job's summary."""
    counts = {"scanned": 0, "due": 0, "reset": 0, "skipped": 0}

    def reset_one(due: DueReset) -> bool:
        return store.reset_period(due, due.next_period(now), now)

    paginator = store.client.get_paginator("scan")
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan-reset") as pool:
        for page in paginator.paginate(TableName=store.table_name):
            due_here = []
            for raw in page.get("Items", []):
                counts["scanned"] += 1
                if not raw["sk"]["S"].startswith(USER_PREFIX):
                    continue  # idempotency ledger items
                budget = item_to_budget(raw)
                if budget.reset_at is None or budget.reset_at > now:
                    continue
                due_here.append(
                    DueReset(
                        project=budget.project,
                        user=budget.user,
                        reset_at=budget.reset_at,
                        duration=budget.duration,
                        duration_days=budget.duration_days,
                        timezone=budget.timezone,
                        period_start=budget.period_start,
                    )
                )
            counts["due"] += len(due_here)
            for landed in pool.map(reset_one, due_here):
                counts["reset" if landed else "skipped"] += 1
    return counts
