"""The embedded DynamoDB's contention model (localdev/contention.py), seen through botocore as the
service sees DynamoDB: a transaction conflict cancels the second of two overlapping transactions
at the conflicting item's index, a single write on an item in flight is refused with
TransactionConflictException, an item is writable again once its window has passed, a partition
past its write capacity is throttled, and each switch turns its part off.

The model's clock is the test's (``ManualClock``): a transaction's items stay in flight until
the test moves it, so every overlap here happens for sure, whatever the machine's speed."""

from __future__ import annotations

import threading
import uuid

import pytest
import requests
from botocore.config import Config
from conftest import IN_PROCESS_CONTENTION, wait_until

from localdev import template
from localdev.contention import ContentionModel
from localdev.dynamodb import EmbeddedDynamoDB, client_for

ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=60)


class ManualClock:
    """Seconds that move only when the test says; wakes the model's waiting answers."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.model: ContentionModel | None = None

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        assert self.model is not None
        self.model.wake()


class Local:
    def __init__(self, window_s: float = 0.010, partition_wcu: float = 0) -> None:
        self.clock = ManualClock()
        self.model = ContentionModel(window_s=window_s, partition_wcu=partition_wcu, clock=self.clock)
        self.clock.model = self.model
        self.server = EmbeddedDynamoDB(contention=self.model).start()
        self.client = client_for(self.server.url, ONE_ATTEMPT)
        self.table = f"contention-{uuid.uuid4().hex[:8]}"
        template.create_table(self.client, self.table)

    def key(self, pk: str, sk: str = "USER#a") -> dict:
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def put(self, pk: str, sk: str = "USER#a", **extra) -> dict:
        return {"Put": {"TableName": self.table, "Item": {**self.key(pk, sk), **extra}}}

    def add(self, pk: str, sk: str = "USER#a") -> dict:
        return {
            "Update": {
                "TableName": self.table,
                "Key": self.key(pk, sk),
                "UpdateExpression": "ADD n :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }

    def stored(self, pk: str, sk: str = "USER#a"):
        return self.client.get_item(TableName=self.table, Key=self.key(pk, sk)).get("Item")


@pytest.fixture
def local():
    found = Local()
    yield found
    found.clock.advance(3600)  # lets any answer still held go
    found.server.stop()


def _in_background(call) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["answer"] = call()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_transaction_on_an_item_in_flight_is_cancelled_at_that_items_index(local):
    p = "PROJECT#p"
    first, outcome = _in_background(
        lambda: local.client.transact_write_items(
            TransactItems=[local.add(p, "USER#a"), local.add(p, "TEAM#t")]
        )
    )
    wait_until(lambda: local.model.in_flight(local.table, local.key(p, "TEAM#t")))
    # Applied at once (atomically); only its answer waits out the window.
    assert local.stored(p, "TEAM#t")["n"] == {"N": "1"}
    assert first.is_alive() and outcome == {}

    with pytest.raises(local.client.exceptions.TransactionCanceledException) as cancelled:
        local.client.transact_write_items(
            TransactItems=[local.add(p, "USER#b"), local.add(p, "TEAM#t"), local.put("PROJECT#q")]
        )
    response = cancelled.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["CancellationReasons"] == [
        {"Code": "None"},
        {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
        {"Code": "None"},
    ]
    assert "[None, TransactionConflict, None]" in response["Error"]["Message"]
    assert local.stored(p, "USER#b") is None and local.stored("PROJECT#q") is None  # nothing of it
    assert local.stored(p, "TEAM#t")["n"] == {"N": "1"}

    local.clock.advance(0.010)
    first.join(timeout=30)
    assert not first.is_alive() and "error" not in outcome, outcome
    # The window is over: the same transaction goes through (and holds its answer in turn).
    again, outcome = _in_background(
        lambda: local.client.transact_write_items(
            TransactItems=[local.add(p, "USER#b"), local.add(p, "TEAM#t")]
        )
    )
    wait_until(lambda: local.model.in_flight(local.table, local.key(p, "TEAM#t")))
    assert local.stored(p, "TEAM#t")["n"] == {"N": "2"}
    local.clock.advance(0.010)
    again.join(timeout=30)
    assert not again.is_alive() and "error" not in outcome, outcome
    stats = local.model.stats()
    assert (stats["transactions"], stats["transaction_conflicts"], stats["conflicts"]) == (3, 1, 1)


def test_a_single_write_on_an_item_in_flight_is_refused_then_accepted_after_the_window(local):
    p = "PROJECT#p"
    first, outcome = _in_background(lambda: local.client.transact_write_items(TransactItems=[local.add(p)]))
    wait_until(lambda: local.model.in_flight(local.table, local.key(p)))
    writes = [
        lambda: local.client.put_item(TableName=local.table, Item={**local.key(p), "n": {"N": "7"}}),
        lambda: local.client.update_item(
            TableName=local.table,
            Key=local.key(p),
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "7"}},
        ),
        lambda: local.client.delete_item(TableName=local.table, Key=local.key(p)),
    ]
    for write in writes:
        with pytest.raises(local.client.exceptions.TransactionConflictException) as refused:
            write()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert refused.value.response["Error"]["Code"] == "TransactionConflictException"
    assert local.stored(p)["n"] == {"N": "1"}  # none of them wrote
    # Another item of the same partition is not in flight.
    local.client.put_item(TableName=local.table, Item=local.key(p, "USER#other"))
    # Nor does a read conflict with it; a TransactGetItems does.
    assert local.stored(p)["n"] == {"N": "1"}
    with pytest.raises(local.client.exceptions.TransactionCanceledException) as read:
        local.client.transact_get_items(
            TransactItems=[{"Get": {"TableName": local.table, "Key": local.key(p)}}]
        )
    assert [r["Code"] for r in read.value.response["CancellationReasons"]] == ["TransactionConflict"]

    local.clock.advance(0.009)
    assert local.model.in_flight(local.table, local.key(p))  # not yet
    local.clock.advance(0.001)
    first.join(timeout=30)
    assert not first.is_alive() and "error" not in outcome, outcome
    assert not local.model.in_flight(local.table, local.key(p))
    writes[0]()
    assert local.stored(p)["n"] == {"N": "7"}
    assert local.model.stats()["write_conflicts"] == 3


def test_a_callers_next_request_never_meets_its_own_transaction():
    """The answer comes once the window is over (real clock here), as DynamoDB answers after its
    commit: one caller's transaction then write on the same item never conflict."""
    model = ContentionModel(window_s=0.05, partition_wcu=0)
    server = EmbeddedDynamoDB(contention=model).start()
    try:
        client = client_for(server.url, ONE_ATTEMPT)
        table = f"contention-{uuid.uuid4().hex[:8]}"
        template.create_table(client, table)
        key = {"pk": {"S": "PROJECT#p"}, "sk": {"S": "USER#a"}}
        for n in range(3):
            client.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": key}}])
            client.put_item(TableName=table, Item={**key, "n": {"N": str(n)}})
        assert model.stats()["conflicts"] == 0
    finally:
        server.stop()


