"""An embedded DynamoDB: moto's server, with requests applied one at a time.

DynamoDB applies each request to an item atomically: a conditional write's check and its write
cannot be split by another request. moto's server runs requests on threads without that
guarantee, so the app is wrapped in a lock; otherwise a concurrency test would test moto.

moto also ignores ``TransactWriteItems``' ``ClientRequestToken``, on which exactly-once writes
rely (botocore sends the same token on each of its retries): ``_ClientRequestTokens`` emulates
DynamoDB's documented idempotency for it (see that class).

Run alone: ``python -m localdev.dynamodb --port 8000 --table budgets`` prints ``READY <url>``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from werkzeug.serving import make_server

TRANSACT_WRITE_ITEMS = "DynamoDB_20120810.TransactWriteItems"
TOKEN_WINDOW_SECONDS = 600.0  # DynamoDB remembers a ClientRequestToken for 10 minutes


class _ClientRequestTokens:
    """DynamoDB's idempotency for ``TransactWriteItems`` with a ``ClientRequestToken``.

    As the TransactWriteItems API reference describes it: a token is remembered for 10 minutes
    after the request that first used it completed; within that window the same token with the
    same request parameters answers the first answer again and changes nothing, and the same
    token with other parameters is refused with ``IdempotentParameterMismatchException`` (HTTP
    400). After the window the token is new again. Only a request that succeeded is remembered
    (the reference promises the replay for a successful call): a cancelled transaction sent
    again with its token is tried again. Parameters are compared as parsed JSON, every member but
    the token itself.

    Not thread-safe on its own: it runs inside ``_OneAtATime``'s lock, so checking a token and
    applying its request are one step. `clock` returns seconds (monotonic); tests pass their own.
    """

    def __init__(self, app, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        # token -> (parameters' digest, expires at, status, headers, body); oldest first.
        self._seen: OrderedDict[str, tuple[str, float, str, list, bytes]] = OrderedDict()

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET") != TRANSACT_WRITE_ITEMS:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            request = json.loads(body)
            token = request.pop("ClientRequestToken", None)
        except (ValueError, AttributeError):
            token = None  # not a JSON object: moto answers it as DynamoDB would
        if not isinstance(token, str):
            return self.app(environ, start_response)
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        now = self.clock()
        while self._seen and next(iter(self._seen.values()))[1] <= now:
            self._seen.popitem(last=False)
        seen = self._seen.get(token)
        if seen is not None:
            if seen[0] != digest:
                return _error(start_response, "IdempotentParameterMismatchException",
                              "ClientRequestToken was used with other parameters")
            _, _, status, headers, answer = seen
            start_response(status, headers)
            return [answer]
        answer_parts: list = []

        def remember(status, headers, exc_info=None):
            answer_parts[:] = [status, list(headers)]
            return start_response(status, headers, exc_info)

        answer = b"".join(self.app(environ, remember))
        if answer_parts and answer_parts[0].startswith("200"):
            self._seen[token] = (digest, self.clock() + TOKEN_WINDOW_SECONDS, *answer_parts, answer)
        return [answer]


def _error(start_response, code: str, message: str) -> list[bytes]:
    """A DynamoDB error answer (HTTP 400), as DynamoDB's JSON protocol writes one."""
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
    start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0"),
                                       ("Content-Length", str(len(body)))])
    return [body.encode()]


def exact_number_arithmetic() -> None:
    """Make moto add and subtract DynamoDB Numbers as DynamoDB does: exactly (38 digits), the
    result written in plain notation.

    moto formats a sum with ``str(Decimal)``, so a balance that returns to zero after 7+ decimal
    places is stored as ``"0E-7"`` (and ``1E-8`` likewise), which its next ``+``/``-`` then reads
    with ``int()`` and fails: every later write to that item is cancelled with a ValueError.
    DynamoDB itself has no such numbers; this patch (idempotent) closes the gap.
    """
    from decimal import Context, Decimal

    from moto.dynamodb.models.dynamo_type import DDBType, DynamoType

    if getattr(DynamoType, "_exact_numbers", False):
        return
    context = Context(prec=38)
    add, sub = DynamoType.__add__, DynamoType.__sub__

    def plain(value: Decimal) -> str:
        return format(value.normalize(context), "f")

    def exact(fallback, operation):
        def apply(self, other):
            if self.type == DDBType.NUMBER and other.type == DDBType.NUMBER:
                result = operation(Decimal(self.value), Decimal(other.value))
                return DynamoType({DDBType.NUMBER: plain(result)})
            return fallback(self, other)

        return apply

    DynamoType.__add__ = exact(add, context.add)
    DynamoType.__sub__ = exact(sub, context.subtract)
    DynamoType._exact_numbers = True


class _OneAtATime:
    def __init__(self, app) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # The body is produced inside the lock too: moto builds it eagerly, but be sure.
            return list(self.app(environ, start_response))


class EmbeddedDynamoDB:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        exact_number_arithmetic()
        app = _OneAtATime(_ClientRequestTokens(DomainDispatcherApplication(create_backend_app)))
        self._server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> EmbeddedDynamoDB:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


def client_for(url: str, config=None):
    """A DynamoDB client for the endpoint at `url` (botocore `config` optional)."""
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        config=config,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--table", help="create this table from template.yaml's definition")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = EmbeddedDynamoDB(args.host, args.port).start()
    if args.table:
        from localdev.template import create_table

        create_table(client_for(server.url), args.table)
    print(f"READY {server.url}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
