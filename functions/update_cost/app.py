"""The cost routes: record spend (four forms, optional Idempotency-Key) and project a call's cost."""

from typing import Annotated

from budget_service import budgets, costs, tokens
from budget_service.http import ProjectId, UserId, create_app, lambda_entry
from budget_service.models import (
    CostRequest,
    CostResponse,
    ProjectedCostRequest,
    ProjectedCostResponse,
)
from budget_service.routing import Header
from budget_service.store import default_store

app = create_app()


@app.post("/projects/<project>/users/<user>/cost")
def update_cost(
    project: ProjectId,
    user: UserId,
    request: CostRequest,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> CostResponse:
    return costs.record_cost(default_store(), project, user, request, budgets.utc_now(), idempotency_key)


@app.post("/projects/<project>/users/<user>/projected-cost")
def projected_cost(project: ProjectId, user: UserId, request: ProjectedCostRequest) -> ProjectedCostResponse:
    return costs.projected_cost(default_store(), project, user, request, budgets.utc_now())


# Both encodings: which one a call needs depends on its model (budget_service.tokens).
lambda_handler = lambda_entry(app, prime_encodings=tokens.ENCODINGS)
