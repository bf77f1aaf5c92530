"""Per-project prices: set, read, list and delete a project's own price for a model."""

from budget_service.api.http import ProjectId, create_app, json_response, lambda_entry
from budget_service.api.routing import Response
from budget_service.domain import budgets
from budget_service.pricing import project as project_prices
from budget_service.schemas import PriceIn, PriceList, PriceRecord
from budget_service.store.base import default_store

app = create_app()

# A model name is an id like a user's (1-256 characters, no control characters); one with "/" in
# it (openai/gpt-4o) is sent percent-encoded (openai%2Fgpt-4o), as ids are.
ModelId = ProjectId


@app.put("/projects/<project>/prices/<model>")
def put_price(project: ProjectId, model: ModelId, price: PriceIn) -> Response[PriceRecord]:
    record, created = project_prices.put_price(default_store(), project, model, price, budgets.utc_now())
    return json_response(201 if created else 200, record)


@app.get("/projects/<project>/prices/<model>")
def get_price(project: ProjectId, model: ModelId) -> PriceRecord:
    return project_prices.get_price(default_store(), project, model)


@app.delete("/projects/<project>/prices/<model>")
def delete_price(project: ProjectId, model: ModelId) -> Response[None]:
    project_prices.delete_price(default_store(), project, model)
    return Response(status_code=204)


@app.get("/projects/<project>/prices")
def list_prices(project: ProjectId) -> PriceList:
    return PriceList(prices=project_prices.list_prices(default_store(), project))


lambda_handler = lambda_entry(app)
