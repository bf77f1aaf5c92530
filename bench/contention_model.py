"""The contention section's model at AWS's limits: calls per second one project sustains, by the
number of slices a level is dealt over and the in-flight window, from a small discrete-event
simulation (pure Python, seconds; ``python -m bench.contention_model`` prints it alone).

Assumptions (each stated in the section's notes too):

* A **call** is two TransactWriteItems, a hold and its settle. Each names the user's item, one
  team slice and one project slice chosen at random on each attempt (store.slices.pick), and the
  hold's own item (new per call: it never conflicts).
* An **item admits one transaction per window**: a transaction that names an item another has in
  flight is cancelled (``TransactionConflict``) and nothing of it is applied; one that passes
  keeps all its items in flight for the window and is answered at its end.
* A cancelled transaction is **retried with full-jitter backoff** as the service retries it
  (store.base.conflict_backoff: uniform(0, min(150 ms, 4 ms × 2^attempt)), up to
  CONFLICT_RETRIES retries and at most REQUEST_RETRY_SECONDS after the request began, then a
  503; the constants are read from the store). Arrivals are Poisson, calls spread over USERS users of the project.
* A project **sustains** an offered rate when at least 99.9 % of its calls are admitted (none
  ran out of retries) over the simulated span and a call's p99 is within P99_S (1 s): with
  retries lasting up to 8 s nearly every call is admitted at last, so the latency bound is what
  separates a rate the project serves from one it only queues; the table gives the highest such rate found by
  bisection, with the calls' median and p99 latency there (conflict waits only: no network, no
  Lambda).
* **Write capacity**: 1,000 WCU/s per partition, 2 WCU per item (under 1 KB) in a transaction.
  A hold or a settle writes 4 items (8 WCU), a call 16 WCU. Every item of a project shares its
  partition key (``PROJECT#<project>``): on one partition the project is capped at
  1,000 / 16 ≈ 62 calls/s whatever the slices. DynamoDB splits a hot partition by sort key
  ("split for heat", adaptive capacity), so a project's items spread over more partitions as
  its traffic grows, up to 1,000 WCU/s for a single item (≈ 500 transactions/s), above what the
  window lets an item admit; how fast a split happens is not documented. The table gives both.
"""

from __future__ import annotations

import heapq
import random
import sys

import bench.common  # noqa: F401  (puts the layer on sys.path)
from budget_service.store.base import (
    CONFLICT_BASE_SECONDS,
    CONFLICT_CAP_SECONDS,
    CONFLICT_RETRIES,
    REQUEST_RETRY_SECONDS,
)

SLICES = (1, 2, 4, 8, 16)
WINDOWS_MS = (5, 10, 20)
USERS = 1000
RETRIES = CONFLICT_RETRIES
BASE_S = CONFLICT_BASE_SECONDS
CAP_S = CONFLICT_CAP_SECONDS
DEADLINE_S = REQUEST_RETRY_SECONDS  # per request: a hold, then its settle
SUCCESS = 0.999
P99_S = 1.0  # and a call's p99 (its conflict waits) within this: retries that queue are not throughput
PARTITION_WCU = 1000
WCU_PER_CALL = 2 * 4 * 2  # two transactions of 4 items, 2 WCU each


def simulate(rate: float, slices: int, window_s: float, *, span_s: float = 4.0, seed: int = 1) -> dict:
    """Calls arriving at `rate` per second for `span_s` simulated seconds on one project whose
    team and project levels each have `slices` slices, items in flight for `window_s`.
    ``{"calls", "admitted", "failed", "p50_s", "p99_s", "conflicts"}``."""
    rng = random.Random(seed)
    busy: dict[tuple, float] = {}
    events: list[tuple[float, int, int, int, int]] = []  # (time, seq, call, phase, attempt)
    began: dict[tuple[int, int], float] = {}  # (call, phase) -> when that request began
    seq = 0
    t = 0.0
    calls = 0
    users: list[int] = []
    started: list[float] = []
    while True:
        t += rng.expovariate(rate)
        if t > span_s:
            break
        users.append(rng.randrange(USERS))
        started.append(t)
        heapq.heappush(events, (t, seq, calls, 0, 0))
        seq += 1
        calls += 1
    latencies: list[float] = []
    failed = conflicts = 0
    while events:
        now, _, call, phase, attempt = heapq.heappop(events)
        items = (("u", users[call]), ("t", rng.randrange(slices)), ("p", rng.randrange(slices)))
        began.setdefault((call, phase), now)
        if any(busy.get(item, -1.0) > now for item in items):
            conflicts += 1
            if attempt >= RETRIES or now - began[(call, phase)] >= DEADLINE_S:
                failed += 1
                continue
            delay = rng.uniform(0, min(CAP_S, BASE_S * 2**attempt))
            heapq.heappush(events, (now + delay, seq, call, phase, attempt + 1))
        else:
            done = now + window_s
            for item in items:
                busy[item] = done
            if phase == 0:
                heapq.heappush(events, (done, seq, call, 1, 0))
            else:
                latencies.append(done - started[call])
        seq += 1
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[max(0, int(len(latencies) * p / 100 + 0.999999) - 1)] if latencies else float("nan")

    return {
        "calls": calls,
        "admitted": len(latencies),
        "failed": failed,
        "p50_s": pct(50),
        "p99_s": pct(99),
        "conflicts": conflicts,
    }


