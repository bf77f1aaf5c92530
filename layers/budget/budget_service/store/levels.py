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

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
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
from budget_service.store import slices
from budget_service.store.base import (
    PROJECT_PREFIX,
    RETRYABLE_REASONS,
    USER_PREFIX,
    conflict_backoff,
    BudgetStore,
    plain_item,
    serialize,
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
    # A credit (an adjustment): the user's item lands only while its current_cost (and
    # model_cost[model]) >= this, so spend never goes below zero; else SpendBelowCredit.
    floor: Decimal | None = None

    @property
    def available_delta(self) -> Decimal:
        with localcontext(DECIMAL_CONTEXT):
            return -(self.spend + self.held)


def limit_bound(delta: Decimal, limit: Decimal | None = None) -> Decimal:
    """The stored value a field may have for `delta` (USD) to be added and its result stay
    within +-`limit` (default SPEND_MAX): at most ``limit - delta`` when adding, at least
    ``-limit - delta`` when taking away (core/numbers.py says why)."""
    limit = SPEND_MAX if limit is None else limit  # read at the call: the module's value
    with localcontext(DECIMAL_CONTEXT):
        return limit - delta if delta > 0 else -limit - delta


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
    guard: str | None = None,
) -> dict:
    """The TransactWriteItems ``Update`` of one level item (``sk``: USER#<user>, TEAM#<team> or
    PROJECT) for `move` (see Move).

    Conditional on the item existing and carrying ``available`` (user items written before holds
    get it at their next rewrite, see ``LevelWriter``), on every field it adds to staying within
    +-SPEND_MAX (``current_cost``, ``model_cost[model]``, ``held``: so no sum outgrows DynamoDB's
    38 digits, core/numbers.py), plus what `move` asks. `pin_team` (user
    items): the write lands only while the user is in that team (None: in none), so the levels a
    charge moves are the ones the user belongs to at that instant. A failed condition answers
    the old item (``ReturnValuesOnConditionCheckFailure``), so the reason costs no read.
    """
    names: dict = {}
    values: dict = {
        ":now": serialize(now),
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
    debit = move.available_delta.copy_negate()
    if guard is not None and debit > 0:
        # A slice (store/slices.py) in normal mode never goes below zero, so its share admits
        # only what the level can cover; the level's own item in tight mode takes any debit.
        values[":debit"] = {"N": format(debit, "f")}
        own = "attribute_exists(tight) OR " if guard == slices.HEAD else ""
        conditions.append(f"({own}available >= :debit)")
    if guard == slices.OTHER:
        conditions.append("attribute_not_exists(tight)")  # in tight mode the level's item takes all
    if guard is not None:
        conditions += _slice_bounds(move, values, own=guard == slices.HEAD)
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


def _slice_bounds(move: Move, values: dict, *, own: bool) -> list[str]:
    """The conditions that keep a slice's sums within SPEND_MAX divided by the number of slices,
    so that the level's sums stay within SPEND_MAX (core/numbers.py says why) without a read. The
    level's own item in tight mode holds everything and is bound by SPEND_MAX itself; a slice
    at its bound sends the charge there (LevelWriter._tighten)."""
    share = SPEND_MAX / slices.default_slices()
    conditions = []
    for path, delta, name in (
        ("current_cost", move.spend, ":spend_share"),
        ("held", move.held, ":held_share"),
    ):
        if not delta:
            continue
        values[name] = {"N": format(limit_bound(delta, share), "f")}
        paths = [path] + (["model_cost.#model"] if path == "current_cost" and move.model is not None else [])
        for checked in paths:
            condition = _within_limit(checked, delta, name)
            conditions.append(f"(attribute_exists(tight) OR {condition})" if own else condition)
    return conditions


def over_slice_bound(old: dict, move: Move) -> bool:
    """Whether `move` would take a slice (`old`, plain values) past its share of SPEND_MAX (see
    _slice_bounds)."""
    share = SPEND_MAX / slices.default_slices()
    fields = [(old.get("current_cost", ZERO), move.spend), (old.get("held", ZERO), move.held)]
    if move.model is not None:
        fields.append(((old.get("model_cost") or {}).get(move.model, ZERO), move.spend))
    with localcontext(DECIMAL_CONTEXT):
        return any(delta and abs(Decimal(stored) + delta) > share for stored, delta in fields)


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


def hint(table: str, project: str, user: str) -> Plan:
    """This container's last plan for a user's charges (a copy; empty when none)."""
    with _HINTS_LOCK:
        plan = _HINTS.get((table, project, user))
        return Plan(plan.team, set(plan.present)) if plan else Plan(None, set())


def remember(table: str, project: str, user: str, plan: Plan) -> None:
    """Keep the plan a charge landed with, for the user's next charges in this container."""
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


def reasons_of(exc: ClientError) -> list[tuple[str | None, dict | None]]:
    """A cancelled transaction's reasons, one per item: ``(code or None, old item or None)``."""
    out = []
    for reason in exc.response.get("CancellationReasons") or []:
        code = reason.get("Code")
        item = reason.get("Item")
        out.append((None if code in (None, "None") else code, plain_item(item) if item else None))
    return out


# A level is near its cap, and dealt in tight mode (store/slices.py) rather than in shares again,
# when its headroom is under this many times the charge, or under one slice's share of its cap.
NEAR_CAP_FACTOR = 2
MAX_REPAIRS = 12  # attempts that changed the plan, rolled a period or spread a charge


class _WriteState:
    """One LevelWriter.write in progress: what the next attempt sends. (A plain class: a
    dataclass costs milliseconds at import, in every function's cold start.)"""

    def __init__(self, *, fixed: bool, now: Decimal, move: Move) -> None:
        self.fixed = fixed
        self.now = now
        self.move = move
        self.plan = Plan(None, set())
        self.levels: list[str] = []
        self.conflicts = 0
        self.repaired = 0
        self.creating: dict | None = None
        # Levels whose own item this charge moves (tight mode, or a charge set aside there).
        self.tight: set[str] = set()

    def placement(self, level_sk: str) -> str:
        """The item of the level this attempt moves: a slice at random, or in tight mode its own."""
        return level_sk if level_sk in self.tight else slices.pick(level_sk, slices.default_slices())


def below_floor(user_old: dict, move: Move) -> bool:
    """Whether a credit's floor failed on the user item as DynamoDB saw it (`user_old`)."""
    assert move.floor is not None
    if Decimal(user_old.get("current_cost", 0)) < move.floor:
        return True
    return move.model is not None and Decimal(user_old.get("model_cost", {}).get(move.model, -1)) < move.floor


def _ended(view: dict, state: _WriteState) -> bool:
    return (
        state.move.open_period and view.get("reset_at") is not None and Decimal(view["reset_at"]) <= state.now
    )


class Reading(NamedTuple):
    """DynamoDB's cancellation reasons of one attempt, read by role (see ``read_reasons``).

    ``extra``: ``(code, old)`` of each of the operation's own items; ``user``: the user item's;
    ``levels``: for each level sk, the ``(counter sk, code, old)`` of its items whose condition
    failed (old None: the item is absent). ``codes``: every reason code given.
    """

    extra: list[tuple[str | None, dict | None]]
    user: tuple[str | None, dict | None]
    levels: dict[str, list[tuple[str, str, dict | None]]]
    codes: set[str]

    @property
    def conflict_only(self) -> bool:
        """Nothing failed but another transaction's items in flight, or a partition out of
        write capacity: nothing was written; send it again after a backoff."""
        return self.codes <= RETRYABLE_REASONS

    @property
    def user_failed(self) -> bool:
        return self.user[0] == FAILED


FAILED = "ConditionalCheckFailed"


def read_reasons(
    reasons: list[tuple[str | None, dict | None]], n_extra: int, roles: list[tuple[str, str]]
) -> Reading:
    """A pure reading of a cancelled attempt: `reasons` as ``reasons_of`` gives them, for a
    transaction of `n_extra` own items, the user's item, then one item per entry of `roles`
    (``(level sk, counter sk)``)."""
    padded = reasons + [(None, None)] * (n_extra + 1 + len(roles) - len(reasons))
    levels: dict[str, list[tuple[str, str, dict | None]]] = {}
    for (level_sk, counter_sk), (code, old) in zip(roles, padded[n_extra + 1 :], strict=False):
        if code == FAILED:
            levels.setdefault(level_sk, []).append((counter_sk, code, old))
    return Reading(
        extra=padded[:n_extra],
        user=padded[n_extra],
        levels=levels,
        codes={code for code, _ in reasons if code is not None},
    )


class LevelWriter:
    """Runs one operation's TransactWriteItems: its own items (a ledger Put, a hold Put/Update),
    the user's Update, and for each level above the user an Update of one or more of its slices
    (store/slices.py). Repairs what a failed condition shows and tries again: a period that has
    ended is rolled over, an item written before holds gets its ``available``, a slice whose
    share is too small sends the charge where the level's headroom is. Raises BudgetNotFound (no
    user), SpendLimitExceeded (422: a level's spend or holds would pass +-SPEND_MAX),
    BudgetExceeded (402: ``need`` is over a level's whole headroom; details name the level),
    InvalidInput (the per-user model cap), Cancelled (an extra item's condition failed: the
    caller decides), Contention (503: conflicts outlasted the retries).
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
        Update of a slice (or of several, each taking a part), or a ConditionCheck that it does
        not exist.

        `levels` None (a cost, a hold): the user's levels now: its team (pinned on the user's
        Update) and the project, learned from a per-container hint and corrected from the
        cancellation when the hint was wrong. `levels` given (settling or freeing a hold):
        exactly those (sks; a level deleted since is skipped). Returns the sks of the levels moved.

        A write timed `now` that arrives after one of its levels started a later period is
        re-timed to the latest such period start and sent again, so every level counts it in
        the period containing that one instant.
        """
        state = _WriteState(fixed=levels is not None, now=now, move=move)
        state.plan = Plan(None, set(levels or [])) if state.fixed else hint(self.table_name, project, user)
        state.levels = list(levels or [])
        while True:
            items, n_extra, roles, moved = self._attempt(project, user, state, extra)
            try:
                self.client.transact_write_items(TransactItems=items)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = reasons_of(exc)
                if any(code == "ValidationError" for code, _ in reasons):
                    # DynamoDB could not apply an item (a number it cannot store, an item over
                    # 400 KB). The limits are there so that no input gets here: a bug.
                    raise
                self._after_cancel(project, user, state, read_reasons(reasons, n_extra, roles))
                continue
            if not state.fixed:
                remember(self.table_name, project, user, state.plan)
            return moved

    def _attempt(self, project, user, state: _WriteState, extra) -> tuple[list[dict], int, list, list[str]]:
        """The items of one attempt, how many are the operation's own, each level item's role
        ``(level sk, counter sk)``, and the levels it moves."""
        plan, move, now = state.plan, state.move, state.now
        others = list(state.levels) if state.fixed else plan.candidates()
        moved = [sk for sk in others if sk in plan.present]
        items = [*extra(moved)]
        n_extra = len(items)
        if state.creating is not None:  # the project's default_user_budget creates the user here
            items.append({"Put": state.creating})
        else:
            pin = ... if state.fixed else plan.team
            update = level_update(self.table_name, project, user_key(user), move, now, pin_team=pin)
            items.append({"Update": update})
        roles: list[tuple[str, str]] = []
        for sk in others:
            if sk in plan.present:
                counter = state.placement(sk)
                guard = slices.HEAD if counter == sk else slices.OTHER
                update = level_update(self.table_name, project, counter, move, now, guard=guard)
                items.append({"Update": update})
                roles.append((sk, counter))
            elif not state.fixed:
                # A slice at random: a level created meanwhile has every slice, so its absence
                # proves the level's, without every charge naming one item.
                counter = slices.pick(sk, slices.default_slices())
                items.append({"ConditionCheck": level_absent(self.table_name, project, counter)})
                roles.append((sk, counter))
        return items, n_extra, roles, moved

    def _after_cancel(self, project: str, user: str, state: _WriteState, reading: Reading) -> None:
        """Decide the next attempt from a cancelled one (changes `state`), or raise."""

        if reading.conflict_only:
            slices.conflict_backoff(state.conflicts, f"budget {project}/{user}")
            state.conflicts += 1
            return
        if state.repaired >= MAX_REPAIRS:
            # Others keep changing these levels (dealing, rolling over): contention like any
            # other, so back off, within the request's retry time.
            slices.conflict_backoff(state.repaired - MAX_REPAIRS, f"budget {project}/{user}")
        state.repaired += 1
        if self._user_changed(project, user, state, reading):
            return
        if any(code == FAILED for code, _ in reading.extra):
            levels = [(c, old) for entries in reading.levels.values() for _, c, old in entries]
            raise Cancelled(reading.extra, [reading.user, *levels])
        if self._plan_changed(project, state, reading):
            return
        user_old = reading.user[1] if reading.user_failed else None
        if state.move.floor is not None and user_old is not None and below_floor(user_old, state.move):
            raise SpendBelowCredit(user_old)
        if self._retimed(state, reading):
            return
        self._repair_or_refuse(project, user, state, reading)

    def _user_changed(self, project: str, user: str, state: _WriteState, reading: Reading) -> bool:
        """The user was created meanwhile, or is absent (a default budget may create it)."""
        if state.creating is not None and reading.user_failed:
            state.creating = None  # a concurrent first request created the user: charge it
            return True
        if reading.user_failed and reading.user[1] is None:
            state.creating = None if state.fixed else self._default_user(project, user, state.move, state.now)
            if state.creating is None:
                raise BudgetNotFound.for_user(project, user)
            state.plan = Plan(None, state.plan.present)
            return True
        return False

    def _plan_changed(self, project: str, state: _WriteState, reading: Reading) -> bool:
        """Correct the plan from what the reasons show: the user's real team, which levels exist."""
        plan = state.plan
        changed = False
        seen_user = reading.user[1] or {}
        if reading.user_failed and not state.fixed and seen_user.get("team") != plan.team:
            team = seen_user.get("team")
            state.plan = plan = Plan(team, plan.present | ({team_sk(team)} if team else set()))
            changed = True
        for sk, entries in reading.levels.items():
            absent = any(old is None for _, _, old in entries)
            if sk in plan.present and absent and slices.slice_level(entries[0][0]) is None:
                plan.present.discard(sk)  # the level's own item is gone: deleted
                changed = True
            elif sk in plan.present and absent:
                # A slice is missing: the level was dealt fewer slices than this container
                # deals (an item from before slices, or LEVEL_SLICES raised). Deal it again.
                if not rebalance_level(self.client, self.table_name, project, sk):
                    plan.present.discard(sk)  # no level at all: deleted
                changed = True
            elif sk not in plan.present:  # the ConditionCheck found it: move it too
                plan.present.add(sk)
                changed = True
        return changed

    @staticmethod
    def _retimed(state: _WriteState, reading: Reading) -> bool:
        """Arrived late (see write): re-time it; the next attempt rolls over what that ends."""
        olds = [reading.user[1]] if reading.user_failed else []
        olds += [old for entries in reading.levels.values() for _, _, old in entries]
        started = [
            Decimal(old["period_start"]) for old in olds if old and old.get("period_start") is not None
        ]
        if state.move.open_period and started and max(started) > state.now:
            state.now = max(started)
            return True
        return False

    def _repair_or_refuse(self, project: str, user: str, state: _WriteState, reading: Reading) -> None:
        """Roll over what ended, send a charge to where its level's headroom is, or raise what
        the failed conditions mean (SpendLimitExceeded, BudgetExceeded, InvalidInput)."""
        move, now = state.move, state.now
        failed = [(user_key(user), user_key(user), reading.user[1])] if reading.user_failed else []
        failed += [
            (sk, counter, old) for sk, entries in reading.levels.items() for counter, _, old in entries
        ]
        limited: list[dict] = []
        refusals: list[dict] = []
        stuck = changed = False
        for level_sk, counter, old in failed:
            if old is None:
                continue
            kind, name = level_name(project, level_sk)
            if self._repair(project, level_sk, old, move, now):
                changed = True
            elif over := over_limit(old, move):
                limited += [{"level": kind, "name": name, **field} for field in over]
            elif kind != "user" and old.get("tight") and counter != level_sk:
                state.tight.add(level_sk)  # the level went tight: charge its own item
                changed = True
            elif kind != "user" and not old.get("tight"):
                refusal = self._tighten(project, level_sk, state, at_bound=over_slice_bound(old, move))
                if refusal is None:
                    changed = True
                else:
                    refusals.append({"level": kind, "name": name, "available": refusal, "needed": move.need})
            elif move.need is not None and Decimal(old["available"]) < move.need:
                available = Decimal(old["available"])
                refusals.append({"level": kind, "name": name, "available": available, "needed": move.need})
            else:
                stuck = True
        if limited and not changed:  # before "over budget": a larger budget would not make it fit
            raise SpendLimitExceeded.at_levels(limited)
        if changed:  # what the next attempt sees decides (a level dealt again may be over a limit)
            return
        if refusals:
            raise BudgetExceeded.at_levels(refusals)
        if stuck:
            raise InvalidInput(
                f"a budget level of {project}/{user} already tracks {MAX_MODELS_PER_USER} models;"
                " record this cost under one of them"
            )
        raise Contention(f"budget {project}/{user}: the write was cancelled ({sorted(reading.codes)}); retry")

    def _tighten(
        self, project: str, level_sk: str, state: _WriteState, *, at_bound: bool = False
    ) -> Decimal | None:
        """A slice's share could not cover this charge: read every slice at one instant. The
        level's whole headroom (USD) when it cannot cover ``move.need`` (a refusal); else None,
        after dealing the level again so that its own item holds this charge (which the next
        attempt moves): in normal mode with this charge's amount set aside there; near its cap
        (see NEAR_CAP_FACTOR) in tight mode (everything on its own item), so it still admits
        exactly what fits."""
        view = slices.read_level(self.client, self.table_name, project, level_sk)
        if view is None:
            state.plan.present.discard(level_sk)
            return None
        if _ended(view, state):
            roll_level(self.client, self.table_name, project, level_sk, view, state.now)
            return None
        available = Decimal(view["available"])
        if state.move.need is not None and available < state.move.need:
            return available
        amount = max(state.move.need or ZERO, state.move.available_delta.copy_negate())
        share = Decimal(view["total_budget"]) / slices.default_slices()
        # A slice at its share of SPEND_MAX: only the level's own item, in tight mode, has room.
        tight = at_bound or available < max(NEAR_CAP_FACTOR * amount, share)
        deal_level(self.client, self.table_name, project, level_sk, view, tight=tight, reserve=amount)
        state.tight.add(level_sk)
        return None

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
                # in the same write, in the history.
                write = roll(current, now)
                return write._replace(budget=write.budget._replace(updated_at=now))
            # Rewriting the item stores held and available (budget_to_item).
            return current if legacy else None

        self.budgets.update(project, name, change, seen=plain_to_budget(old))
        return True

    # ---- cost updates --------------------------------------------------------------------------

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
        on its ``created_at``) and the cost charged, so a key belongs to one budget.
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
    """Start a team or project level's current period (spend zeroed, live holds kept, the
    headroom dealt out again over its slices) and record the period that ended, in one
    TransactWriteItems: every slice's Put conditional on the version read at one instant
    (TransactGetItems), so the record holds exactly the spend it closes, and the closed period's
    Put. Each period rolls over once whoever gets there first. `old` is any item of the level
    (a slice, or the due-for-reset index's entry): only its ``reset_at`` is used. False: not
    ended, or someone else rolled it (the caller tries again from what it sees next)."""
    for attempt in itertools.count():
        view = slices.read_level(client, table_name, project, sk)
        if view is None or view.get("reset_at") is None or Decimal(view["reset_at"]) > now:
            return False
        if old.get("reset_at") is not None and Decimal(view["reset_at"]) != Decimal(old["reset_at"]):
            return False  # rolled over by someone else since `old` was read
        outcome = _roll_once(client, table_name, project, sk, view, now)
        if outcome is not None:
            return outcome
        conflict_backoff(attempt, f"level {project}/{sk}")
    raise AssertionError("unreachable")


