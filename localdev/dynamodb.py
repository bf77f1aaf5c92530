"""An embedded DynamoDB: moto's server, with requests applied one at a time.

DynamoDB applies each request to an item atomically: a conditional write's check and its write
cannot be split by another request. moto's server runs requests on threads without that
guarantee, so the app is wrapped in a lock; otherwise a concurrency test would test moto.

moto backs up every table a transaction writes with a deepcopy of the whole table, so each
transaction costs time in proportion to the table (50 ms at 2,000 items); since requests here run
one at a time, backing up the items the transaction names is enough (``back_up_items_only``).

moto also ignores ``TransactWriteItems``' ``ClientRequestToken``, on which exactly-once writes
rely (botocore sends the same token on each of its retries): ``ClientRequestTokens`` emulates
DynamoDB's documented idempotency for it (see that class).

moto adds numbers with Python's 28 digits and stores any result; ``exact_numbers`` makes it add
exactly and refuse a result DynamoDB could not store (over 38 significant digits), with
DynamoDB's error, so the tests see what a sum past the limit would do on AWS.

DynamoDB's contention is modelled in front of moto (localdev/contention.py, on by default):
transaction conflicts with a 10 ms in-flight window and 1,000 WCU/s per partition key. The
environment turns it off or tunes it: ``LOCAL_DYNAMODB_CONFLICTS=0`` (off),
``LOCAL_DYNAMODB_CONFLICT_WINDOW_MS`` and ``LOCAL_DYNAMODB_PARTITION_WCU`` (0: that part off).
``GET /_local/contention`` on the server shows its counters; ``POST`` resets or retunes them.

Run alone: ``python -m localdev.dynamodb --port 8000 --table budgets`` prints ``READY <url>``.
"""

from __future__ import annotations

import argparse
import copy
import functools
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

from localdev.contention import TARGET_PREFIX, ContentionModel

TRANSACT_WRITE_ITEMS = "DynamoDB_20120810.TransactWriteItems"
TOKEN_WINDOW_SECONDS = 600.0  # DynamoDB remembers a ClientRequestToken for 10 minutes
CONTENTION_PATH = "/_local/contention"


class ClientRequestTokens:
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

    def knows(self, target: str, request: dict | None) -> bool:
        """Whether `request` (parsed JSON of a `target` call) carries a token whose transaction
        was applied already: its answer is replayed, so it names no item in flight again."""
        if target != TRANSACT_WRITE_ITEMS or not isinstance(request, dict):
            return False
        token = request.get("ClientRequestToken")
        return isinstance(token, str) and token in self._seen

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


# DynamoDB's Number: at most 38 significant digits, magnitude from 1E-130 to below 1E+126
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html).
NUMBER_DIGITS = 38
NUMBER_MAX_EXPONENT = 125  # adjusted exponent: the largest magnitude is 9.99...9E+125
NUMBER_MIN_EXPONENT = -130
# What DynamoDB answers when `SET a = a + :b`, `a - :b` or `ADD a :b` gives a result it cannot
# store: too many significant digits, too large or too small alike (observed against DynamoDB by
# ScyllaDB's Alternator tests, test/alternator/test_number.py: "1e50 + 1" gets this message).
# Botocore's service model lists the same text among TransactionCanceledException's
# ValidationError reasons: inside a TransactWriteItems the item's reason says it.
NUMBER_OVERFLOW = "Number overflow. Attempting to store a number with magnitude larger than supported range"


def storable(number) -> bool:
    """Whether DynamoDB can store this Decimal as a Number (see NUMBER_DIGITS)."""
    if not number.is_finite():
        return False
    if not number:
        return True
    significant = "".join(map(str, number.as_tuple().digits)).strip("0")
    return (
        len(significant) <= NUMBER_DIGITS and NUMBER_MIN_EXPONENT <= number.adjusted() <= NUMBER_MAX_EXPONENT
    )


class _NumberOverflow(Exception):
    """An arithmetic result DynamoDB could not store; the UpdateItem wrapper answers it."""


class ValidationError(Exception):
    """A TransactWriteItems item's failure whose cancellation reason is DynamoDB's
    ``ValidationError``: moto names each reason after the exception its item raised."""


