"""Shared pieces of the benchmarks: statistics, result tables, and the local runtime with meters.

The runtime is ``make dev``'s (localdev.server.LocalRuntime: template routes over an embedded
moto DynamoDB) started in this process, so the bench can count what crosses each wire:

* ``HttpMeter`` wraps the gateway's WSGI app and records every HTTP request: the bytes the client
  sent (request line, headers, body) and got back (status line, headers, body);
* ``DynamoMeter`` hooks a botocore client and records every DynamoDB request it sends (retries
  included), with the items DynamoDB returned to it.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER_DIR = ROOT / "layers" / "budget"
if str(LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_DIR))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ---- statistics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Median, min and max of repeated measurements."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        values = [float(v) for v in values]
        if not values:
            raise ValueError("no measurements")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def as_dict(self) -> dict:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}

    def fmt(self, unit: str = "ms", scale: float = 1000.0, digits: int | None = None) -> str:
        """``12.3 ms (11.9-14.0)``; a constant measurement prints once."""
        med, lo, hi = (x * scale for x in (self.median, self.min, self.max))
        text = f"{num(med, digits)} {unit}".rstrip()
        if num(lo, digits) != num(hi, digits):
            text += f" ({num(lo, digits)}–{num(hi, digits)})"
        return text


def num(value: float, digits: int | None = None) -> str:
    """A readable number: 3 significant digits below 100, thousands separators above."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if digits is not None:
        return f"{value:,.{digits}f}"
    if value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ratio(a: float, b: float) -> str:
    if not b:
        return "n/a"
    r = a / b
    return f"{r:,.0f}×" if r >= 100 else f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def kib(n: float) -> str:
    if n < 1024:
        return f"{num(n)} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.2f} MiB"


# ---- results ------------------------------------------------------------------------------------


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    title: str | None = None

    def add(self, *cells) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        lines = []
        if self.title:
            lines += [f"**{self.title}**", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Section:
    """One benchmark's output: tables for RESULTS.md, notes under them, raw data for JSON."""

    key: str
    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    seconds: float = 0.0

    def markdown(self) -> str:
        parts = [f"## {self.title}", ""]
        if self.intro:
            parts += [self.intro.strip(), ""]
        for table in self.tables:
            parts += [table.markdown(), ""]
        for note in self.notes:
            parts.append(f"- {note}")
        if self.notes:
            parts.append("")
        parts.append(f"_Section run time: {self.seconds:.1f} s._")
        return "\n".join(parts)

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "title": self.title,
            "tables": [{"title": t.title, "columns": t.columns, "rows": t.rows} for t in self.tables],
            "notes": self.notes,
            "data": self.data,
            "seconds": self.seconds,
        }


# ---- meters -------------------------------------------------------------------------------------


@dataclass
class HttpExchange:
    method: str
    path: str
    status: int
    sent: int  # bytes the client sent: request line, headers, body
    received: int  # bytes it got back: status line, headers, body