def _roll_once(client, table_name: str, project: str, sk: str, view: dict, now: Decimal) -> bool | None:
    """One try of roll_level from `view` (slices.level_view): True rolled, False changed, None a
    conflict (read again and retry)."""
    from budget_service.store.history import period_put

    duration = Duration(view["duration"]) if view.get("duration") else None
    period = rule_period(duration, None, view.get("timezone"), view.get("period_start"), now)
    if period is None:
        return False
    kind, name = level_name(project, sk)
    closed = ClosedPeriod(
        project=project,
        level=kind.upper(),
        level_id="" if kind == "project" else name,
        start=Decimal(view.get("period_start", view.get("created_at", now))),
        end=Decimal(view["reset_at"]),
        total_budget=Decimal(view["total_budget"]),
        spend=Decimal(view["current_cost"]),
        model_cost=dict(view["model_cost"]),
        held=Decimal(view["held"]),
        closed_by="rollover",
        closed_at=now,
        budget_created_at=view.get("created_at"),
    )
    head = _head_of(view) | {"period_start": period.start, "reset_at": period.end, "updated_at": now}
    with localcontext(DECIMAL_CONTEXT):
        available = Decimal(view["total_budget"]) - Decimal(view["held"])
    counters = {"current_cost": ZERO, "model_cost": {}, "held": Decimal(view["held"]), "available": available}
    dealt = slices.deal(
        table_name, project, sk, head, counters, view["slice_versions"], slices.default_slices()
    )
    for again in (False, True):
        try:
            client.transact_write_items(TransactItems=[*dealt, period_put(table_name, closed, again=again)])
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            codes = [code for code, _ in reasons_of(exc)]
        if set(codes) <= {None, *RETRYABLE_REASONS}:
            return None
        if again or any(codes[:-1]):
            return False  # a slice changed: the caller reads again
        # A record with this start and end exists (see store/history.history_items).
    return False


