"""The REVIEW digest: a scheduled Lambda that sends the window's REVIEW photos as one message.

Created only with ``review_alerts: digest``; the stack wires its table, topic and grants.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from racecheck.core.settings import SETTINGS_ENV_VAR, Settings
from stacks.constructs.functions import POWERTOOLS_ENVIRONMENT, FunctionSpec, handler_function

DIGEST_SPEC = FunctionSpec(
    "ReviewDigest", "digest", 256, 60, "Sends the REVIEW photos of the last window as one digest"
)


class ReviewDigest(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, code: lambda_.Code, settings: Settings
    ) -> None:
        super().__init__(scope, construct_id)

        environment = {**POWERTOOLS_ENVIRONMENT, SETTINGS_ENV_VAR: settings.to_json()}
        self.function = handler_function(self, DIGEST_SPEC, code, environment)
        every = Duration.minutes(settings.review_digest_minutes)
        self.rule = events.Rule(
            self,
            "Schedule",
            description="Sends the REVIEW photos recorded in each window as one digest",
            schedule=events.Schedule.rate(every),
        )
        # EventBridge invokes asynchronously: Lambda retries a failed run twice with the same
        # event, so the same window (the handler derives it from the event's time).
        self.rule.add_target(targets.LambdaFunction(self.function, max_event_age=every))