def test_a_partition_past_its_write_capacity_is_throttled_as_on_demand_dynamodb_answers():
    local = Local(window_s=0, partition_wcu=4)
    try:
        p = "PROJECT#hot"
        big = {"blob": {"S": "x" * 3000}}  # 3 KB: 3 WCU
        local.client.put_item(TableName=local.table, Item={**local.key(p, "USER#big"), **big})
        local.client.put_item(TableName=local.table, Item=local.key(p, "USER#a"))  # 1 WCU: 4 used
        with pytest.raises(local.client.exceptions.ProvisionedThroughputExceededException) as throttled:
            local.client.put_item(TableName=local.table, Item=local.key(p, "USER#b"))
        response = throttled.value.response
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "hot key" in response["Error"]["Message"]
        assert response["ThrottlingReasons"] == [
            {
                "reason": "TableWriteKeyRangeThroughputExceeded",
                "resource": local.model.tables.arn(local.table),
            }
        ]
        assert response["ThrottlingReasons"][0]["resource"].endswith(f":table/{local.table}")
        assert local.stored(p, "USER#b") is None
        # The partition key is the unit: another project's partition has its own capacity.
        local.client.put_item(TableName=local.table, Item=local.key("PROJECT#cold"))

        local.clock.advance(0.5)  # 2 WCU back
        # A transaction costs 2 WCU per item: these two take the bucket to -2 (a debt) ...
        local.client.transact_write_items(TransactItems=[local.add(p, "USER#a"), local.add(p, "USER#c")])
        # ... so the next transaction writing that partition is cancelled at that item's index.
        with pytest.raises(local.client.exceptions.TransactionCanceledException) as cancelled:
            local.client.transact_write_items(
                TransactItems=[local.add("PROJECT#cold"), local.add(p, "USER#a")]
            )
        reasons = cancelled.value.response["CancellationReasons"]
        assert [r["Code"] for r in reasons] == ["None", "ThrottlingError"]
        assert local.stored("PROJECT#cold").get("n") is None  # nothing of it applied

        local.clock.advance(1)  # a second later the partition is writable again
        local.client.put_item(TableName=local.table, Item=local.key(p, "USER#b"))
        stats = local.model.stats()
        assert (stats["throttles"], stats["conflicts"]) == (2, 0)
    finally:
        local.server.stop()


