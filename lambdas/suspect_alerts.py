"""Evidence-table stream: alerts a runner once when their photos cross the suspect threshold.

One runner's records arrive in order, one batch at a time, so however many photos push a
runner over the threshold at once, the alert is published once and then marked sent.
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

from lambdas.shared import dynamodb, logger, metrics, required_env, settings, sns, tracer
from racecheck.core.follow_up import alert_suspect, evidence_to_judge

# Failed records are reported back (ReportBatchItemFailures), even when all of them failed:
# a raised error would count as a function error and tell nothing more.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams,
                           raise_on_entire_batch_failure=False)


def _judge(record: DynamoDBRecord) -> None:
    evidence = evidence_to_judge(record.raw_event)
    if evidence is None:
        return
    if alert_suspect(evidence, dynamodb=dynamodb(), sns=sns(),
                     evidence_table=required_env("EVIDENCE_TABLE_NAME"),
                     topic_arn=required_env("ALERT_TOPIC_ARN"), settings=settings()):
        metrics.add_metric(name="SuspectAlertsSent", unit=MetricUnit.Count, value=1)
        logger.info("suspect alert sent", extra={"bib": evidence.get("bib")})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=_judge,
                                    processor=processor, context=context)
