"""The runners table: import and load against moto's DynamoDB (no AWS calls)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from racecheck.core.registry import Runner, parse_runners_csv
from racecheck.core.runners_store import (
    NUMBER_LENGTHS_KEY,
    RunnersStoreError,
    import_runners,
    load_number_lengths,
    load_runners,
)

TABLE = "runners"


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "bib", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "bib", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def no_sleep(_seconds: float) -> None:
    return None


def many_runners(count: int) -> list[Runner]:
    return [
        Runner(str(1000 + index), "F" if index % 2 else "M", 18, 39, "18-39")
        for index in range(count)
    ]


def test_import_writes_items_in_the_table_layout(dynamodb: Any) -> None:
    # given runners with and without an upper age bound, name and extras
    runners = parse_runners_csv("bib,gender,age_category,name,club\n1,M,18-39,Bo,X\n2,F,70+,,\n")
    # when imported
    result = import_runners(runners, table_name=TABLE, dynamodb_client=dynamodb)
    # then the items follow the table layout: age_max and name absent, numbers as N
    assert (result.written, result.batches) == (2, 1)
    first = dynamodb.get_item(TableName=TABLE, Key={"bib": {"S": "1"}})["Item"]
    second = dynamodb.get_item(TableName=TABLE, Key={"bib": {"S": "2"}})["Item"]
    assert first == {
        "bib": {"S": "1"},
        "gender": {"S": "M"},
        "age_min": {"N": "18"},
        "age_max": {"N": "39"},
        "category": {"S": "18-39"},
        "name": {"S": "Bo"},
        "extra": {"M": {"club": {"S": "X"}}},
    }
    assert "age_max" not in second and "name" not in second


def test_reimport_overwrites_without_duplicates(dynamodb: Any) -> None:
    # given 30 runners imported (two batches)
    import_runners(many_runners(30), table_name=TABLE, dynamodb_client=dynamodb)
    # when a corrected list is imported again
    corrected = [Runner("1000", "F", 45, 49, "45-49", "Fixed")]
    import_runners(corrected, table_name=TABLE, dynamodb_client=dynamodb)
    # then the table still holds 30 runners (and the list's summary) and the bib carries
    # the new values
    assert dynamodb.scan(TableName=TABLE, Select="COUNT")["Count"] == 30 + 1
    loaded = load_runners(["1000"], table_name=TABLE, dynamodb_client=dynamodb)
    assert loaded == {"1000": corrected[0]}


def test_load_more_than_100_bibs_round_trips(dynamodb: Any) -> None:
    # given 230 registered runners
    runners = many_runners(230)
    result = import_runners(runners, table_name=TABLE, dynamodb_client=dynamodb)
    assert result.batches == 10
    # when 230 registered bibs, one unknown bib and a repeat are loaded
    wanted = [runner.bib for runner in runners] + ["unknown", "1000"]
    loaded = load_runners(wanted, table_name=TABLE, dynamodb_client=dynamodb)
    # then every registered runner comes back equal, the unknown one is absent
    assert loaded == {runner.bib: runner for runner in runners}


class FlakyClient:
    """Delegates to moto, but the first call of each kind leaves half its work unprocessed."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, int]] = []

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        [(table, requests)] = RequestItems.items()
        self.calls.append(("write", len(requests)))
        if len(self.calls) == 1:
            half = len(requests) // 2
            self.client.batch_write_item(RequestItems={table: requests[:half]})
            return {"UnprocessedItems": {table: requests[half:]}}
        return dict(self.client.batch_write_item(RequestItems=RequestItems))

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        [(table, request)] = RequestItems.items()
        keys = request["Keys"]
        self.calls.append(("get", len(keys)))
        assert len(keys) <= 100, "BatchGetItem takes at most 100 keys"
        if sum(kind == "get" for kind, _ in self.calls) == 1:
            half = len(keys) // 2
            response = self.client.batch_get_item(RequestItems={table: {"Keys": keys[:half]}})
            response["UnprocessedKeys"] = {table: {"Keys": keys[half:]}}
            return dict(response)
        return dict(self.client.batch_get_item(RequestItems=RequestItems))


def test_unprocessed_items_and_keys_are_retried(dynamodb: Any) -> None:
    # given a client that leaves half of the first write and of the first read unprocessed
    flaky = FlakyClient(dynamodb)
    runners = many_runners(20)
    # when imported and loaded
    result = import_runners(runners, table_name=TABLE, dynamodb_client=flaky, sleep=no_sleep)
    loaded = load_runners(
        [r.bib for r in runners], table_name=TABLE, dynamodb_client=flaky, sleep=no_sleep
    )
    # then the retries complete the work
    assert result.retries == 1
    # (the first write holds the 20 runners and the list's summary item)
    assert flaky.calls == [("write", 21), ("write", 11), ("get", 20), ("get", 10)]
    assert loaded == {runner.bib: runner for runner in runners}


def test_persistently_unprocessed_items_raise() -> None:
    # given a table that never processes anything
    class Throttled:
        def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
            return {"UnprocessedItems": RequestItems}

    # when imported / then the failure is loud
    with pytest.raises(RunnersStoreError, match="still unprocessed"):
        import_runners(
            many_runners(3), table_name=TABLE, dynamodb_client=Throttled(), sleep=no_sleep
        )


def test_duplicate_bibs_are_refused_before_writing() -> None:
    with pytest.raises(ValueError, match="1000"):
        import_runners(
            many_runners(2) + many_runners(1), table_name=TABLE, dynamodb_client=object()
        )


def test_import_records_the_lengths_of_the_race_numbers(dynamodb: Any) -> None:
    # given a race numbered 1..150: 9 one-digit, 90 two-digit and 51 three-digit numbers
    runners = [Runner(str(number), "M", 18, 39, "18-39") for number in range(1, 151)]
    assert load_number_lengths(table_name=TABLE, dynamodb_client=dynamodb) is None
    # when imported
    import_runners(runners, table_name=TABLE, dynamodb_client=dynamodb)
    # then the decide step can read what the race's numbers look like in one GetItem
    assert load_number_lengths(table_name=TABLE, dynamodb_client=dynamodb) == {
        1: 9, 2: 90, 3: 51}
    # and the summary is never mistaken for a runner
    assert load_runners([NUMBER_LENGTHS_KEY, "7"], table_name=TABLE,
                        dynamodb_client=dynamodb).keys() == {"7"}
