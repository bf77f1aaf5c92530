"""Budget operations: what each route does, in terms of the entity and the store."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from budget_service.core import clock
from budget_service.core.errors import (
    BudgetNotFound,
    Contention,
    InvalidInput,
    ServiceUnavailable,
    SpendLimitExceeded,
)
from budget_service.core.numbers import MAX_MODELS_PER_USER, SPEND_MAX, SUM_CONTEXT
from budget_service.core.records import USER_LEVEL, AuditEntry, Budget, ClosedPeriod, Write, roll
from budget_service.store.base import (
    NOT_WRITTEN,
    STORE_ERRORS,
    UNKNOWN,
    BudgetStore,
    decode_cursor,
    default_store,
    encode_cursor,
    unavailable,
    write_outcome,
)

if TYPE_CHECKING:  # the reset job imports this module and needs neither pydantic nor litellm's rules
    from budget_service.schemas import (
        BudgetList,
        BudgetRecord,
        GetBudgetRequest,
        GetBudgetResponse,
        LitellmEntry,
        PutBudgetRequest,
        SetBudgetRequest,
        SetBudgetResponse,
    )


def utc_now() -> Decimal:
    """Now, in epoch seconds: the service's clock (budget_service.core.clock; shifted under make dev)."""
    return clock.utc_now()


# ---- litellm hosted protocol -------------------------------------------------------------------


def _marker(created_at: Decimal) -> Decimal:
    """A fresh serving marker: the budget's creation second plus a random fraction of five
    digits, which a float carries exactly (15 significant digits) through litellm's round trip."""
    return (
        created_at.to_integral_value(rounding=ROUND_FLOOR) + Decimal(secrets.randbelow(99_999) + 1) / 100_000
    )


def project_entries(store: BudgetStore, project: str, now: Decimal) -> dict[str, dict] | None:
    """The project's users in litellm's shape, as of `now`; None for an unknown project.

    Each entry's ``created_at`` is a fresh marker, and what was served under it is recorded
    (litellm.merge.serve; BudgetStore.record_servings) before the answer goes out, so the
    client's later saves count only what it added (the set_budget merge).
    """
    from budget_service.litellm.merge import serve

    served = {b.user: serve(b, _marker(b.created_at), now) for b in store.iter_project(project)}
    if not served:
        return None
    recorded = store.record_servings(
        [lineage for _, lineage in served.values()],
        fresh=lambda lineage: lineage._replace(marker=_marker(lineage.marker)),
    )
    entries = {}
    for lineage in recorded:
        entry = served[lineage.user][0]
        entries[lineage.user] = {**entry, "created_at": lineage.marker}
    return entries


class SetBudgetResult:
    # A plain class: a dataclass exec()s its generated methods when created, ~0.5 ms of the cold
    # start of every function that imports this module; the lists are filled as users are merged.
    def __init__(self) -> None:
        self.written: list[str] = []
        self.unchanged: list[str] = []
        self.stale_spend_ignored: list[str] = []
        self.uncertain_spend_kept: list[str] = []


def _progress(result: SetBudgetResult, not_written: list[str], not_confirmed: list[str]) -> dict:
    """A stopped set_budget's details: each user's state, and the request's `outcome`:
    ``not_written`` (nothing), ``partially_written`` (exactly `written`), or ``unknown``
    (`not_confirmed` may have landed)."""
    if not_confirmed:
        outcome = UNKNOWN
    else:
        outcome = "partially_written" if result.written else NOT_WRITTEN
    return {
        "outcome": outcome,
        "written": result.written,
        "unchanged": result.unchanged,
        "stale_spend_ignored": result.stale_spend_ignored,
        "uncertain_spend_kept": result.uncertain_spend_kept,
        "not_written": not_written,
        "not_confirmed": not_confirmed,
    }


