"""A failed DynamoDB call says truthfully what it may have written (store.write_outcome), over
all of botocore's attempts, not only the last: faults injected by the fault proxy."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
from botocore.exceptions import ClientError

from budget_service.store.base import (
    CLIENT_CONFIG,
    NOT_WRITTEN,
    STORE_ERRORS,
    UNKNOWN,
    track_write_outcomes,
    write_outcome,
)
from localdev.dynamodb import client_for
from localdev.faults import Fault

TABLE_NAME = os.environ["TABLE_NAME"]
L, D, R, C = Fault.LATE, Fault.DROP, Fault.REFUSE, Fault.CUT


def _put(client) -> None:
    client.put_item(TableName=TABLE_NAME, Item={"pk": {"S": f"OUTCOME#{uuid.uuid4().hex}"}, "sk": {"S": "X"}})


@pytest.mark.parametrize(
    ("faults", "outcome"),
    [
        ([R, R, R], NOT_WRITTEN),  # DynamoDB's error answer each time
        ([L, R, R], UNKNOWN),  # the first may have landed, though the last was refused
        ([R, D, R], UNKNOWN),
        ([R, R, C], UNKNOWN),  # cut before forwarding: to the client the same as a dropped answer
        ([L, L, L], UNKNOWN),
    ],
)
def test_a_write_is_unknown_when_any_attempt_may_have_landed(faulty_dynamodb, faulty_client, faults, outcome):
    client = faulty_client
    for fault in faults:
        faulty_dynamodb.add("PutItem", fault)
    with pytest.raises(STORE_ERRORS) as caught:
        _put(client)
    assert write_outcome(caught.value) == outcome
    assert faulty_dynamodb.faults("PutItem") == faults  # botocore's three attempts, each faulted


def test_a_read_that_times_out_wrote_nothing(faulty_dynamodb, faulty_client):
    client = faulty_client
    faulty_dynamodb.add("GetItem", Fault.LATE, times=3)
    with pytest.raises(STORE_ERRORS) as caught:
        client.get_item(TableName=TABLE_NAME, Key={"pk": {"S": "x"}, "sk": {"S": "y"}})
    assert write_outcome(caught.value) == NOT_WRITTEN


def test_no_connection_means_nothing_was_sent(backoff):
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    client = track_write_outcomes(client_for(url, CLIENT_CONFIG))
    with pytest.raises(STORE_ERRORS) as caught:
        _put(client)
    assert write_outcome(caught.value) == NOT_WRITTEN


def test_a_condition_that_failed_wrote_nothing(faulty_client):
    client = faulty_client
    with pytest.raises(ClientError) as caught:
        client.put_item(
            TableName=TABLE_NAME,
            Item={"pk": {"S": "OUTCOME#none"}, "sk": {"S": "X"}},
            ConditionExpression="attribute_exists(pk)",
        )
    assert write_outcome(caught.value) == NOT_WRITTEN
