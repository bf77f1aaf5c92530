"""Alerts' AWS access: the record of alerts sent (the table) and the event bus.

The only alert code that touches boto3. Items: ``pk = PROJECT#<project>``,
``sk = ALERT#<alert_id>``, with a TTL (``expires_at``) some time after the alert's period ends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache

import boto3
from botocore.exceptions import ClientError

from budget_service.core.alerts import DETAIL_TYPE, EVENT_SOURCE, PROJECT_SK, Alert
from budget_service.core.records import to_datetime
from budget_service.store.base import (
    CLIENT_CONFIG,
    condition_failed,
    consistent_get_item,
    plain_item,
    serialize,
)

ALERT_PREFIX = "ALERT#"
# Keep the record of an alert this long after its period ends (a redelivery comes within the
# stream's 24 hours; the margin covers a period end that moved). Budgets without a period end:
# a year after the alert.
KEEP_AFTER_PERIOD_S = 7 * 86400
KEEP_WITHOUT_PERIOD_S = 366 * 86400
BUS_ENV = "ALERT_BUS_NAME"


def alert_key(alert: Alert) -> dict:
    return {"pk": {"S": "PROJECT#" + alert.project}, "sk": {"S": ALERT_PREFIX + alert.alert_id}}


class AlertLedgerStore:
    """Which alerts were put on the bus, one item per alert id; and the project's default
    thresholds (the budget levels' project budget item carries ``default_alert_thresholds``)."""

    def __init__(self, table_name: str, client=None) -> None:
        self.table_name = table_name
        self.client = client or boto3.client("dynamodb", config=CLIENT_CONFIG)

    def already_sent(self, alert: Alert) -> bool:
        return consistent_get_item(self.client, self.table_name, alert_key(alert)) is not None

    def mark_sent(self, alert: Alert) -> None:
        """Record `alert` as sent; a record already there (a concurrent redelivery) is kept."""
        end = alert.period_end
        expires = (end + KEEP_AFTER_PERIOD_S) if end is not None else alert.crossed_at + KEEP_WITHOUT_PERIOD_S
        item = {
            **{
                k: serialize(v)
                for k, v in {
                    "alert_id": alert.alert_id,
                    "project": alert.project,
                    "level": alert.level,
                    "level_id": alert.level_id,
                    "threshold": alert.threshold,
                    "total_budget": alert.total_budget,
                    "spend": alert.spend,
                    "period_start": alert.period_start,
                    "crossed_at": alert.crossed_at,
                    "expires_at": Decimal(int(expires)),
                }.items()
            },
            **alert_key(alert),
        }
        try:
            self.client.put_item(
                TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise

    def project_default_thresholds(self, project: str) -> tuple[Decimal, ...] | None:
        """The project budget item's ``default_alert_thresholds``; None when it has none."""
        key = {"pk": {"S": "PROJECT#" + project}, "sk": {"S": PROJECT_SK}}
        item = consistent_get_item(self.client, self.table_name, key)
        value = plain_item(item).get("default_alert_thresholds") if item else None
        return tuple(Decimal(v) for v in value) if value is not None else None


class EventBridgeBus:
    """PutEvents on the alerts bus: one ``Budget Threshold Crossed`` entry per alert."""

    MAX_ENTRIES = 10  # PutEvents' limit per call

    def __init__(self, bus_name: str, client=None) -> None:
        self.bus_name = bus_name
        self.client = client or boto3.client("events", config=CLIENT_CONFIG)

    def entry(self, alert: Alert) -> dict:
        return {
            "Source": EVENT_SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(alert.detail()),
            "EventBusName": self.bus_name,
            "Time": to_datetime(alert.crossed_at),
        }

    def put(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Put the alerts' events in order; returns those whose entries EventBridge refused."""
        failed: list[Alert] = []
        for start in range(0, len(alerts), self.MAX_ENTRIES):
            chunk = list(alerts[start : start + self.MAX_ENTRIES])
            response = self.client.put_events(Entries=[self.entry(a) for a in chunk])
            if response.get("FailedEntryCount"):
                results = response.get("Entries") or []
                failed += [a for a, r in zip(chunk, results, strict=False) if r.get("ErrorCode")]
                failed += chunk[len(results) :]
        return failed


@lru_cache(maxsize=1)
def default_ledger() -> AlertLedgerStore:
    return AlertLedgerStore(os.environ["TABLE_NAME"])


@lru_cache(maxsize=1)
def default_bus() -> EventBridgeBus:
    return EventBridgeBus(os.environ[BUS_ENV])
