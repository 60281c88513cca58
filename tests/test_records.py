"""What Decide hands to the state machine: DynamoDB items and alerts."""

from __future__ import annotations

import json

from racecheck.core.moderation import assess_moderation, top_level_category
from racecheck.core.records import (
    alert_for,
    from_attribute_values,
    to_attribute_values,
)
from racecheck.core.settings import Settings
from tests.conftest import load_fixture


def test_items_round_trip_through_dynamodb_attribute_values() -> None:
    item = {"photo": "b/k", "confidence": 97.25, "count": 3, "flags": [True, None],
            "box": {"Left": 0.125}}
    values = to_attribute_values(item)
    assert values["confidence"] == {"N": "97.25"}
    assert from_attribute_values(values) == item


def test_alert_subjects_stay_within_the_sns_limit() -> None:
    alert = alert_for(photo={"bucket": "b", "key": "k.jpg", "version": "1"}, verdict="REVIEW",
                      reasons=["AGE_OUTSIDE_CATEGORY"] * 10, summary="s",
                      links=[{"bib": str(n)} for n in range(30)])
    assert len(alert["subject"]) < 100
    assert alert["subject"].isascii() and alert["subject"].endswith("...")
    assert json.loads(alert["reasons_json"]) == ["AGE_OUTSIDE_CATEGORY"] * 10


def test_moderation_blocks_by_top_level_category(settings: Settings) -> None:
    response = load_fixture("rekognition/detect_moderation_explicit.json")
    assessment = assess_moderation(response, settings)
    assert assessment["accepted"] is False
    assert assessment["reasons"] == ["MODERATION:Explicit"]
    assert {label["Category"] for label in assessment["labels"]} == {"Explicit"}


def test_moderation_ignores_labels_below_the_threshold(settings: Settings) -> None:
    response = {"ModerationLabels": [{"Name": "Violence", "ParentName": "", "Confidence": 10.0}]}
    assert assess_moderation(response, settings)["accepted"] is True


def test_a_parent_loop_in_a_malformed_response_does_not_hang() -> None:
    parents = {"A": "B", "B": "A"}
    assert top_level_category({"Name": "A", "ParentName": "B"}, parents) in ("A", "B")


def test_alerts_say_registered_x_plainly_for_a_non_binary_runner(settings: Settings) -> None:
    from dataclasses import replace

    from racecheck.core.follow_up import suspect_alert
    from racecheck.core.records import build_record
    from racecheck.core.registry import Runner
    from tests.test_rules import bib, decide, face

    # given a runner registered X 60-69 whose bib is worn by someone estimated 22-30
    sam = Runner("12", "X", 60, 69, "60-69", "Sam Lee")
    decision = decide([bib("12", 600)], [face(600, "Female", 99.9, 22, 30)], [sam])
    # when Decide shapes the record (alerting each REVIEW photo), and later the suspect alert
    record = build_record(
        photo={"photo": "b/k.jpg", "version": "v1", "bucket": "b", "key": "k.jpg"},
        decision=decision, image={"accepted": True}, moderation=None, text=None, faces=None,
        settings=replace(settings, review_alerts="each"), recorded_at="2026-11-22T08:00:00Z",
        execution="e")
    # then each names the registration as X, and the photo alert says gender was not compared
    message = record["alert"]["message"]
    assert ("Bib 12: registered X 60-69 (Sam Lee); estimated F 99.9% age 22-30: "
            "AGE_OUTSIDE_CATEGORY (gender not compared: registered X)") in message
    assert "(registered X, 60-69)" in message  # the decision's summary line
    (entry,) = record["evidence"]
    suspect = suspect_alert({"bib": "12", "inconsistent": 2, "consistent": 0,
                             "registered": entry["registered"]})
    assert suspect["message"].startswith("racecheck SUSPECT: bib 12, Sam Lee (X 60-69).")
