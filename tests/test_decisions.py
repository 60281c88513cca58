"""Decisions on flagged photos: the history, and how a runner's evidence follows them."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from racecheck.core.decisions import (
    CONFIRMED,
    DISMISSED,
    AlreadyDecided,
    NotFlagged,
    apply_to_evidence,
    check_decision,
    current_state,
    decision_entry,
    decision_evidence_update,
    runner_status,
    transition_plans,
)
from racecheck.core.follow_up import (
    ALERT,
    ALERT_AGAIN,
    CLEAR,
    RESUME,
    decision_change_to_follow,
    follow_up_decision,
    suspect_action,
)
from racecheck.core.records import alert_for, from_attribute_values, to_attribute_values
from racecheck.core.review_links import ReviewLinks, console_object_url
from racecheck.core.settings import Settings
from racecheck.local.environment import LocalNames, create_tables

PHOTO = "ingest/km 30/IMG_0412.jpg"
NAMES = LocalNames()


def flagged_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "photo": PHOTO, "version": "v1", "bucket": "ingest", "key": "km 30/IMG_0412.jpg",
        "verdict": "FAIL", "reasons": ["GENDER_MISMATCH"], "recorded_at": "2026-11-22T08:00:00Z",
        "evidence": [
            {"bib": "3631", "outcome": "inconsistent",
             "reasons": ["GENDER_MISMATCH", "AGE_OUTSIDE_CATEGORY"],
             "registered": {"gender": "F", "category": "18-39"}},
            {"bib": "77", "outcome": "consistent", "reasons": [],
             "registered": {"gender": "M", "category": "70+"}},
            {"bib": "9031", "outcome": "inconsistent", "reasons": ["GENDER_MISMATCH"],
             "registered": None},
        ],
    }
    record.update(changes)
    return record


def counted_evidence() -> dict[str, Any]:
    """Runner 3631 after the follow-up counted this photo and one other as inconsistent."""
    return {"bib": "3631", "photos_seen": 3, "consistent": 1, "inconsistent": 2,
            "photos": sorted([PHOTO, "ingest/a.jpg", "ingest/b.jpg"]),
            "inconsistent_photos": sorted([PHOTO, "ingest/a.jpg"]),
            "reason_GENDER_MISMATCH": 2, "reason_AGE_OUTSIDE_CATEGORY": 1, "alerted": True}


def stored(item: dict[str, Any]) -> dict[str, Any]:
    """The item as DynamoDB holds it: the photo lists are string sets there."""
    return to_attribute_values({name: set(value) if name.endswith("photos") else value
                                for name, value in item.items()})


# ------------------------------------------------------------------------ history


def test_the_current_state_is_the_last_entrys_and_undo_returns_to_undecided() -> None:
    entries = [decision_entry(action, by="ana", at=f"2026-11-22T08:0{i}:00Z")
               for i, action in enumerate(["dismiss", "confirm", "undo"])]
    assert [current_state(entries[:n]) for n in range(4)] == [None, DISMISSED, CONFIRMED, None]


def test_a_decision_on_a_photo_never_flagged_or_in_that_state_already_is_refused() -> None:
    with pytest.raises(NotFlagged, match="never flagged \\(verdict PASS\\)"):
        check_decision(flagged_record(verdict="PASS"), "dismiss")
    decided = flagged_record(decisions=[decision_entry("dismiss", by="ana", at="t1")])
    with pytest.raises(AlreadyDecided, match="already dismissed by ana at t1"):
        check_decision(decided, "dismiss")
    with pytest.raises(AlreadyDecided, match="already undecided"):
        check_decision(flagged_record(), "undo")
    check_decision(decided, "confirm")  # changing one's mind is a new decision


def test_notes_are_trimmed_and_bounded_and_an_unknown_action_is_an_error() -> None:
    assert "note" not in decision_entry("confirm", by="a", at="t", note="   ")
    assert len(decision_entry("confirm", by="a", at="t", note="x" * 5000)["note"]) == 2000
    with pytest.raises(ValueError, match="unknown action"):
        decision_entry("delete", by="a", at="t")


# ------------------------------------------------------------------------ evidence


def test_only_registered_runners_that_counted_the_photo_as_inconsistent_change() -> None:
    plans = transition_plans(flagged_record(), None, DISMISSED)
    assert [plan.bib for plan in plans] == ["3631"]
    assert transition_plans(flagged_record(), DISMISSED, DISMISSED) == []


def test_dismissing_withdraws_the_photo_once_and_undoing_restores_it() -> None:
    # given a runner with two inconsistent photos, one of them this one
    item = counted_evidence()
    before = copy.deepcopy(item)
    dismiss = transition_plans(flagged_record(), None, DISMISSED)[0]
    # when the photo is dismissed, twice (a retried stream record)
    assert apply_to_evidence(item, dismiss) is True
    assert apply_to_evidence(item, dismiss) is False
    # then it counts once less as inconsistent, with its reasons, and is listed as dismissed
    assert item["inconsistent"] == 1 and item["consistent"] == 1
    assert item["reason_GENDER_MISMATCH"] == 1 and item["reason_AGE_OUTSIDE_CATEGORY"] == 0
    assert item["inconsistent_photos"] == ["ingest/a.jpg"]
    assert item["dismissed_photos"] == [PHOTO]
    # when the dismissal is undone
    assert apply_to_evidence(item, transition_plans(flagged_record(), DISMISSED, None)[0])
    # then the runner is exactly as before
    assert item == before


def test_confirming_marks_the_runner_confirmed_and_keeps_the_photo_inconsistent(
        settings: Settings) -> None:
    item = counted_evidence()
    assert apply_to_evidence(item, transition_plans(flagged_record(), None, CONFIRMED)[0])
    assert item["inconsistent"] == 2 and item["confirmed_photos"] == [PHOTO]
    assert runner_status(item, settings) == "confirmed"
    # a confirmed photo dismissed later stops counting and no longer confirms the runner
    assert apply_to_evidence(item, transition_plans(flagged_record(), CONFIRMED, DISMISSED)[0])
    assert item["inconsistent"] == 1 and "confirmed_photos" not in item
    assert runner_status(item, settings) == "cleared"


def test_an_alerted_runner_below_the_threshold_is_cleared_not_alerted(settings: Settings) -> None:
    item = counted_evidence()
    item["consistent"] = 0
    assert runner_status(item, settings) == "suspect"
    apply_to_evidence(item, transition_plans(flagged_record(), None, DISMISSED)[0])
    assert runner_status(item, settings) == "cleared"
    assert runner_status({**item, "alerted": False}, settings) is None


@pytest.fixture
def evidence_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb")
        create_tables(client, NAMES)
        yield client


STATES = (None, CONFIRMED, DISMISSED)


@pytest.mark.parametrize(("old", "new"), [pair for pair in itertools.product(STATES, STATES)
                                          if pair[0] != pair[1]])
def test_dynamodb_applies_each_change_as_the_local_mirror_does(
        evidence_table: Any, old: str | None, new: str | None) -> None:
    # given the runner in the old state for this photo, in DynamoDB and as a plain item
    item = counted_evidence()
    if old is not None:
        apply_to_evidence(item, transition_plans(flagged_record(), None, old)[0])
    evidence_table.put_item(TableName=NAMES.evidence_table, Item=stored(item))
    plan = transition_plans(flagged_record(), old, new)[0]
    # when the change is applied twice to each (DynamoDB refuses the repeat by its condition)
    evidence_table.update_item(TableName=NAMES.evidence_table, **decision_evidence_update(plan))
    with pytest.raises(evidence_table.exceptions.ConditionalCheckFailedException):
        evidence_table.update_item(TableName=NAMES.evidence_table,
                                   **decision_evidence_update(plan))
    for _ in range(2):
        apply_to_evidence(item, plan)
    # then both hold the same runner, changed once
    assert from_attribute_values(evidence_table.get_item(
        TableName=NAMES.evidence_table, Key={"bib": {"S": "3631"}})["Item"]) == item


# --------------------------------------------------------------- the results stream


def stream_change(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    change: dict[str, Any] = {"NewImage": to_attribute_values(new)}
    if old is not None:
        change["OldImage"] = to_attribute_values(old)
    return {"eventName": "MODIFY" if old is not None else "INSERT", "dynamodb": change}


def test_the_results_stream_hands_over_changes_of_state_only() -> None:
    record = flagged_record()
    dismissed = flagged_record(decisions=[decision_entry("dismiss", by="a", at="t1")])
    twice = flagged_record(decisions=[*dismissed["decisions"],
                                      decision_entry("dismiss", by="b", at="t2")])
    followed = decision_change_to_follow(stream_change(record, dismissed))
    assert followed is not None and followed[1:] == (None, DISMISSED)
    # a second reviewer saying the same changes no evidence; a new verdict is not a decision
    assert decision_change_to_follow(stream_change(dismissed, twice)) is None
    assert decision_change_to_follow(stream_change(None, dismissed)) is None
    assert decision_change_to_follow(stream_change(
        record, {**dismissed, "recorded_at": "2026-11-22T09:00:00Z"})) is None


def test_the_follow_up_changes_each_runner_once_per_decision(evidence_table: Any) -> None:
    evidence_table.put_item(TableName=NAMES.evidence_table, Item=stored(counted_evidence()))
    record = flagged_record()
    changed = [follow_up_decision(record, None, DISMISSED, dynamodb=evidence_table,
                                  evidence_table=NAMES.evidence_table) for _ in range(2)]
    assert changed == [1, 0]
    runner = evidence_table.get_item(TableName=NAMES.evidence_table,
                                     Key={"bib": {"S": "3631"}})["Item"]
    assert runner["inconsistent"] == {"N": "1"}


# --------------------------------------------------------------- suspects after decisions


def test_suspect_actions_follow_alerts_clearing_and_new_evidence(settings: Settings) -> None:
    over = {"bib": "1", "inconsistent": 2, "consistent": 0,
            "inconsistent_photos": ["b/a.jpg", "b/b.jpg"]}
    assert suspect_action(over, settings) == ALERT
    alerted = {**over, "alerted": True, "known_photos": ["b/a.jpg", "b/b.jpg"]}
    assert suspect_action(alerted, settings) is None  # alerted once
    below = {**alerted, "inconsistent": 1, "inconsistent_photos": ["b/b.jpg"],
             "dismissed_photos": ["b/a.jpg"]}
    assert suspect_action(below, settings) == CLEAR
    cleared = {**below, "cleared_at": "t"}
    assert suspect_action(cleared, settings) is None
    # back over the threshold by an undone dismissal: nothing new to tell
    assert suspect_action({**alerted, "cleared_at": "t"}, settings) == RESUME
    # back over it with a photo nobody was told about
    again = {**cleared, "inconsistent": 2, "inconsistent_photos": ["b/b.jpg", "b/c.jpg"]}
    assert suspect_action(again, settings) == ALERT_AGAIN


# ------------------------------------------------------------------------ links


def test_console_links_are_region_aware_and_encode_the_whole_key() -> None:
    assert console_object_url(region="eu-west-1", bucket="race-photos",
                              key="km 30/Zoë+1.jpg") == (
        "https://console.aws.amazon.com/s3/object/race-photos?region=eu-west-1"
        "&bucketType=general&prefix=km%2030%2FZo%C3%AB%2B1.jpg")
    assert console_object_url(region="cn-north-1", bucket="b", key="k").startswith(
        "https://console.amazonaws.cn/s3/object/b?region=cn-north-1")


def test_a_photo_alert_names_the_console_link_and_the_review_command() -> None:
    links = ReviewLinks.from_env({"AWS_REGION": "eu-central-1",
                                  "RACECHECK_STACK_NAME": "Marathon2026"})
    alert = alert_for(photo={"bucket": "ingest", "key": "km 30/it's.jpg", "version": "v1"},
                      verdict="FAIL", reasons=["GENDER_MISMATCH"], summary="s", links=[],
                      review_links=links)
    lines = alert["message"].splitlines()
    assert lines[1] == ("  Open: https://console.aws.amazon.com/s3/object/ingest?"
                        "region=eu-central-1&bucketType=general&prefix=km%2030%2Fit%27s.jpg")
    # the command is quoted for a shell, and names the stack it was sent from
    assert lines[2] == ("  Review: racecheck review --stack Marathon2026 --photo "
                        "'s3://ingest/km 30/it'\"'\"'s.jpg'")


def test_a_local_run_names_its_folder_and_no_console() -> None:
    links = ReviewLinks.from_env({"AWS_REGION": "us-east-1", "RACECHECK_LOCAL_DIR": "out"})
    assert links.photo_lines("racecheck-local-ingest", "a b.jpg") == [
        "  Review: racecheck review --local out --photo 'a b.jpg'"]
    assert links.runner_line("3631") == (
        "Review all photos of bib 3631: racecheck review --local out --bib 3631")
