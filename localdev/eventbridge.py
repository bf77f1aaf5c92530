"""A local stand-in for the template's EventBridge bus, and its webhook rule.

The functions' boto3 ``events`` client is pointed here (``AWS_ENDPOINT_URL_EVENTBRIDGE`` is the local
server), so ``PutEvents`` runs exactly the code it runs in AWS. Events are kept in memory, in the
order they were put (``GET /_local/events``). When ``ALERT_WEBHOOK_URL`` is set, every event the
template's webhook rule matches is POSTed there, in order, as an API destination would: the whole
event as JSON, with the connection's API key header (``ALERT_WEBHOOK_SECRET``); failures are
retried with backoff a few times.

Fault injection for tests: ``POST /_local/events/faults {"fail_after_put": n}`` makes the next n
PutEvents calls keep their events and then answer HTTP 500, as a call that timed out after
EventBridge accepted it looks to the caller.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import requests
from werkzeug.wrappers import Request, Response

from localdev.events import ACCOUNT_ID

_MISSING = object()
WEBHOOK_ATTEMPTS = 5
WEBHOOK_TIMEOUT_S = 10


class UnsupportedPattern(ValueError):
    pass


def pattern_matches(pattern: dict, data) -> bool:
    """EventBridge / Lambda event-filter pattern matching, the subset the template uses: nested
    fields, lists of alternatives, literal values, ``prefix``, ``exists`` and ``anything-but``."""
    if not isinstance(data, dict):
        return False
    for key, rule in pattern.items():
        value = data.get(key, _MISSING)
        if isinstance(rule, dict):
            if not isinstance(value, dict) or not pattern_matches(rule, value):
                return False
        elif isinstance(rule, list):
            if not any(_value_matches(r, value) for r in rule):
                return False
        else:
            raise UnsupportedPattern(f"pattern field {key!r}: a value must be in a list")
    return True


def _value_matches(rule, value) -> bool:
    if isinstance(rule, dict):
        if set(rule) == {"prefix"}:
            return isinstance(value, str) and value.startswith(rule["prefix"])
        if set(rule) == {"exists"}:
            return (value is not _MISSING) == bool(rule["exists"])
        if set(rule) == {"anything-but"}:
            excluded = rule["anything-but"]
            excluded = excluded if isinstance(excluded, list) else [excluded]
            return value is not _MISSING and value not in excluded
        raise UnsupportedPattern(f"pattern operator {sorted(rule)} is not supported locally")
    if value is _MISSING:
        return False
    if isinstance(value, list):
        return rule in value
    return value == rule


def check_pattern(pattern: dict) -> None:
    """Raise UnsupportedPattern if `pattern` uses something pattern_matches cannot evaluate."""
    for rule in pattern.values():
        if isinstance(rule, dict):
            check_pattern(rule)
        elif isinstance(rule, list):
            for r in rule:
                if isinstance(r, dict):
                    _value_matches(r, _MISSING)  # raises for an operator it cannot evaluate
        else:
            raise UnsupportedPattern("pattern values must be lists")


def _iso(moment) -> str:
    if moment is None:
        moment = time.time()
    return datetime.fromtimestamp(float(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalEventBus:
    """One bus: PutEvents in, the events kept, and the webhook rule's deliveries."""

    def __init__(
        self,
        bus_name: str,
        region: str,
        *,
        webhook_url: str | None = None,
        webhook_header: str | None = None,
        webhook_secret: str | None = None,
        webhook_pattern: dict | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.bus_name = bus_name
        self.region = region
        self.webhook_url = webhook_url
        self.webhook_header = webhook_header
        self.webhook_secret = webhook_secret
        self.webhook_pattern = webhook_pattern
        self.log = log
        self._lock = threading.Condition()
        self._events: list[dict] = []
        self._deliveries: dict[str, dict] = {}  # event id -> {"status", "attempts", "error"}
        self._fail_after_put = 0
        self._queue: queue.Queue = queue.Queue()
        self._stopped = threading.Event()
        self._worker = threading.Thread(target=self._deliver_loop, daemon=True)
        if webhook_url:
            self._worker.start()

    # ---- the PutEvents API ---------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """An ``AWSEvents.*`` request (JSON 1.1 protocol) from a boto3 events client."""
        target = request.headers.get("X-Amz-Target", "")
        if target != "AWSEvents.PutEvents":
            return self._aws_error(400, "UnknownOperationException", f"{target} is not emulated locally")
        try:
            body = json.loads(request.get_data(as_text=True) or "{}")
        except json.JSONDecodeError:
            return self._aws_error(400, "SerializationException", "the body is not JSON")
        entries = body.get("Entries") or []
        if not 1 <= len(entries) <= 10:
            return self._aws_error(400, "ValidationException", "Entries must hold 1 to 10 entries")
        result = self.put_events(entries)
        with self._lock:
            fail = self._fail_after_put > 0
            self._fail_after_put -= 1 if fail else 0
        if fail:
            return self._aws_error(500, "InternalException", "injected: events were put, the answer is lost")
        return Response(json.dumps(result), content_type="application/x-amz-json-1.1")

    @staticmethod
    def _aws_error(status: int, code: str, message: str) -> Response:
        return Response(
            json.dumps({"__type": code, "message": message}),
            status=status,
            content_type="application/x-amz-json-1.1",
        )

    def put_events(self, entries: list[dict]) -> dict:
        results, failed = [], 0
        for entry in entries:
            bus = (entry.get("EventBusName") or "default").rsplit("/", 1)[-1]
            if bus != self.bus_name:
                failed += 1
                results.append(
                    {
                        "ErrorCode": "ResourceNotFoundException",
                        "ErrorMessage": f"Event bus {bus} does not exist.",
                    }
                )
                continue
            try:
                detail = json.loads(entry.get("Detail") or "{}")
            except json.JSONDecodeError:
                failed += 1
                results.append({"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is not valid JSON."})
                continue
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": entry.get("DetailType"),
                "source": entry.get("Source"),
                "account": ACCOUNT_ID,
                "time": _iso(entry.get("Time")),
                "region": self.region,
                "resources": entry.get("Resources") or [],
                "detail": detail,
            }
            with self._lock:
                self._events.append(event)
                queued = bool(self.webhook_url) and (
                    self.webhook_pattern is None or pattern_matches(self.webhook_pattern, event)
                )
                if queued:
                    self._deliveries[event["id"]] = {"status": "pending", "attempts": 0}
                self._lock.notify_all()
            if queued:
                self._queue.put(event)
            results.append({"EventId": event["id"]})
        return {"FailedEntryCount": failed, "Entries": results}

    # ---- inspection and control ----------------------------------------------------------------

    def events(self) -> list[dict]:
        """Every event put so far, oldest first, each with its webhook delivery (if any)."""
        with self._lock:
            return [
                {**e, "delivery": dict(self._deliveries[e["id"]])} if e["id"] in self._deliveries else dict(e)
                for e in self._events
            ]

    def set_faults(self, fail_after_put: int) -> None:
        with self._lock:
            self._fail_after_put = max(0, int(fail_after_put))

    def wait_delivered(self, timeout: float) -> bool:
        """Wait until no webhook delivery is pending; False at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(d["status"] == "pending" for d in self._deliveries.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def stop(self) -> None:
        self._stopped.set()
        self._queue.put(None)

    # ---- the webhook rule ----------------------------------------------------------------------

    def _deliver_loop(self) -> None:
        session = requests.Session()
        while not self._stopped.is_set():
            event = self._queue.get()
            if event is None:
                return
            status, error = "failed", None
            for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
                headers = {"Content-Type": "application/json"}
                if self.webhook_header and self.webhook_secret:
                    headers[self.webhook_header] = self.webhook_secret
                try:
                    response = session.post(
                        str(self.webhook_url),
                        data=json.dumps(event),
                        headers=headers,
                        timeout=WEBHOOK_TIMEOUT_S,
                    )
                    ok = 200 <= response.status_code < 300
                    error = None if ok else f"HTTP {response.status_code}"
                except requests.RequestException as exc:
                    ok, error = False, str(exc)
                with self._lock:
                    self._deliveries[event["id"]]["attempts"] = attempt
                if ok:
                    status = "delivered"
                    break
                # API destinations retry 5xx, 429 and timeouts; a 4xx other than 429 is final.
                if error and error.startswith("HTTP 4") and error != "HTTP 429":
                    break
                if self._stopped.wait(min(0.2 * 2**attempt, 5)):
                    return
            if status == "failed":
                self.log(f"alert webhook: giving up on event {event['id']}: {error}")
            with self._lock:
                self._deliveries[event["id"]].update(status=status, error=error)
                self._lock.notify_all()
