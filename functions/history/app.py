"""The history routes: a user's periods, the project's spend report (JSON or CSV),
the audit ledger, and adjustments (budget_service.domain.history)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from budget_service.api.http import (
    ProjectId,
    UserId,
    create_app,
    json_response,
    key_id_of,
    lambda_entry,
)
from budget_service.api.routing import JSON, Header, Query, Response
from budget_service.core.errors import InvalidInput
from budget_service.domain import budgets, history
from budget_service.schemas import (
    AdjustmentRequest,
    AdjustmentResponse,
    Ledger,
    PeriodList,
    SpendReport,
)
from budget_service.store.base import default_store

app = create_app()

Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=2048)]


def _epoch(moment: datetime | None, default: Decimal, name: str) -> Decimal:
    """`moment` in epoch seconds (`default` when absent). InvalidInput (a 422) for one outside
    years 1-9999 once in UTC (``9999-12-31T23:59:59-14:00``), which the report cannot write back."""
    if moment is None:
        return default
    if moment.tzinfo is None:  # a time without an offset is UTC
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"'{name}' is outside years 1 to 9999 in UTC") from None
    return Decimal(str(moment.timestamp()))


@app.get("/projects/<project>/users/<user>/periods")
def list_periods(project: ProjectId, user: UserId, limit: Limit = 50, cursor: Cursor = None) -> PeriodList:
    return history.list_periods(default_store(), project, user, limit, cursor, budgets.utc_now())


@app.get("/projects/<project>/users/<user>/ledger")
def ledger(project: ProjectId, user: UserId, limit: Limit = 50, cursor: Cursor = None) -> Ledger:
    return history.list_ledger(default_store(), project, user, limit, cursor)


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
    report = history.spend_report(
        default_store(),
        project,
        _epoch(range_from, Decimal(0), "from"),
        _epoch(range_to, budgets.utc_now(), "to"),
    )
    if accept and "text/csv" in accept.lower():
        return Response(
            status_code=200, content_type="text/csv; charset=utf-8", body=history.report_csv(report)
        )
    return Response(
        status_code=200,
        content_type=JSON,
        body=report.model_dump_json(by_alias=True),
    )


@app.post("/projects/<project>/users/<user>/adjustments")
def adjust(
    project: ProjectId,
    user: UserId,
    request: AdjustmentRequest,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response[AdjustmentResponse]:
    result = history.adjust(
        default_store(),
        project,
        user,
        request,
        budgets.utc_now(),
        idempotency_key,
        key_id_of(app.event),
    )
    return json_response(200 if result.replayed else 201, result)


lambda_handler = lambda_entry(app)
