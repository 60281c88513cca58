"""The REVIEW digest: composing the message (pure) and the scheduled handler (Stubber)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY

from lambdas import digest as digest_handler
from lambdas import shared
from racecheck.core.digest import (
    MAX_LISTED_PHOTOS,
    compose_digest,
    digest_window,
    last_instant_before,
)
from racecheck.core.records import SUBJECT_LIMIT, to_attribute_values
from racecheck.core.review_links import ReviewLinks
from racecheck.core.settings import SETTINGS_ENV_VAR, Settings
from racecheck.local.environment import LocalNames, create_tables
from tests.conftest import LambdaContext, stubbed

BUCKET = "racecheck-ingest"
TABLE = "racecheck-results"
TOPIC = "arn:aws:sns:us-east-1:123456789012:racecheck-alerts"
START, END = "2026-11-22T07:54:00.000Z", "2026-11-22T08:54:00.000Z"
SNS_MESSAGE_LIMIT = 256 * 1024


def link(bib: str, findings: list[str]) -> dict[str, Any]:
    return {
        "bib": bib,
        "registered": {"gender": "M", "age_min": 60, "age_max": 69, "name": "Tom Becker"},
        "estimated": {"gender": "F", "gender_confidence": 95.5, "age_low": 23, "age_high": 38},
        "findings": findings,
    }


def review(key: str, reasons: list[str], *, recorded_at: str = "2026-11-22T08:10:00.000Z",
           summary: str = "", links: list[dict[str, Any]] | None = None,
           verdict: str = "REVIEW") -> dict[str, Any]:
    return {
        "photo": f"{BUCKET}/{key}", "version": f"v-{key}", "bucket": BUCKET, "key": key,
        "verdict": verdict, "reasons": reasons, "recorded_at": recorded_at,
        "summary": summary or f"REVIEW: {key} needs a look ({', '.join(reasons)}).",
        "links": links if links is not None else [],
    }


# ------------------------------------------------------------------------------ window


def test_given_an_hourly_event_when_windowed_then_it_ends_settle_minutes_before_it() -> None:
    # given a scheduled event at 09:00 and a 60-minute digest
    # when the window is derived
    start, end = digest_window("2026-11-22T09:00:00Z", minutes=60)
    # then it is the hour that closed 6 minutes earlier, in recorded_at's format
    assert (start, end) == ("2026-11-22T07:54:00.000Z", "2026-11-22T08:54:00.000Z")


def test_given_consecutive_runs_then_windows_tile_time_without_gap_or_overlap() -> None:
    # given three runs an hour apart, the second stamped a few seconds late
    times = ["2026-11-22T09:00:00Z", "2026-11-22T10:00:07Z", "2026-11-22T11:00:00Z"]
    # when each derives its window
    windows = [digest_window(time, minutes=60) for time in times]
    # then each starts exactly where the previous one ended
    for (_, previous_end), (next_start, _) in itertools.pairwise(windows):
        assert next_start == previous_end


def test_given_a_record_stamped_exactly_at_the_boundary_then_only_the_next_window_has_it() -> None:
    # given the upper bound used in the query's BETWEEN for the first window
    start, end = digest_window("2026-11-22T09:00:00Z", minutes=60)
    last = last_instant_before(end)
    on_boundary = end
    just_before = "2026-11-22T08:53:59.999Z"
    # then string order (DynamoDB's sort-key order) puts the boundary record out of it
    assert last == just_before
    assert start <= just_before <= last
    assert not on_boundary <= last
    next_start, _ = digest_window("2026-11-22T10:00:00Z", minutes=60)
    assert next_start <= on_boundary


def test_given_a_time_without_zone_when_windowed_then_it_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        digest_window("2026-11-22T09:00:00", minutes=60)


# ------------------------------------------------------------------------------ compose


def test_given_no_review_record_when_composed_then_there_is_nothing_to_send() -> None:
    # given an empty window, then one with only photos that were already alerted or passed
    assert compose_digest([], window_start=START, window_end=END) is None
    others = [review("a.jpg", ["GENDER_MISMATCH"], verdict="FAIL"),
              review("b.jpg", ["NO_BIB"], verdict="PASS")]
    assert compose_digest(others, window_start=START, window_end=END) is None


def test_given_review_records_when_composed_then_each_photo_is_listed_under_its_main_reason(
) -> None:
    # given three REVIEW photos with different reasons, one with a consistent second bib
    records = [
        review("km 30/unregistered.jpg", ["BIB_UNREGISTERED"],
               recorded_at="2026-11-22T08:01:00.000Z",
               summary="REVIEW: bib 9999 is not in the registration list."),
        review("finish/swap.jpg", ["GENDER_MISMATCH", "LOW_CONFIDENCE", "FACE_SUNGLASSES"],
               recorded_at="2026-11-22T08:30:00.000Z",
               summary="REVIEW: bib 5078 (registered M, 60-69), face estimated F.",
               links=[link("5078", ["GENDER_MISMATCH"]), link("1200", [])]),
        review("finish/mule.jpg", ["ONE_RUNNER_SEVERAL_BIBS", "BIB_UNREGISTERED"],
               recorded_at="2026-11-22T08:05:00.000Z"),
    ]

    # when the digest is composed
    digest = compose_digest(records, window_start=START, window_end=END)

    # then one message lists them all, most telling reason first, each photo once
    assert digest is not None
    assert digest["attributes"] == {"alert_type": "DIGEST", "verdict": "REVIEW", "count": "3"}
    subject = digest["subject"]
    assert subject == "racecheck REVIEW digest: 3 photos, 2026-11-22 07:54-08:54 UTC"
    assert len(subject) < 100 and subject.isascii() and "\n" not in subject
    message = digest["message"]
    assert message.count("s3://") == 3
    headings = ["== GENDER_MISMATCH (1 photo) ==", "== ONE_RUNNER_SEVERAL_BIBS (1 photo) ==",
                "== BIB_UNREGISTERED (1 photo) =="]
    positions = [message.index(heading) for heading in headings]
    assert positions == sorted(positions)
    assert "By reason: GENDER_MISMATCH 1, ONE_RUNNER_SEVERAL_BIBS 1, BIB_UNREGISTERED 1" in message
    swap = message[positions[0]:positions[1]]
    assert f"s3://{BUCKET}/finish/swap.jpg (version v-finish/swap.jpg" in swap
    assert "Reasons: GENDER_MISMATCH, LOW_CONFIDENCE, FACE_SUNGLASSES" in swap
    assert "REVIEW: bib 5078 (registered M, 60-69), face estimated F." in swap
    # the bib that disagrees is described; the consistent one is left out
    assert "Bib 5078: registered M 60-69 (Tom Becker); estimated F 95.5% age 23-38" in swap
    assert "Bib 1200" not in message
    assert "REVIEW: bib 9999 is not in the registration list." in message
    assert "more not listed" not in message
    assert message.rstrip().endswith("not proof.")


def test_given_more_photos_than_the_list_limit_then_the_rest_are_counted_not_listed() -> None:
    # given 250 REVIEW photos in one window
    records = [review(f"photo-{index:03}.jpg", ["AGE_OUTSIDE_CATEGORY"],
                      recorded_at=f"2026-11-22T08:{index % 60:02}:00.000Z")
               for index in range(250)]

    # when composed
    digest = compose_digest(records, window_start=START, window_end=END)

    # then the first 200 are listed and the other 50 are pointed at, all in one SNS message
    assert digest is not None
    message = digest["message"]
    assert message.count("s3://") == MAX_LISTED_PHOTOS
    assert "== AGE_OUTSIDE_CATEGORY (250 photos) ==" in message
    assert "... and 50 more not listed here" in message
    assert "by_verdict" in message
    assert digest["attributes"]["count"] == "250"
    assert len(message.encode("utf-8")) < SNS_MESSAGE_LIMIT


def test_given_long_records_then_the_message_stays_within_the_byte_budget() -> None:
    # given 100 photos whose summaries are 5 KB each (non-ASCII: bytes, not characters, count)
    records = [review(f"Zoë {index}.jpg", ["GENDER_MISMATCH"], summary="é" * 2500)
               for index in range(100)]

    # when composed with a 60 KB budget
    digest = compose_digest(records, window_start=START, window_end=END, byte_budget=60_000)

    # then it lists what fits and counts the rest
    assert digest is not None
    size = len(digest["message"].encode("utf-8"))
    assert size <= 60_000
    listed = digest["message"].count("s3://")
    assert 0 < listed < 100
    assert f"... and {100 - listed} more not listed here" in digest["message"]


def test_given_a_window_across_midnight_then_the_subject_names_both_dates() -> None:
    digest = compose_digest([review("a.jpg", ["BIB_UNREGISTERED"])],
                            window_start="2026-11-22T23:30:00.000Z",
                            window_end="2026-11-23T00:30:00.000Z")
    assert digest is not None
    assert digest["subject"] == (
        "racecheck REVIEW digest: 1 photo, 2026-11-22 23:30-2026-11-23 00:30 UTC")
    assert len(digest["subject"]) <= SUBJECT_LIMIT


# ------------------------------------------------------------------------------ handler


SCHEDULED_EVENT = {
    "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
    "time": "2026-11-22T09:00:00Z", "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/racecheck-review-digest"],
    "detail": {},
}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    monkeypatch.setenv(SETTINGS_ENV_VAR, settings.to_json())
    monkeypatch.setenv("RESULTS_TABLE_NAME", TABLE)
    monkeypatch.setenv("ALERT_TOPIC_ARN", TOPIC)
    shared.settings.cache_clear()
    yield
    shared.settings.cache_clear()


def index_item(record: dict[str, Any]) -> dict[str, Any]:
    """What the by_verdict index returns: keys plus the projected attributes."""
    return to_attribute_values(record)


def expected_query(start_key: dict[str, Any] | None = None) -> dict[str, Any]:
    # the 60-minute window that closed 6 minutes before the 09:00 event, as a BETWEEN
    params = {
        "TableName": TABLE,
        "IndexName": "by_verdict",
        "KeyConditionExpression": "#verdict = :verdict AND #recorded_at BETWEEN :first AND :last",
        "ExpressionAttributeNames": {"#verdict": "verdict", "#recorded_at": "recorded_at"},
        "ExpressionAttributeValues": {
            ":verdict": {"S": "REVIEW"},
            ":first": {"S": "2026-11-22T07:54:00.000Z"},
            ":last": {"S": "2026-11-22T08:53:59.999Z"},
        },
    }
    if start_key:
        params["ExclusiveStartKey"] = start_key
    return params


def test_given_review_photos_over_two_pages_when_scheduled_then_one_digest_is_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the index returns two pages of REVIEW records for the window
    first = review("finish/swap.jpg", ["GENDER_MISMATCH"],
                   links=[link("5078", ["GENDER_MISMATCH"])])
    second = review("km 30/unregistered.jpg", ["BIB_UNREGISTERED"],
                    recorded_at="2026-11-22T08:40:00.000Z")
    page_end = {"photo": {"S": first["photo"]}, "version": {"S": first["version"]},
                "verdict": {"S": "REVIEW"}, "recorded_at": {"S": first["recorded_at"]}}
    dynamodb, dynamodb_stub = stubbed("dynamodb")
    dynamodb_stub.add_response(
        "query", {"Items": [index_item(first)], "Count": 1, "LastEvaluatedKey": page_end},
        expected_query())
    dynamodb_stub.add_response(
        "query", {"Items": [index_item(second)], "Count": 1}, expected_query(page_end))
    sns, sns_stub = stubbed("sns")
    published: list[dict[str, Any]] = []
    sns.meta.events.register("provide-client-params.sns.Publish",
                             lambda params, **_: published.append(dict(params)))
    sns_stub.add_response("publish", {"MessageId": "b5f3c1d2-0000-4000-8000-000000000001"}, {
        "TopicArn": TOPIC, "Subject": ANY, "Message": ANY,
        "MessageAttributes": {
            "alert_type": {"DataType": "String", "StringValue": "DIGEST"},
            "verdict": {"DataType": "String", "StringValue": "REVIEW"},
            "count": {"DataType": "Number", "StringValue": "2"},
        },
    })
    monkeypatch.setattr(digest_handler, "dynamodb", lambda: dynamodb)
    monkeypatch.setattr(digest_handler, "sns", lambda: sns)

    # when the schedule invokes the handler
    with dynamodb_stub, sns_stub:
        result = digest_handler.handler(SCHEDULED_EVENT, LambdaContext())
        dynamodb_stub.assert_no_pending_responses()
        sns_stub.assert_no_pending_responses()

    # then both pages' photos are in the single message sent
    assert result == {"window_start": "2026-11-22T07:54:00.000Z",
                      "window_end": "2026-11-22T08:54:00.000Z", "count": 2, "published": True,
                      "message_id": "b5f3c1d2-0000-4000-8000-000000000001"}
    (message,) = published
    assert message["Subject"].startswith("racecheck REVIEW digest: 2 photos")
    assert f"s3://{BUCKET}/finish/swap.jpg" in message["Message"]
    assert f"s3://{BUCKET}/km 30/unregistered.jpg" in message["Message"]
    assert "Bib 5078: registered M 60-69" in message["Message"]


def test_given_an_empty_window_when_scheduled_then_nothing_is_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given no REVIEW record in the window
    dynamodb, dynamodb_stub = stubbed("dynamodb")
    dynamodb_stub.add_response("query", {"Items": [], "Count": 0}, expected_query())
    sns, sns_stub = stubbed("sns")  # no response queued: any publish would raise
    monkeypatch.setattr(digest_handler, "dynamodb", lambda: dynamodb)
    monkeypatch.setattr(digest_handler, "sns", lambda: sns)

    # when the schedule invokes the handler
    with dynamodb_stub, sns_stub:
        result = digest_handler.handler(SCHEDULED_EVENT, LambdaContext())
        dynamodb_stub.assert_no_pending_responses()

    # then it reports the window and sends nothing
    assert result["published"] is False
    assert result["count"] == 0
    assert result["window_end"] == "2026-11-22T08:54:00.000Z"


def test_given_an_emulated_results_table_when_queried_then_only_the_windows_reviews_return(
) -> None:
    # given moto's DynamoDB with the by_verdict index, holding REVIEW records in and out of
    # the window, a PASS record, and a per-bib item (which has no `verdict`)
    moto = pytest.importorskip("moto", reason="moto is needed to emulate DynamoDB")
    with moto.mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        names = LocalNames()  # the local runner's tables: the stack's schema
        create_tables(client, names)
        table = names.results_table
        start, end = digest_window("2026-11-22T09:00:00Z", minutes=60)
        stored = {
            "first instant": review("a.jpg", ["BIB_UNREGISTERED"], recorded_at=start),
            "last instant": review("b.jpg", ["BIB_UNREGISTERED"],
                                   recorded_at="2026-11-22T08:53:59.999Z"),
            "next window": review("c.jpg", ["BIB_UNREGISTERED"], recorded_at=end),
            "previous window": review("d.jpg", ["BIB_UNREGISTERED"],
                                      recorded_at="2026-11-22T07:53:59.999Z"),
            "passed": review("e.jpg", ["NO_BIB"], verdict="PASS"),
        }
        for record in stored.values():
            client.put_item(TableName=table, Item=to_attribute_values(
                {**record, "faces": [{"age_low": 20}]}))
        client.put_item(TableName=table, Item=to_attribute_values({
            "photo": f"{BUCKET}/a.jpg", "version": "bib#12#v-a.jpg", "bib": "12",
            "photo_verdict": "REVIEW", "recorded_at": start}))

        # when the handler's query runs for the window
        found = digest_handler.query_reviews(client, table_name=table, first=start,
                                             last=last_instant_before(end))

    # then exactly the two records inside [start, end) come back, without unprojected data
    assert sorted(record["key"] for record in found) == ["a.jpg", "b.jpg"]
    assert all("faces" not in record for record in found)
    assert found[0]["reasons"] == ["BIB_UNREGISTERED"]


def test_given_review_links_when_composed_then_each_photo_has_its_console_link_and_command(
        ) -> None:
    # given a REVIEW photo whose key needs quoting, in a stack deployed in eu-west-1
    records = [review("km 30/swap.jpg", ["GENDER_MISMATCH"],
                      recorded_at="2026-11-22T08:30:00.000Z")]
    links = ReviewLinks(region="eu-west-1", stack_name="Marathon2026")

    # when the digest is composed
    digest = compose_digest(records, window_start=START, window_end=END, review_links=links)

    # then the photo's block opens it in that region's console and names the review command
    assert digest is not None
    lines = digest["message"].splitlines()
    heading = lines.index(f"s3://{BUCKET}/km 30/swap.jpg (version v-km 30/swap.jpg, "
                          "recorded 2026-11-22T08:30:00.000Z)")
    assert lines[heading + 1:heading + 3] == [
        f"  Open: https://console.aws.amazon.com/s3/object/{BUCKET}?region=eu-west-1"
        "&bucketType=general&prefix=km%2030%2Fswap.jpg",
        f"  Review: racecheck review --stack Marathon2026 --photo 's3://{BUCKET}/km 30/swap.jpg'"]
