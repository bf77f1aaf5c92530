"""DynamoDB access: the only module that touches boto3.

One table (see template.yaml). A budget is the item ``pk = PROJECT#<project>``,
``sk = USER#<user>``. Every write is conditional on the item's ``version`` (or on its absence),
and bumps it, so two writers can never interleave a read and a write: the loser re-reads and
applies its change again (``update``).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import itertools
import json
import os
import random
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import lru_cache
from types import EllipsisType

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ProxyConnectionError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from budget_service.core.errors import Contention, InvalidInput
from budget_service.core.numbers import utf8_size
from budget_service.core.periods import Duration, Period
from budget_service.core.records import Budget, Counted, DueReset, Lineage, Write, roll
from budget_service.observability import logger

USER_PREFIX = "USER#"
PROJECT_PREFIX = "PROJECT#"
RESET_INDEX = "due-for-reset"
RESET_SHARDS = 4
MAX_WRITE_ATTEMPTS = 8

# SnapStart (template.yaml) restores every new environment from one snapshot, random state
# included: without a re-seed, all of them would draw the same retry jitter. The hook module is
# part of Lambda's python3.12+ runtime.
try:
    from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
except ImportError:  # not on Lambda
    pass
else:
    register_after_restore(random.seed)

serialize = TypeSerializer().serialize  # a Python value as a DynamoDB attribute value (numbers from Decimal)
_deserialize = TypeDeserializer().deserialize

# DynamoDB cancels a transaction that names an item another transaction has in flight, and fails
# a single-item write on such an item with TransactionConflictException. Both mean "nothing was
# written, try again": writers back off with full jitter (AWS Architecture Blog, "Exponential
# Backoff And Jitter") up to CONFLICT_RETRIES times, about 3 s on average and 6 s at worst (well
# under the API functions' 15 s timeout), before the caller answers 503 with Retry-After. An
# item that transactions keep in flight leaves a single write only the gaps between them: the
# budget is long so that such a write finds one.
CONFLICT_RETRIES = 40
# A transaction's cancellation reasons that mean "nothing written, send it again after a backoff":
# another transaction had the item in flight, or the item's partition was out of write capacity.
RETRYABLE_REASONS = frozenset({"TransactionConflict", "ThrottlingError"})
# Read-modify-write attempts that lost to another write (each a fresh item, no backoff).
STALE_RETRIES = 200
CONFLICT_BASE_SECONDS = 0.004
CONFLICT_CAP_SECONDS = 0.15


# Retries stop this long after the request began (see start_request), whatever their count:
# the API functions' timeout is 15 s, and a 503 the client retries beats a gateway timeout.
REQUEST_RETRY_SECONDS = 8.0
_RETRY_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("retry_deadline", default=None)


def start_request(now: float | None = None) -> None:
    """Mark the start of a request (monotonic seconds): conflict retries end
    REQUEST_RETRY_SECONDS after it. Called by the HTTP edge for every request."""
    _RETRY_DEADLINE.set((time.monotonic() if now is None else now) + REQUEST_RETRY_SECONDS)


def conflict_backoff(attempt: int, what: str) -> None:
    """Sleep before retry `attempt` (0-based) of a write DynamoDB cancelled for a conflict on
    `what` (a name for the message); Contention (HTTP 503 with Retry-After) once the retries
    are spent or the request's retry time (start_request) is over."""
    deadline = _RETRY_DEADLINE.get()
    if attempt >= CONFLICT_RETRIES or (deadline is not None and time.monotonic() >= deadline):
        raise Contention(f"{what} is being changed by too many writers; retry")
    time.sleep(random.uniform(0, min(CONFLICT_CAP_SECONDS, CONFLICT_BASE_SECONDS * 2**attempt)))  # noqa: S311


def is_conflict(exc: BaseException) -> bool:
    """Whether a DynamoDB error says another transaction had the item in flight (nothing written):
    a single-item write's TransactionConflictException, or a transaction cancelled with no reason
    but TransactionConflict."""
    if not isinstance(exc, ClientError):
        return False
    code = exc.response["Error"]["Code"]
    if code == "TransactionConflictException":
        return True
    if code != "TransactionCanceledException":
        return False
    codes = {r.get("Code") for r in exc.response.get("CancellationReasons") or []} - {None, "None"}
    return bool(codes) and codes <= RETRYABLE_REASONS


# Bounded retries with timeouts: a slow DynamoDB must not hold a Lambda for its whole timeout.
# Standard mode retries throttles, timeouts and 5xx with jittered exponential backoff (at most
# 1 s, then 2 s); 3 attempts of at most 1 s to connect and 2 s to answer make one call's worst
# case about 3 * 3 s + 3 s = 12 s, under the API functions' 15 s timeout. (DynamoDB answers in
# milliseconds; a call that takes seconds is failing.) What still fails becomes a 503.
CLIENT_CONFIG = Config(
    # total_max_attempts counts the first try; botocore's "max_attempts" here would count
    # retries only (one more request than it says).
    retries={"mode": "standard", "total_max_attempts": 3},
    connect_timeout=1,
    read_timeout=2,
)

