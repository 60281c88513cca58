"""The queue consumer: one SQS message (an S3 "Object Created" event) = one photo checked.

The consumer runs the Express state machine synchronously (StartSyncExecution: at most
once, and the caller learns how it ended) and decides what happens to the message:

- the run recorded a verdict (or found one already recorded): the message is done;
- the run gave up on throttling, a 5xx or a timeout (the ASL's ``RetryLater`` state, or a
  timed-out run, or the start call itself failing): the message goes back to the queue
  and returns after a delay that doubles with each receive, so the photo is checked
  again minutes later, well beyond one run's 5-minute limit. On the last receive before
  the dead-letter queue an ERROR record is written first, so the photo still has a
  verdict that says why, and the message stays redrivable from the DLQ;
- the run failed in a way no retry fixes (for example ``States.DataLimitExceeded``, which
  no Catch can see): an ERROR record is written and the message is done.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from racecheck.core.aws_errors import describe, transient_kind
from racecheck.core.records import to_attribute_values
from racecheck.core.throughput import Throughput

RETRY_LATER = "RetryLater."
CHECKED = "checked"
REQUEUED = "requeued"
GAVE_UP = "gave_up"
FAILED = "failed"
MALFORMED = "malformed"


class PhotoNotDone(Exception):
    """The message must stay in the queue (the batch processor reports it as failed)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Outcome:
    kind: str
    detail: str = ""


def photo_of(event: Mapping[str, Any]) -> dict[str, str]:
    detail = event["detail"]
    bucket = str(detail["bucket"]["name"])
    key = str(detail["object"]["key"])
    version = str(detail["object"].get("version-id") or "null")
    return {"bucket": bucket, "key": key, "version": version, "photo": f"{bucket}/{key}"}


def error_record(event: Mapping[str, Any], *, error: str, cause: str, summary: str,
                 execution: str) -> dict[str, Any]:
    photo = photo_of(event)
    return {
        **photo,
        "verdict": "ERROR",
        "reasons": [f"ERROR:{error}"],
        "summary": summary,
        "error": error,
        "error_cause": cause[:4000],
        "recorded_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"),
        "execution": execution,
    }


def put_error_record(dynamodb: Any, table: str, record: Mapping[str, Any]) -> bool:
    """Write an ERROR record unless a real verdict is there already; True when written."""
    try:
        dynamodb.put_item(
            TableName=table, Item=to_attribute_values(record),
            ConditionExpression="attribute_not_exists(photo) OR #verdict = :error",
            ExpressionAttributeNames={"#verdict": "verdict"},
            ExpressionAttributeValues={":error": {"S": "ERROR"}},
        )
    except Exception as error:
        if getattr(error, "response", {}).get("Error", {}).get("Code") == (
                "ConditionalCheckFailedException"):
            return False
        raise
    return True


def _transient_failure(result: Mapping[str, Any]) -> tuple[str, str] | None:
    """(error, cause) when the run ended in a way a later attempt can fix."""
    status = result.get("status")
    error = str(result.get("error") or "")
    cause = str(result.get("cause") or "")
    if status == "TIMED_OUT":
        return "States.Timeout", cause or "the execution ran out of its 5 minutes"
    if status == "FAILED" and error.startswith(RETRY_LATER):
        return error.removeprefix(RETRY_LATER) or "RetryLater", cause
    return None


def check_message(*, message_id: str, body: str, receive_count: int,
                  start_sync: Callable[..., Mapping[str, Any]],
                  requeue: Callable[[int], None], record_error: Callable[[dict[str, Any]], bool],
                  throughput: Throughput) -> Outcome:
    """Run the workflow for one message; raise ``PhotoNotDone`` to keep it in the queue."""
    try:
        event = json.loads(body)
        photo_of(event)
    except (ValueError, KeyError, TypeError) as error:
        # Not an S3 event: nothing to check or record. It cycles to the DLQ and its alarm.
        raise PhotoNotDone(MALFORMED, f"message {message_id}: {error}") from error

    execution_name = f"{message_id}-{receive_count}"[:80]
    try:
        result = start_sync(name=execution_name, input=body)
    except Exception as error:
        if transient_kind(error) is None:
            # AccessDenied, a deleted state machine...: retrying helps once it is fixed.
            failure = (type(error).__name__, describe(error))
        else:
            failure = (transient_kind(error).__name__, describe(error))  # type: ignore[union-attr]
    else:
        if result.get("status") == "SUCCEEDED":
            output = json.loads(result.get("output") or "{}")
            return Outcome(CHECKED, str(output.get("outcome", "")))
        transient = _transient_failure(result)
        if transient is None:
            error_name = str(result.get("error") or result.get("status") or "Unknown")
            record_error(error_record(
                event, error=error_name, cause=str(result.get("cause") or ""),
                summary=f"The check failed and would fail again: {error_name}.",
                execution=str(result.get("executionArn") or "")))
            return Outcome(FAILED, error_name)
        failure = transient

    error_name, cause = failure
    if receive_count >= throughput.max_receives:
        record_error(error_record(
            event, error=error_name, cause=cause,
            summary=(f"Gave up after {receive_count} attempts ({error_name}); the event is in "
                     "the dead-letter queue: `racecheck redrive` checks it again."),
            execution=execution_name))
        # Visible again at once: its next receive moves it to the dead-letter queue rather
        # than after the queue's half-hour visibility timeout.
        requeue(0)
        raise PhotoNotDone(GAVE_UP, f"after {receive_count} attempts: {error_name}")
    delay = throughput.requeue_delay(receive_count)
    requeue(delay)
    raise PhotoNotDone(REQUEUED, f"back to the queue for {delay} s after {error_name}")
