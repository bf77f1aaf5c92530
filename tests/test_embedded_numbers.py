"""The embedded DynamoDB adds and subtracts Numbers as DynamoDB does (localdev.dynamodb
.exact_numbers): a balance that returns to zero after many decimal places stays a number the
next write can use (moto alone stored "0E-7" and failed every later write to the item), and sums
keep 38 significant digits."""

from decimal import Decimal

from conftest import TABLE_NAME


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