# Error codes DynamoDB uses for "try again later": throttling, capacity, its own 5xx.
UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "LimitExceededException",
        "TransactionInProgressException",
        # Another transaction had the item in flight: nothing was written (the writers retry
        # these themselves; one that escapes them is a 503, never a 500).
        "TransactionConflictException",
    }
)
# What a boto3 call can raise; http.py maps these (see `unavailable`).
STORE_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)


def unavailable(exc: BaseException) -> bool:
    """True when a boto3 error means "DynamoDB did not do it now; retrying later may work":
    a throttle, a 5xx or a timeout/connection failure that outlived the client's retries.
    False for errors that retrying cannot fix (validation, access denied, a bug of ours)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error.get("Code") in UNAVAILABLE_CODES or status >= 500 or is_conflict(exc)
    return isinstance(exc, (BotoConnectionError, HTTPClientError))


# ---- what a failed call may have written ----------------------------------------------------------
#
# botocore retries a failed attempt (standard mode, up to CLIENT_CONFIG's attempts), and what it
# finally raises tells only of the last attempt: a throttle after a timed-out first attempt hides
# that the first may have landed. So every attempt is watched (botocore's per-attempt
# ``response-received`` event carries the call's context) and the call's exception is marked:
# - NOT_WRITTEN: no attempt of a write can have been applied: each one either never reached
#   DynamoDB (no connection could be made) or got DynamoDB's error answer (a throttle, a 5xx,
#   a failed condition: DynamoDB applied nothing), or the call only reads;
# - UNKNOWN: some attempt was sent and no answer came back (a read timeout, a connection closed
#   before the answer): DynamoDB may have applied it, and may still.

NOT_WRITTEN = "not_written"
UNKNOWN = "unknown"
_MAYBE_WRITTEN = "budget_service_maybe_written"  # the mark, in the call context and the error
_READ_OPERATIONS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "DescribeTable",
        "DescribeTimeToLive",
        "ListTables",
    }
)
# Raised before any byte of the request left: nothing can have been applied.
_NOT_SENT = (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)


def _note_attempt(event_name: str, context: dict, exception=None, **_) -> None:
    if exception is None or isinstance(exception, _NOT_SENT):
        return
    if event_name.rpartition(".")[2] not in _READ_OPERATIONS:
        context[_MAYBE_WRITTEN] = True


def _mark_raised(exception: BaseException, context: dict, **_) -> None:
    # The exception of the call's last attempt, raised after every attempt was noted.
    setattr(exception, _MAYBE_WRITTEN, bool(context.get(_MAYBE_WRITTEN)))


def _mark_error_answer(http_response, parsed: dict, context: dict, **_) -> None:
    # DynamoDB's error answer becomes the ClientError's ``response`` dict.
    if http_response.status_code >= 300 and context.get(_MAYBE_WRITTEN):
        parsed[_MAYBE_WRITTEN] = True


def track_write_outcomes(client):
    """Have `client` mark what each failed call may have written (see `write_outcome`).
    Idempotent; BudgetStore and ApiKeyStore do it to the client they are given."""
    events = client.meta.events
    events.register("response-received.dynamodb", _note_attempt, unique_id="budget-note-attempt")
    events.register("after-call-error.dynamodb", _mark_raised, unique_id="budget-mark-raised")
    events.register("after-call.dynamodb", _mark_error_answer, unique_id="budget-mark-answer")
    return client


def write_outcome(exc: BaseException) -> str:
    """NOT_WRITTEN or UNKNOWN (see above) for an error a tracked client raised. An error from a
    client that was not tracked is UNKNOWN unless it is DynamoDB's answer."""
    if isinstance(exc, ClientError):
        return UNKNOWN if exc.response.get(_MAYBE_WRITTEN) else NOT_WRITTEN
    return UNKNOWN if getattr(exc, _MAYBE_WRITTEN, True) else NOT_WRITTEN


class StaleWrite(Exception):
    """The item changed between our read and our conditional write. `current` is the item as
    the failed condition saw it (None: absent), when DynamoDB returned it."""

    def __init__(self, current: Budget | None | EllipsisType = ...) -> None:
        super().__init__("the budget changed since it was read")
        self.current = current


# DynamoDB's size limits, in bytes (UTF-8 for strings): a partition key value, a sort key value,
# an item (attribute names included). https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html
PARTITION_KEY_MAX_BYTES = 2048
SORT_KEY_MAX_BYTES = 1024
ITEM_MAX_BYTES = 400 * 1024


def _key_within(value: str, limit: int, what: str) -> str:
    """`value` if DynamoDB takes it as a key of at most `limit` bytes, else InvalidInput (422).

    The request models bound every id (models.ID_MAX_BYTES) so that this never fires for a
    validated request; it is the last check before DynamoDB, so no input can reach its size error.
    """
    try:
        size = utf8_size(value)
    except ValueError as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    if size > limit:
        raise InvalidInput(f"{what} is {size} bytes of UTF-8; DynamoDB allows {limit}")
    return value


