"""The native budget routes: create/replace, read, list, reset and delete per-user budgets."""

from typing import Annotated

from budget_service.api.http import ProjectId, UserId, create_app, json_response, key_id_of, lambda_entry
from budget_service.api.routing import Query, Response
from budget_service.domain import budgets
from budget_service.schemas import (
    BudgetList,
    BudgetRecord,
    PutBudgetRequest,
)
from budget_service.store.base import default_store

app = create_app()


def _key_id() -> str | None:
    return key_id_of(app.event)


def _record(budget) -> BudgetRecord:
    return BudgetRecord(**budget.to_record())


@app.put("/projects/<project>/users/<user>")
def put_budget(project: ProjectId, user: UserId, settings: PutBudgetRequest) -> Response[BudgetRecord]:
    budget, created = budgets.put_budget(
        default_store(), project, user, settings, budgets.utc_now(), _key_id()
    )
    return json_response(201 if created else 200, _record(budget))


@app.get("/projects/<project>/users/<user>")
def get_budget(project: ProjectId, user: UserId) -> BudgetRecord:
    budget = budgets.read_budget(default_store(), project, user, budgets.utc_now())
    return _record(budget)


@app.delete("/projects/<project>/users/<user>")
def delete_budget(
    project: ProjectId,
    user: UserId,
    purge: Annotated[bool, Query(description="also remove the user's history and audit ledger")] = False,
) -> Response[None]:
    budgets.delete_budget(default_store(), project, user, budgets.utc_now(), _key_id(), purge=purge)
    return Response(status_code=204)


@app.get("/projects/<project>/users")
def list_budgets(
    project: ProjectId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> BudgetList:
    page, next_cursor = budgets.list_budgets(default_store(), project, limit, cursor, budgets.utc_now())
    return BudgetList(users=[_record(b) for b in page], next_cursor=next_cursor)


@app.post("/projects/<project>/users/<user>/reset")
def reset_budget(project: ProjectId, user: UserId) -> BudgetRecord:
    budget = budgets.reset_budget(default_store(), project, user, budgets.utc_now(), _key_id())
    return _record(budget)


lambda_handler = lambda_entry(app)
