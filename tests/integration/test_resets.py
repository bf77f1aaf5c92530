"""The scheduled reset: only due budgets are read, each period rolls over exactly once,
costs recorded after a reset are kept, and an ended period reads as reset before the job runs.

Counting is done on the wire: a botocore ``after-call`` hook on the job's client counts the
requests it makes and the items DynamoDB returns to it.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from decimal import Decimal

import pytest
from conftest import TABLE_NAME, lambda_context, run_threads
from moments import at, utc

from budget_service import schemas as models
from budget_service.core.periods import SECONDS_PER_DAY, Duration
from budget_service.core.records import Budget, iso
from budget_service.domain import budgets
from budget_service.domain.resets import ResetSummary, update_budget_all_users
from budget_service.store.base import (
    RESET_SHARDS,
    BudgetStore,
    budget_to_item,
    item_to_budget,
    reset_shard,
)
from budget_service.store.history import HistoryStore
from budget_service.store.levels import LevelWriter
from localdev import template
from localdev.dynamodb import client_for
from localdev.events import LambdaContext

# Five minutes into 1 March 2026 (UTC): a new day and month have begun in UTC, Berlin and Tokyo.
NOW = utc("2026-03-01T00:05:00")
DAY = SECONDS_PER_DAY


# ---- helpers -------------------------------------------------------------------------------------


class Wire:
    """Counts the requests a botocore client makes and the items DynamoDB returns to it."""

    def __init__(self, client) -> None:
        self.client = client
        self.requests: Counter[str] = Counter()
        self.items: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("after-call.dynamodb", self._count)

    def _count(self, http_response, parsed, model, **_):
        with self._lock:
            self.requests[model.name] += 1
            self.items[model.name] += len(parsed.get("Items", []))
            if "Item" in parsed:
                self.items[model.name] += 1
            for items in (parsed.get("Responses") or {}).values():
                self.items[model.name] += len(items)

    def close(self) -> None:
        self.client.meta.events.unregister("after-call.dynamodb", self._count)


def seed(client, table: str, budget_list: list[Budget]) -> None:
    """Write budgets with BatchWriteItem, as the store would write them (budget_to_item)."""
    items = [budget_to_item(b) for b in budget_list]
    for i in range(0, len(items), 25):
        pending = {table: [{"PutRequest": {"Item": item}} for item in items[i : i + 25]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def budget(project: str, user: str, *, spend: str = "3.5", **rule) -> Budget:
    return Budget(
        project=project,
        user=user,
        total_budget=Decimal(100),
        created_at=NOW - 400 * DAY,
        updated_at=NOW - 400 * DAY,
        current_cost=Decimal(spend),
        model_cost={"gpt-4o": Decimal(spend)},
        **rule,
    )


RULES = [
    dict(duration=Duration.DAILY),
    dict(duration=Duration.WEEKLY, timezone="Europe/Berlin"),
    dict(duration=Duration.MONTHLY, timezone="America/New_York"),
    dict(duration=Duration.MONTHLY),
    dict(duration=Duration.YEARLY, timezone="Asia/Tokyo"),
    dict(duration_days=Decimal(1)),
    dict(duration_days=Decimal(28)),
    dict(duration_days=Decimal(7)),
]


def due_budget(project: str, user: str, i: int, *, spend: str = "3.5") -> Budget:
    """A budget whose period ended at or before NOW (nobody has touched it since)."""
    rule = RULES[i % len(RULES)]
    b = budget(project, user, spend=spend, **rule)
    if "duration_days" in rule:
        # litellm's rolling period: started more than `days` ago.
        start = NOW - rule["duration_days"] * DAY - 3600 - i
        b = b._replace(period_start=start).with_period_from(start)
    else:
        b = b.with_period_from(NOW - 1)  # the period that ended at midnight (or earlier)
        if b.reset_at > NOW:  # this rule's current period has not ended: use the one before
            b = b.with_period_from(b.period_start - 1)
    assert b.reset_at <= NOW, (rule, b)
    return b


def not_due_budget(project: str, user: str, i: int) -> Budget:
    b = budget(project, user, **RULES[i % len(RULES)])
    if b.duration_days is not None:
        b = b._replace(period_start=NOW - 1800)
    b = b.with_period_from(NOW)
    assert b.reset_at > NOW
    return b


def stored(store: BudgetStore, project: str, user: str) -> Budget:
    b = store.get(project, user)
    assert b is not None
    return b


def fresh_table(url: str) -> tuple[str, object]:
    """A table of our own on the embedded server (the session's table is shared by other tests)."""
    client = client_for(url)
    name = f"resets-{uuid.uuid4().hex[:10]}"
    template.create_table(client, name)
    return name, client


# ---- only due budgets are read -------------------------------------------------------------------


def test_ten_thousand_budgets_hundred_due_reads_only_the_due(aws):
    project = "big"
    due = [due_budget(project, f"due-{i:03d}", i) for i in range(100)]
    not_due = [not_due_budget(project, f"later-{i:05d}", i) for i in range(9400)]
    no_period = [budget(project, f"flat-{i:04d}") for i in range(500)]
    seed(aws, TABLE_NAME, due + not_due + no_period)
    assert sum(1 for _ in BudgetStore(TABLE_NAME, client=aws).iter_project(project)) == 10_000

    store = BudgetStore(TABLE_NAME, client=aws)
    wire = Wire(aws)
    try:
        summary = update_budget_all_users(NOW, store)
    finally:
        wire.close()

    print(f"\n10,000 budgets, 100 due: requests {dict(wire.requests)}, items returned {dict(wire.items)}")
    assert (summary.due, summary.reset, summary.skipped, summary.failed, summary.left) == (100, 100, 0, 0, 0)
    assert summary.complete
    # Reads: the due items, plus a small constant (here nothing: one Query page per shard).
    assert wire.items["Query"] <= 100 + RESET_SHARDS
    # Each rollover reads its budget (the closed period's spend is not in the index) and writes it
    # with its closed-period item in one TransactWriteItems (the history).
    assert set(wire.requests) == {"Query", "GetItem", "TransactWriteItems"}
    assert wire.requests["GetItem"] == wire.requests["TransactWriteItems"] == 100
    # Budget shards (a page or two each), then one Query per shard of levels and of holds.
    assert wire.requests["Query"] <= 2 * RESET_SHARDS + 2 * RESET_SHARDS

    # Each due budget now is exactly what a lazy rollover would have made of it.
    for b in due:
        after = stored(store, project, b.user)
        expected = b.as_of(NOW)
        assert (after.current_cost, after.model_cost) == (0, {}), b.user
        assert (after.period_start, after.reset_at) == (expected.period_start, expected.reset_at), b
        assert after.version == b.version + 2  # seeded at 1, reset once
        assert after.reset_at > NOW
    # Nobody else was written.
    for b in not_due[:200] + no_period[:50]:
        assert stored(store, project, b.user).version == 1


def test_a_second_run_finds_nothing_due(aws):
    store = BudgetStore(TABLE_NAME, client=aws)
    seed(aws, TABLE_NAME, [due_budget("p", f"u{i}", i) for i in range(20)])
    assert update_budget_all_users(NOW, store).reset == 20
    wire = Wire(aws)
    try:
        again = update_budget_all_users(NOW, store)
    finally:
        wire.close()
    assert (again.due, again.reset, again.skipped) == (0, 0, 0)
    assert sum(wire.items.values()) == 0 and set(wire.requests) == {"Query"}


def test_pages_through_a_shard(aws):
    store = BudgetStore(TABLE_NAME, client=aws)
    seed(aws, TABLE_NAME, [due_budget("paged", f"u{i:03d}", i) for i in range(230)])
    wire = Wire(aws)
    try:
        summary = update_budget_all_users(NOW, store, page_size=10)
    finally:
        wire.close()
    assert (summary.due, summary.reset) == (230, 230)
    assert wire.items["Query"] == 230
    assert wire.requests["Query"] >= 230 // 10


# ---- what a reset writes -------------------------------------------------------------------------


def test_reset_zeroes_spend_moves_the_period_and_bumps_version(store):
    b = store.save(due_budget("p", "alice", 2, spend="42.125"))  # monthly, New York
    summary = update_budget_all_users(NOW, store)
    assert summary.reset == 1
    after = stored(store, "p", "alice")
    assert after.current_cost == 0 and after.model_cost == {}
    # New York's March starts at 05:00 UTC on 1 March: at NOW (00:05 UTC) it is still February
    # there, so February's period (ending 1 March 05:00 UTC) is the one the job moves into.
    assert after.period_start == at("2026-02-01T00:00:00", "America/New_York")
    assert after.reset_at == at("2026-03-01T00:00:00", "America/New_York")
    assert after.version == b.version + 1
    assert after.updated_at == NOW
    assert (after.total_budget, after.created_at, after.duration, after.timezone) == (
        b.total_budget,
        b.created_at,
        b.duration,
        b.timezone,
    )


def test_late_run_moves_to_the_period_containing_now_skipping_none(store):
    daily = due_budget("p", "late", 0)  # daily UTC, ended at midnight
    store.save(daily._replace(period_start=NOW - 10 * DAY, reset_at=utc("2026-02-20T00:00:00")))
    update_budget_all_users(NOW, store)
    after = stored(store, "p", "late")
    assert (after.period_start, after.reset_at) == (utc("2026-03-01T00:00:00"), utc("2026-03-02T00:00:00"))


def test_rolling_budget_keeps_litellms_grid(store):
    start = NOW - 30 * DAY - 100
    b = budget("p", "roll", duration_days=Decimal(28))
    b = b._replace(period_start=start).with_period_from(start)
    store.save(b)
    update_budget_all_users(NOW, store)
    after = stored(store, "p", "roll")
    assert after.period_start == start + 28 * DAY  # back-to-back from the anchor
    assert after.reset_at == start + 56 * DAY


def test_a_rule_changed_after_the_index_was_read_is_not_reset_with_the_old_rule(store):
    # Monthly in UTC; in February its owner moves it to London: February's period is the same
    # in both, March's is not (London's ends at 23:00 UTC on 31 March, BST).
    b = store.save(
        budget("p", "tz", duration=Duration.MONTHLY)._replace(
            period_start=utc("2026-02-01T00:00:00"),
            reset_at=utc("2026-03-01T00:00:00"),
        )
    )
    (seen,) = [d for s in range(RESET_SHARDS) for d in store.due_for_reset(s, NOW, limit=10)[0]]
    assert seen.timezone is None
    settings = models.PutBudgetRequest(
        total_budget=Decimal(100), duration="monthly", timezone="Europe/London"
    )
    budgets.put_budget(store, "p", "tz", settings, utc("2026-02-27T12:00:00"))
    changed = stored(store, "p", "tz")
    assert (changed.period_start, changed.reset_at) == (b.period_start, b.reset_at)

    # The write computed from the stale rule must not land...
    assert store.reset_period(seen, seen.next_period(NOW), NOW) is False
    # ...and the job resets it by the rule now stored.
    assert update_budget_all_users(NOW, store).reset == 1
    assert stored(store, "p", "tz").reset_at == utc("2026-03-31T23:00:00")


def test_a_budget_whose_rule_was_removed_leaves_the_index(store):
    b = store.save(due_budget("p", "flat", 0))
    budgets.put_budget(
        store, "p", "flat", models.PutBudgetRequest(total_budget=Decimal(5), duration=None), NOW
    )
    assert stored(store, "p", "flat").reset_at is None
    summary = update_budget_all_users(NOW, store)
    assert summary.due == 0
    assert stored(store, "p", "flat").version == b.version + 1


# ---- time runs low -------------------------------------------------------------------------------


class Allowance:
    """keep_going() for the first `n` checks, then not: a run that runs out of time mid-way."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.lock = threading.Lock()

    def __call__(self) -> bool:
        with self.lock:
            self.n -= 1
            return self.n >= 0


@pytest.mark.parametrize("allowance", [0, 1, 7, 40, 62])
def test_out_of_time_leaves_the_rest_to_the_next_run(store, allowance):
    seed(store.client, TABLE_NAME, [due_budget("p", f"u{i:02d}", i) for i in range(60)])
    first = update_budget_all_users(NOW, store, keep_going=Allowance(allowance), page_size=8)
    assert not first.complete
    assert first.failed == first.skipped == 0
    assert first.reset < 60 and first.reset + first.left == 60 == first.due
    assert first.left_exact
    second = update_budget_all_users(NOW, store)
    assert second.complete and second.reset == first.left == second.due
    for i in range(60):
        b = stored(store, "p", f"u{i:02d}")
        assert b.current_cost == 0 and b.version == 2 and b.reset_at > NOW


# ---- exactly once --------------------------------------------------------------------------------


def test_two_runs_reading_the_same_due_budgets_reset_each_once(dynamodb_server):
    """Both runs read every due budget before either writes (a barrier on their Queries): each
    budget then gets two conditional writes; exactly one lands."""
    table, client = fresh_table(dynamodb_server)
    due = [due_budget("race", f"u{i:02d}", i) for i in range(60)]
    seed(client, table, due)
    barrier = threading.Barrier(2, timeout=60)

    def run(results: list, i: int) -> None:
        run_client = client_for(dynamodb_server)
        run_client.meta.events.register("after-call.dynamodb.Query", lambda **_: barrier.wait())
        results[i] = update_budget_all_users(NOW, BudgetStore(table, client=run_client), page_size=100)

    results: list[ResetSummary | None] = [None, None]
    run_threads([threading.Thread(target=run, args=(results, i)) for i in range(2)])
    a, b = results
    assert a is not None and b is not None
    assert a.due == b.due == 60  # both saw every due budget
    assert a.reset + b.reset == 60 and a.skipped + b.skipped == 60
    assert a.failed == b.failed == 0
    check = BudgetStore(table, client=client)
    for original in due:
        after = stored(check, "race", original.user)
        assert after.version == original.version + 2  # seeded at 1, one reset
        assert after.current_cost == 0
        assert after.reset_at == original.as_of(NOW).reset_at


def test_two_free_running_runs_reset_each_once(dynamodb_server):
    table, client = fresh_table(dynamodb_server)
    due = [due_budget("race", f"u{i:03d}", i) for i in range(120)]
    seed(client, table, due)
    start = threading.Barrier(2, timeout=60)
    results: list[ResetSummary | None] = [None, None]

    def run(i: int) -> None:
        store = BudgetStore(table, client=client_for(dynamodb_server))
        start.wait()
        results[i] = update_budget_all_users(NOW, store, page_size=7)

    run_threads([threading.Thread(target=run, args=(i,)) for i in range(2)])
    a, b = results
    assert a is not None and b is not None
    assert a.reset + b.reset == 120 and a.failed == b.failed == 0
    check = BudgetStore(table, client=client)
    for original in due:
        assert stored(check, "race", original.user).version == original.version + 2


def test_a_run_racing_cost_updates_resets_each_once_and_keeps_every_later_cost(dynamodb_server):
    """Costs recorded at NOW (after every due budget's reset_at) belong to the new period.

    The costs go through the store's own cost write (``LevelWriter.add_cost``): one
    TransactWriteItems conditional on the period not having ended, else a lazy rollover (a versioned write) and the ADD.

    Ordered so both paths happen: the budgets in the first shard the job reads get a cost (rolling
    them over lazily) after the job has read them and before it writes; the others get costs from
    4 threads racing the job's writes, starting once one of its resets has landed.
    """
    table, client = fresh_table(dynamodb_server)
    due = [due_budget("cost", f"u{i:02d}", i, spend="9.75") for i in range(48)]
    seed(client, table, due)
    first_shard = 0
    early = [b for b in due if reset_shard("cost", b.user) == f"RESET#{first_shard}"]
    assert early and len(early) < len(due)

    early_costs_done = threading.Event()
    a_reset_landed = threading.Event()
    job_client = client_for(dynamodb_server)

    def after_query(**_):
        assert early_costs_done.wait(timeout=60)

    def after_update(http_response, **_):
        if http_response.status_code == 200:
            a_reset_landed.set()

    job_client.meta.events.register("after-call.dynamodb.Query", after_query)
    job_client.meta.events.register("after-call.dynamodb.TransactWriteItems", after_update)
    summary: list[ResetSummary] = []
    job = threading.Thread(
        target=lambda: summary.append(update_budget_all_users(NOW, BudgetStore(table, client=job_client)))
    )

    cost_store = LevelWriter(BudgetStore(table, client=client_for(dynamodb_server)))
    sent: dict[str, Decimal] = {b.user: Decimal(0) for b in due}
    cost_count: Counter[str] = Counter()
    lock = threading.Lock()

    def charge(user: str, amount: Decimal) -> None:
        cost_store.add_cost("cost", user, "gpt-4o-mini", amount, NOW)
        with lock:
            sent[user] += amount
            cost_count[user] += 1

    job.start()
    for b in early:
        charge(b.user, Decimal("0.000123"))
    early_costs_done.set()
    assert a_reset_landed.wait(timeout=60)

    def racer(k: int) -> None:
        for round_ in range(3):
            for j, b in enumerate(due):
                charge(b.user, Decimal(f"0.{k + 1}{round_}{j:02d}1"))

    racers = [threading.Thread(target=racer, args=(k,)) for k in range(4)]
    for t in racers:
        t.start()
    for t in racers + [job]:
        t.join(timeout=120)
    (result,) = summary

    assert result.failed == 0
    # A budget a cost rolled over before the job read its shard is not due any more: not counted.
    assert result.reset + result.skipped == result.due <= len(due)
    assert result.skipped >= len(early)  # those rolled over lazily first: the job's write no-op'd
    assert result.reset >= 1
    check = BudgetStore(table, client=client)
    for original in due:
        after = stored(check, "cost", original.user)
        # Every cost was recorded at NOW, after the period ended: all kept, the old spend gone.
        assert after.current_cost == sent[original.user], original.user
        assert after.model_cost == {"gpt-4o-mini": sent[original.user]}
        assert (after.period_start, after.reset_at) == (
            original.as_of(NOW).period_start,
            original.as_of(NOW).reset_at,
        )
        # One write per cost, plus exactly one rollover: the job's reset, or a cost's lazy one.
        rollovers = after.version - (original.version + 1) - cost_count[original.user]
        assert rollovers == 1, (original.user, rollovers)
        # ...and exactly one record of the closed period, with the spend it closed.
        (closed,), _ = HistoryStore(check).periods_page("cost", "USER", original.user, limit=10)
        assert (closed["spend"], closed["period_start"], closed["period_end"]) == (
            original.current_cost,
            original.period_start,
            original.reset_at,
        )
        assert closed["model_cost"] == original.model_cost


# ---- an ended period reads as reset before the job runs ------------------------------------------


def test_an_untouched_ended_period_reads_as_reset_on_the_native_api_and_get_budget(api, store):
    now = budgets.utc_now()
    ended = budget("reads", "idle", spend="12.5", duration=Duration.DAILY)._replace(
        period_start=now - 3 * DAY,
        reset_at=now - 2 * DAY,
    )
    store.save(ended)
    raw_before = stored(store, "reads", "idle")
    assert raw_before.current_cost == Decimal("12.5")  # nothing has rolled it over in storage

    record = api.call("GET", "/projects/{project}/users/{user}", {"project": "reads", "user": "idle"})
    assert record.status == 200, record
    body = record.json()
    assert body["current_cost"] == 0 and body["model_cost"] == {}
    assert body["remaining"] == 100
    current = ended.as_of(now)
    assert (body["period_start"], body["reset_at"]) == (iso(current.period_start), iso(current.reset_at))
    assert current.period_start <= now < current.reset_at

    litellm = api.get_budget("reads")
    assert litellm.status == 200, litellm
    entry = litellm.json()["data"]["idle"]
    assert entry["current_cost"] == 0 and entry["model_cost"] == {}
    assert Decimal(str(entry["last_updated_at"])) == current.period_start
    assert Decimal(str(entry["duration"])) == 1

    # Reading wrote nothing: the job still finds it due, and resets it once.
    assert stored(store, "reads", "idle").version == raw_before.version
    assert update_budget_all_users(now, store).reset == 1


# ---- the function --------------------------------------------------------------------------------


def invoke(context: LambdaContext, event: dict | None = None):
    if event is None:
        event = json.loads((template.EVENTS_DIR / "reset_budgets_schedule.json").read_text())
    return template.load_handler("ResetBudgetsFunction")(event, context)


def test_handler_with_the_sample_event_resets_due_budgets_and_emits_metrics(store, capsys):
    now = budgets.utc_now()
    for i in range(5):
        b = budget("fn", f"u{i}", duration=Duration.DAILY)
        store.save(b._replace(period_start=now - 2 * DAY, reset_at=now - DAY))
    store.save(budget("fn", "later", duration=Duration.DAILY).with_period_from(now))
    capsys.readouterr()

    result = invoke(lambda_context("ResetBudgetsFunction"))
    assert {k: result[k] for k in ("due", "reset", "skipped", "failed", "left", "complete")} == {
        "due": 5,
        "reset": 5,
        "skipped": 0,
        "failed": 0,
        "left": 0,
        "complete": True,
    }
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (blob,) = [e for e in emf if "BudgetsReset" in e]
    emitted = {
        k: blob[k] for k in ("BudgetsDue", "BudgetsReset", "BudgetResetsSkipped", "BudgetsLeftForNextRun")
    }
    assert emitted == {
        "BudgetsDue": [5.0],
        "BudgetsReset": [5.0],
        "BudgetResetsSkipped": [0.0],
        "BudgetsLeftForNextRun": [0.0],
    }
    names = {m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {
        "BudgetsDue",
        "BudgetsReset",
        "BudgetResetsSkipped",
        "BudgetResetsFailed",
        "BudgetsLeftForNextRun",
    } <= names


def test_handler_with_little_time_left_leaves_everything_for_the_next_run(store):
    now = budgets.utc_now()
    for i in range(3):
        b = budget("fn", f"u{i}", duration=Duration.DAILY)
        store.save(b._replace(period_start=now - 2 * DAY, reset_at=now - DAY))
    result = invoke(LambdaContext("ResetBudgetsFunction", timeout_s=5))  # below the reserve
    assert (result["reset"], result["left"], result["complete"]) == (0, 3, False)
    assert invoke(lambda_context("ResetBudgetsFunction"))["reset"] == 3


def test_handler_fails_the_run_after_resetting_the_rest_when_a_write_fails(store, aws):
    now = budgets.utc_now()
    for i in range(4):
        b = budget("fn", f"u{i}", duration=Duration.DAILY)
        store.save(b._replace(period_start=now - 2 * DAY, reset_at=now - DAY))
    # A damaged item: in the reset index, but with no rule to compute its next period from.
    broken = budget_to_item(budget("fn", "broken")._replace(reset_at=now - DAY))
    assert "reset_shard" in broken and "duration" not in broken and "duration_days" not in broken
    aws.put_item(TableName=TABLE_NAME, Item=broken)

    module = template.load_module("ResetBudgetsFunction")
    with pytest.raises(module.ResetRunFailed, match="1 due budget"):
        invoke(lambda_context("ResetBudgetsFunction"))
    for i in range(4):
        assert stored(store, "fn", f"u{i}").current_cost == 0
    assert (
        item_to_budget(
            aws.get_item(TableName=TABLE_NAME, Key={"pk": broken["pk"], "sk": broken["sk"]})["Item"]
        ).version
        == 1
    )


# ---- the template --------------------------------------------------------------------------------


def test_template_runs_the_job_on_a_scheduler_rate_with_retries_dead_letters_and_least_privilege():
    doc = template.plain_values(template.load_template())
    assert doc["Parameters"]["ResetScheduleExpression"]["Default"] == "rate(5 minutes)"
    fn = doc["Resources"]["ResetBudgetsFunction"]["Properties"]
    (event,) = fn["Events"].values()
    assert event["Type"] == "ScheduleV2"
    props = event["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "ResetScheduleExpression"}
    assert props["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    queue = {"Fn::GetAtt": ["ResetFailuresQueue", "Arn"]}
    assert doc["Resources"]["ResetFailuresQueue"]["Type"] == "AWS::SQS::Queue"
    assert props["DeadLetterConfig"] == {"Arn": queue}  # Scheduler could not deliver
    assert fn["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"] == queue  # run failed
    # The sample event is what the schedule's Input becomes, context attributes filled in.
    sample = json.loads((template.EVENTS_DIR / "reset_budgets_schedule.json").read_text())
    assert set(json.loads(props["Input"])) == set(sample)
    # Least privilege: Query on the reset index only; on the table GetItem + PutItem (a rollover
    # reads the budget, then writes it with its closed period) and UpdateItem.
    (policy,) = fn["Policies"]
    granted = {(action, json.dumps(s["Resource"])) for s in policy["Statement"] for action in s["Action"]}
    assert granted == {
        ("dynamodb:Query", json.dumps({"Fn::Sub": "${BudgetTable.Arn}/index/due-for-reset"})),
        ("dynamodb:UpdateItem", json.dumps({"Fn::GetAtt": ["BudgetTable", "Arn"]})),
        ("dynamodb:GetItem", json.dumps({"Fn::GetAtt": ["BudgetTable", "Arn"]})),
        ("dynamodb:PutItem", json.dumps({"Fn::GetAtt": ["BudgetTable", "Arn"]})),
    }
    # A batch fits in the timeout with the handler's reserve, and ends before the next run.
    reserve_s = template.load_module("ResetBudgetsFunction").RESERVE_MS / 1000
    assert reserve_s * 3 <= fn["Timeout"] < 300
    # The index carries what the job needs to compute the next period.
    (index,) = [
        i for i in template.table_properties()["GlobalSecondaryIndexes"] if i["IndexName"] == "due-for-reset"
    ]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert {"duration", "duration_days", "timezone", "period_start"} <= set(
        index["Projection"]["NonKeyAttributes"]
    )
