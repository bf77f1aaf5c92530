"""Threshold alerts: the crossing rule, once-per-period delivery over redeliveries and
failures (property tests), the AlertsFunction handler with Powertools' partial batch failures,
and thresholds on the budget API."""

import json
from decimal import Decimal

import boto3
import pytest
from conftest import TABLE_NAME
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budget_service.core import alerts
from budget_service.core.alerts import AlertDeliveryFailed, alerts_for_change, handle_change, level_state
from budget_service.store.alerts import AlertLedgerStore, EventBridgeBus
from budget_service.store.base import budget_to_item
from localdev import template
from localdev.dynamodb import client_for
from localdev.events import LambdaContext

D = Decimal
DAY = D(86400)
T0 = D(1_790_000_000)  # a period start (epoch seconds)
DEFAULTS = (D("0.8"), D("1"))


def item(sk="USER#alice", *, spend="0", total="10", start=T0, end=None, thresholds=None, **extra):
    """A level item as a stream image shows it (plain values)."""
    out = {
        "pk": "PROJECT#acme",
        "sk": sk,
        "total_budget": D(total),
        "current_cost": D(spend),
        "period_start": start,
        "reset_at": start + DAY if end is None else end,
        "created_at": T0 - DAY,
        "version": D(1),
    }
    if thresholds is not None:
        out["alert_thresholds"] = [D(t) for t in thresholds]
    return {**out, **extra}


def fired(old, new, defaults=DEFAULTS):
    return [a.threshold for a in alerts_for_change(old, new, T0 + 5, lambda _p: defaults)]


# ---- the rule ------------------------------------------------------------------------------------


def test_spend_crossing_thresholds_fires_each_once_in_order():
    assert fired(item(spend="5"), item(spend="7.99")) == []
    assert fired(item(spend="7.99"), item(spend="8")) == [D("0.8")]  # t * total <= spend
    assert fired(item(spend="8"), item(spend="9.5")) == []  # already past 80 %
    assert fired(item(spend="9.5"), item(spend="10")) == [D("1")]
    assert fired(item(spend="10"), item(spend="30")) == []
    # one write past several thresholds fires them all, lowest first
    assert fired(item(spend="0"), item(spend="12"), (D("0.5"), D("0.8"), D("1"))) == [
        D("0.5"),
        D("0.8"),
        D("1"),
    ]


def test_old_spend_of_an_earlier_period_counts_as_zero():
    old = item(spend="9", start=T0 - DAY)
    assert fired(old, item(spend="0")) == []  # a rollover zeroes spend: nothing
    assert fired(old, item(spend="8.5")) == [D("0.8")]  # spend carried into a new period
    assert fired(None, item(spend="8.5")) == [D("0.8")]  # no old image (a new budget)


def test_a_manual_reset_starts_a_new_alert_period_even_with_the_same_period_start():
    before = item(spend="9")
    reset = item(spend="0", last_reset_at=T0 + 100)
    assert fired(before, reset) == []
    again = alerts_for_change(reset, item(spend="8", last_reset_at=T0 + 100), T0 + 200, lambda _p: DEFAULTS)
    first = alerts_for_change(item(spend="7"), item(spend="8"), T0 + 50, lambda _p: DEFAULTS)
    assert [a.threshold for a in again] == [D("0.8")]
    assert again[0].alert_id != first[0].alert_id
    assert again[0].period_start == T0 + 100


def test_raising_the_budget_rearms_and_lowering_it_fires_what_spend_now_passes():
    # 9 of 10 (80 % fired). Raised to 20: nothing now; 16 of 20 fires 80 % again, with a new id.
    assert fired(item(spend="9"), item(spend="9", total="20")) == []
    rearmed = alerts_for_change(
        item(spend="9", total="20"), item(spend="16", total="20"), T0, lambda _p: DEFAULTS
    )
    old = alerts_for_change(item(spend="7"), item(spend="9"), T0, lambda _p: DEFAULTS)
    assert [a.threshold for a in rearmed] == [D("0.8")] and rearmed[0].alert_id != old[0].alert_id
    # 9 of 20, lowered to 10: 90 % of the new total passes 80 % once.
    assert fired(item(spend="9", total="20"), item(spend="9", total="10")) == [D("0.8")]
    # a small raise that keeps spend past 80 % fires nothing
    assert fired(item(spend="9.9"), item(spend="9.9", total="10.5")) == []


