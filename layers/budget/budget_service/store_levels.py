"""Budget levels in DynamoDB: the one conditional Update that moves a level's spend and holds,
and the TransactWriteItems that carries it with the items of one operation (a ledger entry, a
hold). The only module besides the other store modules that touches boto3.

Every budget level item (today the user's ``sk = USER#<user>``) keeps three numbers that every
write moves together, so ``available = total_budget - current_cost - held`` always holds:

- ``current_cost``: spend of the current period (USD);
- ``held``: the sum of the amounts of its live holds (USD);
- ``available``: the stored headroom. DynamoDB condition expressions cannot add, so a hold's
  check (``available >= :amount``) needs the headroom stored; each write moves it with
  ``SET available = available + :delta`` in the same update that moves the others.

Every cost-changing write is one TransactWriteItems, with or without an Idempotency-Key: botocore
puts one ClientRequestToken on each call and sends the same token on its own retries, and
DynamoDB applies a token's transaction once for 10 minutes, so a retry after a late or lost answer
never charges twice (an UpdateItem has no such token: its retry would ADD again).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from botocore.exceptions import ClientError

from budget_service.errors import BudgetExceeded, BudgetNotFound, Contention, InvalidInput
from budget_service.models import DECIMAL_CONTEXT, MAX_MODELS_PER_USER
from budget_service.store import (
    MAX_WRITE_ATTEMPTS,
    BudgetStore,
    _plain,
    _serialize,
    budget_key,
    plain_to_budget,
)

ZERO = Decimal(0)


@dataclass(frozen=True)
class Move:
    """What one write does to every level it touches.

    ``spend``: USD added to ``current_cost`` (and to ``model_cost[model]`` when ``model`` is set);
    ``held``: USD added to ``held`` (negative frees a hold); ``available`` moves by
    ``-(spend + held)``. ``need``: the write lands only while ``available >= need`` (a hold, a
    cost with ``if_within_budget``). ``open_period``: the write lands only while the level's
    period has not ended, so spend is never added to a finished period (it is rolled over first).
    """

    spend: Decimal = ZERO
    held: Decimal = ZERO
    model: str | None = None
    need: Decimal | None = None
    open_period: bool = True

    @property
    def available_delta(self) -> Decimal:
        with localcontext(DECIMAL_CONTEXT):
            return -(self.spend + self.held)


def level_update(table_name: str, project: str, user: str, move: Move, now: Decimal) -> dict:
    """The TransactWriteItems ``Update`` of one user level for `move` (see Move).

    Conditional on the item existing and carrying ``available`` (items written before holds get
    it at their next rewrite, see ``LevelWriter``), plus what `move` asks. A failed condition
    answers the old item (``ReturnValuesOnConditionCheckFailure``), so the reason costs no read.
    """
    names: dict = {}
    values: dict = {
        ":now": _serialize(now),
        ":one": {"N": "1"},
        ":zero": {"N": "0"},
    }
    sets = ["updated_at = :now"]
    conditions = ["attribute_exists(pk)", "attribute_exists(available)"]
    # Plain notation: DynamoDB takes "1E-24" too, but moto's arithmetic parses only plain.
    if move.spend:
        values[":spend"] = {"N": format(move.spend, "f")}
        sets.append("current_cost = if_not_exists(current_cost, :zero) + :spend")
        if move.model is not None:
            names["#model"] = move.model
            sets.append("model_cost.#model = if_not_exists(model_cost.#model, :zero) + :spend")
            # A new model only while the item tracks fewer than the limit (items stay < 400 KB).
            values[":max_models"] = {"N": str(MAX_MODELS_PER_USER)}
            conditions.append("(attribute_exists(model_cost.#model) OR size(model_cost) < :max_models)")
    if move.held:
        values[":held"] = {"N": format(move.held, "f")}
        sets.append("held = if_not_exists(held, :zero) + :held")
    if move.available_delta:
        values[":available"] = {"N": format(move.available_delta, "f")}
        sets.append("available = available + :available")
    if move.open_period:
        conditions.append("(attribute_not_exists(reset_at) OR reset_at > :now)")
    if move.need is not None:
        values[":need"] = {"N": format(move.need, "f")}
        conditions.append("available >= :need")
    update = {
        "TableName": table_name,
        "Key": budget_key(project, user),
        "UpdateExpression": "SET " + ", ".join(sets) + " ADD version :one",
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeValues": values,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if names:
        update["ExpressionAttributeNames"] = names
    return update


@dataclass
class Cancelled(Exception):
    """A transaction's non-level items failed their conditions: what each item's reason said.

    ``reasons[i]`` is ``(code, old item as Python values or None)`` for the i-th extra item
    (code None: that item's condition held). ``levels`` is the same for each level item.
    """

    reasons: list[tuple[str | None, dict | None]]
    levels: list[tuple[str | None, dict | None]] = field(default_factory=list)


def _reasons(exc: ClientError) -> list[tuple[str | None, dict | None]]:
    out = []
    for reason in exc.response.get("CancellationReasons") or []:
        code = reason.get("Code")
        item = reason.get("Item")
        out.append((None if code in (None, "None") else code, _plain(item) if item else None))
    return out


class LevelWriter:
    """Runs one operation's TransactWriteItems: its own items (a ledger Put, a hold Put/Update),
    then one Update per level. Repairs what a level's failed condition shows and tries again:
    a period that has ended is rolled over (version-conditional, ``BudgetStore.update``) and an
    item written before holds existed gets its ``available``. Raises BudgetNotFound (no user),
    BudgetExceeded (402: ``need`` is over a level's ``available``; details name the level),
    InvalidInput (the per-user model cap), Cancelled (an extra item's condition failed: the
    caller decides), Contention (DynamoDB kept reporting conflicts).
    """

    def __init__(self, budgets: BudgetStore) -> None:
        self.budgets = budgets
        self.client = budgets.client
        self.table_name = budgets.table_name

    def write(
        self,
        project: str,
        user: str,
        move: Move,
        now: Decimal,
        extra: Callable[[], list[dict]] = list,
    ) -> None:
        repaired = 0
        conflicts = 0
        while True:
            items = [*extra(), {"Update": level_update(self.table_name, project, user, move, now)}]
            try:
                self.client.transact_write_items(TransactItems=items)
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = _reasons(exc)
            n_extra = len(items) - 1
            extra_reasons, level_reasons = reasons[:n_extra], reasons[n_extra:]
            codes = {code for code, _ in reasons if code is not None}
            if codes <= {"TransactionConflict"}:
                # Another transaction held one of the items; DynamoDB asks us to try again.
                if conflicts >= MAX_WRITE_ATTEMPTS:
                    raise Contention(f"budget {project}/{user} is being changed by too many writers; retry")
                time.sleep(random.uniform(0, 0.005 * 2**conflicts))
                conflicts += 1
                continue
            (level_code, level_old), = level_reasons or [(None, None)]
            if level_code == "ConditionalCheckFailed" and level_old is None:
                raise BudgetNotFound.for_user(project, user)
            if any(code == "ConditionalCheckFailed" for code, _ in extra_reasons):
                raise Cancelled(extra_reasons, level_reasons)
            if level_code != "ConditionalCheckFailed":
                raise Contention(f"budget {project}/{user}: the write was cancelled ({sorted(codes)}); retry")
            assert level_old is not None
            if repaired >= 2:
                raise Contention(f"budget {project}/{user}: its period keeps ending; retry")
            if self._repair(project, user, level_old, move, now):
                repaired += 1
                continue
            if move.need is not None and Decimal(level_old["available"]) < move.need:
                raise BudgetExceeded.at_level(
                    "user", user, available=Decimal(level_old["available"]), needed=move.need
                )
            raise InvalidInput(
                f"budget {project}/{user} already tracks {MAX_MODELS_PER_USER} models;"
                " record this cost under one of them"
            )

    def _repair(self, project: str, user: str, old: dict, move: Move, now: Decimal) -> bool:
        """Fix what made the level's condition fail, when it is fixable; True if it was."""
        ended = move.open_period and "reset_at" in old and Decimal(old["reset_at"]) <= now
        legacy = "available" not in old
        if not (ended or legacy):
            return False

        def change(current):
            if current is None:
                raise BudgetNotFound.for_user(project, user)
            if current.reset_at is not None and now >= current.reset_at:
                # The period's rollover: spend zeroed, live holds kept.
                return dataclasses.replace(current.as_of(now), updated_at=now)
            # Rewriting the item stores held and available (budget_to_item).
            return current if legacy else None

        self.budgets.update(project, user, change, seen=plain_to_budget(old))
        return True

    # ---- cost updates (issue 4, issue 11) ------------------------------------------------------

    def add_cost(
        self,
        project: str,
        user: str,
        model: str,
        cost: Decimal,
        now: Decimal,
        *,
        ledger: dict | None = None,
        within_budget: bool = False,
    ) -> dict | None:
        """Charge `cost` (USD) to the user's spend and ``model_cost[model]``: one TransactWriteItems.

        With `ledger` ({"key", "created_at", "expires_at", and the attributes to store}), the same
        transaction puts the Idempotency-Key's ledger item, only if the key is new. Returns None
        when charged, or the stored ledger item (Python values) when the key was already used for
        this budget: nothing is charged again. A ledger item older than the budget's
        ``created_at`` was left by a deleted budget of the same name: it is replaced (conditional
        on its ``created_at``) and the cost charged, so a key belongs to one budget (issue 11).
        Replays cost one GetItem more (the budget's ``created_at``).

        `within_budget`: charge only while ``available >= cost``, else BudgetExceeded (402).
        Errors: see LevelWriter.
        """
        move = Move(spend=cost, model=model, need=cost if within_budget else None)
        if ledger is None:
            self.write(project, user, move, now)
            return None
        replacing: Decimal | None = None
        while True:
            try:
                self.write(
                    project, user, move, now,
                    extra=lambda: [{"Put": self.budgets._ledger_put(project, user, ledger, replacing=replacing)}],
                )
                return None
            except Cancelled as cancelled:
                first = cancelled.reasons[0][1]
            if first is None:  # the stale entry we meant to replace is gone: someone replaced it
                replacing = None
                continue
            budget = self.budgets.get(project, user)
            if budget is None:
                raise BudgetNotFound.for_user(project, user)
            if first.get("created_at", ZERO) < budget.created_at and replacing != first.get("created_at"):
                replacing = first.get("created_at", ZERO)
                continue
            return first
