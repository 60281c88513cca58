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
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from click.testing import CliRunner
from moto import mock_aws

from racecheck.cli import main
from racecheck.core.runners_store import load_runners
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
    # then the table holds each runner once, with the new category
    assert again.exit_code == 0, again.output
    items = aws.scan(TableName=RUNNERS)["Items"]
    assert len(items) == 2
    ana = next(item for item in items if item["bib"]["S"] == "3631")
    assert (ana["age_min"]["N"], ana["age_max"]["N"]) == ("40", "44")


def test_a_bad_file_imports_nothing(aws: Any, tmp_path: Path) -> None:
    runners = tmp_path / "runners.csv"
    runners.write_text("bib,gender,age_category\n3631,F,18-39\n12,Q,18-39\n")
    result = CliRunner().invoke(main, ["runners", "import", str(runners), "--table", RUNNERS])
    assert result.exit_code == 1
    assert "line 3" in result.output
    assert aws.scan(TableName=RUNNERS)["Items"] == []


def import_list(path: Path, rows: str, *options: str, answer: str | None = None) -> Any:
    path.write_text("bib,gender,age_category,name\n" + rows, encoding="utf-8")
    return CliRunner().invoke(main, ["runners", "import", str(path), "--table", RUNNERS,
                                     *options], input=answer)


def test_prune_dry_run_lists_the_changes_and_writes_nothing(aws: Any, tmp_path: Path) -> None:
    # given Ana on 3631, Bo on 77 and Sam (non-binary) on 12 imported
    runners = tmp_path / "runners.csv"
    first = import_list(runners, "3631,F,18-39,Ana\n77,M,70+,Bo\n12,NB,40-44,Sam\n")
    assert first.exit_code == 0, first.output
    assert "3 added, 0 updated, 0 removed, 0 unchanged" in first.output
    before = aws.scan(TableName=RUNNERS)["Items"]
    # when a list handing 3631 to Cy and dropping Bo is imported with --prune --dry-run
    dry = import_list(runners, "3631,M,40-44,Cy\n12,X,40-44,Sam\n", "--prune", "--dry-run")
    # then the update and the removal are printed, and the table is untouched
    assert dry.exit_code == 0, dry.output
    assert "0 to add, 1 to update, 1 unchanged, 1 to remove" in dry.output
    assert "update bib 3631: F 18-39 Ana -> M 40-44 Cy" in dry.output
    assert "remove bib 77: M 70+ Bo" in dry.output
    assert "Dry run: nothing written." in dry.output
    assert aws.scan(TableName=RUNNERS)["Items"] == before


def test_prune_asks_first_removes_and_the_history_shows_the_transfer(
        aws: Any, tmp_path: Path) -> None:
    # given Ana on 3631 and Bo on 77 imported
    runners = tmp_path / "runners.csv"
    assert import_list(runners, "3631,F,18-39,Ana\n77,M,70+,Bo\n").exit_code == 0
    # when a list handing 3631 to Cy and dropping Bo is pruned, first answering no
    refused = import_list(runners, "3631,M,40-44,Cy\n", "--prune", answer="n\n")
    assert refused.exit_code == 1 and "Remove 1 runner(s)?" in refused.output
    assert load_runners(["3631", "77"], table_name=RUNNERS, dynamodb_client=aws)[
        "3631"].name == "Ana"
    # and then answering yes
    done = import_list(runners, "3631,M,40-44,Cy\n", "--prune", answer="y\n")
    # then Bo is no longer registered and 3631 is Cy's
    assert done.exit_code == 0, done.output
    assert "0 added, 1 updated, 1 removed, 0 unchanged" in done.output
    loaded = load_runners(["3631", "77"], table_name=RUNNERS, dynamodb_client=aws)
    assert {bib: runner.name for bib, runner in loaded.items()} == {"3631": "Cy"}
    # and the history lists both changes, with old and new registration and the file
    history = CliRunner().invoke(main, ["runners", "history", "--table", RUNNERS,
                                        "--format", "csv"])
    assert history.exit_code == 0, history.output
    rows = list(csv.DictReader(io.StringIO(history.output)))
    assert [(row["bib"], row["change"], row["old"], row["new"], row["source"])
            for row in rows] == [("77", "removed", "M 70+ Bo", "", "runners.csv"),
                                 ("3631", "updated", "F 18-39 Ana", "M 40-44 Cy",
                                  "runners.csv")]
    assert rows[0]["at"].endswith("Z")
    # and a bib's own history includes its first registration
    one = CliRunner().invoke(main, ["runners", "history", "--table", RUNNERS, "--bib", "3631",
                                    "--format", "json"])
    assert [(row["change"], (row["new"] or {}).get("name")) for row in json.loads(one.output)
            ] == [("added", "Ana"), ("updated", "Cy")]


def test_an_import_without_prune_keeps_and_names_the_runners_missing_from_the_file(
        aws: Any, tmp_path: Path) -> None:
    runners = tmp_path / "runners.csv"
    assert import_list(runners, "3631,F,18-39,Ana\n77,M,70+,Bo\n").exit_code == 0
    again = import_list(runners, "3631,F,18-39,Ana\n")
    assert again.exit_code == 0, again.output
    assert "1 registered bib(s) are not in the file and stay registered" in again.output
    assert set(load_runners(["3631", "77"], table_name=RUNNERS, dynamodb_client=aws)) == {
        "3631", "77"}