def test_zero_spend_and_zero_budgets_fire_nothing_until_something_is_spent():
    assert fired(None, item(spend="0", total="0")) == []
    assert fired(item(spend="0", total="0"), item(spend="0.01", total="0")) == [D("0.8"), D("1")]


def test_team_and_project_levels_alert_like_users_and_other_items_are_ignored():
    for sk, level, level_id in (
        ("TEAM#ml", "team", "ml"),
        ("PROJECT", "project", "acme"),
        ("USER#a#b", "user", "a#b"),
    ):
        (alert,) = alerts_for_change(
            item(sk, spend="70", total="100", held=D(5), available=D(25)),
            item(sk, spend="85", total="100", held=D(0), available=D(15)),
            T0,
            lambda _p: DEFAULTS,
        )
        assert (alert.level, alert.level_id, alert.project, alert.threshold) == (
            level,
            level_id,
            "acme",
            D("0.8"),
        )
    for sk in ("HOLD#h1", "EVENT#5:alice#k", "PERIOD#x", "AUDIT#y", "ALERT#z", "PRICE#gpt-4o", "PROJECTX"):
        assert fired(item(sk, spend="0"), item(sk, spend="50")) == []
    assert fired(None, {"pk": "APIKEY#abc", "sk": "APIKEY", "total_budget": D(1), "current_cost": D(5)}) == []
    assert fired(item(spend="5"), None) == []  # a delete


def test_holds_are_not_spend():
    assert fired(item(spend="1", held=D(0)), item(spend="1", held=D(9))) == []


def test_thresholds_come_from_the_budget_else_the_project_else_the_service(monkeypatch):
    asked = []

    def project(p):
        asked.append(p)
        return (D("0.5"),)

    own = alerts_for_change(
        item(spend="0", thresholds=["0.25"]), item(spend="6", thresholds=["0.25"]), T0, project
    )
    assert [a.threshold for a in own] == [D("0.25")] and asked == []
    assert [a.threshold for a in alerts_for_change(item(spend="0"), item(spend="6"), T0, project)] == [
        D("0.5")
    ]
    assert asked == ["acme"]
    assert (
        alerts_for_change(item(spend="0", thresholds=[]), item(spend="60", thresholds=[]), T0, project) == []
    )
    # no crossing possible: the project default is not even read
    asked.clear()
    assert alerts_for_change(item(spend="6"), item(spend="6"), T0, project) == [] and asked == []
    monkeypatch.setenv(alerts.DEFAULT_THRESHOLDS_ENV, "1, 0.5,0.5")
    assert alerts.service_default_thresholds() == (D("0.5"), D("1"))
    monkeypatch.setenv(alerts.DEFAULT_THRESHOLDS_ENV, "")
    assert alerts.service_default_thresholds() == ()
    monkeypatch.setenv(alerts.DEFAULT_THRESHOLDS_ENV, "0")
    with pytest.raises(ValueError):
        alerts.service_default_thresholds()


def test_alert_id_is_stable_and_changes_with_period_threshold_total_and_level():
    (a,) = alerts_for_change(item(spend="7"), item(spend="8"), T0 + 1, lambda _p: DEFAULTS)
    (b,) = alerts_for_change(item(spend="7.5"), item(spend="9"), T0 + 99, lambda _p: DEFAULTS)
    assert a.alert_id == b.alert_id  # same level, period, threshold, total: the same alert
    others = [
        a._replace(period_start=T0 + DAY),
        a._replace(threshold=D("0.5")),
        a._replace(total_budget=D("10.01")),
        a._replace(level="team"),
        a._replace(project="acme2"),
    ]
    assert len({o.alert_id for o in others} | {a.alert_id}) == 6
    assert a._replace(total_budget=D("10.00")).alert_id == a.alert_id  # 10 == 10.00
    detail = a.detail()
    assert detail == {
        "alert_id": a.alert_id,
        "project": "acme",
        "level": "user",
        "id": "alice",
        "threshold": 0.8,
        "spend": 8,
        "total_budget": 10,
        "period_start": "2026-09-21T14:13:20Z",
        "period_end": "2026-09-22T14:13:20Z",
        "crossed_at": "2026-09-21T14:13:21Z",
    }


