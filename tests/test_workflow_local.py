"""End to end: the real statemachine/photo_check.asl.json, executed by moto's interpreter,
with the real handlers in-process and Rekognition answered by canned, model-validated
responses. One test per branch of the workflow."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from racecheck.core.registry import parse_runners_csv
from racecheck.core.runners_store import import_runners, plan_import, read_items, write_items
from racecheck.core.settings import Settings
from racecheck.local.environment import LocalStack, local_stack
from racecheck.local.rekognition import RekognitionError
from tests.conftest import load_fixture, make_jpeg

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
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits are real sleeps in moto's interpreter; record them instead of waiting.

    This reaches into moto: if an upgrade moves the retrier, this fixture fails loudly.
    """
    sleeps: list[float] = []

    class _Clock:
        @staticmethod
        def sleep(seconds: float) -> None:
            sleeps.append(seconds)

    assert hasattr(retrier_decl, "time"), "moto's retrier no longer sleeps via time.sleep"
    monkeypatch.setattr(retrier_decl, "time", _Clock)
    return sleeps


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


def check(stack: LocalStack, key: str, body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drop a photo in, run its execution to the end, return (execution, record)."""
    event = stack.put_photo(key, body)
    execution = stack.wait(stack.start(event))
    record = stack.result_item(key=key, version=event["detail"]["object"]["version-id"])
    assert record is not None, f"no record for {key}: {execution}"
    return execution, record


def count_records(stack: LocalStack) -> int:
    items = stack.dynamodb.scan(TableName=stack.names.results_table)["Items"]
    return sum(1 for item in items if not item["version"]["S"].startswith("bib#"))


def test_not_an_image_is_rejected_without_calling_rekognition(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given a text file dropped into the bucket
    # when it is checked
    execution, record = check(stack, "notes.txt", b"finish times, not a photo\n")
    # then it gets a REJECTED verdict and no Rekognition call was made
    assert execution["status"] == "SUCCEEDED"
    assert record["verdict"] == "REJECTED"
    assert record["reasons"] == ["NOT_AN_IMAGE"]
    assert sum(stack.rekognition.calls.values()) == 0


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
    # and the photo can be found by bib through the index
    by_bib = stack.dynamodb.query(
        TableName=stack.names.results_table,
        IndexName="by_bib",
        KeyConditionExpression="bib = :bib",
        ExpressionAttributeValues={":bib": {"S": "3631"}},
    )
    assert [item["key"]["S"] for item in by_bib["Items"]] == ["tom.jpg"]


def test_gender_mismatch_fails_and_alerts(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given bib 4242 registered F and a male face at 99.9% above it
    rekognition.script(
        "swap.jpg",
        DetectModerationLabels="detect_moderation_clean",
        DetectText="detect_text_bib_3631",
        DetectFaces="detect_faces_male_29_45",
    )
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


def test_throttled_rekognition_recovers_after_retries(
    stack: LocalStack, rekognition: ScriptedRekognition, retry_sleeps: list[float]
) -> None:
    # given DetectText throttled twice, then answering
    throttled_twice: list[str | RekognitionError] = [THROTTLED, THROTTLED,
                                                     "detect_text_bib_3631"]
    rekognition.script("busy.jpg", **{**CLEAN_MALE, "DetectText": throttled_twice})
    _, record = check(stack, "busy.jpg", make_jpeg())
    assert record["verdict"] == "PASS"
    assert rekognition.calls[("busy.jpg", "DetectText")] == 3
    # and the workflow backed off between attempts (full jitter: anywhere up to the cap)
    assert len(retry_sleeps) == 2
    assert all(0 <= sleep <= 16 for sleep in retry_sleeps)


def test_rekognition_failing_for_good_records_an_error(
    stack: LocalStack, rekognition: ScriptedRekognition, retry_sleeps: list[float]
) -> None:
    always_throttled: list[str | RekognitionError] = [THROTTLED]
    rekognition.script("doomed.jpg", **{**CLEAN_MALE, "DetectText": always_throttled})
    execution, record = check(stack, "doomed.jpg", make_jpeg())
    assert execution["status"] == "SUCCEEDED"
    assert record["verdict"] == "ERROR"
    assert record["reasons"] == ["ERROR:ThrottlingException"]
    # the first attempt and MaxAttempts (5) retries, with a wait before each retry
    assert rekognition.calls[("doomed.jpg", "DetectText")] == 6
    assert len(retry_sleeps) == 5


def test_unexpected_handler_error_records_an_error(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    rekognition.script(
        "denied.jpg",
        DetectModerationLabels=[RekognitionError("AccessDeniedException", "not allowed")],
    )
    _, record = check(stack, "denied.jpg", make_jpeg())
    assert record["verdict"] == "ERROR"
    assert record["reasons"] == ["ERROR:AccessDeniedException"]


def test_same_event_three_times_gives_one_result_and_one_alert(
    stack: LocalStack, rekognition: ScriptedRekognition
) -> None:
    # given a photo that earns an alert, and its event delivered three times at once
    register(stack, "3631,F,18-39,Ana")
    rekognition.script("repeat.jpg", **CLEAN_MALE)
    event = stack.put_photo("repeat.jpg", make_jpeg())
    executions = [stack.start(event) for _ in range(3)]
    statuses = [stack.wait(arn)["status"] for arn in executions]
    # then every execution ends well, one result is stored and one alert sent
    assert statuses == ["SUCCEEDED"] * 3
    assert count_records(stack) == 1
    assert len(stack.drain_alerts()) == 1
    # and a fourth delivery later stops at the lookup without calling Rekognition again
    calls_before = sum(stack.rekognition.calls.values())
    assert stack.wait(stack.start(event))["status"] == "SUCCEEDED"
    assert sum(stack.rekognition.calls.values()) == calls_before


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
    assert stack.wait(stack.start(event))["status"] == "SUCCEEDED"
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
    assert len([a for a in alerts if a["attributes"]["alert_type"] == "PHOTO"]) == 3
