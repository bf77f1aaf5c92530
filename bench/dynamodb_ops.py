"""5. DynamoDB requests and capacity units per operation, counted on the service's own client.

Each native route, each litellm compat route and one scheduled reset run through ``make dev``'s
runtime once. A botocore hook on the handlers' client records every request; for each write it
reads the item just before and just after (with a separate client) to size it. moto reports
ConsumedCapacity only as fixed numbers, so capacity is computed from item sizes with DynamoDB's
documented rules:

* item size: attribute names plus values (strings in UTF-8 bytes, numbers ~1 byte per two
  significant digits + 1, maps and lists 3 bytes + 1 per element), index entries + 100 bytes;
* WCU: 1 per KB (rounded up) of the larger of the item before and after, per item written; a
  transaction counts every item twice; a write that fails its condition is billed like one
  that lands. The due-for-reset index costs extra writes when an entry appears, changes or goes
  (a changed ``reset_at`` is a delete plus a put);
* RCU: 1 per 4 KB read (rounded up over the whole response), half for eventually consistent
  reads (every index read).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

from bench.common import BenchRuntime, Section, Table, seed_items

WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
READ_OPS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}


# ---- DynamoDB's size rules ------------------------------------------------------------------------


def value_size(value: dict) -> int:
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode("utf-8"))
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in v)
    if kind == "NS":
        return sum(_number_size(n) for n in v)
    if kind == "BS":
        return sum(len(b) for b in v)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + value_size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(value_size(x) + 1 for x in v)
    raise ValueError(f"unknown DynamoDB type {kind}")


def _number_size(text: str) -> int:
    digits = Decimal(text).normalize().as_tuple().digits
    significant = len(digits) if any(digits) else 1
    return math.ceil(significant / 2) + 1


def item_size(item: dict | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(v) for name, v in item.items())


def units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


# ---- the meter ----------------------------------------------------------------------------------


@dataclass
class Usage:
    requests: list[str] = field(default_factory=list)
    wcu: float = 0.0
    index_wcu: float = 0.0
    rcu: float = 0.0
    largest_item: int = 0


class CapacityMeter:
    """Counts requests and estimates capacity units of one botocore client's DynamoDB calls."""

    def __init__(self, client, reader, index_spec: tuple[str, str, list[str]]) -> None:
        self.client, self.reader = client, reader
        self.index_pk, self.index_sk, self.index_attrs = index_spec
        self.usage = Usage()
        self._lock = threading.Lock()
        self._local = threading.local()
        client.meta.events.register("before-parameter-build.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    def start(self) -> None:
        with self._lock:
            self.usage = Usage()

    def close(self) -> None:
        self.client.meta.events.unregister("before-parameter-build.dynamodb", self._before)
        self.client.meta.events.unregister("after-call.dynamodb", self._after)

    # Writes: which items, and how big before.
    def _targets(self, op: str, params: dict) -> list[tuple[str, dict, bool]]:
        """(table, key, transactional) of every item the request writes."""
        key_of = lambda item: {"pk": item["pk"], "sk": item["sk"]}  # noqa: E731
        if op == "PutItem":
            return [(params["TableName"], key_of(params["Item"]), False)]
        if op in ("UpdateItem", "DeleteItem"):
            return [(params["TableName"], params["Key"], False)]
        if op == "TransactWriteItems":
            found = []
            for entry in params["TransactItems"]:
                ((kind, spec),) = entry.items()
                key = key_of(spec["Item"]) if kind == "Put" else spec["Key"]
                found.append((spec["TableName"], key, True))
            return found
        if op == "BatchWriteItem":
            return [
                (
                    table,
                    key_of(r["PutRequest"]["Item"]) if "PutRequest" in r else r["DeleteRequest"]["Key"],
                    False,
                )
                for table, requests in params["RequestItems"].items()
                for r in requests
            ]
        return []

    def _read(self, table: str, key: dict) -> dict | None:
        return self.reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")

    def _before(self, model, params, **_):
        op = model.name
        targets = self._targets(op, params) if op in WRITE_OPS else []
        self._local.pending = (op, params, [(t, k, tx, self._read(t, k)) for t, k, tx in targets])

    def _after(self, model, parsed, **_):
        op, params, targets = getattr(self._local, "pending", (model.name, {}, []))
        self._local.pending = None
        wcu = index_wcu = rcu = 0.0
        largest = 0
        for table, key, transactional, before in targets:
            after = self._read(table, key)
            size = max(item_size(before), item_size(after))
            largest = max(largest, size)
            wcu += units(size, 1024) * (2 if transactional else 1)
            index_wcu += self._index_writes(before, after)
        if op in READ_OPS:
            items = parsed.get("Items") or ([parsed["Item"]] if parsed.get("Item") else [])
            size = sum(item_size(i) for i in items)
            largest = max([largest] + [item_size(i) for i in items])
            consistent = bool(params.get("ConsistentRead")) and not params.get("IndexName")
            rcu += units(size, 4096) * (1 if consistent else 0.5)
        with self._lock:
            u = self.usage
            u.requests.append(op)
            u.wcu += wcu
            u.index_wcu += index_wcu
            u.rcu += rcu
            u.largest_item = max(u.largest_item, largest)

    def _index_entry(self, item: dict | None) -> dict | None:
        if not item or self.index_pk not in item or self.index_sk not in item:
            return None
        names = [self.index_pk, self.index_sk, "pk", "sk", *self.index_attrs]
        return {n: item[n] for n in names if n in item}

    def _index_writes(self, before: dict | None, after: dict | None) -> int:
        old, new = self._index_entry(before), self._index_entry(after)
        size = lambda e: item_size(e) + 100  # noqa: E731  (DynamoDB's per-entry index overhead)
        if old == new:
            return 0
        if old is None or new is None:
            return units(size(old or new), 1024)
        if (old[self.index_pk], old[self.index_sk]) == (new[self.index_pk], new[self.index_sk]):
            return units(max(size(old), size(new)), 1024)
        return units(size(old), 1024) + units(size(new), 1024)


def _index_spec() -> tuple[str, str, list[str]]:
    from localdev import template

    for index in template.table_properties().get("GlobalSecondaryIndexes") or []:
        keys = {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]}
        attrs = list(index.get("Projection", {}).get("NonKeyAttributes") or [])
        return str(keys["HASH"]), str(keys["RANGE"]), [str(a) for a in attrs]
    raise RuntimeError("template.yaml's table has no GSI")


