"""DynamoDB items of hold sizing: a project's hold-sizing settings, and per model a histogram of
the output tokens its settled calls produced.

- Settings item: ``pk = PROJECT#<project>``, ``sk = HOLDSIZING``; attributes ``project``,
  ``settings`` (a map of the settings' fields), ``created_at``, ``updated_at`` (epoch seconds). A
  PUT replaces it whole (one UpdateItem; last writer wins: a setting, not an accumulator).
- Output histograms: one item per model (its price entry name) and window of ``WINDOW_SECONDS``
  (a week), ``sk = OUTPUT#<len(model)>:<model>#<window>`` (the window number zero-padded, so a
  model's windows sort by time); attributes ``project``, ``model``, ``window``, ``n`` (settles
  counted), ``b<i>`` (settles whose output fell in bucket ``i``; the bucket bounds are the
  domain's, budget_service.domain.hold_sizing), ``updated_at``, and ``expires_at`` (the table's
  TTL) three windows on.

A settle adds its output with one UpdateItem ``ADD n :1, b<i> :1`` on the current window: atomic,
so concurrent settles never lose a count, with no read and no condition, and outside the settle's
transaction (a histogram that every settle of a model names would otherwise be one hot item in
all their transactions, which DynamoDB cancels when they overlap). A hold without ``max_tokens``
reads the model's last two windows with one Query (at most two items), so the estimate follows
what the calls produce now and forgets what they produced more than two weeks ago. Neither kind
of item carries ``reset_shard`` (so neither is in the due-for-reset index), and their sort keys
are outside every prefix the budget and hold Queries read.
"""

from __future__ import annotations

from decimal import Decimal

from budget_service.store.base import BudgetStore, plain_item, project_key, serialize

SETTINGS_SK = "HOLDSIZING"
OUTPUT_PREFIX = "OUTPUT#"
BUCKET_PREFIX = "b"
WINDOW_SECONDS = 7 * 24 * 3600
WINDOWS_READ = 2


def output_prefix(model: str) -> str:
    return f"{OUTPUT_PREFIX}{len(model)}:{model}#"


def output_key(project: str, model: str, window: int) -> dict:
    return {"pk": {"S": project_key(project)}, "sk": {"S": f"{output_prefix(model)}{window:010d}"}}


def settings_key(project: str) -> dict:
    return {"pk": {"S": project_key(project)}, "sk": {"S": SETTINGS_SK}}


class HoldSizingStore:
    """Hold-sizing settings and output histograms, in the budget table. Errors: botocore's."""

    def __init__(self, budgets: BudgetStore) -> None:
        self.client = budgets.client
        self.table_name = budgets.table_name

    # ---- output histogram ------------------------------------------------------------------

    def add_output(self, project: str, model: str, bucket: int, now: Decimal) -> None:
        """Count one settled call of `model` whose output fell in `bucket`, in the window of `now`
        (epoch seconds): one UpdateItem."""
        window = int(now) // WINDOW_SECONDS
        self.client.update_item(
            TableName=self.table_name,
            Key=output_key(project, model, window),
            UpdateExpression="ADD #n :one, #b :one SET #project = :project, #model = :model,"
            " #window = :window, updated_at = :now, expires_at = :ttl",
            ExpressionAttributeNames={
                "#n": "n",
                "#b": f"{BUCKET_PREFIX}{int(bucket)}",
                "#project": "project",
                "#model": "model",
                "#window": "window",
            },
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":project": {"S": project},
                ":model": {"S": model},
                ":window": {"N": str(window)},
                ":now": serialize(now),
                ":ttl": {"N": str((window + WINDOWS_READ + 1) * WINDOW_SECONDS)},
            },
        )

    def output_histogram(self, project: str, model: str, now: Decimal) -> dict[int, int]:
        """{bucket: settles counted} of `model` in the project over the current and the previous
        window ({} without history): one Query of at most two items, eventually consistent (a
        settle a moment ago may be missing; sizing tolerates that)."""
        oldest = int(now) // WINDOW_SECONDS - (WINDOWS_READ - 1)
        prefix = output_prefix(model)
        response = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :from AND :to",
            ExpressionAttributeValues={
                ":pk": {"S": project_key(project)},
                ":from": {"S": f"{prefix}{oldest:010d}"},
                ":to": {"S": f"{prefix}9999999999"},
            },
            Limit=WINDOWS_READ,
            ScanIndexForward=False,
        )
        counts: dict[int, int] = {}
        for item in response.get("Items", []):
            for name, value in item.items():
                if name.startswith(BUCKET_PREFIX) and name[len(BUCKET_PREFIX) :].isdigit():
                    bucket = int(name[len(BUCKET_PREFIX) :])
                    counts[bucket] = counts.get(bucket, 0) + int(value["N"])
        return counts

    # ---- settings ---------------------------------------------------------------------------

    def settings(self, project: str) -> dict | None:
        """The stored item (``settings``, ``created_at``, ``updated_at``), or None: one GetItem."""
        item = self.client.get_item(
            TableName=self.table_name, Key=settings_key(project), ConsistentRead=True
        ).get("Item")
        return plain_item(item) if item else None

    def put_settings(self, project: str, settings: dict, now: Decimal) -> dict:
        """Replace the project's settings whole (one UpdateItem); the item as stored."""
        answer = self.client.update_item(
            TableName=self.table_name,
            Key=settings_key(project),
            UpdateExpression="SET #project = :project, #settings = :settings, updated_at = :now,"
            " created_at = if_not_exists(created_at, :now)",
            ExpressionAttributeNames={"#project": "project", "#settings": "settings"},
            ExpressionAttributeValues={
                ":project": serialize(project),
                ":settings": serialize({k: v for k, v in settings.items() if v is not None}),
                ":now": serialize(now),
            },
            ReturnValues="ALL_NEW",
        )
        return plain_item(answer["Attributes"])
