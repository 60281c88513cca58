"""`racecheck run` ends with one line per photo whatever the queue does with its messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from racecheck.core.settings import Settings
from racecheck.local.environment import LocalStack
from racecheck.local.runner import run_photos
from tests.conftest import no_bib_rekognition, write_jpegs


def _lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line)
            for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def test_given_every_event_delivered_twice_then_each_photo_has_one_line(
        tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given EventBridge delivering each photo's event twice (it delivers at least once)
    original = LocalStack.enqueue

    def twice(self: LocalStack, event: dict[str, Any]) -> str:
        original(self, event)
        return original(self, event)

    monkeypatch.setattr(LocalStack, "enqueue", twice)
    # When six photos are run by four pollers
    summary = run_photos(inputs=[write_jpegs(tmp_path / "photos", 6)], out_dir=tmp_path / "out",
                         settings=settings, backend=no_bib_rekognition, in_flight=4)
    # Then the run ends with one line per photo, each the photo's one verdict
    lines = _lines(tmp_path / "out")
    assert sorted(line["key"] for line in lines) == [f"{index}.jpg" for index in range(6)]
    assert summary.photos == 6
    assert all(line["verdict"] == "PASS" for line in lines)


def test_given_a_message_that_leaves_the_queue_unchecked_then_the_run_ends_with_an_error_line(
        tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the message of photo 2.jpg lost between the rule and the consumer
    original = LocalStack.enqueue

    def losing(self: LocalStack, event: dict[str, Any]) -> str:
        message_id = original(self, event)
        if event["detail"]["object"]["key"] == "2.jpg":
            received = self.sqs.receive_message(QueueUrl=self.photo_queue_url,
                                                MaxNumberOfMessages=10)["Messages"]
            for message in received:
                if json.loads(message["Body"])["detail"]["object"]["key"] == "2.jpg":
                    self.sqs.delete_message(QueueUrl=self.photo_queue_url,
                                            ReceiptHandle=message["ReceiptHandle"])
                else:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.photo_queue_url, ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=0)
        return message_id

    monkeypatch.setattr(LocalStack, "enqueue", losing)
    # When four photos are run
    run_photos(inputs=[write_jpegs(tmp_path / "photos", 4)], out_dir=tmp_path / "out",
               settings=settings, backend=no_bib_rekognition, in_flight=2)
    # Then the run ends, the others are checked and the lost one has an ERROR line
    by_key = {line["key"]: line for line in _lines(tmp_path / "out")}
    assert sorted(by_key) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert by_key["2.jpg"]["verdict"] == "ERROR"
    assert by_key["2.jpg"]["reasons"] == ["ERROR:NoRecord"]
    assert "left the queue without a verdict" in by_key["2.jpg"]["summary"]
    assert {by_key[key]["verdict"] for key in ("0.jpg", "1.jpg", "3.jpg")} == {"PASS"}


def test_given_many_photos_then_only_those_in_flight_are_held_in_the_emulated_bucket(
        tmp_path: Path, settings: Settings) -> None:
    from moto.s3.models import s3_backends

    from racecheck.local.environment import ACCOUNT, LocalNames

    # Given twelve photos and two pollers (which queue at most four photos ahead)
    held: list[int] = []

    def count_stored(_line: dict[str, Any]) -> None:
        bucket = s3_backends[ACCOUNT]["global"].buckets[LocalNames().bucket]
        held.append(sum(len(versions) for _, versions in bucket.keys.iterlists()))

    # When they are run
    run_photos(inputs=[write_jpegs(tmp_path / "photos", 12)], out_dir=tmp_path / "out",
               settings=settings, backend=no_bib_rekognition, in_flight=2, on_result=count_stored)
    # Then a photo's bytes leave the emulated bucket once its line is written: the bucket
    # never holds more than the photos in flight, however many the folder has
    assert len(held) == 12
    assert max(held) <= 4
    assert len(_lines(tmp_path / "out")) == 12


def test_given_a_run_then_moto_keeps_no_thread_object_of_a_finished_state(
        tmp_path: Path, settings: Settings) -> None:
    from moto.stepfunctions.parser.utils import TMP_THREADS

    # Given twelve photos (each run starts a thread per state, which moto lists)
    # When they are run
    run_photos(inputs=[write_jpegs(tmp_path / "photos", 12)], out_dir=tmp_path / "out",
               settings=settings, backend=no_bib_rekognition, in_flight=2)
    # Then moto's list holds no finished thread: a long run does not accumulate them
    assert len(_lines(tmp_path / "out")) == 12
    assert not [thread for thread in TMP_THREADS if not thread.is_alive()]
