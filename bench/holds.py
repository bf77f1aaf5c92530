"""8. Hard caps: admitted spend against the budget under N concurrent callers, check-then-charge
(LiteLLM's pattern: projected-cost, call, /cost) side by side with hold-then-settle.

Every caller loops: check (or hold) the next call's projected cost, "call the model" (a fixed
pause standing for the LLM's latency: the window in which a check goes stale), then record (or
settle) the actual cost, until the service says no. The budget is ten calls' worth. Overshoot is
admitted spend over the budget: 1.00 means the cap held. DynamoDB requests are counted on the
handlers' client (per admitted call, everything included: checks, refusals, charges).
"""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

from bench.common import BenchRuntime, Section, Table

CALL_SECONDS = 0.05  # the stand-in for an LLM call: long enough for checks to go stale
MESSAGES = [{"role": "user", "content": "Summarise the ticket in one line."}]
MODEL = "gpt-4o-mini"
MAX_TOKENS = 512
CALLS_IN_BUDGET = 10


def _caller_check_then_charge(session, base: str, cost: Decimal, admitted: list, lock) -> None:
    while True:
        check = session.post(
            f"{base}/projected-cost",
            json={"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS},
            timeout=60,
        ).json()
        if not check["within_budget"]:
            return
        time.sleep(CALL_SECONDS)  # the LLM call
        response = session.post(f"{base}/cost", json={"model": MODEL, "cost": float(cost)}, timeout=60)
        response.raise_for_status()
        with lock:
            admitted.append(cost)


def _caller_hold_then_settle(session, base: str, cost: Decimal, admitted: list, lock) -> None:
    while True:
        hold = session.post(
            f"{base}/holds", json={"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS}, timeout=60
        )
        if hold.status_code == 402:
            return
        hold.raise_for_status()
        time.sleep(CALL_SECONDS)  # the LLM call
        settle = session.post(
            f"{base}/holds/{hold.json()['hold_id']}/settle",
            json={"model": MODEL, "cost": float(cost)},
            timeout=60,
        )
        settle.raise_for_status()
        with lock:
            admitted.append(cost)


def _run(rt: BenchRuntime, pattern: str, callers: int) -> dict:
    import requests

    base = f"{rt.url}/projects/bench-caps/users/{pattern}-{callers}-{uuid.uuid4().hex[:6]}"
    session = requests.Session()
    session.put(base, json={"total_budget": 1}).raise_for_status()  # to price the call first
    projected = Decimal(
        str(
            session.post(
                f"{base}/projected-cost",
                json={"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS},
                timeout=60,
            ).json()["projected_cost"]
        )
    )
    total = projected * CALLS_IN_BUDGET
    session.put(base, json={"total_budget": float(total)}).raise_for_status()
    admitted: list[Decimal] = []
    lock = threading.Lock()
    caller = _caller_check_then_charge if pattern == "check" else _caller_hold_then_settle
    mark = rt.dynamo.mark()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=caller, args=(requests.Session(), base, projected, admitted, lock))
        for _ in range(callers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    seconds = time.perf_counter() - started
    calls = rt.dynamo.since(mark)
    spend = Decimal(str(session.get(base, timeout=60).json()["current_cost"]))
    return {
        "callers": callers,
        "budget": float(total),
        "admitted_calls": len(admitted),
        "spend": float(spend),
        "overshoot": float(spend / total),
        "dynamodb_requests": len(calls),
        "requests_per_admitted_call": len(calls) / max(len(admitted), 1),
        "seconds": seconds,
    }


def run(rt: BenchRuntime, *, quick: bool = False) -> Section:
    sizes = (4,) if quick else (1, 4, 16, 32)
    section = Section(
        "holds",
        "8. Hard caps: check-then-charge against hold-then-settle",
        intro=__doc__.split("\n\n", 1)[1].strip(),
    )
    table = Table(
        [
            "concurrent callers",
            "budget (calls)",
            "check-then-charge: calls admitted",
            "spend / budget",
            "DynamoDB requests per call",
            "hold-then-settle: calls admitted",
            "spend / budget",
            "DynamoDB requests per call",
        ]
    )
    section.tables.append(table)
    for callers in sizes:
        check = _run(rt, "check", callers)
        hold = _run(rt, "hold", callers)
        section.data[str(callers)] = {"check_then_charge": check, "hold_then_settle": hold}
        table.add(
            callers,
            CALLS_IN_BUDGET,
            check["admitted_calls"],
            f"{check['overshoot']:.2f}",
            f"{check['requests_per_admitted_call']:.1f}",
            hold["admitted_calls"],
            f"{hold['overshoot']:.2f}",
            f"{hold['requests_per_admitted_call']:.1f}",
        )
    section.notes += [
        "Check-then-charge admits every caller whose check ran before earlier callers paid: its"
        " overshoot grows with concurrency. Hold-then-settle admits exactly what the budget"
        " covers at any concurrency: the hold is the check and the reservation in one conditional"
        " write.",
        "Per admitted call, hold-then-settle is 2 DynamoDB requests (the hold and the settle, each"
        " one TransactWriteItems), plus one for each refused hold and its look-up of expired holds"
        " (one Query) at the end; check-then-charge is 2 (a GetItem for the check, a"
        " TransactWriteItems for the cost) plus the final refused check.",
    ]
    return section
