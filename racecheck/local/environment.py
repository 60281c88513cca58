"""An in-process stand-in for the deployed stack, driving the real ASL file.

moto emulates S3, DynamoDB, SNS, SQS and Step Functions, and its Step Functions
interpreter executes ``statemachine/photo_check.asl.json`` itself. Lambda Tasks are
answered by the real handlers from ``lambdas/`` called in-process, and Rekognition by a
local backend (see ``racecheck.local.rekognition``). Nothing leaves the machine.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from unittest import mock

from racecheck.core.digest import BY_VERDICT_INDEX, DIGEST_ATTRIBUTES
from racecheck.core.photo_timing import PHOTO_POINTS_ENV_VAR, PhotoPoints
from racecheck.core.settings import REPOSITORY_ROOT, Settings
from racecheck.local.rekognition import LocalRekognitionHook, RekognitionBackend

ASL_PATH = REPOSITORY_ROOT / "statemachine" / "photo_check.asl.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "racecheck-local"
# Each describe_execution runs through moto's whole request path: poll gently.
POLL_SECONDS = 0.05
# The handler module behind each Lambda Task, by the ASL placeholder that names it.
FUNCTIONS = {
    "CheckImageFunctionArn": ("check-image", "lambdas.check_image"),
    "ModerateFunctionArn": ("moderate", "lambdas.moderate"),
    "ReadBibsFunctionArn": ("read-bibs", "lambdas.read_bibs"),
    "AnalyzeFacesFunctionArn": ("analyze-faces", "lambdas.analyze_faces"),
    "DecideFunctionArn": ("decide", "lambdas.decide"),
}
HANDLER_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "racecheck",
    "POWERTOOLS_METRICS_NAMESPACE": "Racecheck",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "AWS_DEFAULT_REGION": REGION,
}


# moto's interpreter modules that build a fresh boto3 client for every Task they run.
_CLIENT_BUILDING_MODULES = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service."
    "state_task_service_dynamodb",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service."
    "state_task_service_sns",
)


class LocalSetupError(RuntimeError):
    """The local environment cannot start (missing file, moto internals moved...)."""


@dataclass(frozen=True)
class LocalNames:
    bucket: str = f"{PREFIX}-ingest"
    results_table: str = f"{PREFIX}-results"
    runners_table: str = f"{PREFIX}-runners"
    evidence_table: str = f"{PREFIX}-evidence"
    timing_table: str = f"{PREFIX}-timing"
    topic: str = f"{PREFIX}-alerts"
    alert_queue: str = f"{PREFIX}-alerts-capture"
    state_machine: str = f"{PREFIX}-photo-check"

    def function_arn(self, short_name: str) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{PREFIX}-{short_name}"


def substitute(definition: str, substitutions: dict[str, str]) -> str:
    """What CloudFormation's DefinitionSubstitutions does: replace each ``${Name}``."""
    for name, value in substitutions.items():
        definition = definition.replace("${" + name + "}", value)
    if "${" in definition:
        start = definition.index("${")
        raise LocalSetupError(f"unsubstituted placeholder near {definition[start:start + 40]!r}")
    return definition


def _lambda_context(function_name: str) -> SimpleNamespace:
    return SimpleNamespace(
        function_name=function_name, function_version="$LATEST", memory_limit_in_mb=512,
        invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}",
        aws_request_id=str(uuid.uuid4()), log_group_name=f"/aws/lambda/{function_name}",
        log_stream_name="local", get_remaining_time_in_millis=lambda: 60_000,
    )


