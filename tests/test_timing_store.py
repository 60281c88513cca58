"""The timing table: import and load against moto's DynamoDB (no AWS calls)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from racecheck.core.timing import Checkpoint, RaceTiming
from racecheck.core.timing_store import COURSE_KEY, import_timing, load_timing
from racecheck.local.environment import LocalNames, create_tables

TABLE = LocalNames().timing_table
COURSE = (Checkpoint("start", 0.0), Checkpoint("half", 21.0975), Checkpoint("finish", 42.195))


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb")
        create_tables(client, LocalNames())
        yield client


def timing_of(count: int) -> RaceTiming:
    return RaceTiming(course=COURSE, reads={
        str(100 + index): {"start": 1_776_582_000.0 + index,
                           "finish": 1_776_596_400.25 + index} for index in range(count)})


def test_nothing_imported_means_no_timing(dynamodb: Any) -> None:
    assert load_timing(["100"], table_name=TABLE, dynamodb_client=dynamodb) is None


def test_splits_round_trip_with_the_course(dynamodb: Any) -> None:
    # given the splits of 130 runners imported (more than one batch of keys to read back)
    timing = timing_of(130)
    result = import_timing(timing, table_name=TABLE, dynamodb_client=dynamodb)
    assert result.written == 131
    # when the bibs of a photo (and one without splits) are loaded
    wanted = [*timing.reads, "999"]
    stored = load_timing(wanted, table_name=TABLE, dynamodb_client=dynamodb)
    # then the course comes back in order, with every read to the millisecond
    assert stored is not None
    assert stored.course == COURSE
    assert stored.reads == timing.reads
    assert "999" not in stored.reads


def test_items_are_readable_in_the_console(dynamodb: Any) -> None:
    import_timing(timing_of(1), table_name=TABLE, dynamodb_client=dynamodb)
    item = dynamodb.get_item(TableName=TABLE, Key={"bib": {"S": "100"}})["Item"]
    assert item["splits"]["M"]["finish"] == {"S": "2026-04-19T11:00:00.250Z"}
    course = dynamodb.get_item(TableName=TABLE, Key={"bib": {"S": COURSE_KEY}})["Item"]
    assert course["runners"] == {"N": "1"}
    assert course["checkpoints"]["L"][1] == {"M": {"name": {"S": "half"},
                                                   "km": {"N": "21.0975"}}}