def project_key(project: str) -> str:
    return _key_within(PROJECT_PREFIX + project, PARTITION_KEY_MAX_BYTES, "the project's key")


def user_key(user: str) -> str:
    return _key_within(USER_PREFIX + user, SORT_KEY_MAX_BYTES, "the user's key")


EVENT_PREFIX = "EVENT#"


def ledger_key(user: str, key: str) -> str:
    """``EVENT#<len(user)>:<user>#<key>``: the length makes it unambiguous when ids contain '#'."""
    return _key_within(
        f"{EVENT_PREFIX}{len(user)}:{user}#{key}", SORT_KEY_MAX_BYTES, "the Idempotency-Key's ledger key"
    )


def item_size(item: dict) -> int:
    """An upper bound of a typed DynamoDB item's size in bytes, by DynamoDB's rules: names and
    strings in UTF-8 bytes; a number 1 byte plus 1 per 2 significant digits (at most 21); a
    boolean or null 1; a map or list 3 plus, per element, 1 and the element (a map's key counts).
    """
    return sum(utf8_size(name) + _value_size(value) for name, value in item.items())


def _value_size(value: dict) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return utf8_size(data)
    if kind == "N":
        digits = len(data.lstrip("-").replace(".", "").split("e")[0].split("E")[0].strip("0")) or 1
        return min(21, 1 + (digits + 1) // 2)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "B":
        return len(data)
    if kind == "M":
        return 3 + sum(1 + utf8_size(k) + _value_size(v) for k, v in data.items())
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in data)
    if kind == "SS":
        return sum(utf8_size(s) for s in data)
    if kind == "NS":
        return sum(_value_size({"N": n}) for n in data)
    return sum(len(b) for b in data)  # BS


def shard_key(shard: int) -> str:
    return f"RESET#{shard}"


def reset_shard(project: str, user: str) -> str:
    # Spread due budgets over a few index partitions; stable for a given budget.
    return shard_key(zlib.crc32(f"{project}/{user}".encode()) % RESET_SHARDS)


def budget_key(project: str, user: str) -> dict:
    return {"pk": {"S": project_key(project)}, "sk": {"S": user_key(user)}}


def plain_item(raw: dict) -> dict:
    """A DynamoDB item (typed attribute values) as Python values (numbers as Decimal)."""
    return {k: _deserialize(v) for k, v in raw.items()}


def condition_failed(exc: ClientError) -> bool:
    """True when a conditional write was refused because its condition did not hold."""
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


def _cancellation_codes(exc: ClientError) -> list:
    """Each action's reason code of a cancelled transaction ([] for any other error)."""
    if exc.response["Error"]["Code"] != "TransactionCanceledException":
        return []
    return [reason.get("Code") for reason in exc.response.get("CancellationReasons") or []]


def consistent_get_item(client, table_name: str, key: dict) -> dict | None:
    """One strongly consistent GetItem; the raw item, or None."""
    return client.get_item(TableName=table_name, Key=key, ConsistentRead=True).get("Item")


# How many write ids a budget item keeps (Budget.write_ids; see BudgetStore.save). A write whose
# answer was lost is recognised by its retry unless this many other saves landed in between, in
# the second or two botocore takes to retry.
RECENT_WRITES = 8