def set_budget(
    store: BudgetStore,
    project: str,
    user_dict: dict[str, LitellmEntry],
    now: Decimal,
    keep_going: Callable[[], bool] = lambda: True,
    key_id: str | None = None,
) -> SetBudgetResult:
    """Merge a litellm user dict into the project. The caller has validated all of it.

    Each user is one conditional write (its own item, well under DynamoDB's 400 KB; see the
    limits in models.py). When DynamoDB fails for good part way (throttled, timing out, 5xx after
    the client's retries), or `keep_going` says time is up, this stops and raises
    ServiceUnavailable (503) whose details list the users written or unchanged so far, those not
    written, and the one in flight whose write may or may not have landed (a timeout). The merge
    is idempotent, so sending the same request again converges on the fully applied write.
    """
    from budget_service.litellm.merge import create_from_entry, merge_entry, same_lineage, same_state

    result = SetBudgetResult()
    stored = {b.user: b for b in store.iter_project(project)} if user_dict else {}
    _check_model_counts(stored, user_dict, now)
    _check_spend_limit(project, stored, user_dict, now)
    users = list(user_dict.items())
    for index, (user, entry) in enumerate(users):
        if not keep_going():
            raise ServiceUnavailable(
                "out of time before every user was written; send the same request again",
                details=_progress(result, [u for u, _ in users[index:]], []),
            )
        stale = uncertain = wrote = False

        def change(current: Budget | None, user: str = user, entry: LitellmEntry = entry):
            nonlocal stale, uncertain, wrote
            # The client copy's record, read on every attempt: a lost race re-reads it too.
            known = (
                store.get_lineage(project, user, entry.created_at) if entry.created_at is not None else None
            )
            if current is None:
                wrote = True
                created = create_from_entry(project, user, entry, now)
                if known is not None:  # a copy counted before the budget was deleted: its new part
                    created = merge_entry(created.budget.with_spend_zeroed(), entry, now, known)
                if over := _over_spend_limit(created.budget):  # checked above; a concurrent write may differ
                    raise SpendLimitExceeded.in_set_budget(over)
                uncertain = created.uncertain_spend_kept
                lineage = (
                    created.lineage._replace(version=known.version)
                    if created.lineage and known
                    else created.lineage
                )
                audit = _settings_audit(None, created.budget, now, key_id)
                return Write(created.budget, audit=audit, lineage=lineage)
            rolled = roll(current, now)  # an ended period is closed and recorded in the history
            merged = merge_entry(rolled.budget, entry, now, known)
            if over := _over_spend_limit(merged.budget):  # a cost since the check above added spend
                raise SpendLimitExceeded.in_set_budget(over)
            stale, uncertain = merged.stale_spend_ignored, merged.uncertain_spend_kept
            wrote = not same_state(current, merged.budget)
            record = None if same_lineage(known, merged.lineage) else merged.lineage
            if not wrote and record is None:
                return None
            closed = rolled.closed + ((merged.replaced,) if merged.replaced is not None else ())
            audit = _settings_audit(current, merged.budget, now, key_id)
            return Write(merged.budget, closed, audit, lineage=record)

        try:
            store.update(project, user, change, seen=stored.get(user))
        except Contention as exc:
            exc.details = _progress(result, [u for u, _ in users[index:]], [])
            raise
        except SpendLimitExceeded as exc:
            exc.details = {"over_limit": exc.details, **_progress(result, [u for u, _ in users[index:]], [])}
            raise
        except STORE_ERRORS as exc:
            if not unavailable(exc):
                raise
            # A timeout or a dropped connection after sending leaves this user's write unknown.
            maybe = [user] if write_outcome(exc) == UNKNOWN else []
            raise ServiceUnavailable(
                "the budget store failed part way (throttled, timed out or unavailable); details"
                " say which users were written"
                + (" and whose write may or may not have been applied (not_confirmed)" if maybe else "")
                + "; send the same request again to finish (the merge makes that safe)",
                details=_progress(result, [u for u, _ in users[index:] if u not in maybe], maybe),
            ) from exc
        (result.written if wrote else result.unchanged).append(user)
        if stale:
            result.stale_spend_ignored.append(user)
        if uncertain:
            result.uncertain_spend_kept.append(user)
    return result


def _check_model_counts(stored: dict[str, Budget], user_dict: dict[str, LitellmEntry], now: Decimal):
    """The merge keeps every model of stored and sent; refuse, before writing anything, a union
    over the per-user limit (it keeps each item well under DynamoDB's 400 KB)."""
    over = [
        user
        for user, entry in user_dict.items()
        if user in stored
        and len(set(stored[user].as_of(now).model_cost) | set(entry.model_cost or {})) > MAX_MODELS_PER_USER
    ]
    if over:
        raise InvalidInput(
            f"{len(over)} user(s) would track more than {MAX_MODELS_PER_USER} models: "
            + ", ".join(repr(u) for u in over[:5])
        )


