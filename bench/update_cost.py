"""1. One user's spend recorded, versus the size of the project.

(a) litellm's hosted ``BudgetManager`` (the real, pinned client): ``update_cost`` with text, then
    ``save_data``. ``update_cost`` itself also starts a background ``save_data`` thread, so one
    update is two ``POST /set_budget`` requests, each carrying the whole user dict; the update is
    timed until both have been answered.
(b) The native route: ``POST /projects/{p}/users/{u}/cost`` with the same model and texts.

Both run against ``make dev``'s runtime in this process (see common.BenchRuntime); projects are
seeded with BatchWriteItem straight into the table, and the client loads them via ``get_budget``.
"""

from __future__ import annotations

import os
import threading
import time
from decimal import Decimal

from bench.common import BenchRuntime, DynamoMeter, Section, Stat, Table, kib, num, ratio, seed_items

SIZES = (10, 100, 1_000, 10_000)
MODEL = "gpt-4o-mini"
INPUT_TEXT = (
    "Summarise the attached quarterly budget report for the finance team in three bullet points,"
    " and flag any project whose spend grew by more than ten percent."
)
OUTPUT_TEXT = (
    "- Total spend is within budget for the quarter.\n- Two projects grew by more than ten percent:"
    " search and support.\n- No user exceeded a monthly limit."
)


def rounds_for(users: int, quick: bool) -> int:
    if quick:
        return 1
    return 5 if users >= 10_000 else 9


def seed_project(rt: BenchRuntime, project: str, users: int, now: int) -> None:
    """`users` budgets as litellm's client would have created them (28-day rolling, some spend)."""
    from budget_service.core.records import Budget
    from budget_service.store.base import budget_to_item

    start = Decimal(now - 86_400)
    items = []
    for i in range(users):
        spend = Decimal(i % 97) / Decimal(1000)
        b = Budget(
            project=project,
            user=f"user-{i:05d}",
            total_budget=Decimal(10),
            created_at=start,
            updated_at=start,
            current_cost=spend,
            model_cost={MODEL: spend},
            duration_days=Decimal(28),
            period_start=start,
        ).with_period_from(Decimal(now))
        items.append(budget_to_item(b))
    seed_items(rt.client(), rt.table, items)


