"""The queue consumer: starts one synchronous Express run per photo, at a paced rate."""

from __future__ import annotations

import json
from dataclasses import asdict

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lambdas.shared import THROUGHPUT_ENV_VAR
from racecheck.core.throughput import Throughput
from stacks.constructs.functions import POWERTOOLS_ENVIRONMENT, FunctionSpec, handler_function

# Express runs at most 5 minutes; the consumer waits for the run, then paces, then may write
# an ERROR record.
CONSUMER_TIMEOUT_SECONDS = 330
CONSUMER_TIMEOUT = Duration.seconds(CONSUMER_TIMEOUT_SECONDS)
CONSUMER_SPEC = FunctionSpec(
    "StartChecks", "start_checks", 128, CONSUMER_TIMEOUT_SECONDS,
    "Checks each queued photo with the Express state machine, paced under the Rekognition quota",
)
# AWS: "set the source queue's visibility timeout to at least six times the timeout of your
# function", so a batch held while the function is throttled is not received twice. A failed
# photo does not wait this long: the consumer sets its own, shorter, delay.
QUEUE_VISIBILITY_TIMEOUT = Duration.seconds(6 * CONSUMER_TIMEOUT_SECONDS)


def throughput_json(throughput: Throughput) -> str:
    return json.dumps(asdict(throughput), sort_keys=True)


class CheckConsumer(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        queue: sqs.IQueue,
        throughput: Throughput,
    ) -> None:
        super().__init__(scope, construct_id)

        environment = {
            **POWERTOOLS_ENVIRONMENT,
            THROUGHPUT_ENV_VAR: throughput_json(throughput),
        }
        self.function = handler_function(self, CONSUMER_SPEC, code, environment)
        # One photo per invocation, at most `concurrency` at once: with the pacing in the
        # handler this holds the start rate under the quota (racecheck.core.throughput).
        self.function.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=1,
                max_concurrency=throughput.concurrency,
                report_batch_item_failures=True,
            )
        )
