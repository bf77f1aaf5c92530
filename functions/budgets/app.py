"""The native budget routes: create/replace, read, list, reset and delete per-user budgets."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from budget_service.api.http import ProjectId, UserId, create_app, json_response, lambda_entry
from budget_service.domain import budgets
from budget_service.schemas import BudgetList, BudgetRecord, PutBudgetRequest

app = create_app()


@app.put("/projects/<project>/users/<user>")
def put_budget(project: ProjectId, user: UserId, settings: PutBudgetRequest) -> Response[BudgetRecord]:
    record, created = budgets.put_user(project, user, settings, app.key_id())
    return json_response(201 if created else 200, record)


@app.get("/projects/<project>/users/<user>")
def get_budget(project: ProjectId, user: UserId) -> BudgetRecord:
    return budgets.get_user(project, user)


@app.delete("/projects/<project>/users/<user>")
def delete_budget(
    project: ProjectId,
    user: UserId,
    purge: Annotated[bool, Query(description="also remove the user's history and audit ledger")] = False,
) -> Response[None]:
    budgets.delete_user(project, user, app.key_id(), purge=purge)
    return Response(status_code=204)


@app.get("/projects/<project>/users")
def list_budgets(
    project: ProjectId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> BudgetList:
    return budgets.list_users(project, limit, cursor)


@app.post("/projects/<project>/users/<user>/reset")
def reset_budget(project: ProjectId, user: UserId) -> BudgetRecord:
    return budgets.reset_user(project, user, app.key_id())


lambda_handler = lambda_entry(app)
