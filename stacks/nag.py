"""cdk-nag AwsSolutions acknowledgments, each scoped to the construct whose finding it accepts.

Every entry states why the finding cannot be fixed here. tests/test_cdk_nag.py checks that
each acknowledgment matches a finding that really occurs without it (none are stale).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import aws_cdk as cdk
from constructs import IConstruct

XRAY_REASON = (
    "X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no "
    "resource-level permissions, so AWS requires Resource '*' for them."
)
REKOGNITION_REASON = (
    "Rekognition Detect* actions (DetectModerationLabels, DetectText, DetectFaces) support no "
    "resource-level permissions, so Resource '*' is the only option; the S3 read of the photo "
    "is limited to the ingest bucket. Also: " + XRAY_REASON
)
STATE_MACHINE_REASON = (
    "Step Functions logging and tracing: the CloudWatch Logs vended-log delivery actions "
    "(logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, DeleteLogDelivery, "
    "ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups) and "
    "xray:PutTraceSegments/PutTelemetryRecords/GetSamplingRules/GetSamplingTargets support no "
    "resource-level permissions. Every service integration is granted on its exact ARN."
)
PHOTO_OBJECTS_REASON = (
    "The handler reads whichever photo triggered the execution: the object key is only known "
    "at run time, so s3:GetObject/GetObjectVersion are granted on <ingest bucket ARN>/* and "
    "on no other bucket."
)
RUNTIME_REASON = (
    "Python 3.12 is deliberate: the bundler installs wheels built for cp312 manylinux aarch64 "
    "and the handlers are tested on that runtime; move runtime and --python-version together."
)
DLQ_REASON = (
    "This queue is itself a dead-letter queue: the on-failure destination of the follow-up "
    "stream sources; a DLQ of a DLQ would only move the same messages again. Its depth "
    "raises an alarm."
)
STREAM_REASON = (
    "Reading a DynamoDB stream needs dynamodb:ListStreams, which supports no resource-level "
    "permissions; GetRecords/GetShardIterator/DescribeStream are granted on the table's own "
    "stream ARN only. Also: " + XRAY_REASON
)


@dataclass(frozen=True)
class NagAcknowledgment:
    scope: IConstruct
    rule: str
    reason: str


def apply(acknowledgments: Iterable[NagAcknowledgment]) -> None:
    for acknowledgment in acknowledgments:
        cdk.Validations.of(acknowledgment.scope).acknowledge(
            cdk.Acknowledgment(id=acknowledgment.rule, reason=acknowledgment.reason)
        )


def racecheck_acknowledgments(
    *,
    plain_functions: Iterable[IConstruct],
    rekognition_functions: Iterable[IConstruct],
    photo_readers: Iterable[IConstruct],
    stream_readers: Iterable[IConstruct],
    ingest_bucket_logical_id: str,
    state_machine: IConstruct,
    dead_letter_queues: Iterable[IConstruct],
) -> list[NagAcknowledgment]:
    """The stack's acknowledgments; function scopes are the per-function constructs."""
    wildcard = "AwsSolutions-IAM5[Resource::*]"
    photo_objects = f"AwsSolutions-IAM5[Resource::<{ingest_bucket_logical_id}.Arn>/*]"
    streams = list(stream_readers)
    plain = list(plain_functions)
    rekognition = list(rekognition_functions)
    acknowledgments = [
        NagAcknowledgment(scope, wildcard, STREAM_REASON if scope in streams else XRAY_REASON)
        for scope in plain
    ]
    acknowledgments += [
        NagAcknowledgment(scope, wildcard, REKOGNITION_REASON) for scope in rekognition
    ]
    acknowledgments += [
        NagAcknowledgment(scope, "AwsSolutions-L1", RUNTIME_REASON) for scope in plain + rekognition
    ]
    acknowledgments += [
        NagAcknowledgment(scope, photo_objects, PHOTO_OBJECTS_REASON) for scope in photo_readers
    ]
    acknowledgments.append(NagAcknowledgment(state_machine, wildcard, STATE_MACHINE_REASON))
    acknowledgments += [
        NagAcknowledgment(queue, "AwsSolutions-SQS3", DLQ_REASON) for queue in dead_letter_queues
    ]
    return acknowledgments
