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

from __future__ import annotations  # noqa: I001

from types import EllipsisType

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import NamedTuple

from botocore.exceptions import ClientError

from budget_service.core.records import ClosedPeriod, roll, rule_period
from budget_service.core.errors import (
    BudgetExceeded,
    BudgetNotFound,
    Contention,
    InvalidInput,
    SpendLimitExceeded,
)
from budget_service.core.numbers import SPEND_MAX
from budget_service.core.numbers import DECIMAL_CONTEXT, MAX_MODELS_PER_USER
from budget_service.core.periods import Duration
from budget_service.store.base import (
    MAX_WRITE_ATTEMPTS,
    USER_PREFIX,
    BudgetStore,
    _plain,
    _serialize,
    plain_to_budget,
    project_key,
    user_key,
)

ZERO = Decimal(0)


class Move(NamedTuple):
    """What one write does to every level it touches.

    ``spend``: USD added to ``current_cost`` (and to ``model_cost[model]`` when ``model`` is set);
    ``held``: USD added to ``held`` (negative frees a hold); ``available`` moves by
    ``-(spend + held)``. ``need``: the write lands only while ``available >= need`` (a hold, a
    cost with ``if_within_budget``). ``open_period``: the write lands only while the level's
    period contains the write's time (``period_start <= now < reset_at``), so spend is never
    added to a finished period (it is rolled over first), nor, when the write arrives after a
    level already started a period later than its time, to a period other levels have closed
    (it is re-timed; see LevelWriter.write).
    """

    spend: Decimal = ZERO
    held: Decimal = ZERO
    model: str | None = None
    need: Decimal | None = None
    open_period: bool = True
    # A credit (issue 17): the user's item lands only while its current_cost (and
    # model_cost[model]) >= this, so spend never goes below zero; else SpendBelowCredit.
    floor: Decimal | None = None

    @property
    def available_delta(self) -> Decimal:
        with localcontext(DECIMAL_CONTEXT):
            return -(self.spend + self.held)


def limit_bound(delta: Decimal) -> Decimal:
    """The stored value a field may have for `delta` (USD) to be added and its result stay
    within +-SPEND_MAX: at most ``SPEND_MAX - delta`` when adding, at least ``-SPEND_MAX - delta``
    when taking away (limits.py says why)."""
    with localcontext(DECIMAL_CONTEXT):
        return SPEND_MAX - delta if delta > 0 else -SPEND_MAX - delta


def _within_limit(path: str, delta: Decimal, bound: str) -> str:
    """The condition that adding `delta` to `path` keeps it within +-SPEND_MAX (an absent
    `path` counts as 0, as the update's ``if_not_exists`` does)."""
    return f"(attribute_not_exists({path}) OR {path} {'<=' if delta > 0 else '>='} {bound})"


def over_limit(old: dict, move: Move) -> list[dict]:
    """The fields of a level item (`old`, Python values, as a failed condition returned it) that
    `move` would take past +-SPEND_MAX: ``{"field", "stored", "change", "limit"}`` each."""
    fields = []
    if move.spend:
        fields.append(("current_cost", old.get("current_cost", ZERO), move.spend))
        models = old.get("model_cost") or {}
        if move.model is not None and move.model in models:
            fields.append((f"model_cost[{move.model}]", models[move.model], move.spend))
    if move.held:
        fields.append(("held", old.get("held", ZERO), move.held))
    over = []
    for name, stored, delta in fields:
        bound = limit_bound(delta)
        if (delta > 0 and Decimal(stored) > bound) or (delta < 0 and Decimal(stored) < bound):
            limit = SPEND_MAX if delta > 0 else -SPEND_MAX
            over.append({"field": name, "stored": Decimal(stored), "change": delta, "limit": limit})
    return over


PROJECT_SK = "PROJECT"
TEAM_PREFIX = "TEAM#"


def team_sk(team: str) -> str:
    return TEAM_PREFIX + team


