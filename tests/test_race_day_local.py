"""Race day, locally: a few hundred photos through the queue, with Rekognition throttling 30% of
calls, consumers dying after the record is written and DynamoDB answering 500 after a write.

Every photo must end with exactly one verdict, every alert go out exactly once, and every
runner's counters count each photo once.
"""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter, defaultdict
from typing import Any

from racecheck.core.records import from_attribute_values
from racecheck.core.registry import parse_runners_csv
from racecheck.core.runners_store import import_runners
from racecheck.core.settings import Settings
from racecheck.local.environment import CONSUMER, LocalStack, local_stack
from racecheck.local.rekognition import RekognitionError
from tests.conftest import load_fixture, make_jpeg

PHOTOS = 200
RUNNERS = 40
SWAPPED = {"1003", "1011", "1027"}  # someone of the other gender runs on these bibs
UNREGISTERED = ["9901", "9902"]
THROTTLE_SHARE = 0.3


class RaceDay:
    """Rekognition for a race: one bib and its wearer's face per photo, 30% of calls throttled."""

    def __init__(self, plan: dict[str, tuple[str, str]], seed: int = 7) -> None:
        self.plan = plan  # key -> (bib, gender of the face)
        self.random = random.Random(seed)
        self.throttled = 0

    def __call__(self, operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
        if self.random.random() < THROTTLE_SHARE:
            self.throttled += 1
            raise RekognitionError("ThrottlingException", "Rate exceeded")
        bib, gender = self.plan[params["Image"]["S3Object"]["Name"]]
        if operation == "DetectModerationLabels":
            return load_fixture("rekognition/detect_moderation_clean.json")
        if operation == "DetectText":
            text = load_fixture("rekognition/detect_text_bib_3631.json")
            for detection in text["TextDetections"]:
                detection["DetectedText"] = detection["DetectedText"].replace("3631", bib)
            return text
        faces = load_fixture("rekognition/detect_faces_male_29_45.json")
        faces["FaceDetails"][0]["Gender"] = {"Value": gender, "Confidence": 99.9}
        return faces


def race(seed: int = 11) -> tuple[str, dict[str, tuple[str, str]]]:
    chooser = random.Random(seed)
    genders = {str(1000 + n): chooser.choice("MF") for n in range(RUNNERS)}
    csv = "bib,gender,age_category,name\n" + "".join(
        f"{bib},{gender},18-49,Runner {bib}\n" for bib, gender in genders.items())
    plan = {}
    for index in range(PHOTOS):
        bib = chooser.choice([*genders, *UNREGISTERED])
        registered = genders.get(bib, chooser.choice("MF"))
        seen = {"M": "F", "F": "M"}[registered] if bib in SWAPPED else registered
        plan[f"km{index % 42:02d}/photo-{index:03d}.jpg"] = (bib, {"M": "Male",
                                                                  "F": "Female"}[seen])
    return csv, plan


def scan(stack: LocalStack, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in stack.dynamodb.get_paginator("scan").paginate(TableName=table):
        items += [from_attribute_values(item) for item in page["Items"]]
    return items


def test_a_throttled_race_day_with_restarts_records_everything_once(
        settings: Settings, retry_sleeps: list[float]) -> None:
    csv, plan = race()
    backend = RaceDay(plan)
    crashed: set[str] = set()

    def crash_after_some_runs(consumer: Any) -> Any:
        def invoke(event: dict[str, Any], context: Any) -> Any:
            response = consumer(event, context)
            key = json.loads(event["Records"][0]["body"])["detail"]["object"]["key"]
            if (not response["batchItemFailures"] and key not in crashed
                    and zlib.crc32(key.encode()) % 7 == 0):
                crashed.add(key)  # the run recorded its verdict; the consumer then died
                raise TimeoutError("Task timed out")
            return response

        return invoke

    with local_stack(settings=settings, backend=backend) as stack:
        stack.handlers[CONSUMER] = crash_after_some_runs(stack.handlers[CONSUMER])
        import_runners(parse_runners_csv(csv), table_name=stack.names.runners_table,
                       dynamodb_client=stack.dynamodb)
        for key in plan:
            stack.enqueue(stack.put_photo(key, make_jpeg(480, 360, quality=60)))
        deliveries = stack.settle()
        records = scan(stack, stack.names.results_table)
        evidence = {item["bib"]: item for item in scan(stack, stack.names.evidence_table)}
        alerts = stack.drain_alerts()
        stream_failures = list(stack.stream_failures)

    photos = [r for r in records if not str(r["version"]).startswith("bib#")]
    index_items = [r for r in records if str(r["version"]).startswith("bib#")]
    # the storm really happened: throttled calls, photos sent back to the queue, restarts
    assert backend.throttled > 100
    assert sum(1 for d in deliveries if d.receive_count > 1) > 10
    assert len(crashed) > 10
    # every photo has exactly one record, and none gave up
    assert sorted(r["key"] for r in photos) == sorted(plan)
    assert Counter(r["verdict"] for r in photos).keys() <= {"PASS", "REVIEW", "FAIL"}
    assert stream_failures == []
    # one by_bib entry per photo
    assert sorted(item["key"] for item in index_items) == sorted(plan)
    # every FAIL alerted once, nothing else alerted per photo (REVIEWs go to the digest)
    photo_alerts = Counter(alert["message"].split("\n")[0] for alert in alerts
                           if alert["attributes"]["alert_type"] == "PHOTO")
    failed = [r for r in photos if r["verdict"] == "FAIL"]
    assert failed and len(photo_alerts) == len(failed)
    assert set(photo_alerts.values()) == {1}
    # each runner's counters count each of their photos once
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for record in photos:
        for entry in record["evidence"]:
            if entry.get("registered"):
                expected[entry["bib"]][entry["outcome"]] += 1
    for bib, outcomes in expected.items():
        assert evidence[bib]["photos_seen"] == sum(outcomes.values()), bib
        assert evidence[bib]["inconsistent"] == outcomes["inconsistent"], bib
        assert evidence[bib]["consistent"] == outcomes["consistent"], bib
    # and each swapped bib seen enough was reported once as a suspect, nobody else
    suspects = Counter(alert["attributes"]["bib"] for alert in alerts
                       if alert["attributes"]["alert_type"] == "SUSPECT")
    should_be = {bib for bib, outcomes in expected.items()
                 if outcomes["inconsistent"] >= settings.suspect_min_inconsistent
                 and outcomes["inconsistent"] > settings.suspect_ratio * outcomes["consistent"]}
    assert should_be and should_be <= SWAPPED
    assert suspects == Counter(dict.fromkeys(should_be, 1))
