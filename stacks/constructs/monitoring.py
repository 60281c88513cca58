"""Alarms that say when something is wrong, to the alert topic, and a dashboard of the flow."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.constructs.functions import POWERTOOLS_ENVIRONMENT

NAMESPACE = POWERTOOLS_ENVIRONMENT["POWERTOOLS_METRICS_NAMESPACE"]
SERVICE = POWERTOOLS_ENVIRONMENT["POWERTOOLS_SERVICE_NAME"]
VERDICTS = ("Pass", "Review", "Fail", "Rejected", "Error")
REKOGNITION_OPERATIONS = ("DetectModerationLabels", "DetectText", "DetectFaces")
FIVE_MINUTES = Duration.minutes(5)


def racecheck_metric(name: str, *, period: Duration = FIVE_MINUTES) -> cloudwatch.Metric:
    """A metric the handlers emit with Powertools (which adds the ``service`` dimension)."""
    return cloudwatch.Metric(namespace=NAMESPACE, metric_name=name,
                             dimensions_map={"service": SERVICE}, statistic="Sum",
                             period=period)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topic: sns.ITopic,
        queue: sqs.IQueue,
        dead_letter_queues: Mapping[str, sqs.IQueue],
        consumer: lambda_.IFunction,
        state_machine: sfn.IStateMachine,
        queue_age_alarm: Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_action = actions.SnsAction(topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        def alarm(alarm_id: str, metric: cloudwatch.IMetric, threshold: float,
                  description: str, evaluation_periods: int = 1) -> None:
            created = cloudwatch.Alarm(
                self, alarm_id, metric=metric, threshold=threshold,
                evaluation_periods=evaluation_periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            created.add_alarm_action(alarm_action)
            self.alarms[alarm_id] = created

        alarm(
            "QueueBacklogAge",
            queue.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES,
                                                           statistic="Maximum"),
            queue_age_alarm.to_seconds(),
            "A photo has waited longer than expected in the ingest queue: the consumer is "
            "stopped, failing, or the upload outruns rekognition_tps (README: race day).",
            evaluation_periods=2,
        )
        for name, dead_letters in dead_letter_queues.items():
            alarm(
                f"{name}NotEmpty",
                dead_letters.metric_approximate_number_of_messages_visible(
                    period=FIVE_MINUTES, statistic="Maximum"),
                1,
                f"{name}: something failed after every retry and waits for `racecheck redrive` "
                "(README: when the dead-letter alarm fires).",
            )
        alarm("ErrorVerdicts", racecheck_metric("PhotosError"), 1,
              "Photos were recorded with an ERROR verdict: see their reasons "
              "(`racecheck redrive --errors --dry-run` lists them).")
        alarm("FailedExecutions", racecheck_metric("UnexpectedExecutionFailures"), 1,
              "Express runs failed in a way no retry fixes (not throttling): see the state "
              "machine's log group.")
        alarm("ConsumerErrors", consumer.metric_errors(period=FIVE_MINUTES), 1,
              "The queue consumer itself failed (permissions, configuration).")

        throttles = [
            cloudwatch.Metric(namespace="AWS/Rekognition", metric_name="ThrottledCount",
                              dimensions_map={"Operation": operation}, statistic="Sum",
                              period=Duration.minutes(1), label=operation)
            for operation in REKOGNITION_OPERATIONS
        ]
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Ingest queue",
                left=[queue.metric_approximate_number_of_messages_visible(label="waiting"),
                      queue.metric_approximate_number_of_messages_not_visible(
                          label="in progress or delayed")],
                right=[queue.metric_approximate_age_of_oldest_message(label="oldest (s)")],
            ),
            cloudwatch.GraphWidget(
                title="Photos checked per minute",
                left=[racecheck_metric("PhotosChecked", period=Duration.minutes(1))],
            ),
            cloudwatch.GraphWidget(
                title="Verdicts",
                left=[racecheck_metric(f"Photos{verdict}").with_(label=verdict.upper())
                      for verdict in VERDICTS],
                stacked=True,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Throttling",
                left=throttles,
                right=[racecheck_metric("PhotosRequeued", period=Duration.minutes(1))],
            ),
            cloudwatch.GraphWidget(
                title="Express runs",
                left=[state_machine.metric_succeeded(), state_machine.metric_failed(),
                      state_machine.metric_timed_out()],
                right=[state_machine.metric_time(statistic="p90", label="p90 duration (ms)")],
            ),
            cloudwatch.SingleValueWidget(
                title="Dead-letter queues",
                metrics=[dead_letters.metric_approximate_number_of_messages_visible(label=name)
                         for name, dead_letters in dead_letter_queues.items()],
            ),
        )