def level_name(project: str, sk: str) -> tuple[str, str]:
    """(kind, name) of a level's sort key: ("user", u), ("team", t) or ("project", project)."""
    if sk == PROJECT_SK:
        return "project", project
    if sk.startswith(TEAM_PREFIX):
        return "team", sk[len(TEAM_PREFIX) :]
    return "user", sk[len(USER_PREFIX) :]


def level_update(
    table_name: str,
    project: str,
    sk: str,
    move: Move,
    now: Decimal,
    *,
    pin_team: str | None | EllipsisType = ...,
) -> dict:
    """The TransactWriteItems ``Update`` of one level item (``sk``: USER#<user>, TEAM#<team> or
    PROJECT) for `move` (see Move).

    Conditional on the item existing and carrying ``available`` (user items written before holds
    get it at their next rewrite, see ``LevelWriter``), on every field it adds to staying within
    +-SPEND_MAX (``current_cost``, ``model_cost[model]``, ``held``: so no sum outgrows DynamoDB's
    38 digits, limits.py), plus what `move` asks. `pin_team` (user
    items): the write lands only while the user is in that team (None: in none), so the levels a
    charge moves are the ones the user belongs to at that instant. A failed condition answers
    the old item (``ReturnValuesOnConditionCheckFailure``), so the reason costs no read.
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
        values[":spend_bound"] = {"N": format(limit_bound(move.spend), "f")}
        conditions.append(_within_limit("current_cost", move.spend, ":spend_bound"))
        if move.model is not None:
            names["#model"] = move.model
            sets.append("model_cost.#model = if_not_exists(model_cost.#model, :zero) + :spend")
            # A new model only while the item tracks fewer than the limit (items stay < 400 KB).
            values[":max_models"] = {"N": str(MAX_MODELS_PER_USER)}
            conditions.append("(attribute_exists(model_cost.#model) OR size(model_cost) < :max_models)")
            conditions.append(_within_limit("model_cost.#model", move.spend, ":spend_bound"))
    if move.held:
        values[":held"] = {"N": format(move.held, "f")}
        sets.append("held = if_not_exists(held, :zero) + :held")
        values[":held_bound"] = {"N": format(limit_bound(move.held), "f")}
        conditions.append(_within_limit("held", move.held, ":held_bound"))
    if move.available_delta:
        values[":available"] = {"N": format(move.available_delta, "f")}
        sets.append("available = available + :available")
    if move.open_period:
        conditions.append("(attribute_not_exists(reset_at) OR reset_at > :now)")
        conditions.append("(attribute_not_exists(period_start) OR period_start <= :now)")
    if move.need is not None:
        values[":need"] = {"N": format(move.need, "f")}
        conditions.append("available >= :need")
    if move.floor is not None and sk.startswith(USER_PREFIX):
        values[":floor"] = {"N": format(move.floor, "f")}
        conditions.append("current_cost >= :floor")
        if move.model is not None:
            names["#model"] = move.model
            conditions.append("model_cost.#model >= :floor")
    if pin_team is None:
        conditions.append("attribute_not_exists(team)")
    elif pin_team is not ...:
        values[":team"] = {"S": pin_team}
        conditions.append("team = :team")
    update = {
        "TableName": table_name,
        "Key": {"pk": {"S": project_key(project)}, "sk": {"S": sk}},
        "UpdateExpression": "SET " + ", ".join(sets) + " ADD version :one",
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeValues": values,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if names:
        update["ExpressionAttributeNames"] = names
    return update


def level_absent(table_name: str, project: str, sk: str) -> dict:
    """A ConditionCheck that level `sk` does not exist: a charge that moves no such level proves
    it in the same transaction (a cap created meanwhile cancels it; see LevelWriter)."""
    return {
        "TableName": table_name,
        "Key": {"pk": {"S": project_key(project)}, "sk": {"S": sk}},
        "ConditionExpression": "attribute_not_exists(pk)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


class Plan(NamedTuple):
    """Which levels above the user a charge moves: the user's team (None: none) and which of
    the team and project items exist. A hint, never trusted: the transaction pins the user's team
    and checks the absence of every level it does not move, and a cancellation corrects it."""

    team: str | None
    present: set[str]  # sks of the levels that exist (no default: each plan needs its own set)

    def candidates(self) -> list[str]:
        return ([team_sk(self.team)] if self.team is not None else []) + [PROJECT_SK]


_HINTS: OrderedDict[tuple[str, str, str], Plan] = OrderedDict()
_HINTS_MAX = 10_000
_HINTS_LOCK = threading.Lock()


def _hint(table: str, project: str, user: str) -> Plan:
    with _HINTS_LOCK:
        plan = _HINTS.get((table, project, user))
        return Plan(plan.team, set(plan.present)) if plan else Plan(None, set())


def _remember(table: str, project: str, user: str, plan: Plan) -> None:
    with _HINTS_LOCK:
        _HINTS[(table, project, user)] = Plan(plan.team, set(plan.present))
        _HINTS.move_to_end((table, project, user))
        while len(_HINTS) > _HINTS_MAX:
            _HINTS.popitem(last=False)


class SpendBelowCredit(Exception):
    """A credit's floor failed: the user's spend (or the model's) is below it now. `old` is the
    user item as the failed condition saw it (Python values)."""

    def __init__(self, old: dict) -> None:
        super().__init__("spend is below the credit")
        self.old = old


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
    SpendLimitExceeded (422: a level's spend or holds would pass +-SPEND_MAX; details name the
    level), BudgetExceeded (402: ``need`` is over a level's ``available``; details name the
    level), InvalidInput (the per-user model cap), Cancelled (an extra item's condition failed: the
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
        extra: Callable[[list[str]], list[dict]] = lambda levels: [],
        *,
        levels: list[str] | None = None,
    ) -> list[str]:
        """One TransactWriteItems: ``extra(levels)`` (the operation's own items, told which levels
        above the user this attempt moves), the user's Update, and for each level above it an
        Update, or a ConditionCheck that it does not exist.

        `levels` None (a cost, a hold): the user's levels now: its team (pinned on the user's
        Update) and the project, learned from a per-container hint and corrected from the
        cancellation when the hint was wrong (an unknown user or team costs up to two more
        attempts, each writing nothing). `levels` given (settling or freeing a hold): exactly
        those (sks; a level deleted since is skipped). Returns the sks of the levels moved.

        A write timed `now` that arrives after one of its levels started a later period (the
        request was slow; the job or another charge rolled that level over meanwhile) is
        re-timed to the latest such period start and sent again, so every level counts it in
        the period containing that one instant: without it, a level not rolled over yet would
        count it in the period another level has already closed and recorded.
        """
        fixed = levels is not None
        plan = Plan(None, set(levels or [])) if fixed else _hint(self.table_name, project, user)
        repaired = 0
        conflicts = 0
        creating: dict | None = None
        while True:
            others = [sk for sk in (list(levels or []) if fixed else plan.candidates())]
            moved = [sk for sk in others if sk in plan.present]
            items = [*extra(moved)]
            n_extra = len(items)
            pin = ... if fixed else plan.team
            if creating is not None:  # the project's default_user_budget creates the user here
                items.append({"Put": creating})
            else:
                items.append(
                    {
                        "Update": level_update(
                            self.table_name, project, user_key(user), move, now, pin_team=pin
                        )
                    }
                )
            for sk in others:
                if sk in plan.present:
                    items.append({"Update": level_update(self.table_name, project, sk, move, now)})
                elif not fixed:
                    items.append({"ConditionCheck": level_absent(self.table_name, project, sk)})
            checked = [sk for sk in others if sk in plan.present or not fixed]
            try:
                self.client.transact_write_items(TransactItems=items)
                if not fixed:
                    _remember(self.table_name, project, user, plan)
                return moved
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = _reasons(exc)
                if any(code == "ValidationError" for code, _ in reasons):
                    # DynamoDB could not apply an item (a number it cannot store, an item over
                    # 400 KB). The limits are there so that no input gets here: a bug, not a
                    # conflict to retry.
                    raise
            extra_reasons = reasons[:n_extra]
            user_code, user_old = reasons[n_extra] if len(reasons) > n_extra else (None, None)
            level_reasons = dict(zip(checked, reasons[n_extra + 1 :], strict=False))
            codes = {code for code, _ in reasons if code is not None}
            if codes <= {"TransactionConflict"}:
                # Another transaction held one of the items; DynamoDB asks us to try again.
                if conflicts >= MAX_WRITE_ATTEMPTS:
                    raise Contention(f"budget {project}/{user} is being changed by too many writers; retry")
                time.sleep(random.uniform(0, 0.005 * 2**conflicts))
                conflicts += 1
                continue
            failed = "ConditionalCheckFailed"
            if creating is not None and user_code == failed:
                creating = None  # a concurrent first request created the user: charge it
                repaired += 1
                continue
            if user_code == failed and user_old is None:
                creating = None if fixed else self._default_user(project, user, move, now)
                if creating is None:
                    raise BudgetNotFound.for_user(project, user)
                plan = Plan(None, plan.present)
                repaired += 1
                continue
            if any(code == failed for code, _ in extra_reasons):
                raise Cancelled(extra_reasons, [(user_code, user_old), *level_reasons.values()])
            if repaired >= 4:
                raise Contention(f"budget {project}/{user}: its levels keep changing; retry")
            # Correct the plan: the user's real team, and which levels exist.
            changed = False
            seen_user = user_old or {}
            if user_code == failed and not fixed and seen_user.get("team") != plan.team:
                plan = Plan(
                    seen_user.get("team"),
                    plan.present | ({team_sk(seen_user["team"])} if seen_user.get("team") else set()),
                )
                changed = True
            for sk, (code, old) in level_reasons.items():
                if code != failed:
                    continue
                if sk in plan.present and old is None:  # deleted (or never there)
                    plan.present.discard(sk)
                    changed = True
                elif sk not in plan.present:  # the ConditionCheck found it: move it too
                    plan.present.add(sk)
                    changed = True
            if changed:
                repaired += 1
                continue
            if (
                move.floor is not None
                and user_code == failed
                and (
                    Decimal((user_old or {}).get("current_cost", 0)) < move.floor
                    or (
                        move.model is not None
                        and Decimal((user_old or {}).get("model_cost", {}).get(move.model, -1)) < move.floor
                    )
                )
            ):
                raise SpendBelowCredit(user_old or {})
            # Arrived late (see above): re-time it; the next attempt rolls over what that ends.
            started = [
                Decimal(old["period_start"])
                for code, old in [(user_code, user_old), *level_reasons.values()]
                if code == failed and old is not None and old.get("period_start") is not None
            ]
            if move.open_period and started and max(started) > now:
                now = max(started)
                repaired += 1
                continue
            refusals = []
            limited = []
            stuck = False
            for sk, old in [
                (user_key(user), user_old if user_code == failed else None),
                *((sk, old) for sk, (code, old) in level_reasons.items() if code == failed),
            ]:
                if old is None:
                    continue
                if self._repair(project, sk, old, move, now):
                    changed = True
                elif over := over_limit(old, move):
                    kind, name = level_name(project, sk)
                    limited += [{"level": kind, "name": name, **field} for field in over]
                elif move.need is not None and Decimal(old["available"]) < move.need:
                    kind, name = level_name(project, sk)
                    refusals.append(
                        {
                            "level": kind,
                            "name": name,
                            "available": Decimal(old["available"]),
                            "needed": move.need,
                        }
                    )
                else:
                    stuck = True
            if changed:
                repaired += 1
                continue
            if limited:  # before "over budget": a larger budget would not make it fit
                raise SpendLimitExceeded.at_levels(limited)
            if refusals:
                raise BudgetExceeded.at_levels(refusals)
            if stuck:
                raise InvalidInput(
                    f"a budget level of {project}/{user} already tracks {MAX_MODELS_PER_USER} models;"
                    " record this cost under one of them"
                )
            raise Contention(f"budget {project}/{user}: the write was cancelled ({sorted(codes)}); retry")

    def _default_user(self, project: str, user: str, move: Move, now: Decimal) -> dict | None:
        """The Put that creates an unknown user from the project's ``default_user_budget`` with
        this charge already applied (conditional on the user still being absent), or None when
        the project has none. BudgetExceeded when the new budget cannot cover ``move.need``."""
        from budget_service.core.records import Budget
        from budget_service.store.base import budget_to_item

        project_level = get_level(self.budgets, project, PROJECT_SK)
        default = (project_level or {}).get("default_user_budget")
        if not default:
            return None
        budget = Budget(
            project=project,
            user=user,
            total_budget=default["total_budget"],
            created_at=now,
            updated_at=now,
            duration=Duration(default["duration"]) if default.get("duration") else None,
            timezone=default.get("timezone"),
        ).with_period_from(now)
        if move.need is not None and budget.available < move.need:
            raise BudgetExceeded.at_level("user", user, available=budget.available, needed=move.need)
        budget = budget._replace(
            current_cost=move.spend,
            held=move.held,
            model_cost={move.model: move.spend} if move.model and move.spend else {},
        )
        return {
            "TableName": self.table_name,
            "Item": budget_to_item(budget),
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _repair(self, project: str, sk: str, old: dict, move: Move, now: Decimal) -> bool:
        """Fix what made a level's condition fail, when it is fixable; True if it was."""
        ended = move.open_period and "reset_at" in old and Decimal(old["reset_at"]) <= now
        legacy = "available" not in old
        if not (ended or legacy):
            return False
        kind, name = level_name(project, sk)
        if kind != "user":
            roll_level(self.client, self.table_name, project, sk, old, now)
            return True

        def change(current):
            if current is None:
                raise BudgetNotFound.for_user(project, name)
            if current.reset_at is not None and now >= current.reset_at:
                # The period's rollover: spend zeroed, live holds kept, the closed period recorded
                # in the same write (issue 17).
                write = roll(current, now)
                return write._replace(budget=write.budget._replace(updated_at=now))
            # Rewriting the item stores held and available (budget_to_item).
            return current if legacy else None

        self.budgets.update(project, name, change, seen=plain_to_budget(old))
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
                    project,
                    user,
                    move,
                    now,
                    extra=lambda levels: [
                        {"Put": self.budgets._ledger_put(project, user, ledger, replacing=replacing)}  # noqa: B023
                    ],  # noqa: B023
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