# ---- delivery: redeliveries and failures never lose a crossing nor mint a new id ----------------


class FakeLedger:
    def __init__(self, faults):
        self.sent: set[str] = set()
        self.faults = faults

    def already_sent(self, alert):
        return alert.alert_id in self.sent

    def mark_sent(self, alert):
        if self.faults.pop("mark", False):
            raise ConnectionError("injected: the table did not answer")
        self.sent.add(alert.alert_id)


class FakeBus:
    """Keeps every event put, in order; faults fail before or after the put."""

    def __init__(self, faults):
        self.events: list[dict] = []
        self.faults = faults

    def put(self, batch):
        if self.faults.pop("before", False):
            raise ConnectionError("injected: PutEvents failed, nothing put")
        if self.faults.pop("refuse_last", False):
            self.events += [a.detail() for a in batch[:-1]]
            return [batch[-1]]
        self.events += [a.detail() for a in batch]
        if self.faults.pop("after", False):
            raise ConnectionError("injected: PutEvents put the events, the answer was lost")
        return []


def history(ops):
    """The item's states after each operation (cost, credit, rollover, reset, set total)."""
    state = item(spend="0", total="10")
    states = []
    for step, (op, amount) in enumerate(ops):
        s = dict(state)
        if op == "cost":
            s["current_cost"] = s["current_cost"] + amount
        elif op == "credit":
            s["current_cost"] = max(D(0), s["current_cost"] - amount)
        elif op == "rollover":
            s["period_start"] = s["reset_at"]
            s["reset_at"] = s["reset_at"] + DAY
            s["current_cost"] = D(0)
        elif op == "reset":
            s["current_cost"] = D(0)
            s["last_reset_at"] = T0 + step
        elif op == "total":
            s["total_budget"] = amount
        s["version"] = s["version"] + 1
        states.append((state, s))
        state = s
    return states


def oracle(records, thresholds):
    """The alert ids a correct system delivers: each threshold a state reaches that its
    predecessor (in the same alert period) did not, once per id."""
    expected = {}
    for old, new in records:
        o, n = level_state(old), level_state(new)
        for t in thresholds:
            if n.reaches(t) and not (o.same_alert_period(n) and o.reaches(t)):
                alert = alerts.Alert(
                    n.project,
                    n.level,
                    n.level_id,
                    t,
                    n.spend,
                    n.total_budget,
                    n.alert_period_start,
                    n.period_end,
                    D(0),
                )
                expected.setdefault(alert.alert_id, None)
    return set(expected)


money = st.decimals(min_value=D("0.01"), max_value=D("6"), places=2)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("cost"), money),
        st.tuples(st.just("credit"), money),
        st.tuples(st.just("rollover"), st.just(D(0))),
        st.tuples(st.just("reset"), st.just(D(0))),
        st.tuples(st.just("total"), st.decimals(min_value=D(1), max_value=D(20), places=1)),
    ),
    min_size=1,
    max_size=25,
)
faults = st.lists(st.sampled_from(["none", "before", "after", "mark", "refuse_last"]), max_size=25)


