"""The racecheck stack: composes the constructs and wires least-privilege grants between them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct, IConstruct

from lambdas.shared import THROUGHPUT_ENV_VAR
from racecheck.core.digest import BY_VERDICT_INDEX
from racecheck.core.throughput import Throughput
from stacks import nag
from stacks.bundling import lambda_code
from stacks.config import StackConfig
from stacks.constructs.alerts import Alerts
from stacks.constructs.consumer import QUEUE_VISIBILITY_TIMEOUT, CheckConsumer, throughput_json
from stacks.constructs.digest import ReviewDigest
from stacks.constructs.follow_up import FollowUp
from stacks.constructs.functions import PhotoFunctions
from stacks.constructs.ingest import IngestBucket
from stacks.constructs.monitoring import Monitoring
from stacks.constructs.queue import PhotoQueue
from stacks.constructs.tables import Tables
from stacks.constructs.workflow import PhotoWorkflow

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
ACCESS_LOGS_WITH_BUCKET_POLICY = "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy"
DEFINITION_PATH = REPOSITORY_ROOT / "statemachine" / "photo_check.asl.json"


def allow(grantee: iam.IGrantable, actions: Sequence[str], resources: Sequence[str]) -> None:
    """Adds one statement with exactly these actions on exactly these resources."""
    iam.Grant.add_to_principal(
        grantee=grantee, actions=list(actions), resource_arns=list(resources)
    )


def _scope(function: lambda_.Function) -> IConstruct:
    # The per-function construct holding the function, its role and its log group.
    parent = function.node.scope
    assert parent is not None
    return parent


def _grant_handlers(
    functions: PhotoFunctions,
    *,
    bucket: s3.IBucket,
    runners: dynamodb.ITable,
    quota: dynamodb.ITable,
    throughput: Throughput,
) -> None:
    photo_objects = bucket.arn_for_objects("*")
    read_photo = ["s3:GetObject", "s3:GetObjectVersion"]
    allow(functions.check_image, read_photo, [photo_objects])
    # ListBucket only so that a missing key answers NoSuchKey rather than AccessDenied.
    allow(functions.check_image, ["s3:ListBucket"], [bucket.bucket_arn])
    # Rekognition reads the S3Object with the caller's rights; its Detect* actions have no
    # resource-level permissions, so "*" is the only possible resource.
    for function, rekognition_action in (
        (functions.moderate, "rekognition:DetectModerationLabels"),
        (functions.read_bibs, "rekognition:DetectText"),
        (functions.analyze_faces, "rekognition:DetectFaces"),
    ):
        allow(function, [rekognition_action], ["*"])
        allow(function, read_photo, [photo_objects])
        # Every call takes a slot of the shared Rekognition budget first.
        function.add_environment("QUOTA_TABLE_NAME", quota.table_name)
        function.add_environment(THROUGHPUT_ENV_VAR, throughput_json(throughput))
        allow(function, ["dynamodb:UpdateItem"], [quota.table_arn])
    functions.decide.add_environment("RUNNERS_TABLE_NAME", runners.table_name)
    allow(functions.decide, ["dynamodb:GetItem", "dynamodb:BatchGetItem"], [runners.table_arn])


def _grant_state_machine(
    state_machine: sfn.StateMachine, *, functions: PhotoFunctions, tables: Tables
) -> None:
    # Exactly the service integrations the definition uses. CDK derives no grants from a
    # string definition, and its grant helpers would add "<function arn>:*" and "index/*".
    allow(
        state_machine,
        ["lambda:InvokeFunction"],
        [function.function_arn for function in functions.by_id.values()],
    )
    allow(state_machine, ["dynamodb:GetItem", "dynamodb:PutItem"], [tables.results.table_arn])


def _grant_consumer(
    consumer: CheckConsumer, *, state_machine: sfn.StateMachine, queue: PhotoQueue,
    tables: Tables
) -> None:
    function = consumer.function
    function.add_environment("STATE_MACHINE_ARN", state_machine.state_machine_arn)
    function.add_environment("PHOTO_QUEUE_URL", queue.queue.queue_url)
    function.add_environment("RESULTS_TABLE_NAME", tables.results.table_name)
    allow(function, ["states:StartSyncExecution"], [state_machine.state_machine_arn])
    # The ERROR record when a photo's last attempt fails (a real verdict is never replaced).
    allow(function, ["dynamodb:PutItem"], [tables.results.table_arn])
    # Receive, delete and ChangeMessageVisibility come with the event source's own grant.


def _publish(grantee: iam.IGrantable, alerts: Alerts) -> None:
    allow(grantee, ["sns:Publish"], [alerts.topic.topic_arn])
    # Publishing to a KMS-encrypted topic needs a data key from the topic's key.
    allow(grantee, ["kms:GenerateDataKey", "kms:Decrypt"], [alerts.key.key_arn])


def _grant_follow_up(follow_up: FollowUp, *, tables: Tables, alerts: Alerts) -> None:
    function = follow_up.function
    function.add_environment("RESULTS_TABLE_NAME", tables.results.table_name)
    function.add_environment("EVIDENCE_TABLE_NAME", tables.evidence.table_name)
    function.add_environment("ALERT_TOPIC_ARN", alerts.topic.topic_arn)
    # by_bib items (PutItem) and the photo's alert_sent_at mark (UpdateItem).
    allow(function, ["dynamodb:PutItem", "dynamodb:UpdateItem"], [tables.results.table_arn])
    allow(function, ["dynamodb:UpdateItem"], [tables.evidence.table_arn])
    _publish(function, alerts)
    suspects = follow_up.suspects_function
    suspects.add_environment("EVIDENCE_TABLE_NAME", tables.evidence.table_name)
    suspects.add_environment("ALERT_TOPIC_ARN", alerts.topic.topic_arn)
    allow(suspects, ["dynamodb:UpdateItem"], [tables.evidence.table_arn])
    _publish(suspects, alerts)


def _grant_digest(digest: ReviewDigest, *, tables: Tables, alerts: Alerts) -> None:
    function = digest.function
    function.add_environment("RESULTS_TABLE_NAME", tables.results.table_name)
    function.add_environment("ALERT_TOPIC_ARN", alerts.topic.topic_arn)
    # The index only: the digest never reads a photo's full record (faces, thresholds, ...).
    allow(function, ["dynamodb:Query"], [f"{tables.results.table_arn}/index/{BY_VERDICT_INDEX}"])
    _publish(function, alerts)


class RacecheckStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        definition_path: Path = DEFINITION_PATH,
        repository_root: Path = REPOSITORY_ROOT,
        acknowledge_nag_findings: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # Grant S3 log delivery through a bucket policy (AWS's recommendation) instead of
        # ACLs, which BUCKET_OWNER_ENFORCED disables; cdk.json sets no feature flags.
        self.node.set_context(ACCESS_LOGS_WITH_BUCKET_POLICY, True)
        config = StackConfig.from_context(self.node.try_get_context)

        ingest = IngestBucket(
            self,
            "Ingest",
            photo_expiry_days=config.photo_expiry_days,
            key_prefix=config.ingest_prefix,
        )
        tables = Tables(self, "Tables")
        alerts = Alerts(
            self, "Alerts", emails=config.notify_emails, sms_numbers=config.notify_sms_numbers
        )
        code = lambda_code(repository_root)
        functions = PhotoFunctions(self, "Functions", code=code, settings=config.settings)
        # With "each", the workflow already sends every REVIEW photo: no digest to build.
        digest = (
            ReviewDigest(self, "ReviewDigest", code=code, settings=config.settings)
            if config.settings.review_alerts == "digest"
            else None
        )
        workflow = PhotoWorkflow(
            self,
            "Workflow",
            definition_path=definition_path,
            substitutions={
                "CheckImageFunctionArn": functions.check_image.function_arn,
                "ModerateFunctionArn": functions.moderate.function_arn,
                "ReadBibsFunctionArn": functions.read_bibs.function_arn,
                "AnalyzeFacesFunctionArn": functions.analyze_faces.function_arn,
                "DecideFunctionArn": functions.decide.function_arn,
                "ResultsTableName": tables.results.table_name,
            },
        )
        queue = PhotoQueue(
            self,
            "IngestQueue",
            bucket=ingest.bucket,
            key_prefix=config.ingest_prefix,
            max_receives=config.throughput.max_receives,
            visibility_timeout=QUEUE_VISIBILITY_TIMEOUT,
        )
        consumer = CheckConsumer(
            self, "Consumer", code=code, queue=queue.queue, throughput=config.throughput
        )
        follow_up = FollowUp(
            self,
            "FollowUp",
            code=code,
            settings=config.settings,
            results=tables.results,
            evidence=tables.evidence,
        )

        bucket = ingest.bucket
        state_machine = workflow.state_machine
        _grant_handlers(
            functions,
            bucket=bucket,
            runners=tables.runners,
            quota=tables.quota,
            throughput=config.throughput,
        )
        _grant_state_machine(state_machine, functions=functions, tables=tables)
        _grant_consumer(consumer, state_machine=state_machine, queue=queue, tables=tables)
        _grant_follow_up(follow_up, tables=tables, alerts=alerts)
        if digest is not None:
            _grant_digest(digest, tables=tables, alerts=alerts)
        dead_letter_queues = {
            "PhotoDeadLetterQueue": queue.dead_letter_queue,
            "FollowUpDeadLetterQueue": follow_up.dead_letter_queue,
        }
        monitoring = Monitoring(
            self,
            "Monitoring",
            topic=alerts.topic,
            queue=queue.queue,
            dead_letter_queues=dead_letter_queues,
            consumer=consumer.function,
            state_machine=state_machine,
            queue_age_alarm=cdk.Duration.minutes(config.queue_age_alarm_minutes),
        )

        rekognition_functions = [functions.moderate, functions.read_bibs, functions.analyze_faces]
        plain_functions = [
            functions.check_image,
            functions.decide,
            consumer.function,
            follow_up.function,
            follow_up.suspects_function,
        ] + ([digest.function] if digest is not None else [])
        ingest_bucket_resource = bucket.node.default_child
        assert isinstance(ingest_bucket_resource, cdk.CfnElement)
        self.nag_acknowledgments = nag.racecheck_acknowledgments(
            plain_functions=[_scope(function) for function in plain_functions],
            rekognition_functions=[_scope(function) for function in rekognition_functions],
            photo_readers=[_scope(functions.check_image)]
            + [_scope(function) for function in rekognition_functions],
            stream_readers=[_scope(follow_up.function), _scope(follow_up.suspects_function)],
            ingest_bucket_logical_id=self.get_logical_id(ingest_bucket_resource),
            state_machine=state_machine,
            # cdk-nag sees the ingest DLQ through the queue's redrive policy; not this one.
            dead_letter_queues=[follow_up.dead_letter_queue],
        )
        if acknowledge_nag_findings:
            nag.apply(self.nag_acknowledgments)
        self._outputs(
            {
                "IngestBucketName": bucket.bucket_name,
                "AccessLogsBucketName": ingest.access_logs.bucket_name,
                "ResultsTableName": tables.results.table_name,
                "RunnersTableName": tables.runners.table_name,
                "EvidenceTableName": tables.evidence.table_name,
                "QuotaTableName": tables.quota.table_name,
                "AlertTopicArn": alerts.topic.topic_arn,
                "StateMachineArn": state_machine.state_machine_arn,
                "StateMachineLogGroupName": workflow.log_group.log_group_name,
                "PhotoQueueUrl": queue.queue.queue_url,
                "PhotoQueueArn": queue.queue.queue_arn,
                "DeadLetterQueueUrl": queue.dead_letter_queue.queue_url,
                "DeadLetterQueueArn": queue.dead_letter_queue.queue_arn,
                "FollowUpDeadLetterQueueUrl": follow_up.dead_letter_queue.queue_url,
                "FollowUpFunctionName": follow_up.function.function_name,
                "SuspectAlertsFunctionName": follow_up.suspects_function.function_name,
                "ConsumerConcurrency": str(config.throughput.concurrency),
                "DashboardName": monitoring.dashboard.dashboard_name,
            }
        )
        if digest is not None:
            self._outputs({"ReviewDigestFunctionName": digest.function.function_name})
        self.functions: dict[str, lambda_.Function] = {
            **functions.by_id,
            "StartChecks": consumer.function,
            "FollowUp": follow_up.function,
            "SuspectAlerts": follow_up.suspects_function,
        }
        if digest is not None:
            self.functions["ReviewDigest"] = digest.function

    def _outputs(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            cdk.CfnOutput(self, name, value=value)
