"""The cost routes: record spend (four forms, optional Idempotency-Key) and project a call's cost."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Header

from budget_service.api.http import ProjectId, UserId, create_app, lambda_entry
from budget_service.domain import costs
from budget_service.pricing import tokens
from budget_service.schemas import (
    CostRequest,
    CostResponse,
    ProjectedCostRequest,
    ProjectedCostResponse,
)

app = create_app()


@app.post("/projects/<project>/users/<user>/cost")
def update_cost(
    project: ProjectId,
    user: UserId,
    request: CostRequest,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> CostResponse:
    return costs.record(project, user, request, idempotency_key)


@app.post("/projects/<project>/users/<user>/projected-cost")
def projected_cost(project: ProjectId, user: UserId, request: ProjectedCostRequest) -> ProjectedCostResponse:
    return costs.project(project, user, request)


# Both encodings: which one a call needs depends on its model (budget_service.pricing.tokens).
lambda_handler = lambda_entry(app, prime_encodings=tokens.ENCODINGS)
