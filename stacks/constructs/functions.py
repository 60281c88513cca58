"""The workflow's five Lambda handlers, sharing one code asset; each has its own role and log
group. ``handler_function`` builds the pipeline's other functions the same way."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from racecheck.core.settings import SETTINGS_ENV_VAR, Settings

POWERTOOLS_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "racecheck",
    "POWERTOOLS_METRICS_NAMESPACE": "Racecheck",
}
# Logs may carry bib numbers and keys of photos of people: keep them a month, not forever.
LOG_RETENTION = logs.RetentionDays.ONE_MONTH


@dataclass(frozen=True)
class FunctionSpec:
    construct_id: str
    module: str
    memory_mb: int
    timeout_seconds: int
    description: str


# check_image decodes image headers with Pillow; the others mostly wait on Rekognition/DynamoDB.
# Timeouts are short on purpose: every Task's attempts must fit, end to end, in Express's
# 5 minutes (tests/test_asl_timing.py adds them up from the ASL); slower cases go back to
# the queue. A Rekognition call on a 15 MB photo takes a few seconds.
FUNCTION_SPECS = (
    FunctionSpec("CheckImage", "check_image", 512, 8, "Validates the uploaded object as a photo"),
    FunctionSpec("Moderate", "moderate", 256, 15, "Rekognition DetectModerationLabels"),
    FunctionSpec("ReadBibs", "read_bibs", 256, 15, "Rekognition DetectText -> bib numbers"),
    FunctionSpec("AnalyzeFaces", "analyze_faces", 256, 15, "Rekognition DetectFaces attributes"),
    FunctionSpec("Decide", "decide", 256, 8, "Verdict from bibs, faces and runner records"),
)


class PhotoFunctions(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, code: lambda_.Code, settings: Settings
    ) -> None:
        super().__init__(scope, construct_id)

        environment = {**POWERTOOLS_ENVIRONMENT, SETTINGS_ENV_VAR: settings.to_json()}
        self.by_id: dict[str, lambda_.Function] = {}
        for spec in FUNCTION_SPECS:
            self.by_id[spec.construct_id] = handler_function(self, spec, code, environment)

        self.check_image = self.by_id["CheckImage"]
        self.moderate = self.by_id["Moderate"]
        self.read_bibs = self.by_id["ReadBibs"]
        self.analyze_faces = self.by_id["AnalyzeFaces"]
        self.decide = self.by_id["Decide"]


def handler_function(
    scope: Construct, spec: FunctionSpec, code: lambda_.Code, environment: dict[str, str]
) -> lambda_.Function:
    """One handler in its own construct, with its own role and log group."""
    own_scope = Construct(scope, spec.construct_id)
    log_group = logs.LogGroup(own_scope, "Logs", retention=LOG_RETENTION)
    # An explicit role instead of the default one, which attaches the managed
    # AWSLambdaBasicExecutionRole (logs:* on every log group).
    role = iam.Role(
        own_scope,
        "Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"racecheck {spec.module} handler",
    )
    log_group.grant_write(role)
    return lambda_.Function(
        own_scope,
        "Function",
        description=spec.description,
        runtime=lambda_.Runtime.PYTHON_3_12,
        architecture=lambda_.Architecture.ARM_64,
        handler=f"lambdas.{spec.module}.handler",
        code=code,
        role=role,
        log_group=log_group,
        tracing=lambda_.Tracing.ACTIVE,
        memory_size=spec.memory_mb,
        timeout=Duration.seconds(spec.timeout_seconds),
        environment=environment,
    )
