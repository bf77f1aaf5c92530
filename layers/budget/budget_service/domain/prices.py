"""Per-project prices, as the prices routes serve them: a project's own price for a model
(budget_service.pricing.project holds the rules and the per-container cache), in the service's
store, as of the service's clock."""

from __future__ import annotations

from budget_service.domain import budgets
from budget_service.pricing import project as project_prices
from budget_service.schemas import PriceIn, PriceList, PriceRecord
from budget_service.store.base import default_store


def put_price(project: str, model: str, price: PriceIn) -> tuple[PriceRecord, bool]:
    """``PUT /projects/{project}/prices/{model}``: (the record, True when it is new)."""
    return project_prices.put_price(default_store(), project, model, price, budgets.utc_now())


def get_price(project: str, model: str) -> PriceRecord:
    """``GET /projects/{project}/prices/{model}``; PriceNotFound (404)."""
    return project_prices.get_price(default_store(), project, model)


def delete_price(project: str, model: str) -> None:
    """``DELETE /projects/{project}/prices/{model}``; PriceNotFound (404)."""
    project_prices.delete_price(default_store(), project, model)


def list_prices(project: str) -> PriceList:
    """``GET /projects/{project}/prices``: every price the project set."""
    return PriceList(prices=project_prices.list_prices(default_store(), project))
