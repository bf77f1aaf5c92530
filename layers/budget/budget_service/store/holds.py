"""Holds in DynamoDB: each hold is its own item, and every change of its state moves the
budget levels it reserved from in the same TransactWriteItems (store_levels.LevelWriter).

Hold item: ``pk = PROJECT#<project>``, ``sk = HOLD#<len(user)>:<user>#<hold_id>`` (the user in the
key, like the ledger's, so one user's holds are one cheap Query and a hold id of another user is
simply not found). Attributes: ``project``, ``user``, ``hold_id``, ``amount`` (USD), ``state``,
``created_at``, ``hold_expires_at`` (epoch seconds). While ``held`` it also carries
``reset_shard = HOLDS#<n>`` and ``reset_at = hold_expires_at``: the shared sparse
``due-for-reset`` index then lists it when it falls due, so the scheduled job's cost grows with
the holds due. Leaving ``held`` removes both, and sets ``expires_at`` (the table's TTL) a week on,
which keeps a settled hold long enough to answer a repeated settle.

The state machine, each arrow one conditional write, so each happens once whoever gets there first:

- ``held -> settled``: charge the cost, free the hold (``held -= amount``);
- ``held -> released`` (DELETE) and ``held -> expired`` (the job, or a refused hold): free it;
- ``released -> settled`` and ``expired -> settled``: a settle that came late still charges its
  cost once, and frees nothing (the hold was freed already).

The hold id ends with the amount (``<32 hex>-<amount>``): settle, release and expiry need it to
move ``held`` and ``available`` and so are one request each with no read; the hold item's key
contains the whole id, so an id with another amount names no hold.
"""

from __future__ import annotations

import re
import zlib
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from botocore.exceptions import ClientError

from budget_service.core.errors import BudgetNotFound, Contention, HoldNotFound
from budget_service.store import slices
from budget_service.store.base import (
    PROJECT_PREFIX,
    RESET_INDEX,
    RESET_SHARDS,
    RETRYABLE_REASONS,
    BudgetStore,
    conflict_backoff,
    plain_item,
    project_key,
    serialize,
)
from budget_service.store.levels import (
    Cancelled,
    LevelWriter,
    Move,
    hint,
    level_update,
    reasons_of,
)

HOLD_PREFIX = "HOLD#"
HOLD_SHARD_PREFIX = "HOLDS#"
# How long a finished hold is kept (DynamoDB TTL) to answer a repeated settle with its result.
FINISHED_HOLD_TTL_SECONDS = 7 * 24 * 3600
HOLD_ID_PATTERN = r"^[0-9a-f]{32}-[0-9]{1,13}(\.[0-9]{1,25})?$"
_HOLD_ID = re.compile(HOLD_ID_PATTERN)

HELD, SETTLED, RELEASED, EXPIRED = "held", "settled", "released", "expired"


def hold_sk(user: str, hold_id: str) -> str:
    return f"{HOLD_PREFIX}{len(user)}:{user}#{hold_id}"


def user_holds_prefix(user: str) -> str:
    return f"{HOLD_PREFIX}{len(user)}:{user}#"


def hold_shard(project: str, user: str, hold_id: str) -> str:
    return f"{HOLD_SHARD_PREFIX}{zlib.crc32(f'{project}/{user}/{hold_id}'.encode()) % RESET_SHARDS}"


def make_hold_id(token: str, amount: Decimal) -> str:
    """``<token>-<amount>``: `token` 32 hex digits, the amount (USD) in plain notation."""
    return f"{token}-{format(amount, 'f')}"


def amount_of(hold_id: str) -> Decimal:
    """The amount a hold id carries. A malformed id names no hold: HoldNotFound."""
    if not _HOLD_ID.match(hold_id):
        raise HoldNotFound(f"no hold {hold_id!r}")
    try:
        return Decimal(hold_id.split("-", 1)[1])
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
        raise HoldNotFound(f"no hold {hold_id!r}") from exc


def parse_hold_sk(sk: str) -> tuple[str, str]:
    """(user, hold_id) from a hold item's sort key."""
    rest = sk[len(HOLD_PREFIX) :]
    length, _, rest = rest.partition(":")
    n = int(length)
    return rest[:n], rest[n + 1 :]


