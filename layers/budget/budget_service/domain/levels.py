"""Budget levels: a project-wide cap and team caps over user budgets.

A user's spend and holds count toward its team (``team`` on the user's budget) and its project;
every cost, hold, settle and release moves every level the user belongs to in one
TransactWriteItems (store_levels.LevelWriter), and a hold or ``if_within_budget`` cost is
refused (402) when any level lacks the headroom, naming each level that refused.

A level has its own period (calendar ``duration`` in its ``timezone``) and rolls over on its own,
lazily in the same conditional path as a charge (store_levels.roll_level), once per period. A
level created mid-period starts at zero: spend made before it existed is not counted toward it.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

from budget_service.core.errors import InvalidInput, LevelNotFound
from budget_service.core.records import Budget, iso
from budget_service.domain import budgets
from budget_service.schemas import LevelRecord, LevelRequest, TeamList
from budget_service.store.base import (
    BudgetStore,
    StaleWrite,
    conflict_backoff,
    decode_cursor,
    default_store,
    encode_cursor,
)
from budget_service.store.levels import (
    PROJECT_SK,
    count_users,
    count_users_by_team,
    delete_level,
    get_level,
    level_shard,
    list_teams,
    put_level,
    rebalance_level,
    team_sk,
    undealt_levels,
)


def _as_budget(project: str, item: dict) -> Budget:
    """A level item as the Budget entity (its period rules and rollover are the same)."""
    from budget_service.core.periods import Duration

    return Budget(
        project=project,
        user=item.get("team") or "",
        total_budget=item["total_budget"],
        created_at=item["created_at"],
        updated_at=item["updated_at"],
        current_cost=item.get("current_cost", Decimal(0)),
        model_cost=dict(item.get("model_cost", {})),
        held=item.get("held", Decimal(0)),
        duration=Duration(item["duration"]) if item.get("duration") else None,
        timezone=item.get("timezone"),
        period_start=item.get("period_start"),
        reset_at=item.get("reset_at"),
        version=int(item["version"]),
    )


def _item(level: str, team: str | None, b: Budget) -> dict:
    # A level with a period sits in the due-for-reset index (partition LEVELS#<n>), so the
    # scheduled job rolls it over even when nobody charges it.
    shard = level_shard(b.project, _sk(level, team)) if b.reset_at is not None else None
    return {
        "reset_shard": shard,
        "project": b.project,
        "level": level,
        "team": team,
        "total_budget": b.total_budget,
        "current_cost": b.current_cost,
        "model_cost": dict(b.model_cost),
        "held": b.held,
        "available": b.available,
        "duration": b.duration.value if b.duration else None,
        "timezone": b.timezone,
        "period_start": b.period_start,
        "reset_at": b.reset_at,
        "created_at": b.created_at,
        "updated_at": b.updated_at,
    }


def _sk(level: str, team: str | None) -> str:
    return PROJECT_SK if level == "project" else team_sk(team or "")


def _not_found(project: str, level: str, team: str | None) -> LevelNotFound:
    what = f"team {team!r}" if level == "team" else "project budget"
    return LevelNotFound(f"no {what} in project {project!r}")


def put(
    store: BudgetStore, project: str, level: str, team: str | None, settings: LevelRequest, now: Decimal
) -> tuple[LevelRecord, bool]:
    """Create or replace a level's settings (version-conditional). Its current spend and holds
    are kept (an ended period rolls over first); a new level starts at zero spend."""
    sk = _sk(level, team)
    for attempt in itertools.count():
        old = get_level(store, project, sk)
        if old is None:
            base = Budget(
                project=project,
                user=team or "",
                total_budget=settings.total_budget,
                created_at=now,
                updated_at=now,
            )
        else:
            base = _as_budget(project, old).as_of(now)
        rule_changed = (base.duration, base.timezone) != (settings.duration, settings.timezone)
        updated = base._replace(
            total_budget=settings.total_budget,
            duration=settings.duration,
            timezone=settings.timezone,
            updated_at=now,
        )
        if rule_changed or old is None:
            updated = updated.with_period_from(now)
        for field in ("default_user_budget", "default_alert_thresholds"):
            if getattr(settings, field) is not None and level != "project":
                raise InvalidInput(
                    f"{field} belongs to the project budget, not a team",
                    details=[{"field": field, "problem": "only on the project"}],
                )
        item = _item(level, team, updated)
        if settings.default_user_budget is not None:
            item["default_user_budget"] = settings.default_user_budget.model_dump(
                mode="json", exclude_none=True
            ) | {"total_budget": settings.default_user_budget.total_budget}
        if settings.default_alert_thresholds is not None:  # read by the alerts function
            item["default_alert_thresholds"] = list(settings.default_alert_thresholds)
        try:
            put_level(store, project, sk, item, old)
        except StaleWrite:
            conflict_backoff(attempt, f"{level} budget of {project!r}")
            continue
        return read(store, project, level, team, now), old is None
    raise AssertionError("unreachable")


def read(store: BudgetStore, project: str, level: str, team: str | None, now: Decimal) -> LevelRecord:
    item = get_level(store, project, _sk(level, team))
    if item is None:
        raise _not_found(project, level, team)
    return _record(store, project, item, now)


def _record(
    store: BudgetStore, project: str, item: dict, now: Decimal, users: int | None = None
) -> LevelRecord:
    """The level's record; `users` when already counted, else one COUNT Query of the project's
    user items (see README, "Budget levels": its cost grows with the project's users)."""
    b = _as_budget(project, item).as_of(now)
    level = item["level"]
    if users is None:
        users = count_users(store, project, item.get("team") if level == "team" else None)
    return LevelRecord(
        project=project,
        level=level,
        team=item.get("team"),
        total_budget=b.total_budget,
        current_cost=b.current_cost,
        remaining=b.remaining,
        held=b.held,
        available=max(b.available, Decimal(0)),
        model_cost=dict(b.model_cost),
        users=users,
        default_user_budget=item.get("default_user_budget"),
        default_alert_thresholds=item.get("default_alert_thresholds"),
        duration=b.duration.value if b.duration else None,
        timezone=b.timezone,
        period_start=iso(b.period_start),
        reset_at=iso(b.reset_at),
        created_at=iso(b.created_at) or "",
        updated_at=iso(b.updated_at) or "",
    )


def delete(store: BudgetStore, project: str, level: str, team: str | None) -> None:
    """Remove a level; its users' budgets stay (charges then move their other levels only)."""
    if not delete_level(store, project, _sk(level, team)):
        raise _not_found(project, level, team)


def teams(
    store: BudgetStore, project: str, limit: int, cursor: str | None, now: Decimal
) -> tuple[list[LevelRecord], str | None]:
    after = decode_cursor(cursor) if cursor else None
    items, last = list_teams(store, project, limit=limit, after=after)
    counts = count_users_by_team(store, project) if items else {}  # one pass for the whole page
    return [_record(store, project, i, now, counts.get(i.get("team"), 0)) for i in items], (
        encode_cursor(last) if last else None
    )


__all__ = ["InvalidInput", "LevelNotFound", "delete", "put", "read", "teams"]


# ---- what each route does: the service's store and clock, the rule above, the answer's model ----
# (a team is a level named by `team`; the project's own cap has none)


def put_project_budget(project: str, settings: LevelRequest) -> tuple[LevelRecord, bool]:
    """``PUT /projects/{project}/budget``: (the record, True when it was created)."""
    return put(default_store(), project, "project", None, settings, budgets.utc_now())


def get_project_budget(project: str) -> LevelRecord:
    """``GET /projects/{project}/budget``; LevelNotFound (404)."""
    return read(default_store(), project, "project", None, budgets.utc_now())


def delete_project_budget(project: str) -> None:
    """``DELETE /projects/{project}/budget``; LevelNotFound (404)."""
    delete(default_store(), project, "project", None)


def put_team(project: str, team: str, settings: LevelRequest) -> tuple[LevelRecord, bool]:
    """``PUT /projects/{project}/teams/{team}``: (the record, True when it was created)."""
    return put(default_store(), project, "team", team, settings, budgets.utc_now())


def get_team(project: str, team: str) -> LevelRecord:
    """``GET /projects/{project}/teams/{team}``; LevelNotFound (404)."""
    return read(default_store(), project, "team", team, budgets.utc_now())


def delete_team(project: str, team: str) -> None:
    """``DELETE /projects/{project}/teams/{team}``; LevelNotFound (404)."""
    delete(default_store(), project, "team", team)


def team_page(project: str, limit: int, cursor: str | None) -> TeamList:
    """``GET /projects/{project}/teams``: a TeamList page of at most `limit` teams."""
    page, next_cursor = teams(default_store(), project, limit, cursor, budgets.utc_now())
    return TeamList(teams=page, next_cursor=next_cursor)


def deal_every_level(store: BudgetStore | None = None) -> int:
    """Deal every team and project level that has fewer slices than LEVEL_SLICES (store/slices.py)
    again, keeping its sums: the upgrade step after deploying slices, or after raising
    LEVEL_SLICES, before charges rely on a level's slices. Returns how many were dealt. Errors:
    those of DynamoDB (retried conflicts end in Contention)."""
    store = store or default_store()
    dealt = 0
    for project, sk in undealt_levels(store):
        dealt += rebalance_level(store.client, store.table_name, project, sk)
    return dealt
