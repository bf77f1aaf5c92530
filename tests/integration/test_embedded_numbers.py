"""The embedded DynamoDB adds and subtracts Numbers as DynamoDB does (localdev.dynamodb
.exact_numbers): a balance that returns to zero after many decimal places stays a number the
next write can use (moto alone stored "0E-7" and failed every later write to the item), and sums
keep 38 significant digits."""

import uuid
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError
from conftest import TABLE_NAME

from localdev.dynamodb import client_for


def test_a_balance_back_to_zero_after_seven_decimals_takes_the_next_write(server_store):
    client = server_store.client
    key = {"pk": {"S": "PROJECT#numbers"}, "sk": {"S": "USER#zero"}}
    client.put_item(TableName=TABLE_NAME, Item={**key, "held": {"N": "0.0001827"}})

    def update(expression: str, amount: str) -> str:
        answer = client.update_item(
            TableName=TABLE_NAME,
            Key=key,
            UpdateExpression=expression,
            ConditionExpression="held >= :zero",
            ExpressionAttributeValues={":amount": {"N": amount}, ":zero": {"N": "0"}},
            ReturnValues="ALL_NEW",
        )
        return Decimal(answer["Attributes"]["held"]["N"])

    assert update("SET held = held - :amount", "0.0001827") == 0
    assert update("SET held = held + :amount", "0.00000001") == Decimal("0.00000001")
    assert update("SET held = held + :amount", "1E-8") == Decimal("0.00000002")
    assert update("SET held = held - :amount", "0.00000002") == 0
    # 38 significant digits, as DynamoDB keeps them
    assert update("SET held = held + :amount", "0.1000000000000000000000000000000000001") == (
        Decimal("0.1000000000000000000000000000000000001")
    )


# ---- numbers DynamoDB cannot store --------------------------------------------------------------
#
# A DynamoDB Number has at most 38 significant digits and a magnitude from 1E-130 to below 1E+126.
# An UpdateItem whose `SET a = a + :b`, `a - :b` or `ADD a :b` gives a result outside that is a
# ValidationException "Number overflow. Attempting to store a number with magnitude larger than
# supported range" (the message DynamoDB gives whether digits or magnitude overflowed), and inside
# a TransactWriteItems a cancellation with that item's reason ValidationError; either way nothing
# is written. moto alone rounded the result to 28 digits and stored it.

OVERFLOW = "Number overflow. Attempting to store a number with magnitude larger than supported range"
TINY = "0.0000000000000000000000001"  # 1E-25


@pytest.fixture(params=["in-process moto", "embedded server"])
def dynamodb(request):
    """A DynamoDB client of each kind the tests use, with a fresh key to write."""
    if request.param == "in-process moto":
        client = request.getfixturevalue("aws")
    else:
        client = client_for(request.getfixturevalue("dynamodb_server"))
    return client, {"pk": {"S": "PROJECT#numbers"}, "sk": {"S": f"USER#{uuid.uuid4().hex}"}}


def stored(client, key) -> dict | None:
    return client.get_item(TableName=TABLE_NAME, Key=key, ConsistentRead=True).get("Item")


@pytest.mark.parametrize(
    ("start", "expression", "amount"),
    [
        ("99999999999999", "ADD n :x", TINY),  # 14 + 25 = 39 significant digits
        ("99999999999999", "SET n = n + :x", TINY),
        ("-99999999999999", "SET n = n - :x", TINY),
        ("9E+125", "ADD n :x", "9E+125"),  # over the largest magnitude
        ("1E-130", "SET n = n - :x", "9E-131"),  # under the smallest one: DynamoDB says overflow too
        ("1E+50", "ADD n :x", "1"),
    ],
)
def test_an_update_whose_result_dynamodb_cannot_store_is_a_validation_error_that_writes_nothing(
    dynamodb, start, expression, amount
):
    client, key = dynamodb
    client.put_item(TableName=TABLE_NAME, Item={**key, "n": {"N": start}, "m": {"N": "1"}})
    before = stored(client, key)
    # Alone, and after a SET of another attribute in the same update.
    set_first = (
        "SET m = :x, " + expression[4:] if expression.startswith("SET ") else "SET m = :x " + expression
    )
    for update in (expression, set_first):
        with pytest.raises(ClientError) as refused:
            client.update_item(
                TableName=TABLE_NAME,
                Key=key,
                UpdateExpression=update,
                ExpressionAttributeValues={":x": {"N": amount}},
            )
        assert refused.value.response["Error"] == {"Code": "ValidationException", "Message": OVERFLOW}
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert stored(client, key) == before  # the SET before the overflowing action is not applied either


def test_a_result_of_exactly_38_digits_is_stored_exactly(dynamodb):
    client, key = dynamodb
    client.put_item(TableName=TABLE_NAME, Item={**key, "n": {"N": "9999999999999"}})
    answer = client.update_item(
        TableName=TABLE_NAME,
        Key=key,
        UpdateExpression="ADD n :x",
        ExpressionAttributeValues={":x": {"N": "0.9999999999999999999999999"}},
        ReturnValues="UPDATED_NEW",
    )
    assert answer["Attributes"]["n"] == {"N": "9999999999999.9999999999999999999999999"}  # 38 digits
    with pytest.raises(ClientError, match="Number overflow"):  # 10000000000000.99...9: 39 digits
        client.update_item(
            TableName=TABLE_NAME,
            Key=key,
            UpdateExpression="ADD n :x",
            ExpressionAttributeValues={":x": {"N": "1"}},
        )
    # Trailing zeros are not significant: 10^13 is one digit.
    answer = client.update_item(
        TableName=TABLE_NAME,
        Key=key,
        UpdateExpression="ADD n :x",
        ExpressionAttributeValues={":x": {"N": TINY}},
        ReturnValues="UPDATED_NEW",
    )
    assert Decimal(answer["Attributes"]["n"]["N"]) == Decimal("1E+13")


def test_an_absent_item_is_not_created_by_an_overflowing_update(dynamodb):
    client, key = dynamodb
    with pytest.raises(ClientError, match="Number overflow"):
        client.update_item(
            TableName=TABLE_NAME,
            Key=key,
            UpdateExpression="SET n = :a + :b",
            ExpressionAttributeValues={":a": {"N": "1E+50"}, ":b": {"N": "1"}},
        )
    assert stored(client, key) is None


def test_an_overflow_in_a_transaction_cancels_it_with_the_items_validation_error(dynamodb):
    client, key = dynamodb
    other = {"pk": key["pk"], "sk": {"S": key["sk"]["S"] + "#other"}}
    client.put_item(TableName=TABLE_NAME, Item={**key, "n": {"N": "99999999999999"}, "m": {"N": "1"}})
    before = stored(client, key)
    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE_NAME, "Item": {**other, "n": {"N": "1"}}}},
                {
                    "Update": {
                        "TableName": TABLE_NAME,
                        "Key": key,
                        "UpdateExpression": "SET m = :x ADD n :x",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": {":x": {"N": TINY}},
                    }
                },
            ]
        )
    response = cancelled.value.response
    assert response["Error"]["Code"] == "TransactionCanceledException"
    assert response["Error"]["Message"] == (
        "Transaction cancelled, please refer cancellation reasons for specific reasons [None, ValidationError]"
    )
    assert response["CancellationReasons"] == [
        {"Code": "None"},
        {"Code": "ValidationError", "Message": OVERFLOW},
    ]
    assert stored(client, key) == before
    assert stored(client, other) is None
