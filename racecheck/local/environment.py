"""An in-process stand-in for the deployed stack, driving the real ASL file.

moto emulates S3, DynamoDB (with streams), SNS, SQS and Step Functions, and its Step
Functions interpreter executes ``statemachine/photo_check.asl.json`` itself. The path a
photo takes is the deployed one: its event is queued in the ingest queue, the real queue
consumer (``lambdas.start_checks``) receives it and runs the state machine synchronously,
the real follow-up handlers read the tables' streams. What AWS does between them is
emulated here, as the service documents it: the SQS event source (one message per
invocation, partial batch failures, redrive to the DLQ after ``max_receives``), the
DynamoDB stream event sources (in order, failed records retried) and StartSyncExecution
(which moto lacks: the run is executed in the caller's thread). Lambda Tasks are answered
by the real handlers called in-process, and Rekognition by a local backend (see
``racecheck.local.rekognition``). Nothing leaves the machine.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import io
import json
import logging
import os
import pickle
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock

from racecheck.core.digest import BY_VERDICT_INDEX, DIGEST_ATTRIBUTES
from racecheck.core.photo_timing import PHOTO_POINTS_ENV_VAR, PhotoPoints
from racecheck.core.review_links import LOCAL_DIR_ENV_VAR
from racecheck.core.settings import REPOSITORY_ROOT, Settings
from racecheck.core.throughput import Throughput
from racecheck.local.rekognition import (
    LocalRekognitionHook,
    RekognitionBackend,
    RekognitionError,
)

ASL_PATH = REPOSITORY_ROOT / "statemachine" / "photo_check.asl.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "racecheck-local"
# Locally the queue gives a failed photo back at once (no quota to wait for), and gives up
# after as many receives as the deployed queue does by default.
LOCAL_THROUGHPUT = Throughput(rekognition_tps=1000, photo_check_seconds=1, max_receives=10,
                              requeue_delay_seconds=0)
# Longer than any local run takes: a message is never delivered twice at once.
LOCAL_VISIBILITY_TIMEOUT_SECONDS = 3600
# The ASL's TimeoutSeconds are sized for Lambda calling Rekognition and DynamoDB, which
# answer in under a second. Locally the same Tasks run offline detectors and moto on a
# laptop shared with other work: a call several times slower is normal, not a hang, and a
# task moto times out keeps running in its thread while the photo is queued again, so one
# slow moment snowballs into ERROR records. Locally every Task gets this many times its
# deployed timeout (11 s -> 220 s), still a bound on a truly stuck task.
LOCAL_TASK_TIMEOUT_SCALE = 20
# A stream record that keeps failing is retried this often before it is set aside, as the
# deployed event source sends it to its dead-letter queue after its retries.
STREAM_RETRIES = 5
# The handler module behind each Lambda Task, by the ASL placeholder that names it.
FUNCTIONS = {
    "CheckImageFunctionArn": ("check-image", "lambdas.check_image"),
    "ModerateFunctionArn": ("moderate", "lambdas.moderate"),
    "ReadBibsFunctionArn": ("read-bibs", "lambdas.read_bibs"),
    "AnalyzeFacesFunctionArn": ("analyze-faces", "lambdas.analyze_faces"),
    "DecideFunctionArn": ("decide", "lambdas.decide"),
}
# The pipeline's other handlers, which AWS invokes from event sources; here the local stack does.
CONSUMER = "lambdas.start_checks"
FOLLOW_UP = "lambdas.follow_up"
SUSPECT_ALERTS = "lambdas.suspect_alerts"
HANDLER_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "racecheck",
    "POWERTOOLS_METRICS_NAMESPACE": "Racecheck",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "AWS_DEFAULT_REGION": REGION,
    "PACE_STARTS": "false",
}


# moto's interpreter modules that build a fresh boto3 client for every Task they run.
_CLIENT_BUILDING_MODULES = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service."
    "state_task_service_dynamodb",
)

# moto's interpreter modules that deep-copy state data (JSON) at every step.
_DEEP_COPYING_MODULES = (
    "moto.stepfunctions.parser.asl.eval.states",
    "moto.stepfunctions.parser.asl.component.common.string.string_expression",
    "moto.stepfunctions.parser.asl.component.state.exec.execute_state",
    "moto.stepfunctions.parser.asl.component.common.path.result_path",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service."
    "state_task_service",
)

# moto's interpreter modules that parse a JSONPath every time they evaluate one.
_JSONPATH_PARSING_MODULES = (
    "moto.stepfunctions.parser.asl.utils.json_path",
    "moto.stepfunctions.parser.asl.component.common.path.result_path",
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
    quota_table: str = f"{PREFIX}-quota"
    topic: str = f"{PREFIX}-alerts"
    alert_queue: str = f"{PREFIX}-alerts-capture"
    photo_queue: str = f"{PREFIX}-photos"
    dead_letter_queue: str = f"{PREFIX}-photos-dead-letters"
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
        # CPU time of the handlers' own threads: unlike wall time, another thread's work
        # on a busy machine does not count.
        self.cpu_seconds = 0.0
        self.invocations = 0

    def add(self, seconds: float, cpu_seconds: float = 0.0) -> None:
        with self._lock:
            self.seconds += seconds
            self.cpu_seconds += cpu_seconds
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
        started, started_cpu = time.perf_counter(), time.thread_time()
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
            clock.add(time.perf_counter() - started, time.thread_time() - started_cpu)
        return json.dumps(result, default=str).encode()

    return invoke


# What Lambda answers when a synchronous invocation's response is too large: 6 MB for a
# buffered Invoke (Lambda quotas page, "Invocation payload (request and response)"; the
# CDK's InvokeMode.BUFFERED says the same), reported as errorType
# Function.ResponseSizeTooLarge with FunctionError Unhandled.
MAX_RESPONSE_PAYLOAD_BYTES = 6 * 1024 * 1024


class TaskInvocations:
    """Lambda's Invoke for the interpreter's client, answered without the HTTP emulation.

    A ``before-call`` hook on the one Lambda client moto's interpreter uses for its Tasks
    (see ``_interpreter_speedups``): botocore has validated and serialised the request by
    then; the handler runs as ``_in_process_invoker`` runs it and the answer has the shape
    botocore would have parsed from Lambda's response (a streamed Payload, FunctionError
    on a handler error). Going through moto's Lambda endpoint cost each photo's five Tasks
    more than the rest of the interpreter's work.
    """

    unique_id = "racecheck-local-task-invocations"

    def __init__(self, invoke: Callable[..., bytes]) -> None:
        self._invoke = invoke

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict]:
        from urllib.parse import unquote

        from botocore.awsrequest import AWSResponse
        from botocore.response import StreamingBody

        # The request's path is /2015-03-31/functions/{FunctionName}/invocations.
        function_name = unquote(params["url_path"].rsplit("/", 2)[-2])
        headers: dict[str, str] = {}
        payload = self._invoke(None, function_name, params["query_string"].get("Qualifier"),
                               params["body"], params["headers"], headers)
        if len(payload) > MAX_RESPONSE_PAYLOAD_BYTES:
            headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps({"errorType": "Function.ResponseSizeTooLarge",
                                  "errorMessage": "Response payload size exceeded maximum "
                                                  "allowed payload size."}).encode()
        response: dict[str, Any] = {
            "StatusCode": 200, "ExecutedVersion": "$LATEST",
            "Payload": StreamingBody(io.BytesIO(payload), len(payload)),
            "ResponseMetadata": {"HTTPStatusCode": 200}}
        if "x-amz-function-error" in headers:
            response["FunctionError"] = headers["x-amz-function-error"]
        return AWSResponse("https://lambda.local", 200, {}, None), response

    def install(self, client: Any) -> None:
        client.meta.events.register_first("before-call.lambda.Invoke", self._answer,
                                          unique_id=self.unique_id)


@dataclass
class Delivery:
    """What the emulated SQS event source did with one message."""

    message_id: str
    event: dict[str, Any]
    receive_count: int
    done: bool  # deleted (checked) or, on its last receive, left for the dead-letter queue
    dead_lettered: bool = False


@dataclass
class _StreamCursor:
    stream_arn: str
    shard_id: str
    sequence: str | None = None  # the next record to deliver (None: from the start)
    failures: int = 0


class EventSourceQueue:
    """The ingest queue as AWS's own services use it: the EventBridge rule sends to it, and
    Lambda's SQS event source receives from it and deletes what the consumer checked.

    These work on moto's SQS store rather than through the API, as they happen inside AWS:
    moto's request parsing and response serialisation cost more CPU per photo than the
    pipeline's own calls. Visibility, receive counts and the redrive to the dead-letter
    queue stay moto's (``receive_message`` of the store is what the API calls). The
    consumer's own calls (ChangeMessageVisibility to requeue) still go through the API.
    """

    def __init__(self, queue_name: str) -> None:
        from moto.sqs.models import sqs_backends

        self._backend = sqs_backends[ACCOUNT][REGION]
        if not all(callable(getattr(self._backend, name, None)) for name in (
                "get_queue", "send_message", "receive_message", "delete_message",
                "change_message_visibility")):
            raise LocalSetupError("moto's SQS backend changed: check the moto pin")
        self._name = queue_name

    def send(self, body: str) -> str:
        return str(self._backend.send_message(self._name, body).id)

    def receive(self, *, wait_seconds: int = 0) -> dict[str, Any] | None:
        """One visible message, shaped like ReceiveMessage's with every system attribute."""
        queue = self._backend.get_queue(self._name)
        # The queue's own timeout, as ReceiveMessage without VisibilityTimeout uses.
        visibility = int(queue.visibility_timeout)  # type: ignore[attr-defined]
        received = self._backend.receive_message(self._name, 1, wait_seconds, visibility)
        if not received:
            return None
        message = received[0]
        return {
            "MessageId": message.id,
            "ReceiptHandle": message.receipt_handle,
            "Body": message.body,
            "MD5OfBody": message.body_md5,
            "Attributes": {
                "ApproximateReceiveCount": str(message.approximate_receive_count),
                "SentTimestamp": str(message.sent_timestamp),
                "SenderId": str(message.sender_id),
                "ApproximateFirstReceiveTimestamp":
                    str(message.approximate_first_receive_timestamp),
            },
        }

    def is_empty(self) -> bool:
        """No message visible or in flight (ApproximateNumberOfMessages and ...NotVisible)."""
        with _SQS_STORE_LOCK:  # the counts walk the queue's messages
            queue = self._backend.get_queue(self._name)
            return (queue.approximate_number_of_messages == 0
                    and queue.approximate_number_of_messages_not_visible == 0)

    def delete(self, receipt_handle: str) -> None:
        self._backend.delete_message(self._name, receipt_handle)

    def make_visible(self, receipt_handle: str) -> None:
        self._backend.change_message_visibility(self._name, receipt_handle, 0)


