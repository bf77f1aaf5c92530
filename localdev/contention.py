"""DynamoDB's contention, modelled for the embedded DynamoDB and the tests' in-process moto.

moto applies every request at once and never refuses one for contention, so a service tested on
it never meets the two answers DynamoDB gives under load. This model adds them, in front of moto:

**Transaction conflicts** (developer guide, "Transaction conflict handling"). A TransactWriteItems
keeps each item it names *in flight* for a window (``window_s``, default 10 ms). While an item is
in flight:

- another TransactWriteItems naming it is cancelled: ``TransactionCanceledException`` whose
  ``CancellationReasons`` hold ``{"Code": "TransactionConflict", "Message": "Transaction is
  ongoing for the item"}`` at that item's index and ``{"Code": "None"}`` elsewhere, and nothing
  of it is applied;
- a PutItem, UpdateItem or DeleteItem on it fails with ``TransactionConflictException`` (HTTP 400);
- a TransactGetItems naming it is cancelled the same way as a TransactWriteItems.

Why 10 ms: DynamoDB runs a transaction in two phases, each a round trip from its transaction
coordinator to the storage nodes of every item (prepare, then commit), and an item stays in
flight from its prepare until its commit. Within a region such a round trip takes a few
milliseconds, so the order of a transaction's two internal round trips is about 10 ms; it is
also what a TransactWriteItems of three items takes end to end as measured by clients in one
region. A longer window is a harsher test; the README's throughput figures state theirs.

What the model does with a window: the transaction that passes the conflict check marks its
items in flight, is applied at once (under the lock that applies requests one at a time, so it
is atomic), and its answer is held for the rest of the window *outside* that lock: other
requests proceed meanwhile and the ones that name its items conflict. The answer goes back only
once the window has ended and the marks are gone, so a caller's next request never meets its
own transaction (as on DynamoDB, where the answer comes after the commit). A transaction that
moto cancels (a failed condition) still held its items for its window: DynamoDB's coordinator
prepared them before it learnt of the failure. A transaction cancelled here for a conflict or a
throttle marks nothing. Single-item writes do not mark anything (DynamoDB serializes them with
each other; only transactions hold items across round trips).

**Per-partition write capacity** (developer guide, "Partitions", and the on-demand throttling
guide: a partition serves at most 1,000 WCU/s whatever the table's mode). Each partition key
(table, hash key value) has a token bucket of ``partition_wcu`` WCU refilled at that rate per
second, holding at most one second's worth. A write costs 1 WCU per KB (rounding up) of the
larger of the item before and after (the item's size after an UpdateItem is not known before it
is applied; the stored item's size stands for it), twice that per item in a TransactWriteItems
(DynamoDB charges a transaction's writes double); ConditionCheck costs read capacity, not
modelled. A request is refused when a partition it writes has an empty bucket (a large item may
take the bucket below zero; the debt is paid by the refill first). Refused:

- a single write: ``ProvisionedThroughputExceededException`` with ``ThrottlingReasons``
  ``[{"reason": "TableWriteKeyRangeThroughputExceeded", "resource": <table ARN>}]``, what
  DynamoDB answers when a partition's limit is reached, on-demand tables included
  (API reference, "ThrottlingReason": ``KeyRangeThroughputExceeded``);
- a transaction: ``TransactionCanceledException`` with ``{"Code": "ThrottlingError"}`` at the
  index of the item whose partition is out of capacity.

Refusals consume nothing and write nothing. botocore's standard retry mode retries
``ProvisionedThroughputExceededException`` by itself; it retries neither cancellation nor
``TransactionConflictException``.

Not modelled: BatchWriteItem (its items are not checked or charged), read capacity, adaptive
capacity's split of a hot partition by sort key.

Knobs (environment, read by :meth:`ContentionModel.from_environ`):

- ``LOCAL_DYNAMODB_CONFLICTS``: ``0``/``off`` turns the whole model off (moto as it is), ``1``/on
  (the default) on.
- ``LOCAL_DYNAMODB_CONFLICT_WINDOW_MS``: the in-flight window in milliseconds (default 10;
  ``0``/``off``: no conflicts).
- ``LOCAL_DYNAMODB_PARTITION_WCU``: write capacity per partition key per second (default 1000;
  ``0``/``off``: no throttling). Lower it (e.g. 50) to reach saturation on a small machine.

Tests pass the same as arguments (``ContentionModel(window_s=..., partition_wcu=...,
clock=...)``) and read the counters with :meth:`ContentionModel.stats`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

ENV_SWITCH = "LOCAL_DYNAMODB_CONFLICTS"
ENV_WINDOW_MS = "LOCAL_DYNAMODB_CONFLICT_WINDOW_MS"
ENV_PARTITION_WCU = "LOCAL_DYNAMODB_PARTITION_WCU"
DEFAULT_WINDOW_S = 0.010
DEFAULT_PARTITION_WCU = 1000.0
KB = 1024

TARGET_PREFIX = "DynamoDB_20120810."
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
SINGLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
# DynamoDB's texts for these answers.
CONFLICT_MESSAGE = "Transaction is ongoing for the item"
CANCELLED_MESSAGE = "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]"
THROTTLE_MESSAGE = (
    "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically"
    " scaling your table or index so please try again shortly. If exceptions persist, check if you"
    " have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"
)
THROTTLE_REASON = "TableWriteKeyRangeThroughputExceeded"

_OFF = ("0", "off", "false", "no")


def switched_on(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``LOCAL_DYNAMODB_CONFLICTS`` leaves the model on (it is on unless 0/off/false/no)."""
    return environ.get(ENV_SWITCH, "1").strip().lower() not in _OFF


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip().lower()
    if not text:
        return default
    if text in _OFF:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, or 0/off; not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, not {text!r}")
    return value


