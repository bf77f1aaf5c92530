"""Spend history, reports, adjustments and the audit ledger.

Every rollover path (a cost rolling the period lazily, the scheduled job, a manual reset, PUT,
set_budget) writes the closed period in the same conditional write; the races run on the
embedded DynamoDB with a controllable clock (each call is given its `now`) across real
calendar boundaries.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from conftest import TABLE_NAME, run_threads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moments import utc

from budget_service.core.periods import Duration
from budget_service.core.records import iso
from budget_service.domain import budgets, history
from budget_service.domain.auth import Role, Scope
from budget_service.domain.resets import update_budget_all_users
from budget_service.schemas import LitellmEntry, PutBudgetRequest
from budget_service.store.base import BudgetStore
from budget_service.store.history import HistoryStore, period_sk
from budget_service.store.levels import LevelWriter
from localdev import template
from localdev.dynamodb import client_for
from localdev.events import LambdaContext, api_gateway_event

DAY = Decimal(86400)
START = utc("2026-03-01T00:00:00")  # a Sunday; daily periods in UTC


def fresh_store(url: str) -> BudgetStore:
    import uuid

    client = client_for(url)
    name = f"history-{uuid.uuid4().hex[:10]}"
    template.create_table(client, name)
    return BudgetStore(name, client=client)


def periods_of(store: BudgetStore, project: str, user: str) -> list[dict]:
    items, after = [], None
    while True:
        page, after = HistoryStore(store).periods_page(project, "USER", user, limit=100, after_sk=after)
        items += page
        if after is None:
            return items


def call(method, resource, params, *, body=None, query=None, headers=None, key_id=None, role=Role.ADMIN):
    """Invoke the template's handler for a route, with an authorizer context naming `key_id`."""
    route = next(r for r in template.api_routes() if (r.method, r.path) == (method, resource))
    event = api_gateway_event(method, resource, params, body=body, query=query, headers=headers)
    if key_id is not None:
        event["requestContext"]["authorizer"] = Scope(
            key_id, role, frozenset({params["project"]})
        ).to_context()
    raw = template.load_handler(route.function_id)(event, LambdaContext(route.function_id))
    headers = {k: v[-1] for k, v in (raw.get("multiValueHeaders") or {}).items()} | (raw.get("headers") or {})
    return raw["statusCode"], raw.get("body") or "", headers


USER = "/projects/{project}/users/{user}"


# ---- every rollover path records the closed period once -----------------------------------------


