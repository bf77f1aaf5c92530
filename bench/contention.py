"""11. Contention: admitted calls per second, latency and errors against concurrency, under
DynamoDB's conflict model, for the one-item level design beside the escrow slices; then a model of
the same at AWS's limits (bench/contention_model.py).

Measured here: the service's own handlers, invoked in this process from N threads, each call in
a container of its own (localdev.containers.ContainerPool, as tests/conftest.py's ``Api`` does),
against the embedded DynamoDB (moto) in a process of its own behind localdev/contention.py's
model: a transaction keeps the items it names in flight for the window (10 ms), and another
request naming one of them is refused as DynamoDB refuses it (a cancellation with reason
``TransactionConflict``, or ``TransactionConflictException``); each partition key takes 1,000
WCU/s. A **call** is a hold (``POST …/holds``, 0.05 USD) and its settle (0.013 USD), as an LLM
gateway makes them around one model call. Three workloads, each on a project of its own per design:

* **users only**: 100 users of a project with no project or team cap (each charge proves the
  levels absent with a ConditionCheck of one slice);
* **user + team + project caps**: the same 100 users in a team, with a team and a project cap
  large enough never to refuse (so every charge moves the user, one team slice and one project
  slice);
* **one hot user**: every thread charges the same user (an agent running its calls in
  parallel), with the team and project caps.

The **old design** is ``LEVEL_SLICES=1`` (a level's counters on one item: every charge of the
project names it); the **new** is the default, 8 slices. Both run in the same process, in turns
(old, new; new, old in the next round), on the same DynamoDB.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bench.common import ROOT, Section, Table, num

WINDOW_MS = 10
CONCURRENCY = (1, 4, 16, 64)
DESIGNS = {"old": 1, "new": 8}  # LEVEL_SLICES
WORKLOADS = {
    "users": "users only (no level caps)",
    "caps": "user + team + project caps",
    "hot_user": "one hot user (+ team and project caps)",
}
USERS = 100
ROUNDS = 3
SECONDS = 2.0  # each measurement: threads start calls for this long, then finish the one they run
HOLD = 0.05
SETTLE = 0.013
HOLDS = "/projects/{project}/users/{user}/holds"
SETTLE_ROUTE = "/projects/{project}/users/{user}/holds/{hold_id}/settle"
USER = "/projects/{project}/users/{user}"
PROJECT = "/projects/{project}/budget"
TEAM = "/projects/{project}/teams/{team}"
TABLE = "llm-budget-bench-contention"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


class Service:
    """The template's handlers in this process, each request in a container of its own, on an
    embedded DynamoDB in a child process with the contention model (window `window_ms`,
    1,000 WCU/s per partition key). The environment and the store's client settings are
    restored on close."""

    def __init__(self, window_ms: float = WINDOW_MS) -> None:
        self._saved_env = dict(os.environ)
        env = dict(
            os.environ,
            LOCAL_DYNAMODB_CONFLICTS="1",
            LOCAL_DYNAMODB_CONFLICT_WINDOW_MS=str(window_ms),
            LOCAL_DYNAMODB_PARTITION_WCU="1000",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localdev.dynamodb", "--table", TABLE],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"the embedded DynamoDB did not start: {line!r}")
        self.url = line.split()[1]

        from localdev import template

        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AUTH", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(template.function_environment(TABLE))
        os.environ.update(
            TABLE_NAME=TABLE,
            AWS_ENDPOINT_URL_DYNAMODB=self.url,
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
            API_AUTH="off",
            POWERTOOLS_TRACE_DISABLED="true",
            POWERTOOLS_METRICS_DISABLED="true",
        )
        from botocore.config import Config

        from budget_service.store import base as store_module
        from localdev.containers import ContainerPool

        self._store_module = store_module
        self._saved_config = store_module.CLIENT_CONFIG
        # One client serves every container here (on Lambda each has its own): connections for
        # all of them, and a read timeout no queue on this 2-core machine reaches (the embedded
        # DynamoDB applies requests one at a time).
        store_module.CLIENT_CONFIG = store_module.CLIENT_CONFIG.merge(
            Config(read_timeout=120, max_pool_connections=max(CONCURRENCY) * 2)
        )
        store_module.default_store.cache_clear()
        self.pool = ContainerPool(max_containers=None)
        self.routes = {(r.method, r.path): r for r in template.api_routes()}
        self._template = template

    def call(self, method: str, resource: str, params: dict, body: dict | None = None) -> tuple[int, dict]:
        """One API request through a container of its function: (status, JSON answer)."""
        from localdev.events import api_gateway_event

        route = self.routes[(method, resource)]
        event = api_gateway_event(method, resource, params, body=body)
        # CPU time, not the wall clock, for the handler's remaining time: queueing for this
        # machine's two cores is not Lambda's (each function there has its own CPU).
        context = self._template.lambda_context(route.function_id, clock=time.thread_time)
        answer = self.pool.invoke(route.function_id, event, context)
        status = int(answer["statusCode"])  # type: ignore[index]
        text = answer.get("body") or ""  # type: ignore[union-attr]
        try:
            return status, json.loads(text) if text else {}
        except ValueError:
            return status, {}

    def contention(self, reset: bool = False) -> dict:
        """The model's counters (localdev.dynamodb's ``/_local/contention``); `reset` zeroes them."""
        url = f"{self.url}/_local/contention"
        request = (
            urllib.request.Request(url, data=b'{"reset": true}', method="POST")
            if reset
            else urllib.request.Request(url)
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
            return json.loads(answer.read())

    def close(self) -> None:
        self._store_module.CLIENT_CONFIG = self._saved_config
        self._store_module.default_store.cache_clear()
        os.environ.clear()
        os.environ.update(self._saved_env)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def level_slices(count: int) -> Iterator[None]:
    """``LEVEL_SLICES`` set to `count` for the `with` (the design a level is dealt and charged in)."""
    before = os.environ.get("LEVEL_SLICES")
    os.environ["LEVEL_SLICES"] = str(count)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LEVEL_SLICES", None)
        else:
            os.environ["LEVEL_SLICES"] = before


def _ok(status: int, *allowed: int) -> None:
    if status not in allowed:
        raise RuntimeError(f"setting up the contention bench: HTTP {status}")


def seed(svc: Service, workload: str, slices: int, users: int) -> tuple[str, list[str]]:
    """A project of its own for `workload` under the design with `slices`: its users (one for
    the hot user), in a team with team and project caps unless `workload` is users only."""
    project = f"bench-{workload.replace('_', '-')}-{slices}-{uuid.uuid4().hex[:6]}"
    names = ["agent"] if workload == "hot_user" else [f"u{i:03d}" for i in range(users)]
    with level_slices(slices):
        body: dict = {"total_budget": 1_000_000}
        if workload != "users":
            _ok(svc.call("PUT", PROJECT, {"project": project}, {"total_budget": 10_000_000})[0], 200, 201)
            _ok(
                svc.call("PUT", TEAM, {"project": project, "team": "t"}, {"total_budget": 10_000_000})[0],
                200,
                201,
            )
            body["team"] = "t"
        for name in names:
            _ok(svc.call("PUT", USER, {"project": project, "user": name}, body)[0], 201)
    return project, names


def one_call(svc: Service, project: str, user: str) -> tuple[int, int | None]:
    """A hold and its settle: the two statuses (None: no settle, the hold was not made)."""
    who = {"project": project, "user": user}
    status, held = svc.call("POST", HOLDS, who, {"amount": HOLD})
    if status != 201:
        return status, None
    settled, _ = svc.call(
        "POST", SETTLE_ROUTE, {**who, "hold_id": held["hold_id"]}, {"model": "m", "cost": SETTLE}
    )
    return status, settled


def warm_up(svc: Service, project: str, users: list[str], threads: int = 8) -> None:
    """One call for each of `users`, from `threads` threads (not timed)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        for statuses in pool.map(lambda user: one_call(svc, project, user), users):
            if statuses != (201, 200):
                raise RuntimeError(f"warming up the contention bench: {statuses}")


