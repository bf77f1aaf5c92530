"""DynamoDB stream of the budget table -> one ``Budget Threshold Crossed`` event per threshold a
budget level crosses in a period, on the alerts bus (budget_service/core/alerts.py has the rule).

Powertools' BatchProcessor reports partial batch failures (ReportBatchItemFailures): Lambda
retries from the first failed record. Records after a failed one are failed too, unprocessed,
so events leave in the order the writes happened.
"""

from decimal import Decimal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from budget_service.core import alerts
from budget_service.domain.budgets import utc_now
from budget_service.observability import logger, metrics, tracer
from budget_service.store.alerts import default_bus, default_ledger
from budget_service.store.base import default_store
from budget_service.store.levels import level_change

processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


class SkippedAfterFailure(Exception):
    """An earlier record of this batch failed; this one waits for the retry (keeps the order)."""


class Batch:
    """Per-invocation state: whether a record failed, and the project defaults read so far."""

    def __init__(self) -> None:
        self.failed = False
        self.project_defaults: dict[str, tuple[Decimal, ...]] = {}

    def thresholds(self, project: str) -> tuple[Decimal, ...]:
        if project not in self.project_defaults:
            own = default_ledger().project_default_thresholds(project)
            self.project_defaults[project] = own if own is not None else alerts.service_default_thresholds()
        return self.project_defaults[project]

    def record_handler(self, record: DynamoDBRecord) -> int:
        if self.failed:
            raise SkippedAfterFailure(record.dynamodb.sequence_number if record.dynamodb else None)
        try:
            stream = record.dynamodb
            assert stream is not None  # a DynamoDB stream record always has it
            created = stream.approximate_creation_date_time
            # A team or project level is dealt over several items (store/slices.py): the rule
            # reads the level's sums, not the one slice this record wrote.
            store = default_store()
            old, new = level_change(
                store.client, store.table_name, stream.old_image or None, stream.new_image or None
            )
            sent = alerts.handle_change(
                old,
                new,
                Decimal(created) if created is not None else utc_now(),
                ledger=default_ledger(),
                bus=default_bus(),
                project_thresholds=self.thresholds,
            )
        except Exception:
            self.failed = True
            raise
        for alert in sent:
            logger.info("alert sent", extra={"alert": alert.detail()})
        if sent:
            metrics.add_metric(name="BudgetAlertsSent", unit=MetricUnit.Count, value=len(sent))
        return len(sent)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    batch = Batch()
    return process_partial_response(
        event=event, record_handler=batch.record_handler, processor=processor, context=context
    )