def test_lazy_rollover_job_and_manual_resets_racing_over_many_boundaries(dynamodb_server):
    """Twelve daily boundaries; after each one, costs (which roll the period over lazily), the
    scheduled job and (on some days) a manual reset race on the embedded DynamoDB. Each closed
    period is recorded once; each day's closed spend is exactly the costs charged that day; the
    periods plus the current one hold every cost charged."""
    store = fresh_store(dynamodb_server)
    users = ["ann", "bob#1"]  # an id with '#': keys stay unambiguous
    for user in users:
        budgets.put_budget(
            store, "race", user, PutBudgetRequest(total_budget=Decimal(1000), duration=Duration.DAILY), START
        )
    writer = LevelWriter(BudgetStore(store.table_name, client=client_for(dynamodb_server)))
    charged: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    reset_days = {3, 4, 8}
    lock = threading.Lock()
    days = 12
    for day in range(days):
        boundary = START + day * DAY
        now = boundary + 1  # just after the boundary: every writer finds the period ended

        def costs(user: str, k: int, now=now, day=day) -> None:
            for j in range(3):
                amount = Decimal(f"0.{k}{j}{day:02d}1")
                writer.add_cost("race", user, f"model-{j % 2}", amount, now + j)
                with lock:
                    charged[(user, day)] += amount

        threads = [threading.Thread(target=costs, args=(u, k)) for u in users for k in (1, 2)]
        threads.append(threading.Thread(target=update_budget_all_users, args=(now, store)))
        if day in reset_days:
            threads += [
                threading.Thread(target=budgets.reset_budget, args=(store, "race", u, now + 10))
                for u in users
            ]
        run_threads(threads)
    end = START + days * DAY + 1
    update_budget_all_users(end, store)  # closes the last day

    for user in users:
        items = periods_of(store, "race", user)
        keys = [i["sk"] for i in items]
        assert len(keys) == len(set(keys))
        by_day: dict[int, list[dict]] = defaultdict(list)
        for item in items:
            by_day[int((item["period_start"] - START) // DAY)].append(item)
        for day in range(days):
            segments = by_day[day]
            # One record per day that ends at midnight, plus one per manual reset.
            full = [s for s in segments if s["period_end"] == START + (day + 1) * DAY]
            assert len(full) == 1, (user, day, segments)
            assert full[0]["closed_by"] in ("rollover", "job")
            assert len(segments) == 1 + (day in reset_days)
            # The day's closed spend is exactly what was charged in it (none lost, none twice).
            assert sum(s["spend"] for s in segments) == charged[(user, day)], (user, day)
            for s in segments:
                assert s["spend"] == sum(s["model_cost"].values())
        current = store.get("race", user).as_of(end)
        assert current.current_cost == 0
        assert sum(i["spend"] for i in items) == sum(v for (u, _), v in charged.items() if u == user)


def test_put_and_set_budget_record_the_period_they_roll_over(api, store):
    budgets.put_budget(
        store, "p", "u", PutBudgetRequest(total_budget=Decimal(10), duration=Duration.DAILY), START
    )
    LevelWriter(store).add_cost("p", "u", "m", Decimal("1.5"), START + 5)
    # PUT on the next day rolls the ended period over: recorded in the same write.
    budgets.put_budget(
        store, "p", "u", PutBudgetRequest(total_budget=Decimal(20), duration=Duration.DAILY), START + DAY + 1
    )
    (closed,) = periods_of(store, "p", "u")
    assert (closed["spend"], closed["closed_by"], closed["period_end"]) == (
        Decimal("1.5"),
        "rollover",
        START + DAY,
    )
    assert closed["total_budget"] == 10
    # set_budget (litellm) the day after rolls it over too.
    entry = {"total_budget": 20, "current_cost": 0, "model_cost": {}}
    LevelWriter(store).add_cost("p", "u", "m", Decimal(2), START + DAY + 2)
    budgets.set_budget(store, "p", {"u": LitellmEntry(**entry)}, START + 2 * DAY + 1)
    spends = sorted(i["spend"] for i in periods_of(store, "p", "u"))
    assert spends == [Decimal("1.5"), Decimal(2)]


def test_a_rollover_without_its_record_is_refused(store):
    from budget_service.core.records import Budget

    b = store.save(
        Budget(
            "p", "u", Decimal(5), START, START, current_cost=Decimal(1), duration=Duration.DAILY
        ).with_period_from(START)
    )
    with pytest.raises(AssertionError, match="without its record"):
        store.update("p", "u", lambda cur: cur.as_of(START + DAY)._replace(updated_at=START + DAY))
    assert store.get("p", "u").version == b.version  # nothing written


@pytest.mark.parametrize("fault", ["late", "drop"])
def test_a_lost_answer_of_a_rollover_records_it_once(faulty_dynamodb, faulty_store, fault):
    """The answer of the transaction that rolls the period over (and records it) is lost:
    botocore retries with the same ClientRequestToken; the period is recorded once and the
    cost that triggered the rollover charged once."""
    from localdev.faults import Fault

    store = faulty_store
    project = f"lost-{fault}"
    budgets.put_budget(
        store, project, "u", PutBudgetRequest(total_budget=Decimal(10), duration=Duration.DAILY), START
    )
    LevelWriter(store).add_cost(project, "u", "m", Decimal(3), START + 5)
    faulty_dynamodb.add("TransactWriteItems", Fault(fault))  # the rollover's (the first one sent)
    LevelWriter(store).add_cost(project, "u", "m", Decimal(1), START + DAY + 5)
    assert [i["spend"] for i in periods_of(store, project, "u")] == [Decimal(3)]
    assert store.get(project, "u").current_cost == 1


# ---- periods, report ------------------------------------------------------------------------------


def _setup_history(store: BudgetStore, spends: list[list[tuple[str, str]]]) -> None:
    """Daily budgets for users u0, u1, u2; on day d the k-th (model, amount) pair of spends[d] is
    charged to u<k % 3>."""
    writer = LevelWriter(store)
    for user in ("u0", "u1", "u2"):
        budgets.put_budget(
            store, "rep", user, PutBudgetRequest(total_budget=Decimal(100), duration=Duration.DAILY), START
        )
    for day, charges in enumerate(spends):
        for k, (model, amount) in enumerate(charges):
            writer.add_cost("rep", f"u{k % 3}", model, Decimal(amount), START + day * DAY + 10 + k)
    update_budget_all_users(START + len(spends) * DAY + 1, store)


def test_periods_list_current_first_then_closed_newest_first(api, store, monkeypatch):
    _setup_history(store, [[("m1", "1"), ("m2", "2")], [("m1", "3")], [("m2", "4")]])
    now = START + 3 * DAY + 60
    monkeypatch.setattr(budgets, "utc_now", lambda: now)
    LevelWriter(store).add_cost("rep", "u0", "m1", Decimal("0.5"), now)
    status, body, _ = call("GET", USER + "/periods", {"project": "rep", "user": "u0"}, query={"limit": "2"})
    assert status == 200, body
    page = json.loads(body)
    assert [p["current"] for p in page["periods"]] == [True, False, False]
    assert page["periods"][0]["spend"] == 0.5
    starts = [p["period_start"] for p in page["periods"][1:]]
    assert starts == [iso(START + 2 * DAY), iso(START + DAY)]
    status, body, _ = call(
        "GET",
        USER + "/periods",
        {"project": "rep", "user": "u0"},
        query={"limit": "2", "cursor": page["next_cursor"]},
    )
    rest = json.loads(body)["periods"]
    assert [p["period_start"] for p in rest] == [iso(START)]
    assert rest[0]["spend"] == 1


def test_an_ended_period_not_rolled_over_yet_is_listed_as_pending(api, store, monkeypatch):
    budgets.put_budget(
        store, "pend", "u", PutBudgetRequest(total_budget=Decimal(10), duration=Duration.DAILY), START
    )
    LevelWriter(store).add_cost("pend", "u", "m", Decimal(2), START + 5)
    monkeypatch.setattr(budgets, "utc_now", lambda: START + DAY + 5)
    _, body, _ = call("GET", USER + "/periods", {"project": "pend", "user": "u"})
    periods = json.loads(body)["periods"]
    assert [(p["current"], p["closed_by"], p["spend"]) for p in periods] == [
        (True, None, 0),
        (False, "pending", 2),
    ]


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(50), places=2)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spends=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["gpt-4o", "claude", "mini"]), amounts.map(str)), min_size=0, max_size=4
        ),
        min_size=1,
        max_size=6,
    ),
    bounds=st.tuples(st.integers(0, 7), st.integers(0, 7)),
)
def test_a_report_over_a_range_equals_the_sum_of_its_closed_periods(aws, spends, bounds):
    client = aws
    try:
        client.delete_table(TableName=TABLE_NAME)
    except client.exceptions.ResourceNotFoundException:
        pass
    template.create_table(client, TABLE_NAME)
    store = BudgetStore(TABLE_NAME, client=client)
    _setup_history(store, spends)
    lo, hi = sorted(bounds)
    start, end = START + lo * DAY, START + (hi + 1) * DAY
    report = history.spend_report(store, "rep", start, end)
    # Expected: from the closed-period items themselves, per user and per model.
    per_user: dict[str, Decimal] = defaultdict(Decimal)
    per_model: dict[str, Decimal] = defaultdict(Decimal)
    count = 0
    for user in ("u0", "u1", "u2"):
        for item in periods_of(store, "rep", user):
            if start <= item["period_start"] < end:
                count += 1
                per_user[user] += item["spend"]
                for model, cost in item["model_cost"].items():
                    per_model[model] += cost
    assert {r.user: r.spend for r in report.users} == dict(per_user)
    assert {m: c for m, c in report.model_cost.items()} == {m: c for m, c in per_model.items()}
    assert report.total == sum(per_user.values(), Decimal(0))
    assert report.periods == count
    for row in report.users:
        assert sum(row.model_cost.values(), Decimal(0)) == row.spend
    # ... and the charges themselves: every cost of a day in the range, none outside it.
    charged = sum((Decimal(a) for d, day in enumerate(spends) if lo <= d <= hi for _, a in day), Decimal(0))
    assert report.total == charged


