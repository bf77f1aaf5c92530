"""2. The scheduled reset versus table size, beside a full-table Scan baseline.

Tables of 1,000 and 10,000 budgets (ten projects; a fifth without a period, the rest daily,
weekly, monthly, yearly or litellm-rolling), of which 1% are due. One run of
``update_budget_all_users(now, store)`` (the sparse due-for-reset index) and one run of
bench/scan_baseline.py (Scan everything, same resets) on the same state: the due budgets are put
back as due before every run. Items read are the items DynamoDB returned to the job's client.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from bench.common import BenchRuntime, DynamoMeter, Section, Stat, Table, num, ratio, seed_items

SIZES = (1_000, 10_000)
DAY = Decimal(86_400)
PROJECTS = 10


def _rules():
    from budget_service.core.periods import Duration

    return [
        dict(duration=Duration.DAILY),
        dict(duration=Duration.WEEKLY, timezone="Europe/Berlin"),
        dict(duration=Duration.MONTHLY),
        dict(duration=Duration.MONTHLY, timezone="America/New_York"),
        dict(duration=Duration.YEARLY, timezone="Asia/Tokyo"),
        dict(duration_days=Decimal(1)),
        dict(duration_days=Decimal(7)),
        dict(duration_days=Decimal(28)),
    ]


def make_budgets(total: int, now: Decimal):
    """(all budgets, the due ones): 1% due, 20% without a period, the rest not due yet."""
    from budget_service.core.records import Budget

    rules = _rules()
    budgets, due = [], []
    for i in range(total):
        base = Budget(
            project=f"tenant-{i % PROJECTS}",
            user=f"user-{i:06d}",
            total_budget=Decimal(50),
            created_at=now - 400 * DAY,
            updated_at=now - DAY,
            current_cost=Decimal("1.25"),
            model_cost={"gpt-4o-mini": Decimal("1.25")},
        )
        rule = rules[i % len(rules)]
        if i % 100 == 0:  # due: its period ended before `now`
            b = base._replace(**rule)
            if b.duration_days is not None:
                start = now - b.duration_days * DAY - 3600
                b = b._replace(period_start=start).with_period_from(start)
            else:
                b = b.with_period_from(now - 1)
                if b.reset_at > now:
                    b = b.with_period_from(b.period_start - 1)
            assert b.reset_at <= now
            due.append(b)
        elif i % 5 == 1:  # no period: not in the index at all
            b = base
        else:  # in its current period
            b = base._replace(**rule)
            if b.duration_days is not None:
                b = b._replace(period_start=now - 1800)
            b = b.with_period_from(now)
            assert b.reset_at > now
        budgets.append(b)
    return budgets, due


def run(rt: BenchRuntime, *, quick: bool = False, sizes: tuple[int, ...] | None = None) -> Section:
    from bench.scan_baseline import scan_and_reset
    from budget_service.domain.resets import update_budget_all_users
    from budget_service.store.base import BudgetStore, budget_to_item
    from localdev import template
    from localdev.dynamodb import client_for

    sizes = sizes or ((SIZES[0],) if quick else SIZES)
    rounds = 1 if quick else 5
    now = Decimal(int(time.time()))
    section = Section(
        "resets",
        "2. Reset job versus table size (1% due), beside a full-table Scan baseline",
        intro=(
            "One run of `update_budget_all_users(now, store)` (queries the sparse due-for-reset"
            " index, 4 shards) and one run of the baseline in `bench/scan_baseline.py` (Scan the"
            " whole table, same conditional reset writes on the same thread pool), on the same"
            f" table state; medians (min–max) over {rounds} rounds. Items read = items DynamoDB"
            " returned to the job (counted on its botocore client)."
        ),
    )
    table = Table(
        [
            "budgets",
            "due",
            "job: DynamoDB requests",
            "job: items read",
            "job: time",
            "Scan baseline: requests",
            "Scan baseline: items read",
            "Scan baseline: time",
            "items read baseline/job",
            "time baseline/job",
        ]
    )
    section.tables.append(table)

    for total in sizes:
        client = client_for(rt.dynamodb_url)
        name = f"bench-resets-{total}-{uuid.uuid4().hex[:6]}"
        template.create_table(client, name)
        budgets, due = make_budgets(total, now)
        seed_items(client, name, [budget_to_item(b) for b in budgets])
        due_items = [budget_to_item(b) for b in due]
        store = BudgetStore(name, client=client)
        meter = DynamoMeter(client)
        job_runs, scan_runs = [], []
        try:
            for _ in range(rounds):
                seed_items(client, name, due_items)  # re-arm: the due budgets are due again
                mark = meter.mark()
                start = time.perf_counter()
                summary = update_budget_all_users(now, store)
                seconds = time.perf_counter() - start
                if summary.reset != len(due) or not summary.complete:
                    raise RuntimeError(f"job reset {summary.reset} of {len(due)}: {summary.as_dict()}")
                job_runs.append({"seconds": seconds, **DynamoMeter.summary(meter.since(mark))})

                seed_items(client, name, due_items)
                mark = meter.mark()
                start = time.perf_counter()
                counts = scan_and_reset(store, now)
                seconds = time.perf_counter() - start
                if counts["reset"] != len(due):
                    raise RuntimeError(f"baseline reset {counts['reset']} of {len(due)}: {counts}")
                scan_runs.append({"seconds": seconds, **DynamoMeter.summary(meter.since(mark))})
        finally:
            meter.close()
            client.delete_table(TableName=name)

        stats = {
            who: {k: Stat.of(r[k] for r in runs) for k in ("seconds", "requests", "items_read")}
            for who, runs in (("job", job_runs), ("scan", scan_runs))
        }
        j, s = stats["job"], stats["scan"]
        table.add(
            f"{total:,}",
            f"{len(due):,}",
            num(j["requests"].median),
            num(j["items_read"].median),
            j["seconds"].fmt(),
            num(s["requests"].median),
            num(s["items_read"].median),
            s["seconds"].fmt(),
            ratio(s["items_read"].median, j["items_read"].median),
            ratio(s["seconds"].median, j["seconds"].median),
        )
        section.data[str(total)] = {
            "due": len(due),
            "rounds": rounds,
            "job": {k: v.as_dict() for k, v in j.items()},
            "scan_baseline": {k: v.as_dict() for k, v in s.items()},
            "job_operations": job_runs[-1]["by_operation"],
            "scan_operations": scan_runs[-1]["by_operation"],
        }
    section.notes += [
        "The job's reads grow with the budgets due, the Scan's with the table: at 1% due the Scan"
        " reads 100× the items (and pays read units for all of them, 1 RCU per 4 KB).",
        "Requests: the job makes one Query per reset shard (4) plus one conditional UpdateItem"
        " per due budget; the Scan one request per 1 MB page plus the same writes. Times are"
        " moto's (in this process), where each write costs a few milliseconds; the items read"
        " and the requests are what DynamoDB would bill.",
    ]
    return section
