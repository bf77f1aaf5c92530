"""A fault-injecting DynamoDB endpoint: an HTTP proxy in front of a DynamoDB endpoint (the
embedded one) that fails chosen requests the ways a network and a busy DynamoDB do.

Rules match the operation (the ``X-Amz-Target`` header: ``PutItem``, ``TransactWriteItems``, ...)
and take effect on the next matching requests:

- ``Fault.LATE``: forward the request (it is applied), then hold the answer until the client has
  given up on it (its read timeout closed the connection) and never send it. The wait is on that
  event, not on a clock, so a test does not depend on how fast the machine is.
- ``Fault.DROP``: forward the request (it is applied), then close the connection unanswered.
- ``Fault.REFUSE``: answer a DynamoDB error (default ``InternalServerError``, HTTP 500) without
  forwarding: nothing is applied, and the client is told so.
- ``Fault.CUT``: close the connection without forwarding: nothing is applied, but to the client
  this looks exactly like ``DROP``.
- ``Fault.DELAY``: forward and answer as usual, but run the rule's ``before`` first (the request
  is held on its way to DynamoDB) and its ``then`` after it was applied (the answer is held):
  hooks that wait on a condition make interleavings happen for sure, whatever the machine's speed.

A rule's ``when`` (a predicate on the request's JSON body) narrows it to chosen requests, e.g. the
TransactWriteItems that moves one user's budget.

Requests are forwarded one at a time, so a retry reaches DynamoDB only after the attempt it
retries was applied, whatever the timing. ``requests`` records every request and its fault.

Tests get one through the ``faulty_dynamodb`` fixture (tests/conftest.py)::

    faulty_dynamodb.add("PutItem", Fault.LATE)            # the next PutItem's answer is late
    faulty_dynamodb.add("DeleteItem", Fault.DROP, times=3)  # the next three are lost
"""

from __future__ import annotations

import enum
import http.client
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


class Fault(enum.Enum):
    LATE = "late"
    DROP = "drop"
    REFUSE = "refuse"
    CUT = "cut"
    DELAY = "delay"

    @property
    def applied(self) -> bool:
        """Whether DynamoDB applies a request that meets this fault."""
        return self in (Fault.LATE, Fault.DROP, Fault.DELAY)


@dataclass
class Rule:
    """Fault the next `times` requests for `operation` ("*": any), after letting `skip` through.

    `times=None` faults every match. REFUSE answers `error_code` with HTTP `status`. `then`, for
    LATE, DROP and DELAY, runs once the request was applied and before its answer is lost (or,
    for DELAY, sent): what happens "meanwhile" (another writer's request, say) happens between an
    attempt and its retry. `before` (any fault that forwards) runs before the request is
    forwarded; other requests pass meanwhile. `when`, given, must accept the request's JSON
    body (a dict) for the rule to match; a request it rejects does not count toward `skip`.
    """

    operation: str
    fault: Fault
    times: int | None = 1
    skip: int = 0
    error_code: str = "InternalServerError"
    status: int = 500
    then: Callable[[], object] | None = None
    before: Callable[[], object] | None = None
    when: Callable[[dict], bool] | None = None
    matched: int = 0

    def take(self, operation: str, body: dict | None = None) -> bool:
        if self.operation not in ("*", operation):
            return False
        if self.when is not None and not self.when(body or {}):
            return False
        self.matched += 1
        if self.matched <= self.skip:
            return False
        return self.times is None or self.matched - self.skip <= self.times


@dataclass(frozen=True)
class Seen:
    """One request the proxy received: its operation and the fault it met (None: passed)."""

    operation: str
    fault: Fault | None


class FaultyDynamoDB:
    """The proxy. `upstream` is the DynamoDB endpoint URL; `url` is the proxy's, for clients.

    `max_hold_s` bounds how long a LATE answer waits for the client to give up (then the answer
    is sent after all), so a client without a read timeout cannot hang a test forever.
    """

    def __init__(
        self, upstream: str, host: str = "127.0.0.1", port: int = 0, max_hold_s: float = 60.0
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.max_hold_s = max_hold_s
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self.errors: list[Exception] = []  # what rules' `before` and `then` raised
        self._lock = threading.Lock()  # rules and requests
        self._forward_lock = threading.Lock()  # one request at DynamoDB at a time
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultyDynamoDB:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def add(
        self,
        operation: str,
        fault: Fault,
        *,
        times: int | None = 1,
        skip: int = 0,
        error_code: str = "InternalServerError",
        status: int = 500,
        then: Callable[[], object] | None = None,
        before: Callable[[], object] | None = None,
        when: Callable[[dict], bool] | None = None,
    ) -> Rule:
        """Add a rule (see Rule); rules are tried in the order added."""
        rule = Rule(operation, fault, times, skip, error_code, status, then, before, when)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule (the request log stays)."""
        with self._lock:
            self.rules.clear()

    def faults(self, operation: str) -> list[Fault | None]:
        """The fault each request for `operation` met so far, in order (None: passed)."""
        with self._lock:
            return [seen.fault for seen in self.requests if seen.operation == operation]

    def _fault_for(self, operation: str, body: dict | None = None) -> Rule | None:
        with self._lock:
            rule = next((r for r in self.rules if r.take(operation, body)), None)
            self.requests.append(Seen(operation, rule.fault if rule else None))
            return rule

    def _forward(self, method: str, path: str, headers: dict, body: bytes):
        with self._forward_lock:
            conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.getheaders(), response.read()
            finally:
                conn.close()


def _json(body: bytes) -> dict | None:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _run_hook(proxy: FaultyDynamoDB, hook: Callable[[], object]) -> None:
    try:
        hook()
    except Exception as exc:  # noqa: BLE001 - kept for the test to see
        proxy.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # An answer is written as headers, then body: with Nagle's algorithm on, the body waits for
    # the client's delayed ACK of the headers (~40 ms per request).
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        proxy: FaultyDynamoDB = self.server.proxy  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        operation = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        rule = proxy._fault_for(operation, _json(body))
        fault = rule.fault if rule else None
        if fault is Fault.CUT:
            self.close_connection = True
            return
        if fault is Fault.REFUSE:
            assert rule is not None
            error = json.dumps(
                {
                    "__type": f"com.amazonaws.dynamodb.v20120810#{rule.error_code}",
                    "message": f"injected {rule.error_code}",
                }
            ).encode()
            self._answer(rule.status, [("Content-Type", "application/x-amz-json-1.0")], error)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if rule is not None and rule.before is not None:
            _run_hook(proxy, rule.before)
        status, answer_headers, answer = proxy._forward("POST", self.path, headers, body)
        if rule is not None and rule.then is not None:
            _run_hook(proxy, rule.then)
        if fault is Fault.DROP:
            self.close_connection = True
            return
        if fault is Fault.LATE and self._wait_until_client_gives_up(proxy):
            self.close_connection = True
            return
        self._answer(status, answer_headers, answer)

    def _answer(self, status: int, headers, body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _wait_until_client_gives_up(self, proxy: FaultyDynamoDB) -> bool:
        """Block until the client closes its connection (True) or, after max_hold_s or when the
        proxy stops, give up waiting (False: the answer is sent after all)."""
        deadline = time.monotonic() + proxy.max_hold_s
        while time.monotonic() < deadline and not proxy._stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if not readable:
                continue
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True
        return False
