"""Escrow slices: how a team or project level admits charges without every charge naming one item.

Every charge of a project's users moves the project level, and its team's. DynamoDB cancels a
transaction that names an item another transaction has in flight (``TransactionConflict``), so a
level kept on one item admits about one charge per in-flight window, whatever its capacity. The
level's counters are therefore spread over ``n`` items, its slices (escrow in O'Neil's sense, the
demarcation protocol of Barbara and Garcia-Molina): the level's own item is slice 0 and slices
``1..n-1`` are ``sk = SLICE#<level sk>#<k>``. Each slice carries ``current_cost``, ``model_cost``,
``held``, ``available``, ``period_start``, ``reset_at`` and a ``version``; the level's figures are
the sums over its slices. Only sums mean anything: a slice's ``held`` may go below zero when a
hold reserved on one slice is freed on another.

Two modes, so that the cap holds exactly whatever is charged without a check (a plain cost, a
settle above its hold):

- **Normal**: no slice ever goes below zero. A charge moves one slice chosen at random, so
  concurrent charges of one level rarely name the same item, and every debit of a slice is
  conditional on ``available >= debit``: a hold or ``if_within_budget`` charge that fits a
  slice's share fits the level, since no other slice is in debt. Credits (settles, releases)
  land on any slice.
- When a slice's share cannot cover a charge, the charge reads every slice in one
  TransactGetItems (serializable with transactions) and refuses only when the level's whole
  headroom cannot cover it. Otherwise the level is dealt in **tight** mode: all its counters on
  its own item, ``tight`` set on every slice so that charges go to the level's item alone, as
  they would with one item. A level near its cap thus admits exactly what fits, at the
  throughput of one item, which is all it has left to give.
- A PUT of the level's settings and a period's rollover rewrite every slice in one transaction
  conditional on the versions read (``deal``): the counters' sums go to slice 0 and the headroom
  is dealt in equal shares (normal mode), or all to slice 0 when there is none (tight mode).

``LEVEL_SLICES`` (environment, default 8) is the number of slices of a level created from now on;
a level keeps the number it was dealt (``slices`` on its item; absent: 1, an item written before
slices). docs/adr/ records the decision and its alternatives.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal, localcontext

from botocore.exceptions import ClientError

from budget_service.core.numbers import DECIMAL_CONTEXT
from budget_service.store.base import conflict_backoff, plain_item, project_key, serialize

SLICE_PREFIX = "SLICE#"
HEAD = "head"  # the level's own item (slice 0), as a charge's guard (levels.level_update)
OTHER = "other"  # any other slice
COUNTERS = ("current_cost", "model_cost", "held", "available")
ZERO = Decimal(0)
# Shares are dealt to 10^-12 USD (a thousandth of the smallest price LiteLLM's map lists per
# token); slice 0 takes what the rounding leaves, so the shares add up exactly.
SHARE_QUANTUM = Decimal("1e-12")


def default_slices() -> int:
    """Slices of a level created now: ``LEVEL_SLICES`` (1 to 24; TransactGetItems and the
    dealing transaction name every slice, within DynamoDB's 100 items with room to spare)."""
    return max(1, min(24, int(os.environ.get("LEVEL_SLICES", "8"))))


def slice_sk(level_sk: str, k: int) -> str:
    """The sort key of slice `k` of a level (slice 0 is the level's own item)."""
    return level_sk if k == 0 else f"{SLICE_PREFIX}{level_sk}#{k}"


def slice_level(sk: str) -> str | None:
    """The level sort key a slice's sort key belongs to, or None for any other key."""
    if not sk.startswith(SLICE_PREFIX):
        return None
    level_sk, _, k = sk[len(SLICE_PREFIX) :].rpartition("#")
    return level_sk if k.isdigit() and level_sk else None


def slice_count(item: dict | None) -> int:
    """How many slices a level item (plain values) was dealt: its ``slices``, else 1."""
    return int((item or {}).get("slices") or 1)


def pick(level_sk: str, count: int) -> str:
    """A slice of the level at random: concurrent charges spread over its items."""
    return slice_sk(level_sk, random.randrange(count))  # noqa: S311  (spreading load, not security)


def read_slices(
    client, table_name: str, project: str, level_sk: str, count: int | None = None
) -> list[dict | None]:
    """Every slice of a level as plain items (None where absent), slice 0 first: one
    TransactGetItems, which DynamoDB serializes with transactions, so the sums are those of one
    instant. `count` None: the level's own ``slices`` (one GetItem first when it is above the
    default). A read cancelled by a transaction in flight is tried again with backoff."""
    count = count or default_slices()
    attempt = 0
    while True:
        try:
            answer = client.transact_get_items(
                TransactItems=[
                    {"Get": {"TableName": table_name, "Key": _key(project, slice_sk(level_sk, k))}}
                    for k in range(count)
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            conflict_backoff(attempt, f"level {project}/{level_sk}")
            attempt += 1
            continue
        items = [plain_item(r["Item"]) if r.get("Item") else None for r in answer["Responses"]]
        dealt = slice_count(items[0])
        if items[0] is not None and dealt > count:
            count = dealt  # dealt more slices than this container's default: read them all
            continue
        return items[:dealt] if items[0] is not None else items[:1]


def totals(slices: Sequence[dict | None]) -> dict:
    """The level's counters: the sums over its slices (absent slices count zero)."""
    with localcontext(DECIMAL_CONTEXT):
        out: dict = {"current_cost": ZERO, "held": ZERO, "available": ZERO, "model_cost": {}}
        for item in slices:
            if item is None:
                continue
            for name in ("current_cost", "held", "available"):
                out[name] += Decimal(item.get(name, ZERO))
            for model, spend in (item.get("model_cost") or {}).items():
                out["model_cost"][model] = out["model_cost"].get(model, ZERO) + Decimal(spend)
        return out


def level_view(slices: Sequence[dict | None]) -> dict | None:
    """The level item (plain values) with its counters summed over its slices; None if the level
    does not exist. ``slice_versions`` lists each slice's version (0: absent), for ``deal``."""
    head = slices[0] if slices else None
    if head is None:
        return None
    return {
        **head,
        **totals(slices),
        "slice_versions": [int(item.get("version", 0)) if item else 0 for item in slices],
    }


def read_level(client, table_name: str, project: str, level_sk: str) -> dict | None:
    """The level as ``level_view`` gives it, read at one instant (``read_slices``); None if absent."""
    return level_view(read_slices(client, table_name, project, level_sk))


def shares(available: Decimal, count: int) -> list[Decimal]:
    """`available` (USD) dealt into `count` shares that add up to it exactly: equal shares
    rounded down to SHARE_QUANTUM, slice 0 taking the rest (all of it when it is not positive)."""
    if count == 1 or available <= 0:
        return [available] + [ZERO] * (count - 1)
    with localcontext(DECIMAL_CONTEXT):
        share = (available / count).quantize(SHARE_QUANTUM, rounding=ROUND_DOWN)
        return [available - share * (count - 1)] + [share] * (count - 1)


def deal(
    table_name: str,
    project: str,
    level_sk: str,
    head: dict,
    counters: dict,
    versions: Sequence[int],
    count: int,
    *,
    tight: bool = False,
    reserve: Decimal = ZERO,
) -> list[dict]:
    """The Puts that rewrite a level as `count` slices: slice 0 is `head` (the level's item,
    plain values, without counters) with the counters' sums but ``available``, and every slice
    gets an equal share of ``counters["available"]`` (slice 0 `reserve` USD more, set aside for
    a charge about to land there), or in `tight` mode slice 0 all of it. Each Put is conditional on the version
    its slice had when read (`versions`, 0: absent), so the deal lands only on the counters it
    summed; a slice beyond the old count is created, one beyond the new count deleted.
    """
    available = Decimal(counters["available"])
    tight = tight or available <= 0  # no headroom to share: see the module's docstring
    if tight:
        dealt = [available] + [ZERO] * (count - 1)
    else:  # `reserve` (a charge about to land there) set aside on slice 0, the rest in shares
        reserve = min(max(reserve, ZERO), available)
        dealt = shares(available - reserve, count)
        dealt[0] += reserve
    period = {k: head.get(k) for k in ("period_start", "reset_at")}
    items = []
    for k in range(max(count, len(versions))):
        seen = versions[k] if k < len(versions) else 0
        key = _key(project, slice_sk(level_sk, k))
        condition = _version_condition(seen)
        if k >= count:
            items.append({"Delete": {"TableName": table_name, "Key": key, **condition}})
            continue
        own = (
            {**head, **{c: counters[c] for c in ("current_cost", "model_cost", "held")}, "slices": count}
            if k == 0
            else {"current_cost": ZERO, "model_cost": {}, "held": ZERO, "project": project, **period}
        )
        body = {**own, "available": dealt[k], "version": seen + 1, "tight": True if tight else None}
        body.pop("slice_versions", None)
        item = {**key, **{name: serialize(v) for name, v in body.items() if v is not None}}
        items.append({"Put": {"TableName": table_name, "Item": item, **condition}})
    return items


def deletions(table_name: str, project: str, level_sk: str, versions: Sequence[int]) -> list[dict]:
    """The Deletes of every slice of a level, each conditional on the version read."""
    return [
        {
            "Delete": {
                "TableName": table_name,
                "Key": _key(project, slice_sk(level_sk, k)),
                **_version_condition(seen),
            }
        }
        for k, seen in enumerate(versions)
    ]


def _version_condition(seen: int) -> dict:
    if seen == 0:
        return {"ConditionExpression": "attribute_not_exists(pk)"}
    return {
        "ConditionExpression": "version = :seen",
        "ExpressionAttributeValues": {":seen": {"N": str(seen)}},
    }


def _key(project: str, sk: str) -> dict:
    return {"pk": {"S": project_key(project)}, "sk": {"S": sk}}