_transaction = threading.local()  # depth: > 0 while this thread runs a TransactWriteItems


def exact_numbers() -> None:
    """Make moto's number arithmetic (``SET x = x + :d``, ``x - :d``, ``ADD``) DynamoDB's: any
    number notation in (moto parses "1E+2" or "1E-7" only as plain digits, and fails), exact
    results in plain notation out, and a result DynamoDB could not store (over 38 significant
    digits, or out of its magnitude range) refused as DynamoDB refuses it: an UpdateItem gets a
    ValidationException with NUMBER_OVERFLOW and writes nothing; inside a TransactWriteItems the
    item's cancellation reason is ``ValidationError`` with that message and the transaction
    writes nothing (moto alone rounded the sum to 28 digits and stored it). Idempotent; the
    embedded DynamoDB and the tests' in-process moto both call it."""
    from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow

    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DDBType, DynamoType

    if getattr(DynamoType, "_exact_numbers", False):
        return
    # Operands DynamoDB accepts sum exactly in far fewer digits than this; a rounded (Inexact)
    # result had more than 38 anyway. The precision bounds the work a wild operand can cause.
    exact = Context(prec=NUMBER_DIGITS * 10, traps=[Inexact, InvalidOperation, Overflow])
    add, sub = DynamoType.__add__, DynamoType.__sub__

    def arithmetic(original, operation):
        def apply(self, other):
            if self.type == DDBType.NUMBER and other.type == DDBType.NUMBER:
                try:
                    result = operation(exact, Decimal(self.value), Decimal(other.value))
                except (Inexact, InvalidOperation, Overflow):
                    raise _NumberOverflow(NUMBER_OVERFLOW) from None
                if not storable(result):
                    raise _NumberOverflow(NUMBER_OVERFLOW)
                # As DynamoDB keeps numbers: no trailing zeros ("0", never "0E-7" or "0.00").
                return DynamoType({DDBType.NUMBER: format(result.normalize(exact), "f")})
            return original(self, other)

        return apply

    DynamoType.__add__ = arithmetic(add, Context.add)  # type: ignore[method-assign]
    DynamoType.__sub__ = arithmetic(sub, Context.subtract)  # type: ignore[method-assign]

    update_item = DynamoDBBackend.update_item

    @functools.wraps(update_item)
    def update_item_or_nothing(self, table_name, key, *args, **kwargs):
        # moto applies an update's actions to the stored item in place: an ADD that overflows
        # after a SET has run would leave the SET applied. DynamoDB writes nothing.
        slot = _slot_of(self, table_name, key)
        before = copy.deepcopy(slot[0].get_item(slot[1], slot[2])) if slot else None
        try:
            return update_item(self, table_name, key, *args, **kwargs)
        except _NumberOverflow as exc:
            if slot:
                table, hash_key, range_key = slot
                _restore(table, hash_key, range_key, before)
            if getattr(_transaction, "depth", 0):
                raise ValidationError(str(exc)) from None
            raise MockValidationException(str(exc)) from None

    transact_write_items = DynamoDBBackend.transact_write_items

    @functools.wraps(transact_write_items)
    def transact_write_items_marked(self, transact_items):
        _transaction.depth = getattr(_transaction, "depth", 0) + 1
        try:
            return transact_write_items(self, transact_items)
        finally:
            _transaction.depth -= 1

    DynamoDBBackend.update_item = update_item_or_nothing  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = transact_write_items_marked  # type: ignore[method-assign]
    DynamoType._exact_numbers = True  # type: ignore[attr-defined]


