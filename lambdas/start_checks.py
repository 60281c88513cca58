"""Queue consumer: checks each photo the ingest queue delivers, at a pace Rekognition admits.

The SQS event source delivers one message per invocation (batch size 1) to at most
``Throughput.concurrency`` invocations at once; each invocation lasts at least
``Throughput.slot_seconds``, so photos start at no more than a share of the Rekognition
quota per second (see racecheck.core.throughput).
"""

from __future__ import annotations

import os
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.shared import (
    dynamodb,
    logger,
    metrics,
    required_env,
    sqs,
    stepfunctions,
    throughput,
    tracer,
)
from racecheck.core.check_queue import PhotoNotDone, check_message, put_error_record

# Failed records are reported back (ReportBatchItemFailures), even when all of them failed:
# a raised error would count as a function error and tell nothing more.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
METRIC_BY_KIND = {"requeued": "PhotosRequeued", "gave_up": "PhotosGivenUp",
                  "malformed": "MalformedMessages"}


def _check(record: SQSRecord) -> str:
    receive_count = int(record.attributes.approximate_receive_count)

    def start_sync(**request: Any) -> Any:
        return stepfunctions().start_sync_execution(
            stateMachineArn=required_env("STATE_MACHINE_ARN"), **request)

    def requeue(delay: int) -> None:
        sqs().change_message_visibility(QueueUrl=required_env("PHOTO_QUEUE_URL"),
                                        ReceiptHandle=record.receipt_handle,
                                        VisibilityTimeout=delay)

    def record_error(item: dict[str, Any]) -> bool:
        metrics.add_metric(name="ErrorRecordsWritten", unit=MetricUnit.Count, value=1)
        return put_error_record(dynamodb(), required_env("RESULTS_TABLE_NAME"), item)

    try:
        outcome = check_message(message_id=record.message_id, body=record.body,
                                receive_count=receive_count, start_sync=start_sync,
                                requeue=requeue, record_error=record_error,
                                throughput=throughput())
    except PhotoNotDone as not_done:
        logger.warning("photo not done", extra={"message_id": record.message_id,
                                                "receive_count": receive_count,
                                                "kind": not_done.kind, "detail": not_done.detail})
        metrics.add_metric(name=METRIC_BY_KIND.get(not_done.kind, "PhotosNotDone"),
                           unit=MetricUnit.Count, value=1)
        raise
    if outcome.kind == "failed":
        metrics.add_metric(name="UnexpectedExecutionFailures", unit=MetricUnit.Count, value=1)
    logger.info("photo done", extra={"message_id": record.message_id, "kind": outcome.kind,
                                     "detail": outcome.detail})
    return outcome.kind


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    started = time.monotonic()
    response = process_partial_response(event=event, record_handler=_check,
                                        processor=processor, context=context)
    # Start-rate pacing: a slot that finished early waits out its interval, unless the
    # function's own time is nearly up.
    wait = throughput().slot_seconds - (time.monotonic() - started)
    if pacing_enabled() and wait > 0 and context.get_remaining_time_in_millis() > (
            wait + 5) * 1000:
        time.sleep(wait)
    return response


def pacing_enabled() -> bool:
    # Off in the local runner, where the offline detectors, not a quota, set the pace.
    return os.environ.get("PACE_STARTS", "true").lower() != "false"
