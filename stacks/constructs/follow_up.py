"""What follows a recorded verdict, driven by the tables' DynamoDB streams.

The results stream feeds the follow-up (by_bib index, runner evidence, photo alerts); the
evidence stream feeds the suspect alerts. Failed records are retried with bisection, then
parked in a dead-letter queue (its alarm says so; `racecheck redrive --follow-ups`).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from racecheck.core.settings import SETTINGS_ENV_VAR, Settings
from stacks.constructs.functions import POWERTOOLS_ENVIRONMENT, FunctionSpec, handler_function
from stacks.constructs.queue import DEAD_LETTER_RETENTION, encrypted_queue

FOLLOW_UP_SPEC = FunctionSpec(
    "FollowUp", "follow_up", 256, 60, "Index entries, runner evidence and alerts per verdict"
)
SUSPECT_SPEC = FunctionSpec(
    "SuspectAlerts", "suspect_alerts", 256, 60, "Alerts once per runner crossing the threshold"
)
# Enough attempts to ride out an SNS or DynamoDB outage of an hour or so with backoff, few
# enough that a record that can never succeed does not hold its shard for the stream's 24 h.
STREAM_RETRY_ATTEMPTS = 50
STREAM_MAX_RECORD_AGE = Duration.hours(12)


def _stream_source(table: dynamodb.ITable, failures: sqs.IQueue) -> event_sources.DynamoEventSource:
    return event_sources.DynamoEventSource(
        table,
        starting_position=lambda_.StartingPosition.TRIM_HORIZON,
        batch_size=25,
        bisect_batch_on_error=True,
        report_batch_item_failures=True,
        retry_attempts=STREAM_RETRY_ATTEMPTS,
        max_record_age=STREAM_MAX_RECORD_AGE,
        on_failure=event_sources.SqsDlq(failures),
    )


class FollowUp(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        settings: Settings,
        results: dynamodb.ITable,
        evidence: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)

        self.dead_letter_queue = encrypted_queue(self, "DeadLetterQueue",
                                                 retention_period=DEAD_LETTER_RETENTION)
        environment = {**POWERTOOLS_ENVIRONMENT, SETTINGS_ENV_VAR: settings.to_json()}
        self.function = handler_function(self, FOLLOW_UP_SPEC, code, environment)
        self.function.add_event_source(_stream_source(results, self.dead_letter_queue))
        self.suspects_function = handler_function(self, SUSPECT_SPEC, code, environment)
        self.suspects_function.add_event_source(_stream_source(evidence, self.dead_letter_queue))