def test_the_report_merges_one_models_names_and_counts_its_periods(api, store):
    """Spend stored under two names of one model (older writes, or a litellm client's names) is one
    model in the report, with the number of periods it had spend in, in JSON and CSV."""
    _setup_history(
        store,
        [[("gpt-4o", "1"), ("m2", "2")], [("openai/gpt-4o", "3")], [("gpt-4o", "1"), ("m2", "1")]],
    )
    window = {"from": "2026-03-01T00:00:00Z", "to": "2026-03-04T00:00:00Z"}
    status, body, _ = call("GET", "/projects/{project}/spend", {"project": "rep"}, query=window)
    assert status == 200, body
    report = json.loads(body)
    assert report["model_cost"] == {"gpt-4o": 5, "m2": 3}
    assert report["model_periods"] == {"gpt-4o": 3, "m2": 2}
    u0 = next(row for row in report["users"] if row["user"] == "u0")
    assert u0["model_cost"] == {"gpt-4o": 5} and u0["model_periods"] == {"gpt-4o": 3}
    status, body, _ = call(
        "GET", "/projects/{project}/spend", {"project": "rep"}, query=window, headers={"Accept": "text/csv"}
    )
    rows = list(csv.reader(io.StringIO(body)))
    assert ["u0", "gpt-4o", "5", "3"] in rows and ["u1", "m2", "3", "2"] in rows