def _over_spend_limit(budget: Budget) -> list[dict]:
    """What of `budget` (about to be stored whole by set_budget) is over SPEND_MAX."""
    fields = [("current_cost", budget.current_cost)] + [
        (f"model_cost[{model}]", cost) for model, cost in budget.model_cost.items()
    ]
    return [
        {"level": "user", "name": budget.user, "field": field, "would_store": value, "limit": SPEND_MAX}
        for field, value in fields
        if value > SPEND_MAX
    ]


def _check_spend_limit(
    project: str, stored: dict[str, Budget], user_dict: dict[str, LitellmEntry], now: Decimal
) -> None:
    """Refuse, before writing anything, a user_dict whose merge would store spend over SPEND_MAX
    for some user (SpendLimitExceeded, 422). Each entry's amounts are at most MONEY_MAX, but
    litellm's ``current_cost`` is at least the sum of the models, of which there may be 1,000
    (core/numbers.py says why stored spend has a bound). The merge runs only for users whose spend could
    pass the limit: the larger of the spends and the sum of stored and sent models bounds it."""
    from budget_service.litellm.merge import merge_entry, new_budget_from_entry

    # A bound, not the merge itself: without the copy's record every total counts as new.
    over: list[dict] = []
    for user, entry in user_dict.items():
        current = stored.get(user)
        models = Decimal(0)
        for cost in [*(entry.model_cost or {}).values(), *(current.model_cost.values() if current else ())]:
            models = SUM_CONTEXT.add(models, cost)
        spends = (entry.current_cost or Decimal(0), current.current_cost if current else Decimal(0))
        if max(*spends, models) <= SPEND_MAX:
            continue
        target = (
            new_budget_from_entry(project, user, entry, now)
            if current is None
            else merge_entry(roll(current, now).budget, entry, now).budget
        )
        over += _over_spend_limit(target)
    if over:
        raise SpendLimitExceeded.in_set_budget(over)


# ---- native API --------------------------------------------------------------------------------


def read_budget(store: BudgetStore, project: str, user: str, now: Decimal) -> Budget:
    budget = store.get(project, user)
    if budget is None:
        raise BudgetNotFound.for_user(project, user)
    return budget.as_of(now)


def _settings(budget: Budget) -> dict:
    return {
        "total_budget": budget.total_budget,
        "duration": budget.duration_label(),
        "timezone": budget.timezone,
    }


def _settings_audit(
    old: Budget | None, new: Budget, now: Decimal, key_id: str | None
) -> tuple[AuditEntry, ...]:
    """The audit entry of a settings change (``create`` when `old` is None), or none if the
    settings (total_budget, duration, timezone) did not change."""
    before = _settings(old) if old is not None else None
    after = _settings(new)
    if before == after:
        return ()
    return (
        AuditEntry(
            new.project,
            USER_LEVEL,
            new.user,
            "create" if old is None else "settings",
            now,
            key_id,
            {"old": before, "new": after},
        ),
    )