class HttpMeter:
    """WSGI middleware recording each request's size on the wire (both directions).

    Header bytes are rebuilt from the WSGI environ and the response's header list: the count
    leaves out only the Date and Server headers the HTTP server adds after the app (~70 bytes).
    """

    def __init__(self, app) -> None:
        self.app = app
        self.exchanges: list[HttpExchange] = []
        self._cond = threading.Condition()

    def __call__(self, environ, start_response):
        raw_uri = environ.get("RAW_URI") or environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING")
        if query and "?" not in raw_uri:
            raw_uri += "?" + query
        sent = len(f"{environ['REQUEST_METHOD']} {raw_uri} {environ.get('SERVER_PROTOCOL', 'HTTP/1.1')}\r\n")
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                sent += len(key) - 5 + 2 + len(str(value).encode("latin-1", "replace")) + 2
        for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
            if environ.get(key):
                sent += len(name) + 2 + len(environ[key]) + 2
        sent += 2
        body_length = int(environ.get("CONTENT_LENGTH") or 0)
        sent += body_length
        captured: dict = {}

        def recording_start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, exc_info)

        chunks = list(self.app(environ, recording_start_response))
        status = captured.get("status", "500 Internal Server Error")
        received = len(f"HTTP/1.1 {status}\r\n") + 2 + sum(len(c) for c in chunks)
        received += sum(len(k) + 2 + len(str(v)) + 2 for k, v in captured.get("headers", []))
        exchange = HttpExchange(
            environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), int(status.split()[0]), sent, received
        )
        with self._cond:
            self.exchanges.append(exchange)
            self._cond.notify_all()
        return chunks

    def mark(self) -> int:
        with self._cond:
            return len(self.exchanges)

    def since(self, mark: int) -> list[HttpExchange]:
        with self._cond:
            return self.exchanges[mark:]

    def wait_for(self, mark: int, path: str, count: int, timeout: float = 120.0) -> list[HttpExchange]:
        """Block until `count` requests to `path` have completed since `mark`; those since mark."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for e in self.exchanges[mark:] if e.path == path) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{count} requests to {path} did not complete in {timeout}s")
                self._cond.wait(left)
            return self.exchanges[mark:]


@dataclass
class DynamoCall:
    operation: str
    request_bytes: int
    items: int = 0  # items DynamoDB returned (Item, Items, Responses)


class DynamoMeter:
    """Records every DynamoDB HTTP request a botocore client sends, and the items it got back."""

    def __init__(self, client) -> None:
        self.client = client
        self.calls: list[DynamoCall] = []
        self._lock = threading.Lock()
        self._pending = threading.local()
        client.meta.events.register("before-send.dynamodb", self._sent)
        client.meta.events.register("after-call.dynamodb", self._returned)

    def _sent(self, request, **_):
        target = request.headers.get("X-Amz-Target", b"")
        if isinstance(target, bytes):
            target = target.decode()
        body = request.body or b""
        call = DynamoCall(target.rsplit(".", 1)[-1], len(body))
        with self._lock:
            self.calls.append(call)
        self._pending.call = call

    def _returned(self, parsed, **_):
        call = getattr(self._pending, "call", None)
        if call is None:
            return
        items = len(parsed.get("Items") or [])
        items += 1 if parsed.get("Item") else 0
        items += (
            sum(len(v) for v in (parsed.get("Responses") or {}).values())
            if isinstance(parsed.get("Responses"), dict)
            else 0
        )
        call.items = items
        self._pending.call = None

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def since(self, mark: int) -> list[DynamoCall]:
        with self._lock:
            return list(self.calls[mark:])

    @staticmethod
    def summary(calls: list[DynamoCall]) -> dict:
        return {
            "requests": len(calls),
            "items_read": sum(c.items for c in calls),
            "by_operation": dict(Counter(c.operation for c in calls)),
        }

    def close(self) -> None:
        self.client.meta.events.unregister("before-send.dynamodb", self._sent)
        self.client.meta.events.unregister("after-call.dynamodb", self._returned)


# ---- the local runtime, metered -----------------------------------------------------------------


MOTO_READ_TIMEOUT_S = 120


class BenchRuntime:
    """``make dev``'s runtime in this process, on a free port, with its schedules stopped (a
    scheduled reset must not land inside a measurement) and meters on HTTP and DynamoDB.

    The handlers' DynamoDB client is ``default_store().client``: the meter hooks that client, so
    it counts exactly the requests the service code makes. The environment is restored on close.
    """

    TABLE = "llm-budget-bench"

    def __init__(self) -> None:
        self._saved_env = dict(os.environ)
        # The embedded DynamoDB, an open API (AUTH=1 would put the authorizer in front).
        for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AUTH"):
            os.environ.pop(name, None)
        os.environ["TABLE_NAME"] = self.TABLE
        # The bench measures the service itself: no API keys (the local default).
        os.environ["API_AUTH"] = "off"
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

        from localdev import server, template

        # The functions' environment (Powertools' service name and metrics namespace...) before
        # the layer is imported here: Powertools reads it when Logger and Metrics are created.
        for name, value in template.function_environment(self.TABLE).items():
            os.environ.setdefault(name, value)
        from budget_service.store import base as store_module

        self._store_module = store_module
        store_module.default_store.cache_clear()
        self.runtime = server.LocalRuntime(port=0).start()
        if self.runtime.scheduler is not None:
            self.runtime.scheduler.stop()
        self.runtime.http.RequestHandlerClass = _QuietHandler
        self.http = HttpMeter(self.runtime.http.app)
        self.runtime.http.app = self.http
        self.store = store_module.default_store()
        # The handlers' client, as built (retries, connect timeout), but with a read timeout moto
        # can meet: its Query of a 10,000-user project takes longer than the 5 s the service
        # allows DynamoDB (which answers a 1 MB page in tens of milliseconds).
        import boto3
        from botocore.config import Config

        self.store.client = boto3.client(
            "dynamodb", config=store_module.CLIENT_CONFIG.merge(Config(read_timeout=MOTO_READ_TIMEOUT_S))
        )
        self.dynamo = DynamoMeter(self.store.client)
        self.url = self.runtime.url
        self.dynamodb_url = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
        self.table = os.environ["TABLE_NAME"]

    def client(self):
        """A separate, unmetered DynamoDB client on the embedded server (seeding, inspection)."""
        from localdev.dynamodb import client_for

        return client_for(self.dynamodb_url)

    def close(self) -> None:
        self.dynamo.close()
        self.runtime.stop()
        self._store_module.default_store.cache_clear()
        os.environ.clear()
        os.environ.update(self._saved_env)

    def __enter__(self) -> BenchRuntime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _quiet_handler_class():
    from werkzeug.serving import WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log_request(self, code="-", size="-") -> None:  # no access log during a benchmark
            pass

    return Quiet


_QuietHandler = _quiet_handler_class()


def seed_items(client, table: str, items: list[dict]) -> None:
    """BatchWriteItem `items` (already in DynamoDB JSON) into `table`, 25 at a time."""
    for i in range(0, len(items), 25):
        pending = {table: [{"PutRequest": {"Item": item}} for item in items[i : i + 25]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