def run_stream(records, fault_plan, batch_size, thresholds):
    """Deliver the records as the event source mapping does: in batches, a failed record and
    those after it retried; each invocation may draw one injected fault."""
    plan = list(fault_plan)
    faults: dict = {}
    ledger, bus = FakeLedger(faults), FakeBus(faults)
    position, invocations = 0, 0
    while position < len(records):
        batch = records[position : position + batch_size]
        if plan:
            faults.clear()
            kind = plan.pop(0)
            if kind != "none":
                faults[kind] = True
        invocations += 1
        assert invocations < 10 * len(records) + 50, "the stream made no progress"
        done = 0
        for old, new in batch:
            try:
                handle_change(old, new, T0, ledger=ledger, bus=bus, project_thresholds=lambda _p: thresholds)
            except (ConnectionError, AlertDeliveryFailed):
                break  # the record fails; Lambda retries from here (records after it too)
            done += 1
        position += done
    return bus.events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=ops,
    fault_plan=faults,
    batch_size=st.integers(1, 5),
    thresholds=st.sampled_from([DEFAULTS, (D("0.5"), D("0.8"), D("1")), (D("0.25"), D("1.5"))]),
)
def test_redeliveries_never_miss_a_crossing_nor_make_a_new_id(ops, fault_plan, batch_size, thresholds):
    records = history(ops)
    events = run_stream(records, fault_plan, batch_size, thresholds)
    ids = [e["alert_id"] for e in events]
    assert set(ids) == oracle(records, thresholds)  # nothing missed, nothing extra
    # A repeat is the same event (same id, same figures), and only after an injected failure.
    by_id: dict = {}
    for event in events:
        assert by_id.setdefault(event["alert_id"], event) == event
    if len(ids) != len(set(ids)):
        assert {"after", "mark"} & set(fault_plan)


@settings(max_examples=100, deadline=None)
@given(
    periods=st.lists(st.lists(money, max_size=12), min_size=1, max_size=4),
    fault_plan=faults,
    batch_size=st.integers(1, 4),
)
def test_costs_and_rollovers_alert_once_per_threshold_each_period_spend_reached(
    periods, fault_plan, batch_size
):
    """An oracle independent of the rule: with a fixed total, each period alerts exactly for the
    thresholds its final spend reached, once each, whatever fails and is retried."""
    op_list = []
    for i, costs in enumerate(periods):
        if i:
            op_list.append(("rollover", D(0)))
        op_list += [("cost", c) for c in costs]
    if not op_list:
        return
    events = run_stream(history(op_list), fault_plan, batch_size, DEFAULTS)
    distinct = {e["alert_id"]: e for e in events}.values()
    for i, costs in enumerate(periods):
        spend = sum(costs, D(0))
        start = T0 + i * DAY
        got = sorted(D(str(e["threshold"])) for e in distinct if e["period_start"] == alerts.iso(start))
        assert got == [t for t in DEFAULTS if spend > 0 and spend >= t * 10]


def test_concurrent_costs_crossing_together_are_one_crossing():
    """The stream serialises writes to an item: two costs that together pass 80 % are two
    records, and only the one that takes spend past 8 crosses."""
    a = item(spend="7")
    b = item(spend="7.6")  # first cost: +0.6
    c = item(spend="8.2")  # second cost: +0.6
    ledger, bus = FakeLedger({}), FakeBus({})
    for old, new in ((a, b), (b, c), (b, c)):  # the last one a redelivery
        handle_change(old, new, T0, ledger=ledger, bus=bus, project_thresholds=lambda _p: DEFAULTS)
    assert [e["threshold"] for e in bus.events] == [0.8]


# ---- the AlertsFunction handler, on moto's DynamoDB and EventBridge ------------------------------


def stream_record(seq, old, new):
    from boto3.dynamodb.types import TypeSerializer

    ser = TypeSerializer().serialize
    rec = {
        "eventID": f"e{seq}",
        "eventName": "MODIFY" if old else "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
        "dynamodb": {
            "ApproximateCreationDateTime": 1790000005,
            "SequenceNumber": str(seq),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "Keys": {"pk": ser(new["pk"]), "sk": ser(new["sk"])},
            "NewImage": {k: ser(v) for k, v in new.items()},
        },
    }
    if old:
        rec["dynamodb"]["OldImage"] = {k: ser(v) for k, v in old.items()}
    return rec


@pytest.fixture
def alerts_env(aws, monkeypatch):
    from budget_service.store import alerts as store_alerts

    events = boto3.client("events")
    events.create_event_bus(Name="test-alerts")
    monkeypatch.setenv("ALERT_BUS_NAME", "test-alerts")
    monkeypatch.setenv(alerts.DEFAULT_THRESHOLDS_ENV, "0.8,1")
    store_alerts.default_ledger.cache_clear()
    store_alerts.default_bus.cache_clear()
    yield aws
    store_alerts.default_ledger.cache_clear()
    store_alerts.default_bus.cache_clear()


def invoke_alerts(event):
    return template.load_handler("AlertsFunction")(event, LambdaContext("AlertsFunction"))


