"""The queue consumer and the stream follow-ups in isolation: every AWS call they make goes
through botocore's Stubber, which validates requests and canned answers against the models."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY

from lambdas import follow_up, shared, start_checks, suspect_alerts
from racecheck.core.records import from_attribute_values
from racecheck.core.settings import SETTINGS_ENV_VAR, Settings
from racecheck.core.throughput import Throughput
from tests.conftest import LambdaContext, load_fixture, stubbed

STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:racecheck-photo-check"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/racecheck-ingest-queue"
TOPIC = "arn:aws:sns:us-east-1:123456789012:racecheck-alerts"
PACE = Throughput(rekognition_tps=5, photo_check_seconds=3, max_receives=4,
                  requeue_delay_seconds=30)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    for name, value in {
        SETTINGS_ENV_VAR: settings.to_json(),
        shared.THROUGHPUT_ENV_VAR: json.dumps(PACE.__dict__),
        "STATE_MACHINE_ARN": STATE_MACHINE, "PHOTO_QUEUE_URL": QUEUE_URL,
        "RESULTS_TABLE_NAME": "racecheck-results", "EVIDENCE_TABLE_NAME": "racecheck-evidence",
        "ALERT_TOPIC_ARN": TOPIC, "PACE_STARTS": "false",
    }.items():
        monkeypatch.setenv(name, value)
    for cached in shared.CACHED:
        cached.cache_clear()
    yield
    for cached in shared.CACHED:
        cached.cache_clear()


def sqs_event(receive_count: int = 1, body: str | None = None) -> dict[str, Any]:
    event = copy.deepcopy(load_fixture("events/sqs_object_created.json"))
    record = event["Records"][0]
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    if body is not None:
        record["body"] = body
    return event


def message_id() -> str:
    return str(load_fixture("events/sqs_object_created.json")["Records"][0]["messageId"])


def sync_result(status: str, **fields: Any) -> dict[str, Any]:
    return {"executionArn": f"{STATE_MACHINE}:run", "startDate": "2026-11-22T08:14:08Z",
            "stopDate": "2026-11-22T08:14:11Z", "status": status, **fields}


class Consumer:
    """The consumer handler with stubbed Step Functions, SQS and DynamoDB clients."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sfn, self.sfn_stub = stubbed("stepfunctions")
        self.sqs, self.sqs_stub = stubbed("sqs")
        self.dynamodb, self.dynamodb_stub = stubbed("dynamodb")
        monkeypatch.setattr(start_checks, "stepfunctions", lambda: self.sfn)
        monkeypatch.setattr(start_checks, "sqs", lambda: self.sqs)
        monkeypatch.setattr(start_checks, "dynamodb", lambda: self.dynamodb)

    def expect_run(self, result: dict[str, Any], receive_count: int = 1) -> None:
        self.sfn_stub.add_response("start_sync_execution", result, {
            "stateMachineArn": STATE_MACHINE, "name": f"{message_id()}-{receive_count}",
            "input": ANY})

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.sfn_stub, self.sqs_stub, self.dynamodb_stub:
            response = start_checks.handler(event, LambdaContext())
            for stub in (self.sfn_stub, self.sqs_stub, self.dynamodb_stub):
                stub.assert_no_pending_responses()
        return dict(response)


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Consumer:
    return Consumer(monkeypatch)


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def test_a_recorded_run_is_done(consumer: Consumer) -> None:
    consumer.expect_run(sync_result("SUCCEEDED", output='{"outcome":"RECORDED","verdict":"PASS"}'))
    assert failed_ids(consumer.run(sqs_event())) == []


def test_throttling_beyond_the_run_sends_the_photo_back_for_later(consumer: Consumer) -> None:
    # given a run that gave up on throttling, on the message's second receive
    consumer.expect_run(sync_result("FAILED", error="RetryLater.ServiceThrottled",
                                    cause="ThrottlingException: Rate exceeded"), 2)
    # then the message returns after twice the first delay, and stays in the queue
    consumer.sqs_stub.add_response("change_message_visibility", {}, {
        "QueueUrl": QUEUE_URL, "ReceiptHandle": ANY, "VisibilityTimeout": 60})
    assert failed_ids(consumer.run(sqs_event(receive_count=2))) == [message_id()]


def test_a_timed_out_run_is_tried_again(consumer: Consumer) -> None:
    consumer.expect_run(sync_result("TIMED_OUT"))
    consumer.sqs_stub.add_response("change_message_visibility", {}, {
        "QueueUrl": QUEUE_URL, "ReceiptHandle": ANY, "VisibilityTimeout": 30})
    assert failed_ids(consumer.run(sqs_event())) == [message_id()]