class DueHold(NamedTuple):
    """An expired hold as the due-for-reset index lists it (its keys say all the job needs)."""

    project: str
    user: str
    hold_id: str
    expires_at: Decimal


# Settling or freeing a hold moves the levels it reserved from (its ``levels``), pinned here.
_PIN_LEVELS = "#levels = :levels"


class HoldStore:
    """Hold items and the level moves that go with them. Errors: those of LevelWriter, and
    HoldNotFound."""

    def __init__(self, budgets: BudgetStore) -> None:
        self.budgets = budgets
        self.levels = LevelWriter(budgets)
        self.client = budgets.client
        self.table_name = budgets.table_name

    def _levels_hint(self, project: str, user: str) -> list[str]:
        """The levels above the user its holds most likely reserved from (the hint of
        store_levels); a settle or release pins them on the hold and learns the real ones
        from a cancellation when they differ."""
        plan = hint(self.table_name, project, user)
        return [sk for sk in plan.candidates() if sk in plan.present]

    def _key(self, project: str, user: str, hold_id: str) -> dict:
        return {"pk": {"S": project_key(project)}, "sk": {"S": hold_sk(user, hold_id)}}

    def get(self, project: str, user: str, hold_id: str) -> dict | None:
        item = self.client.get_item(
            TableName=self.table_name, Key=self._key(project, user, hold_id), ConsistentRead=True
        ).get("Item")
        return plain_item(item) if item else None

    # ---- hold ----------------------------------------------------------------------------------

    def create(
        self,
        project: str,
        user: str,
        hold_id: str,
        amount: Decimal,
        expires_at: Decimal,
        now: Decimal,
        *,
        attributes: dict | None = None,
        ledger: dict | None = None,
    ) -> dict | None:
        """Reserve `amount` (USD) until `expires_at`: one TransactWriteItems of the hold item's Put,
        the ledger item's Put when an Idempotency-Key is given, and the level Update conditional
        on ``available >= amount``. Returns None when held, or the stored ledger item when the
        key was used before for this budget (nothing held again). BudgetExceeded (402) when a
        level lacks the headroom: nothing written."""
        item = {
            **(attributes or {}),
            "pk": project_key(project),
            "sk": hold_sk(user, hold_id),
            "project": project,
            "user": user,
            "hold_id": hold_id,
            "amount": amount,
            "state": HELD,
            "created_at": now,
            "hold_expires_at": expires_at,
            "reset_shard": hold_shard(project, user, hold_id),
            "reset_at": expires_at,
        }

        def put(levels: list[str]) -> dict:
            # The levels above the user it reserved from: settle and release free those.
            stored = {**item, "levels": levels}
            return {
                "Put": {
                    "TableName": self.table_name,
                    "Item": {k: serialize(v) for k, v in stored.items() if v is not None},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }

        move = Move(held=amount, need=amount)
        replacing: Decimal | None = None
        for _ in range(4):

            def extra(levels: list[str]) -> list[dict]:
                if ledger is None:
                    return [put(levels)]
                return [
                    put(levels),
                    {"Put": self.budgets._ledger_put(project, user, ledger, replacing=replacing)},  # noqa: B023
                ]  # noqa: B023

            try:
                self.levels.write(project, user, move, now, extra=extra)
                return None
            except Cancelled as cancelled:
                if cancelled.reasons[0][0] == "ConditionalCheckFailed" or ledger is None:
                    # A random 128-bit id that exists already: not a real case; say so if it is.
                    raise Contention("hold id collision; retry") from None
                first = cancelled.reasons[1][1]
            if first is None:
                replacing = None
                continue
            budget = self.budgets.get(project, user)
            if budget is None:
                raise BudgetNotFound.for_user(project, user)
            if first.get("created_at", Decimal(0)) < budget.created_at and replacing != first.get(
                "created_at"
            ):
                replacing = first.get("created_at", Decimal(0))  # a deleted budget's key
                continue
            return first
        raise Contention(f"budget {project}/{user}: its Idempotency-Key keeps changing; retry")

    # ---- settle, release, expire ---------------------------------------------------------------

    def settle(
        self,
        project: str,
        user: str,
        hold_id: str,
        cost: Decimal,
        model: str,
        now: Decimal,
        result: dict,
    ) -> tuple[dict, bool]:
        """Charge `cost` (USD) for the hold and free it, once.

        One TransactWriteItems when the hold is still held: the hold ``held -> settled`` (storing
        `result`, what a repeat answers) and the levels (spend ``+cost``, held ``-amount``). A hold
        already released or expired is charged only (``-> settled``, a second request). Returns
        (the settled hold item's fields, replayed): replayed is True when it was settled before,
        and then nothing is charged. HoldNotFound: no such hold for this user.
        """
        amount = amount_of(hold_id)
        from_state = HELD
        levels = self._levels_hint(project, user)
        for _ in range(6):
            frees = from_state == HELD
            update = {
                "Update": {
                    "TableName": self.table_name,
                    "Key": self._key(project, user, hold_id),
                    "UpdateExpression": (
                        "SET #state = :settled, settled_at = :now, settled_from = :from, "
                        "expires_at = :ttl, #result = :result REMOVE reset_shard, reset_at"
                    ),
                    "ConditionExpression": "attribute_exists(pk) AND #state = :from AND " + _PIN_LEVELS,
                    "ExpressionAttributeNames": {"#state": "state", "#result": "result", "#levels": "levels"},
                    "ExpressionAttributeValues": {
                        ":levels": serialize(levels),
                        ":settled": {"S": SETTLED},
                        ":from": {"S": from_state},
                        ":now": serialize(now),
                        ":ttl": serialize(int(now) + FINISHED_HOLD_TTL_SECONDS),
                        ":result": serialize({k: v for k, v in result.items() if v is not None}),
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
            move = Move(spend=cost, model=model, held=amount.copy_negate() if frees else Decimal(0))
            try:
                # The spend goes to the levels the hold reserved from (those it was authorized by).
                self.levels.write(project, user, move, now, extra=lambda moved: [update], levels=levels)  # noqa: B023
                return {**result, "settled_from": from_state, "settled_at": now}, False
            except Cancelled as cancelled:
                old = cancelled.reasons[0][1]
            if old is None:
                raise HoldNotFound(f"no hold {hold_id!r} for user {user!r} in project {project!r}")
            if old["state"] == SETTLED:
                return {
                    **old.get("result", {}),
                    "settled_from": old.get("settled_from"),
                    "settled_at": old.get("settled_at"),
                }, True
            from_state = old["state"]
            levels = list(old.get("levels") or [])
        raise Contention(f"hold {hold_id!r} is changing too fast; retry")

    def finish(
        self, project: str, user: str, hold_id: str, now: Decimal, state: str
    ) -> tuple[dict | None, bool]:
        """Free a held hold: ``held -> released`` (DELETE) or ``held -> expired`` (its time ran
        out). One TransactWriteItems with the levels (held ``-amount``). Returns (the hold item
        as it was before, changed): changed is False when the hold had already left ``held``
        (repeating is harmless). A hold whose budget was deleted is finished on its own.
        HoldNotFound: no such hold."""
        amount = amount_of(hold_id)
        levels = self._levels_hint(project, user)

        def finishing(pinned: list) -> dict:
            # The hold leaves held only while it still names the levels `pinned` (those freed).
            condition = "attribute_exists(pk) AND #state = :held AND " + _PIN_LEVELS
            names = {"#state": "state", "#levels": "levels"}
            values = {
                ":to": {"S": state},
                ":held": {"S": HELD},
                ":now": serialize(now),
                ":ttl": serialize(int(now) + FINISHED_HOLD_TTL_SECONDS),
                ":levels": serialize(pinned),
            }
            return {
                "Update": {
                    "TableName": self.table_name,
                    "Key": self._key(project, user, hold_id),
                    "UpdateExpression": (
                        "SET #state = :to, finished_at = :now, expires_at = :ttl REMOVE reset_shard, reset_at"
                    ),
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }

        try:
            for _ in range(3):
                try:
                    # Freeing a hold needs no open period: it moves held and available, never spend.
                    self.levels.write(
                        project,
                        user,
                        Move(held=amount.copy_negate(), open_period=False),
                        now,
                        extra=lambda moved: [finishing(levels)],  # noqa: B023
                        levels=levels,
                    )
                    return None, True
                except Cancelled as cancelled:
                    old = cancelled.reasons[0][1]
                if old is None:
                    raise HoldNotFound(f"no hold {hold_id!r} for user {user!r} in project {project!r}")
                if old["state"] != HELD:
                    return old, False
                levels = list(old.get("levels") or [])  # the levels it really reserved from
            raise Contention(f"hold {hold_id!r} is changing too fast; retry")
        except BudgetNotFound:
            # The budget was deleted: the user's own held went with it, but the team and project
            # levels above it still hold the amount. Free them with the hold (those deleted since
            # are skipped), and take the hold out of the due index.
            return self._finish_orphan(project, user, hold_id, amount, now, finishing)

    def _finish_orphan(
        self, project: str, user: str, hold_id: str, amount: Decimal, now: Decimal, finishing
    ) -> tuple[dict | None, bool]:
        """`finish` for a hold whose budget was deleted: one TransactWriteItems of the hold (pinned
        to the levels it reserved from) and an Update of each of those levels that still exists
        (held ``-amount``). The levels come from the hold item (one GetItem)."""
        move = Move(held=amount.copy_negate(), open_period=False)
        conflicts = 0
        for _ in range(4):
            item = self.get(project, user, hold_id)
            if item is None:
                raise HoldNotFound(f"no hold {hold_id!r} for user {user!r} in project {project!r}")
            if item.get("state") != HELD:
                return item, False
            pinned = list(item.get("levels") or [])
            present = list(pinned)
            tries = 0
            while tries <= len(pinned):
                hold_update = finishing(pinned)
                levels = [
                    {
                        "Update": level_update(
                            self.table_name, project, slices.pick(sk, slices.default_slices()), move, now
                        )
                    }
                    for sk in present
                ]
                try:
                    self.client.transact_write_items(TransactItems=[hold_update, *levels])
                    return None, True
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "TransactionCanceledException":
                        raise
                    reasons = reasons_of(exc)
                if {code for code, _ in reasons if code} <= RETRYABLE_REASONS:
                    conflict_backoff(conflicts, f"hold {hold_id!r}")  # nothing written: again
                    conflicts += 1
                    continue
                tries += 1
                gone = {
                    sk for sk, (code, old) in zip(present, reasons[1:], strict=False) if code and old is None
                }
                if reasons[0][0] or not gone:
                    break  # the hold changed (read it again), or a level refused for another reason
                present = [sk for sk in present if sk not in gone]  # a level deleted since
        raise Contention(f"hold {hold_id!r} is changing too fast; retry")

    # ---- finding expired holds -----------------------------------------------------------------

    def expired_of_user(self, project: str, user: str, now: Decimal, limit: int = 25) -> list[str]:
        """Ids of up to `limit` of the user's holds still ``held`` past their expiry (one Query of
        the user's hold items; finished ones stay only until their TTL)."""
        response = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            FilterExpression="#state = :held AND hold_expires_at <= :now",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":pk": {"S": project_key(project)},
                ":prefix": {"S": user_holds_prefix(user)},
                ":held": {"S": HELD},
                ":now": serialize(now),
            },
            ProjectionExpression="sk",
            ConsistentRead=True,
        )
        return [parse_hold_sk(item["sk"]["S"])[1] for item in response.get("Items", [])][:limit]

    def due(
        self, shard: int, now: Decimal, *, limit: int, after: dict | None = None
    ) -> tuple[list[DueHold], dict | None]:
        """One page of held holds in index partition ``HOLDS#<shard>`` whose expiry is at or before
        `now`, and where to continue (None: no more). Read from the due-for-reset index."""
        kwargs = {
            "TableName": self.table_name,
            "IndexName": RESET_INDEX,
            "KeyConditionExpression": "reset_shard = :shard AND reset_at <= :now",
            "ExpressionAttributeValues": {
                ":shard": {"S": f"{HOLD_SHARD_PREFIX}{shard}"},
                ":now": serialize(now),
            },
            "Limit": limit,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = after
        response = self.client.query(**kwargs)
        page = []
        for raw in response.get("Items", []):
            item = plain_item(raw)
            user, hold_id = parse_hold_sk(item["sk"])
            page.append(DueHold(item["pk"][len(PROJECT_PREFIX) :], user, hold_id, item["reset_at"]))
        return page, response.get("LastEvaluatedKey")
