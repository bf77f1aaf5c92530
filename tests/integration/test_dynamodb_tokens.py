"""The embedded DynamoDB honours TransactWriteItems' ClientRequestToken as DynamoDB documents it
(moto alone ignores it): within 10 minutes the same token and parameters change nothing again and
answer success; the same token with other parameters is IdempotentParameterMismatchException;
a cancelled transaction is not remembered; after 10 minutes the token is new."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from botocore.exceptions import ClientError
from werkzeug.test import Client
from werkzeug.wrappers import Response

from localdev.dynamodb import (
    TOKEN_WINDOW_SECONDS,
    TRANSACT_WRITE_ITEMS,
    ClientRequestTokens,
)

TABLE_NAME = os.environ["TABLE_NAME"]  # set by conftest


def _add(client, key: str, amount: int, token: str, *, condition: str | None = None):
    update = {
        "TableName": TABLE_NAME,
        "Key": {"pk": {"S": f"TOKENS#{key}"}, "sk": {"S": "X"}},
        "UpdateExpression": "ADD n :n",
        "ExpressionAttributeValues": {":n": {"N": str(amount)}},
    }
    if condition:
        update["ConditionExpression"] = condition
    return client.transact_write_items(TransactItems=[{"Update": update}], ClientRequestToken=token)


def _n(client, key: str):
    item = client.get_item(
        TableName=TABLE_NAME, Key={"pk": {"S": f"TOKENS#{key}"}, "sk": {"S": "X"}}, ConsistentRead=True
    ).get("Item")
    return int(item["n"]["N"]) if item else None


@pytest.fixture
def client(dynamodb_server):
    from localdev.dynamodb import client_for

    return client_for(dynamodb_server)


def test_same_token_same_parameters_applies_once(client):
    key, token = uuid.uuid4().hex, uuid.uuid4().hex
    _add(client, key, 1, token)
    _add(client, key, 1, token)  # a retry: answered success, not applied again
    assert _n(client, key) == 1
    _add(client, key, 1, uuid.uuid4().hex)  # a new token is a new request
    assert _n(client, key) == 2


def test_same_token_other_parameters_is_a_mismatch_and_changes_nothing(client):
    key, token = uuid.uuid4().hex, uuid.uuid4().hex
    _add(client, key, 1, token)
    with pytest.raises(ClientError) as caught:
        _add(client, key, 5, token)
    assert caught.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert _n(client, key) == 1


def test_a_cancelled_transaction_is_not_remembered(client):
    key, token = uuid.uuid4().hex, uuid.uuid4().hex
    with pytest.raises(ClientError) as caught:
        _add(client, key, 1, token, condition="attribute_exists(pk)")
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    _add(client, key, 7, uuid.uuid4().hex)  # now the item exists
    _add(client, key, 1, token, condition="attribute_exists(pk)")  # the same request, tried again
    assert _n(client, key) == 8


def test_botocore_keeps_its_generated_token_across_its_retries(client):
    """Without a token botocore generates one per call (the idempotencyToken trait) and sends
    the same one on each retry: two calls are two transactions."""
    key = uuid.uuid4().hex
    update = {
        "Update": {
            "TableName": TABLE_NAME,
            "Key": {"pk": {"S": f"TOKENS#{key}"}, "sk": {"S": "X"}},
            "UpdateExpression": "ADD n :n",
            "ExpressionAttributeValues": {":n": {"N": "1"}},
        }
    }
    sent: list[str] = []
    client.meta.events.register(
        "before-send.dynamodb.TransactWriteItems",
        lambda request, **_: sent.append(json.loads(request.body)["ClientRequestToken"]),
    )
    client.transact_write_items(TransactItems=[update])
    client.transact_write_items(TransactItems=[update])
    assert _n(client, key) == 2 and len(set(sent)) == 2


def test_a_token_is_remembered_for_ten_minutes_after_its_request():
    """The window, with a controllable clock, on a stand-in for moto that counts what it applies."""
    applied: list[bytes] = []

    def app(environ, start_response):
        applied.append(environ["wsgi.input"].read())
        return Response(json.dumps({}), content_type="application/x-amz-json-1.0")(environ, start_response)

    now = [1000.0]
    web = Client(ClientRequestTokens(app, clock=lambda: now[0]))

    def send(amount: int, token: str = "t-1"):
        body = json.dumps({"TransactItems": [{"n": amount}], "ClientRequestToken": token})
        return web.post("/", data=body, headers={"X-Amz-Target": TRANSACT_WRITE_ITEMS})

    assert send(1).status_code == 200 and len(applied) == 1
    now[0] += TOKEN_WINDOW_SECONDS - 1
    assert send(1).status_code == 200 and len(applied) == 1  # replayed
    mismatch = send(2)
    assert mismatch.status_code == 400 and "IdempotentParameterMismatch" in mismatch.get_data(as_text=True)
    now[0] += 1  # ten minutes after the first request completed
    assert send(2).status_code == 200 and len(applied) == 2  # a new request
    # Other operations and requests without a token pass straight through.
    web.post(
        "/", data=json.dumps({"TransactItems": [{"n": 1}]}), headers={"X-Amz-Target": TRANSACT_WRITE_ITEMS}
    )
    web.post(
        "/",
        data=json.dumps({"ClientRequestToken": "t-1"}),
        headers={"X-Amz-Target": "DynamoDB_20120810.PutItem"},
    )
    assert len(applied) == 4


def test_a_cancelled_transaction_leaves_every_item_as_it_was(client):
    """The embedded DynamoDB backs up only the items a transaction names (not whole tables, as
    moto does): a transaction cancelled by its last action undoes the ones before it."""
    key = uuid.uuid4().hex
    _add(client, key, 3, uuid.uuid4().hex)  # the existing item: n = 3
    new_key = {"pk": {"S": f"TOKENS#{key}-new"}, "sk": {"S": "X"}}
    with pytest.raises(ClientError) as caught:
        client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": TABLE_NAME,
                        "Key": {"pk": {"S": f"TOKENS#{key}"}, "sk": {"S": "X"}},
                        "UpdateExpression": "ADD n :n",
                        "ExpressionAttributeValues": {":n": {"N": "1"}},
                    }
                },
                {"Put": {"TableName": TABLE_NAME, "Item": {**new_key, "n": {"N": "1"}}}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE_NAME,
                        "Key": {"pk": {"S": "TOKENS#absent"}, "sk": {"S": "X"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    reasons = [r["Code"] for r in caught.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    assert _n(client, key) == 3
    assert "Item" not in client.get_item(TableName=TABLE_NAME, Key=new_key, ConsistentRead=True)
