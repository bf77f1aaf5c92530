"""DynamoDB access for per-project prices: items ``pk = PROJECT#<project>``,
``sk = PRICE#<model>`` in the budget table, attributes ``project``, ``model``, ``price`` (a map of
the PriceIn fields, numbers as DynamoDB Numbers), ``created_at``, ``updated_at`` (epoch seconds).

A price is replaced whole by a PUT (one UpdateItem; last writer wins: a price is a setting, not an
accumulator, and ``created_at`` is kept with ``if_not_exists``), so no write reads first.
"""

from __future__ import annotations

from decimal import Decimal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from budget_service.store.base import project_key

PRICE_PREFIX = "PRICE#"

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


def price_key(project: str, model: str) -> dict:
    return {"pk": {"S": project_key(project)}, "sk": {"S": PRICE_PREFIX + model}}


def _plain(raw: dict) -> dict:
    return {k: _deserialize(v) for k, v in raw.items()}


class PriceStore:
    """Per-project prices. `client` is a boto3 DynamoDB client (the BudgetStore's)."""

    def __init__(self, table_name: str, client) -> None:
        self.table_name = table_name
        self.client = client

    def put(self, project: str, model: str, price: dict, now: Decimal) -> tuple[dict, bool]:
        """Store `price` for `model` (one UpdateItem; ``created_at`` kept from the first PUT);
        (the item as stored, True when it did not exist before)."""
        answer = self.client.update_item(
            TableName=self.table_name,
            Key=price_key(project, model),
            UpdateExpression="SET #project = :project, #model = :model, #price = :price,"
            " updated_at = :now, created_at = if_not_exists(created_at, :now)",
            ExpressionAttributeNames={"#project": "project", "#model": "model", "#price": "price"},
            ExpressionAttributeValues={
                ":project": _serialize(project),
                ":model": _serialize(model),
                ":price": _serialize(price),
                ":now": _serialize(now),
            },
            ReturnValues="ALL_OLD",
        )
        old = _plain(answer.get("Attributes") or {})
        item = {
            "project": project,
            "model": model,
            "price": price,
            "created_at": old.get("created_at", now),
            "updated_at": now,
        }
        return item, not old

    def get(self, project: str, model: str) -> dict | None:
        raw = self.client.get_item(
            TableName=self.table_name, Key=price_key(project, model), ConsistentRead=True
        ).get("Item")
        return _plain(raw) if raw else None

    def delete(self, project: str, model: str) -> bool:
        """Remove the price; True when there was one."""
        old = self.client.delete_item(
            TableName=self.table_name, Key=price_key(project, model), ReturnValues="ALL_OLD"
        ).get("Attributes")
        return old is not None

    def list(self, project: str) -> list[dict]:
        """Every price of the project (one Query, paginated), ordered by model."""
        args = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :price)",
            "ExpressionAttributeValues": {":pk": {"S": project_key(project)}, ":price": {"S": PRICE_PREFIX}},
        }
        items: list[dict] = []
        while True:
            page = self.client.query(**args)
            items.extend(_plain(raw) for raw in page.get("Items", ()))
            if "LastEvaluatedKey" not in page:
                return items
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