def test_an_import_into_a_missing_table_is_one_clear_line(aws: Any, tmp_path: Path) -> None:
    runners = tmp_path / "runners.csv"
    runners.write_text("bib,gender,age_category\n1,M,18-39\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["runners", "import", str(runners), "--table", "nope"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("racecheck: AWS refused")
    assert "(ResourceNotFoundException)" in result.output


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


# --------------------------------------------------------------------------- redrive

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:racecheck-ingest"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:racecheck-ingest-dead-letters"


def test_dead_lettered_photos_go_back_with_sqs_own_move_task() -> None:
    from racecheck.redrive import move_dead_letters

    client, stub = stubbed_sqs()
    stub.add_response("start_message_move_task", {"TaskHandle": "handle-1"},
                      {"SourceArn": DLQ_ARN, "DestinationArn": QUEUE_ARN})
    with stub:
        assert move_dead_letters(client, dead_letter_queue_arn=DLQ_ARN,
                                 queue_arn=QUEUE_ARN) == "handle-1"
        stub.assert_no_pending_responses()


def stubbed_sqs() -> tuple[Any, Stubber]:
    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    return client, Stubber(client)


def test_redrive_errors_queues_every_error_photo_again(
        aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from racecheck.core.records import to_attribute_values

    # given two ERROR records and one real verdict
    for key, verdict in (("a.jpg", "ERROR"), ("b c/d.jpg", "ERROR"), ("e.jpg", "PASS")):
        aws.put_item(TableName=RESULTS, Item=to_attribute_values({
            "photo": f"ingest/{key}", "version": "v1", "bucket": "ingest", "key": key,
            "verdict": verdict, "reasons": [f"ERROR:{verdict}"],
            "recorded_at": "2026-11-22T08:00:00.000Z"}))
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="ingest")["QueueUrl"]
    monkeypatch.setattr("racecheck.cli._stack_outputs", lambda _name: {
        "ResultsTableName": RESULTS, "PhotoQueueUrl": queue_url})
    # when listed, nothing is queued
    listed = CliRunner().invoke(main, ["redrive", "--errors", "--dry-run"])
    assert listed.exit_code == 0, listed.output
    assert "2 photo(s) with an ERROR verdict" in listed.output
    assert sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"] == "0"
    # when redriven, each ERROR photo's event is in the queue, shaped as the workflow reads it
    result = CliRunner().invoke(main, ["redrive", "--errors"])
    assert result.exit_code == 0, result.output
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    events = sorted((json.loads(m["Body"])["detail"] for m in messages),
                    key=lambda detail: detail["object"]["key"])
    assert [(d["bucket"]["name"], d["object"]["key"], d["object"]["version-id"])
            for d in events] == [("ingest", "a.jpg", "v1"), ("ingest", "b c/d.jpg", "v1")]


def test_redrive_from_an_older_stack_says_what_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("racecheck.cli._stack_outputs", lambda _name: {})
    result = CliRunner().invoke(main, ["redrive"])
    assert result.exit_code == 1
    assert "no output DeadLetterQueueArn" in result.output


FIRST, LAST = "111100000000000000000100", "111100000000000000000101"
SHARD = "shardId-00000001763799249000-f35f62ef"


def test_failed_follow_up_batches_are_handed_to_their_function_again() -> None:
    from racecheck.redrive import redrive_follow_ups

    stream = ("arn:aws:dynamodb:us-east-1:123456789012:table/racecheck-results/stream/"
              "2026-11-22T00:00:00.000")
    failure = {"requestContext": {"condition": "RetryAttemptsExhausted"},
               "DDBStreamBatchInfo": {"shardId": SHARD, "startSequenceNumber": FIRST,
                                      "endSequenceNumber": LAST, "streamArn": stream,
                                      "batchSize": 2}}
    sqs, sqs_stub = stubbed_sqs()
    streams = boto3.client("dynamodbstreams", region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    streams_stub = Stubber(streams)
    lambda_client = boto3.client("lambda", region_name="us-east-1",
                                 aws_access_key_id="testing", aws_secret_access_key="testing")
    lambda_stub = Stubber(lambda_client)
    sqs_stub.add_response("receive_message", {"Messages": [{
        "MessageId": "m1", "ReceiptHandle": "r1", "Body": json.dumps(failure)}]})
    streams_stub.add_response("get_shard_iterator", {"ShardIterator": "it-1"}, {
        "StreamArn": stream, "ShardId": SHARD, "ShardIteratorType": "AT_SEQUENCE_NUMBER",
        "SequenceNumber": FIRST})
    def stream_record(sequence: str) -> dict[str, Any]:
        return {"eventID": "e", "eventName": "INSERT",
                "dynamodb": {"SequenceNumber": sequence, "Keys": {"photo": {"S": "p"}}}}

    record, later = stream_record(FIRST), stream_record(str(int(LAST) + 1))
    streams_stub.add_response("get_records", {"Records": [record, later],
                                              "NextShardIterator": "it-2"})
    lambda_stub.add_response("invoke", {"StatusCode": 200, "Payload": StreamingBody(
        io.BytesIO(b'{"batchItemFailures": []}'), 25)}, {
        "FunctionName": "follow-up-fn", "Payload": ANY})
    sqs_stub.add_response("delete_message", {}, {"QueueUrl": "dlq", "ReceiptHandle": "r1"})
    sqs_stub.add_response("receive_message", {"Messages": []})
    with sqs_stub, streams_stub, lambda_stub:
        done = redrive_follow_ups(sqs, streams, lambda_client, queue_url="dlq",
                                  function_by_table={"racecheck-results": "follow-up-fn"})
        for stub in (sqs_stub, streams_stub, lambda_stub):
            stub.assert_no_pending_responses()
    # then only the failed batch's records (up to its last sequence number) were handed over
    assert (done.batches, done.records, done.expired) == (1, 1, 0)
