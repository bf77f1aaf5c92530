"""The template's DynamoDB stream event sources, run locally as Lambda's event source mapping
runs them.

For each ``Type: DynamoDB`` event of a function, a thread polls the table's stream (the
``dynamodbstreams`` API on the same endpoint as the table: moto's server serves it, and so does
DynamoDB Local) and invokes the function with ``{"Records": [...]}``, each record shaped as
Lambda delivers it (GetRecords' record plus ``eventSourceARN``, the creation time as epoch
seconds). It honours the mapping's properties:

- ``StartingPosition`` (TRIM_HORIZON or LATEST, as of the runtime's start);
- ``FilterCriteria``: records no filter matches are dropped, as Lambda drops them;
- ``BatchSize`` records per invocation, in stream order;
- ``FunctionResponseTypes: [ReportBatchItemFailures]``: the ``batchItemFailures`` answer is read
  and the batch is retried from the lowest failed sequence number (an identifier not in the
  batch fails the whole batch);
- a function error retries the batch, split in two first when ``BisectBatchOnFunctionError``;
- ``MaximumRetryAttempts``: after that many retries the batch is recorded as a failure (the
  on-failure destination; ``GET /_local/streams`` lists them) and polling moves past it.

Retries back off from 0.1 s to 2 s (Lambda's own backoff is longer). ``GET /_local/streams``
shows each mapping's progress; tests wait on it (``wait_idle``) rather than sleeping.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from localdev.eventbridge import UnsupportedPattern, check_pattern, pattern_matches

POLL_IDLE_S = 0.2  # Lambda polls a shard about four times a second
READ_LIMIT = 1000  # records per GetRecords


@dataclass
class StreamMapping:
    """One function's DynamoDB event source (the template's event properties)."""

    function_id: str
    event_id: str
    batch_size: int = 100
    starting_position: str = "LATEST"
    bisect: bool = False
    max_retries: int = -1  # -1: until the record expires (Lambda's default)
    report_item_failures: bool = False
    filters: list[dict] = field(default_factory=list)
    enabled: bool = True

    @classmethod
    def from_template(cls, function_id: str, event_id: str, props: dict) -> tuple[StreamMapping, list[str]]:
        """The mapping, and notes about anything it cannot honour locally."""
        notes = []
        filters = []
        for f in (props.get("FilterCriteria") or {}).get("Filters") or []:
            pattern = json.loads(f["Pattern"]) if isinstance(f.get("Pattern"), str) else f.get("Pattern")
            try:
                check_pattern(pattern)
                filters.append(pattern)
            except UnsupportedPattern as exc:
                notes.append(f"{function_id}.{event_id}: filter not applied locally ({exc})")
                filters = []
                break
        mapping = cls(
            function_id=function_id,
            event_id=event_id,
            batch_size=int(props.get("BatchSize", 100)),
            starting_position=str(props.get("StartingPosition", "LATEST")),
            bisect=bool(props.get("BisectBatchOnFunctionError", False)),
            max_retries=int(props.get("MaximumRetryAttempts", -1)),
            report_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            filters=filters,
            enabled=props.get("Enabled", True) is not False,
        )
        return mapping, notes

    def wants(self, record: dict) -> bool:
        return not self.filters or any(pattern_matches(p, record) for p in self.filters)


def _jsonable(value):
    """GetRecords' values as the JSON Lambda sends: bytes as base64, times as epoch seconds."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return int(value.timestamp())
    return value


def lambda_record(record: dict, stream_arn: str) -> dict:
    """A GetRecords record as Lambda's event source mapping delivers it."""
    return {**_jsonable(record), "eventSourceARN": stream_arn}