class LocalStack:
    """The emulated resources of one local run; use ``local_stack()`` to create it."""

    def __init__(self, *, names: LocalNames, clients: dict[str, Any], state_machine_arn: str,
                 topic_arn: str, queue_url: str, photo_queue_url: str,
                 dead_letter_queue_url: str, hook: LocalRekognitionHook,
                 handler_clock: HandlerClock, handlers: dict[str, Callable[..., Any]],
                 throughput: Throughput) -> None:
        self.names = names
        self.s3 = clients["s3"]
        self.dynamodb = clients["dynamodb"]
        self.sqs = clients["sqs"]
        self.sfn = clients["stepfunctions"]
        self.streams = clients["dynamodbstreams"]
        self.state_machine_arn = state_machine_arn
        self.topic_arn = topic_arn
        self.queue_url = queue_url
        self.photo_queue_url = photo_queue_url
        self.dead_letter_queue_url = dead_letter_queue_url
        self.rekognition = hook
        self.handler_clock = handler_clock
        self.throughput = throughput
        # The handlers AWS invokes from event sources, by module (tests may wrap them).
        self.handlers = handlers
        self._stream_lock = threading.Lock()
        self._streams_backend = _streams_backend()
        self._dynamodb_backend = _dynamodb_backend()
        self._s3_backend = _s3_backend()
        self._photo_queue = EventSourceQueue(names.photo_queue)
        self._cursors = [self._cursor(table) for table in (names.results_table,
                                                            names.evidence_table)]
        self.stream_failures: list[dict[str, Any]] = []
        # Wall time in the queue consumer (with the runs it waits for) and the stream
        # handlers, and the part of it spent in state machine runs; the Task handlers' own
        # time is in handler_clock.
        self.pipeline_seconds = 0.0
        self.execution_seconds = 0.0
        self._clock_lock = threading.Lock()
        self.sync_executions: SyncExecutions | None = None

    # -------------------------------------------------------------------- photos in

    def put_photo(self, key: str, body: bytes) -> dict[str, Any]:
        """Store a photo and return the EventBridge event S3 would emit for it.

        Written to moto's store, as the user's upload is no part of the pipeline: through
        the client, moto's request parsing and response cost more per photo than any of
        the pipeline's own calls.
        """
        stored = self._s3_backend.put_object(self.names.bucket, key, body)
        return object_created_event(bucket=self.names.bucket, key=key, size=len(body),
                                    version=str(stored.version_id), etag=str(stored.etag))

    def forget_photo(self, key: str, version: str) -> None:
        """Free a checked photo's bytes: moto keeps objects under 5 MB in memory, so a
        race's folder of photos would otherwise all stay in RAM until the run ends. Its
        record is written; a late duplicate of its event finds no photo and leaves that
        record as it is (only an ERROR record may be overwritten)."""
        self._s3_backend.delete_object(self.names.bucket, key, version_id=version)

    def enqueue(self, event: dict[str, Any]) -> str:
        """What the EventBridge rule does with the event: one message in the ingest queue."""
        return self._photo_queue.send(json.dumps(event))

    def start_sync(self, event: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
        """StartSyncExecution, as the consumer calls it (for tests that need one run)."""
        return dict(self.sfn.start_sync_execution(
            stateMachineArn=self.state_machine_arn, name=name or f"photo-{uuid.uuid4().hex}",
            input=json.dumps(event)))

    # ----------------------------------------------------- the SQS event source

    def deliver(self, *, wait_seconds: int = 0) -> Delivery | None:
        """Receive one message and invoke the consumer with it, as the event source does.

        Returns None when no message is visible. A message the consumer reports as failed
        stays in the queue (the consumer has set when it returns); after its last receive,
        the queue's redrive policy (moto implements it as SQS does) moves it to the
        dead-letter queue instead of delivering it again.
        """
        message = self._photo_queue.receive(wait_seconds=wait_seconds)
        if message is None:
            return None
        receive_count = int(message["Attributes"]["ApproximateReceiveCount"])
        try:
            response = self._invoke(CONSUMER, {"Records": [_sqs_record(message, self.names)]})
        except Exception:
            # An invocation that fails as a whole (a crash, a timeout) leaves every message
            # of its batch in the queue, to come back when its visibility timeout ends: at
            # once here, rather than after the deployed half hour.
            response = {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
            self._photo_queue.make_visible(message["ReceiptHandle"])
        failed = {failure["itemIdentifier"] for failure in response.get("batchItemFailures", [])}
        if message["MessageId"] not in failed:
            self._photo_queue.delete(message["ReceiptHandle"])
            return Delivery(message["MessageId"], json.loads(message["Body"]), receive_count,
                            done=True)
        last = receive_count >= self.throughput.max_receives
        return Delivery(message["MessageId"], json.loads(message["Body"]), receive_count,
                        done=last, dead_lettered=last)

    def queue_is_empty(self) -> bool:
        # Asked by every idle poller while the last photos run: read from the store.
        return self._photo_queue.is_empty()

    def drain_queue(self) -> list[Delivery]:
        """Deliver until the queue is empty (failed photos come back at once locally)."""
        deliveries: list[Delivery] = []
        while True:
            delivery = self.deliver()
            if delivery is None:
                if self.queue_is_empty():
                    return deliveries
                time.sleep(0.01)  # a message is back only when its visibility ends
                continue
            deliveries.append(delivery)

    # ----------------------------------------------- the DynamoDB stream event sources

    def _cursor(self, table: str) -> _StreamCursor:
        stream_arn = self.dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        shard = self.streams.describe_stream(StreamArn=stream_arn)["StreamDescription"][
            "Shards"][0]
        return _StreamCursor(stream_arn=stream_arn, shard_id=shard["ShardId"])

    def pump_streams(self) -> int:
        """Deliver the tables' new stream records to their handlers; returns how many.

        Records reach a handler in order, a batch at a time; a record the handler reports
        as failed is delivered again (with those after it) until it succeeds, or set aside
        after ``STREAM_RETRIES``, as the deployed event source's on-failure destination does.
        """
        with self._stream_lock:
            delivered = 0
            for cursor, handler in zip(self._cursors, (FOLLOW_UP, SUSPECT_ALERTS), strict=True):
                delivered += self._pump(cursor, handler)
            return delivered

    def _pump(self, cursor: _StreamCursor, handler: str) -> int:
        delivered = 0
        while True:
            iterator_request: dict[str, Any] = {"StreamArn": cursor.stream_arn,
                                                "ShardId": cursor.shard_id}
            if cursor.sequence is None:
                iterator_request["ShardIteratorType"] = "TRIM_HORIZON"
            else:
                iterator_request.update(ShardIteratorType="AT_SEQUENCE_NUMBER",
                                        SequenceNumber=cursor.sequence)
            records = self._stream_records(cursor, iterator_request, limit=25)
            if not records:
                self._drop_delivered_records(cursor)
                return delivered
            try:
                response = self._invoke(handler, {"Records": records})
            except Exception:
                # The whole batch failed (Powertools raises when every record did): the
                # event source retries it from its first record.
                response = {"batchItemFailures": [
                    {"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}
            failed = [failure["itemIdentifier"]
                      for failure in response.get("batchItemFailures", [])]
            if not failed:
                cursor.sequence = str(int(records[-1]["dynamodb"]["SequenceNumber"]) + 1)
                cursor.failures = 0
                delivered += len(records)
                continue
            first_failed = min(failed, key=int)
            delivered += sum(1 for record in records
                             if int(record["dynamodb"]["SequenceNumber"]) < int(first_failed))
            cursor.sequence = first_failed
            cursor.failures += 1
            if cursor.failures > STREAM_RETRIES:
                record = next(r for r in records
                              if r["dynamodb"]["SequenceNumber"] == first_failed)
                self.stream_failures.append({"handler": handler, "record": record})
                cursor.sequence = str(int(first_failed) + 1)
                cursor.failures = 0

    def _drop_delivered_records(self, cursor: _StreamCursor) -> None:
        """Drop the records a stream's one reader has been handed.

        A DynamoDB stream keeps a record for 24 hours (DynamoDB Developer Guide, "Change
        data capture for DynamoDB Streams"); moto keeps every one, an image of each result
        (about 20 KB a photo), so a local run of a race's tens of thousands of photos grew
        by that much per photo. Each table's stream has one reader here, its cursor, so
        what it has passed is never read again; the shard's first sequence number moves
        with the records dropped, as a trimmed stream's trim horizon does, so every
        record keeps its number.
        """
        if cursor.sequence is None:
            return
        shard = self._streams_backend._get_table_from_arn(cursor.stream_arn).stream_shard
        with _STREAM_RECORDS_LOCK:
            passed = int(cursor.sequence) - shard.starting_sequence_number
            if passed > 0:
                del shard.items[:passed]
                shard.starting_sequence_number += passed

    def _stream_records(self, cursor: _StreamCursor, iterator_request: dict[str, Any], *,
                        limit: int) -> list[dict[str, Any]]:
        """The next records of a stream, as the event source hands them to the function.

        Read from moto's stream backend, as Lambda's event source reads the stream inside
        AWS: through the client, moto's generic serialiser turned every record (images of
        whole result items) into a response and botocore parsed it back, which cost more
        CPU per photo than the rest of the orchestration. The records are copied as JSON,
        with the creation time in epoch seconds, as a Lambda event carries them.
        """
        backend = self._streams_backend
        iterator = backend.get_shard_iterator(
            iterator_request["StreamArn"], iterator_request["ShardId"],
            iterator_request["ShardIteratorType"],
            int(iterator_request["SequenceNumber"]) if "SequenceNumber" in iterator_request
            else None)
        answer = backend.get_records(iterator.arn, limit)
        records = answer["Records"]
        # Each read starts from a fresh iterator: moto would keep this one and the next one
        # it made (about 9 KB a photo, for the whole run).
        for used in (iterator.arn, answer["NextShardIterator"]):
            backend.shard_iterators.pop(used, None)
        return [{**json.loads(json.dumps(record, default=_epoch_seconds)),
                 "eventSourceARN": cursor.stream_arn} for record in records]

    def settle(self) -> list[Delivery]:
        """Deliver every queued photo and every stream record they lead to."""
        deliveries = self.drain_queue()
        while self.pump_streams():
            pass
        return deliveries

    def check(self, key: str, body: bytes) -> tuple[Delivery, dict[str, Any] | None]:
        """Drop one photo in and let the pipeline settle: (its delivery, its record)."""
        event = self.put_photo(key, body)
        self.enqueue(event)
        deliveries = self.settle()
        delivery = deliveries[-1]
        return delivery, self.result_item(key=key,
                                          version=event["detail"]["object"]["version-id"])

    def _invoke(self, module: str, event: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            result: dict[str, Any] = self.handlers[module](
                event, _lambda_context(module.rsplit(".", 1)[-1]))
        finally:
            with self._clock_lock:
                self.pipeline_seconds += time.perf_counter() - started
        return result

    def add_execution_seconds(self, seconds: float) -> None:
        with self._clock_lock:
            self.execution_seconds += seconds

    # ------------------------------------------------------------------ results out

    def result_item(self, *, key: str, version: str) -> dict[str, Any] | None:
        from racecheck.core.records import from_attribute_values

        # Read from moto's table, not through the client: the run reads every photo's
        # record, and moto's generic serialiser cost more CPU per whole item than the
        # interpreter's work on the photo. moto reads are always consistent.
        item = self._dynamodb_backend.get_item(
            self.names.results_table,
            {"photo": {"S": f"{self.names.bucket}/{key}"}, "version": {"S": version}})
        return from_attribute_values(item.to_json()["Attributes"]) if item else None

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


def _streams_backend() -> Any:
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    backend = dynamodbstreams_backends[ACCOUNT][REGION]
    if not all(callable(getattr(backend, name, None))
               for name in ("get_shard_iterator", "get_records", "_get_table_from_arn")):
        raise LocalSetupError("moto's DynamoDB Streams backend changed: check the moto pin")
    return backend


def _s3_backend() -> Any:
    from moto.s3.models import s3_backends

    backend = s3_backends[ACCOUNT]["global"]
    if not all(callable(getattr(backend, name, None))
               for name in ("get_object", "put_object", "delete_object")):
        raise LocalSetupError("moto's S3 backend changed: check the moto pin")
    return backend


def _dynamodb_backend() -> Any:
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[ACCOUNT][REGION]
    if not callable(getattr(backend, "get_item", None)):
        raise LocalSetupError("moto's DynamoDB backend changed: check the moto pin")
    return backend


def _epoch_seconds(value: Any) -> float:
    if isinstance(value, datetime):
        # moto stamps records with naive UTC times.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    raise TypeError(f"{type(value).__name__} in a stream record")


def _sqs_record(message: dict[str, Any], names: LocalNames) -> dict[str, Any]:
    """A received message as the SQS event source hands it to Lambda."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{names.photo_queue}",
        "awsRegion": REGION,
    }


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


class ServiceTaskRequests:
    """DynamoDB's API for the interpreter's client, handed to moto without the HTTP round trip.

    A ``before-call`` hook on the one DynamoDB client moto's interpreter uses for the
    service-integration Tasks (LookupPreviousResult's GetItem, RecordResult's PutItem):
    botocore has validated and serialised the request by then. The request goes to moto's
    DynamoDB handler as moto's own stubber hands it over, without the signing, the
    sending and the match of its URL against every service's patterns, and the answer is
    parsed as botocore parses an HTTP response, errors included: a status of 300 or more
    makes botocore raise the modelled error (ConditionalCheckFailedException...), as it
    does for a response it received.
    """

    unique_id = "racecheck-local-service-task-requests"
    endpoint = f"https://dynamodb.{REGION}.amazonaws.com"

    def __init__(self) -> None:
        from botocore.parsers import create_parser
        from moto.dynamodb.responses import DynamoHandler

        self._dispatch = DynamoHandler.dispatch
        self._parser = create_parser("json")

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict]:
        from botocore.awsrequest import AWSResponse
        from moto.core.request import Request

        url = self.endpoint + params["url_path"]
        request = Request.from_primitives(params["method"], url, params["headers"],
                                          params["body"])
        status, headers, body = self._dispatch(request, request.raw_url, request.headers)
        raw = body.encode() if isinstance(body, str) else body
        response_headers = {name.lower(): str(value) for name, value in headers.items()}
        parsed = self._parser.parse(
            {"status_code": status, "headers": response_headers, "body": raw},
            model.output_shape)
        return AWSResponse(url, status, response_headers, None), parsed

    def install(self, client: Any) -> None:
        client.meta.events.register_first("before-call.dynamodb.*", self._answer,
                                          unique_id=self.unique_id)


class ParsedPrograms:
    """Each state machine definition parsed once (with moto's ANTLR parser, about 0.3 s for
    racecheck's): moto parses it to validate CreateStateMachine and again to run it."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def parse(self, definition: str) -> tuple[Any, Any]:
        """What ``AmazonStateLanguageParser.parse`` returns (the program and its parse
        tree); a definition it refuses raises its error every time."""
        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

        with self._lock:
            if definition not in self._parsed:
                self._parsed[definition] = AmazonStateLanguageParser.parse(definition)
            return self._parsed[definition]

    def get(self, definition: str) -> Any:
        return self.parse(definition)[0]

    def as_parser(self) -> Any:
        """A stand-in for moto's ``AmazonStateLanguageParser`` class that parses once."""
        return type("ParsedOnceParser", (), {"parse": staticmethod(self.parse)})


def _interpreter_speedups(task_invocations: TaskInvocations, programs: ParsedPrograms,
                          history: HistoryOptions) -> list[Any]:
    """Patches that keep moto's interpreter from redoing work in every execution.

    moto parses the ASL (with an ANTLR parser) to validate it and at the start of every
    execution, and builds a new boto3 client for every Task; both cost more than the rest of
    the orchestration. The parsed program keeps no per-execution state (that lives in the
    execution's environment) and boto3 clients are thread-safe, so both are made once. The
    Lambda client answers its Invokes in-process (``TaskInvocations``). Every JSONPath the
    interpreter evaluates was parsed again by a freshly built jsonpath_ng parser; a parsed
    path is an immutable tree, so each is parsed once. These reach into moto's internals: if
    a moto upgrade moves them, the local runner stops with LocalSetupError.
    """
    import importlib

    from moto.stepfunctions.parser.asl.utils import boto_client
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    def parsed_once(worker: Any) -> Any:
        return programs.get(worker._evaluation_details.state_machine_details.definition)

    build_client = boto_client.boto_client_for
    clients: dict[tuple[str, str], Any] = {}
    clients_lock = threading.Lock()

    def client_once(region: str, service: str, state_credentials: Any = None) -> Any:
        with clients_lock:
            if (region, service) not in clients:
                client = build_client(region=region, service=service)
                if service == "lambda":
                    task_invocations.install(client)
                elif service == "dynamodb":
                    ServiceTaskRequests().install(client)
                clients[(region, service)] = client
            return clients[(region, service)]

    validation = importlib.import_module("moto.stepfunctions.parser.models")
    if not hasattr(validation, "AmazonStateLanguageParser"):
        raise LocalSetupError("moto's state machine validation moved: check the moto pin")
    patches: list[Any] = [
        mock.patch.object(ExecutionWorker, "_get_evaluation_entrypoint", parsed_once),
        mock.patch.object(validation, "AmazonStateLanguageParser", programs.as_parser())]
    for module_name in _CLIENT_BUILDING_MODULES:
        module = importlib.import_module(module_name)
        if not hasattr(module, "boto_client_for"):
            raise LocalSetupError(f"{module_name}.boto_client_for moved: check the moto pin")
        patches.append(mock.patch.object(module, "boto_client_for", client_once))
    for module_name in _JSONPATH_PARSING_MODULES:
        module = importlib.import_module(module_name)
        if not callable(getattr(module, "parse", None)):
            raise LocalSetupError(f"{module_name}.parse moved: check the moto pin")
        patches.append(mock.patch.object(module, "parse",
                                         functools.lru_cache(maxsize=1024)(module.parse)))
    if not hasattr(ExecutionWorker, "_get_evaluation_entrypoint"):
        raise LocalSetupError("moto's ExecutionWorker changed: check the moto pin")
    return [*patches, *_state_data_copies(), _dynamodb_error_names_as_on_aws(),
            _task_timeouts_scaled(), _stream_sequence_numbers_unique(),
            _item_size_checked_once(), _attribute_values_copied_once(),
            _retention_read_from_the_queue(), _model_instances_untracked(),
            *_sqs_store_one_call_at_a_time(),
            *_express_history_without_state_data(history)]


def _model_instances_untracked() -> Any:
    """moto lists every model object it makes (``BaseModel.instances_tracked``, for its
    server's dashboard) until the mock stops: every stream record, stored item, queue
    message and shard iterator of a run stayed in memory, deleted or read or not, and a
    local run grew by about 85 KB a photo (`racecheck run` over tens of thousands of
    photos: gigabytes). A local run has no dashboard. S3's models stay listed: moto's S3
    reset closes its keys' buffers through that list."""
    from moto.core.common_models import BaseModel

    if "instances_tracked" not in BaseModel.__new__.__code__.co_names:
        raise LocalSetupError("moto's BaseModel changed: check the moto pin")
    original = BaseModel.__new__

    def listed_for_s3_only(cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls.__module__.startswith("moto.s3."):
            return original(cls, *args, **kwargs)
        return super(BaseModel, cls).__new__(cls)  # type: ignore[misc]

    return mock.patch.object(BaseModel, "__new__", staticmethod(listed_for_s3_only))


_IMMUTABLE_SCALARS = (str, int, float, bool, type(None))


def state_data_copy(value: Any, memo: Any = None) -> Any:
    """``copy.deepcopy`` for the interpreter's state data, about six times faster on a
    photo's findings: a pickle round trip, which rebuilds the tree in C (deepcopy walks it
    in Python, keeping a memo of every object). It makes the same independent copy of
    dicts, lists and scalars, and of other objects as their ``__reduce_ex__`` says, which
    is what deepcopy uses too; what pickle cannot take (a function, a lock) is deep-copied
    as before. Scalars are immutable: returned as they are."""
    if type(value) in _IMMUTABLE_SCALARS:
        return value
    try:
        return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    except (pickle.PicklingError, TypeError, AttributeError):
        return copy.deepcopy(value, memo)


def _state_data_copies() -> list[Any]:
    """moto's interpreter deep-copies the state's data at every step (InputPath,
    ResultPath, each history event), and those copies were the largest single cost of the
    orchestration; the copies stay, made by ``state_data_copy``."""
    import importlib

    patches = []
    for module_name in _DEEP_COPYING_MODULES:
        module = importlib.import_module(module_name)
        if getattr(module, "copy", None) is not copy:
            raise LocalSetupError(f"{module_name} no longer copies with copy: check the moto pin")
        patches.append(mock.patch.object(
            module, "copy", SimpleNamespace(deepcopy=state_data_copy, copy=copy.copy)))
    return patches


# Held while moto appends a stream record and while the runner trims the records read.
_STREAM_RECORDS_LOCK = threading.Lock()


def _stream_sequence_numbers_unique() -> Any:
    """One stream record at a time per process, so that sequence numbers are unique.

    moto numbers a stream record by the shard's length, then appends it, without a lock:
    two writes at once (two pollers' records) got one number, and the stream event source,
    which reads on from the last record's number plus one, read that record again forever
    (seen: a run's last stream pump looping). In AWS "each stream record appears exactly
    once in the stream", in the order of the item's modifications (DynamoDB Developer
    Guide, "Change data capture for DynamoDB Streams"), and AT_SEQUENCE_NUMBER starts
    "exactly from the position denoted by a specific sequence number" (DynamoDB Streams
    API Reference, GetShardIterator): one number, one record.
    """
    from moto.dynamodb.models.table import StreamShard

    original = getattr(StreamShard, "add", None)
    if original is None:
        raise LocalSetupError("moto's StreamShard changed: check the moto pin")

    def add_one_at_a_time(self: Any, old: Any, new: Any) -> None:
        with _STREAM_RECORDS_LOCK:
            original(self, old, new)

    return mock.patch.object(StreamShard, "add", add_one_at_a_time)


def _defer_unused_package(parent: ModuleType, name: str) -> None:
    """Let ``parent.name``'s submodules be imported without running its ``__init__`` until
    something asks the package itself for an attribute.

    moto's Step Functions interpreter imports ``moto.batch.utils`` for one enum (its Batch
    task integration), and ``moto/batch/__init__.py`` imports moto's whole EC2 emulation,
    which loads every region's instance types and the EC2 API model at import: about 60
    MB for the whole run (``benchmarks/local_run.py``), for a service the ASL never
    calls. Should something use moto's Batch after all (``moto.backends.get_backend``
    reads ``batch_backends`` from the package), the first attribute asked for runs the
    ``__init__`` then.
    """
    full_name = f"{parent.__name__}.{name}"
    if full_name in sys.modules:
        return
    spec = importlib.util.find_spec(full_name)
    loader = spec.loader if spec is not None else None
    if spec is None or loader is None or spec.submodule_search_locations is None:
        raise LocalSetupError(f"{full_name} is no longer a package: check the moto pin")
    package = importlib.util.module_from_spec(spec)
    lock = threading.Lock()

    def load_on_first_use(attribute: str) -> Any:
        with lock:
            if vars(package).get("__getattr__") is load_on_first_use:
                del package.__getattr__
                loader.exec_module(package)
        return getattr(package, attribute)

    package.__getattr__ = load_on_first_use  # type: ignore[method-assign]
    sys.modules[full_name] = package
    setattr(parent, name, package)


def _item_size_checked_once() -> Any:
    """moto checks an item's size against DynamoDB's limit ("The maximum item size in
    DynamoDB is 400 KB", DynamoDB Developer Guide, "Constraints in Amazon DynamoDB") as
    it adds each attribute, summing every attribute already there, nested values
    included, every time: quadratic in the attributes (a verdict item has 19; building
    one cost moto 3.5-4.0 ms of CPU, 0.5-1.8 ms checked once: benchmarks/moto_item_size.py).
    The item is now built with its attributes but the last, and moto's own check runs
    once, adding the last: over the whole item, with moto's limit. AWS sizes an item the
    same way, as a whole ("the sum of the lengths of its attribute names and values",
    Developer Guide, "DynamoDB item sizes and formats"), and sizes are never negative, so
    the whole item is the largest sum the attribute-by-attribute checks saw: the same
    items pass, the same fail."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

    original = Item.__init__
    if "__setitem__" not in vars(LimitedSizeDict):
        raise LocalSetupError("moto's item size check moved: check the moto pin")

    def checked_once(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        original(self, hash_key, range_key, {})
        attributes = [(name, DynamoType(value)) for name, value in attrs.items()]
        if not attributes:
            return
        *first, (last_name, last_value) = attributes
        dict.update(self.attrs, first)
        self.attrs[last_name] = last_value

    return mock.patch.object(Item, "__init__", checked_once)


def _attribute_values_copied_once() -> Any:
    """moto turns a stored item back into DynamoDB JSON (``DynamoType.to_regular_json``)
    for every answer that carries it, the PutItem it has just stored included, by deep-
    copying each map or list value and then doing the same again for each value inside
    it: a value at depth d was copied d times, and a verdict's evidence is nested four
    deep. Here each value is rebuilt once, as fresh dicts and lists, with what is not a
    DynamoType deep-copied as before and binary values decoded as before: the same JSON,
    no structure shared with the stored item."""
    import base64

    from moto.dynamodb.models.dynamo_type import DynamoType

    if not callable(getattr(DynamoType, "to_regular_json", None)):
        raise LocalSetupError("moto's DynamoType changed: check the moto pin")

    def copied(value: Any) -> Any:
        return value.to_regular_json() if isinstance(value, DynamoType) else copy.deepcopy(value)

    def copied_once(self: Any) -> dict[str, Any]:
        value = self.value
        if isinstance(value, dict):
            value = {key: copied(nested) for key, nested in value.items()}
        elif isinstance(value, list):
            value = [copied(nested) for nested in value]
        else:
            value = copy.deepcopy(value)
        if self.is_binary() and isinstance(value, str):
            value = base64.b64decode(value)
        return {self.type: value}

    return mock.patch.object(DynamoType, "to_regular_json", copied_once)


# Held by each call that reads or changes moto's SQS store (see the function below).
_SQS_STORE_LOCK = threading.RLock()
_SQS_STORE_CALLS = ("send_message", "receive_message", "delete_message",
                    "change_message_visibility", "get_queue_attributes")


def _sqs_store_one_call_at_a_time() -> list[Any]:
    """moto's SQS store keeps a queue's messages and its in-flight set in plain lists and
    sets, read and changed without a lock, and the pollers are threads: a receive walking
    the in-flight set while another poller's delete changed it failed with "Set changed
    size during iteration" (seen with four pollers on a slowed run), and a receive checks
    a message's visibility and marks it received in two steps, so two pollers could both
    receive it. In SQS a received message stays in the queue but no other consumer
    receives it during its visibility timeout (SQS Developer Guide, "Amazon SQS
    visibility timeout"): each call here reads and changes the store whole, one at a
    time, whether it comes through the API (the consumer's ChangeMessageVisibility) or
    from the event source."""
    from moto.sqs.models import SQSBackend

    patches = []
    for name in _SQS_STORE_CALLS:
        original = getattr(SQSBackend, name, None)
        if not callable(original):
            raise LocalSetupError(f"moto's SQSBackend.{name} changed: check the moto pin")
        patches.append(mock.patch.object(SQSBackend, name, _holding_sqs_store(original)))
    return patches


def _holding_sqs_store(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def one_at_a_time(*args: Any, **kwargs: Any) -> Any:
        with _SQS_STORE_LOCK:
            return call(*args, **kwargs)

    return one_at_a_time


def _retention_read_from_the_queue() -> Any:
    """moto's ReceiveMessage checks each message it hands out against the queue's
    retention period, which it asks for through GetQueueAttributes: that computes every
    attribute, the message counts included (each walks the queue, reading the clock per
    message), three times over, about 2 ms a receive. The period is read from the queue
    itself; the rule is moto's: a message is kept while its sent time plus the period is
    still ahead."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    if not callable(getattr(SQSBackend, "is_message_valid_based_on_retention_period", None)):
        raise LocalSetupError("moto's SQS backend changed: check the moto pin")

    def within_retention(self: Any, queue_name: str, message: Any) -> bool:
        retention_seconds = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_seconds + message.sent_timestamp / 1000 > unix_time())

    return mock.patch.object(SQSBackend, "is_message_valid_based_on_retention_period",
                             within_retention)


@dataclass
class HistoryOptions:
    """What the interpreter writes into an execution's history events."""

    # Each state's input and output in its StateEntered and StateExited events (tests that
    # inspect them switch this on through ``SyncExecutions.keep_history``).
    state_data: bool = False


def _express_history_without_state_data(options: HistoryOptions) -> list[Any]:
    """StateEntered and StateExited history events without the state's data, unless asked.

    moto writes each state's input and output into these events as JSON, copying the
    state's data for each: two copies and two JSON encodings per state. An Express
    execution keeps no history to read ("This API action is not supported by EXPRESS
    state machines", Step Functions API Reference, GetExecutionHistory; moto answers
    likewise) and the local stack runs one state machine, created EXPRESS. The events
    stay, named, without the data, as a log that does not include execution data has them;
    the variables a state assigned are still recorded, and their tracing reset, as moto
    does.
    """
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField

    with_data = {name: getattr(CommonStateField, name, None) for name in (
        "_get_state_entered_event_details", "_get_state_exited_event_details")}
    if not all(callable(method) for method in with_data.values()):
        raise LocalSetupError("moto's CommonStateField changed: check the moto pin")

    def entered(self: Any, env: Any) -> Any:
        if options.state_data:
            return with_data["_get_state_entered_event_details"](self, env)  # type: ignore[misc]
        return {"name": self.name, "inputDetails": {"truncated": False}}

    def exited(self: Any, env: Any) -> Any:
        if options.state_data:
            return with_data["_get_state_exited_event_details"](self, env)  # type: ignore[misc]
        details: dict[str, Any] = {"name": self.name, "outputDetails": {"truncated": False}}
        assigned_variables = env.variable_store.get_assigned_variables()
        env.variable_store.reset_tracing()
        if assigned_variables:
            details["assignedVariables"] = assigned_variables
            details["assignedVariablesDetails"] = {"truncated": False}
        return details

    return [mock.patch.object(CommonStateField, "_get_state_entered_event_details", entered),
            mock.patch.object(CommonStateField, "_get_state_exited_event_details", exited)]


def _task_timeouts_scaled() -> Any:
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

    original = getattr(TimeoutSeconds, "_eval_seconds", None)
    if original is None:
        raise LocalSetupError("moto's TimeoutSeconds changed: check the moto pin")

    def scaled(self: Any, env: Any) -> int:
        seconds = int(original(self, env))
        return seconds if self.is_default_value() else seconds * LOCAL_TASK_TIMEOUT_SCALE

    return mock.patch.object(TimeoutSeconds, "_eval_seconds", scaled)


def step_functions_error_name(service: str, error_code: str) -> str:
    """How Step Functions names a service integration's error: ``<Service>.<Code>Exception``.

    AWS: "always add an Exception suffix to potential error names ... even if the suffix is
    not already part of the service-provided error name" (Step Functions developer guide,
    AWS SDK service integrations). moto uses the raw code, so ``DynamoDB.InternalServerError``
    would pass offline and never match on AWS; the local runner names errors as AWS does.
    """
    suffix = "" if error_code.endswith("Exception") else "Exception"
    return f"{service}.{error_code}{suffix}"


def _dynamodb_error_names_as_on_aws() -> Any:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_dynamodb as module,
    )

    service_task = getattr(module, "StateTaskServiceDynamoDB", None)
    original = getattr(service_task, "_error_cause_from_client_error", None)
    if original is None:
        raise LocalSetupError("moto's DynamoDB task error naming moved: check the moto pin")

    def named_as_on_aws(client_error: Any) -> tuple[str, str]:
        _, cause = original(client_error)
        return step_functions_error_name("DynamoDB", client_error.response["Error"]["Code"]), cause

    return mock.patch.object(service_task, "_error_cause_from_client_error",
                             staticmethod(named_as_on_aws))


def _forget_finished_threads() -> None:
    """moto's interpreter appends every thread it starts (one per state run) to a list that
    nothing reads or empties, so a long local run would keep them all: keep the live ones.
    A thread appended by another execution meanwhile may be dropped; nothing needs it."""
    from moto.stepfunctions.parser import utils

    started = getattr(utils, "TMP_THREADS", None)
    if not isinstance(started, list):
        raise LocalSetupError("moto's TMP_THREADS moved: check the moto pin")
    started[:] = [thread for thread in started if thread.is_alive()]


class SyncExecutions:
    """StartSyncExecution for the consumer's client: moto has the execution type, not the API.

    The run happens in the calling thread (moto's SyncExecutionWorker), as AWS returns only
    when the run has ended; nothing polls. Registered as a botocore ``before-call`` hook, so
    the consumer's request is validated against the real API model first.
    """

    def __init__(self, on_finished: Callable[[float], None], history: HistoryOptions) -> None:
        from moto.stepfunctions.parser.backend.execution import SyncExecution
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        self._execution_type = SyncExecution
        self._backend = stepfunctions_parser_backends[ACCOUNT][REGION]
        self._on_finished = on_finished
        self._history = history
        self.histories: list[list[dict[str, Any]]] = []

    @property
    def keep_history(self) -> bool:
        """Whether each execution's history, every state's input and output included, is
        kept in ``histories`` (tests switch it on to inspect them)."""
        return self._history.state_data

    @keep_history.setter
    def keep_history(self, keep: bool) -> None:
        self._history.state_data = keep

    def run(self, *, state_machine_arn: str, name: str, execution_input: str) -> dict[str, Any]:
        state_machine: Any = self._backend.describe_state_machine(state_machine_arn)
        execution = self._execution_type(
            name=name, sm_type=state_machine.sm_type, role_arn=state_machine.roleArn,
            exec_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:express:{state_machine.name}:{name}:"
                     f"{uuid.uuid4()}",
            account_id=ACCOUNT, region_name=REGION, state_machine=state_machine,
            start_date=datetime.now(UTC), cloud_watch_logging_session=None,
            activity_store={}, input_data=execution_input)
        started = time.perf_counter()
        execution.start()
        self._on_finished(time.perf_counter() - started)
        _forget_finished_threads()
        if self.keep_history:
            events = execution.to_history_output()["events"]
            self.histories.append([dict(event) for event in events])
        return dict(execution.to_start_sync_execution_output())

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict]:
        from botocore.awsrequest import AWSResponse

        request = json.loads(params["body"] or b"{}")
        response = self.run(state_machine_arn=request["stateMachineArn"],
                            name=request.get("name") or uuid.uuid4().hex,
                            execution_input=request.get("input") or "{}")
        return (AWSResponse("https://states.local", 200, {}, None),
                {**response, "ResponseMetadata": {"HTTPStatusCode": 200}})

    def install(self, client: Any) -> None:
        client.meta.events.register_first("before-call.sfn.StartSyncExecution", self._answer,
                                          unique_id="racecheck-local-sync-execution")

    def uninstall(self, client: Any) -> None:
        client.meta.events.unregister("before-call.sfn.StartSyncExecution",
                                      unique_id="racecheck-local-sync-execution")


def create_tables(dynamodb: Any, names: LocalNames) -> None:
    """The stack's tables, their indexes and streams (as stacks/constructs/tables.py)."""
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
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    dynamodb.create_table(
        TableName=names.quota_table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "api", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "api", "AttributeType": string}])
    for table, stream in ((names.runners_table, None), (names.evidence_table, "NEW_IMAGE"),
                          (names.timing_table, None)):
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "bib", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "bib", "AttributeType": string}],
            **({"StreamSpecification": {"StreamEnabled": True, "StreamViewType": stream}}
               if stream else {}),
        )


@dataclass(frozen=True)
class _Resources:
    state_machine_arn: str
    topic_arn: str
    alert_capture_url: str
    photo_queue_url: str
    dead_letter_queue_url: str


def _create_resources(clients: dict[str, Any], names: LocalNames,
                      throughput: Throughput) -> _Resources:
    s3, dynamodb, sns, sqs = (clients[name] for name in ("s3", "dynamodb", "sns", "sqs"))
    s3.create_bucket(Bucket=names.bucket)
    s3.put_bucket_versioning(Bucket=names.bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    create_tables(dynamodb, names)
    topic_arn = sns.create_topic(Name=names.topic)["TopicArn"]

    def queue_arn(url: str) -> str:
        return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]
                                            )["Attributes"]["QueueArn"])

    capture_url = sqs.create_queue(QueueName=names.alert_queue)["QueueUrl"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn(capture_url))
    dead_letters_url = sqs.create_queue(QueueName=names.dead_letter_queue)["QueueUrl"]
    photo_queue_url = sqs.create_queue(QueueName=names.photo_queue, Attributes={
        # Hidden while a consumer works on it, as deployed; redrive after as many receives.
        "VisibilityTimeout": str(LOCAL_VISIBILITY_TIMEOUT_SECONDS),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": queue_arn(dead_letters_url),
                                     "maxReceiveCount": throughput.max_receives}),
    })["QueueUrl"]
    definition = substitute(ASL_PATH.read_text(encoding="utf-8"), {
        **{placeholder: names.function_arn(short) for placeholder, (short, _)
           in FUNCTIONS.items()},
        "ResultsTableName": names.results_table,
    })
    state_machine_arn = clients["stepfunctions"].create_state_machine(
        name=names.state_machine, definition=definition, type="EXPRESS",
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-state-machine",
    )["stateMachineArn"]
    return _Resources(state_machine_arn=state_machine_arn, topic_arn=topic_arn,
                      alert_capture_url=capture_url, photo_queue_url=photo_queue_url,
                      dead_letter_queue_url=dead_letters_url)


