"""The budget level routes: the project's cap and team caps over its user budgets."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from budget_service.api.http import ProjectId, create_app, json_response, lambda_entry
from budget_service.domain import levels
from budget_service.schemas import LevelRecord, LevelRequest, TeamList

app = create_app()
TeamId = ProjectId


@app.put("/projects/<project>/budget")
def put_project_budget(project: ProjectId, settings: LevelRequest) -> Response[LevelRecord]:
    record, created = levels.put_project_budget(project, settings)
    return json_response(201 if created else 200, record)


@app.get("/projects/<project>/budget")
def get_project_budget(project: ProjectId) -> LevelRecord:
    return levels.get_project_budget(project)


@app.delete("/projects/<project>/budget")
def delete_project_budget(project: ProjectId) -> Response[None]:
    levels.delete_project_budget(project)
    return Response(status_code=204)


@app.put("/projects/<project>/teams/<team>")
def put_team(project: ProjectId, team: TeamId, settings: LevelRequest) -> Response[LevelRecord]:
    record, created = levels.put_team(project, team, settings)
    return json_response(201 if created else 200, record)


@app.get("/projects/<project>/teams/<team>")
def get_team(project: ProjectId, team: TeamId) -> LevelRecord:
    return levels.get_team(project, team)


@app.delete("/projects/<project>/teams/<team>")
def delete_team(project: ProjectId, team: TeamId) -> Response[None]:
    levels.delete_team(project, team)
    return Response(status_code=204)


@app.get("/projects/<project>/teams")
def list_teams(
    project: ProjectId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> TeamList:
    return levels.team_page(project, limit, cursor)


lambda_handler = lambda_entry(app)
