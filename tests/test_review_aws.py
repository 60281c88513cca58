"""The AWS path of the reviewer's loop, against the emulated stack (moto, real handlers).

Decisions are written by `racecheck decide` and the review page exactly as against AWS
(the reviewer's UpdateItem on the photo's record); the follow-up handlers then see them in
the results table's stream and move the runner's evidence.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from click.testing import CliRunner

from racecheck.cli import main
from racecheck.core.decisions import decision_entry, decision_item_update
from racecheck.core.records import from_attribute_values, to_attribute_values
from racecheck.core.settings import Settings
from racecheck.local.environment import LocalStack, local_stack
from racecheck.review_server import TOKEN_HEADER, create_app
from racecheck.review_sources import AwsReview, Filters
from tests.conftest import make_jpeg
from tests.test_workflow_local import CLEAN_MALE, ScriptedRekognition, check, register

BIB = "3631"


@pytest.fixture
def stack(settings: Settings, retry_sleeps: list[float]) -> Iterator[tuple[LocalStack, Any]]:
    """Runner 3631 registered F, and two photos of a man wearing the bib: a suspect."""
    rekognition = ScriptedRekognition()
    with local_stack(settings=settings, backend=rekognition) as running:
        register(running, f"{BIB},F,18-39,Ana")
        for key in ("km0.jpg", "km 5/km1.jpg"):
            rekognition.script(key, **CLEAN_MALE)
            check(running, key, make_jpeg(colour="#225566"))
        rekognition.script("pass.jpg", DetectModerationLabels="detect_moderation_clean",
                           DetectText="detect_text_nothing")
        check(running, "pass.jpg", make_jpeg())
        running.drain_alerts()
        yield running, rekognition


@pytest.fixture
def review(stack: tuple[LocalStack, Any], settings: Settings) -> AwsReview:
    running, _ = stack
    return AwsReview(results_table=running.names.results_table,
                     evidence_table=running.names.evidence_table,
                     bucket=running.names.bucket, settings=settings,
                     session=boto3.session.Session(region_name="us-east-1"))


def evidence(stack: LocalStack) -> dict[str, Any]:
    return from_attribute_values(stack.dynamodb.get_item(
        TableName=stack.names.evidence_table, Key={"bib": {"S": BIB}},
        ConsistentRead=True)["Item"])


def settle(stack: LocalStack) -> list[dict[str, Any]]:
    """Let the follow-ups read the streams; the alerts sent meanwhile."""
    while stack.pump_streams():
        pass
    return stack.drain_alerts()


def test_the_page_reads_the_tables_and_shows_photos_through_presigned_urls(
        review: AwsReview) -> None:
    # when the flagged photos are listed
    photos = review.photos(Filters())
    # then both FAIL photos are there (the PASS one is not), with their full records
    assert sorted(record["key"] for record in photos) == ["km 5/km1.jpg", "km0.jpg"]
    assert all(record["faces"] and record["evidence"] for record in photos)
    # and each image is a short-lived SigV4 URL of that very version of the photo
    url = urlparse(review.image_url(photos[0]) or "")
    query = parse_qs(url.query)
    assert url.scheme == "https" and query["X-Amz-Expires"] == ["900"]
    assert query["versionId"] == [photos[0]["version"]]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    # and filters narrow the list: by bib, time window, reason
    assert len(review.photos(Filters(bib=BIB))) == 2
    assert review.photos(Filters(since="2999-01-01T00:00:00.000Z")) == []
    assert review.photos(Filters(reason="BIB_UNREGISTERED")) == []


def test_a_dismissal_and_its_undo_move_the_evidence_and_clear_the_runner_quietly(
        stack: tuple[LocalStack, Any], review: AwsReview, settings: Settings) -> None:
    running, rekognition = stack
    assert evidence(running)["inconsistent"] == 2 and evidence(running)["alerted"] is True
    # when one of the two photos is dismissed, by the caller's STS identity
    record = review.decide("s3://racecheck-local-ingest/km0.jpg", "dismiss", "a jacket")
    alerts = settle(running)
    # then the record keeps its verdict and holds the decision: who, when, note
    assert record["verdict"] == "FAIL" and record["decision"] == "dismissed"
    (entry,) = record["decisions"]
    assert entry["by"].startswith("arn:aws:") and entry["note"] == "a jacket"
    # and the runner counts one inconsistent photo: cleared, with no message sent
    runner = evidence(running)
    assert runner["inconsistent"] == 1 and runner["dismissed_photos"] == [
        "racecheck-local-ingest/km0.jpg"]
    assert runner["cleared_at"] and alerts == []
    assert review.runner(BIB).evidence["status"] == "cleared"  # type: ignore[index]
    # when the dismissal is undone: back over the threshold, but nothing new to tell
    review.decide("km0.jpg", "undo")
    assert settle(running) == []
    runner = evidence(running)
    assert runner["inconsistent"] == 2 and "cleared_at" not in runner
    # when it is dismissed again and then a new photo of the bib disagrees
    review.decide("km0.jpg", "dismiss")
    settle(running)
    rekognition.script("km9.jpg", **CLEAN_MALE)
    check(running, "km9.jpg", make_jpeg(colour="#445566"))
    alerts = settle(running)
    # then the runner is alerted again, naming the new photo with the review command
    suspects = [alert for alert in alerts if alert["attributes"]["alert_type"] == "SUSPECT"]
    assert [alert["subject"] for alert in suspects] == ["racecheck SUSPECT again: bib 3631"]
    assert ("racecheck review --photo s3://racecheck-local-ingest/km9.jpg"
            in suspects[0]["message"])
    # and the history of the photo holds all three decisions, oldest first
    history = review.photo("km0.jpg")["decisions"]  # type: ignore[index]
    assert [step["action"] for step in history] == ["dismiss", "undo", "dismiss"]


def test_a_confirmed_photo_marks_the_runner_confirmed(
        stack: tuple[LocalStack, Any], review: AwsReview) -> None:
    running, _ = stack
    review.decide("km 5/km1.jpg", "confirm")
    settle(running)
    assert evidence(running)["confirmed_photos"] == ["racecheck-local-ingest/km 5/km1.jpg"]
    assert [(s["bib"], s["status"]) for s in review.suspects()] == [(BIB, "confirmed")]


def test_two_reviewers_deciding_at_once_are_both_kept(
        stack: tuple[LocalStack, Any], review: AwsReview, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    running, _ = stack
    ana, bo = review, AwsReview(results_table=review.results_table,
                                evidence_table=review.evidence_table, bucket=review.bucket,
                                settings=settings)
    ana.__dict__["reviewer"], bo.__dict__["reviewer"] = "arn:aws:iam::1:user/ana", (
        "arn:aws:iam::1:user/bo")
    # given both reviewers read the undecided photo before either writes
    both_read = threading.Barrier(2, timeout=10)
    # DynamoDB applies each write to an item atomically; moto's in-memory table does not,
    # so the two writes are taken one at a time here, in whichever order they come.
    one_at_a_time = threading.Lock()
    for source in (ana, bo):
        read, first = source.photo, threading.Event()

        def read_then_wait(ref: str, read: Any = read, first: threading.Event = first) -> Any:
            record = read(ref)
            if not first.is_set():
                first.set()
                both_read.wait()
            return record

        monkeypatch.setattr(source, "photo", read_then_wait)
        write = source.dynamodb.update_item

        def atomic(write: Any = write, **request: Any) -> Any:
            with one_at_a_time:
                return write(**request)

        monkeypatch.setattr(source.dynamodb, "update_item", atomic)
    # when Ana dismisses and Bo confirms at the same time
    errors: list[BaseException] = []

    def decide(source: AwsReview, action: str) -> None:
        try:
            source.decide("km0.jpg", action)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=decide, args=(ana, "dismiss")),
               threading.Thread(target=decide, args=(bo, "confirm"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # then neither write was lost: both are in the history, and the state is the last one's
    monkeypatch.undo()
    record = review.photo("km0.jpg")
    assert record is not None
    assert sorted(step["by"] for step in record["decisions"]) == [
        "arn:aws:iam::1:user/ana", "arn:aws:iam::1:user/bo"]
    last = record["decisions"][-1]["action"]
    assert record["decision"] == {"dismiss": "dismissed", "confirm": "confirmed"}[last]
    # and the evidence followed the final state once
    settle(running)
    runner = evidence(running)
    if last == "confirm":
        assert runner["inconsistent"] == 2 and runner["confirmed_photos"]
    else:
        assert runner["inconsistent"] == 1 and "confirmed_photos" not in runner


def test_the_condition_refuses_unknown_keys_and_photos_never_flagged(
        stack: tuple[LocalStack, Any]) -> None:
    running, _ = stack
    entry = decision_entry("dismiss", by="x", at="t")
    for key in ({"photo": "racecheck-local-ingest/nope.jpg", "version": "v"},
                next(from_attribute_values(item) for item in running.dynamodb.scan(
                    TableName=running.names.results_table)["Items"]
                    if item.get("verdict", {}).get("S") == "PASS")):
        with pytest.raises(running.dynamodb.exceptions.ConditionalCheckFailedException):
            running.dynamodb.update_item(TableName=running.names.results_table,
                                                  **decision_item_update(key, entry, seen=0))
    # and no item was created for the unknown key
    assert "Item" not in running.dynamodb.get_item(
        TableName=running.names.results_table,
        Key=to_attribute_values({"photo": "racecheck-local-ingest/nope.jpg", "version": "v"}))


@pytest.fixture
def outputs(stack: tuple[LocalStack, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    running, _ = stack
    monkeypatch.setattr("racecheck.cli._stack_outputs", lambda _name: {
        "ResultsTableName": running.names.results_table,
        "EvidenceTableName": running.names.evidence_table,
        "IngestBucketName": running.names.bucket})


@pytest.mark.usefixtures("outputs")
def test_decide_on_aws_records_and_explains_refusals(stack: tuple[LocalStack, Any]) -> None:
    running, _ = stack
    done = CliRunner().invoke(main, ["decide", "km0.jpg", "--confirm", "--note", "swap"])
    assert done.exit_code == 0, done.output
    assert "km0.jpg: confirmed by arn:aws:" in done.output and "verdict FAIL kept" in done.output
    again = CliRunner().invoke(main, ["decide", "km0.jpg", "--confirm"])
    assert again.exit_code == 0
    assert "km0.jpg is already confirmed by arn:aws:" in again.output
    unknown = CliRunner().invoke(main, ["decide", "s3://racecheck-local-ingest/no.jpg",
                                        "--dismiss"])
    assert unknown.exit_code == 2
    assert "no photo 's3://racecheck-local-ingest/no.jpg'" in unknown.output
    never = CliRunner().invoke(main, ["decide", "pass.jpg", "--dismiss"])
    assert never.exit_code == 2 and "was never flagged (verdict PASS)" in never.output
    # and the suspects list shows the decision once the follow-up has seen it
    settle(running)
    listed = CliRunner().invoke(main, ["suspects", "--table", running.names.evidence_table,
                                       "--format", "json"])
    (row,) = json.loads(listed.output)
    assert (row["bib"], row["status"], row["confirmed"]) == (BIB, "confirmed", 1)


@pytest.mark.usefixtures("outputs")
def test_decide_by_bib_on_aws_dismisses_each_photo_and_the_runner_is_cleared(
        stack: tuple[LocalStack, Any]) -> None:
    running, _ = stack
    done = CliRunner().invoke(main, ["decide", "--bib", BIB, "--dismiss", "--note", "jacket"])
    assert done.exit_code == 0, done.output
    assert done.output.count(": dismissed by arn:aws:") == 2
    assert f"bib {BIB}: 2 photo(s) decided" in done.output
    assert settle(running) == []  # cleared quietly
    runner = evidence(running)
    assert (runner["inconsistent"], len(runner["dismissed_photos"])) == (0, 2)
    assert runner.get("cleared_at")


@pytest.mark.usefixtures("outputs")
def test_export_writes_a_static_page_with_the_photos_copied_from_s3(tmp_path: Path) -> None:
    page = tmp_path / "share" / "bib.html"
    result = CliRunner().invoke(main, ["review", "--bib", BIB, "--export", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    assert text.count('class="card') == 2 and "X-Amz-" not in text
    assert len(list((tmp_path / "share" / "photos").glob("*.jpg"))) == 2


def test_the_served_page_decides_with_the_token_only(review: AwsReview) -> None:
    client = create_app(review, token="secret").test_client()
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count('class="card') == 2 and "X-Amz-Signature" in html
    assert "https://*.amazonaws.com" in page.headers["Content-Security-Policy"]
    body = {"ref": "racecheck-local-ingest/km0.jpg", "action": "dismiss"}
    refused = client.post("/api/decisions", json=body)
    assert refused.status_code == 403
    assert "decisions" not in (review.photo("km0.jpg") or {})
    done = client.post("/api/decisions", json=body, headers={TOKEN_HEADER: "secret"})
    assert done.status_code == 200 and done.json["decision"] == "dismissed"  # type: ignore[index]
