"""The budget level routes: the project's cap and team caps over its user budgets."""

from typing import Annotated

from budget_service.api.http import ProjectId, create_app, json_response, lambda_entry
from budget_service.api.routing import Query, Response
from budget_service.domain import budgets, levels
from budget_service.schemas import LevelRecord, LevelRequest, TeamList
from budget_service.store.base import default_store

app = create_app()
TeamId = ProjectId


@app.put("/projects/<project>/budget")
def put_project_budget(project: ProjectId, settings: LevelRequest) -> Response[LevelRecord]:
    record, created = levels.put(default_store(), project, "project", None, settings, budgets.utc_now())
    return json_response(201 if created else 200, record)


@app.get("/projects/<project>/budget")
def get_project_budget(project: ProjectId) -> LevelRecord:
    return levels.read(default_store(), project, "project", None, budgets.utc_now())


@app.delete("/projects/<project>/budget")
def delete_project_budget(project: ProjectId) -> Response[None]:
    levels.delete(default_store(), project, "project", None)
    return Response(status_code=204)


@app.put("/projects/<project>/teams/<team>")
def put_team(project: ProjectId, team: TeamId, settings: LevelRequest) -> Response[LevelRecord]:
    record, created = levels.put(default_store(), project, "team", team, settings, budgets.utc_now())
    return json_response(201 if created else 200, record)


@app.get("/projects/<project>/teams/<team>")
def get_team(project: ProjectId, team: TeamId) -> LevelRecord:
    return levels.read(default_store(), project, "team", team, budgets.utc_now())


@app.delete("/projects/<project>/teams/<team>")
def delete_team(project: ProjectId, team: TeamId) -> Response[None]:
    levels.delete(default_store(), project, "team", team)
    return Response(status_code=204)


@app.get("/projects/<project>/teams")
def list_teams(
    project: ProjectId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> TeamList:
    page, next_cursor = levels.teams(default_store(), project, limit, cursor, budgets.utc_now())
    return TeamList(teams=page, next_cursor=next_cursor)


lambda_handler = lambda_entry(app)