class HandlerClock:
    """Time spent inside handlers (detectors included), to tell orchestration cost apart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.invocations = 0

    def add(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds
            self.invocations += 1


def _in_process_invoker(handlers: dict[str, Callable[..., Any]], clock: HandlerClock
                        ) -> Callable[..., bytes]:
    """Replacement for moto's LambdaSimpleBackend.invoke that runs the real handler."""

    def invoke(_backend: Any, function_name: str, qualifier: str | None, body: Any,
               headers: Any, response_headers: dict[str, str]) -> bytes:
        name = function_name.rsplit(":", 1)[-1] if ":function:" in function_name else (
            function_name)
        handler = handlers.get(name)
        if handler is None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "ResourceNotFoundException",
                               "errorMessage": f"no local handler for {name}"}).encode()
        event = json.loads(body) if body else {}
        started = time.perf_counter()
        try:
            result = handler(event, _lambda_context(name))
        except Exception as error:  # reported to the interpreter as Lambda does
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({
                "errorType": type(error).__name__,
                "errorMessage": str(error),
                "stackTrace": traceback.format_exception(error)[-3:],
            }).encode()
        finally:
            clock.add(time.perf_counter() - started)
        return json.dumps(result, default=str).encode()

    return invoke


class LocalStack:
    """The emulated resources of one local run; use ``local_stack()`` to create it."""

    def __init__(self, *, names: LocalNames, clients: dict[str, Any], state_machine_arn: str,
                 topic_arn: str, queue_url: str, hook: LocalRekognitionHook,
                 handler_clock: HandlerClock) -> None:
        self.names = names
        self.s3 = clients["s3"]
        self.dynamodb = clients["dynamodb"]
        self.sqs = clients["sqs"]
        self.sfn = clients["stepfunctions"]
        self.state_machine_arn = state_machine_arn
        self.topic_arn = topic_arn
        self.queue_url = queue_url
        self.rekognition = hook
        self.handler_clock = handler_clock

    def put_photo(self, key: str, body: bytes) -> dict[str, Any]:
        """Store a photo and return the EventBridge event S3 would emit for it."""
        response = self.s3.put_object(Bucket=self.names.bucket, Key=key, Body=body)
        return object_created_event(bucket=self.names.bucket, key=key, size=len(body),
                                    version=response["VersionId"], etag=response["ETag"])

    def start(self, event: dict[str, Any]) -> str:
        # A unique name per run: moto names an unnamed execution "None" and then collides.
        return self.sfn.start_execution(stateMachineArn=self.state_machine_arn,
                                        name=f"photo-{uuid.uuid4().hex}",
                                        input=json.dumps(event))["executionArn"]

    def describe(self, execution_arn: str) -> dict[str, Any]:
        # Real AWS has no describe for Express executions; only the local runner polls.
        return self.sfn.describe_execution(executionArn=execution_arn)

    def wait(self, execution_arn: str, *, timeout_s: float = 330.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            description = self.describe(execution_arn)
            if description["status"] != "RUNNING":
                return description
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still running after {timeout_s} s")
            time.sleep(POLL_SECONDS)

    def result_item(self, *, key: str, version: str) -> dict[str, Any] | None:
        from racecheck.core.records import from_attribute_values

        item = self.dynamodb.get_item(
            TableName=self.names.results_table, ConsistentRead=True,
            Key={"photo": {"S": f"{self.names.bucket}/{key}"}, "version": {"S": version}},
        ).get("Item")
        return from_attribute_values(item) if item else None

    def drain_alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return alerts
            for message in messages:
                body = json.loads(message["Body"])
                alerts.append({
                    "subject": body.get("Subject"),
                    "message": body.get("Message"),
                    "attributes": {name: attribute.get("Value")
                                   for name, attribute in body.get("MessageAttributes",
                                                                   {}).items()},
                })
                self.sqs.delete_message(QueueUrl=self.queue_url,
                                        ReceiptHandle=message["ReceiptHandle"])


def object_created_event(*, bucket: str, key: str, size: int, version: str, etag: str = ""
                         ) -> dict[str, Any]:
    """The EventBridge event S3 sends for a new object (keys arrive unencoded here)."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created",
        "source": "aws.s3", "account": ACCOUNT, "time": "2026-01-01T00:00:00Z",
        "region": REGION, "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0", "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": etag.strip('"'),
                       "version-id": version, "sequencer": "00"},
            "request-id": "local", "requester": ACCOUNT, "reason": "PutObject",
        },
    }


def _interpreter_speedups() -> list[Any]:
    """Patches that keep moto's interpreter from redoing work in every execution.

    moto parses the ASL (with an ANTLR parser) at the start of every execution and builds a
    new boto3 client for every Task; both cost more than the rest of the orchestration. The
    parsed program keeps no per-execution state (that lives in the execution's environment)
    and boto3 clients are thread-safe, so both are made once. These reach into moto's
    internals: if a moto upgrade moves them, the local runner stops with LocalSetupError.
    """
    import importlib

    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.utils import boto_client
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    programs: dict[str, Any] = {}
    programs_lock = threading.Lock()

    def parsed_once(worker: Any) -> Any:
        definition = worker._evaluation_details.state_machine_details.definition
        with programs_lock:
            if definition not in programs:
                programs[definition] = AmazonStateLanguageParser.parse(definition)[0]
            return programs[definition]

    build_client = boto_client.boto_client_for
    clients: dict[tuple[str, str], Any] = {}
    clients_lock = threading.Lock()

    def client_once(region: str, service: str, state_credentials: Any = None) -> Any:
        with clients_lock:
            if (region, service) not in clients:
                clients[(region, service)] = build_client(region=region, service=service)
            return clients[(region, service)]

    patches: list[Any] = [
        mock.patch.object(ExecutionWorker, "_get_evaluation_entrypoint", parsed_once)]
    for module_name in _CLIENT_BUILDING_MODULES:
        module = importlib.import_module(module_name)
        if not hasattr(module, "boto_client_for"):
            raise LocalSetupError(f"{module_name}.boto_client_for moved: check the moto pin")
        patches.append(mock.patch.object(module, "boto_client_for", client_once))
    if not hasattr(ExecutionWorker, "_get_evaluation_entrypoint"):
        raise LocalSetupError("moto's ExecutionWorker changed: check the moto pin")
    return patches


def create_tables(dynamodb: Any, names: LocalNames) -> None:
    """The stack's tables and their indexes (as stacks/constructs/tables.py)."""
    string = "S"
    dynamodb.create_table(
        TableName=names.results_table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "photo", "KeyType": "HASH"},
                   {"AttributeName": "version", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": string}
                              for name in ("photo", "version", "bib", "verdict", "recorded_at")],
        GlobalSecondaryIndexes=[{
            "IndexName": "by_bib",
            "KeySchema": [{"AttributeName": "bib", "KeyType": "HASH"},
                          {"AttributeName": "recorded_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }, {
            # The REVIEW digest's query.
            "IndexName": BY_VERDICT_INDEX,
            "KeySchema": [{"AttributeName": "verdict", "KeyType": "HASH"},
                          {"AttributeName": "recorded_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "INCLUDE",
                           "NonKeyAttributes": list(DIGEST_ATTRIBUTES)},
        }],
    )
    for table in (names.runners_table, names.evidence_table, names.timing_table):
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "bib", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "bib", "AttributeType": string}],
        )


def _create_resources(clients: dict[str, Any], names: LocalNames) -> tuple[str, str, str]:
    s3, dynamodb, sns, sqs = (clients[name] for name in ("s3", "dynamodb", "sns", "sqs"))
    s3.create_bucket(Bucket=names.bucket)
    s3.put_bucket_versioning(Bucket=names.bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    create_tables(dynamodb, names)
    topic_arn = sns.create_topic(Name=names.topic)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=names.alert_queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]
                                         )["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    definition = substitute(ASL_PATH.read_text(encoding="utf-8"), {
        **{placeholder: names.function_arn(short) for placeholder, (short, _)
           in FUNCTIONS.items()},
        "ResultsTableName": names.results_table,
        "EvidenceTableName": names.evidence_table,
        "AlertTopicArn": topic_arn,
    })
    state_machine_arn = clients["stepfunctions"].create_state_machine(
        name=names.state_machine, definition=definition, type="EXPRESS",
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-state-machine",
    )["stateMachineArn"]
    return state_machine_arn, topic_arn, queue_url