def rebalance_level(client, table_name: str, project: str, sk: str) -> bool:
    """Deal a level out again over this container's number of slices (creating the slices an
    older item lacks), from what it holds now. False: the level does not exist."""
    view = slices.read_level(client, table_name, project, sk)
    if view is not None:
        deal_level(client, table_name, project, sk, view, tight=bool(view.get("tight")))
    return view is not None


def undealt_levels(budgets: BudgetStore) -> Iterator[tuple[str, str]]:
    """(project, level sk) of every team and project level dealt fewer slices than this
    container deals (items written before slices, or LEVEL_SLICES raised since): one Scan of the
    table, for the upgrade step (``make deal-levels``), not for a request path."""
    paginator = budgets.client.get_paginator("scan")
    pages = paginator.paginate(
        TableName=budgets.table_name,
        FilterExpression="(#level = :project OR #level = :team) AND (attribute_not_exists(slices) OR slices < :n)",
        ExpressionAttributeNames={"#level": "level"},
        ExpressionAttributeValues={
            ":project": {"S": "project"},
            ":team": {"S": "team"},
            ":n": {"N": str(slices.default_slices())},
        },
        ProjectionExpression="pk, sk",
    )
    for page in pages:
        for item in page.get("Items", []):
            yield item["pk"]["S"][len(PROJECT_PREFIX) :], item["sk"]["S"]


