"""The AWS side of the CLI, against tables emulated by moto (no network, fake credentials)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner
from moto import mock_aws

from racecheck.cli import main
from racecheck.local.backends import REKOGNITION_MAX_IMAGE_BYTES, RealRekognitionBackend
from racecheck.local.environment import LocalNames, create_tables
from racecheck.local.rekognition import RekognitionError
from tests.conftest import load_fixture, make_jpeg

NAMES = LocalNames()
RUNNERS, RESULTS, EVIDENCE = NAMES.runners_table, NAMES.results_table, NAMES.evidence_table


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb")
        create_tables(client, NAMES)
        yield client


def test_runners_import_writes_and_reimport_updates(aws: Any, tmp_path: Path) -> None:
    # given a registration list imported once
    runners = tmp_path / "runners.csv"
    runners.write_text("bib,gender,age_category,name\n3631,F,18-39,Ana\n77,M,70+,Bo\n")
    first = CliRunner().invoke(main, ["runners", "import", str(runners), "--table", RUNNERS])
    assert first.exit_code == 0, first.output
    # when it is corrected and imported again
    runners.write_text("bib,gender,age_category,name\n3631,F,40-44,Ana\n77,M,70+,Bo\n")
    again = CliRunner().invoke(main, ["runners", "import", str(runners), "--table", RUNNERS])
    # then the table holds each runner once, with the new category, and the list's
    # number lengths (one 2-digit, one 4-digit number)
    assert again.exit_code == 0, again.output
    items = aws.scan(TableName=RUNNERS)["Items"]
    assert sorted(item["bib"]["S"] for item in items) == ["#number-lengths", "3631", "77"]
    summary = next(item for item in items if item["bib"]["S"] == "#number-lengths")
    assert summary["lengths"]["M"] == {"2": {"N": "1"}, "4": {"N": "1"}}
    ana = next(item for item in items if item["bib"]["S"] == "3631")
    assert (ana["age_min"]["N"], ana["age_max"]["N"]) == ("40", "44")


def test_a_bad_file_imports_nothing(aws: Any, tmp_path: Path) -> None:
    runners = tmp_path / "runners.csv"
    runners.write_text("bib,gender,age_category\n3631,F,18-39\n12,X,18-39\n")
    result = CliRunner().invoke(main, ["runners", "import", str(runners), "--table", RUNNERS])
    assert result.exit_code == 1
    assert "line 3" in result.output
    assert aws.scan(TableName=RUNNERS)["Items"] == []


def test_photos_of_a_bib_come_from_the_index(aws: Any) -> None:
    for key, verdict, at in (("km5/a.jpg", "PASS", "2026-05-01T09:00:00Z"),
                             ("km9/b.jpg", "FAIL", "2026-05-01T09:30:00Z")):
        aws.put_item(TableName=RESULTS, Item={
            "photo": {"S": f"bucket/{key}"}, "version": {"S": f"bib#3631#v-{key}"},
            "bib": {"S": "3631"}, "key": {"S": key}, "photo_verdict": {"S": verdict},
            "outcome": {"S": "consistent"}, "recorded_at": {"S": at}})
    result = CliRunner().invoke(main, ["photos", "--bib", "3631", "--table", RESULTS,
                                       "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(row["key"], row["verdict"]) for row in rows] == [("km5/a.jpg", "PASS"),
                                                              ("km9/b.jpg", "FAIL")]


def test_suspects_lists_only_alerted_runners(aws: Any) -> None:
    for bib, alerted in (("5078", True), ("1234", False)):
        aws.put_item(TableName=EVIDENCE, Item={
            "bib": {"S": bib}, "alerted": {"BOOL": alerted}, "inconsistent": {"N": "2"},
            "consistent": {"N": "0"}, "photos_seen": {"N": "2"},
            "photos": {"SS": ["bucket/a.jpg", "bucket/b.jpg"]}})
    result = CliRunner().invoke(main, ["suspects", "--table", EVIDENCE, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [row["bib"] for row in json.loads(result.output)] == ["5078"]


# ------------------------------------------------------------------ --detector rekognition


def test_the_real_rekognition_backend_sends_bytes_and_passes_errors_on() -> None:
    client = boto3.client("rekognition", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    image = make_jpeg()
    with Stubber(client) as stub:
        stub.add_response("detect_faces", load_fixture("rekognition/detect_faces_none.json"),
                          {"Image": {"Bytes": image}, "Attributes": ["DEFAULT"]})
        stub.add_client_error("detect_text", service_error_code="ThrottlingException")
        backend = RealRekognitionBackend(client_factory=lambda: client)
        assert backend("DetectFaces", image, {"Image": {"S3Object": {}},
                                             "Attributes": ["DEFAULT"]}) == {"FaceDetails": []}
        with pytest.raises(RekognitionError) as raised:
            backend("DetectText", image, {"Image": {"S3Object": {}}})
        assert raised.value.code == "ThrottlingException"
        stub.assert_no_pending_responses()


def test_the_real_rekognition_backend_shrinks_photos_over_the_bytes_limit() -> None:
    client = boto3.client("rekognition", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    sent: list[int] = []

    def record_size(params: dict[str, Any], **_: Any) -> None:
        sent.append(len(params["Image"]["Bytes"]))

    client.meta.events.register("provide-client-params.rekognition.DetectText", record_size)
    huge = make_jpeg(5000, 4000, quality=100) + b"\x00" * REKOGNITION_MAX_IMAGE_BYTES
    with Stubber(client) as stub:
        stub.add_response("detect_text", load_fixture("rekognition/detect_text_nothing.json"))
        RealRekognitionBackend(client_factory=lambda: client)("DetectText", huge, {})
    assert sent and sent[0] <= REKOGNITION_MAX_IMAGE_BYTES
