"""Handlers in isolation: every AWS call they make goes through botocore's Stubber, which
validates the request parameters and the canned responses against the service models."""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY
from PIL import Image

from lambdas import analyze_faces, check_image, decide, moderate, read_bibs, shared
from racecheck.core.records import from_attribute_values
from racecheck.core.settings import SETTINGS_ENV_VAR, Settings
from tests.conftest import LambdaContext, load_fixture, make_jpeg, stubbed

BUCKET = "racecheck-ingest"
VERSION = "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
PHOTO = {"bucket": BUCKET, "key": "finish line/Zoë+Ana 3631.jpg", "version": VERSION,
         "photo": f"{BUCKET}/finish line/Zoë+Ana 3631.jpg"}
S3_OBJECT = {"Bucket": BUCKET, "Name": PHOTO["key"], "Version": VERSION}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    monkeypatch.setenv(SETTINGS_ENV_VAR, settings.to_json())
    monkeypatch.setenv("RUNNERS_TABLE_NAME", "racecheck-runners")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Racecheck")
    shared.settings.cache_clear()
    yield
    shared.settings.cache_clear()


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def ranged(data: bytes, total: int) -> dict[str, Any]:
    return {"Body": body(data), "ContentLength": len(data), "VersionId": VERSION,
            "ContentRange": f"bytes 0-{len(data) - 1}/{total}"}


def jpeg_with_large_metadata(metadata_bytes: int) -> bytes:
    """A JPEG whose dimensions only appear after a long APP segment (as with big XMP)."""
    plain = make_jpeg(1200, 800)
    chunks = []
    remaining = metadata_bytes
    while remaining > 0:
        size = min(remaining, 65000)
        chunks.append(b"\xff\xe1" + (size + 2).to_bytes(2, "big") + b"x" * size)
        remaining -= size
    return plain[:2] + b"".join(chunks) + plain[2:]


# ------------------------------------------------------------------------------ CheckImage


def test_check_image_reads_only_the_first_64_kib(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a 2 MB JPEG in the bucket
    photo = make_jpeg(1600, 1200) + b"\x00" * 2_000_000
    client, stub = stubbed("s3")
    stub.add_response("get_object", ranged(photo[:65536], len(photo)),
                      {"Bucket": BUCKET, "Key": PHOTO["key"], "VersionId": VERSION,
                       "Range": "bytes=0-65535"})
    monkeypatch.setattr(check_image, "s3", lambda: client)
    event = load_fixture("events/object_created.json")
    # when checked
    with stub:
        result = check_image.handler(event, LambdaContext())
        stub.assert_no_pending_responses()
    # then one ranged GET was enough and the real size is known from Content-Range
    assert result["image"]["accepted"] is True
    assert (result["image"]["width"], result["image"]["height"]) == (1600, 1200)
    assert result["image"]["bytes_read"] == 65536
    assert result["image"]["size_bytes"] == len(photo)
    assert result["photo"] == PHOTO


def test_check_image_reads_further_when_the_header_needs_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given a JPEG whose size marker sits after 150 KiB of metadata
    photo = jpeg_with_large_metadata(150_000)
    client, stub = stubbed("s3")
    for last in (65535, 262143):
        stub.add_response("get_object", ranged(photo[:last + 1], len(photo)),
                          {"Bucket": BUCKET, "Key": PHOTO["key"], "VersionId": VERSION,
                           "Range": f"bytes=0-{last}"})
    monkeypatch.setattr(check_image, "s3", lambda: client)
    with stub:
        result = check_image.handler(load_fixture("events/object_created.json"),
                                     LambdaContext())
        stub.assert_no_pending_responses()
    assert result["image"]["accepted"] is True
    assert result["image"]["width"] == 1200
    assert result["image"]["bytes_read"] == 262144


def test_check_image_decodes_a_url_encoded_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # given an event carrying the key URL-encoded, as S3 notifications do
    event = copy.deepcopy(load_fixture("events/object_created.json"))
    event["detail"]["object"]["key"] = "finish+line/Zo%C3%AB%2BAna+3631.jpg"
    client, stub = stubbed("s3")
    stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404,
                          expected_params={"Bucket": BUCKET, "Key": event["detail"]["object"][
                              "key"], "VersionId": VERSION, "Range": "bytes=0-65535"})
    photo = make_jpeg()
    stub.add_response("get_object", ranged(photo, len(photo)),
                      {"Bucket": BUCKET, "Key": "finish line/Zoë+Ana 3631.jpg",
                       "VersionId": VERSION, "Range": "bytes=0-65535"})
    monkeypatch.setattr(check_image, "s3", lambda: client)
    with stub:
        result = check_image.handler(event, LambdaContext())
        stub.assert_no_pending_responses()
    # then the photo is found under its real name
    assert result["photo"]["key"] == "finish line/Zoë+Ana 3631.jpg"


