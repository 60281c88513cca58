"""Starts one execution per object created in the ingest bucket, with retries and a DLQ."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

# StartExecution fails mostly on throttling; after this, the event waits in the DLQ for replay.
START_RETRY_ATTEMPTS = 20
START_MAX_EVENT_AGE = Duration.hours(6)


def object_created_detail(bucket_name: str, key_prefix: str) -> dict[str, Any]:
    # Every object is checked (no suffix filter): a PNG or a mislabelled upload gets a verdict.
    detail: dict[str, Any] = {"bucket": {"name": [bucket_name]}}
    if key_prefix:
        detail["object"] = {"key": [{"prefix": key_prefix}]}
    return detail


class PhotoTrigger(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        key_prefix: str,
        state_machine: sfn.IStateMachine,
    ) -> None:
        super().__init__(scope, construct_id)

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.rule = events.Rule(
            self,
            "ObjectCreated",
            description="Checks every photo uploaded to the ingest bucket",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail=object_created_detail(bucket.bucket_name, key_prefix),
            ),
        )
        self.rule.add_target(
            targets.SfnStateMachine(
                state_machine,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=START_RETRY_ATTEMPTS,
                max_event_age=START_MAX_EVENT_AGE,
            )
        )