def roll_level(client, table_name: str, project: str, sk: str, old: dict, now: Decimal) -> bool:
    """Start a team or project level's current period (spend zeroed, live holds kept,
    ``available`` recomputed) and record the period that ended (issue 17), in one
    TransactWriteItems: the Update conditional on the ``version`` seen in `old` (so the record
    holds exactly the spend it closes) and the closed period's Put. Each period rolls over once
    whoever gets there first. False: the item changed or someone else rolled it (the caller
    retries from what its next attempt sees).

    `old` may be the due-for-reset index's entry (the scheduled job), which lacks the spend and
    the version: the item is read first (one GetItem), so the record holds what it closes."""
    if "version" not in old or "total_budget" not in old:
        item = client.get_item(
            TableName=table_name,
            ConsistentRead=True,
            Key={"pk": {"S": project_key(project)}, "sk": {"S": sk}},
        ).get("Item")
        if item is None or _plain(item).get("reset_at") != old.get("reset_at"):
            return False  # deleted, or rolled over by someone else since the index was read
        old = _plain(item)
    duration = Duration(old["duration"]) if old.get("duration") else None
    period = rule_period(duration, None, old.get("timezone"), old.get("period_start"), now)
    if period is None:
        return False
    kind, name = level_name(project, sk)
    closed = ClosedPeriod(
        project=project,
        level=kind.upper(),
        level_id="" if kind == "project" else name,
        start=Decimal(old.get("period_start", old.get("created_at", now))),
        end=Decimal(old["reset_at"]),
        total_budget=Decimal(old["total_budget"]),
        spend=Decimal(old.get("current_cost", 0)),
        model_cost={k: Decimal(v) for k, v in old.get("model_cost", {}).items()},
        held=Decimal(old.get("held", 0)),
        closed_by="rollover",
        closed_at=now,
        budget_created_at=old.get("created_at"),
    )
    for again in (False, True):
        try:
            _roll_level_once(client, table_name, project, sk, old, now, period, closed, again)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if again or codes[:1] not in ([None], ["None"]):
                return False  # the level changed or rolled over: the caller tries again
            # A record with this start and end exists (see store_history.history_items).
    return False