def run(rt: BenchRuntime, *, quick: bool = False, sizes: tuple[int, ...] | None = None) -> Section:
    import requests

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from litellm import BudgetManager

    sizes = sizes or ((SIZES[0],) if quick else SIZES)
    session = requests.Session()
    now = int(time.time())
    cost_body = {"model": MODEL, "input_text": INPUT_TEXT, "output_text": OUTPUT_TEXT}

    def litellm_update(manager: BudgetManager, user: str) -> dict:
        """One update the way the client does it. A save the service refuses (e.g. 413: the
        user dict is over its body limit) is recorded, not raised: that is the result."""
        h, d = rt.http.mark(), rt.dynamo.mark()
        start = time.perf_counter()
        manager.update_cost(user=user, model=MODEL, input_text=INPUT_TEXT, output_text=OUTPUT_TEXT)
        try:
            reply = manager.save_data()
        except Exception as exc:  # litellm's HTTP helper raises on a non-2xx answer
            reply = {"status": "error", "exception": f"{type(exc).__name__}: {exc}"[:300]}
        exchanges = rt.http.wait_for(h, "/set_budget", 2)
        elapsed = time.perf_counter() - start
        statuses = sorted({e.status for e in exchanges if e.path == "/set_budget"})
        if statuses != [200] and not all(400 <= code < 500 for code in statuses):
            raise RuntimeError(f"litellm save failed: {statuses} {reply!r:.300}")
        return {"seconds": elapsed, "http": exchanges, "dynamo": rt.dynamo.since(d), "statuses": statuses}

    def native_update(project: str, user: str) -> dict:
        h, d = rt.http.mark(), rt.dynamo.mark()
        start = time.perf_counter()
        response = session.post(f"{rt.url}/projects/{project}/users/{user}/cost", json=cost_body, timeout=60)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"native cost update failed: {response.status_code} {response.text[:300]}")
        return {"seconds": elapsed, "http": rt.http.since(h), "dynamo": rt.dynamo.since(d)}

    # Warm up both paths once (tiktoken encodings, litellm's tokenizer, connection pools).
    seed_project(rt, "bench-warmup", 2, now)
    warm = BudgetManager(project_name="bench-warmup", client_type="hosted", api_base=rt.url)
    litellm_update(warm, "user-00000")
    native_update("bench-warmup", "user-00001")

    section = Section(
        "update_cost",
        "1. Update cost versus project size: litellm hosted BudgetManager vs the native cost route",
        intro=(
            "One user's spend recorded in a project of N users. (a) litellm's hosted `BudgetManager`"
            f" (litellm {litellm_version()}): `update_cost(user, model={MODEL!r}, input_text, output_text)`"
            " then `save_data()`; `update_cost` also saves in a background thread, so one update is"
            " two `POST /set_budget` requests, each with the whole user dict, timed until both are"
            " answered. (b) `POST /projects/{p}/users/{u}/cost` with the same model and texts"
            " (priced and counted by the service). Bytes are HTTP bytes sent by the client (request"
            " line, headers, body); DynamoDB requests are counted on the service's botocore client."
            " Times are medians (min–max) over the rounds shown; each round does one (a) and one (b)."
        ),
    )
    main = Table(
        [
            "users",
            "rounds",
            "bytes sent (a)",
            "bytes sent (b)",
            "(a)/(b)",
            "DynamoDB requests (a)",
            "(b)",
            "(a)/(b)",
            "time per update (a)",
            "time per update (b)",
            "(a)/(b)",
        ]
    )
    detail = Table(
        [
            "users",
            "HTTP requests (a)",
            "bytes received (a)",
            "bytes received (b)",
            "DynamoDB items read (a)",
            "(b)",
            "DynamoDB operations (a)",
            "(b)",
            "client load: get_budget bytes received",
            "client load time",
        ],
        title="Detail per update, and the litellm client's initial load",
    )
    section.tables += [main, detail]

    # litellm's background save raises in its own thread when the service refuses it; keep
    # those out of the output (they are counted in the table as refused saves).
    background_errors: list[str] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: background_errors.append(
        f"{args.exc_type.__name__}: {args.exc_value}"[:200]
    )
    try:
        _run_sizes(rt, sizes, quick, now, section, main, detail, litellm_update, native_update)
    finally:
        threading.excepthook = previous_hook
    section.data["background_save_errors"] = len(background_errors)
    section.notes += _limit_notes({k: v for k, v in section.data.items() if k.isdigit()})
    section.notes += [
        "(a) grows with the project: every save sends every user, and the service must read the"
        " whole project (Query pages) to merge it without lowering anyone's spend; it writes only"
        " the users whose entry changed. (b) is one TransactWriteItems whatever the project size.",
        "Client, gateway, handlers and the embedded DynamoDB (moto) share one process here, so"
        " absolute times are those of this machine and of moto, not of AWS; the ratios and the"
        " counts are the point. (The bench gives the handlers' DynamoDB client a 120 s read"
        " timeout instead of the service's 5 s: moto needs ~10 s to Query a 10,000-user project.)",
    ]
    return section


def _run_sizes(rt, sizes, quick, now, section, main, detail, litellm_update, native_update) -> None:
    from litellm import BudgetManager

    for users in sizes:
        project = f"bench-cost-{users}"
        seed_project(rt, project, users, now)
        h = rt.http.mark()
        load_s, manager = _timed(
            lambda project=project: BudgetManager(project_name=project, client_type="hosted", api_base=rt.url)
        )
        load = rt.http.since(h)
        if len(manager.user_dict) != users:
            raise RuntimeError(f"client loaded {len(manager.user_dict)} users, expected {users}")
        # The first priced cost of a project in a container also reads the project's own prices
        # (one Query, cached PRICE_CACHE_SECONDS): warm it, to measure the steady state.
        native_update(project, "user-00002")
        a_runs, b_runs = [], []
        for _ in range(rounds_for(users, quick)):
            a_runs.append(litellm_update(manager, "user-00000"))
            b_runs.append(native_update(project, "user-00001"))

        def per(runs, key):
            return [key(r) for r in runs]

        a_sent = Stat.of(per(a_runs, lambda r: sum(e.sent for e in r["http"])))
        b_sent = Stat.of(per(b_runs, lambda r: sum(e.sent for e in r["http"])))
        a_recv = Stat.of(per(a_runs, lambda r: sum(e.received for e in r["http"])))
        b_recv = Stat.of(per(b_runs, lambda r: sum(e.received for e in r["http"])))
        a_req = Stat.of(per(a_runs, lambda r: len(r["dynamo"])))
        b_req = Stat.of(per(b_runs, lambda r: len(r["dynamo"])))
        a_items = Stat.of(per(a_runs, lambda r: sum(c.items for c in r["dynamo"])))
        b_items = Stat.of(per(b_runs, lambda r: sum(c.items for c in r["dynamo"])))
        a_time = Stat.of(per(a_runs, lambda r: r["seconds"]))
        b_time = Stat.of(per(b_runs, lambda r: r["seconds"]))
        a_http = Stat.of(per(a_runs, lambda r: len(r["http"])))
        refused = sorted({code for r in a_runs for code in r["statuses"] if code != 200})
        if refused:
            why = f"refused: HTTP {', '.join(map(str, refused))}"
            a_req_cell, req_ratio = f"{num(a_req.median)} ({why})", "n/a"
            a_time_cell, time_ratio = f"{why}, after {a_time.fmt()}", "n/a"
        else:
            a_req_cell, req_ratio = num(a_req.median), ratio(a_req.median, b_req.median)
            a_time_cell, time_ratio = a_time.fmt(), ratio(a_time.median, b_time.median)
        main.add(
            f"{users:,}",
            len(a_runs),
            kib(a_sent.median),
            kib(b_sent.median),
            ratio(a_sent.median, b_sent.median),
            a_req_cell,
            num(b_req.median),
            req_ratio,
            a_time_cell,
            b_time.fmt(),
            time_ratio,
        )
        detail.add(
            f"{users:,}",
            num(a_http.median),
            kib(a_recv.median),
            kib(b_recv.median),
            num(a_items.median),
            num(b_items.median),
            _ops(a_runs[-1]["dynamo"]),
            _ops(b_runs[-1]["dynamo"]),
            kib(sum(e.received for e in load)),
            f"{load_s * 1000:,.0f} ms",
        )
        section.data[str(users)] = {
            "rounds": len(a_runs),
            "litellm": {
                "bytes_sent": a_sent.as_dict(),
                "bytes_received": a_recv.as_dict(),
                "dynamodb_requests": a_req.as_dict(),
                "items_read": a_items.as_dict(),
                "seconds": a_time.as_dict(),
                "http_requests": a_http.as_dict(),
            },
            "native": {
                "bytes_sent": b_sent.as_dict(),
                "bytes_received": b_recv.as_dict(),
                "dynamodb_requests": b_req.as_dict(),
                "items_read": b_items.as_dict(),
                "seconds": b_time.as_dict(),
            },
            "client_load_seconds": load_s,
            "client_load_bytes_received": sum(e.received for e in load),
            "litellm_save_statuses": sorted({code for r in a_runs for code in r["statuses"]}),
        }