# ---- the operations -------------------------------------------------------------------------------

# (label, route, minimum requests, minimum WCU, why). Minimums assume items under 1 KB (checked).
MINIMUMS = {
    "create": (1, "1 + 1 index", "one conditional PutItem; a budget with a period enters the reset index"),
    "replace": (
        1,
        "1",
        "one conditional UpdateItem of the settings (same rule: the index entry is unchanged)",
    ),
    "get": (1, "0", "one GetItem"),
    "list": (1, "0", "one Query per page (1 MB)"),
    "cost_first": (
        2,
        "4",
        "a project's first priced cost in a container also reads the project's own"
        " prices (one Query, cached 60 s), then the cost's TransactWriteItems",
    ),
    "cost": (
        1,
        "4",
        "one TransactWriteItems (×2): the budget, and a ConditionCheck that the project"
        " has no cap (it would be moved too); botocore's ClientRequestToken makes its retries"
        " exactly-once, which an UpdateItem's ADD is not",
    ),
    "cost_key": (1, "6", "the same with the ledger item"),
    "cost_replay": (
        2,
        "6",
        "the same transaction, cancelled by the ledger's condition (billed as written),"
        " and a GetItem of the budget (a deleted budget's key must not replay)",
    ),
    "hold": (
        1,
        "6 + 1 index",
        "one TransactWriteItems: the hold item (enters the due index) + the budget"
        " conditional on available + the project's ConditionCheck, ×2",
    ),
    "hold_key": (1, "8 + 1 index", "the same with the Idempotency-Key's ledger item"),
    "settle": (
        2,
        "5 + 1 index",
        "one TransactWriteItems: the hold held→settled (leaves the index) + the"
        " budget's spend/held/available, ×2; then, when it says the call's output tokens,"
        " one UpdateItem ADD of the model's output histogram (hold sizing)",
    ),
    "release": (1, "4 + 1 index", "one TransactWriteItems: the hold held→released + the budget, ×2"),
    "projected": (1, "0", "one GetItem (pricing and tokens need no table)"),
    "project_put": (1, "1", "one conditional PutItem of the project level"),
    "project_get": (2, "0", "one GetItem, and a COUNT Query of the project's users (the record's `users`)"),
    "team_put": (1, "1", "one conditional PutItem of the team level"),
    "team_get": (2, "0", "one GetItem, and a COUNT Query of the team's users"),
    "teams": (1, "0", "one Query per page of teams (plus a COUNT Query per team for `users`)"),
    "team_delete": (1, "2", "one TransactWriteItems of one Delete (×2)"),
    "project_delete": (1, "2", "one TransactWriteItems of one Delete (×2)"),
    "reset": (
        1,
        "6 + 1 index",
        "one TransactWriteItems (×2): the budget with spend zeroed, the closed"
        " period's item (enters the period-history index) and the audit entry",
    ),
    "delete": (
        1,
        "6 + 2 index",
        "one TransactWriteItems (×2) of the Delete (its token makes a retried"
        " delete answer 204, not 404), the current period's record and the audit entry; the"
        " reset index entry goes, the period enters the history index",
    ),
    "adjust": (
        2,
        "6",
        "a credit reads the spend (GetItem: an update cannot clamp), then one"
        " TransactWriteItems (×2) of the budget, the Idempotency-Key item and the audit entry",
    ),
    "periods": (2, "0", "one GetItem (the current period) and one Query of the closed ones"),
    "ledger": (1, "0", "one Query per page of audit entries"),
    "spend": (1, "0", "one Query of the period-history index per 1 MB of periods in the range"),
    "get_budget": (1, "0", "one Query per 1 MB of the project"),
    "price_put": (1, "1", "one UpdateItem (a price is a setting: last writer wins)"),
    "price_get": (1, "0", "one GetItem"),
    "price_list": (1, "0", "one Query per 1 MB of the project's prices"),
    "price_delete": (1, "1", "one DeleteItem"),
    "set_budget_1": (2, "1", "the merge must see what is stored: one Query, one write per changed user"),
    "set_budget_new": (
        10,
        "10 + 10 index",
        "one conditional write per new user (BatchWriteItem cannot be conditional)",
    ),
    "reset_job": (
        3,
        "4 + 3 index",
        "one index Query (one shard); per due budget a GetItem (the closed"
        " period's spend is not in the index) and one TransactWriteItems (×2) of the budget and"
        " its closed-period item (the spend history); the entry's reset_at moves (delete + put) and the"
        " period enters the history index",
    ),
}

