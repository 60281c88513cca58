"""End to end: the deployed path, locally. Each photo's event goes through the ingest queue to
the real consumer, which runs the real statemachine/photo_check.asl.json (moto's
interpreter, real handlers in-process, Rekognition answered by canned, model-validated
responses); the real follow-up handlers read the tables' streams. One test per branch."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from racecheck.core.photo_timing import PhotoPoints
from racecheck.core.records import from_attribute_values
from racecheck.core.registry import parse_runners_csv
from racecheck.core.rules import evidence_kinds
from racecheck.core.runners_store import import_runners, plan_import, read_items, write_items
from racecheck.core.settings import Settings
from racecheck.core.timing import Checkpoint, RaceTiming
from racecheck.core.timing_store import import_timing
from racecheck.local.environment import (
    ACCOUNT,
    ASL_PATH,
    CONSUMER,
    FOLLOW_UP,
    LOCAL_TASK_TIMEOUT_SCALE,
    REGION,
    Delivery,
    LocalStack,
    local_stack,
    state_data_copy,
)
from racecheck.local.rekognition import RekognitionError
from tests.conftest import camera_exif, load_fixture, make_jpeg

RUNNERS_CSV = """bib,gender,age_category,name
3631,M,18-39,Tom
4242,F,18-39,Ana
"""


class ScriptedRekognition:
    """Answers by photo key and operation; a list plays in order and its last entry repeats.

    An entry is a fixture name, or a ``RekognitionError`` to raise.
    """

    def __init__(self) -> None:
        self.scripts: dict[tuple[str, str], list[str | RekognitionError]] = {}
        self.calls: defaultdict[tuple[str, str], int] = defaultdict(int)

    def script(self, key: str, **operations: str | list[str | RekognitionError]) -> None:
        for operation, plan in operations.items():
            self.scripts[(key, operation)] = plan if isinstance(plan, list) else [plan]

    def __call__(self, operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
        key = params["Image"]["S3Object"]["Name"]
        plan = self.scripts[(key, operation)]
        step = plan[min(self.calls[(key, operation)], len(plan) - 1)]
        self.calls[(key, operation)] += 1
        if isinstance(step, RekognitionError):
            raise step
        return load_fixture(f"rekognition/{step}.json")


CLEAN_MALE: dict[str, str | list[str | RekognitionError]] = {
    "DetectModerationLabels": "detect_moderation_clean",
    "DetectText": "detect_text_bib_3631",
    "DetectFaces": "detect_faces_male_29_45",
}
THROTTLED = RekognitionError("ThrottlingException", "Rate exceeded")


@pytest.fixture
def rekognition() -> ScriptedRekognition:
    return ScriptedRekognition()


@pytest.fixture
def stack(
    settings: Settings, rekognition: ScriptedRekognition, retry_sleeps: list[float]
) -> Iterator[LocalStack]:
    with local_stack(settings=settings, backend=rekognition) as running:
        for row in RUNNERS_CSV.splitlines()[1:]:
            register(running, row)
        yield running


def register(stack: LocalStack, row: str) -> None:
    """(Re-)import one registration, as `racecheck runners import` would."""
    import_runners(parse_runners_csv("bib,gender,age_category,name\n" + row),
                   table_name=stack.names.runners_table, dynamodb_client=stack.dynamodb)


def check(stack: LocalStack, key: str, body: bytes) -> tuple[Delivery, dict[str, Any]]:
    """Drop a photo in, let the pipeline settle, return (its delivery, its record)."""
    delivery, record = stack.check(key, body)
    assert record is not None, f"no record for {key}: {delivery}"
    return delivery, record


def count_records(stack: LocalStack) -> int:
    items = stack.dynamodb.scan(TableName=stack.names.results_table)["Items"]
    return sum(1 for item in items if not item["version"]["S"].startswith("bib#"))


def test_not_an_image_is_rejected_without_calling_rekognition(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given a text file dropped into the bucket
    # when it is checked
    delivery, record = check(stack, "notes.txt", b"finish times, not a photo\n")
    # then it gets a REJECTED verdict at the first delivery, and no Rekognition call was made
    assert delivery.done and delivery.receive_count == 1
    assert record["verdict"] == "REJECTED"
    assert record["reasons"] == ["NOT_AN_IMAGE"]
    assert sum(stack.rekognition.calls.values()) == 0


def test_an_empty_upload_is_rejected_as_empty(stack: LocalStack) -> None:
    # given a 0-byte object (S3 answers a ranged GET of it with 416 InvalidRange)
    _, record = check(stack, "empty.jpg", b"")
    # then the reason says so, rather than an error
    assert record["verdict"] == "REJECTED"
    assert record["reasons"] == ["EMPTY_FILE"]


def test_too_small_image_is_rejected(stack: LocalStack) -> None:
    _, record = check(stack, "thumb.jpg", make_jpeg(200, 150))
    assert record["verdict"] == "REJECTED"
    assert record["reasons"] == ["IMAGE_TOO_SMALL"]
    assert record["image"]["width"] == 200


def test_corrupt_header_is_rejected(stack: LocalStack) -> None:
    # given a JPEG signature followed by garbage
    _, record = check(stack, "broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50)
    assert record["verdict"] == "REJECTED"
    assert record["reasons"] == ["CORRUPT_IMAGE"]


def test_corrupt_body_refused_by_rekognition_is_rejected(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given a JPEG whose header is fine but whose data Rekognition cannot decode
    rekognition.script(
        "truncated.jpg",
        DetectModerationLabels=[
            RekognitionError("InvalidImageFormatException", "Request has invalid image format")
        ],
    )
    _, record = check(stack, "truncated.jpg", make_jpeg()[:3000])
    assert record["verdict"] == "REJECTED"
    assert record["reasons"] == ["CORRUPT_IMAGE"]


def test_rekognition_refuses_a_photo_version_it_cannot_read_from_s3(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given a photo version that is not in the bucket
    from botocore.exceptions import ClientError

    from lambdas import shared

    image = {"S3Object": {"Bucket": stack.names.bucket, "Name": "gone.jpg", "Version": "v1"}}
    # when a handler asks Rekognition about it
    with pytest.raises(ClientError) as raised:
        shared.rekognition().detect_text(Image=image)
    # then Rekognition's own error comes back, and no detector was asked
    assert raised.value.response["Error"]["Code"] == "InvalidS3ObjectException"
    assert not rekognition.calls


def test_moderation_blocks_explicit_content(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    rekognition.script("explicit.jpg", DetectModerationLabels="detect_moderation_explicit")
    _, record = check(stack, "explicit.jpg", make_jpeg())
    assert record["verdict"] == "REJECTED"
    assert record["reasons"] == ["MODERATION:Explicit"]
    assert ("explicit.jpg", "DetectText") not in rekognition.calls


def test_swimwear_is_not_a_blocking_category(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    rekognition.script(
        "beach.jpg",
        DetectModerationLabels="detect_moderation_swimwear",
        DetectText="detect_text_nothing",
    )
    _, record = check(stack, "beach.jpg", make_jpeg())
    assert record["verdict"] == "PASS"
    assert record["moderation_labels"][0]["Category"] == "Swimwear or Underwear"


def test_no_bib_skips_face_analysis(stack: LocalStack, rekognition: ScriptedRekognition) -> None:
    rekognition.script(
        "crowd.jpg",
        DetectModerationLabels="detect_moderation_clean",
        DetectText="detect_text_nothing",
    )
    _, record = check(stack, "crowd.jpg", make_jpeg())
    assert record["verdict"] == "PASS"
    assert "NO_BIB" in record["reasons"]
    assert rekognition.calls[("crowd.jpg", "DetectFaces")] == 0


def test_local_tasks_get_longer_timeouts_than_the_deployed_ones(
        stack: LocalStack, rekognition: ScriptedRekognition) -> None:
    # given the deployed timeouts of the tasks, from the ASL file itself
    states = json.loads(ASL_PATH.read_text(encoding="utf-8"))["States"]
    deployed = {name: state["TimeoutSeconds"] for name, state in _all_states(states)
                if state["Type"] == "Task"}
    assert deployed and all(seconds < 60 for seconds in deployed.values())
    rekognition.script("crowd.jpg", DetectModerationLabels="detect_moderation_clean",
                       DetectText="detect_text_nothing")
    assert stack.sync_executions is not None
    stack.sync_executions.keep_history = True
    # when a photo is checked offline
    check(stack, "crowd.jpg", make_jpeg())
    # then each task ran with its deployed timeout times the local scale: offline detectors
    # and moto on a busy laptop are slow, not stuck
    (history,) = stack.sync_executions.histories
    entered = [event["stateEnteredEventDetails"]["name"] for event in history
               if "stateEnteredEventDetails" in event]
    timeouts = [event["taskScheduledEventDetails"]["timeoutInSeconds"] for event in history
                if "taskScheduledEventDetails" in event]
    ran = [name for name in entered if name in deployed]
    assert ran[0] == "CheckImage" and len(ran) == len(timeouts) >= 5
    assert timeouts == [deployed[name] * LOCAL_TASK_TIMEOUT_SCALE for name in ran]


def test_read_bibs_is_given_the_photo_size_the_check_step_measured(
        stack: LocalStack, rekognition: ScriptedRekognition) -> None:
    rekognition.script("crowd.jpg", DetectModerationLabels="detect_moderation_clean",
                       DetectText="detect_text_nothing")
    assert stack.sync_executions is not None
    stack.sync_executions.keep_history = True
    # when a 800x600 photo is checked
    check(stack, "crowd.jpg", make_jpeg(800, 600))
    # then the ASL hands ReadBibs CheckImage's image, whose size turns Rekognition's
    # fractional boxes into pixels for the frame-edge and width checks
    (history,) = stack.sync_executions.histories
    payloads = [json.loads(event["taskScheduledEventDetails"]["parameters"]).get("Payload", {})
                for event in history if "taskScheduledEventDetails" in event]
    (read_bibs,) = [payload for payload in payloads
                    if "photo" in payload and "image" in payload and "state" not in payload]
    assert (read_bibs["image"]["width"], read_bibs["image"]["height"]) == (800, 600)


def _all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _all_states(branch["States"])
        if "ItemProcessor" in state:
            yield from _all_states(state["ItemProcessor"]["States"])


def test_registered_runner_matching_the_face_passes(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given bib 3631 registered M 18-39 and a male face estimated 29-45 above it
    rekognition.script("tom.jpg", **CLEAN_MALE)
    _, record = check(stack, "tom.jpg", make_jpeg())
    assert record["verdict"] == "PASS", record["reasons"]
    assert [bib["number"] for bib in record["bibs"]] == ["3631"]
    assert record["links"][0]["face_index"] == 0
    # and "2026" on the bib's sponsor line is not taken for a bib
    assert all(bib["number"] != "2026" for bib in record["bibs"])
    # and the follow-up indexed the photo under its bib
    by_bib = stack.dynamodb.query(
        TableName=stack.names.results_table,
        IndexName="by_bib",
        KeyConditionExpression="bib = :bib",
        ExpressionAttributeValues={":bib": {"S": "3631"}},
    )
    assert [item["key"]["S"] for item in by_bib["Items"]] == ["tom.jpg"]
    assert by_bib["Items"][0]["outcome"]["S"] == "consistent"


def test_gender_mismatch_fails_and_alerts(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given bib 3631 registered F and a male face at 99.9% above it
    rekognition.script("swap.jpg", **CLEAN_MALE)
    register(stack, "3631,F,18-39,Ana")
    _, record = check(stack, "swap.jpg", make_jpeg())
    assert record["verdict"] == "FAIL"
    assert "GENDER_MISMATCH" in record["reasons"]
    alerts = stack.drain_alerts()
    assert len(alerts) == 1
    assert alerts[0]["attributes"]["verdict"] == "FAIL"
    assert alerts[0]["attributes"]["alert_type"] == "PHOTO"
    assert json.loads(alerts[0]["attributes"]["reasons"]) == record["reasons"]
    assert "swap.jpg" in alerts[0]["message"]
    # and the record says the alert went out, so no retry sends it again
    settled = stack.result_item(key="swap.jpg", version=record["version"])
    assert settled is not None and settled["alert_sent_at"]


def test_unregistered_bib_is_reviewed(stack: LocalStack, rekognition: ScriptedRekognition) -> None:
    stack.dynamodb.delete_item(TableName=stack.names.runners_table, Key={"bib": {"S": "3631"}})
    rekognition.script("bandit.jpg", **CLEAN_MALE)
    _, record = check(stack, "bandit.jpg", make_jpeg())
    assert record["verdict"] == "REVIEW"
    assert "BIB_UNREGISTERED" in record["reasons"]


def test_a_non_binary_runner_round_trips_and_is_judged_on_age_only(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given bib 3631 registered X 60-69 (stored in the runners table, loaded back by
    # Decide) under a face estimated male 99.9%, aged 29-45
    register(stack, "3631,non-binary,60-69,Sam")
    rekognition.script("sam.jpg", **CLEAN_MALE)
    _, record = check(stack, "sam.jpg", make_jpeg())
    # then the gender is not compared; the age is, and sends the photo to review
    assert record["verdict"] == "REVIEW"
    assert record["reasons"] == ["AGE_OUTSIDE_CATEGORY"]
    assert record["links"][0]["registered"]["gender"] == "X"
    assert "registered X, 60-69" in record["summary"]


def test_a_pruned_runner_is_no_longer_registered(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given a list without 3631 imported with prune, as `racecheck runners import --prune`
    current = read_items(table_name=stack.names.runners_table, dynamodb_client=stack.dynamodb)
    plan = plan_import(current, parse_runners_csv("bib,gender,age_category\n4242,F,18-39\n"),
                       prune=True, at="2026-04-02T10:00:00.000Z", source="v2.csv")
    write_items(plan.items, table_name=stack.names.runners_table,
                dynamodb_client=stack.dynamodb)
    # when a photo of bib 3631 comes in
    rekognition.script("withdrawn.jpg", **CLEAN_MALE)
    _, record = check(stack, "withdrawn.jpg", make_jpeg())
    # then Decide treats the removed bib as unregistered
    assert record["verdict"] == "REVIEW"
    assert "BIB_UNREGISTERED" in record["reasons"]


def test_throttling_within_the_quick_retry_recovers_in_the_same_run(
    stack: LocalStack, rekognition: ScriptedRekognition, retry_sleeps: list[float]
) -> None:
    # given DetectText throttled once, then answering
    throttled_once: list[str | RekognitionError] = [THROTTLED, "detect_text_bib_3631"]
    rekognition.script("busy.jpg", **{**CLEAN_MALE, "DetectText": throttled_once})
    delivery, record = check(stack, "busy.jpg", make_jpeg())
    # then the state machine's own retry (after a jittered wait) was enough
    assert record["verdict"] == "PASS"
    assert delivery.receive_count == 1
    assert rekognition.calls[("busy.jpg", "DetectText")] == 2
    assert len(retry_sleeps) == 1 and 0 <= retry_sleeps[0] <= 2


def test_longer_throttling_goes_back_to_the_queue_and_is_checked_later(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given DetectText throttled three times: more than one run's quick retry
    throttled_thrice: list[str | RekognitionError] = [THROTTLED, THROTTLED, THROTTLED,
                                                      "detect_text_bib_3631"]
    rekognition.script("storm.jpg", **{**CLEAN_MALE, "DetectText": throttled_thrice})
    delivery, record = check(stack, "storm.jpg", make_jpeg())
    # then the first run handed the photo back to the queue, and the second delivery
    # checked it: a verdict, not an ERROR
    assert record["verdict"] == "PASS"
    assert delivery.receive_count == 2
    assert rekognition.calls[("storm.jpg", "DetectText")] == 4


def test_rekognition_failing_for_good_records_an_error_and_dead_letters_the_event(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    always_throttled: list[str | RekognitionError] = [THROTTLED]
    rekognition.script("doomed.jpg", **{**CLEAN_MALE, "DetectText": always_throttled})
    delivery, record = check(stack, "doomed.jpg", make_jpeg())
    # then every receive was used, two calls a run (the call and its quick retry)
    max_receives = stack.throughput.max_receives
    assert delivery.receive_count == max_receives and delivery.dead_lettered
    assert rekognition.calls[("doomed.jpg", "DetectText")] == 2 * max_receives
    # and the photo has an ERROR record that says why, and its event waits in the DLQ
    assert record["verdict"] == "ERROR"
    assert record["reasons"] == ["ERROR:ServiceThrottled"]
    assert "ThrottlingException" in record["error_cause"]
    assert f"after {max_receives} attempts" in record["summary"]
    stack.deliver()  # one receive too many: the redrive policy moves it
    dead = stack.sqs.receive_message(QueueUrl=stack.dead_letter_queue_url).get("Messages", [])
    assert [json.loads(m["Body"])["detail"]["object"]["key"] for m in dead] == ["doomed.jpg"]


def test_unexpected_handler_error_records_an_error_at_once(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    rekognition.script(
        "denied.jpg",
        DetectModerationLabels=[RekognitionError("AccessDeniedException", "not allowed")],
    )
    delivery, record = check(stack, "denied.jpg", make_jpeg())
    assert delivery.receive_count == 1
    assert record["verdict"] == "ERROR"
    assert record["reasons"] == ["ERROR:AccessDeniedException"]


def test_same_event_three_times_gives_one_result_and_one_alert(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given a photo that earns an alert, and its event delivered three times
    register(stack, "3631,F,18-39,Ana")
    rekognition.script("repeat.jpg", **CLEAN_MALE)
    event = stack.put_photo("repeat.jpg", make_jpeg())
    for _ in range(3):
        stack.enqueue(event)
    deliveries = stack.settle()
    # then every delivery ends well, one result is stored and one alert sent
    assert [delivery.done for delivery in deliveries] == [True] * 3
    assert count_records(stack) == 1
    assert len(stack.drain_alerts()) == 1
    # and the repeats stopped at the lookup without calling Rekognition again
    assert rekognition.calls[("repeat.jpg", "DetectText")] == 1


def test_a_repeated_event_after_the_runner_freed_the_photo_leaves_its_record_as_it_was(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given a photo checked once, whose bytes the runner then freed (as after its line)
    register(stack, "3631,F,18-39,Ana")
    rekognition.script("freed.jpg", **CLEAN_MALE)
    event = stack.put_photo("freed.jpg", make_jpeg())
    stack.enqueue(event)
    stack.settle()
    version = event["detail"]["object"]["version-id"]
    first = stack.result_item(key="freed.jpg", version=version)
    stack.forget_photo("freed.jpg", version)
    # when its event comes again
    stack.enqueue(event)
    deliveries = stack.settle()
    # then the delivery ends, the record is unchanged, and nothing is alerted twice
    assert [delivery.done for delivery in deliveries] == [True]
    assert stack.result_item(key="freed.jpg", version=version) == first
    assert first is not None and first["verdict"] == "FAIL"
    assert len(stack.drain_alerts()) == 1
    assert rekognition.calls[("freed.jpg", "DetectText")] == 1


def test_a_consumer_crash_after_the_record_is_written_loses_no_alert(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given a photo that earns an alert, and a consumer that dies right after its first run
    register(stack, "3631,F,18-39,Ana")
    rekognition.script("crash.jpg", **CLEAN_MALE)
    consumer = stack.handlers[CONSUMER]
    crashes: list[dict[str, Any]] = []

    def crash_once(event: dict[str, Any], context: Any) -> Any:
        response = consumer(event, context)
        if not crashes:
            crashes.append(response)
            raise TimeoutError("Task timed out")  # the run finished; the answer was lost
        return response

    stack.handlers[CONSUMER] = crash_once
    delivery, record = check(stack, "crash.jpg", make_jpeg())
    # then the message came back, the second run found the record, and the alert that
    # follows from the record went out once
    assert crashes == [{"batchItemFailures": []}] and delivery.receive_count == 2
    assert record["verdict"] == "FAIL"
    assert count_records(stack) == 1
    assert len(stack.drain_alerts()) == 1


def test_an_ambiguous_write_of_the_record_is_retried_without_a_second_alert(
    stack: LocalStack, rekognition: ScriptedRekognition, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given DynamoDB storing the record but answering 500 (a timeout after the write)
    register(stack, "3631,F,18-39,Ana")
    rekognition.script("ambiguous.jpg", **CLEAN_MALE)
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.models import DynamoDBBackend

    class InternalServerError(MockValidationException):
        code = 500

        def __init__(self) -> None:
            super().__init__("internal error")
            self.error_type = "InternalServerError"

    original = DynamoDBBackend.put_item
    failed: list[str] = []

    def put_then_fail(self: Any, table_name: str, item_attrs: dict[str, Any],
                      *args: Any, **kwargs: Any) -> Any:
        result = original(self, table_name, item_attrs, *args, **kwargs)
        if item_attrs.get("key", {}).get("S") == "ambiguous.jpg" and not failed:
            failed.append(table_name)
            raise InternalServerError()
        return result

    monkeypatch.setattr(DynamoDBBackend, "put_item", put_then_fail)
    delivery, record = check(stack, "ambiguous.jpg", make_jpeg())
    # then the state machine retried (DynamoDB.InternalServerErrorException, as AWS names
    # it), found its own record there, and the stream sent the alert once
    assert failed == [stack.names.results_table]
    assert delivery.receive_count == 1
    assert record["verdict"] == "FAIL"
    assert len(stack.drain_alerts()) == 1


def test_a_failed_publish_is_retried_from_the_stream(
    stack: LocalStack, rekognition: ScriptedRekognition, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given SNS failing the first publish of the photo's alert
    register(stack, "3631,F,18-39,Ana")
    rekognition.script("sns-down.jpg", **CLEAN_MALE)
    from lambdas import shared

    topic = shared.sns()
    original = topic.publish
    attempts: list[str] = []

    def publish_failing_once(**request: Any) -> Any:
        attempts.append(request["Subject"])
        if len(attempts) == 1:
            raise RuntimeError("SNS unavailable")
        return original(**request)

    monkeypatch.setattr(topic, "publish", publish_failing_once)
    _, record = check(stack, "sns-down.jpg", make_jpeg())
    # then the stream record was delivered again, the alert sent once, the runner's
    # evidence counted once
    assert len(attempts) == 2
    assert len(stack.drain_alerts()) == 1
    evidence = stack.dynamodb.get_item(TableName=stack.names.evidence_table,
                                       Key={"bib": {"S": "3631"}})["Item"]
    assert evidence["inconsistent"]["N"] == "1"
    assert stack.stream_failures == []
    assert record["verdict"] == "FAIL"


@pytest.mark.parametrize(
    "key", ["finish line/photo 1.jpg", "Zoë+Ana 3631.jpg", "deep/ünï cödé/a+b=c.JPG"]
)
def test_odd_keys_are_checked_under_their_real_names(
    stack: LocalStack, rekognition: ScriptedRekognition, key: str
) -> None:
    rekognition.script(
        key, DetectModerationLabels="detect_moderation_clean", DetectText="detect_text_nothing"
    )
    _, record = check(stack, key, make_jpeg())
    assert record["key"] == key
    assert record["verdict"] == "PASS"


def test_url_encoded_key_in_the_event_is_resolved(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given an event whose key arrives URL-encoded, as S3 notifications deliver keys
    key = "finish line/Zoë 3631.jpg"
    rekognition.script(
        key, DetectModerationLabels="detect_moderation_clean", DetectText="detect_text_nothing"
    )
    event = stack.put_photo(key, make_jpeg())
    event["detail"]["object"]["key"] = "finish+line/Zo%C3%AB+3631.jpg"
    stack.enqueue(event)
    stack.settle()
    record = stack.result_item(key=key, version=event["detail"]["object"]["version-id"])
    assert record is not None and record["verdict"] == "PASS"


def test_two_inconsistent_photos_make_one_suspect_alert(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given bib 3631 registered F, and three photos of a man wearing it
    register(stack, "3631,F,18-39,Ana")
    for index in range(3):
        rekognition.script(f"km{index}.jpg", **CLEAN_MALE)
        check(stack, f"km{index}.jpg", make_jpeg(colour=f"#{index}{index}5566"))
    evidence = stack.dynamodb.get_item(
        TableName=stack.names.evidence_table, Key={"bib": {"S": "3631"}}
    )["Item"]
    assert evidence["inconsistent"]["N"] == "3"
    assert evidence["alerted"]["BOOL"] is True
    alerts = stack.drain_alerts()
    suspect_alerts = [a for a in alerts if a["attributes"]["alert_type"] == "SUSPECT"]
    # then the runner is reported once, after the second photo, with the photos listed
    assert len(suspect_alerts) == 1
    assert "km0.jpg" in suspect_alerts[0]["message"]
    assert "km1.jpg" in suspect_alerts[0]["message"]
    assert "Evidence: face (GENDER_MISMATCH in 2 photos)." in suspect_alerts[0]["message"]
    assert suspect_alerts[0]["attributes"]["evidence"] == '["face"]'
    assert len([a for a in alerts if a["attributes"]["alert_type"] == "PHOTO"]) == 3


class MassStart:
    """A crowded start line: 100 faces, 80 bibs below them and 20 sponsor words, the most
    DetectText returns (100 words) and a DetectFaces answer as large as a photo gets."""

    @staticmethod
    def box(left: float, top: float, width: float, height: float) -> dict[str, Any]:
        return {"BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top},
                "Polygon": [{"X": left, "Y": top}, {"X": left + width, "Y": top},
                            {"X": left + width, "Y": top + height},
                            {"X": left, "Y": top + height}]}

    def __call__(self, operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
        if operation == "DetectModerationLabels":
            return load_fixture("rekognition/detect_moderation_clean.json")
        if operation == "DetectText":
            detections = []
            for index in range(100):
                column, row = index % 10, index // 10
                is_bib = index < 80
                text = str(1000 + index) if is_bib else f"SPONSOR{index}"
                geometry = self.box(0.02 + column * 0.097, 0.06 + row * 0.094 + 0.045,
                                    0.04, 0.02 if is_bib else 0.012)
                detections.append({"DetectedText": text, "Type": "LINE", "Id": index,
                                   "Confidence": 99.0, "Geometry": geometry})
                detections.append({"DetectedText": text, "Type": "WORD", "Id": 100 + index,
                                   "ParentId": index, "Confidence": 99.0, "Geometry": geometry})
            return {"TextDetections": detections, "TextModelVersion": "3.0"}
        face = load_fixture("rekognition/detect_faces_male_29_45.json")["FaceDetails"][0]
        faces = []
        for index in range(100):
            column, row = index % 10, index // 10
            faces.append({**face, "BoundingBox": self.box(
                0.03 + column * 0.097, 0.06 + row * 0.094, 0.02, 0.025)["BoundingBox"]})
        return {"FaceDetails": faces}


def test_a_mass_start_photo_keeps_every_state_well_under_256_kb(settings: Settings) -> None:
    # given the largest answers Rekognition gives for one photo
    with local_stack(settings=settings, backend=MassStart()) as stack:
        assert stack.sync_executions is not None
        stack.sync_executions.keep_history = True
        _, record = stack.check("start-line.jpg", make_jpeg(1600, 1200))
        # (an execution that fails transiently, e.g. a task timing out on a loaded machine,
        # is run again from the queue: every execution's states are measured)
        history = [event for run in stack.sync_executions.histories for event in run]
    # then the photo is recorded with all it holds
    assert record is not None and record["verdict"] == "REVIEW"  # 80 unregistered bibs
    assert len(record["faces"]) == 100 and len(record["bibs"]) == 80
    # and no state's input or output came near Step Functions' 256 KB (262,144 bytes)
    sizes: dict[str, int] = {}
    for event in history:
        for details in ("stateEnteredEventDetails", "stateExitedEventDetails"):
            if details in event:
                payload = event[details].get("input") or event[details].get("output") or ""
                name = event[details]["name"]
                sizes[name] = max(sizes.get(name, 0), len(payload.encode("utf-8")))
    assert {"Decide", "RecordResult", "Checked"} <= set(sizes)
    largest = max(sizes.values())
    print(f"largest state payload: {largest} bytes ({max(sizes, key=sizes.__getitem__)})")
    assert largest < 262_144 * 0.6, sizes
    # (measured: the history kept each state's data, 100 faces and 80 bibs' worth)
    assert largest > 262_144 * 0.2, sizes


def test_photos_off_the_chip_make_a_suspect_on_timing_evidence(
    settings: Settings, rekognition: ScriptedRekognition, retry_sleeps: list[float]
) -> None:
    # given photos under km25/ placed at km 25, and bib 3631's chip passing there at
    # 11:07:00 local time (between its half and 30k reads)
    points = PhotoPoints.from_raw(
        {"utc_offset": "+02:00", "points": [{"prefix": "km25/", "km": 25}]}
    )
    course = (Checkpoint("start", 0), Checkpoint("half", 21.1), Checkpoint("30k", 30))
    reads = {name: datetime.fromisoformat(f"2026-04-19T{clock}+02:00").timestamp()
             for name, clock in (("start", "09:02:00"), ("half", "10:47:30"),
                                 ("30k", "11:32:00"))}
    with local_stack(settings=settings, backend=rekognition, photo_points=points) as stack:
        register(stack, "3631,M,18-39,Tom")
        import_timing(RaceTiming(course=course, reads={"3631": reads}),
                      table_name=stack.names.timing_table, dynamodb_client=stack.dynamodb)
            # when his face (which fits) is photographed on time, then twice 15+ minutes early,
        # each photo dropped in and the pipeline (queue, state machine, streams) settled
        verdicts = []
        for key, taken in (("km25/on time.jpg", "2026:04:19 11:07:10"),
                           ("km25/early.jpg", "2026:04:19 10:52:00"),
                           ("km25/earlier.jpg", "2026:04:19 10:50:00")):
            rekognition.script(key, **CLEAN_MALE)
            _, record = check(stack, key, make_jpeg(exif=camera_exif(taken)))
            verdicts.append((record["verdict"], record["reasons"]))
        evidence = from_attribute_values(stack.dynamodb.get_item(
            TableName=stack.names.evidence_table, Key={"bib": {"S": "3631"}})["Item"])
        alerts = stack.drain_alerts()
    # then the early photos go to review, and timing evidence alone makes him a suspect
    assert verdicts == [("PASS", []), ("REVIEW", ["TIMING_MISMATCH"]),
                        ("REVIEW", ["TIMING_MISMATCH"])]
    assert (evidence["inconsistent"], evidence["consistent"]) == (2, 1)
    assert evidence_kinds(evidence) == {"timing": {"TIMING_MISMATCH": 2}}
    (suspect,) = alerts  # REVIEW photos are left to the digest: the one alert is the suspect
    assert suspect["attributes"]["alert_type"] == "SUSPECT"
    assert suspect["attributes"]["evidence"] == '["timing"]'
    assert "Evidence: timing (TIMING_MISMATCH in 2 photos)." in suspect["message"]
    assert "km25/early.jpg" in suspect["message"] and "on time.jpg" not in suspect["message"]


def test_two_stream_records_written_at_once_get_different_sequence_numbers(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib
    import threading

    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models import table as moto_table

    from racecheck.local.environment import ACCOUNT, REGION

    # given two writes to the results table whose stream records are made at the same
    # moment (each waits, half a second at most, for the other inside the record)
    meeting = threading.Barrier(2, timeout=0.5)

    class MeetingRecord(moto_table.StreamRecord):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                meeting.wait()
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(moto_table, "StreamRecord", MeetingRecord)

    def write(index: int) -> None:
        stack.dynamodb.put_item(TableName=stack.names.results_table,
                                Item={"photo": {"S": f"bucket/at-once-{index}.jpg"},
                                      "version": {"S": "v1"}})

    # when both are written at once
    writers = [threading.Thread(target=write, args=(index,)) for index in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=30)
    # then each stream record has its own sequence number, as in AWS
    shard = dynamodb_backends[ACCOUNT][REGION].get_table(stack.names.results_table).stream_shard
    assert shard is not None
    numbers = [record.to_json()["dynamodb"]["SequenceNumber"] for record in shard.items]
    assert len(numbers) == 2
    assert len(set(numbers)) == 2


@pytest.mark.parametrize("attribute_kind", ["S", "L"])
def test_dynamodb_s_item_size_limit_still_holds_for_items_built_at_once(
    stack: LocalStack, attribute_kind: str
) -> None:
    from botocore.exceptions import ClientError

    def item(name: str, attribute_bytes: int) -> dict[str, Any]:
        def value(text: str) -> dict[str, Any]:
            if attribute_kind == "S":
                return {"S": text}
            return {"L": [{"S": text[:len(text) // 2]}, {"S": text[len(text) // 2:]}]}

        return {"photo": {"S": f"bucket/{name}.jpg"}, "version": {"S": "v1"},
                **{f"part{index}": value("x" * attribute_bytes) for index in range(5)}}

    # given two items spread over five attributes: about 410 KB, over DynamoDB's 400 KB
    # item limit ("Constraints in Amazon DynamoDB", Developer Guide), and about 390 KB,
    # under it
    too_large, under = item("too-large", 82_000), item("under", 78_000)
    # when both are written
    with pytest.raises(ClientError) as refused:
        stack.dynamodb.put_item(TableName=stack.names.results_table, Item=too_large)
    stack.dynamodb.put_item(TableName=stack.names.results_table, Item=under)
    # then the larger one is refused as DynamoDB refuses it, the other is stored whole
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Item size has exceeded the maximum allowed size" in str(refused.value)
    stored = stack.dynamodb.get_item(TableName=stack.names.results_table,
                                     Key={"photo": under["photo"], "version": under["version"]})
    assert stored["Item"] == under


def test_a_photo_is_checked_without_moto_s_batch_and_ec2_and_batch_still_loads_on_use() -> None:
    import subprocess
    import sys
    import textwrap

    from racecheck.core.settings import REPOSITORY_ROOT

    # given a fresh interpreter (this one may have imported any moto service already)
    script = textwrap.dedent("""
        import json, sys
        from racecheck.core.settings import Settings
        from racecheck.local.environment import local_stack
        from tests.conftest import load_fixture, make_jpeg

        answers = {"DetectModerationLabels": "detect_moderation_clean",
                   "DetectText": "detect_text_bib_3631",
                   "DetectFaces": "detect_faces_male_29_45"}
        backend = lambda operation, image, params: load_fixture(
            f"rekognition/{answers[operation]}.json")
        with local_stack(settings=Settings.from_cdk_json(), backend=backend) as stack:
            # when a photo goes through the whole state machine
            _delivery, record = stack.check("runner.jpg", make_jpeg(1600, 1200))
            imported = sorted(name for name in sys.modules
                              if name.split(".")[:2] in (["moto", "ec2"], ["moto", "batch"]))
            # and something then asks moto for its Batch backend
            from moto.backends import get_backend
            batch = get_backend("batch")
        print(json.dumps({"verdict": record["verdict"], "imported": imported,
                          "batch_backend": type(batch).__name__,
                          "ec2_after": "moto.ec2" in sys.modules}))
    """)
    finished = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY_ROOT,
                              capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr
    outcome = json.loads(finished.stdout.strip().splitlines()[-1])
    # then the photo got its verdict with only moto.batch's one used module imported,
    # and moto's Batch (with its EC2) loads whole when asked for
    assert outcome["verdict"] == "REVIEW"
    assert outcome["imported"] == ["moto.batch", "moto.batch.exceptions", "moto.batch.utils"]
    assert outcome["batch_backend"] == "BackendDict"
    assert outcome["ec2_after"] is True



def test_a_stored_item_reads_back_as_moto_itself_would_answer_it(
        settings: Settings, rekognition: ScriptedRekognition) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    # given moto's own conversion, and an item nested four deep with binary values, sets
    # and numbers inside
    moto_s_own = DynamoType.to_regular_json
    nested = {"M": {"faces": {"L": [{"M": {"age": {"N": "31"}, "crop": {"B": b"\x00\x01"},
                                           "tags": {"SS": ["a", "b"]},
                                           "deeper": {"M": {"x": {"NULL": True}}}}}]}}}
    item: dict[str, Any] = {
        "photo": {"S": "bucket/nested.jpg"}, "version": {"S": "v1"}, "evidence": nested,
        "blob": {"B": b"\xff"}, "flag": {"BOOL": False}}
    with local_stack(settings=settings, backend=rekognition) as stack:
        # when it is stored and read back through the local stack
        stack.dynamodb.put_item(TableName=stack.names.results_table, Item=item)
        stored = stack.dynamodb.get_item(
            TableName=stack.names.results_table,
            Key={"photo": item["photo"], "version": item["version"]})
        built = Item(DynamoType(item["photo"]), DynamoType(item["version"]), item)
        converted = {name: value.to_regular_json() for name, value in built.attrs.items()}
        assert DynamoType.to_regular_json is not moto_s_own
    # then it reads back whole, and the stack's conversion gives exactly moto's own
    assert stored["Item"] == item
    assert converted == {name: moto_s_own(value) for name, value in built.attrs.items()}


def test_the_interpreter_s_state_copies_are_whole_and_independent() -> None:
    # given state data as the interpreter holds it, with a nested finding, a shared
    # sub-tree, and a value pickle cannot take (a local function)
    box = {"Left": 0.25, "Top": 0.5}
    state = {"text": {"TextDetections": [{"DetectedText": "3631", "Confidence": 99.5,
                                          "Geometry": {"BoundingBox": box}}]},
             "same_box": box, "flags": [True, None, 7, "é"]}
    def local_function() -> None:
        return None

    with_function = {"state": state, "function": local_function}

    # when they are copied as the local stack copies them
    copied = state_data_copy(state)
    copied_with_function = state_data_copy(with_function)

    # then the copies are equal, share no container with the original, keep what was
    # shared shared, and what pickle refuses is copied as deepcopy copies it
    assert copied == state
    assert copied["text"] is not state["text"]
    assert copied["text"]["TextDetections"][0]["Geometry"]["BoundingBox"] is not box
    assert copied["same_box"] is copied["text"]["TextDetections"][0]["Geometry"]["BoundingBox"]
    copied["flags"].append("changed")
    assert state["flags"] == [True, None, 7, "é"]
    assert copied_with_function["state"] == state
    assert copied_with_function["state"] is not state
    assert copied_with_function["function"] is local_function  # deepcopy keeps functions


def test_a_message_past_the_queue_s_retention_period_is_not_received(
        settings: Settings, rekognition: ScriptedRekognition) -> None:
    from moto.sqs.models import SQSBackend, sqs_backends

    moto_s_own = SQSBackend.is_message_valid_based_on_retention_period
    with local_stack(settings=settings, backend=rekognition) as stack:
        backend = sqs_backends[ACCOUNT][REGION]
        queue = backend.get_queue(stack.names.photo_queue)
        # given two queued messages, one sent longer ago than the queue keeps messages
        stack.sqs.send_message(QueueUrl=stack.photo_queue_url, MessageBody="fresh")
        stack.sqs.send_message(QueueUrl=stack.photo_queue_url, MessageBody="expired")
        messages: list[Any] = list(queue._messages)
        fresh, expired = messages
        retention_seconds = int(queue.attributes["MessageRetentionPeriod"])
        expired.sent_timestamp -= (retention_seconds + 60) * 1000
        # when the stack's check and moto's own judge them, and the queue is read
        judged = [(SQSBackend.is_message_valid_based_on_retention_period(
                       backend, queue.name, message),
                   moto_s_own(backend, queue.name, message)) for message in (fresh, expired)]
        received = stack.sqs.receive_message(QueueUrl=stack.photo_queue_url,
                                             MaxNumberOfMessages=10)
    # then both judge alike, and only the fresh message is received
    assert judged == [(True, True), (False, False)]
    assert [message["Body"] for message in received["Messages"]] == ["fresh"]


def test_an_express_execution_s_history_names_each_state_without_its_data(
        stack: LocalStack, rekognition: ScriptedRekognition) -> None:
    from unittest import mock

    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    # given a registered runner's photo (an Express execution's history cannot be read
    # through the API, on AWS or moto: the events are seen as the interpreter adds them)
    register(stack, "3631,M,18-39,Ana")
    rekognition.script("history.jpg", **CLEAN_MALE)
    event = stack.put_photo("history.jpg", make_jpeg())
    # when the state machine checks it
    with mock.patch.object(EventManager, "add_event", autospec=True,
                           side_effect=EventManager.add_event) as add_event:
        execution = stack.start_sync(event)
    details = [call.kwargs.get("event_details") or {} for call in add_event.call_args_list]
    # then it recorded its verdict, and each state it went through was entered and exited,
    # in order, with no copy of the state's data in those events
    assert execution["status"] == "SUCCEEDED"
    entered = [d["stateEnteredEventDetails"] for d in details if "stateEnteredEventDetails" in d]
    exited = [d["stateExitedEventDetails"] for d in details if "stateExitedEventDetails" in d]
    path = ["CheckImage", "LookupPreviousResult", "WasCheckedBefore", "IsImageAcceptable",
            "Moderate", "IsContentAcceptable", "ReadBibs", "AnyBibFound", "AnalyzeFaces",
            "Decide", "RecordResult", "Checked"]
    assert [entry["name"] for entry in entered] == path
    assert [entry["name"] for entry in exited] == path
    assert not any("input" in entry for entry in entered)
    assert not any("output" in entry for entry in exited)
    assert stack.result_item(key="history.jpg",
                             version=event["detail"]["object"]["version-id"]) is not None


def test_the_interpreter_s_dynamodb_calls_answer_as_moto_answers_them_over_http(
        stack: LocalStack) -> None:
    from unittest import mock

    from botocore.exceptions import ClientError
    from moto.core.botocore_stubber import BotocoreStubber
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_dynamodb,
    )

    # given the client the interpreter's DynamoDB Tasks use, and a result to record
    interpreter_client = state_task_service_dynamodb.boto_client_for(
        region=REGION, service="dynamodb")
    table = stack.names.results_table
    item = {"photo": {"S": "bucket/x.jpg"}, "version": {"S": "v1"},
            "verdict": {"S": "PASS"}, "evidence": {"M": {"bibs": {"L": [{"N": "3631"}]}}}}
    key = {"photo": item["photo"], "version": item["version"]}
    # when it records the result twice with RecordResult's condition, and reads it back,
    # with moto's HTTP stubber refusing any request
    with mock.patch.object(BotocoreStubber, "process_request",
                           side_effect=AssertionError("went through HTTP")):
        interpreter_client.put_item(TableName=table, Item=item,
                                    ConditionExpression="attribute_not_exists(photo)")
        with pytest.raises(ClientError) as repeated:
            interpreter_client.put_item(TableName=table, Item=item,
                                        ConditionExpression="attribute_not_exists(photo)")
        read = interpreter_client.get_item(TableName=table, Key=key)
        missing = interpreter_client.get_item(TableName=table,
                                              Key={**key, "version": {"S": "v2"}})
    # then it answered in-process as moto over HTTP answers the stack's own client
    assert repeated.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert repeated.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    over_http = stack.dynamodb.get_item(TableName=table, Key=key)
    assert read["Item"] == over_http["Item"] == item
    assert "Item" not in missing


def test_what_a_run_has_delivered_or_deleted_is_not_kept_in_memory(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    shard = dynamodb_backends[ACCOUNT][REGION].get_table(stack.names.results_table).stream_shard
    assert shard is not None
    first_number = shard.starting_sequence_number
    delivered_numbers: list[int] = []
    original_invoke = stack._invoke

    def invoke(module: str, event: dict[str, Any]) -> dict[str, Any]:
        if module == FOLLOW_UP:
            delivered_numbers.extend(int(record["dynamodb"]["SequenceNumber"])
                                     for record in event["Records"])
        return original_invoke(module, event)

    stack._invoke = invoke  # type: ignore[method-assign]
    # given three photos checked one after another, each settling before the next
    for index in range(3):
        rekognition.script(f"runner-{index}.jpg", **CLEAN_MALE)
        _, record = check(stack, f"runner-{index}.jpg", make_jpeg(1600, 1200))
        assert record["verdict"] == "PASS"
        # then the results stream keeps none of the records its reader was handed, and
        # the streams backend none of the iterators read from
        assert shard.items == []
        assert dynamodbstreams_backends[ACCOUNT][REGION].shard_iterators == {}
    # and every record was handed over once, numbered in order from the shard's first
    # number on, as if nothing had been dropped
    assert delivered_numbers == list(range(first_number, first_number + len(delivered_numbers)))
    assert len(delivered_numbers) >= 3
    assert shard.starting_sequence_number == first_number + len(delivered_numbers)
    # and moto lists none of them for its dashboard; S3's keys only, which its reset closes
    from moto.dynamodb.models.table import StreamRecord
    from moto.s3.models import FakeKey

    assert StreamRecord.instances_tracked == []  # type: ignore[attr-defined]
    assert len(FakeKey.instances_tracked) >= 3  # type: ignore[attr-defined]


def test_a_delete_waits_while_a_receive_walks_moto_s_queue(stack: LocalStack) -> None:
    from moto.sqs.models import sqs_backends

    backend = sqs_backends[ACCOUNT][REGION]
    queue_name = stack.photo_queue_url.rsplit("/", 1)[-1]
    # given a message in flight and another waiting
    for body in ("in flight", "waiting"):
        stack.sqs.send_message(QueueUrl=stack.photo_queue_url, MessageBody=body)
    in_flight = stack.sqs.receive_message(QueueUrl=stack.photo_queue_url)["Messages"][0]
    queue = backend.get_queue(queue_name)
    delete_done_during_the_walk: list[bool] = []

    def delete_in_flight() -> None:
        stack.sqs.delete_message(QueueUrl=stack.photo_queue_url,
                                 ReceiptHandle=in_flight["ReceiptHandle"])

    deleter = threading.Thread(target=delete_in_flight)

    class WalkedInFlight(set):  # type: ignore[type-arg]
        """Moto's in-flight set; while a receive walks it, another poller deletes."""

        def __iter__(self) -> Iterator[Any]:
            if not deleter.is_alive() and not delete_done_during_the_walk:
                deleter.start()
                deleter.join(timeout=1)
                delete_done_during_the_walk.append(not deleter.is_alive())
            return super().__iter__()

    queue._pending_messages = WalkedInFlight(queue._pending_messages)  # type: ignore[attr-defined]
    # when a receive walks the in-flight set while the delete is asked for
    received = stack.sqs.receive_message(QueueUrl=stack.photo_queue_url)["Messages"]
    deleter.join(timeout=30)
    # then the delete waited for the receive to finish, and both did their work
    assert delete_done_during_the_walk == [False]
    assert [message["Body"] for message in received] == ["waiting"]
    assert not deleter.is_alive()
    assert in_flight["MessageId"] not in {message.id for message in queue._messages}