def measure(svc: Service, project: str, users: list[str], threads: int, seconds: float) -> dict:
    """`threads` threads call (hold + settle) back to back for `seconds`, each finishing the call
    it is in; calls go round the users, each thread from its own offset. Figures of the run."""
    barrier = threading.Barrier(threads + 1)
    records: list[tuple[float, tuple[int, int | None]]] = []
    lock = threading.Lock()
    ends: list[float] = []
    deadline = [0.0]

    def worker(w: int) -> None:
        mine = []
        barrier.wait()
        k = 0
        while time.perf_counter() < deadline[0]:
            user = users[(w + k * threads) % len(users)]
            t0 = time.perf_counter()
            statuses = one_call(svc, project, user)
            mine.append((time.perf_counter() - t0, statuses))
            k += 1
        with lock:
            records.extend(mine)
            ends.append(time.perf_counter())

    pool = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(threads)]
    for t in pool:
        t.start()
    svc.contention(reset=True)
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for t in pool:
        t.join(timeout=600)
    if any(t.is_alive() for t in pool):
        raise RuntimeError("a contention bench thread did not finish")
    wall = max(ends) - started
    model = svc.contention()
    admitted = sum(1 for _, s in records if s == (201, 200))
    errors = sum(1 for _, s in records if any(x is not None and not (200 <= x < 300 or x == 402) for x in s))
    statuses = Counter(x for _, s in records for x in s if x is not None)
    latencies = [t for t, _ in records]
    return {
        "calls": len(records),
        "admitted": admitted,
        "seconds": wall,
        "per_second": admitted / wall,
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "error_rate": errors / len(records),
        "statuses": dict(sorted(statuses.items())),
        "conflicts": model.get("conflicts", 0),
        "throttles": model.get("throttles", 0),
        "transactions": model.get("transactions", 0),
    }


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def run(*, quick: bool = False, progress: Callable[[str], None] | None = None) -> Section:
    """The section: the local measurement, then the model at AWS's limits."""
    from bench import contention_model

    say = progress or (lambda _: None)
    concurrency = (1, 4) if quick else CONCURRENCY
    rounds = 1 if quick else ROUNDS
    seconds = 0.2 if quick else SECONDS
    users = 4 if quick else USERS
    section = Section(
        "contention",
        "11. Contention: admitted calls per second against concurrency, old level design beside escrow slices",
        intro=__doc__.split("\n\n", 1)[1].strip()
        + f"\n\nEach of {rounds} round(s) runs every workload at every concurrency, each design"
        f" for {seconds:g} s (threads start calls until then and finish the one they are in);"
        " figures are medians over the rounds (min–max for calls per second). **Calls per"
        " second** counts admitted calls (hold 201, settle 200) over the wall time until the"
        " last thread finished. **Error rate**: calls with any answer that is not 2xx or an"
        " expected 402. Latency is one call's, hold and settle.",
    )
    data: dict = {"window_ms": WINDOW_MS, "rounds": rounds, "seconds": seconds, "users": users, "runs": {}}
    runs: dict[tuple[str, str, int], list[dict]] = {}
    with Service(WINDOW_MS) as svc:
        projects = {}
        for workload in WORKLOADS:
            for design, slices in DESIGNS.items():
                projects[workload, design] = seed(svc, workload, slices, users)
        say("seeded")
        # Before anything is timed: every container the largest run needs is loaded, and each
        # user's first charge has taught the process its levels (a first charge may take two
        # more attempts to learn them, each writing nothing; see store.levels.hint).
        with level_slices(DESIGNS["new"]):
            measure(svc, *projects["users", "new"], threads=max(concurrency), seconds=min(seconds, 0.5))
        for (workload, design), (project, names) in projects.items():
            if workload != "users":
                with level_slices(DESIGNS[design]):
                    warm_up(svc, project, names)
        for r in range(rounds):
            order = list(DESIGNS) if r % 2 == 0 else list(reversed(DESIGNS))
            for workload in WORKLOADS:
                for threads in concurrency:
                    for design in order:
                        with level_slices(DESIGNS[design]):
                            figures = measure(
                                svc, *projects[workload, design], threads=threads, seconds=seconds
                            )
                        runs.setdefault((workload, design, threads), []).append(figures)
                say(f"round {r + 1}/{rounds}: {workload} done")

    table = Table(
        [
            "workload",
            "containers",
            "old: calls/s",
            "new: calls/s",
            "new/old",
            "old: p50 / p99",
            "new: p50 / p99",
            "old: errors",
            "new: errors",
            "old: conflicts per call",
            "new: conflicts per call",
        ],
        title=f"Under the conflict model ({WINDOW_MS} ms in flight), medians over {rounds} round(s)",
    )
    for workload, label in WORKLOADS.items():
        for threads in concurrency:
            row: dict[str, dict] = {}
            for design in DESIGNS:
                rs = runs[workload, design, threads]
                row[design] = {
                    "per_second": _median(rs, "per_second"),
                    "per_second_min": min(r["per_second"] for r in rs),
                    "per_second_max": max(r["per_second"] for r in rs),
                    "p50_s": _median(rs, "p50_s"),
                    "p99_s": _median(rs, "p99_s"),
                    "error_rate": _median(rs, "error_rate"),
                    "errors_max": max(r["error_rate"] for r in rs),
                    "conflicts_per_call": statistics.median(r["conflicts"] / max(1, r["calls"]) for r in rs),
                    "throttles": sum(r["throttles"] for r in rs),
                    "calls": sum(r["calls"] for r in rs),
                    "statuses": dict(sum((Counter(r["statuses"]) for r in rs), Counter())),
                }
            old, new = row["old"], row["new"]
            data["runs"][f"{workload}/{threads}"] = {
                **row,
                "new_over_old": new["per_second"] / old["per_second"],
            }

            def rate(d: dict) -> str:
                text = f"{num(d['per_second'])}"
                if quick or d["per_second_min"] == d["per_second_max"]:
                    return text
                return f"{text} ({num(d['per_second_min'])}–{num(d['per_second_max'])})"

            def errors(d: dict) -> str:
                share = f"{d['error_rate']:.1%}"
                return share if d["errors_max"] == d["error_rate"] else f"{share} (max {d['errors_max']:.1%})"

            table.add(
                label,
                threads,
                rate(old),
                rate(new),
                f"**{new['per_second'] / old['per_second']:.2f}×**",
                f"{old['p50_s'] * 1000:,.0f} / {old['p99_s'] * 1000:,.0f} ms",
                f"{new['p50_s'] * 1000:,.0f} / {new['p99_s'] * 1000:,.0f} ms",
                errors(old),
                errors(new),
                f"{old['conflicts_per_call']:.2f}",
                f"{new['conflicts_per_call']:.2f}",
            )
    top, one = max(concurrency), min(concurrency)

    def caps_over_users(design: str, threads: int) -> float:
        runs_at = data["runs"]
        return (
            runs_at[f"caps/{threads}"][design]["per_second"]
            / runs_at[f"users/{threads}"][design]["per_second"]
        )

    caps_ratio = {design: caps_over_users(design, top) for design in DESIGNS}
    alone = {design: caps_over_users(design, one) for design in DESIGNS}
    data["caps_over_users"] = {"containers": top, **caps_ratio, "at_1": alone}
    summary = Table(
        [
            "design",
            f"caps / users only, calls/s at {top} containers",
            "wanted",
            f"the same at {one} container (no concurrency: the CPU the level items cost here)",
            f"{top} over {one}: what contention takes",
        ],
        title="What a cap costs in throughput, same run",
    )
    for design, slices in DESIGNS.items():
        summary.add(
            f"{design} (LEVEL_SLICES={slices})",
            f"**{caps_ratio[design]:.2f}×**",
            "≥ 0.70×" + (" (met)" if caps_ratio[design] >= 0.7 else " (not met)") if design == "new" else "—",
            f"{alone[design]:.2f}×",
            f"{caps_ratio[design] / alone[design]:.2f}×",
        )
    section.tables += [table, summary]
    throttles = sum(d[design]["throttles"] for d in data["runs"].values() for design in DESIGNS)
    section.notes += [
        "**This machine, not AWS.** 2 cores and CPython's GIL: the handlers of every container, the"
        " client threads and the botocore clients share one interpreter, and moto applies one"
        " request at a time in another process; in-process throughput is bound by CPU long before"
        " DynamoDB's limits. What is modelled faithfully is the in-flight window: which requests"
        " meet a transaction in flight, and what the retries cost in latency. The ratios between"
        " designs and workloads in one run are the point; the model below gives figures at AWS's limits.",
        "A charge with caps writes two more items per transaction than one without, and on this machine"
        " that CPU (moto's and the handler's) shows even with one container, where nothing"
        " conflicts: the last column of the second table divides it out, leaving what concurrency"
        " takes. On Lambda each container has its own CPU and DynamoDB's work is not the caller's.",
        "The model marks a transaction's items in flight when it admits it, and moto then applies it"
        " under the lock that applies one request at a time: where applying takes longer than the"
        " window (a loaded machine, a transaction of four items), the window has passed before the"
        " next request is looked at, and nothing can conflict. The conflicts-per-call columns show"
        " where the window was met; a row with none measured this machine's CPU, not the design.",
        f"Refusals for a partition's write capacity (1,000 WCU/s per partition key) in all runs: {throttles}.",
        'Reproduce: `make bench BENCH_ARGS="--only contention"` (or `python -m bench --only contention`).',
    ]
    data["model"] = contention_model.section_data(quick=quick)
    contention_model.add_tables(section, data["model"])
    section.data = data
    return section