class Tables(Protocol):
    """What the model needs to know of the tables behind it (see :class:`MotoTables`)."""

    def key_schema(self, table: str) -> tuple[str, str | None] | None:
        """(hash key attribute, range key attribute or None); None for an unknown table."""

    def stored_size(self, table: str, key: dict) -> int | None:
        """The stored item's size in bytes (DynamoDB's rule), None when there is none."""

    def item_size(self, item: dict) -> int:
        """The size in bytes of an item given in DynamoDB JSON."""

    def arn(self, table: str) -> str:
        """The table's ARN."""


class MotoTables:
    """:class:`Tables` read from moto's backends in this process (the embedded server and the
    in-process mock both keep theirs here). Call it only while no request is being applied
    (inside the lock that applies them)."""

    @staticmethod
    def _table(name: str):
        from moto.dynamodb.models import dynamodb_backends

        # dict.values: only the accounts and regions already used (moto creates others on access).
        for account in dict.values(dynamodb_backends):
            for backend in dict.values(account):
                table = backend.tables.get(name)
                if table is not None:
                    return table
        return None

    def key_schema(self, table: str) -> tuple[str, str | None] | None:
        found = self._table(table)
        return None if found is None else (found.hash_key_attr, found.range_key_attr)

    def stored_size(self, table: str, key: dict) -> int | None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        found = self._table(table)
        if found is None:
            return None
        try:
            hash_key = DynamoType(key[found.hash_key_attr])
            range_key = DynamoType(key[found.range_key_attr]) if found.range_key_attr else None
            item = found.get_item(hash_key, range_key)
        except Exception:  # a malformed key: moto answers the request itself
            return None
        return None if item is None else item.size()

    def item_size(self, item: dict) -> int:
        from moto.dynamodb.models.dynamo_type import DynamoType

        try:
            return sum(len(name.encode()) + DynamoType(value).size() for name, value in item.items())
        except Exception:  # malformed: moto refuses it; charge the minimum meanwhile
            return 0

    def arn(self, table: str) -> str:
        found = self._table(table)
        return getattr(found, "table_arn", None) or f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"


@dataclass
class Admission:
    """A request the model let through; hand it back to :meth:`ContentionModel.finish` once the
    request is applied (outside the applying lock)."""

    marks: list[tuple] = field(default_factory=list)  # item keys this request holds in flight
    until: float = 0.0  # when its window ends (the model's clock)
    ident: int = 0


@dataclass(frozen=True)
class Refusal:
    """The error answer (HTTP 400) DynamoDB would give instead of applying the request."""

    code: str  # e.g. "TransactionConflictException"
    body: dict

    def payload(self) -> bytes:
        return json.dumps(self.body).encode()


