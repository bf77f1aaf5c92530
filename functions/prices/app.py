"""Per-project prices: set, read, list and delete a project's own price for a model."""

from aws_lambda_powertools.event_handler import Response

from budget_service.api.http import ProjectId, create_app, json_response, lambda_entry
from budget_service.domain import prices
from budget_service.schemas import PriceIn, PriceList, PriceRecord

app = create_app()

# A model name is an id like a user's (1-256 characters, no control characters); one with "/" in
# it (openai/gpt-4o) is sent percent-encoded (openai%2Fgpt-4o), as ids are.
ModelId = ProjectId


@app.put("/projects/<project>/prices/<model>")
def put_price(project: ProjectId, model: ModelId, price: PriceIn) -> Response[PriceRecord]:
    record, created = prices.put_price(project, model, price)
    return json_response(201 if created else 200, record)


@app.get("/projects/<project>/prices/<model>")
def get_price(project: ProjectId, model: ModelId) -> PriceRecord:
    return prices.get_price(project, model)


@app.delete("/projects/<project>/prices/<model>")
def delete_price(project: ProjectId, model: ModelId) -> Response[None]:
    prices.delete_price(project, model)
    return Response(status_code=204)


@app.get("/projects/<project>/prices")
def list_prices(project: ProjectId) -> PriceList:
    return prices.list_prices(project)


lambda_handler = lambda_entry(app)