def sent_ids(client):
    items = client.scan(TableName=TABLE_NAME)["Items"]
    return sorted(i["sk"]["S"] for i in items if i["sk"]["S"].startswith("ALERT#"))


def test_handler_puts_each_crossing_once_and_records_it(alerts_env):
    event = {
        "Records": [
            stream_record(1, item(spend="5"), item(spend="8.5")),
            stream_record(2, item("HOLD#h", spend="0"), item("HOLD#h", spend="9")),
            stream_record(3, item(spend="8.5"), item(spend="10.5")),
        ]
    }
    assert invoke_alerts(event) == {"batchItemFailures": []}
    assert len(sent_ids(alerts_env)) == 2
    assert invoke_alerts(event) == {"batchItemFailures": []}  # the batch redelivered
    assert len(sent_ids(alerts_env)) == 2


def test_project_default_thresholds_are_read_from_the_project_item(alerts_env):
    alerts_env.put_item(
        TableName=TABLE_NAME,
        Item={
            "pk": {"S": "PROJECT#acme"},
            "sk": {"S": "PROJECT"},
            "total_budget": {"N": "1000"},
            "default_alert_thresholds": {"L": [{"N": "0.5"}]},
        },
    )
    assert invoke_alerts({"Records": [stream_record(1, item(spend="4"), item(spend="6"))]}) == {
        "batchItemFailures": []
    }
    (sk,) = sent_ids(alerts_env)
    stored = alerts_env.get_item(TableName=TABLE_NAME, Key={"pk": {"S": "PROJECT#acme"}, "sk": {"S": sk}})
    assert stored["Item"]["threshold"] == {"N": "0.5"}
    assert int(stored["Item"]["expires_at"]["N"]) == int(T0 + DAY + 7 * DAY)


def test_a_failed_put_fails_that_record_and_the_ones_after_it(alerts_env, monkeypatch):
    calls = []
    real_put = EventBridgeBus.put

    def flaky(self, batch):
        calls.append([a.threshold for a in batch])
        if len(calls) == 1:
            raise ConnectionError("EventBridge unavailable")
        return real_put(self, batch)

    monkeypatch.setattr(EventBridgeBus, "put", flaky)
    event = {
        "Records": [
            stream_record(1, item(spend="0"), item(spend="1")),
            stream_record(2, item(spend="1"), item(spend="8.5")),
            stream_record(3, item(spend="8.5"), item(spend="10.5")),
        ]
    }
    response = invoke_alerts(event)
    # Lambda retries from the lowest failed sequence number; record 3 waits so order is kept.
    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "3"}]}
    assert calls == [[D("0.8")]] and sent_ids(alerts_env) == []
    assert invoke_alerts({"Records": event["Records"][1:]}) == {"batchItemFailures": []}
    assert calls[1:] == [[D("0.8")], [D("1")]] and len(sent_ids(alerts_env)) == 2


def test_refused_entries_are_retried_and_the_accepted_ones_not_repeated(alerts_env, monkeypatch):
    ledger = AlertLedgerStore(TABLE_NAME, client=alerts_env)
    put = []

    class Refusing:
        def put(self, batch):
            put.append([a.threshold for a in batch])
            return [batch[-1]] if len(put) == 1 else []

    old, new = item(spend="0"), item(spend="11")
    with pytest.raises(AlertDeliveryFailed):
        handle_change(old, new, T0, ledger=ledger, bus=Refusing(), project_thresholds=lambda _p: DEFAULTS)
    handle_change(old, new, T0, ledger=ledger, bus=Refusing(), project_thresholds=lambda _p: DEFAULTS)
    assert put == [[D("0.8"), D("1")], [D("1")]]


def test_sample_stream_event_is_handled(alerts_env):
    ((function_id, event_id, _props),) = template.stream_events()
    sample = template.EVENTS_DIR / f"{template.snake_case(event_id)}.json"
    event = json.loads(sample.read_text())
    assert invoke_alerts(event) == {"batchItemFailures": []}
    assert len(sent_ids(alerts_env)) >= 1


# ---- thresholds on the budget API ----------------------------------------------------------------


