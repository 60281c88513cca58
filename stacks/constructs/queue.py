"""The ingest queue: every object created in the bucket becomes a message, held until checked.

EventBridge rule -> SQS queue (encrypted, TLS-only) -> redrive to a dead-letter queue after
``max_receives`` receives. The queue absorbs a race-day burst; the consumer drains it at
the pace Rekognition admits.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# EventBridge retries delivery to the queue for a day, then parks the event in the DLQ.
DELIVERY_RETRY_ATTEMPTS = 185
DELIVERY_MAX_EVENT_AGE = Duration.hours(24)
# A race's photos are usually checked within hours; four days covers a long weekend.
MESSAGE_RETENTION = Duration.days(4)
DEAD_LETTER_RETENTION = Duration.days(14)


def encrypted_queue(scope: Construct, construct_id: str, *, retention_period: Duration,
                    **options: Any) -> sqs.Queue:
    """A queue as every racecheck queue is: SQS-managed encryption at rest, TLS-only access."""
    return sqs.Queue(scope, construct_id, encryption=sqs.QueueEncryption.SQS_MANAGED,
                     enforce_ssl=True, retention_period=retention_period, **options)


def object_created_detail(bucket_name: str, key_prefix: str) -> dict[str, Any]:
    # Every object is checked (no suffix filter): a PNG or a mislabelled upload gets a verdict.
    detail: dict[str, Any] = {"bucket": {"name": [bucket_name]}}
    if key_prefix:
        detail["object"] = {"key": [{"prefix": key_prefix}]}
    return detail


class PhotoQueue(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        key_prefix: str,
        max_receives: int,
        visibility_timeout: Duration,
    ) -> None:
        super().__init__(scope, construct_id)

        self.dead_letter_queue = encrypted_queue(self, "DeadLetterQueue",
                                                 retention_period=DEAD_LETTER_RETENTION)
        self.queue = encrypted_queue(
            self,
            "Queue",
            retention_period=MESSAGE_RETENTION,
            visibility_timeout=visibility_timeout,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=max_receives
            ),
        )
        self.rule = events.Rule(
            self,
            "ObjectCreated",
            description="Queues every photo uploaded to the ingest bucket for checking",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail=object_created_detail(bucket.bucket_name, key_prefix),
            ),
        )
        # The message body is the event itself, as the state machine expects it.
        self.rule.add_target(
            targets.SqsQueue(
                self.queue,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=DELIVERY_RETRY_ATTEMPTS,
                max_event_age=DELIVERY_MAX_EVENT_AGE,
            )
        )
