"""The hold routes: reserve a call's worst-case cost, settle it with the actual cost,
or release it unused. Each is one DynamoDB TransactWriteItems (budget_service.domain.holds)."""

from typing import Annotated

from budget_service.api.http import ProjectId, UserId, create_app, json_response, lambda_entry
from budget_service.api.routing import Header, Path, Response
from budget_service.domain import budgets, holds
from budget_service.pricing import tokens
from budget_service.schemas import CostRequest, HoldRequest, HoldResponse, ReleaseResponse, SettleResponse
from budget_service.store.base import default_store

app = create_app()

# A malformed id names no hold: a 404 from the domain, not a 422 here.
HoldId = Annotated[str, Path(min_length=1, max_length=128)]


@app.post("/projects/<project>/users/<user>/holds")
def create_hold(
    project: ProjectId,
    user: UserId,
    request: HoldRequest,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response[HoldResponse]:
    hold = holds.create_hold(default_store(), project, user, request, budgets.utc_now(), idempotency_key)
    return json_response(201, hold)  # a replay answers the first hold, as it was answered


@app.post("/projects/<project>/users/<user>/holds/<hold_id>/settle")
def settle_hold(project: ProjectId, user: UserId, hold_id: HoldId, request: CostRequest) -> SettleResponse:
    return holds.settle_hold(default_store(), project, user, hold_id, request, budgets.utc_now())


@app.delete("/projects/<project>/users/<user>/holds/<hold_id>")
def release_hold(project: ProjectId, user: UserId, hold_id: HoldId) -> ReleaseResponse:
    return holds.release_hold(default_store(), project, user, hold_id, budgets.utc_now())


# Both encodings: which one a call needs depends on its model (budget_service.pricing.tokens).
lambda_handler = lambda_entry(app, prime_encodings=tokens.ENCODINGS)