def put_budget(
    store: BudgetStore,
    project: str,
    user: str,
    settings: PutBudgetRequest,
    now: Decimal,
    key_id: str | None = None,
) -> tuple[Budget, bool]:
    """Create or replace a budget's settings. Spend of the current period is kept.

    ``team`` names a team of the project (a budget level) that must exist (else InvalidInput, 422, and
    nothing written); it replaces the user's team, and None takes the user out of any team. Spend
    already made stays where it was counted; charges from now on count toward the new team.
    """
    if settings.team is not None:
        from budget_service.store.levels import get_level, team_sk

        if get_level(store, project, team_sk(settings.team)) is None:
            raise InvalidInput(
                f"project {project!r} has no team {settings.team!r}; create it first"
                " (PUT /projects/{project}/teams/{team})",
                details=[{"field": "team", "problem": "no such team in this project"}],
            )
    created = False

    def change(current: Budget | None) -> Write:
        nonlocal created
        created = current is None
        # An ended period is closed and recorded in the history in this write.
        rolled = roll(current, now) if current is not None else None
        base = (
            rolled.budget
            if rolled is not None
            else Budget(
                project=project, user=user, total_budget=settings.total_budget, created_at=now, updated_at=now
            )
        )
        rule_changed = (base.duration, base.timezone, base.duration_days) != (
            settings.duration,
            settings.timezone,
            None,
        )
        updated = base._replace(
            total_budget=settings.total_budget,
            duration=settings.duration,
            duration_days=None,
            timezone=settings.timezone,
            alert_thresholds=(
                tuple(settings.alert_thresholds) if settings.alert_thresholds is not None else None
            ),
            team=settings.team,
            updated_at=now,
        )
        target = updated.with_period_from(now) if rule_changed or created else updated
        return Write(target, rolled.closed if rolled else (), _settings_audit(current, target, now, key_id))

    budget = store.update(project, user, change)
    assert budget is not None
    return budget, created


def list_budgets(
    store: BudgetStore, project: str, limit: int, cursor: str | None, now: Decimal
) -> tuple[list[Budget], str | None]:
    after = decode_cursor(cursor) if cursor else None
    budgets, last = store.list_page(project, limit=limit, after_user=after)
    return [b.as_of(now) for b in budgets], (encode_cursor(last) if last else None)


def reset_budget(
    store: BudgetStore, project: str, user: str, now: Decimal, key_id: str | None = None
) -> Budget:
    """Zero the spend now. The rule is kept, and so is the period's end for a calendar budget.

    * calendar budget: spend is zeroed within the current calendar period; ``period_start``
      becomes `now` (where the counted spend starts) and ``reset_at`` stays the calendar
      boundary, so the next rollover is still the calendar one;
    * rolling (litellm) budget: a new period starts at `now`, as litellm's own
      ``reset_on_duration`` does (``last_updated_at = now``);
    * no period: spend is zeroed.

    The period start clients were given before is kept as ``previous_period_start``, so a
    litellm client that loaded before the reset cannot bring the zeroed spend back
    (litellm_compat). The part of the period before `now` is recorded as a closed period, and the
    reset in the audit ledger with `key_id`, in the same write. BudgetNotFound (404)
    for an unknown user. An ended period not yet rolled over is closed first (``closed_by:
    rollover``); the zeroed spend is the closed period ending `now` (``closed_by: reset``).
    """

    def change(current: Budget | None) -> Write:
        if current is None:
            raise BudgetNotFound.for_user(project, user)
        rolled = roll(current, now)
        base = rolled.budget
        closed = ClosedPeriod.of(base, end=now, closed_at=now, closed_by="reset")
        # last_reset_at: alerts start a new alert period at a manual reset (alerts.py).
        zeroed = base.with_spend_zeroed()._replace(updated_at=now, last_reset_at=now)
        if base.duration is not None:
            target = zeroed._replace(period_start=now, previous_period_start=base.period_start)
        elif base.duration_days is not None:
            target = zeroed._replace(
                period_start=now, previous_period_start=base.period_start
            ).with_period_from(now)
        else:
            target = zeroed
        audit = AuditEntry(
            project,
            USER_LEVEL,
            user,
            "reset",
            now,
            key_id,
            {
                "spend": base.current_cost,
                "model_cost": dict(base.model_cost),
                "period_start": closed.start,
            },
        )
        return Write(target, rolled.closed + (closed,), (audit,))

    budget = store.update(project, user, change)
    assert budget is not None
    return budget