def _roll_level_once(client, table_name, project, sk, old, now, period, closed, again) -> None:
    from budget_service.store.history import period_put

    client.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": table_name,
                    "Key": {"pk": {"S": project_key(project)}, "sk": {"S": sk}},
                    "UpdateExpression": (
                        "SET current_cost = :zero, model_cost = :no_models, period_start = :start, reset_at = :end,"
                        " available = total_budget - if_not_exists(held, :zero), updated_at = :now ADD version :one"
                    ),
                    "ConditionExpression": "reset_at = :seen AND version = :version",
                    "ExpressionAttributeValues": {
                        ":zero": {"N": "0"},
                        ":no_models": {"M": {}},
                        ":start": _serialize(period.start),
                        ":end": _serialize(period.end),
                        ":now": _serialize(now),
                        ":one": {"N": "1"},
                        ":seen": _serialize(old["reset_at"]),
                        ":version": _serialize(old["version"]),
                    },
                }
            },
            period_put(table_name, closed, again=again),
        ]
    )


# ---- team and project levels (issue 14): their own items ----------------------------------------
#
# A level item has the same attributes as a user budget (total_budget, current_cost, model_cost,
# held, available, duration, timezone, period_start, reset_at, created_at, updated_at, version)
# plus ``level`` ("team" or "project") and, for a team, ``team``. They are written whole,
# conditional on ``version`` (or on being absent), like user budgets.


