"""EventBridge Scheduler -> update_budget_all_users: roll over every budget whose period ended.

Runs on the ResetSchedule rate. Works until the Lambda's remaining time runs low and leaves the
rest to the next run; logs and returns a summary (due, reset, skipped, failed, left) and emits
it as metrics. A run in which some writes failed raises after everything else is done, so the
failure shows in the function's Errors metric and lands in the failure queue; the failed
budgets stay due and the next run retries them.
"""

from aws_lambda_powertools.metrics import MetricUnit

from budget_service.domain.budgets import utc_now
from budget_service.domain.resets import update_budget_all_users
from budget_service.observability import logger, metrics, tracer

# Stop starting resets with this much time left: enough for in-flight writes (each bounded by the
# store client's timeouts), the count of what is left, and flushing logs and metrics.
RESERVE_MS = 20_000


class ResetRunFailed(Exception):
    """Some due budgets could not be written in this run (they stay due)."""


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    # The wall clock, never the scheduled time: a late or retried run must not reset a period
    # that has not ended, and should reset everything that has.
    now = utc_now()
    # The schedule's Input carries Scheduler's context attributes (template.yaml), for the logs.
    fields = ("schedule_arn", "scheduled_time", "execution_id", "attempt_number")
    logger.info("reset run", extra={f: event.get(f) for f in fields} if isinstance(event, dict) else {})
    summary = update_budget_all_users(
        now, keep_going=lambda: context.get_remaining_time_in_millis() > RESERVE_MS
    )
    result = summary.as_dict()
    for name, value in (
        ("BudgetsDue", summary.due),
        ("BudgetsReset", summary.reset),
        ("BudgetResetsSkipped", summary.skipped),
        ("BudgetResetsFailed", summary.failed),
        ("BudgetsLeftForNextRun", summary.left),
        ("HoldsExpired", summary.holds_expired),
        ("HoldExpiriesFailed", summary.holds_failed),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("reset summary", extra={"summary": result})
    if summary.failed or summary.holds_failed or summary.levels_failed:
        raise ResetRunFailed(
            f"{summary.failed} due budget(s) could not be reset, {summary.holds_failed} expired"
            f" hold(s) not released: {result}"
        )
    return result
