"""The history routes: a user's periods, the project's spend report (JSON or CSV), the audit
ledger, and adjustments (budget_service.domain.history)."""

from datetime import datetime
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Header, Query

from budget_service.api.http import ProjectId, UserId, create_app, json_response, lambda_entry
from budget_service.domain import history
from budget_service.schemas import AdjustmentRequest, AdjustmentResponse, Ledger, PeriodList, SpendReport

app = create_app()

Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=2048)]


@app.get("/projects/<project>/users/<user>/periods")
def list_periods(project: ProjectId, user: UserId, limit: Limit = 50, cursor: Cursor = None) -> PeriodList:
    return history.user_periods(project, user, limit, cursor)


@app.get("/projects/<project>/users/<user>/ledger")
def ledger(project: ProjectId, user: UserId, limit: Limit = 50, cursor: Cursor = None) -> Ledger:
    return history.user_ledger(project, user, limit, cursor)


@app.get(
    "/projects/<project>/spend",
    responses={
        200: {
            "description": "spend per user and per model over the closed periods that started in the range",
            "content": {
                "application/json": {"model": SpendReport},
                "text/csv": {"schema": {"type": "string", "description": "user,model,spend,periods"}},
            },
        }
    },
)
def spend_report(
    project: ProjectId,
    range_from: Annotated[
        datetime | None, Query(alias="from", description="ISO 8601; default: the beginning")
    ] = None,
    range_to: Annotated[
        datetime | None, Query(alias="to", description="ISO 8601, exclusive; default: now")
    ] = None,
    accept: Annotated[str | None, Header(alias="Accept")] = None,
) -> Response[str]:
    # The body is already serialized (JSON or CSV); the route's `responses` documents both.
    body, content_type = history.project_spend(project, range_from, range_to, accept)
    return Response(status_code=200, content_type=content_type, body=body)


@app.post("/projects/<project>/users/<user>/adjustments")
def adjust(
    project: ProjectId,
    user: UserId,
    request: AdjustmentRequest,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response[AdjustmentResponse]:
    result = history.adjust_user(project, user, request, idempotency_key, app.key_id())
    return json_response(200 if result.replayed else 201, result)


lambda_handler = lambda_entry(app)