def get_level(budgets: BudgetStore, project: str, sk: str) -> dict | None:
    """A team or project level item as Python values (strongly consistent), or None."""
    item = budgets.client.get_item(
        TableName=budgets.table_name,
        Key={"pk": {"S": project_key(project)}, "sk": {"S": sk}},
        ConsistentRead=True,
    ).get("Item")
    return _plain(item) if item else None


def put_level(budgets: BudgetStore, project: str, sk: str, item: dict, seen_version: int) -> None:
    """Write a level item whole if it is still at `seen_version` (0: absent); StaleWrite if not."""
    from budget_service.store.base import StaleWrite

    condition = (
        {"ConditionExpression": "attribute_not_exists(pk)"}
        if seen_version == 0
        else {
            "ConditionExpression": "version = :seen",
            "ExpressionAttributeValues": {":seen": {"N": str(seen_version)}},
        }
    )
    full = {**item, "pk": project_key(project), "sk": sk, "version": seen_version + 1}
    try:
        budgets.client.put_item(
            TableName=budgets.table_name,
            Item={k: _serialize(v) for k, v in full.items() if v is not None},
            **condition,
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            raise StaleWrite from exc
        raise


def delete_level(budgets: BudgetStore, project: str, sk: str) -> bool:
    """Delete a level item (one TransactWriteItems, for its retry token); False if absent."""
    try:
        budgets.client.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": budgets.table_name,
                        "Key": {"pk": {"S": project_key(project)}, "sk": {"S": sk}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                }
            ]
        )
    except ClientError as exc:
        reasons = exc.response.get("CancellationReasons") or []
        if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
            return False
        raise
    return True