def test_check_image_rejects_a_file_over_15_mb_without_reading_it_all(
        monkeypatch: pytest.MonkeyPatch) -> None:
    head = make_jpeg(4000, 3000)
    client, stub = stubbed("s3")
    stub.add_response("get_object", ranged(head, 16 * 1024 * 1024), {
        "Bucket": BUCKET, "Key": PHOTO["key"], "VersionId": VERSION, "Range": ANY})
    monkeypatch.setattr(check_image, "s3", lambda: client)
    with stub:
        result = check_image.handler(load_fixture("events/object_created.json"),
                                     LambdaContext())
    assert result["image"]["accepted"] is False
    assert result["image"]["reasons"] == ["FILE_TOO_LARGE"]


@pytest.mark.parametrize(("width", "height", "reason"), [
    (12000, 800, "IMAGE_TOO_LARGE"),
    (30000, 30000, "PIXEL_BOMB"),
])
def test_check_image_rejects_dimensions_from_the_header(
        monkeypatch: pytest.MonkeyPatch, width: int, height: int, reason: str) -> None:
    # given a PNG header declaring huge dimensions (the pixels themselves are never decoded)
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")
    data = buffer.getvalue()
    client, stub = stubbed("s3")
    stub.add_response("get_object", ranged(data[:65536], len(data)), {
        "Bucket": BUCKET, "Key": PHOTO["key"], "VersionId": VERSION, "Range": ANY})
    monkeypatch.setattr(check_image, "s3", lambda: client)
    with stub:
        result = check_image.handler(load_fixture("events/object_created.json"),
                                     LambdaContext())
    assert result["image"]["reasons"] == [reason]


# ------------------------------------------------------------------------------ Rekognition


def test_moderate_sends_the_configured_min_confidence(monkeypatch: pytest.MonkeyPatch,
                                                      settings: Settings) -> None:
    client, stub = stubbed("rekognition")
    stub.add_response("detect_moderation_labels", load_fixture(
        "rekognition/detect_moderation_explicit.json"), {
        "Image": {"S3Object": S3_OBJECT}, "MinConfidence": settings.moderation_min_confidence})
    monkeypatch.setattr(moderate, "rekognition", lambda: client)
    with stub:
        result = moderate.handler({"photo": PHOTO}, LambdaContext())
        stub.assert_no_pending_responses()
    assert result["accepted"] is False
    assert result["reasons"] == ["MODERATION:Explicit"]
    assert result["model_version"] == "7.0"


def test_moderate_turns_an_undecodable_image_into_a_rejection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client, stub = stubbed("rekognition")
    stub.add_client_error("detect_moderation_labels",
                          service_error_code="InvalidImageFormatException")
    monkeypatch.setattr(moderate, "rekognition", lambda: client)
    with stub:
        result = moderate.handler({"photo": PHOTO}, LambdaContext())
    assert result == {"accepted": False, "reasons": ["CORRUPT_IMAGE"], "labels": [],
                      "model_version": ""}


@pytest.mark.parametrize(("code", "status", "surfaces_as"), [
    ("ThrottlingException", 400, "ServiceThrottled"),
    ("ProvisionedThroughputExceededException", 400, "ServiceThrottled"),
    ("InternalServerError", 500, "ServiceUnavailable"),
    ("ServiceUnavailable", 503, "ServiceUnavailable"),  # not in Rekognition's model
    ("AccessDeniedException", 400, "AccessDeniedException"),
])
def test_moderate_names_transient_errors_as_the_state_machine_retries_them(
        monkeypatch: pytest.MonkeyPatch, code: str, status: int, surfaces_as: str) -> None:
    # given Rekognition answering with an error
    client, stub = stubbed("rekognition")
    stub.add_client_error("detect_moderation_labels", service_error_code=code,
                          http_status_code=status)
    monkeypatch.setattr(moderate, "rekognition", lambda: client)
    # when the handler runs, then the error reaches Step Functions under the name its
    # Retry and Catch list (throttling and 5xx), or its own (permanent errors)
    with stub, pytest.raises(Exception) as raised:
        moderate.handler({"photo": PHOTO}, LambdaContext())
    assert type(raised.value).__name__ == surfaces_as