def test_a_throttled_start_is_tried_again(consumer: Consumer) -> None:
    consumer.sfn_stub.add_client_error("start_sync_execution",
                                       service_error_code="ThrottlingException")
    consumer.sqs_stub.add_response("change_message_visibility", {}, {
        "QueueUrl": QUEUE_URL, "ReceiptHandle": ANY, "VisibilityTimeout": 30})
    assert failed_ids(consumer.run(sqs_event())) == [message_id()]


def test_the_last_receive_records_an_error_that_says_why_and_keeps_the_event(
        consumer: Consumer) -> None:
    # given the last receive before the dead-letter queue, and throttling again
    consumer.expect_run(sync_result("FAILED", error="RetryLater.ServiceThrottled",
                                    cause="ThrottlingException: Rate exceeded"), 4)
    written: list[dict[str, Any]] = []
    consumer.dynamodb_stub.add_response("put_item", {}, {
        "TableName": "racecheck-results", "Item": ANY,
        "ConditionExpression": "attribute_not_exists(photo) OR #verdict = :error",
        "ExpressionAttributeNames": {"#verdict": "verdict"},
        "ExpressionAttributeValues": {":error": {"S": "ERROR"}}})
    original = consumer.dynamodb.put_item

    def capture(**request: Any) -> Any:
        written.append(from_attribute_values(request["Item"]))
        return original(**request)

    consumer.dynamodb.put_item = capture  # type: ignore[method-assign]
    # and the message is visible again at once, so its next receive moves it to the DLQ
    consumer.sqs_stub.add_response("change_message_visibility", {}, {
        "QueueUrl": QUEUE_URL, "ReceiptHandle": ANY, "VisibilityTimeout": 0})
    response = consumer.run(sqs_event(receive_count=4))
    # then the photo has an ERROR record, and the message is left to go to the DLQ
    assert failed_ids(response) == [message_id()]
    (record,) = written
    assert record["photo"] == "racecheck-ingest/km 30/IMG_0412.jpg"
    assert record["reasons"] == ["ERROR:ServiceThrottled"]
    assert "after 4 attempts" in record["summary"] and "racecheck redrive" in record["summary"]


def test_a_run_that_would_fail_again_is_recorded_as_an_error_at_once(consumer: Consumer) -> None:
    # given a failure no Catch can see and no retry fixes
    consumer.expect_run(sync_result("FAILED", error="States.DataLimitExceeded",
                                    cause="The state/task returned a result too large"))
    consumer.dynamodb_stub.add_response("put_item", {}, {
        "TableName": "racecheck-results", "Item": ANY, "ConditionExpression": ANY,
        "ExpressionAttributeNames": ANY, "ExpressionAttributeValues": ANY})
    # then the message is done: an ERROR record stands for the photo
    assert failed_ids(consumer.run(sqs_event())) == []


def test_a_message_that_is_no_s3_event_is_left_for_the_dead_letter_queue(
        consumer: Consumer) -> None:
    assert failed_ids(consumer.run(sqs_event(body="not json"))) == [message_id()]