def list_teams(
    budgets: BudgetStore, project: str, *, limit: int, after: str | None
) -> tuple[list[dict], str | None]:
    """Up to `limit` team items of a project in team order, and the last team if more may follow."""
    kwargs: dict = {
        "TableName": budgets.table_name,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :team)",
        "ExpressionAttributeValues": {":pk": {"S": project_key(project)}, ":team": {"S": TEAM_PREFIX}},
        "ConsistentRead": True,
        "Limit": limit,
    }
    if after is not None:
        kwargs["ExclusiveStartKey"] = {"pk": {"S": project_key(project)}, "sk": {"S": team_sk(after)}}
    response = budgets.client.query(**kwargs)
    last = response.get("LastEvaluatedKey")
    return [_plain(i) for i in response.get("Items", [])], (
        last["sk"]["S"][len(TEAM_PREFIX) :] if last else None
    )


def count_users(budgets: BudgetStore, project: str, team: str | None = None) -> int:
    """How many user budgets the project has (in `team`, when given): a COUNT Query, one page per
    MB of the project's user items (it reads them; nothing is returned)."""
    kwargs: dict = {
        "TableName": budgets.table_name,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :user)",
        "ExpressionAttributeValues": {":pk": {"S": project_key(project)}, ":user": {"S": USER_PREFIX}},
        "Select": "COUNT",
    }
    if team is not None:
        kwargs["FilterExpression"] = "team = :team"
        kwargs["ExpressionAttributeValues"][":team"] = {"S": team}
    total = 0
    for page in budgets.client.get_paginator("query").paginate(**kwargs):
        total += page["Count"]
    return total


