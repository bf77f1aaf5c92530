"""6. Latency of each route through the local server under a bounded concurrent load, and the time
the hot path spends outside its DynamoDB request.

Every route in template.yaml (discovered, so new routes are covered) gets the same request as its
sample event in events/ (method, body, headers), aimed at seeded budgets: each request names its
own user (``/projects/lat/users/u0007``), so a DELETE or a PUT never collides with another, and a
request with an Idempotency-Key gets a fresh one (a charge, never a replay). CONCURRENCY client
threads send REQUESTS requests per route over loopback, stopping early at MAX_SECONDS; latency is
measured by the client, from connect to the last byte of the answer.

For the hot path (routes ending in /cost, /holds, /settle) the handler's own time is split in two
with botocore's event hooks on the handlers' DynamoDB client: the time inside DynamoDB calls
(``before-call`` to ``after-call``: serializing, signing, the round trip to the embedded DynamoDB,
parsing) and everything else (the gateway's event, Powertools' routing and validation, pricing,
the domain, the response).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

from bench.common import BenchRuntime, Section, Table, seed_items

REQUESTS = 200
CONCURRENCY = 4
MAX_SECONDS = 20.0
PROJECT = "lat"
HOT_SUFFIXES = ("/cost", "/holds", "/settle")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


class HandlerClock:
    """Per request (thread): the handler's wall time and the part spent inside DynamoDB calls."""

    def __init__(self, client) -> None:
        self.client = client
        self._local = threading.local()
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self._lock = threading.Lock()
        client.meta.events.register("before-call.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    def _before(self, **_):
        self._local.call_started = time.perf_counter()

    def _after(self, **_):
        started = getattr(self._local, "call_started", None)
        if started is not None:
            self._local.in_dynamodb = getattr(self._local, "in_dynamodb", 0.0) + time.perf_counter() - started
            self._local.call_started = None

    def wrap(self, function_id: str, handler):
        def timed(event, context):
            self._local.in_dynamodb = 0.0
            start = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                total = time.perf_counter() - start
                key = f"{event.get('httpMethod')} {event.get('resource')}"
                with self._lock:
                    self.samples.setdefault(key, []).append((total, self._local.in_dynamodb))

        return timed

    def close(self) -> None:
        self.client.meta.events.unregister("before-call.dynamodb", self._before)
        self.client.meta.events.unregister("after-call.dynamodb", self._after)


def seed(rt: BenchRuntime, users: int, table: str) -> None:
    from budget_service.core.periods import Duration
    from budget_service.core.records import Budget
    from budget_service.store.base import budget_to_item

    now = Decimal(int(time.time()))
    items = []
    for project, names in ((PROJECT, [f"u{i:04d}" for i in range(users)]), ("acme", ["alice", "bob"])):
        for name in names:
            budget = Budget(
                project=project,
                user=name,
                total_budget=Decimal(1000),
                created_at=now,
                updated_at=now,
                duration=Duration.MONTHLY,
            ).with_period_from(now)
            items.append(budget_to_item(budget))
    seed_items(rt.client(), table, items)


def request_for(
    route, sample: dict, index: int, ids: dict | None = None
) -> tuple[str, str, bytes | None, dict]:
    """The sample event's request, aimed at user u<index> of the seeded project; other path ids
    (a hold's) from `ids`, else the sample's."""
    path = sample["path"]
    if "{user}" in route.path or "{project}" in route.path:
        path = route.path.replace("{project}", PROJECT).replace("{user}", f"u{index:04d}")
        for name, value in {**(sample.get("pathParameters") or {}), **(ids or {})}.items():
            path = path.replace("{" + name + "}", str(value))
    query = sample.get("queryStringParameters")
    if query:
        path += "?" + urlencode(query)
    headers = {
        k: v
        for k, v in (sample.get("headers") or {}).items()
        if k.lower() not in ("host", "content-length", "authorization")
    }
    if any(k.lower() == "idempotency-key" for k in headers):
        headers = {
            k: (str(uuid.uuid4()) if k.lower() == "idempotency-key" else v) for k, v in headers.items()
        }
    body = sample.get("body")
    return sample["httpMethod"], path, body.encode() if body else None, headers


def other_ids(route) -> list[str]:
    """Path parameters besides project and user (e.g. hold_id)."""
    import re

    return [n for n in re.findall(r"\{(\w+)\}", route.path) if n not in ("project", "user")]


def create_ids(base_url: str, route, routes, index: int) -> dict:
    """For a route on a thing with its own id (``…/holds/{hold_id}/settle``), create one for user
    u<index> through the collection's POST route and its sample event, and return its ids from
    the answer (``{"hold_id": …}``); {} when there is no such route."""
    ids: dict = {}
    for name in other_ids(route):
        parent = route.path.split("/{" + name + "}", 1)[0]
        creator = next(
            (r for r in routes if r.method == "POST" and r.path == parent and r.event_file.exists()), None
        )
        if creator is None:
            continue
        method, path, body, headers = request_for(
            creator, json.loads(creator.event_file.read_text()), index, ids
        )
        host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            answer = json.loads(conn.getresponse().read() or b"{}")
        finally:
            conn.close()
        if isinstance(answer, dict) and name in answer:
            ids[name] = answer[name]
    return ids


def load(
    base_url: str, requests: list[tuple[str, str, bytes | None, dict]], concurrency: int, max_seconds: float
) -> tuple[list[float], list[int], float]:
    """Send `requests` from `concurrency` threads; (latencies in s, statuses, elapsed s)."""
    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    pending = iter(requests)
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            method, path, body, headers = item
            start = time.perf_counter()
            conn = http.client.HTTPConnection(host, port, timeout=60)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            finally:
                conn.close()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                statuses.append(response.status)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return latencies, statuses, time.perf_counter() - started


def run(rt: BenchRuntime, *, quick: bool = False) -> Section:
    from localdev import template

    count = 8 if quick else REQUESTS
    concurrency = 2 if quick else CONCURRENCY
    section = Section(
        "latency",
        "6. Route latency through the local server (bounded concurrent load), and the hot path"
        " outside DynamoDB",
        intro=(__doc__.split("\n\n", 1)[1].strip() + "\n\n" if __doc__ else "")
        + f"Here: {count} requests per route from {concurrency} threads, at most {MAX_SECONDS:.0f} s"
        " per route. The local server (``make dev``) runs one invocation at a time, like one Lambda"
        " instance without concurrency, with the handlers and the embedded DynamoDB (moto) in this"
        " process: p99 includes waiting for the instance, and absolute times are this machine's and"
        " moto's, not AWS's.",
    )
    table = Table(["route", "function", "requests (status)", "p50", "p99", "max", "requests/s"])
    hot = Table(
        [
            "route",
            "handler p50",
            "inside DynamoDB calls p50",
            "outside DynamoDB p50",
            "outside p99",
            "outside share of the handler (p50)",
        ],
        title="Hot path: the handler's time, inside and outside its DynamoDB request",
    )
    section.tables += [table, hot]
    # A small table of its own (as the cold starts): moto's transactions and Queries take time in
    # proportion to the table and the project, which the earlier sections fill; DynamoDB's do not.
    table_name = f"bench-latency-{uuid.uuid4().hex[:6]}"
    template.create_table(rt.client(), table_name)
    saved_table, rt.store.table_name = rt.store.table_name, table_name
    clock = HandlerClock(rt.store.client)
    patched = []
    # One container per function, as the intro says: the clock wraps each function's first
    # container (its default module), which the runtime's pool would otherwise share with more.
    pool = rt.runtime.invoker.pool if rt.runtime.invoker else None
    saved_max = pool.max_containers if pool else None
    if pool:
        pool.max_containers = 1
    try:
        for function_id in template.functions():
            module = template.load_module(function_id)
            name = template.functions()[function_id].handler.rsplit(".", 1)[1]
            original = getattr(module, name)
            setattr(module, name, clock.wrap(function_id, original))
            patched.append((module, name, original))
        routes = sorted(template.api_routes(), key=lambda r: (r.method == "DELETE", r.path, r.method))
        for route in routes:
            if not route.event_file.exists():
                continue
            sample = json.loads(route.event_file.read_text())
            seed(rt, count + 1, table_name)
            routes_all = template.api_routes()
            requests = [
                request_for(route, sample, i, create_ids(rt.url, route, routes_all, i))
                for i in range(count + 1)
            ]
            load(rt.url, requests[-1:], 1, MAX_SECONDS)  # one warm-up request, not counted (first use)
            requests = requests[:-1]
            latencies, statuses, elapsed = load(rt.url, requests, concurrency, MAX_SECONDS)
            key = f"{route.method} {route.path}"
            codes = {}
            for s in statuses:
                codes[s] = codes.get(s, 0) + 1
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            table.add(
                key,
                route.function_id,
                f"{len(latencies)} ({', '.join(f'{c}×{n}' for c, n in sorted(codes.items()))})",
                f"{p50 * 1000:.1f} ms",
                f"{p99 * 1000:.1f} ms",
                f"{max(latencies) * 1000:.1f} ms",
                f"{len(latencies) / elapsed:,.0f}",
            )
            figures = {
                "function": route.function_id,
                "requests": len(latencies),
                "statuses": codes,
                "p50_s": p50,
                "p99_s": p99,
                "max_s": max(latencies),
                "requests_per_s": len(latencies) / elapsed,
            }
            if route.path.endswith(HOT_SUFFIXES):
                samples = clock.samples.get(key, [])
                totals = [t for t, _ in samples]
                inside = [d for _, d in samples]
                outside = [t - d for t, d in samples]
                hot.add(
                    key,
                    f"{percentile(totals, 50) * 1000:.2f} ms",
                    f"{percentile(inside, 50) * 1000:.2f} ms",
                    f"**{percentile(outside, 50) * 1000:.2f} ms**",
                    f"{percentile(outside, 99) * 1000:.2f} ms",
                    f"{percentile(outside, 50) / percentile(totals, 50):.0%}",
                )
                figures.update(
                    handler_p50_s=percentile(totals, 50),
                    dynamodb_p50_s=percentile(inside, 50),
                    outside_p50_s=percentile(outside, 50),
                    outside_p99_s=percentile(outside, 99),
                )
            section.data[key] = figures
    finally:
        if pool:
            pool.max_containers = saved_max
        for module, name, original in patched:
            setattr(module, name, original)
        clock.close()
        rt.store.table_name = saved_table
    section.notes += [
        "Outside DynamoDB is what the service adds to each charged call on top of the request it"
        " must make; on Lambda it bills as duration (see the cost model), and it is CPU work, so it"
        " shrinks with the memory size (CPU share) the template gives the function. The handler"
        " shares this process's interpreter with the client threads and moto's server threads, so"
        " the tail (p99) of the outside time includes waiting for the GIL; the median is the figure"
        " the cost model uses.",
        "Routes for holds and settles join this table once they are in template.yaml with sample"
        " events (their paths end in /holds and /settle); a route on a thing with its own id"
        " (`…/holds/{hold_id}/settle`) gets a fresh one per request from its collection's POST"
        " route, made before the timed load. One warm-up request per route (first use: a price"
        " table, an encoding, a model's validator) is not counted.",
    ]
    return section