def test_read_bibs_keeps_bibs_and_records_near_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    client, stub = stubbed("rekognition")
    stub.add_response("detect_text", load_fixture("rekognition/detect_text_bib_3631.json"),
                      {"Image": {"S3Object": S3_OBJECT}})
    monkeypatch.setattr(read_bibs, "rekognition", lambda: client)
    with stub:
        result = read_bibs.handler({"photo": PHOTO}, LambdaContext())
        stub.assert_no_pending_responses()
    assert [bib["number"] for bib in result["bibs"]] == ["3631"]
    assert result["bib_count"] == 1
    assert result["model_version"] == "3.0"


def test_analyze_faces_asks_only_for_the_needed_attributes_and_keeps_no_biometrics(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client, stub = stubbed("rekognition")
    stub.add_response("detect_faces", load_fixture("rekognition/detect_faces_male_29_45.json"),
                      {"Image": {"S3Object": S3_OBJECT},
                       "Attributes": ["DEFAULT", "AGE_RANGE", "GENDER", "SUNGLASSES",
                                      "FACE_OCCLUDED"]})
    monkeypatch.setattr(analyze_faces, "rekognition", lambda: client)
    with stub:
        result = analyze_faces.handler({"photo": PHOTO}, LambdaContext())
        stub.assert_no_pending_responses()
    face = result["faces"][0]
    assert (face["age_low"], face["age_high"], face["gender"]) == (29, 45, "Male")
    assert "Landmarks" not in str(result) and "Pose" not in str(result)


# ------------------------------------------------------------------------------ Decide


def test_decide_looks_up_runners_and_builds_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a checked photo with bib 3631 above which a male face was found
    faces = analyze_faces.faces_from_rekognition(
        load_fixture("rekognition/detect_faces_male_29_45.json"))
    text = load_fixture("rekognition/detect_text_bib_3631.json")
    bibs = read_bibs.extract_bibs(text, Settings.from_cdk_json()).bibs
    state = {
        "check": {"result": {"photo": PHOTO, "image": {
            "accepted": True, "reasons": [], "format": "JPEG", "width": 640, "height": 480,
            "size_bytes": 30000, "bytes_read": 30000, "detail": ""}}},
        "moderation": {"result": {"accepted": True, "reasons": [], "labels": [],
                                  "model_version": "7.0"}},
        "text": {"result": {"bibs": bibs, "near_misses": [], "bib_count": 1,
                            "model_version": "3.0"}},
        "faces": {"result": {"faces": faces, "face_count": 1}},
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": PHOTO["key"],
                                                          "version-id": VERSION}},
    }
    client, stub = stubbed("dynamodb")
    stub.add_response("batch_get_item", {"Responses": {"racecheck-runners": [{
        "bib": {"S": "3631"}, "gender": {"S": "F"}, "age_min": {"N": "18"},
        "age_max": {"N": "39"}, "category": {"S": "18-39"}, "name": {"S": "Ana"}}]}},
        {"RequestItems": {"racecheck-runners": {"Keys": [{"bib": {"S": "3631"}}]}}})
    monkeypatch.setattr(decide, "dynamodb", lambda: client)
    with stub:
        result = decide.handler({"state": state, "execution": "arn:execution"},
                                LambdaContext())
        stub.assert_no_pending_responses()
    # then a registered woman's bib on a confidently male face fails
    decision = result["decision"]
    assert decision["verdict"] == "FAIL"
    # and the result replaces the workflow's state: the event, and the record once
    assert set(result) == {"detail", "decision"}
    assert result["detail"] == state["detail"]
    record = from_attribute_values(decision["item"])
    assert record["photo"] == PHOTO["photo"] and record["verdict"] == "FAIL"
    # and the record carries what must follow: the runner's evidence and the alert
    assert record["evidence"] == [{"bib": "3631", "outcome": "inconsistent",
                                   "reasons": ["GENDER_MISMATCH"],
                                   "registered": record["links"][0]["registered"]}]
    assert "Ana" in record["alert"]["message"]