def delete_budget(
    store: BudgetStore,
    project: str,
    user: str,
    now: Decimal | None = None,
    key_id: str | None = None,
    *,
    purge: bool = False,
) -> None:
    """Delete a budget. Its history (closed periods) and audit ledger are kept, with the spend of
    its current period recorded as a closed period (``closed_by: delete``) and a ``delete`` audit
    entry, in the same transaction as the Delete. With `purge`, the budget is deleted and then
    every period and audit item of the user too (a purge cut short is finished by asking again:
    a purge of a user with history but no budget succeeds). BudgetNotFound: nothing to delete."""
    from budget_service.store.history import HistoryStore

    if purge:
        deleted = store.delete(project, user)
        history = HistoryStore(store)
        if not deleted and not history.has_history(project, USER_LEVEL, user):
            raise BudgetNotFound.for_user(project, user)
        history.purge(project, USER_LEVEL, user)
        return
    when = now if now is not None else utc_now()

    def record(current: Budget) -> Write:
        rolled = roll(current, when)
        closed = rolled.closed + (
            ClosedPeriod.of(rolled.budget, end=when, closed_at=when, closed_by="delete"),
        )
        audit = AuditEntry(
            project,
            USER_LEVEL,
            user,
            "delete",
            when,
            key_id,
            {"old": _settings(current), "spend": rolled.budget.current_cost},
        )
        return Write(rolled.budget, closed, (audit,))

    if not store.delete_recorded(project, user, record):
        raise BudgetNotFound.for_user(project, user)


# ---- what each route does: the service's store and clock, the rule above, the answer's model ----
# (the API functions' handlers parse, make one of these calls and answer)


def _record(budget: Budget) -> BudgetRecord:
    from budget_service.schemas import BudgetRecord

    return BudgetRecord(**budget.to_record())


def put_user(
    project: str, user: str, settings: PutBudgetRequest, key_id: str | None
) -> tuple[BudgetRecord, bool]:
    """``PUT /projects/{project}/users/{user}``: (the BudgetRecord, True when it was created)."""
    budget, created = put_budget(default_store(), project, user, settings, utc_now(), key_id)
    return _record(budget), created


def get_user(project: str, user: str) -> BudgetRecord:
    """``GET /projects/{project}/users/{user}``: the BudgetRecord as of now; BudgetNotFound (404)."""
    return _record(read_budget(default_store(), project, user, utc_now()))


def delete_user(project: str, user: str, key_id: str | None, *, purge: bool = False) -> None:
    """``DELETE /projects/{project}/users/{user}``: see delete_budget; BudgetNotFound (404)."""
    delete_budget(default_store(), project, user, utc_now(), key_id, purge=purge)


def list_users(project: str, limit: int, cursor: str | None) -> BudgetList:
    """``GET /projects/{project}/users``: a BudgetList page of at most `limit` records."""
    from budget_service.schemas import BudgetList

    page, next_cursor = list_budgets(default_store(), project, limit, cursor, utc_now())
    return BudgetList(users=[_record(b) for b in page], next_cursor=next_cursor)


def reset_user(project: str, user: str, key_id: str | None) -> BudgetRecord:
    """``POST /projects/{project}/users/{user}/reset``: the BudgetRecord after the reset."""
    return _record(reset_budget(default_store(), project, user, utc_now(), key_id))


def litellm_get_budget(request: GetBudgetRequest) -> GetBudgetResponse:
    """``POST /get_budget`` (litellm's hosted protocol): the project's entries as of now, or, for a
    project with nothing stored, status ``error``: litellm reads that as "nothing stored yet" and
    its HTTP helper raises on anything but 2xx, so an unknown project is still an HTTP 200."""
    from budget_service.schemas import GetBudgetResponse

    data = project_entries(default_store(), request.project_name, utc_now())
    if data is None:
        return GetBudgetResponse(
            status="error", message=f"no budgets stored for project {request.project_name!r}"
        )
    return GetBudgetResponse.model_validate({"status": "success", "data": data})


def litellm_set_budget(
    request: SetBudgetRequest, keep_going: Callable[[], bool], key_id: str | None
) -> SetBudgetResponse:
    """``POST /set_budget`` (litellm's hosted protocol): merge the user dict (set_budget); a
    SetBudgetResponse saying which users were written, unchanged or had spend ignored or kept.
    `keep_going` is asked before each write (the caller's time left)."""
    from budget_service.schemas import SetBudgetResponse

    result = set_budget(
        default_store(),
        request.project_name,
        request.user_dict,
        utc_now(),
        keep_going=keep_going,
        key_id=key_id,
    )
    return SetBudgetResponse(
        status="success",
        written=result.written,
        unchanged=result.unchanged,
        stale_spend_ignored=result.stale_spend_ignored,
        uncertain_spend_kept=result.uncertain_spend_kept,
    )