def test_botocore_retries_a_throttled_single_write_by_itself(backoff):
    """ProvisionedThroughputExceededException is a throttle to botocore's standard mode: the
    client retries it (with the capacity back by then here) and the caller sees success."""
    local = Local(window_s=0, partition_wcu=1)
    try:
        local.client.put_item(TableName=local.table, Item=local.key("PROJECT#p"))
        retrying = client_for(local.server.url, Config(retries={"mode": "standard", "total_max_attempts": 3}))
        # After each attempt, before botocore decides to retry: a second passes (the refill).
        retrying.meta.events.register("needs-retry.dynamodb.PutItem", lambda **_: local.clock.advance(1))
        retrying.put_item(TableName=local.table, Item=local.key("PROJECT#p", "USER#b"))
        assert local.model.stats()["throttles"] == 1 and len(backoff) == 1
        assert local.stored("PROJECT#p", "USER#b") is not None
    finally:
        local.server.stop()


def test_switches_turn_each_part_off():
    assert ContentionModel.from_environ({"LOCAL_DYNAMODB_CONFLICTS": "0"}) is None
    assert ContentionModel.from_environ({"LOCAL_DYNAMODB_CONFLICTS": "off"}) is None
    default = ContentionModel.from_environ({})
    assert default is not None and (default.window_s, default.partition_wcu) == (0.010, 1000)
    tuned = ContentionModel.from_environ(
        {"LOCAL_DYNAMODB_CONFLICT_WINDOW_MS": "off", "LOCAL_DYNAMODB_PARTITION_WCU": "50"}
    )
    assert tuned is not None and (tuned.window_s, tuned.partition_wcu) == (0, 50)
    with pytest.raises(ValueError, match="LOCAL_DYNAMODB_PARTITION_WCU"):
        ContentionModel.from_environ({"LOCAL_DYNAMODB_PARTITION_WCU": "lots"})

    # No window: overlapping transactions and writes all go through; no capacity: no throttle.
    local = Local(window_s=0, partition_wcu=0)
    try:
        for n in range(20):
            local.client.transact_write_items(TransactItems=[local.add("PROJECT#p")])
            local.client.put_item(TableName=local.table, Item={**local.key("PROJECT#p"), "n": {"N": str(n)}})
        stats = local.model.stats()
        assert (stats["transactions"], stats["conflicts"], stats["throttles"]) == (20, 0, 0)
    finally:
        local.server.stop()


