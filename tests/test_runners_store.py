"""The runners table: import and load against moto's DynamoDB (no AWS calls)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from racecheck.core.registry import Runner, parse_runners_csv
from racecheck.core.runners_store import (
    ADDED,
    REMOVED,
    UPDATED,
    Change,
    ImportPlan,
    RunnersStoreError,
    history_of,
    import_runners,
    load_runners,
    plan_import,
    read_items,
    registration,
    write_items,
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
        Runner(str(1000 + index), "MFX"[index % 3], 18, 39, "18-39")  # type: ignore[arg-type]
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
    # then the table still holds 30 items and the bib carries the new values
    assert dynamodb.scan(TableName=TABLE, Select="COUNT")["Count"] == 30
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
    assert flaky.calls == [("write", 20), ("write", 10), ("get", 20), ("get", 10)]
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


# ------------------------------------------------------------------ changes, prune, history

ANA = Runner("3631", "F", 18, 39, "18-39", "Ana Lopez")
BO = Runner("3631", "M", 40, 44, "40-44", "Bo Berg", {"club": "Riverside"})
CY = Runner("77", "X", 70, None, "70+", "Cy")
DEE = Runner("12", "F", 45, 49, "45-49", "Dee")


def sync(client: Any, runners: list[Runner], *, prune: bool = False, at: str,
         source: str = "runners.csv") -> ImportPlan:
    """What `racecheck runners import` does: read the table, plan, write the changed items."""
    plan = plan_import(read_items(table_name=TABLE, dynamodb_client=client), runners,
                       prune=prune, at=at, source=source)
    write_items(plan.items, table_name=TABLE, dynamodb_client=client, sleep=no_sleep)
    return plan


def test_a_plan_adds_updates_and_without_prune_keeps_runners_absent_from_the_file() -> None:
    # given Ana on 3631 and Cy on 77 stored
    current = {runner.bib: {**runner.to_item(), "history": []} for runner in (ANA, CY)}
    # when a list hands 3631 to Bo, adds Dee and lacks Cy, imported without prune
    plan = plan_import(current, [BO, DEE], prune=False, at="T1", source="v2.csv")
    # then 3631 is an update from Ana to Bo, Dee an addition, Cy kept and reported
    assert plan.changes == [Change("3631", UPDATED, registration(ANA), registration(BO)),
                            Change("12", ADDED, None, registration(DEE))]
    assert (plan.unchanged, plan.not_in_file) == (0, ["77"])
    assert [item["bib"] for item in plan.items] == ["3631", "12"]
    assert plan.items[0]["history"] == [{"at": "T1", "change": UPDATED, "source": "v2.csv",
                                         "old": registration(ANA), "new": registration(BO)}]


def test_a_plan_with_prune_removes_absent_runners_and_records_who_they_were() -> None:
    # given Ana and Cy stored, Cy with an earlier history entry
    added = {"at": "T0", "change": ADDED, "source": "v1.csv", "new": registration(CY)}
    current = {ANA.bib: ANA.to_item(), CY.bib: {**CY.to_item(), "history": [added]}}
    # when a list with Ana alone is imported with prune
    plan = plan_import(current, [ANA], prune=True, at="T1", source="v2.csv")
    # then Ana is unchanged and Cy's item keeps only the bib, the removal and the history
    assert (plan.unchanged, plan.not_in_file) == (1, [])
    assert plan.changes == [Change("77", REMOVED, registration(CY), None)]
    assert plan.items == [{"bib": "77", "removed_at": "T1", "history": [
        added, {"at": "T1", "change": REMOVED, "source": "v2.csv", "old": registration(CY)}]}]


def test_import_prune_and_reimport_against_dynamodb_keep_every_change(dynamodb: Any) -> None:
    # given Ana (3631), Cy (77, registered X) and Dee (12) imported on day 1
    first = sync(dynamodb, [ANA, CY, DEE], at="2026-04-01T10:00:00.000Z", source="v1.csv")
    assert first.count(ADDED) == 3
    # when on day 2 bib 3631 is officially handed to Bo and Cy withdraws (prune)
    sync(dynamodb, [BO, DEE], prune=True, at="2026-04-02T10:00:00.000Z", source="v2.csv")
    # then the Decide Lambda's lookup finds Bo and Dee, and no longer Cy
    loaded = load_runners(["3631", "77", "12"], table_name=TABLE, dynamodb_client=dynamodb)
    assert loaded == {"3631": BO, "12": DEE}
    # and the history shows the transfer and the removal, each with old and new and when
    items = read_items(table_name=TABLE, dynamodb_client=dynamodb)
    assert history_of(items.values()) == [
        {"bib": "77", "at": "2026-04-02T10:00:00.000Z", "change": REMOVED,
         "old": registration(CY), "new": None, "source": "v2.csv"},
        {"bib": "3631", "at": "2026-04-02T10:00:00.000Z", "change": UPDATED,
         "old": registration(ANA), "new": registration(BO), "source": "v2.csv"},
    ]
    assert [row["change"] for row in history_of(items.values(), bib="3631")] == [ADDED, UPDATED]
    # when Cy re-registers on day 3
    sync(dynamodb, [BO, DEE, CY], prune=True, at="2026-04-03T10:00:00.000Z", source="v3.csv")
    # then Cy is registered X again and the bib's history goes on
    assert load_runners(["77"], table_name=TABLE, dynamodb_client=dynamodb) == {"77": CY}
    items = read_items(table_name=TABLE, dynamodb_client=dynamodb)
    assert [row["change"] for row in history_of(items.values(), bib="77")] == [
        ADDED, REMOVED, ADDED]


class CountingClient:
    """Delegates to moto, counting the write requests."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.writes = 0

    def batch_write_item(self, **request: Any) -> Any:
        self.writes += 1
        return self.client.batch_write_item(**request)

    def get_paginator(self, name: str) -> Any:
        return self.client.get_paginator(name)


