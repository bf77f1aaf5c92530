"""9. Budget levels: DynamoDB requests per charged call with one, two and three levels (user;
user + project; user + team + project), and the throughput of charges that all move one project
item as concurrency grows, on the embedded DynamoDB.

Requests are counted on the handlers' client after each user's first charge in this process (the
first one also learns the user's levels: it can take up to two more attempts, each writing
nothing). Throughput is charges per second through the local HTTP server: on moto, which applies
one request at a time, it measures the service's own overhead, not DynamoDB's per-item limit
(about 1,000 WCU/s, so ~500 transactional charges/s on one project item; see the README).
"""

from __future__ import annotations

import threading
import time
import uuid

from bench.common import BenchRuntime, Section, Table


def run(rt: BenchRuntime, *, quick: bool = False) -> Section:
    import requests

    session = requests.Session()
    section = Section(
        "levels",
        "9. Budget levels: requests per charge, and one project item's throughput",
        intro=__doc__.split("\n\n", 1)[1].strip(),
    )
    per_level = Table(
        [
            "levels moved",
            "DynamoDB requests per charge",
            "operations",
            "alerts function's level reads per charge",
        ]
    )
    section.tables.append(per_level)
    charges = 3 if quick else 20
    for levels in (1, 2, 3):
        project = f"bench-levels-{levels}-{uuid.uuid4().hex[:6]}"
        base = f"{rt.url}/projects/{project}"
        if levels >= 2:
            session.put(f"{base}/budget", json={"total_budget": 1000}).raise_for_status()
        user_body: dict = {"total_budget": 100}
        if levels == 3:
            session.put(f"{base}/teams/research", json={"total_budget": 500}).raise_for_status()
            user_body["team"] = "research"
        session.put(f"{base}/users/alice", json=user_body).raise_for_status()
        session.post(f"{base}/users/alice/cost", json={"model": "m", "cost": 0.01}).raise_for_status()
        mark = rt.dynamo.mark()
        for _ in range(charges):
            session.post(f"{base}/users/alice/cost", json={"model": "m", "cost": 0.01}).raise_for_status()
        # The alerts function reads a dealt level's sums for each stream record of its slices
        # (TransactGetItems, after the charge has answered): counted apart from the charge's own.
        every = rt.dynamo.since(mark)
        calls = [c for c in every if c.operation != "TransactGetItems"]
        reads = len(every) - len(calls)
        ops = sorted({c.operation for c in calls})
        per_level.add(levels, f"{len(calls) / charges:g}", ", ".join(ops), f"{reads / charges:g}")
        section.data[f"levels_{levels}"] = {
            "requests_per_charge": len(calls) / charges,
            "operations": ops,
            "alert_reads_per_charge": reads / charges,
        }

    throughput = Table(
        ["concurrent callers", "charges", "charges per second", "DynamoDB requests per charge"]
    )
    section.tables.append(throughput)
    project = f"bench-hot-{uuid.uuid4().hex[:6]}"
    base = f"{rt.url}/projects/{project}"
    session.put(f"{base}/budget", json={"total_budget": 1_000_000}).raise_for_status()
    users = 16
    for i in range(users):
        session.put(f"{base}/users/u{i}", json={"total_budget": 1000}).raise_for_status()
        session.post(f"{base}/users/u{i}/cost", json={"model": "m", "cost": 0.001}).raise_for_status()
    per_caller = 5 if quick else 40
    for callers in (2,) if quick else (1, 4, 16):
        mark = rt.dynamo.mark()

        def caller(n: int) -> None:
            s = requests.Session()
            for k in range(per_caller):
                s.post(
                    f"{base}/users/u{(n + k) % users}/cost", json={"model": "m", "cost": 0.001}, timeout=60
                ).raise_for_status()

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        seconds = time.perf_counter() - started
        total = callers * per_caller
        calls = rt.dynamo.since(mark)
        throughput.add(callers, total, f"{total / seconds:.0f}", f"{len(calls) / total:.2f}")
        section.data[f"throughput_{callers}"] = {
            "charges": total,
            "per_second": total / seconds,
            "requests_per_charge": len(calls) / total,
        }
    section.notes += [
        "Every charge is one TransactWriteItems whatever the number of levels: each level moved"
        " is one more item in it (2 WCU each), a level it does not move a ConditionCheck.",
        "On DynamoDB a project item caps its project near 500 charged requests per second (1,000"
        " WCU/s per item, 2 WCU per transactional write); the numbers above are moto's.",
    ]
    return section
