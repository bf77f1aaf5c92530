"""POST /get_budget: litellm's hosted BudgetManager loads a project's user dict."""

from budget_service.api.http import create_app, lambda_entry
from budget_service.domain import budgets
from budget_service.schemas import GetBudgetRequest, GetBudgetResponse
from budget_service.store.base import default_store

app = create_app()


@app.post("/get_budget")
def get_budget(request: GetBudgetRequest) -> GetBudgetResponse:
    data = budgets.project_entries(default_store(), request.project_name, budgets.utc_now())
    if data is None:
        # litellm reads status "error" as "nothing stored yet"; its HTTP helper raises on
        # anything but 2xx, so an unknown project must still be HTTP 200.
        return GetBudgetResponse(
            status="error", message=f"no budgets stored for project {request.project_name!r}"
        )
    return GetBudgetResponse.model_validate({"status": "success", "data": data})


lambda_handler = lambda_entry(app)
