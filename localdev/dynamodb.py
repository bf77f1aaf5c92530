"""An embedded DynamoDB: moto's server, with requests applied one at a time.

DynamoDB applies each request to an item atomically: a conditional write's check and its write
cannot be split by another request. moto's server runs requests on threads without that
guarantee, so the app is wrapped in a lock; otherwise a concurrency test would test moto.

Run alone: ``python -m localdev.dynamodb --port 8000 --table budgets`` prints ``READY <url>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from werkzeug.serving import make_server


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

        app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
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


def client_for(url: str):
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=url,
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