@contextmanager
def local_stack(*, settings: Settings, backend: RekognitionBackend,
                passthrough_rekognition: bool = False,
                throughput: Throughput = LOCAL_THROUGHPUT,
                photo_points: PhotoPoints | None = None,
                review_dir: Path | None = None) -> Iterator[LocalStack]:
    """Start the emulated stack; the real handlers run in-process for every Lambda.

    ``review_dir``: the run's output folder, which alerts name in their ``racecheck review
    --local`` command."""
    try:
        import boto3
        import moto

        _defer_unused_package(moto, "batch")
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
    if passthrough_rekognition and throughput is LOCAL_THROUGHPUT:
        throughput = replace(LOCAL_THROUGHPUT, requeue_delay_seconds=5, rekognition_tps=float(
            json.loads((REPOSITORY_ROOT / "cdk.json").read_text(encoding="utf-8"))[
                "context"]["rekognition_tps"]))
    config: dict[str, Any] = {"stepfunctions": {"execute_state_machine": True},
                              "lambda": {"use_docker": False}}
    if passthrough_rekognition:
        config["core"] = {"passthrough": {"services": ["rekognition"], "urls": []}}

    with ExitStack() as stack:
        # moto's interpreter logs every absent JSONPath an IsPresent test probes, as ERROR.
        moto_logger = logging.getLogger("moto")
        stack.callback(moto_logger.setLevel, moto_logger.level)
        moto_logger.setLevel(logging.CRITICAL)
        stack.enter_context(mock.patch.dict(os.environ, HANDLER_ENVIRONMENT))
        stack.enter_context(mock_aws(config=config))  # type: ignore[call-overload]
        import importlib

        from lambdas import shared

        for cached in shared.CACHED:
            cached.cache_clear()  # a previous run may have used other settings or hooks
        stack.callback(lambda: [cached.cache_clear() for cached in shared.CACHED])
        # CloudWatch metrics mean nothing here, and Powertools' metric set is shared by the
        # handlers running in parallel threads: keep it empty rather than racing on it.
        stack.enter_context(mock.patch.object(shared.metrics, "add_metric",
                                              lambda **_: None))
        # The handlers' own INFO lines would drown the run's output; warnings still show.
        stack.callback(shared.logger.setLevel, shared.logger.log_level)
        shared.logger.setLevel(logging.WARNING)
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", module="aws_lambda_powertools")
        task_handlers = {f"{PREFIX}-{short}": importlib.import_module(module).handler
                         for short, module in FUNCTIONS.values()}
        pipeline_handlers = {module: importlib.import_module(module).handler
                             for module in (CONSUMER, FOLLOW_UP, SUSPECT_ALERTS)}
        handler_clock = HandlerClock()
        invoker = _in_process_invoker(task_handlers, handler_clock)
        programs = ParsedPrograms()
        history = HistoryOptions()
        for speedup in _interpreter_speedups(TaskInvocations(invoker), programs, history):
            stack.enter_context(speedup)
        # Any other Lambda client (a test's own) still reaches the handlers through moto.
        stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", invoker))
        clients = {name: boto3.client(name, region_name=REGION)
                   for name in ("s3", "dynamodb", "sns", "sqs", "stepfunctions")}
        # botocore now addresses DynamoDB Streams at account-based endpoints
        # (<account>.streams-ddb.<region>), which moto does not route; its classic one works.
        clients["dynamodbstreams"] = boto3.client(
            "dynamodbstreams", region_name=REGION,
            endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com")
        resources = _create_resources(clients, names, throughput)
        # Parsed now, so that the first photo does not pay for it.
        programs.get(clients["stepfunctions"].describe_state_machine(
            stateMachineArn=resources.state_machine_arn)["definition"])
        stack.enter_context(mock.patch.dict(os.environ, {
            "RACECHECK_SETTINGS": settings.to_json(),
            shared.THROUGHPUT_ENV_VAR: json.dumps(
                {name: getattr(throughput, name) for name in (
                    "rekognition_tps", "photo_check_seconds", "max_receives",
                    "requeue_delay_seconds")}),
            "RUNNERS_TABLE_NAME": names.runners_table,
            "TIMING_TABLE_NAME": names.timing_table,
            PHOTO_POINTS_ENV_VAR: (photo_points or PhotoPoints()).to_json(),
            **({LOCAL_DIR_ENV_VAR: str(review_dir)} if review_dir is not None else {}),
            "RESULTS_TABLE_NAME": names.results_table,
            "EVIDENCE_TABLE_NAME": names.evidence_table,
            "ALERT_TOPIC_ARN": resources.topic_arn,
            "STATE_MACHINE_ARN": resources.state_machine_arn,
            "PHOTO_QUEUE_URL": resources.photo_queue_url,
            # The real Rekognition has a real quota: its calls share the budget as deployed.
            **({"QUOTA_TABLE_NAME": names.quota_table} if passthrough_rekognition else {}),
        }))

        s3_backend = _s3_backend()

        def fetch(bucket: str, key: str, version: str | None) -> bytes:
            # Rekognition reads the object inside AWS: from moto's store here, without the
            # HTTP emulation and the checksums of a whole photo that a GetObject costs.
            try:
                stored = s3_backend.get_object(bucket, key, version_id=version)
            except Exception:  # moto raises its own NoSuchBucket/NoSuchVersion errors
                stored = None
            if stored is None:
                raise RekognitionError(
                    "InvalidS3ObjectException",
                    "Unable to get object metadata from S3. Check object key, region and/or "
                    "access permissions.")
            return bytes(stored.value)

        hook = LocalRekognitionHook(backend=backend, fetch_s3_object=fetch)
        rekognition_client = shared.rekognition()
        hook.install(rekognition_client)
        stack.callback(hook.uninstall, rekognition_client)
        local = LocalStack(
            names=names, clients=clients, state_machine_arn=resources.state_machine_arn,
            topic_arn=resources.topic_arn, queue_url=resources.alert_capture_url,
            photo_queue_url=resources.photo_queue_url,
            dead_letter_queue_url=resources.dead_letter_queue_url, hook=hook,
            handler_clock=handler_clock, handlers=pipeline_handlers, throughput=throughput)
        sync_executions = SyncExecutions(on_finished=local.add_execution_seconds,
                                         history=history)
        local.sync_executions = sync_executions
        for client in (shared.stepfunctions(), clients["stepfunctions"]):
            sync_executions.install(client)
            stack.callback(sync_executions.uninstall, client)
        yield local
