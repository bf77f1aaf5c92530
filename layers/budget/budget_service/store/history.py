"""Spend history and audit in DynamoDB: closed-period items and audit items, in the
budget's item collection (``pk = PROJECT#<project>``).

- Closed period: ``sk = PERIOD#<LEVEL>#<len(id)>:<id>#<start>#<end>`` (epoch seconds, zero-padded
  to 12 integer and 9 fraction digits, so the sort key orders them in time; a Query with
  ``ScanIndexForward=False`` lists a level's periods newest first). The length prefix keeps the key
  unambiguous when ids contain ``#``. Longest key: 7 + 7 + 4 + 256 + 1 + 22 + 1 + 22 = 320 bytes
  for a 256-byte id, under DynamoDB's 1,024-byte sort key limit.
  Each is Put with ``attribute_not_exists(pk)`` in the same TransactWriteItems as the conditional
  write that rolls its budget over (store.BudgetStore.save), so it exists exactly once.
- The same items carry ``history_pk = PROJECT#<project>#PERIODS#<LEVEL>`` and ``period_start``:
  the sparse GSI ``period-history`` lists a project's periods of one level by start time, so a
  report reads only the periods in its range. (Its partition key starts with ``PROJECT#`` so the
  functions' ``dynamodb:LeadingKeys`` policies cover it.)
- Audit entry: ``sk = AUDIT#<LEVEL>#<len(id)>:<id>#<at>#<8 hex>``, newest first the same way.

Retention: history is the record and is kept by default. ``HISTORY_RETENTION_DAYS`` (a positive
number of days) sets the table's TTL attribute ``expires_at`` on new period and audit items.
"""

from __future__ import annotations

import os
import secrets
import time
from decimal import Decimal, InvalidOperation

from budget_service.core.errors import ServiceUnavailable
from budget_service.core.records import AuditEntry, ClosedPeriod
from budget_service.observability import logger
from budget_service.store.base import (
    PROJECT_PREFIX,
    BudgetStore,
    plain_item,
    project_key,
    serialize,
)

PERIOD_PREFIX = "PERIOD#"
AUDIT_PREFIX = "AUDIT#"
HISTORY_INDEX = "period-history"
RETENTION_ENV = "HISTORY_RETENTION_DAYS"


def epoch_key(value: Decimal) -> str:
    """Epoch seconds as a fixed-width string that sorts like the number (to year 33658)."""
    return format(Decimal(value), "022.9f")


def _level_part(level: str, level_id: str) -> str:
    return f"{level}#{len(level_id)}:{level_id}#"


def periods_prefix(level: str, level_id: str) -> str:
    return PERIOD_PREFIX + _level_part(level, level_id)


def period_sk(level: str, level_id: str, start: Decimal, end: Decimal) -> str:
    return f"{periods_prefix(level, level_id)}{epoch_key(start)}#{epoch_key(end)}"


def audit_prefix(level: str, level_id: str) -> str:
    return AUDIT_PREFIX + _level_part(level, level_id)


def history_pk(project: str, level: str) -> str:
    return f"{PROJECT_PREFIX}{project}#PERIODS#{level}"


def _expires_at(now: Decimal) -> int | None:
    try:
        days = Decimal(os.environ.get(RETENTION_ENV, "").strip() or "0")
    except InvalidOperation:
        logger.warning("HISTORY_RETENTION_DAYS is not a number; history is kept")
        return None
    if not days.is_finite() or days <= 0:
        return None
    return int(now) + int(days * 86400)


def period_item(closed: ClosedPeriod, *, again: bool = False) -> dict:
    """The closed-period item as Python values. `again`: a second record of a period with the
    same start and end (see history_items): its key gets a random suffix."""
    sk = period_sk(closed.level, closed.level_id, closed.start, closed.end)
    item = {
        "pk": project_key(closed.project),
        "sk": sk + (f"#{secrets.token_hex(4)}" if again else ""),
        "history_pk": history_pk(closed.project, closed.level),
        "project": closed.project,
        "level": closed.level,
        "level_id": closed.level_id,
        "period_start": closed.start,
        "period_end": closed.end,
        "total_budget": closed.total_budget,
        "spend": closed.spend,
        "model_cost": dict(closed.model_cost),
        "held": closed.held,
        "closed_by": closed.closed_by,
        "closed_at": closed.closed_at,
        "budget_created_at": closed.budget_created_at,
        "expires_at": _expires_at(closed.closed_at),
    }
    return {k: v for k, v in item.items() if v is not None}


