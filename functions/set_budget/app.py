"""POST /set_budget: litellm's hosted BudgetManager saves its user dict (merged, never erasing)."""

from budget_service.api.http import create_app, key_id_of, lambda_entry
from budget_service.domain import budgets
from budget_service.schemas import SetBudgetRequest, SetBudgetResponse
from budget_service.store.base import default_store

app = create_app()

# Stop starting writes with this much of the Lambda's time left (API Gateway gives up at 29 s,
# the function's timeout): enough for the write in flight and the answer saying what was written.
RESERVE_MS = 8_000


@app.post("/set_budget")
def set_budget(request: SetBudgetRequest) -> SetBudgetResponse:
    result = budgets.set_budget(
        default_store(),
        request.project_name,
        request.user_dict,
        budgets.utc_now(),
        keep_going=lambda: app.lambda_context.get_remaining_time_in_millis() > RESERVE_MS,
        key_id=key_id_of(app.event),
    )
    return SetBudgetResponse(
        status="success",
        written=result.written,
        unchanged=result.unchanged,
        stale_spend_ignored=result.stale_spend_ignored,
        uncertain_spend_kept=result.uncertain_spend_kept,
    )


lambda_handler = lambda_entry(app)