def deal_level(
    client, table_name: str, project: str, sk: str, view: dict, *, tight: bool, reserve: Decimal = ZERO
) -> bool:
    """Deal a level's counters (`view`, slices.level_view) out again, conditional on the versions
    it was read at; in tight mode everything on its own item, else in shares with `reserve` USD
    more on its own item (for a charge about to land there). False when a slice changed since
    (whoever changed it leaves the level consistent; the caller reads again)."""
    counters = {name: view[name] for name in slices.COUNTERS}
    dealt = slices.deal(
        table_name,
        project,
        sk,
        _head_of(view),
        counters,
        view["slice_versions"],
        slices.default_slices(),
        tight=tight,
        reserve=reserve,
    )
    try:
        client.transact_write_items(TransactItems=dealt)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        return False


def level_change(
    client, table_name: str, old_item: dict | None, new_item: dict | None
) -> tuple[dict | None, dict | None]:
    """The level a stream record's write moved, as the alerts rule reads levels: for an item of a
    dealt level (a slice, or the level's own item), ``(level before, level after)`` with the
    counters summed over its slices now, ``before`` taking back what this write added; any other
    record's images unchanged. One TransactGetItems per record of a dealt level."""
    item = new_item or old_item or {}
    sk, pk = item.get("sk", ""), item.get("pk", "")
    level_sk = slices.slice_level(sk) or sk
    dealt = slices.slice_level(sk) is not None or slices.slice_count(item) > 1
    if not dealt or not pk.startswith(PROJECT_PREFIX) or new_item is None:
        return old_item, new_item
    project = pk[len(PROJECT_PREFIX) :]
    view = slices.read_level(client, table_name, project, level_sk)
    if view is None:
        return old_item, None
    after = {k: v for k, v in view.items() if k != "slice_versions"}
    if old_item is None or old_item.get("period_start") != new_item.get("period_start"):
        return None, after
    with localcontext(DECIMAL_CONTEXT):
        added = Decimal(new_item.get("current_cost", ZERO)) - Decimal(old_item.get("current_cost", ZERO))
        return {**after, "current_cost": Decimal(after["current_cost"]) - added}, after