def test_reimporting_an_unchanged_list_writes_nothing(dynamodb: Any) -> None:
    # given 60 runners imported
    runners = many_runners(60)
    sync(dynamodb, runners, at="T1")
    counting = CountingClient(dynamodb)
    # when the same list is imported again, and then with one runner changed
    same = sync(counting, runners, prune=True, at="T2")
    writes_for_same = counting.writes
    changed = sync(counting, [*runners[:-1], Runner(runners[-1].bib, "F", 50, 54, "50-54")],
                   at="T3")
    # then nothing is written the first time, one batch the second
    assert (same.unchanged, same.changes, writes_for_same) == (60, [], 0)
    assert (changed.count(UPDATED), counting.writes) == (1, 1)


def test_items_imported_before_history_existed_get_one_on_their_next_change(
        dynamodb: Any) -> None:
    # given an item written by an earlier version (no history attribute)
    import_runners([ANA], table_name=TABLE, dynamodb_client=dynamodb)
    # when the bib changes hands
    sync(dynamodb, [BO], at="T1")
    # then its history starts with that change
    items = read_items(table_name=TABLE, dynamodb_client=dynamodb)
    assert [(row["change"], row["old"]) for row in history_of(items.values(), bib="3631")] == [
        (UPDATED, registration(ANA))]


def test_parallel_batches_write_every_item_and_report_progress(dynamodb: Any) -> None:
    # given 260 runners (11 batches, the last one short), a third of them registered X
    runners = many_runners(260)
    progress: list[int] = []
    # when written with 8 batches in flight
    result = write_items([runner.to_item() for runner in runners], table_name=TABLE,
                         dynamodb_client=dynamodb, workers=8, on_written=progress.append)
    # then every item is in the table, as written, and progress adds up to the total
    assert (result.written, result.batches) == (260, 11)
    assert sorted(progress) == [10] + [25] * 10
    loaded = load_runners([runner.bib for runner in runners], table_name=TABLE,
                          dynamodb_client=dynamodb)
    assert loaded == {runner.bib: runner for runner in runners}


def test_a_batch_that_stays_unprocessed_stops_a_parallel_import_loudly() -> None:
    # given a table that never processes anything
    class Throttled:
        def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
            return {"UnprocessedItems": RequestItems}

    # when 100 items are written 4 batches at a time / then the failure is raised
    with pytest.raises(RunnersStoreError, match="still unprocessed"):
        write_items([runner.to_item() for runner in many_runners(100)], table_name=TABLE,
                    dynamodb_client=Throttled(), sleep=no_sleep, workers=4)