@contextmanager
def local_stack(*, settings: Settings, backend: RekognitionBackend,
                passthrough_rekognition: bool = False,
                photo_points: PhotoPoints | None = None) -> Iterator[LocalStack]:
    """Start the emulated stack; the real handlers run in-process for every Lambda Task."""
    try:
        import boto3
        from moto import mock_aws
        from moto.awslambda_simple.models import LambdaSimpleBackend
    except ImportError as error:
        raise LocalSetupError(
            f"the local runner needs the 'local' extra ({error}); run `make setup`") from error
    if not ASL_PATH.is_file():
        raise LocalSetupError(f"state machine definition not found: {ASL_PATH}")
    if not callable(getattr(LambdaSimpleBackend, "invoke", None)):
        raise LocalSetupError("moto's LambdaSimpleBackend.invoke moved: check the moto pin")

    names = LocalNames()
    environment = {**HANDLER_ENVIRONMENT, "RACECHECK_SETTINGS": settings.to_json(),
                   "RUNNERS_TABLE_NAME": names.runners_table,
                   "TIMING_TABLE_NAME": names.timing_table,
                   PHOTO_POINTS_ENV_VAR: (photo_points or PhotoPoints()).to_json()}
    config: dict[str, Any] = {"stepfunctions": {"execute_state_machine": True},
                              "lambda": {"use_docker": False}}
    if passthrough_rekognition:
        config["core"] = {"passthrough": {"services": ["rekognition"], "urls": []}}

    with ExitStack() as stack:
        # moto's interpreter logs every absent JSONPath an IsPresent test probes, as ERROR.
        moto_logger = logging.getLogger("moto")
        stack.callback(moto_logger.setLevel, moto_logger.level)
        moto_logger.setLevel(logging.CRITICAL)
        stack.enter_context(mock.patch.dict(os.environ, environment))
        stack.enter_context(mock_aws(config=config))  # type: ignore[call-overload]
        import importlib

        from lambdas import shared

        for cached in (shared.settings, shared.rekognition, shared.s3, shared.dynamodb):
            cached.cache_clear()  # a previous run may have used other settings or hooks
        # CloudWatch metrics mean nothing here, and Powertools' metric set is shared by the
        # handlers running in parallel threads: keep it empty rather than racing on it.
        stack.enter_context(mock.patch.object(shared.metrics, "add_metric",
                                              lambda **_: None))
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", module="aws_lambda_powertools")
        handlers = {f"{PREFIX}-{short}": importlib.import_module(module).handler
                    for short, module in FUNCTIONS.values()}
        for speedup in _interpreter_speedups():
            stack.enter_context(speedup)
        handler_clock = HandlerClock()
        stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke",
                                              _in_process_invoker(handlers, handler_clock)))
        clients = {name: boto3.client(name, region_name=REGION)
                   for name in ("s3", "dynamodb", "sns", "sqs", "stepfunctions")}
        state_machine_arn, topic_arn, queue_url = _create_resources(clients, names)

        def fetch(bucket: str, key: str, version: str | None) -> bytes:
            request = {"Bucket": bucket, "Key": key}
            if version:
                request["VersionId"] = version
            return clients["s3"].get_object(**request)["Body"].read()

        hook = LocalRekognitionHook(backend=backend, fetch_s3_object=fetch)
        rekognition_client = shared.rekognition()
        hook.install(rekognition_client)
        stack.callback(hook.uninstall, rekognition_client)
        yield LocalStack(names=names, clients=clients, state_machine_arn=state_machine_arn,
                         topic_arn=topic_arn, queue_url=queue_url, hook=hook,
                         handler_clock=handler_clock)