class StreamPoller:
    """Polls one table's stream for one mapping and invokes its function (see module doc)."""

    def __init__(
        self,
        mapping: StreamMapping,
        streams_client,
        dynamodb_client,
        table_name: str,
        invoke: Callable[[str, object], object],
        log: Callable[[str], None] = print,
    ) -> None:
        self.mapping = mapping
        self.streams = streams_client
        self.dynamodb = dynamodb_client
        self.table_name = table_name
        self.invoke = invoke
        self.log = log
        self.stream_arn: str | None = None
        self.positions: dict[str, str | None] = {}  # shard id -> last sequence number handled
        self.failures: list[dict] = []  # the on-failure destination
        self.invocations = 0
        self.records_delivered = 0
        self.polls = 0
        self.idle_polls = 0  # consecutive polls that found nothing new
        self._cond = threading.Condition()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{mapping.function_id}", daemon=True)

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> StreamPoller:
        table = self.dynamodb.describe_table(TableName=self.table_name)["Table"]
        self.stream_arn = table.get("LatestStreamArn")
        if not self.stream_arn:
            raise ValueError(f"table {self.table_name} has no stream (template.yaml declares one)")
        if self.mapping.starting_position == "LATEST":
            for shard in self._shards():
                self.positions[shard] = self._last_sequence(shard)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def status(self) -> dict:
        with self._cond:
            return {
                "function": self.mapping.function_id,
                "event": self.mapping.event_id,
                "stream_arn": self.stream_arn,
                "polls": self.polls,
                "idle_polls": self.idle_polls,
                "invocations": self.invocations,
                "records_delivered": self.records_delivered,
                "positions": dict(self.positions),
                "failures": list(self.failures),
            }

    def wait_idle(self, timeout: float) -> bool:
        """Wait until two whole polls that started after this call found nothing new: every
        write made before the call has been delivered (or dead-lettered). False at the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            start = self.polls
            while not (self.polls >= start + 2 and self.idle_polls >= 2):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # ---- polling -------------------------------------------------------------------------------

    def _shards(self) -> list[str]:
        description = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        return [s["ShardId"] for s in description.get("Shards", [])]

    def _iterator(self, shard: str) -> str:
        # A fresh iterator each poll, from the last record handled: it never expires, and it
        # follows moto replacing its shard object when a transaction is rolled back.
        last = self.positions.get(shard)
        kwargs = {"StreamArn": self.stream_arn, "ShardId": shard}
        if last is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=last)
        return self.streams.get_shard_iterator(**kwargs)["ShardIterator"]

    def _last_sequence(self, shard: str) -> str | None:
        last = None
        iterator = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            records = self.streams.get_records(ShardIterator=iterator, Limit=READ_LIMIT)
            if not records["Records"]:
                break
            last = records["Records"][-1]["dynamodb"]["SequenceNumber"]
            iterator = records.get("NextShardIterator")
        return last

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                found = self.poll_once()
            except Exception:  # keep polling: a bug or an endpoint hiccup must not end make dev
                traceback.print_exc()
                found = 0
            with self._cond:
                self.polls += 1
                self.idle_polls = 0 if found else self.idle_polls + 1
                self._cond.notify_all()
            if not found:
                self._stopped.wait(POLL_IDLE_S)

    def poll_once(self) -> int:
        """Read every shard once and deliver what is new; the number of records read."""
        found = 0
        for shard in self._shards():
            response = self.streams.get_records(ShardIterator=self._iterator(shard), Limit=READ_LIMIT)
            records = response.get("Records") or []
            found += len(records)
            wanted = [
                r for r in (lambda_record(r, str(self.stream_arn)) for r in records) if self.mapping.wants(r)
            ]
            if self.mapping.enabled:
                size = self.mapping.batch_size
                for start in range(0, len(wanted), size):
                    if self._stopped.is_set():
                        return found
                    self._deliver(wanted[start : start + size], shard)
            if records and not self._stopped.is_set():
                with self._cond:
                    self.positions[shard] = records[-1]["dynamodb"]["SequenceNumber"]
        return found

    # ---- invoking, as the event source mapping does ---------------------------------------------

    def _invoke(self, records: list[dict]) -> tuple[bool, int] | None:
        """Invoke with `records`. None on success, else (function error?, index to retry from)."""
        with self._cond:
            self.invocations += 1
        try:
            result = self.invoke(self.mapping.function_id, {"Records": records})
        except Exception:
            traceback.print_exc()
            return True, 0
        if not self.mapping.report_item_failures:
            return None
        failures = result.get("batchItemFailures") if isinstance(result, dict) else None
        if not failures:
            return None
        sequence = [r["dynamodb"]["SequenceNumber"] for r in records]
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if identifier not in sequence:  # Lambda fails the whole batch then
                return False, 0
            indexes.append(sequence.index(identifier))
        return False, min(indexes)

    def _deliver(self, records: list[dict], shard: str | None = None) -> None:
        retries = 0
        while records and not self._stopped.is_set():
            outcome = self._invoke(records)
            if outcome is None:
                with self._cond:
                    self.records_delivered += len(records)
                return
            function_error, retry_from = outcome
            with self._cond:
                self.records_delivered += retry_from
            records = records[retry_from:]
            if 0 <= self.mapping.max_retries <= retries:
                failure = {
                    "function": self.mapping.function_id,
                    "condition": "RetryAttemptsExhausted",
                    "approximateInvokeCount": retries + 1,
                    "shardId": shard,
                    "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                    "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                    "batchSize": len(records),
                }
                with self._cond:
                    self.failures.append(failure)
                self.log(f"stream: {self.mapping.function_id} gave up on {len(records)} record(s): {failure}")
                return
            retries += 1
            if self._stopped.wait(min(0.1 * 2 ** (retries - 1), 2.0)):
                return
            if function_error and self.mapping.bisect and len(records) > 1:
                # Splitting does not count as a retry (Lambda's rule); each half starts afresh.
                half = len(records) // 2
                self._deliver(records[:half], shard)
                self._deliver(records[half:], shard)
                return
