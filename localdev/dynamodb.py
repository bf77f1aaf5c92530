"""An embedded DynamoDB: moto's server, with requests applied one at a time.

DynamoDB applies each request to an item atomically: a conditional write's check and its write
cannot be split by another request. moto's server runs requests on threads without that
guarantee, so the app is wrapped in a lock; otherwise a concurrency test would test moto.

moto backs up every table a transaction writes with a deepcopy of the whole table, so each
transaction costs time in proportion to the table (50 ms at 2,000 items); since requests here run
one at a time, backing up the items the transaction names is enough (``_back_up_items_only``).

moto also ignores ``TransactWriteItems``' ``ClientRequestToken``, on which exactly-once writes
rely (botocore sends the same token on each of its retries): ``_ClientRequestTokens`` emulates
DynamoDB's documented idempotency for it (see that class).

Run alone: ``python -m localdev.dynamodb --port 8000 --table budgets`` prints ``READY <url>``.
"""

from __future__ import annotations

import argparse
import copy
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
                return _error(
                    start_response,
                    "IdempotentParameterMismatchException",
                    "ClientRequestToken was used with other parameters",
                )
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
    start_response(
        "400 Bad Request",
        [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body)))],
    )
    return [body.encode()]


def exact_numbers() -> None:
    """Make moto's number arithmetic (``SET x = x + :d``, ``ADD``) DynamoDB's: any number notation
    in (moto parses "1E+2" or "1E-7" only as plain digits, and fails), 38 significant digits (not
    Python's default 28), and plain notation out. Idempotent; the embedded DynamoDB and the
    tests' in-process moto both call it."""
    from decimal import Context, Decimal

    from moto.dynamodb.models.dynamo_type import DDBType, DynamoType

    if getattr(DynamoType, "_exact_numbers", False):
        return
    context = Context(prec=38)
    add, sub = DynamoType.__add__, DynamoType.__sub__

    def arithmetic(original, operation):
        def apply(self, other):
            if self.type == DDBType.NUMBER and other.type == DDBType.NUMBER:
                result = operation(Decimal(self.value), Decimal(other.value))
                return DynamoType({DDBType.NUMBER: format(result, "f")})
            return original(self, other)

        return apply

    DynamoType.__add__ = arithmetic(add, context.add)  # type: ignore[method-assign]
    DynamoType.__sub__ = arithmetic(sub, context.subtract)  # type: ignore[method-assign]
    DynamoType._exact_numbers = True  # type: ignore[attr-defined]


def _back_up_items_only() -> None:
    """Make moto's TransactWriteItems back up only the items it names, not whole tables.

    moto's ``transact_write_items`` deep-copies each table it writes before applying the
    actions, and on a cancelled transaction puts the copies back. Here ``copy.deepcopy`` of a
    Table in that module hands back the table itself (so its rollback is a no-op), and the
    wrapper backs up each named item (and the table's stream length) and restores them when the
    transaction fails. Sound only when no other request runs during a transaction, which
    ``_OneAtATime`` ensures. Idempotent.
    """
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend, Table
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = DynamoDBBackend.transact_write_items
    if getattr(original, "backs_up_items_only", False):
        return

    class _TablesNotCopied:
        @staticmethod
        def deepcopy(value, memo=None):
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    def transact_write_items(self, transact_items):
        backups = []  # (table, hash key, range key, a copy of the item or None)
        streams = {}  # table name -> (its stream shard, its length before)
        for action in transact_items:
            for op in action.values() if isinstance(action, dict) else ():
                table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
                key = (op.get("Key") or op.get("Item") or {}) if table is not None else {}
                if table is None or table.hash_key_attr not in key:
                    continue  # moto answers the invalid request, having written nothing
                if table.range_key_attr is not None and table.range_key_attr not in key:
                    continue
                hash_key = DynamoType(key[table.hash_key_attr])
                range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
                current = table.get_item(hash_key, range_key)
                backups.append((table, hash_key, range_key, copy.deepcopy(current)))
                if table.stream_shard is not None and table.name not in streams:
                    streams[table.name] = (table.stream_shard, len(table.stream_shard.items))
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(backups):
                # Where moto keeps the item: items[hash] (no range key) or items[hash][range].
                slot, name = (
                    (table.items, hash_key) if range_key is None else (table.items[hash_key], range_key)
                )
                if item is None:
                    slot.pop(name, None)
                else:
                    slot[name] = item
            for shard, length in streams.values():
                del shard.items[length:]
            raise

    transact_write_items.backs_up_items_only = True  # type: ignore[attr-defined]
    models.copy = _TablesNotCopied  # type: ignore[assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


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

        exact_numbers()
        _back_up_items_only()
        app = _OneAtATime(_ClientRequestTokens(DomainDispatcherApplication(create_backend_app)))
        self._server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.server_port}"

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
