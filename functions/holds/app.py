"""The hold routes: reserve a call's worst-case cost, settle it with the actual cost, or release
it unused. Each is one DynamoDB TransactWriteItems (budget_service.domain.holds). And the
project's hold sizing: how much output a hold without max_tokens reserves, and a cap on any
priced hold (budget_service.domain.hold_sizing)."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Header, Path

from budget_service.api.http import ProjectId, UserId, create_app, json_response, lambda_entry
from budget_service.domain import hold_sizing, holds
from budget_service.pricing import tokens
from budget_service.schemas import (
    HoldRequest,
    HoldResponse,
    HoldSizingIn,
    HoldSizingRecord,
    ReleaseResponse,
    SettleRequest,
    SettleResponse,
)

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
    return json_response(201, holds.hold(project, user, request, idempotency_key))


@app.post("/projects/<project>/users/<user>/holds/<hold_id>/settle")
def settle_hold(project: ProjectId, user: UserId, hold_id: HoldId, request: SettleRequest) -> SettleResponse:
    return holds.settle(project, user, hold_id, request)


@app.delete("/projects/<project>/users/<user>/holds/<hold_id>")
def release_hold(project: ProjectId, user: UserId, hold_id: HoldId) -> ReleaseResponse:
    return holds.release(project, user, hold_id)


@app.get("/projects/<project>/hold-sizing")
def get_hold_sizing(project: ProjectId) -> HoldSizingRecord:
    return hold_sizing.get(project)


@app.put("/projects/<project>/hold-sizing")
def put_hold_sizing(project: ProjectId, request: HoldSizingIn) -> HoldSizingRecord:
    return hold_sizing.put(project, request)


# Both encodings: which one a call needs depends on its model (budget_service.pricing.tokens).
lambda_handler = lambda_entry(app, prime_encodings=tokens.ENCODINGS)