def period_put(table_name: str, closed: ClosedPeriod, *, again: bool = False) -> dict:
    """The TransactWriteItems Put of a closed period: only if it is not recorded yet."""
    return {
        "Put": {
            "TableName": table_name,
            "Item": {k: serialize(v) for k, v in period_item(closed, again=again).items()},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def audit_item(entry: AuditEntry) -> dict:
    item = {
        "pk": project_key(entry.project),
        "sk": f"{audit_prefix(entry.level, entry.level_id)}{epoch_key(entry.at)}#{secrets.token_hex(4)}",
        "project": entry.project,
        "level": entry.level,
        "level_id": entry.level_id,
        "action": entry.action,
        "at": entry.at,
        "key_id": entry.key_id,
        "details": entry.details,
        "expires_at": _expires_at(entry.at),
    }
    return {k: v for k, v in item.items() if v is not None}


def audit_put(table_name: str, entry: AuditEntry) -> dict:
    """The TransactWriteItems Put of an audit entry (a fresh random key: never overwrites)."""
    return {
        "Put": {
            "TableName": table_name,
            "Item": {k: serialize(v) for k, v in audit_item(entry).items()},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def history_items(table_name: str, closed=(), audit=(), *, again: bool = False) -> list[dict]:
    """The transaction items recording `closed` periods and `audit` entries with a write.

    Exactly once comes from the budget's version condition in the same transaction; a period's
    ``attribute_not_exists`` only guards its key. A budget item restored from a backup (or
    re-armed by a benchmark) can close a period with the start and end of one recorded before:
    then the write is tried `again` with suffixed keys, so the rollover is never stuck and no
    record is overwritten."""
    return [period_put(table_name, c, again=again) for c in closed] + [
        audit_put(table_name, a) for a in audit
    ]


class HistoryStore:
    """Reads (and the purge) of period and audit items."""

    def __init__(self, budgets: BudgetStore) -> None:
        self.client = budgets.client
        self.table_name = budgets.table_name

    def _page(
        self, project: str, prefix: str, limit: int, after_sk: str | None
    ) -> tuple[list[dict], str | None]:
        kwargs = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": project_key(project)}, ":prefix": {"S": prefix}},
            "ScanIndexForward": False,
            "ConsistentRead": True,
            "Limit": limit,
        }
        if after_sk is not None:
            if not after_sk.startswith(prefix):
                raise ValueError("cursor of another list")
            kwargs["ExclusiveStartKey"] = {"pk": {"S": project_key(project)}, "sk": {"S": after_sk}}
        response = self.client.query(**kwargs)
        last = response.get("LastEvaluatedKey")
        return [plain_item(i) for i in response.get("Items", [])], (last["sk"]["S"] if last else None)

    def periods_page(
        self, project: str, level: str, level_id: str, *, limit: int, after_sk: str | None = None
    ) -> tuple[list[dict], str | None]:
        """Up to `limit` closed periods of one level, newest first (one Query), and the sort key
        to continue after (None: no more). ValueError: `after_sk` is not one of this list's."""
        return self._page(project, periods_prefix(level, level_id), limit, after_sk)

    def audit_page(
        self, project: str, level: str, level_id: str, *, limit: int, after_sk: str | None = None
    ) -> tuple[list[dict], str | None]:
        """Up to `limit` audit entries of one level, newest first (one Query)."""
        return self._page(project, audit_prefix(level, level_id), limit, after_sk)

    def periods_started(
        self, project: str, level: str, start: Decimal, end: Decimal, *, max_items: int
    ) -> tuple[list[dict], bool]:
        """Every closed period of `level` in the project with ``start <= period_start < end``, from
        the ``period-history`` index (eventually consistent: a period closed a moment ago may be
        missing). Stops after `max_items`; the bool says whether the list is complete."""
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table_name,
            IndexName=HISTORY_INDEX,
            KeyConditionExpression="history_pk = :h AND period_start BETWEEN :from AND :to",
            # BETWEEN is inclusive; the end of the range is not.
            FilterExpression="period_start < :end",
            ExpressionAttributeValues={
                ":h": {"S": history_pk(project, level)},
                ":from": serialize(start),
                ":to": serialize(end),
                ":end": serialize(end),
            },
        )
        items: list[dict] = []
        for page in pages:
            for raw in page.get("Items", []):
                if len(items) >= max_items:
                    return items, False
                items.append(plain_item(raw))
        return items, True

    def purge(self, project: str, level: str, level_id: str) -> int:
        """Delete every period and audit item of one level (Query, then BatchWriteItem deletes of
        25). Not one transaction: a purge cut short is finished by asking again. Returns the
        number of items deleted."""
        deleted = 0
        for prefix in (periods_prefix(level, level_id), audit_prefix(level, level_id)):
            paginator = self.client.get_paginator("query")
            pages = paginator.paginate(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={":pk": {"S": project_key(project)}, ":prefix": {"S": prefix}},
                ProjectionExpression="pk, sk",
                ConsistentRead=True,
            )
            keys = [item for page in pages for item in page.get("Items", [])]
            for i in range(0, len(keys), 25):
                requests = [{"DeleteRequest": {"Key": key}} for key in keys[i : i + 25]]
                for attempt in range(10):
                    response = self.client.batch_write_item(RequestItems={self.table_name: requests})
                    requests = response.get("UnprocessedItems", {}).get(self.table_name, [])
                    if not requests:
                        break
                    time.sleep(min(0.05 * 2**attempt, 2))  # throttled: back off, as DynamoDB asks
                else:
                    raise ServiceUnavailable(
                        "DynamoDB kept throttling the purge's deletes; part of the"
                        " history is deleted: send the same DELETE ?purge=true again",
                        details={"outcome": "partially_written"},
                    )
                deleted += len(keys[i : i + 25])
        return deleted

    def has_history(self, project: str, level: str, level_id: str) -> bool:
        for prefix in (periods_prefix(level, level_id), audit_prefix(level, level_id)):
            items, _ = self._page(project, prefix, 1, None)
            if items:
                return True
        return False