def _head_of(view: dict) -> dict:
    """A level's own item without its counters (plain values), for slices.deal."""
    return {k: v for k, v in view.items() if k not in (*slices.COUNTERS, "slice_versions", "tight")}


# ---- team and project levels: their own items ---------------------------------------------------
#
# A level item has the same attributes as a user budget (total_budget, current_cost, model_cost,
# held, available, duration, timezone, period_start, reset_at, created_at, updated_at, version)
# plus ``level`` ("team" or "project") and, for a team, ``team``. They are written whole,
# conditional on ``version`` (or on being absent), like user budgets.


def get_level(budgets: BudgetStore, project: str, sk: str) -> dict | None:
    """A team or project level as Python values, its counters summed over its slices at one
    instant (slices.level_view; ``slice_versions`` for put_level and delete_level), or None."""
    return slices.read_level(budgets.client, budgets.table_name, project, sk)


def put_level(budgets: BudgetStore, project: str, sk: str, item: dict, old: dict | None) -> None:
    """Write a level whole (`item`: its settings and counters, plain values), dealing its headroom
    out over its slices, if it is still as read (`old`, get_level's view; None: absent).
    StaleWrite if not, or if a transaction had one of its items in flight."""
    from budget_service.store.base import StaleWrite

    versions = old["slice_versions"] if old else [0]
    version = int(old["version"]) if old else 0
    head = {k: v for k, v in item.items() if k not in slices.COUNTERS and v is not None}
    head |= {"pk": project_key(project), "sk": sk, "version": version}
    counters = {name: item[name] for name in slices.COUNTERS}
    dealt = slices.deal(budgets.table_name, project, sk, head, counters, versions, slices.default_slices())
    try:
        budgets.client.transact_write_items(TransactItems=dealt)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "TransactionCanceledException":
            raise StaleWrite from exc
        raise