def test_the_state_machine_is_parsed_once_and_a_bad_definition_is_still_refused(
    settings: Settings, rekognition: ScriptedRekognition
) -> None:
    from unittest import mock

    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    parse = AmazonStateLanguageParser.parse
    # given a count of moto's ASL parses, over a stack's set-up and two photos checked
    with mock.patch.object(AmazonStateLanguageParser, "parse",
                           side_effect=parse) as parses, local_stack(
            settings=settings, backend=rekognition) as stack:
        for index in range(2):
            rekognition.script(f"runner-{index}.jpg", **CLEAN_MALE)
            _, record = check(stack, f"runner-{index}.jpg", make_jpeg(1600, 1200))
            assert record["verdict"] == "REVIEW"  # no runner registered: unregistered bib
        # then racecheck's definition was parsed once: CreateStateMachine's validation and
        # every execution shared the parse
        assert parses.call_count == 1
        # and a definition moto cannot parse is still refused, every time (moto's
        # InvalidDefinition comes without its error code, with or without the shared parse)
        for _ in range(2):
            with pytest.raises(ClientError, match="ASLParserException"):
                stack.sfn.create_state_machine(
                    name="broken", definition='{"StartAt": "Nowhere", "States": {}}',
                    roleArn=f"arn:aws:iam::{ACCOUNT}:role/broken")
