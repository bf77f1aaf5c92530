"""POST /set_budget: litellm's hosted BudgetManager saves its user dict (merged, never erasing)."""

from budget_service.api.http import create_app, lambda_entry
from budget_service.domain import budgets
from budget_service.schemas import SetBudgetRequest, SetBudgetResponse

app = create_app()

# Stop starting writes with this much of the Lambda's time left (API Gateway gives up at 29 s,
# the function's timeout): enough for the write in flight and the answer saying what was written.
RESERVE_MS = 8_000


@app.post("/set_budget")
def set_budget(request: SetBudgetRequest) -> SetBudgetResponse:
    return budgets.litellm_set_budget(
        request,
        keep_going=lambda: app.lambda_context.get_remaining_time_in_millis() > RESERVE_MS,
        key_id=app.key_id(),
    )


lambda_handler = lambda_entry(app)