def budget_to_item(budget: Budget, write_id: str | None = None) -> dict:
    """The DynamoDB item (typed values) for `budget` at its next version; `write_id`, when
    given, is prepended to the budget's recent write ids."""
    write_ids = ([write_id] if write_id else []) + list(budget.write_ids)
    item: dict = {
        "pk": project_key(budget.project),
        "sk": user_key(budget.user),
        "project": budget.project,
        "user": budget.user,
        "total_budget": budget.total_budget,
        "current_cost": budget.current_cost,
        "model_cost": dict(budget.model_cost),
        # Holds: the stored headroom every write moves with SET x = x + :delta.
        "held": budget.held,
        "available": budget.available,
        "created_at": budget.created_at,
        "updated_at": budget.updated_at,
        "version": budget.version + 1,
    }
    optional = {
        "duration": budget.duration.value if budget.duration else None,
        "duration_days": budget.duration_days,
        "timezone": budget.timezone,
        "team": budget.team,
        "period_start": budget.period_start,
        "reset_at": budget.reset_at,
        "previous_period_start": budget.previous_period_start,
        "alert_thresholds": (list(budget.alert_thresholds) if budget.alert_thresholds is not None else None),
        "last_reset_at": budget.last_reset_at,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    if write_ids:
        item["write_ids"] = write_ids[:RECENT_WRITES]
    if budget.reset_at is not None:  # only budgets with a period live in the sparse reset index
        item["reset_shard"] = reset_shard(budget.project, budget.user)
    return {k: serialize(v) for k, v in item.items()}


def item_to_budget(raw: dict) -> Budget:
    return plain_to_budget(plain_item(raw))


def plain_to_budget(item: dict) -> Budget:
    """A budget item already read as Python values (see plain_item)."""
    return Budget(
        project=item["project"],
        user=item["user"],
        total_budget=item["total_budget"],
        current_cost=item.get("current_cost", Decimal(0)),
        model_cost=dict(item.get("model_cost", {})),
        held=item.get("held", Decimal(0)),
        team=item.get("team"),
        duration=Duration(item["duration"]) if "duration" in item else None,
        duration_days=item.get("duration_days"),
        timezone=item.get("timezone"),
        period_start=item.get("period_start"),
        reset_at=item.get("reset_at"),
        previous_period_start=item.get("previous_period_start"),
        created_at=item["created_at"],
        updated_at=item["updated_at"],
        version=int(item["version"]),
        write_ids=tuple(item.get("write_ids", ())),
        alert_thresholds=(
            tuple(item["alert_thresholds"]) if item.get("alert_thresholds") is not None else None
        ),
        last_reset_at=item.get("last_reset_at"),
    )


# ---- litellm client copies (core.records.Lineage) -------------------------------------------------
#
# ``sk = SERVED#<len(user)>:<user>#<marker>`` in the project's item collection (outside the
# ``USER#`` prefix every budget query reads). Each carries a TTL refreshed by every save of its
# copy: a client process idle for LINEAGE_TTL_DAYS gets the cautious merge for an unknown copy.

SERVED_PREFIX = "SERVED#"
LINEAGE_TTL_DAYS = 400
# TransactWriteItems takes at most 100 items and 4 MB; get_budget's records are sent in chunks
# under both.
TRANSACTION_MAX_ITEMS = 100
TRANSACTION_MAX_BYTES = 3_500_000


def marker_text(marker: Decimal) -> str:
    """A marker in canonical plain notation (``1800000000.12345``): the same for every scale."""
    return format(marker.normalize(), "f")


def lineage_key(project: str, user: str, marker: Decimal) -> dict:
    sk = f"{SERVED_PREFIX}{len(user)}:{user}#{marker_text(marker)}"
    return {
        "pk": {"S": project_key(project)},
        "sk": {"S": _key_within(sk, SORT_KEY_MAX_BYTES, "the copy's key")},
    }


def lineage_to_item(lineage: Lineage) -> dict:
    """The typed DynamoDB item of `lineage` at its next version, its TTL from ``acked_at``."""
    item: dict = {
        "project": lineage.project,
        "user": lineage.user,
        "marker": lineage.marker,
        "total_budget": lineage.total_budget,
        "counted": [
            {
                **({"last_updated_at": c.last_updated_at} if c.last_updated_at is not None else {}),
                "current_cost": c.current_cost,
                "model_cost": dict(c.model_cost),
            }
            for c in lineage.counted
        ],
        "acked_at": lineage.acked_at,
        "version": lineage.version + 1,
        "expires_at": int(lineage.acked_at) + LINEAGE_TTL_DAYS * 86400,
    }
    if lineage.duration is not None:
        item["duration"] = lineage.duration
    typed = {k: serialize(v) for k, v in item.items()}
    return {**lineage_key(lineage.project, lineage.user, lineage.marker), **typed}


def item_to_lineage(raw: dict) -> Lineage:
    item = plain_item(raw)
    return Lineage(
        project=item["project"],
        user=item["user"],
        marker=item["marker"],
        total_budget=item["total_budget"],
        duration=item.get("duration"),
        counted=tuple(
            Counted(c.get("last_updated_at"), c["current_cost"], dict(c.get("model_cost", {})))
            for c in item.get("counted", [])
        ),
        acked_at=item["acked_at"],
        version=int(item["version"]),
    )


def _lineage_put(table_name: str, lineage: Lineage) -> dict:
    """The conditional Put of a copy's next state: over the version read, or only if new."""
    put: dict = {"TableName": table_name, "Item": lineage_to_item(lineage)}
    if lineage.version == 0:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        put["ConditionExpression"] = "version = :seen"
        put["ExpressionAttributeValues"] = {":seen": {"N": str(lineage.version)}}
    return {"Put": put}


def encode_cursor(user: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"u": user}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        user = json.loads(base64.urlsafe_b64decode(padded.encode()))["u"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidInput("cursor is not one this API returned") from exc
    if not isinstance(user, str):
        raise InvalidInput("cursor is not one this API returned")
    return user


class BudgetStore:
    def __init__(self, table_name: str, client=None) -> None:
        self.table_name = table_name
        self.client = track_write_outcomes(client or boto3.client("dynamodb", config=CLIENT_CONFIG))

    # ---- reads ---------------------------------------------------------------------------------

    def get(self, project: str, user: str) -> Budget | None:
        item = consistent_get_item(self.client, self.table_name, budget_key(project, user))
        return item_to_budget(item) if item else None

    def _project_query(self, project: str) -> dict:
        """Query arguments for every budget item of a project (its ledger items left out)."""
        return {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :user)",
            "ExpressionAttributeValues": {
                ":pk": {"S": project_key(project)},
                ":user": {"S": USER_PREFIX},
            },
            "ConsistentRead": True,
        }

    def list_page(
        self, project: str, *, limit: int, after_user: str | None = None
    ) -> tuple[list[Budget], str | None]:
        """Up to `limit` budgets of a project in user order, and the last user if more may follow."""
        kwargs = self._project_query(project) | {"Limit": limit}
        if after_user is not None:
            kwargs["ExclusiveStartKey"] = budget_key(project, after_user)
        response = self.client.query(**kwargs)
        budgets = [item_to_budget(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return budgets, (last["sk"]["S"][len(USER_PREFIX) :] if last else None)

    def iter_project(self, project: str) -> Iterator[Budget]:
        """Every budget of a project (one Query per MB of items)."""
        pages = self.client.get_paginator("query").paginate(**self._project_query(project))
        for page in pages:
            for item in page.get("Items", []):
                yield item_to_budget(item)

    def get_lineage(self, project: str, user: str, marker: Decimal) -> Lineage | None:
        """The recorded state of the litellm client copy `marker` of `user` (None: unknown)."""
        item = consistent_get_item(self.client, self.table_name, lineage_key(project, user, marker))
        return item_to_lineage(item) if item else None

    def record_servings(self, lineages: list[Lineage], fresh: Callable[[Lineage], Lineage]) -> list[Lineage]:
        """Store what ``get_budget`` served, one new item per user, each only if its key is new.

        TransactWriteItems in chunks (at most 100 items, under 4 MB). A marker that is taken
        already (a random collision) cancels its chunk: those entries get ``fresh(lineage)`` and
        the chunk is sent again. Returns the lineages as stored (their markers are what to serve).
        Contention after MAX_WRITE_ATTEMPTS tries of one chunk.
        """
        stored: list[Lineage] = []
        chunk: list[Lineage] = []
        size = 0

        def send(chunk: list[Lineage]) -> list[Lineage]:
            for attempt in range(MAX_WRITE_ATTEMPTS):
                try:
                    self.client.transact_write_items(
                        TransactItems=[_lineage_put(self.table_name, lineage) for lineage in chunk]
                    )
                    return chunk
                except ClientError as exc:
                    codes = _cancellation_codes(exc)
                    if not codes or not set(codes) <= {
                        None,
                        "None",
                        "ConditionalCheckFailed",
                        "TransactionConflict",
                    }:
                        raise
                    chunk = [
                        fresh(lin) if code == "ConditionalCheckFailed" else lin
                        for lin, code in zip(chunk, codes, strict=True)
                    ]
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
            raise Contention("could not record what get_budget served; retry")

        for lineage in lineages:
            item_bytes = item_size(lineage_to_item(lineage))
            if chunk and (len(chunk) == TRANSACTION_MAX_ITEMS or size + item_bytes > TRANSACTION_MAX_BYTES):
                stored += send(chunk)
                chunk, size = [], 0
            chunk.append(lineage)
            size += item_bytes
        if chunk:
            stored += send(chunk)
        return stored

    # ---- writes --------------------------------------------------------------------------------

    def save(self, budget: Budget, write: Write | None = None) -> Budget:
        """Write `budget` if the stored item is still at `budget.version` (0: absent).

        Returns the budget at its new version, as stored; raises StaleWrite (with the item as it
        stands) when someone wrote first.

        With `write` carrying closed periods or audit entries (the history), one TransactWriteItems
        puts them with the budget: the rollover and its record land together or not at all
        (botocore's retries carry the transaction's ClientRequestToken). Otherwise one PutItem.

        Exactly once under botocore's retries: the item carries this write's fresh id among its
        ``write_ids``. When an attempt landed but its answer was late or lost, the retry fails
        the version condition; the failed condition returns the stored item (ALL_OLD), which
        lists this id: the write has landed, and this is its success, not a StaleWrite (which
        would make `update` apply the change a second time).
        """
        write_id = uuid.uuid4().hex
        condition: dict
        if budget.version == 0:
            condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "version = :seen",
                "ExpressionAttributeValues": {":seen": {"N": str(budget.version)}},
            }
        item = budget_to_item(budget, write_id)
        if item_size(item) > ITEM_MAX_BYTES:  # the models' limits keep it far below; never send it
            raise InvalidInput(
                f"budget {budget.project}/{budget.user} would be over DynamoDB's 400 KB item limit"
            )
        put = {
            "TableName": self.table_name,
            "Item": item,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **condition,
        }
        try:
            if write is None or not (write.closed or write.audit or write.lineage):
                self.client.put_item(**put)
            else:
                self._save_with_history(put, write)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
                first = reasons[0] if reasons else {}
                if any(r.get("Code") in RETRYABLE_REASONS for r in reasons):
                    raise StaleWrite() from exc
                if first.get("Code") != "ConditionalCheckFailed":
                    if write is not None and write.lineage is not None and len(reasons) > 1:
                        if reasons[1].get("Code") == "ConditionalCheckFailed":
                            # The client copy moved since it was read (another save of the same
                            # copy): read both again and count against its new state.
                            raise StaleWrite() from exc
                    # The budget's condition held but a history item exists already: two periods
                    # with one key (the same start and end), which the keys are made to prevent.
                    raise
                old = first.get("Item")
            elif condition_failed(exc):
                old = exc.response.get("Item")
            elif code == "TransactionConflictException":
                raise StaleWrite() from exc  # nothing written: read again and retry
            else:
                raise
            if old is None:
                raise StaleWrite(None) from exc
            if write_id in _deserialize(old.get("write_ids", {"L": []})):
                return item_to_budget(item)  # our own write, landed by an earlier attempt
            raise StaleWrite(item_to_budget(old)) from exc
        return item_to_budget(item)

    def _save_with_history(self, put: dict, write: Write) -> None:
        from budget_service.store.history import history_items

        # The budget first, then the client copy's next state, then the history items.
        lineage = [_lineage_put(self.table_name, write.lineage)] if write.lineage is not None else []
        for again in (False, True):
            try:
                self.client.transact_write_items(
                    TransactItems=[
                        {"Put": put},
                        *lineage,
                        *history_items(self.table_name, write.closed, write.audit, again=again),
                    ]
                )
                return
            except ClientError as exc:
                codes = _cancellation_codes(exc)
                if (
                    again
                    or not codes
                    or any(code not in (None, "None") for code in codes[: 1 + len(lineage)])
                    or "ConditionalCheckFailed" not in codes[1 + len(lineage) :]
                ):
                    raise
                logger.warning(
                    "a closed period with this start and end is recorded already; recording"
                    " this one beside it",
                    extra={"project": write.budget.project, "user": write.budget.user},
                )

    def delete_recorded(self, project: str, user: str, record: Callable[[Budget], Write]) -> bool:
        """Delete a budget with what `record` says to keep of it (its current period as a closed
        one, an audit entry, for the history), in one TransactWriteItems whose Delete is conditional on
        the version read, so the record is of the budget deleted. False when there was none.
        A lost race re-reads; botocore's retries carry the transaction's ClientRequestToken."""
        from budget_service.store.history import history_items

        for attempt in itertools.count():
            current = self.get(project, user)
            if current is None:
                return False
            write = record(current)
            try:
                self.client.transact_write_items(
                    TransactItems=[
                        {
                            "Delete": {
                                "TableName": self.table_name,
                                "Key": budget_key(project, user),
                                "ConditionExpression": "version = :seen",
                                "ExpressionAttributeValues": {":seen": {"N": str(current.version)}},
                            }
                        },
                        *history_items(self.table_name, write.closed, write.audit),
                    ]
                )
                return True
            except ClientError as exc:
                codes = _cancellation_codes(exc)
                if not codes or codes[0] not in {"ConditionalCheckFailed", *RETRYABLE_REASONS}:
                    raise
            conflict_backoff(attempt, f"budget {project}/{user}")
        raise AssertionError("unreachable")

    def delete(self, project: str, user: str) -> bool:
        """Delete a budget; False when there was none.

        One TransactWriteItems holding the conditional Delete, for its ClientRequestToken:
        botocore sends the same token on each of its retries, and DynamoDB answers the retry of
        a delete that landed with its success (for 10 minutes), where a DeleteItem retry would
        fail its condition and report "no budget".
        """
        for attempt in itertools.count():
            try:
                self.client.transact_write_items(
                    TransactItems=[
                        {
                            "Delete": {
                                "TableName": self.table_name,
                                "Key": budget_key(project, user),
                                "ConditionExpression": "attribute_exists(pk)",
                            }
                        }
                    ]
                )
                return True
            except ClientError as exc:
                codes = _cancellation_codes(exc)
                if codes[:1] == ["ConditionalCheckFailed"]:
                    return False
                if not RETRYABLE_REASONS & set(codes):
                    raise
            # Another transaction holds the item; DynamoDB asks us to retry.
            conflict_backoff(attempt, f"budget {project}/{user}")
        raise AssertionError("unreachable")

    def update(
        self,
        project: str,
        user: str,
        change: Callable[[Budget | None], Budget | Write | None],
        *,
        seen: Budget | None | EllipsisType = ...,
    ) -> Budget | None:
        """Read-modify-write one budget until it lands without a race.

        `change` gets the stored budget (None when absent) and returns the budget to store, a
        Write (the budget with the periods it closes and its audit entries, stored in one
        transaction), or None to store nothing. A change that rolls an ended period over must
        return the Write of ``budget.roll`` (a plain Budget over an ended period is refused).
        `seen` is a copy already read, to save the first read. A lost race
        re-reads and calls `change` again, with jittered backoff (``conflict_backoff``); when
        the retries are spent the caller gets Contention (HTTP 503 with Retry-After).
        """
        current = self.get(project, user) if isinstance(seen, EllipsisType) else seen
        conflicts = 0
        for _ in range(STALE_RETRIES):
            target = change(current)
            if target is None:
                return current
            write = target if isinstance(target, Write) else Write(target)
            _check_recorded(current, write)
            try:
                return self.save(_with_version(write.budget, current.version if current else 0), write)
            except StaleWrite as stale:
                if isinstance(stale.current, EllipsisType):
                    # Nothing written and nothing learnt (a transaction had the item in flight):
                    # back off, then read again.
                    conflict_backoff(conflicts, f"budget {project}/{user}")
                    conflicts += 1
                    current = self.get(project, user)
                else:
                    # Another write landed first and DynamoDB answered the item it left: try
                    # again at once from it, while it is the newest.
                    current = stale.current
        raise Contention(f"budget {project}/{user} is being changed by too many writers; retry")

    # ---- cost updates (one TransactWriteItems since holds: store/levels.py) ------------------------

    def _ledger_put(self, project: str, user: str, ledger: dict, *, replacing: Decimal | None = None) -> dict:
        """The Put of an idempotency ledger item: only if the key is new, or, with `replacing`,
        only over the entry with that ``created_at`` (one left by a deleted budget)."""
        item = {
            **{k: v for k, v in ledger.items() if k != "key" and v is not None},
            "pk": project_key(project),
            "sk": ledger_key(user, ledger["key"]),
            "project": project,
            "user": user,
            "idempotency_key": ledger["key"],
        }
        return {
            "TableName": self.table_name,
            "Item": {k: serialize(v) for k, v in item.items()},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **(
                {"ConditionExpression": "attribute_not_exists(pk)"}
                if replacing is None
                else {
                    "ConditionExpression": "created_at = :seen",
                    "ExpressionAttributeValues": {":seen": serialize(replacing)},
                }
            ),
        }

    def get_ledger(self, project: str, user: str, key: str) -> dict | None:
        key_attrs = {"pk": {"S": project_key(project)}, "sk": {"S": ledger_key(user, key)}}
        item = consistent_get_item(self.client, self.table_name, key_attrs)
        return plain_item(item) if item else None

    # ---- scheduled resets -----------------------------------------------------------------------

    def _due_query(self, shard: int, now: Decimal) -> dict:
        """Query arguments for the budgets in reset shard `shard` whose ``reset_at <= now``."""
        return {
            "TableName": self.table_name,
            "IndexName": RESET_INDEX,
            "KeyConditionExpression": "reset_shard = :shard AND reset_at <= :now",
            "ExpressionAttributeValues": {
                ":shard": {"S": shard_key(shard)},
                ":now": serialize(now),
            },
        }

    def due_for_reset(
        self, shard: int, now: Decimal, *, limit: int, after: dict | None = None
    ) -> tuple[list[DueReset], dict | None]:
        """One page of the budgets in reset shard `shard` with ``reset_at <= now``, oldest first.

        From the sparse ``due-for-reset`` index, whose projection carries the rule attributes, so
        the page is all the job reads. Index reads are eventually consistent: an entry may lag its
        item, which the conditional write in ``reset_period`` catches. Returns the page and where
        to continue (None: this shard has no more).
        """
        kwargs = self._due_query(shard, now) | {"Limit": limit}
        if after is not None:
            kwargs["ExclusiveStartKey"] = after
        response = self.client.query(**kwargs)
        return [_item_to_due(item) for item in response.get("Items", [])], response.get("LastEvaluatedKey")

    def count_due(
        self, shard: int, now: Decimal, *, after: dict | None = None, max_pages: int = 4
    ) -> tuple[int, bool]:
        """How many budgets in shard `shard` are due at `now` from `after` on, without reading
        them (``Select=COUNT`` returns no items). Stops after `max_pages` pages (1 MB each);
        the bool says whether the count is exact."""
        kwargs = self._due_query(shard, now) | {"Select": "COUNT"}
        total = 0
        for _ in range(max_pages):
            if after is not None:
                kwargs["ExclusiveStartKey"] = after
            response = self.client.query(**kwargs)
            total += response["Count"]
            after = response.get("LastEvaluatedKey")
            if after is None:
                return total, True
        return total, False

    def reset_period(self, due: DueReset, period: Period, now: Decimal) -> bool:
        """Roll a due budget over into `period`, with its closed-period record, in one write.

        Reads the item (the closed period's spend is not in the index), then one TransactWriteItems
        of the budget, conditional on the version read, and the closed period's Put (the history). It
        lands only if the item still has the ``reset_at`` the index showed and that time has come;
        anyone who rolled the period over first (another run, a cost or hold rolling it lazily,
        ``set_budget``, a reset, a new rule) has moved ``reset_at``, and this is a no-op: False.
        A lost race re-reads (``update``). Live holds carry into the new period.
        """
        landed = False

        def change(current: Budget | None) -> Write | None:
            nonlocal landed
            landed = False
            if current is None or current.reset_at != due.reset_at or now < current.reset_at:
                return None
            write = roll(current, now, closed_by="job")
            if (write.budget.period_start, write.budget.reset_at) != (period.start, period.end):
                # The rule changed since the index was read: the next run sees the new one.
                return None
            landed = True
            return Write(write.budget._replace(updated_at=now), write.closed)

        self.update(due.project, due.user, change)
        return landed


def _item_to_due(raw: dict) -> DueReset:
    item = plain_item(raw)
    return DueReset(
        project=item["pk"][len(PROJECT_PREFIX) :],
        user=item["sk"][len(USER_PREFIX) :],
        reset_at=item["reset_at"],
        duration=Duration(item["duration"]) if "duration" in item else None,
        duration_days=item.get("duration_days"),
        timezone=item.get("timezone"),
        period_start=item.get("period_start"),
    )


def _check_recorded(current: Budget | None, write: Write) -> None:
    """No rollover without its record: storing over an ended period must close it (budget.roll)."""
    if current is None or current.reset_at is None or write.budget.updated_at < current.reset_at:
        return
    if write.budget.reset_at == current.reset_at:
        return  # not rolled over (yet): the period's spend is still on the item
    if not any(
        c.end == current.reset_at
        and c.start == (current.period_start if current.period_start is not None else current.created_at)
        for c in write.closed
    ):
        raise AssertionError(f"budget {current.project}/{current.user}: a rollover without its record")


def _with_version(budget: Budget, version: int) -> Budget:
    return budget._replace(version=version)


@lru_cache(maxsize=1)
def default_store() -> BudgetStore:
    """The store for this Lambda container, built once (client creation is slow)."""
    return BudgetStore(os.environ["TABLE_NAME"])


# ---- API keys -----------------------------------------------------------------------------------
#
# Two items per key, written and revoked together in one transaction:
# - the lookup item ``pk = APIKEY#<sha256 of the key>``, ``sk = APIKEY``: what the authorizer
#   reads (one GetItem; its IAM policy allows only keys starting with ``APIKEY#``);
# - the registry item ``pk = APIKEYS``, ``sk = <key id>``: lets an admin list keys and revoke
#   one by its id without having the key. The key id is a prefix of the hash, safe to show.
# The key itself is never stored.

API_KEY_PREFIX = "APIKEY#"
API_KEY_SK = "APIKEY"
API_KEY_REGISTRY = "APIKEYS"


def api_key_pk(digest: str) -> str:
    return API_KEY_PREFIX + digest


def _lookup_key(digest: str) -> dict:
    return {"pk": {"S": api_key_pk(digest)}, "sk": {"S": API_KEY_SK}}


def _registry_key(key_id: str) -> dict:
    return {"pk": {"S": API_KEY_REGISTRY}, "sk": {"S": key_id}}


class KeyExists(Exception):
    """A key with this hash or id is stored already (mint another)."""


class ApiKeyStore:
    def __init__(self, table_name: str, client=None) -> None:
        self.table_name = table_name
        self.client = track_write_outcomes(client or boto3.client("dynamodb", config=CLIENT_CONFIG))

    def put(self, digest: str, key_id: str, attributes: dict) -> None:
        """Store a new key's scope under its hash, and its registry entry, or neither."""
        common = {**attributes, "key_id": key_id, "key_hash": digest}
        lookup = {**common, "pk": api_key_pk(digest), "sk": API_KEY_SK}
        registry = {**common, "pk": API_KEY_REGISTRY, "sk": key_id}
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": {k: serialize(v) for k, v in item.items()},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                    for item in (lookup, registry)
                ]
            )
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                raise KeyExists(key_id) from exc
            raise

    def get(self, digest: str) -> dict | None:
        """The stored scope of the key with this hash (None: no such key)."""
        item = consistent_get_item(self.client, self.table_name, _lookup_key(digest))
        return plain_item(item) if item else None

    def get_by_id(self, key_id: str) -> dict | None:
        item = consistent_get_item(self.client, self.table_name, _registry_key(key_id))
        return plain_item(item) if item else None

    def revoke(self, key_id: str, now: Decimal) -> dict | None:
        """Mark the key revoked (both items, one transaction). None: no key with this id."""
        entry = self.get_by_id(key_id)
        if entry is None:
            return None
        keys = (_lookup_key(entry["key_hash"]), _registry_key(key_id))
        self.client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": key,
                        "UpdateExpression": "SET revoked = :true, revoked_at = if_not_exists(revoked_at, :now)",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": {":true": {"BOOL": True}, ":now": serialize(now)},
                    }
                }
                for key in keys
            ]
        )
        return self.get_by_id(key_id)

    def list(self) -> list[dict]:
        """Every key's registry entry (scope, role, revoked), in key id order."""
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": API_KEY_REGISTRY}},
            ConsistentRead=True,
        )
        return [plain_item(item) for page in pages for item in page.get("Items", [])]


@lru_cache(maxsize=1)
def default_key_store() -> ApiKeyStore:
    return ApiKeyStore(os.environ["TABLE_NAME"])


def aws_configuration() -> tuple[bool, bool]:
    """(a region is configured, credentials are configured), as boto3 looks them up: environment
    variables, then the shared config and credentials files, then (for credentials) the container
    and instance metadata endpoints, which AWS_EC2_METADATA_DISABLED=true skips."""
    session = boto3.Session()
    return session.region_name is not None, session.get_credentials() is not None