def count_users_by_team(budgets: BudgetStore, project: str) -> dict[str | None, int]:
    """How many user budgets of the project each team has (None: in no team), in one pass over
    the project's user items (one Query page per MB, only ``team`` returned). A list of teams
    counts its page from this one pass: a COUNT Query per team would read every user item of
    the project once per team (a FilterExpression filters after reading)."""
    kwargs: dict = {
        "TableName": budgets.table_name,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :user)",
        "ExpressionAttributeValues": {":pk": {"S": project_key(project)}, ":user": {"S": USER_PREFIX}},
        "ProjectionExpression": "#team",
        "ExpressionAttributeNames": {"#team": "team"},
    }
    counts: dict[str | None, int] = {}
    for page in budgets.client.get_paginator("query").paginate(**kwargs):
        for item in page.get("Items", []):
            team = item["team"]["S"] if "team" in item else None
            counts[team] = counts.get(team, 0) + 1
    return counts


LEVEL_SHARD_PREFIX = "LEVELS#"


def level_shard(project: str, sk: str) -> str:
    """The due-for-reset index partition of a team or project level with a period."""
    import zlib

    from budget_service.store.base import RESET_SHARDS

    return f"{LEVEL_SHARD_PREFIX}{zlib.crc32(f'{project}/{sk}'.encode()) % RESET_SHARDS}"


def due_levels(
    budgets: BudgetStore, shard: int, now: Decimal, *, limit: int, after: dict | None = None
) -> tuple[list[tuple[str, str, dict]], dict | None]:
    """One page of (project, sk, index entry) of team and project levels in partition
    ``LEVELS#<shard>`` whose period ended at or before `now` (the index projects the rule)."""
    from budget_service.store.base import PROJECT_PREFIX, RESET_INDEX

    kwargs = {
        "TableName": budgets.table_name,
        "IndexName": RESET_INDEX,
        "KeyConditionExpression": "reset_shard = :shard AND reset_at <= :now",
        "ExpressionAttributeValues": {
            ":shard": {"S": f"{LEVEL_SHARD_PREFIX}{shard}"},
            ":now": _serialize(now),
        },
        "Limit": limit,
    }
    if after is not None:
        kwargs["ExclusiveStartKey"] = after
    response = budgets.client.query(**kwargs)
    page = [(i["pk"][len(PROJECT_PREFIX) :], i["sk"], i) for i in map(_plain, response.get("Items", []))]
    return page, response.get("LastEvaluatedKey")