def delete_level(budgets: BudgetStore, project: str, sk: str) -> bool:
    """Delete a level and its slices (one TransactWriteItems, conditional on the versions read);
    False if absent."""
    for attempt in itertools.count():
        view = get_level(budgets, project, sk)
        if view is None:
            return False
        try:
            budgets.client.transact_write_items(
                TransactItems=slices.deletions(budgets.table_name, project, sk, view["slice_versions"])
            )
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
        conflict_backoff(attempt, f"level {project}/{sk}")
    raise AssertionError("unreachable")


def list_teams(
    budgets: BudgetStore, project: str, *, limit: int, after: str | None
) -> tuple[list[dict], str | None]:
    """Up to `limit` teams of a project in team order (each as get_level gives it), and the last
    team if more may follow."""
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
    teams = [plain_item(i) for i in response.get("Items", [])]
    # A team dealt over slices: its figures are the sums (one TransactGetItems per such team).
    teams = [
        (get_level(budgets, project, team["sk"]) or team) if slices.slice_count(team) > 1 else team
        for team in teams
    ]
    return teams, (last["sk"]["S"][len(TEAM_PREFIX) :] if last else None)


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
            ":now": serialize(now),
        },
        "Limit": limit,
    }
    if after is not None:
        kwargs["ExclusiveStartKey"] = after
    response = budgets.client.query(**kwargs)
    page = [(i["pk"][len(PROJECT_PREFIX) :], i["sk"], i) for i in map(plain_item, response.get("Items", []))]
    return page, response.get("LastEvaluatedKey")