def test_the_servers_contention_route_reads_resets_and_retunes(local):
    url = f"{local.server.url}/_local/contention"
    assert requests.get(url, timeout=30).json()["enabled"] is True
    changed = requests.post(
        url, json={"conflict_window_ms": 25, "partition_wcu": 7, "reset": True}, timeout=30
    )
    assert changed.status_code == 200
    assert (changed.json()["window_ms"], changed.json()["partition_wcu"]) == (25, 7)
    assert requests.post(url, json={"partition_wcu": "lots"}, timeout=30).status_code == 400

    off = EmbeddedDynamoDB(contention=None).start()
    try:
        assert requests.get(f"{off.url}/_local/contention", timeout=30).json() == {"enabled": False}
    finally:
        off.stop()


def test_the_tests_in_process_moto_applies_the_model(aws, monkeypatch):
    """conftest's in-process moto has the model on unless LOCAL_DYNAMODB_CONFLICTS=0."""
    if IN_PROCESS_CONTENTION is None:
        pytest.skip("LOCAL_DYNAMODB_CONFLICTS=0 turned the model off for this run")
    clock = ManualClock()
    clock.model = IN_PROCESS_CONTENTION
    monkeypatch.setattr(IN_PROCESS_CONTENTION, "clock", clock)
    template_table = "budgets-test"
    # A partition of its own: earlier tests' capacity buckets run on the real clock.
    key = {"pk": {"S": f"PROJECT#model-{uuid.uuid4().hex[:8]}"}, "sk": {"S": "USER#a"}}
    update = {
        "Update": {
            "TableName": template_table,
            "Key": key,
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }
    before = IN_PROCESS_CONTENTION.stats()
    first, outcome = _in_background(lambda: aws.transact_write_items(TransactItems=[update]))
    wait_until(lambda: IN_PROCESS_CONTENTION.in_flight(template_table, key))
    with pytest.raises(aws.exceptions.TransactionCanceledException) as cancelled:
        aws.transact_write_items(TransactItems=[update])
    assert cancelled.value.response["CancellationReasons"][0]["Code"] == "TransactionConflict"
    with pytest.raises(aws.exceptions.TransactionConflictException):
        aws.put_item(TableName=template_table, Item=key)
    clock.advance(0.010)
    first.join(timeout=30)
    assert not first.is_alive() and "error" not in outcome, outcome
    aws.put_item(TableName=template_table, Item=key)
    after = IN_PROCESS_CONTENTION.stats()
    assert after["transactions"] - before["transactions"] == 2
    assert after["conflicts"] - before["conflicts"] == 2


def test_a_retry_of_an_applied_transaction_is_replayed_not_refused_as_a_conflict(local):
    """botocore sends a timed-out TransactWriteItems again with the same ClientRequestToken. If
    the first attempt was applied and its items are still in flight, DynamoDB answers the retry
    with that transaction's outcome (never a conflict with itself); a conflict here would make a
    writer send it again under a new token and apply it twice."""
    p = "PROJECT#retry"
    request = {"TransactItems": [local.add(p, "USER#a")], "ClientRequestToken": "token-1"}
    first, outcome = _in_background(lambda: local.client.transact_write_items(**request))
    wait_until(lambda: local.model.in_flight(local.table, local.key(p, "USER#a")))
    again, outcome_again = _in_background(lambda: local.client.transact_write_items(**request))
    again.join(timeout=30)  # answered while the first still holds its items in flight
    assert not again.is_alive() and local.model.in_flight(local.table, local.key(p, "USER#a"))
    local.clock.advance(0.010)
    first.join(timeout=30)
    assert "error" not in outcome and "error" not in outcome_again, (outcome, outcome_again)
    assert local.stored(p, "USER#a")["n"] == {"N": "1"}  # applied once
    assert local.model.stats()["transaction_conflicts"] == 0