def test_the_report_as_csv(api, store):
    _setup_history(store, [[("gpt-4o", "1.25"), ("=cmd", "2")], [("gpt-4o", "3")]])
    status, body, headers = call(
        "GET",
        "/projects/{project}/spend",
        {"project": "rep"},
        query={"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"},
        headers={"Accept": "text/csv"},
    )
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["user", "model", "spend", "periods"]
    assert ["u0", "gpt-4o", "4.25", "2"] in rows  # per model: the periods with spend on it
    assert ["u1", "'=cmd", "2", "1"] in rows  # a formula-looking cell is kept as text
    assert rows[-1] == ["", "", "6.25", "4"]
    status, body, _ = call(
        "GET",
        "/projects/{project}/spend",
        {"project": "rep"},
        query={"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"},
    )
    report = json.loads(body)
    assert (report["total"], report["from"], report["periods"]) == (6.25, "2026-03-01T00:00:00Z", 4)


def test_a_report_range_must_be_ordered(api):
    status, body, _ = call(
        "GET",
        "/projects/{project}/spend",
        {"project": "rep"},
        query={"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
    )
    assert status == 422, body


# ---- adjustments and the ledger -------------------------------------------------------------------


def adjust_call(user: str, body: dict, key: str | None, key_id: str = "k-admin", project: str = "adj"):
    headers = {"Idempotency-Key": key} if key else None
    status, text, _ = call(
        "POST",
        USER + "/adjustments",
        {"project": project, "user": user},
        body=body,
        headers=headers,
        key_id=key_id,
    )
    return status, json.loads(text)


def test_adjustments_apply_once_per_key_and_credits_never_make_spend_negative(api, store):
    budgets.put_budget(store, "adj", "u", PutBudgetRequest(total_budget=Decimal(10)), budgets.utc_now())
    LevelWriter(store).add_cost("adj", "u", "gpt-4o", Decimal(3), budgets.utc_now())
    status, first = adjust_call("u", {"amount": 2, "reason": "missed call", "model": "gpt-4o"}, "debit-1")
    assert status == 201 and first["applied"] == 2 and not first["replayed"]
    status, again = adjust_call("u", {"amount": 2, "reason": "missed call", "model": "gpt-4o"}, "debit-1")
    assert status == 200 and again["replayed"] and again["applied"] == 2
    assert store.get("adj", "u").current_cost == 5
    # The same key with another body: refused, nothing applied.
    status, _ = adjust_call("u", {"amount": 3, "reason": "missed call"}, "debit-1")
    assert status == 422
    # A credit larger than the model's spend is clamped to it: spend never goes below 0.
    status, credit = adjust_call("u", {"amount": -100, "reason": "refund", "model": "gpt-4o"}, "credit-1")
    assert status == 201 and credit["applied"] == -5 and credit["clamped"]
    b = store.get("adj", "u")
    assert (b.current_cost, b.model_cost["gpt-4o"], b.available) == (0, 0, 10)
    status, more = adjust_call("u", {"amount": -1, "reason": "refund again"}, "credit-2")
    assert status == 201 and more["applied"] == 0 and more["clamped"]
    assert store.get("adj", "u").current_cost == 0


def test_concurrent_credits_and_replays_never_go_below_zero(served_api, server_store):
    now = budgets.utc_now()
    budgets.put_budget(server_store, "adj", "c", PutBudgetRequest(total_budget=Decimal(10)), now)
    LevelWriter(server_store).add_cost("adj", "c", "m", Decimal(1), now)
    results = []
    lock = threading.Lock()

    def credit(k: int) -> None:
        status, body = adjust_call("c", {"amount": -0.3, "reason": "refund"}, f"c-{k % 5}")
        with lock:
            results.append((status, body))

    run_threads([threading.Thread(target=credit, args=(k,)) for k in range(15)])
    assert all(status in (200, 201) for status, _ in results), results
    firsts = {b["idempotency_key"]: b for s, b in results if s == 201}
    assert len(firsts) == 5  # each key applied once, the rest replays
    assert sum(Decimal(str(b["applied"])) for b in firsts.values()) == Decimal(-1)
    assert server_store.get("adj", "c").current_cost == 0


def test_an_adjustment_needs_an_idempotency_key_and_an_admin_key(api, store, monkeypatch):
    budgets.put_budget(store, "adj", "u", PutBudgetRequest(total_budget=Decimal(10)), budgets.utc_now())
    status, body = adjust_call("u", {"amount": 1, "reason": "x"}, None)
    assert status == 422 and "Idempotency-Key" in body["error"]["message"]
    status, body = adjust_call("u", {"amount": 0, "reason": "x"}, "zero")
    assert status == 422
    monkeypatch.setenv("API_AUTH", "on")
    status, text, _ = call(
        "POST",
        USER + "/adjustments",
        {"project": "adj", "user": "u"},
        body={"amount": 1, "reason": "x"},
        headers={"Idempotency-Key": "w"},
        key_id="k-writer",
        role=Role.WRITER,
    )
    assert status == 403, text
    assert store.get("adj", "u").current_cost == 0


def test_every_adjustment_and_settings_change_is_in_the_ledger_with_its_key_id(api, store):
    p = {"project": "led", "user": "u"}
    assert call("PUT", USER, p, body={"total_budget": 10, "duration": "daily"}, key_id="k-1")[0] == 201
    assert call("PUT", USER, p, body={"total_budget": 12, "duration": "daily"}, key_id="k-2")[0] == 200
    assert (
        call("PUT", USER, p, body={"total_budget": 12, "duration": "daily"}, key_id="k-2")[0] == 200
    )  # no change
    adjust_call("u", {"amount": 4, "reason": "manual charge"}, "a-1", key_id="k-3", project="led")
    adjust_call("u", {"amount": 4, "reason": "manual charge"}, "a-1", key_id="k-3", project="led")  # replay
    assert call("POST", USER + "/reset", p, key_id="k-4")[0] == 200
    _, body, _ = call("GET", USER + "/ledger", p, key_id="k-5")
    entries = json.loads(body)["entries"]
    assert [(e["action"], e["key_id"]) for e in entries] == [
        ("reset", "k-4"),
        ("adjustment", "k-3"),
        ("settings", "k-2"),
        ("create", "k-1"),
    ]
    assert entries[2]["details"] == {
        "old": {"total_budget": 10, "duration": "daily", "timezone": None},
        "new": {"total_budget": 12, "duration": "daily", "timezone": None},
    }
    assert entries[1]["details"]["applied"] == 4 and entries[1]["details"]["reason"] == "manual charge"
    assert entries[0]["details"]["spend"] == 4
    # The reset kept the spend it zeroed as a closed period.
    (closed,) = periods_of(store, "led", "u")
    assert (closed["spend"], closed["closed_by"]) == (4, "reset")
    # set_budget's settings changes too, with its key id.
    call(
        "POST",
        "/set_budget",
        {"project": "led"},
        key_id="k-6",
        body={"project_name": "led", "user_dict": {"u": {"total_budget": 30}}},
    )
    entries = json.loads(call("GET", USER + "/ledger", p)[1])["entries"]
    assert (entries[0]["action"], entries[0]["key_id"], entries[0]["details"]["new"]["total_budget"]) == (
        "settings",
        "k-6",
        30,
    )


# ---- delete keeps history unless purged -----------------------------------------------------------


def test_delete_keeps_history_and_ledger_and_purge_removes_them(api, store):
    p = {"project": "del", "user": "u"}
    call("PUT", USER, p, body={"total_budget": 10, "duration": "daily"}, key_id="k-1")
    LevelWriter(store).add_cost("del", "u", "m", Decimal("2.5"), budgets.utc_now())
    assert call("DELETE", USER, p, key_id="k-2")[0] == 204
    assert store.get("del", "u") is None
    (closed,) = periods_of(store, "del", "u")
    assert (closed["spend"], closed["closed_by"]) == (Decimal("2.5"), "delete")
    entries = json.loads(call("GET", USER + "/ledger", p)[1])["entries"]
    assert [(e["action"], e["key_id"]) for e in entries] == [("delete", "k-2"), ("create", "k-1")]
    status, body, _ = call("GET", USER + "/periods", p)
    assert status == 200 and [x["closed_by"] for x in json.loads(body)["periods"]] == ["delete"]
    # Purge: the history and ledger go too; a second purge finds nothing.
    assert call("DELETE", USER, p, query={"purge": "true"})[0] == 204
    assert periods_of(store, "del", "u") == []
    assert call("GET", USER + "/ledger", p)[0] == 404
    assert call("DELETE", USER, p, query={"purge": "true"})[0] == 404


# ---- a cost update is still one request -----------------------------------------------------------


def test_a_cost_update_is_still_one_request(api, aws, store):
    budgets.put_budget(
        store,
        "one",
        "u",
        PutBudgetRequest(total_budget=Decimal(10), duration=Duration.DAILY),
        budgets.utc_now(),
    )
    sent: Counter[str] = Counter()

    def count(model, **_):
        sent[model.name] += 1

    from budget_service.store import base as store_module

    client = store_module.default_store().client
    client.meta.events.register("before-call.dynamodb", count)
    try:
        status, text, _ = call(
            "POST", USER + "/cost", {"project": "one", "user": "u"}, body={"model": "gpt-4o", "cost": 0.5}
        )
    finally:
        client.meta.events.unregister("before-call.dynamodb", count)
    assert status == 200, text
    assert sent == Counter({"TransactWriteItems": 1})


def test_period_keys_fit_dynamodb_for_the_longest_ids():
    longest = "é" * 128  # 256 bytes of UTF-8
    key = period_sk("USER", longest, Decimal("99999999999.999999999"), Decimal("99999999999.999999999"))
    assert len(key.encode()) <= 1024
    assert len(("PROJECT#" + longest + "#PERIODS#USER").encode()) <= 2048


# ---- team and project levels keep their closed periods too -----------------------------------------


@pytest.mark.parametrize("by", ["lazy", "job"])
def test_team_and_project_levels_record_each_closed_period_once(api, store, monkeypatch, by):
    clock = {"now": START + 1}
    monkeypatch.setattr(budgets, "utc_now", lambda: clock["now"])
    assert (
        call(
            "PUT",
            "/projects/{project}/budget",
            {"project": "lv"},
            body={"total_budget": 100, "duration": "daily"},
        )[0]
        == 201
    )
    assert (
        call(
            "PUT",
            "/projects/{project}/teams/{team}",
            {"project": "lv", "team": "red"},
            body={"total_budget": 50, "duration": "daily"},
        )[0]
        == 201
    )
    assert (
        call(
            "PUT",
            USER,
            {"project": "lv", "user": "u"},
            body={"total_budget": 10, "duration": "daily", "team": "red"},
        )[0]
        == 201
    )
    for amount in ("1.25", "0.5"):
        status, text, _ = call(
            "POST", USER + "/cost", {"project": "lv", "user": "u"}, body={"model": "m", "cost": float(amount)}
        )
        assert status == 200, text
    clock["now"] = START + DAY + 1
    if by == "job":
        update_budget_all_users(clock["now"], store)
    call("POST", USER + "/cost", {"project": "lv", "user": "u"}, body={"model": "m", "cost": 2})
    update_budget_all_users(clock["now"], store)  # a second pass finds nothing more to record
    history = HistoryStore(store)
    for level, level_id in (("PROJECT", ""), ("TEAM", "red"), ("USER", "u")):
        items, _ = history.periods_page("lv", level, level_id, limit=10)
        assert [(i["spend"], i["period_start"], i["period_end"]) for i in items] == [
            (Decimal("1.75"), START, START + DAY)
        ], (level, items)
        assert items[0]["model_cost"] == {"m": Decimal("1.75")}