def test_put_budget_sets_shows_and_clears_thresholds(api, store):
    path = {"project": "acme", "user": "alice"}
    res = api.call(
        "PUT",
        "/projects/{project}/users/{user}",
        path,
        body={"total_budget": 10, "alert_thresholds": [1, 0.5, 0.8, 0.5]},
    )
    assert res.status == 201 and res.json()["alert_thresholds"] == [D("0.5"), D("0.8"), 1]
    assert store.get("acme", "alice").alert_thresholds == (D("0.5"), D("0.8"), D("1"))
    stored = budget_to_item(store.get("acme", "alice"))
    assert stored["alert_thresholds"] == {"L": [{"N": "0.5"}, {"N": "0.8"}, {"N": "1"}]}
    res = api.call(
        "PUT", "/projects/{project}/users/{user}", path, body={"total_budget": 10, "alert_thresholds": []}
    )
    assert res.json()["alert_thresholds"] == []
    res = api.call("PUT", "/projects/{project}/users/{user}", path, body={"total_budget": 10})
    assert res.json()["alert_thresholds"] is None  # inherits the project default
    assert api.call("GET", "/projects/{project}/users/{user}", path).json()["alert_thresholds"] is None


@pytest.mark.parametrize("bad", [[0], [-0.5], [10.5], ["0.8"], [True], [0.1] * 11, [0.1234567], 0.8])
def test_bad_thresholds_are_422_and_write_nothing(api, store, bad):
    res = api.call(
        "PUT",
        "/projects/{project}/users/{user}",
        {"project": "acme", "user": "bob"},
        body={"total_budget": 10, "alert_thresholds": bad},
    )
    assert res.status == 422, res
    assert store.get("acme", "bob") is None


def test_a_manual_reset_records_when_it_happened(api, store):
    path = {"project": "acme", "user": "carol"}
    api.call(
        "PUT", "/projects/{project}/users/{user}", path, body={"total_budget": 10, "duration": "monthly"}
    )
    before = store.get("acme", "carol")
    assert before.last_reset_at is None
    api.call("POST", "/projects/{project}/users/{user}/reset", path)
    after = store.get("acme", "carol")
    # A manual reset zeroes spend within the calendar period and starts the alert period there.
    assert after.last_reset_at is not None and after.period_start == after.last_reset_at
    assert after.reset_at == before.reset_at
    assert level_state(_plain_item(after)).alert_period_start == after.last_reset_at


def _plain_item(budget):
    from budget_service.store.base import plain_item

    return plain_item(budget_to_item(budget))


def test_a_failed_transaction_leaves_no_stream_record(dynamodb_server):
    """The embedded DynamoDB's stream (moto, with localdev.moto_streams' cheap copy) keeps only
    writes that happened: a cancelled transaction's records go with it."""
    import uuid

    aws = client_for(dynamodb_server)
    project = "PROJECT#tx-" + uuid.uuid4().hex
    key = {"pk": {"S": project}, "sk": {"S": "USER#alice"}}
    aws.put_item(TableName=TABLE_NAME, Item={**key, "current_cost": {"N": "1"}})
    with pytest.raises(aws.exceptions.TransactionCanceledException):
        aws.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": TABLE_NAME,
                        "Key": key,
                        "UpdateExpression": "SET current_cost = :c",
                        "ExpressionAttributeValues": {":c": {"N": "9"}},
                    }
                },
                {
                    "Put": {
                        "TableName": TABLE_NAME,
                        "Item": {"pk": {"S": project}, "sk": {"S": "EVENT#x"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    aws.update_item(
        TableName=TABLE_NAME,
        Key=key,
        UpdateExpression="SET current_cost = :c",
        ExpressionAttributeValues={":c": {"N": "2"}},
    )
    streams = boto3.client("dynamodbstreams", endpoint_url=dynamodb_server)
    arn = aws.describe_table(TableName=TABLE_NAME)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = [
        r
        for r in streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
        if r["dynamodb"]["Keys"]["pk"]["S"] == project
    ]
    assert [(r["eventName"], r["dynamodb"]["NewImage"]["current_cost"]["N"]) for r in records] == [
        ("INSERT", "1"),
        ("MODIFY", "2"),
    ]
