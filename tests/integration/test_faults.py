"""The fault-injecting DynamoDB endpoint does what the exactly-once tests rely on: LATE and DROP
apply the request and lose its answer, REFUSE and CUT apply nothing; rules match by operation,
skip and count; and a retry reaches DynamoDB only after the attempt it retries."""

from __future__ import annotations

import os
import uuid

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from localdev.dynamodb import client_for
from localdev.faults import Fault

TABLE_NAME = os.environ["TABLE_NAME"]
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=1, connect_timeout=1)


def _put(client, key: str) -> None:
    client.put_item(TableName=TABLE_NAME, Item={"pk": {"S": f"FAULTS#{key}"}, "sk": {"S": "X"}})


def _stored(client, key: str) -> bool:
    return "Item" in client.get_item(
        TableName=TABLE_NAME, Key={"pk": {"S": f"FAULTS#{key}"}, "sk": {"S": "X"}}, ConsistentRead=True
    )


@pytest.fixture
def clients(faulty_dynamodb, dynamodb_server):
    """(a client through the proxy that does not retry, a client straight to DynamoDB)."""
    return client_for(faulty_dynamodb.url, ONE_ATTEMPT), client_for(dynamodb_server)


@pytest.mark.parametrize(
    ("fault", "error", "applied"),
    [
        (Fault.LATE, ReadTimeoutError, True),
        (Fault.DROP, ConnectionClosedError, True),
        (Fault.CUT, ConnectionClosedError, False),
        (Fault.REFUSE, ClientError, False),
    ],
)
def test_each_fault(faulty_dynamodb, clients, fault, error, applied):
    through, direct = clients
    key = uuid.uuid4().hex
    faulty_dynamodb.add("PutItem", fault)
    with pytest.raises(error) as caught:
        _put(through, key)
    if fault is Fault.REFUSE:
        assert caught.value.response["Error"]["Code"] == "InternalServerError"
    assert _stored(direct, key) is applied is fault.applied
    _put(through, uuid.uuid4().hex)  # the rule is spent: the next one passes
    assert faulty_dynamodb.faults("PutItem") == [fault, None]


def test_rules_match_operation_skip_and_times(faulty_dynamodb, clients):
    through, _ = clients
    faulty_dynamodb.add(
        "PutItem", Fault.REFUSE, skip=1, times=2, error_code="ThrottlingException", status=400
    )
    keys = [uuid.uuid4().hex for _ in range(4)]
    outcomes = []
    for key in keys:
        try:
            _put(through, key)
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
        assert _stored(through, key) is (outcomes[-1] == "ok")  # GetItem is never matched
    assert outcomes == ["ok", "ThrottlingException", "ThrottlingException", "ok"]
    assert faulty_dynamodb.faults("GetItem") == [None] * 4


def test_a_late_answer_is_held_until_the_client_gives_up_and_its_retry_lands_after_it(
    faulty_dynamodb, dynamodb_server, backoff
):
    """With retries, the attempt whose answer is late was applied before its retry arrived: an
    unconditional ADD is applied twice (what exactly-once writes must prevent)."""
    retrying = client_for(
        faulty_dynamodb.url, ONE_ATTEMPT.merge(Config(retries={"mode": "standard", "total_max_attempts": 2}))
    )
    key = {"pk": {"S": f"FAULTS#{uuid.uuid4().hex}"}, "sk": {"S": "X"}}
    faulty_dynamodb.add("UpdateItem", Fault.LATE)
    retrying.update_item(
        TableName=TABLE_NAME,
        Key=key,
        UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    item = client_for(dynamodb_server).get_item(TableName=TABLE_NAME, Key=key, ConsistentRead=True)["Item"]
    assert item["n"] == {"N": "2"}
    assert faulty_dynamodb.faults("UpdateItem") == [Fault.LATE, None]


def test_delay_holds_a_chosen_request_and_its_answer_while_others_pass(faulty_dynamodb, clients):
    """DELAY with `when` picks one request by its body; `before` holds it on its way (other
    requests pass meanwhile), `then` holds its answer after it was applied."""
    import threading

    from conftest import wait_until

    through, direct = clients
    patient = client_for(faulty_dynamodb.url, ONE_ATTEMPT.merge(Config(read_timeout=60)))  # held at will
    slow, fast = uuid.uuid4().hex, uuid.uuid4().hex
    seen: list[tuple[str, bool, bool]] = []
    answered = threading.Event()

    def before() -> None:
        seen.append(("before", _stored(direct, slow), _stored(direct, fast)))
        wait_until(lambda: _stored(direct, fast))  # held until the other request landed

    def then() -> None:
        seen.append(("then", _stored(direct, slow), answered.is_set()))

    rule = faulty_dynamodb.add(
        "PutItem",
        Fault.DELAY,
        when=lambda body: body["Item"]["pk"]["S"] == f"FAULTS#{slow}",
        before=before,
        then=then,
    )

    def put_slow() -> None:
        _put(patient, slow)
        answered.set()

    thread = threading.Thread(target=put_slow)
    thread.start()
    wait_until(lambda: seen)  # the chosen request reached the proxy and is held there
    _put(through, fast)  # not chosen: passes at once
    thread.join(timeout=30)
    assert answered.is_set()
    # Held before it was applied; applied, and not yet answered, when `then` ran.
    assert seen == [("before", False, False), ("then", True, False)]
    assert rule.matched == 1 and faulty_dynamodb.faults("PutItem") == [Fault.DELAY, None]
