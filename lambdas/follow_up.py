"""Results-table stream: by_bib index items, runner evidence and photo alerts, per record.

Stream records are retried until they succeed (bisected on failure, with a dead-letter
destination): each step is idempotent (see racecheck.core.follow_up).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.shared import dynamodb, logger, metrics, required_env, sns, tracer
from racecheck.core.follow_up import follow_up_photo, photo_record_to_follow

# Failed records are reported back (ReportBatchItemFailures), even when all of them failed:
# a raised error would count as a function error and tell nothing more.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams,
                           raise_on_entire_batch_failure=False)


def _follow_up(record: DynamoDBRecord) -> None:
    photo = photo_record_to_follow(record.raw_event)
    if photo is None:
        return
    done = follow_up_photo(photo, dynamodb=dynamodb(), sns=sns(),
                           results_table=required_env("RESULTS_TABLE_NAME"),
                           evidence_table=required_env("EVIDENCE_TABLE_NAME"),
                           topic_arn=required_env("ALERT_TOPIC_ARN"))
    # A metric per verdict: the one place that sees every recorded photo, ERROR included.
    metrics.add_metric(name="PhotosChecked", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=f"Photos{str(photo['verdict']).title()}", unit=MetricUnit.Count,
                       value=1)
    if done["alerts_sent"]:
        metrics.add_metric(name="PhotoAlertsSent", unit=MetricUnit.Count, value=1)
    logger.info("photo followed up", extra={"verdict": photo["verdict"], **done})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=_follow_up,
                                    processor=processor, context=context)
