"""POST /get_budget: litellm's hosted BudgetManager loads a project's user dict."""

from budget_service.api.http import create_app, lambda_entry
from budget_service.domain import budgets
from budget_service.schemas import GetBudgetRequest, GetBudgetResponse

app = create_app()


@app.post("/get_budget")
def get_budget(request: GetBudgetRequest) -> GetBudgetResponse:
    return budgets.litellm_get_budget(request)


lambda_handler = lambda_entry(app)