def sustained(slices: int, window_s: float, *, span_s: float, steps: int) -> dict:
    """The highest rate (calls/s) at which the simulation admits SUCCESS of the calls, by bisection
    between 0 and the bound the window sets (slices / (2 × window): each slice admits one
    transaction per window, and a call is two); the figures at that rate."""
    bound = slices / (2 * window_s)
    low, high = 0.0, bound
    best = None
    for _ in range(steps):
        mid = (low + high) / 2
        figures = simulate(mid, slices, window_s, span_s=span_s)
        if (
            figures["calls"]
            and figures["admitted"] >= SUCCESS * figures["calls"]
            and figures["p99_s"] <= P99_S
        ):
            low, best = mid, figures
        else:
            high = mid
    return {"per_second": low, "bound": bound, "at": best}


def section_data(*, quick: bool = False) -> dict:
    """Sustained calls per second by slices and window (see the module docstring)."""
    slices_set = (1, 8) if quick else SLICES
    windows = (10,) if quick else WINDOWS_MS
    span_s, steps = (1.0, 4) if quick else (4.0, 9)
    out: dict = {
        "users": USERS,
        "span_s": span_s,
        "steps": steps,
        "partition_ceiling": PARTITION_WCU / WCU_PER_CALL,
        "results": {},
    }
    for window_ms in windows:
        for slices in slices_set:
            out["results"][f"{slices}/{window_ms}"] = {
                "slices": slices,
                "window_ms": window_ms,
                **sustained(slices, window_ms / 1000, span_s=span_s, steps=steps),
            }
    return out


def add_tables(section, data: dict) -> None:
    """The model's table and its assumptions, appended to `section` (bench.common.Section)."""
    from bench.common import Table

    results = data["results"]
    windows = sorted({r["window_ms"] for r in results.values()})
    slices_set = sorted({r["slices"] for r in results.values()})
    table = Table(
        ["slices per level (LEVEL_SLICES)"]
        + [f"{w} ms in flight: calls/s (p50 / p99 there)" for w in windows]
        + [f"bound at {w} ms (slices / 2w)" for w in windows],
        title=(
            "Model at AWS's limits: calls per second one project sustains (hold + settle, team and"
            " project caps), conflicts only, split for heat assumed"
        ),
    )
    for slices in slices_set:
        cells = []
        for w in windows:
            r = results[f"{slices}/{w}"]
            at = r["at"] or {}
            latency = (
                f" ({at['p50_s'] * 1000:,.0f} / {at['p99_s'] * 1000:,.0f} ms)" if at.get("admitted") else ""
            )
            cells.append(f"**{r['per_second']:,.0f}**{latency}")
        bounds = [f"{results[f'{slices}/{w}']['bound']:,.0f}" for w in windows]
        table.add(f"{slices}" + (" (the old design)" if slices == 1 else ""), *cells, *bounds)
    ceiling = data["partition_ceiling"]
    section.tables.append(table)
    section.notes += [
        "**The model's assumptions.** A call is two transactions (hold, settle), each naming the"
        " user's item, one team slice and one project slice picked at random on each attempt, and"
        " the hold's own item; an item admits one transaction per window (a transaction naming an"
        " item in flight is cancelled, nothing applied); cancelled transactions are retried as the"
        f" service retries them (full jitter, uniform(0, min({CAP_S * 1000:g} ms, {BASE_S * 1000:g} ms × 2^attempt)),"
        f" up to {RETRIES} retries within {DEADLINE_S:g} s of the request's start, then a 503); Poisson arrivals spread over {data['users']:,} users; a rate is"
        f" sustained when at least {SUCCESS:.1%} of calls are admitted and a call's p99 is within"
        f" {P99_S:g} s over {data['span_s']:g} simulated seconds ({data['steps']} bisection steps between 0 and the bound). Latency is"
        " the conflict waits alone (no network, no Lambda). `python -m bench.contention_model`"
        " prints this table alone in seconds.",
        "**Write capacity.** 1,000 WCU/s per partition and 2 WCU per item in a transaction: a hold"
        " or a settle writes 4 items (8 WCU), a call 16. A project's items share one partition key,"
        f" so on a single partition a project is capped at {ceiling:.1f} calls/s whatever the"
        " slices. DynamoDB splits a hot partition by sort key (adaptive capacity's split for heat),"
        " spreading the project's users and slices over partitions as traffic grows, up to"
        " 1,000 WCU/s for one item (≈ 500 transactions/s, above what a window lets an item"
        " admit); the table assumes the split has happened. How soon DynamoDB splits is not"
        " documented: until then the partition's ceiling, not the slices, bounds a project.",
        "**One hot user** is one item whatever the slices: at most one transaction per window,"
        " so 1 / (2 × window) calls/s (50 at 10 ms) for one user, before any conflict waste.",
    ]


def main() -> None:
    from bench.common import Section

    quick = "--quick" in sys.argv
    section = Section("contention_model", "Model of contention at AWS's limits")
    data = section_data(quick=quick)
    add_tables(section, data)
    print(section.markdown())


if __name__ == "__main__":
    main()