def _slot_of(backend, table_name: str, key: dict):
    """(table, hash key, range key) of the item `key` names, or None when moto will refuse the
    request itself (no such table, a key that does not fit the schema)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    table = backend.tables.get(table_name)
    if table is None or not isinstance(key, dict) or table.hash_key_attr not in key:
        return None
    if table.range_key_attr is not None and table.range_key_attr not in key:
        return None
    hash_key = DynamoType(key[table.hash_key_attr])
    range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    return table, hash_key, range_key


def _restore(table, hash_key, range_key, item) -> None:
    """Put `item` (None: no item) back where moto keeps the item with these keys:
    ``items[hash]`` (no range key) or ``items[hash][range]``."""
    slot, name = (table.items, hash_key) if range_key is None else (table.items[hash_key], range_key)
    if item is None:
        slot.pop(name, None)
    else:
        slot[name] = item


def back_up_items_only() -> None:
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
                _restore(table, hash_key, range_key, item)
            for shard, length in streams.values():
                del shard.items[length:]
            raise

    transact_write_items.backs_up_items_only = True  # type: ignore[attr-defined]
    models.copy = _TablesNotCopied  # type: ignore[assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


class _OneAtATime:
    """Applies requests one at a time, with DynamoDB's contention (localdev.contention) in front:
    a request the model refuses is answered with DynamoDB's error and not applied; a transaction
    it admits is applied inside the lock, and its answer waits out the in-flight window outside
    it, so other requests run (and conflict) meanwhile.

    ``GET /_local/contention`` answers the model's counters (``{"enabled": false}`` without a
    model); ``POST /_local/contention`` with ``{"reset": true}``, ``{"conflict_window_ms": n}``
    or ``{"partition_wcu": n}`` resets them or changes the settings (no model: 409).
    """

    def __init__(self, app, model: ContentionModel | None = None) -> None:
        self.app = app
        self.model = model
        self.lock = threading.Lock()
        # DynamoDB answers a retry of a transaction it applied (same ClientRequestToken) with
        # that transaction's outcome, never with a conflict against itself: such a retry skips
        # the contention check and is replayed by the tokens' emulation.
        self.tokens = app if isinstance(app, ClientRequestTokens) else None

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(CONTENTION_PATH):
            return self.local_route(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET") or ""
        request = None
        if self.model is not None and target.startswith(TARGET_PREFIX):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            try:
                request = json.loads(body)
            except ValueError:
                request = None  # moto answers it as DynamoDB would
        admission = None
        with self.lock:
            replay = self.tokens is not None and self.tokens.knows(target, request)
            if self.model is not None and request is not None and not replay:
                refusal, admission = self.model.admit(target[len(TARGET_PREFIX) :], request)
                if refusal is not None:
                    return _answer(start_response, refusal.payload())
            # The body is produced inside the lock too: moto builds it eagerly, but be sure.
            answer = list(self.app(environ, start_response))
        if self.model is not None:
            self.model.finish(admission)  # headers go out with the body, after the window
        return answer

    def local_route(self, environ, start_response):
        model = self.model
        if environ.get("REQUEST_METHOD") == "POST":
            if model is None:
                return _json(start_response, {"enabled": False}, "409 Conflict")
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                change = json.loads(environ["wsgi.input"].read(length) or b"{}")
                window_ms = change.get("conflict_window_ms")
                wcu = change.get("partition_wcu")
                model.configure(
                    None if window_ms is None else float(window_ms) / 1000,
                    None if wcu is None else float(wcu),
                )
            except (ValueError, TypeError, AttributeError) as exc:
                return _json(start_response, {"error": str(exc)}, "400 Bad Request")
            if change.get("reset"):
                model.reset_stats()
        return _json(start_response, {"enabled": True, **model.stats()} if model else {"enabled": False})


def _answer(start_response, body: bytes) -> list[bytes]:
    start_response(
        "400 Bad Request",
        [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _json(start_response, payload: dict, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class EmbeddedDynamoDB:
    """moto's server on a thread, with requests applied one at a time and DynamoDB's contention
    (`contention`: a localdev.contention.ContentionModel, None: none; by default the one the
    environment asks for, see ContentionModel.from_environ)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, contention: ContentionModel | None | str = "environ"
    ) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        exact_numbers()
        back_up_items_only()
        self.contention: ContentionModel | None = (
            ContentionModel.from_environ() if isinstance(contention, str) else contention
        )
        app = _OneAtATime(
            ClientRequestTokens(DomainDispatcherApplication(create_backend_app)), self.contention
        )
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
        self._server.server_close()
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