def test_a_fast_photo_holds_its_slot_for_the_pacing_interval(
        consumer: Consumer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACE_STARTS", "true")
    slept: list[float] = []
    monkeypatch.setattr(start_checks.time, "sleep", slept.append)
    consumer.expect_run(sync_result("SUCCEEDED", output='{"outcome":"RECORDED"}'))
    consumer.run(sqs_event())
    (wait,) = slept
    assert PACE.slot_seconds - 0.5 < wait <= PACE.slot_seconds


# ------------------------------------------------------------------------ results stream


def test_a_fail_record_gets_its_index_entries_evidence_and_one_alert(
        monkeypatch: pytest.MonkeyPatch) -> None:
    event = load_fixture("events/results_stream_fail_insert.json")
    dynamodb, dynamodb_stub = stubbed("dynamodb")
    sns, sns_stub = stubbed("sns")
    monkeypatch.setattr(follow_up, "dynamodb", lambda: dynamodb)
    monkeypatch.setattr(follow_up, "sns", lambda: sns)
    photo = "racecheck-ingest/km 30/IMG_0412.jpg"
    # one by_bib item per number, registered or not
    for _ in ("3631", "4410"):
        dynamodb_stub.add_response("put_item", {}, {"TableName": "racecheck-results",
                                                    "Item": ANY})
    # the registered runner's counters, once per photo
    dynamodb_stub.add_response("update_item", {}, {
        "TableName": "racecheck-evidence", "Key": {"bib": {"S": "3631"}},
        "UpdateExpression": ANY, "ExpressionAttributeNames": ANY,
        "ExpressionAttributeValues": ANY,
        "ConditionExpression": "attribute_not_exists(#photos) OR NOT contains(#photos, :photo)"})
    sns_stub.add_response("publish", {"MessageId": "1"}, {
        "TopicArn": TOPIC, "Subject": "racecheck FAIL: 3631 (GENDER_MISMATCH)", "Message": ANY,
        "MessageAttributes": {
            "alert_type": {"DataType": "String", "StringValue": "PHOTO"},
            "verdict": {"DataType": "String", "StringValue": "FAIL"},
            "reasons": {"DataType": "String.Array", "StringValue": '["GENDER_MISMATCH"]'}}})
    # and the alert is marked sent only after it went out
    dynamodb_stub.add_response("update_item", {}, {
        "TableName": "racecheck-results",
        "Key": {"photo": {"S": photo}, "version": {"S": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"}},
        "UpdateExpression": "SET alert_sent_at = :now",
        "ConditionExpression": "attribute_not_exists(alert_sent_at) AND recorded_at = :recorded",
        "ExpressionAttributeValues": ANY})
    with dynamodb_stub, sns_stub:
        response = follow_up.handler(event, LambdaContext())
        dynamodb_stub.assert_no_pending_responses()
        sns_stub.assert_no_pending_responses()
    assert response["batchItemFailures"] == []


def test_a_repeated_stream_record_counts_nothing_twice_and_sends_nothing_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given the record's follow-up already done: counted, and the alert marked sent
    event = copy.deepcopy(load_fixture("events/results_stream_fail_insert.json"))
    event["Records"][0]["dynamodb"]["NewImage"]["alert_sent_at"] = {"S": "2026-11-22T08:14:10Z"}
    dynamodb, dynamodb_stub = stubbed("dynamodb")
    sns, sns_stub = stubbed("sns")
    monkeypatch.setattr(follow_up, "dynamodb", lambda: dynamodb)
    monkeypatch.setattr(follow_up, "sns", lambda: sns)
    for _ in range(2):
        dynamodb_stub.add_response("put_item", {}, {"TableName": "racecheck-results",
                                                    "Item": ANY})
    dynamodb_stub.add_client_error("update_item",
                                   service_error_code="ConditionalCheckFailedException")
    with dynamodb_stub, sns_stub:
        response = follow_up.handler(event, LambdaContext())
        dynamodb_stub.assert_no_pending_responses()
    # then no publish was made (the Stubber would have refused it) and nothing failed
    assert response["batchItemFailures"] == []


def test_the_follow_ups_own_bookkeeping_update_needs_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    event = copy.deepcopy(load_fixture("events/results_stream_fail_insert.json"))
    change = event["Records"][0]
    change["eventName"] = "MODIFY"
    change["dynamodb"]["OldImage"] = copy.deepcopy(change["dynamodb"]["NewImage"])
    change["dynamodb"]["NewImage"]["alert_sent_at"] = {"S": "2026-11-22T08:14:10Z"}
    dynamodb, dynamodb_stub = stubbed("dynamodb")
    monkeypatch.setattr(follow_up, "dynamodb", lambda: dynamodb)
    with dynamodb_stub:
        assert follow_up.handler(event, LambdaContext())["batchItemFailures"] == []


# ----------------------------------------------------------------------- evidence stream


def published_suspect_alert(event: dict[str, Any],
                            monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the suspect-alerts handler on a stream event; the one publish request it made,
    after the runner was marked alerted."""
    dynamodb, dynamodb_stub = stubbed("dynamodb")
    sns, sns_stub = stubbed("sns")
    monkeypatch.setattr(suspect_alerts, "dynamodb", lambda: dynamodb)
    monkeypatch.setattr(suspect_alerts, "sns", lambda: sns)
    published: list[dict[str, Any]] = []
    sns_stub.add_response("publish", {"MessageId": "2"}, {
        "TopicArn": TOPIC, "Subject": "racecheck SUSPECT: bib 3631", "MessageStructure": "json",
        "Message": ANY, "MessageAttributes": ANY})
    original = sns.publish

    def capture(**request: Any) -> Any:
        published.append(request)
        return original(**request)

    sns.publish = capture  # type: ignore[method-assign]
    dynamodb_stub.add_response("update_item", {}, {
        "TableName": "racecheck-evidence", "Key": {"bib": {"S": "3631"}},
        # the photos the alert named: only others can alert again once reviewers clear it
        "UpdateExpression": "SET alerted = :true, alerted_at = :now ADD known_photos :known",
        "ConditionExpression": "attribute_not_exists(alerted) OR alerted = :false",
        "ExpressionAttributeValues": ANY})
    with dynamodb_stub, sns_stub:
        assert suspect_alerts.handler(event, LambdaContext())["batchItemFailures"] == []
        dynamodb_stub.assert_no_pending_responses()
    (request,) = published
    return request


def test_a_runner_crossing_the_threshold_is_alerted_once_with_a_short_sms(
        monkeypatch: pytest.MonkeyPatch) -> None:
    request = published_suspect_alert(load_fixture("events/evidence_stream_suspect.json"),
                                      monkeypatch)
    texts = json.loads(request["Message"])
    # the e-mail lists every inconsistent photo and what the evidence is
    assert "s3://racecheck-ingest/km 10/IMG_0101.jpg" in texts["email"]
    assert ("Evidence: face (GENDER_MISMATCH in 2 photos, AGE_OUTSIDE_CATEGORY in 1 photo)."
            in texts["email"])
    # the SMS is one GSM-7 segment: short, ASCII, no photo keys
    assert len(texts["sms"]) <= 160 and texts["sms"].isascii()
    assert "IMG_" not in texts["sms"] and "3631" in texts["sms"]
    assert request["MessageAttributes"]["alert_type"]["StringValue"] == "SUSPECT"
    assert request["MessageAttributes"]["evidence"] == {"DataType": "String.Array",
                                                        "StringValue": '["face"]'}


def test_a_suspect_on_face_and_timing_evidence_names_both(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given a runner with one photo against the face and two against the chip, one of which
    # also shows no face, and counters as large as a race gets
    event = copy.deepcopy(load_fixture("events/evidence_stream_suspect.json"))
    image = event["Records"][0]["dynamodb"]["NewImage"]
    del image["reason_AGE_OUTSIDE_CATEGORY"]
    image.update({"inconsistent": {"N": "3"}, "reason_GENDER_MISMATCH": {"N": "1"},
                  "reason_TIMING_MISMATCH": {"N": "2"}, "reason_NO_FACE_FOR_BIB": {"N": "1"}})
    # when the suspect alert goes out
    request = published_suspect_alert(event, monkeypatch)
    texts = json.loads(request["Message"])
    # then the e-mail says what each kind of evidence rests on, apart from other findings
    assert ("Evidence: face (GENDER_MISMATCH in 1 photo) and timing (TIMING_MISMATCH in 2 "
            "photos).") in texts["email"]
    assert "Other findings in this runner's photos: NO_FACE_FOR_BIB in 1 photo." in (
        texts["email"])
    # and the SMS names both kinds and stays one short ASCII segment
    assert texts["sms"] == ("racecheck: bib 3631 is a suspect: 3 of 3 photos inconsistent, "
                            "evidence: face and timing. Details by email.")
    assert len(texts["sms"]) <= 160 and texts["sms"].isascii()
    assert request["MessageAttributes"]["evidence"]["StringValue"] == '["face", "timing"]'


def test_the_suspect_sms_stays_one_segment_for_the_longest_bib_and_counts() -> None:
    from racecheck.core.follow_up import SMS_LIMIT, suspect_alert

    alert = suspect_alert({"bib": "X" * 40, "inconsistent": 123456, "consistent": 654321,
                           "reason_GENDER_MISMATCH": 1, "reason_MISSED_CHECKPOINT": 5,
                           "registered": {"name": "Zoë Ångström", "gender": "F"}})
    assert len(alert["sms"]) <= SMS_LIMIT and alert["sms"].isascii()
    assert alert["sms"].endswith("evidence: face and timing. Details by email.")


def test_an_alerted_runner_is_not_alerted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    event = copy.deepcopy(load_fixture("events/evidence_stream_suspect.json"))
    event["Records"][0]["dynamodb"]["NewImage"]["alerted"] = {"BOOL": True}
    sns, sns_stub = stubbed("sns")
    monkeypatch.setattr(suspect_alerts, "sns", lambda: sns)
    with sns_stub:
        assert suspect_alerts.handler(event, LambdaContext())["batchItemFailures"] == []


def test_given_threads_asking_for_a_client_at_once_then_one_client_is_made(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    import boto3

    # Given a client that takes a while to make, as an S3 client does, and eight threads
    # (the local runner's pollers) that ask for it at the same moment
    made: list[str] = []

    def slow_client(service: str, **_: Any) -> object:
        made.append(service)
        time.sleep(0.05)  # widens the window in which a second thread could start another
        return object()

    monkeypatch.setattr(boto3, "client", slow_client)
    start = threading.Barrier(8)
    clients: list[object] = []

    def ask() -> None:
        start.wait()
        clients.append(shared.s3())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    # When they all ask
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then one client was made, and all of them have it
    assert made == ["s3"]
    assert len(clients) == 8 and len({id(client) for client in clients}) == 1