def _limit_notes(data: dict) -> list[str]:
    """Where the whole-dict protocol meets the service's limits, from the measured sizes."""
    from budget_service import schemas as models
    from budget_service.api.http import MAX_BODY_BYTES

    max_users = getattr(models, "MAX_USERS_PER_SET_BUDGET", None)
    ok = [(int(u), d) for u, d in data.items() if d["litellm_save_statuses"] == [200]]
    refused = [(int(u), d) for u, d in data.items() if d["litellm_save_statuses"] != [200]]
    notes = []
    if ok:
        users, d = max(ok)
        per_save = d["litellm"]["bytes_sent"]["median"] / max(1, d["litellm"]["http_requests"]["median"])
        per_user = per_save / users
        by_body = MAX_BODY_BYTES / per_user
        limits = f"a {MAX_BODY_BYTES / 1048576:g} MiB body (budget_service.api.http.MAX_BODY_BYTES), ~{by_body:,.0f} users at this size"
        ceiling = by_body
        if max_users:
            limits = (
                f"{max_users:,} users per save (budget_service.schemas.MAX_USERS_PER_SET_BUDGET) and "
                + limits
            )
            ceiling = min(ceiling, max_users)
        notes.append(
            f"A litellm save carries ~{per_user:.0f} bytes per user (measured at {users:,} users)."
            f" The service accepts at most {limits}: the hosted client can save projects of up to"
            f" ~{ceiling:,.0f} users."
        )
        load_per_user = d["client_load_bytes_received"] / users
        notes.append(
            f"The client's load (`get_budget`) is ~{load_per_user:.0f} bytes per user: Lambda's"
            f" 6 MB response limit is reached at about {6 * 1000 * 1000 / load_per_user:,.0f} users."
        )
    for users, d in refused:
        codes = [c for c in d["litellm_save_statuses"] if c != 200]
        if codes == [413]:
            reason = f"its body, the whole user dict, is over the {MAX_BODY_BYTES / 1048576:g} MiB limit"
        elif max_users and users > max_users:
            reason = f"more than {max_users:,} users in one save"
        else:
            reason = "see the service's answer"
        notes.append(
            f"At {users:,} users the service refuses litellm's saves (HTTP"
            f" {', '.join(map(str, codes))}: {reason}), so the hosted client cannot record spend"
            " there at all: `save_data` raises and the background save fails in its thread. The"
            " bytes and time shown are those of the refused attempts; the native route is unaffected."
        )
    return notes


def _ops(calls) -> str:
    by_op = DynamoMeter.summary(calls)["by_operation"]
    return ", ".join(f"{op}×{n}" for op, n in sorted(by_op.items())) or "none"


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")