USAGE = {"prompt_tokens": 1200, "completion_tokens": 350, "prompt_tokens_details": {"cached_tokens": 1024}}


def run(rt: BenchRuntime, *, quick: bool = False) -> Section:
    import requests

    from budget_service.core.periods import Duration
    from budget_service.core.records import Budget
    from budget_service.store.base import budget_to_item

    session = requests.Session()
    reader = rt.client()
    now = Decimal(int(time.time()))
    project = "ops"
    # Ten litellm-style users in "ops" (seeded directly, not counted).
    seed_items(
        reader,
        rt.table,
        [
            budget_to_item(
                Budget(
                    project=project,
                    user=f"member-{i}",
                    total_budget=Decimal(10),
                    created_at=now - 86400,
                    updated_at=now - 86400,
                    current_cost=Decimal("0.5"),
                    model_cost={"gpt-4o-mini": Decimal("0.5")},
                    duration_days=Decimal(28),
                    period_start=now - 86400,
                ).with_period_from(now)
            )
            for i in range(9)
        ],
    )
    # One budget whose daily period has ended, for the scheduled reset (its only due budget).
    due = Budget(
        project="ops-due",
        user="late",
        total_budget=Decimal(5),
        created_at=now - 3 * 86400,
        updated_at=now - 3 * 86400,
        duration=Duration.DAILY,
        current_cost=Decimal(1),
        model_cost={"gpt-4o": Decimal(1)},
    ).with_period_from(now - 2 * 86400)
    seed_items(reader, rt.table, [budget_to_item(due)])

    base = f"{rt.url}/projects/{project}/users"
    held: dict[str, str] = {}

    def remember(response, name: str = "hold"):
        if response.status_code == 201:
            held[name] = response.json()["hold_id"]
        return response

    def litellm_save_one_changed():
        """The body litellm would send (the whole project, one user changed), built unmetered."""
        entries = dict(
            session.post(f"{rt.url}/get_budget", json={"project_name": project}, timeout=30).json()["data"]
        )
        entries["member-0"] = {
            **entries["member-0"],
            "current_cost": float(entries["member-0"]["current_cost"]) + 0.25,
        }
        return entries

    ops = [
        (
            "project_put",
            "native",
            "PUT /projects/{p}/budget",
            lambda: session.put(
                f"{rt.url}/projects/ops-levels/budget", json={"total_budget": 100, "duration": "monthly"}
            ),
        ),
        (
            "project_get",
            "native",
            "GET /projects/{p}/budget",
            lambda: session.get(f"{rt.url}/projects/ops-levels/budget"),
        ),
        (
            "team_put",
            "native",
            "PUT /projects/{p}/teams/{t}",
            lambda: session.put(f"{rt.url}/projects/ops-levels/teams/research", json={"total_budget": 30}),
        ),
        (
            "team_get",
            "native",
            "GET /projects/{p}/teams/{t}",
            lambda: session.get(f"{rt.url}/projects/ops-levels/teams/research"),
        ),
        (
            "teams",
            "native",
            "GET /projects/{p}/teams (1 team)",
            lambda: session.get(f"{rt.url}/projects/ops-levels/teams"),
        ),
        (
            "team_delete",
            "native",
            "DELETE /projects/{p}/teams/{t}",
            lambda: session.delete(f"{rt.url}/projects/ops-levels/teams/research"),
        ),
        (
            "project_delete",
            "native",
            "DELETE /projects/{p}/budget",
            lambda: session.delete(f"{rt.url}/projects/ops-levels/budget"),
        ),
        (
            "create",
            "native",
            "PUT /projects/{p}/users/{u}",
            lambda: session.put(f"{base}/alice", json={"total_budget": 25, "duration": "monthly"}),
        ),
        (
            "replace",
            "native",
            "PUT /projects/{p}/users/{u} (existing)",
            lambda: session.put(f"{base}/alice", json={"total_budget": 30, "duration": "monthly"}),
        ),
        ("get", "native", "GET /projects/{p}/users/{u}", lambda: session.get(f"{base}/alice")),
        ("list", "native", "GET /projects/{p}/users (10 users)", lambda: session.get(f"{base}?limit=100")),
        (
            "cost_first",
            "native",
            "POST …/cost (usage form), the project's first",
            lambda: session.post(f"{base}/alice/cost", json={"model": "gpt-4o-mini", "usage": USAGE}),
        ),
        (
            "cost",
            "native",
            "POST …/cost (usage form)",
            lambda: session.post(f"{base}/alice/cost", json={"model": "gpt-4o-mini", "usage": USAGE}),
        ),
        (
            "cost_key",
            "native",
            "POST …/cost + Idempotency-Key",
            lambda: session.post(
                f"{base}/alice/cost",
                json={"model": "gpt-4o-mini", "usage": USAGE},
                headers={"Idempotency-Key": "bench-ops-1"},
            ),
        ),
        (
            "cost_replay",
            "native",
            "POST …/cost, same key again (replay)",
            lambda: session.post(
                f"{base}/alice/cost",
                json={"model": "gpt-4o-mini", "usage": USAGE},
                headers={"Idempotency-Key": "bench-ops-1"},
            ),
        ),
        (
            "projected",
            "native",
            "POST …/projected-cost",
            lambda: session.post(
                f"{base}/alice/projected-cost",
                json={
                    "model": "gpt-4o",
                    "max_tokens": 256,
                    "messages": [
                        {"role": "user", "content": "Summarise the meeting notes in three bullets."}
                    ],
                },
            ),
        ),
        (
            "hold",
            "native",
            "POST …/holds {amount}",
            lambda: remember(session.post(f"{base}/alice/holds", json={"amount": 0.5})),
        ),
        (
            "hold_key",
            "native",
            "POST …/holds + Idempotency-Key",
            lambda: remember(
                session.post(
                    f"{base}/alice/holds", json={"amount": 0.5}, headers={"Idempotency-Key": "bench-hold-1"}
                ),
                "keyed",
            ),
        ),
        (
            "settle",
            "native",
            "POST …/holds/{id}/settle",
            lambda: session.post(
                f"{base}/alice/holds/{held['hold']}/settle", json={"model": "gpt-4o-mini", "usage": USAGE}
            ),
        ),
        (
            "release",
            "native",
            "DELETE …/holds/{id}",
            lambda: session.delete(f"{base}/alice/holds/{held['keyed']}"),
        ),
        (
            "adjust",
            "native",
            "POST …/adjustments (a credit) + Idempotency-Key",
            lambda: session.post(
                f"{base}/alice/adjustments",
                json={"amount": -0.001, "reason": "bench"},
                headers={"Idempotency-Key": "bench-adjust-1"},
            ),
        ),
        ("reset", "native", "POST …/reset", lambda: session.post(f"{base}/alice/reset")),
        ("periods", "native", "GET …/periods", lambda: session.get(f"{base}/alice/periods")),
        ("ledger", "native", "GET …/ledger", lambda: session.get(f"{base}/alice/ledger")),
        (
            "spend",
            "native",
            "GET /projects/{p}/spend (JSON)",
            lambda: session.get(f"{rt.url}/projects/{project}/spend"),
        ),
        ("delete", "native", "DELETE /projects/{p}/users/{u}", lambda: session.delete(f"{base}/alice")),
        (
            "price_put",
            "native",
            "PUT /projects/{p}/prices/{m}",
            lambda: session.put(
                f"{rt.url}/projects/{project}/prices/ops-model", json={"input": 1e-6, "output": 2e-6}
            ),
        ),
        (
            "price_get",
            "native",
            "GET /projects/{p}/prices/{m}",
            lambda: session.get(f"{rt.url}/projects/{project}/prices/ops-model"),
        ),
        (
            "price_list",
            "native",
            "GET /projects/{p}/prices",
            lambda: session.get(f"{rt.url}/projects/{project}/prices"),
        ),
        (
            "price_delete",
            "native",
            "DELETE /projects/{p}/prices/{m}",
            lambda: session.delete(f"{rt.url}/projects/{project}/prices/ops-model"),
        ),
        (
            "get_budget",
            "litellm",
            "POST /get_budget (10 users)",
            lambda: session.post(f"{rt.url}/get_budget", json={"project_name": project}),
        ),
        ("set_budget_1", "litellm", "POST /set_budget (10 users, 1 changed)", None),
        (
            "set_budget_new",
            "litellm",
            "POST /set_budget (new project, 10 users)",
            lambda: session.post(
                f"{rt.url}/set_budget",
                json={
                    "project_name": "ops-new",
                    "user_dict": {
                        f"new-{i}": {
                            "total_budget": 10.0,
                            "duration": 28,
                            "created_at": float(now),
                            "last_updated_at": float(now),
                        }
                        for i in range(10)
                    },
                },
            ),
        ),
        (
            "reset_job",
            "scheduled",
            "ResetBudgetsFunction (1 budget due)",
            lambda: session.post(f"{rt.url}/_local/invoke/ResetBudgetsFunction", json={}),
        ),
    ]

    meter = CapacityMeter(rt.store.client, reader, _index_spec())
    section = Section(
        "dynamodb_ops",
        "5. DynamoDB requests and capacity units per operation",
        intro=(
            "Each operation once through `make dev`'s runtime; requests counted on the handlers'"
            " botocore client. moto's ConsumedCapacity is a constant, so units are estimated from"
            " the items' sizes before and after each write (DynamoDB's documented rules: 1 WCU"
            " per KB written, transactions ×2, index entries +100 bytes; 1 RCU per 4 KB, half when"
            " eventually consistent). The minimum is what any implementation of the same contract"
            " needs, with items under 1 KB."
        ),
    )
    table = Table(
        [
            "caller",
            "operation",
            "DynamoDB requests",
            "minimum requests",
            "WCU table",
            "WCU index",
            "minimum WCU",
            "RCU",
            "largest item",
            "why that minimum",
        ]
    )
    section.tables.append(table)
    try:
        for key, caller, label, call in ops:
            if key == "set_budget_1":
                body = {"project_name": project, "user_dict": litellm_save_one_changed()}
                call = lambda body=body: session.post(f"{rt.url}/set_budget", json=body)  # noqa: E731
            meter.start()
            response = call()
            if response.status_code >= 300 and response.status_code != 204:
                raise RuntimeError(f"{label}: {response.status_code} {response.text[:300]}")
            if key == "reset_job" and response.json().get("reset") != 1:
                raise RuntimeError(f"reset job did not reset exactly one budget: {response.text[:300]}")
            u = meter.usage
            min_requests, min_wcu, why = MINIMUMS[key]
            table.add(
                caller,
                label,
                _ops(u.requests),
                min_requests,
                _n(u.wcu),
                _n(u.index_wcu),
                min_wcu,
                _n(u.rcu),
                f"{u.largest_item:,} B",
                why,
            )
            section.data[key] = {
                "caller": caller,
                "label": label,
                "requests": len(u.requests),
                "operations": u.requests,
                "minimum_requests": min_requests,
                "wcu": u.wcu,
                "index_wcu": u.index_wcu,
                "rcu": u.rcu,
                "largest_item": u.largest_item,
            }
    finally:
        meter.close()
    section.notes += [
        "Every cost update is one request whatever the project size, and never touches the reset"
        " index (no index attribute changes). Since holds it is a TransactWriteItems"
        " even without an Idempotency-Key: 2 WCU instead of 1, the price of exactly-once under"
        " botocore's retries.",
        "Hold, settle and release are one TransactWriteItems each: the hold item and the budget;"
        " the hold id carries the amount, so settle and release need no read.",
        "Budget levels: a charge moves every level the user belongs to in the same"
        " transaction and proves with a ConditionCheck (2 WCU) that a level it does not move does"
        " not exist: here the project has no cap, so a cost is 4 WCU. Each level moved adds one"
        " Update (2 WCU); the request count stays 1.",
        "PUT (create or replace) and POST …/reset read before they write (GetItem, then a"
        " version-conditional PutItem): 2 requests where 1 would do. The read-modify-write keeps"
        " concurrent writers from interleaving; the PutItem is billed by the whole item (under"
        " 1 KB here, so 1 WCU either way).",
        "The reset job queries each of the 4 index shards of budgets (spreading due budgets over"
        " partitions) and the 4 of expiring holds, so its floor is 8 Queries, not 1; a cancelled transaction (the replay) is estimated as"
        " billed like a written one.",
        "A rollover (recorded in the spend history) is a TransactWriteItems of the budget and its closed-period item, so"
        " each closed period exists exactly once: 2 items × 2 = 4 WCU (plus the item's entry in the"
        " period-history index, 1 WCU) where the bare UpdateItem was 1; the job reads the budget"
        " first (0.5–1 RCU). A lazy rollover (by a cost or hold) was already a read and a write.",
        "`/set_budget` reads the whole project (one Query per MB) on every save because litellm"
        " sends every user; it writes only the users that changed.",
    ]
    return section


def _ops(requests: list[str]) -> str:
    counts: dict[str, int] = {}
    for op in requests:
        counts[op] = counts.get(op, 0) + 1
    detail = ", ".join(f"{op}×{n}" if n > 1 else op for op, n in counts.items())
    return f"{len(requests)} ({detail})" if requests else "0"


def _n(x: float) -> str:
    return f"{x:g}"