@dataclass
class _Bucket:
    tokens: float
    at: float


class ContentionModel:
    """Transaction conflicts and per-partition write capacity (see the module docstring).

    `window_s`: seconds an item stays in flight (0: no conflicts). `partition_wcu`: WCU per
    second per partition key (0: no throttling). `clock`: seconds, monotonic; a test passes its
    own and calls :meth:`wake` after moving it. `tables`: the schema and item sizes
    (:class:`MotoTables` by default).

    Use: under the lock that applies requests one at a time, ``refusal, admission =
    model.admit(operation, request)``; answer the refusal if there is one, else apply the
    request; then, after releasing the lock, ``model.finish(admission)`` (which waits out the
    window) before answering.
    """

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        partition_wcu: float = DEFAULT_PARTITION_WCU,
        *,
        clock: Callable[[], float] = time.monotonic,
        tables: Tables | None = None,
    ) -> None:
        self.window_s = float(window_s)
        self.partition_wcu = float(partition_wcu)
        self.clock = clock
        self.tables: Tables = tables if tables is not None else MotoTables()
        self._cond = threading.Condition()
        self._in_flight: dict[tuple, tuple[float, int]] = {}  # item key -> (until, admission)
        self._buckets: dict[tuple, _Bucket] = {}
        self._ids = itertools.count(1)
        self._counts = dict.fromkeys(self.COUNTERS, 0)

    COUNTERS = (
        "transactions",  # TransactWriteItems seen (refused ones included)
        "transaction_conflicts",  # TransactWriteItems/TransactGetItems cancelled for a conflict
        "write_conflicts",  # PutItem/UpdateItem/DeleteItem refused for a conflict
        "throttles",  # requests refused for a partition's write capacity
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ, **kwargs) -> ContentionModel | None:
        """The model the environment asks for (see the module docstring), or None when
        ``LOCAL_DYNAMODB_CONFLICTS`` turns it off. ValueError for a setting that is not a number."""
        if not switched_on(environ):
            return None
        window_ms = _number(environ, ENV_WINDOW_MS, DEFAULT_WINDOW_S * 1000)
        wcu = _number(environ, ENV_PARTITION_WCU, DEFAULT_PARTITION_WCU)
        return cls(window_s=window_ms / 1000, partition_wcu=wcu, **kwargs)

    # ---- settings and counters ---------------------------------------------------------------

    def configure(self, window_s: float | None = None, partition_wcu: float | None = None) -> None:
        """Change the window (seconds) or the capacity (WCU/s) from now on; buckets refill."""
        with self._cond:
            if window_s is not None:
                self.window_s = float(window_s)
            if partition_wcu is not None:
                self.partition_wcu = float(partition_wcu)
                self._buckets.clear()

    def stats(self) -> dict:
        """``{"transactions", "transaction_conflicts", "write_conflicts", "conflicts",
        "throttles", "in_flight_items", "window_ms", "partition_wcu"}``; conflicts is the sum of
        both conflict counts, in_flight_items the items in flight now."""
        with self._cond:
            now = self.clock()
            counts = dict(self._counts)
            in_flight = sum(1 for until, _ in self._in_flight.values() if until > now)
        return {
            **counts,
            "conflicts": counts["transaction_conflicts"] + counts["write_conflicts"],
            "in_flight_items": in_flight,
            "window_ms": self.window_s * 1000,
            "partition_wcu": self.partition_wcu,
        }

    def reset_stats(self) -> None:
        """Counters back to zero (what is in flight stays in flight)."""
        with self._cond:
            self._counts = dict.fromkeys(self.COUNTERS, 0)

    def wake(self) -> None:
        """Make requests waiting out their window look at the clock again (after a test moved it)."""
        with self._cond:
            self._cond.notify_all()

    def in_flight(self, table: str, key: dict) -> bool:
        """Whether the item with this key (DynamoDB JSON) is in flight now."""
        item = self._key(table, key)
        if item is None:
            return False
        with self._cond:
            entry = self._in_flight.get(item)
            return entry is not None and entry[0] > self.clock()

    def _key(self, table: object, key: object) -> tuple | None:
        """The item's key as the model keeps it (see _item_key); None when the table is unknown
        or the key incomplete (moto answers such a request itself)."""
        if not isinstance(table, str) or not isinstance(key, dict):
            return None
        return _item_key(table, self.tables.key_schema(table), key)

    # ---- the rule ----------------------------------------------------------------------------

    def admit(self, operation: str, request: object) -> tuple[Refusal | None, Admission | None]:
        """Check one request (its operation, e.g. "TransactWriteItems", and its parsed JSON
        body) before it is applied: (the refusal to answer instead, None) or (None, an
        admission to :meth:`finish`). Call it inside the applying lock."""
        if not isinstance(request, dict):
            return None, None  # moto answers a malformed request
        if operation == "TransactWriteItems":
            return self._transaction(request)
        if operation == "TransactGetItems":
            return self._transact_get(request)
        if operation in SINGLE_WRITES:
            return self._single_write(operation, request)
        return None, None

    def finish(self, admission: Admission | None) -> None:
        """Hold the caller until the admission's window has ended, then take its items out of
        flight. Call it outside the applying lock: other requests run meanwhile."""
        if admission is None or not admission.marks:
            return
        with self._cond:
            while (left := admission.until - self.clock()) > 0:
                self._cond.wait(left)
            for key in admission.marks:
                entry = self._in_flight.get(key)
                if entry is not None and entry[1] == admission.ident:
                    del self._in_flight[key]

    def _items(self, request: dict) -> list[tuple[str, dict, tuple | None]]:
        """(operation, its body, its item key) per TransactItems entry; key None where the table
        or key cannot be read (moto answers for those)."""
        found: list[tuple[str, dict, tuple | None]] = []
        for entry in request.get("TransactItems") or []:
            op_name, op = next(iter(entry.items()), ("", None)) if isinstance(entry, dict) else ("", None)
            if not isinstance(op, dict):
                found.append((str(op_name), {}, None))
                continue
            source = op.get("Item") if op_name == "Put" else op.get("Key")
            found.append((str(op_name), op, self._key(op.get("TableName"), source)))
        return found

    def _conflicts(self, keys: list[tuple | None], now: float) -> list[bool]:
        return [
            key is not None and (entry := self._in_flight.get(key)) is not None and entry[0] > now
            for key in keys
        ]

    def _transaction(self, request: dict) -> tuple[Refusal | None, Admission | None]:
        items = self._items(request)
        with self._cond:
            self._counts["transactions"] += 1
            now = self.clock()
            if self.window_s > 0:
                conflicts = self._conflicts([key for _, _, key in items], now)
                if any(conflicts):
                    self._counts["transaction_conflicts"] += 1
                    codes = ["TransactionConflict" if c else None for c in conflicts]
                    return _cancelled(codes, CONFLICT_MESSAGE), None
            if self.partition_wcu > 0:
                costs: list[tuple[tuple | None, float]] = []
                for op_name, op, key in items:
                    if key is None or op_name == "ConditionCheck":
                        costs.append((None, 0.0))
                        continue
                    new_item = op.get("Item") if op_name == "Put" else None
                    units = self._units(key[0], op.get("Key") or new_item, new_item)
                    costs.append((key[:2], 2 * units))
                throttled = self._charge(costs, now)
                if throttled is not None:
                    self._counts["throttles"] += 1
                    codes = ["ThrottlingError" if i == throttled else None for i in range(len(items))]
                    return _cancelled(codes, THROTTLE_MESSAGE), None
            if self.window_s <= 0:
                return None, None
            admission = Admission(until=now + self.window_s, ident=next(self._ids))
            for _, _, key in items:
                if key is not None:
                    self._in_flight[key] = (admission.until, admission.ident)
                    admission.marks.append(key)
            self._forget_expired(now)
            return None, admission

    def _transact_get(self, request: dict) -> tuple[Refusal | None, Admission | None]:
        if self.window_s <= 0:
            return None, None
        keys = []
        for entry in request.get("TransactItems") or []:
            op = entry.get("Get") if isinstance(entry, dict) else None
            keys.append(self._key(op.get("TableName"), op.get("Key")) if isinstance(op, dict) else None)
        with self._cond:
            conflicts = self._conflicts(keys, self.clock())
            if not any(conflicts):
                return None, None
            self._counts["transaction_conflicts"] += 1
            return _cancelled(
                ["TransactionConflict" if c else None for c in conflicts], CONFLICT_MESSAGE
            ), None

    def _single_write(self, operation: str, request: dict) -> tuple[Refusal | None, Admission | None]:
        new_item = request.get("Item") if operation == "PutItem" else None
        key = self._key(request.get("TableName"), new_item if new_item is not None else request.get("Key"))
        if key is None:
            return None, None
        table = key[0]
        with self._cond:
            now = self.clock()
            if self.window_s > 0 and self._conflicts([key], now)[0]:
                self._counts["write_conflicts"] += 1
                return Refusal(
                    "TransactionConflictException",
                    {"__type": ERROR_PREFIX + "TransactionConflictException", "message": CONFLICT_MESSAGE},
                ), None
            if self.partition_wcu > 0:
                units = self._units(table, request.get("Key") or new_item, new_item)
                if self._charge([(key[:2], units)], now) is not None:
                    self._counts["throttles"] += 1
                    return Refusal(
                        "ProvisionedThroughputExceededException",
                        {
                            "__type": ERROR_PREFIX + "ProvisionedThroughputExceededException",
                            "message": THROTTLE_MESSAGE,
                            "ThrottlingReasons": [
                                {"reason": THROTTLE_REASON, "resource": self.tables.arn(table)}
                            ],
                        },
                    ), None
        return None, None

    def _units(self, table: str, key: dict | None, new_item: dict | None) -> float:
        """WCU of one write: 1 per KB (rounded up) of the larger of the item before and after."""
        size = 0
        if isinstance(key, dict):
            size = self.tables.stored_size(table, key) or 0
        if isinstance(new_item, dict):
            size = max(size, self.tables.item_size(new_item))
        return float(max(1, math.ceil(size / KB)))

    def _charge(self, costs: list[tuple[tuple | None, float]], now: float) -> int | None:
        """Take each cost from its partition's bucket, all or nothing: None, or the index of the
        first write whose partition has an empty bucket (then nothing is taken)."""
        rate = self.partition_wcu
        wanted: dict[tuple, float] = {}
        for index, (partition, units) in enumerate(costs):
            if partition is None or units <= 0:
                continue
            bucket = self._buckets.get(partition)
            if bucket is None:
                bucket = self._buckets[partition] = _Bucket(tokens=rate, at=now)
            else:
                bucket.tokens = min(rate, bucket.tokens + (now - bucket.at) * rate)
                bucket.at = now
            if bucket.tokens <= 0:
                return index
            wanted[partition] = wanted.get(partition, 0.0) + units
        for partition, units in wanted.items():
            self._buckets[partition].tokens -= units
        return None

    def _forget_expired(self, now: float) -> None:
        # Marks whose holder has not finished yet are kept (finish removes them); this only
        # bounds the map when finish is never called (a caller that died).
        if len(self._in_flight) > 10_000:
            for key in [k for k, (until, _) in self._in_flight.items() if until + 60 <= now]:
                del self._in_flight[key]


def _item_key(table: str, schema: tuple[str, str | None] | None, key: dict) -> tuple | None:
    """(table, hash key value, range key value) as canonical JSON; None if the key is incomplete."""
    if schema is None:
        return None
    hash_attr, range_attr = schema
    if hash_attr not in key or (range_attr is not None and range_attr not in key):
        return None
    range_value = json.dumps(key[range_attr], sort_keys=True) if range_attr else None
    return (table, json.dumps(key[hash_attr], sort_keys=True), range_value)


def _cancelled(codes: list[str | None], message: str) -> Refusal:
    """DynamoDB's TransactionCanceledException: one reason per item, "None" where it was fine."""
    reasons = [{"Code": code, "Message": message} if code else {"Code": "None"} for code in codes]
    text = CANCELLED_MESSAGE.format(", ".join(code or "None" for code in codes))
    return Refusal(
        "TransactionCanceledException",
        {
            "__type": ERROR_PREFIX + "TransactionCanceledException",
            "CancellationReasons": reasons,
            "Message": text,
        },
    )
