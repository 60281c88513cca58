"""The queue's pace: concurrency, per-slot pacing and the shared Rekognition call budget."""

from __future__ import annotations

import math
from typing import Any

import boto3
import pytest
from moto import mock_aws

from racecheck.core.aws_errors import ServiceThrottled
from racecheck.core.quota import QuotaLimiter
from racecheck.core.throughput import CALL_SHARE, QUOTA_SHARE, Throughput


def throughput(**changes: Any) -> Throughput:
    values = {"rekognition_tps": 50.0, "photo_check_seconds": 3.0, "max_receives": 10,
              "requeue_delay_seconds": 30, **changes}
    return Throughput(**values)


def test_concurrency_keeps_the_quota_busy_while_a_photo_takes_its_time() -> None:
    # given a 50 TPS quota and photos taking about 3 s
    pace = throughput()
    # then enough photos are in flight to start a share of the quota every second
    assert pace.concurrency == math.ceil(QUOTA_SHARE * 50 * 3)
    # and each slot starts one photo per interval, so starts stay under the quota
    assert pace.concurrency / pace.slot_seconds == pytest.approx(QUOTA_SHARE * 50)
    assert pace.photos_per_second < pace.calls_per_second < 50
    assert pace.calls_per_second == pytest.approx(CALL_SHARE * 50)


@pytest.mark.parametrize(("tps", "expected"), [(0.5, 2), (5, 15), (1000, 1000)])
def test_concurrency_stays_within_what_an_sqs_event_source_accepts(
        tps: float, expected: int) -> None:
    assert throughput(rekognition_tps=tps, photo_check_seconds=3.0).concurrency == expected


def test_a_photo_sent_back_waits_longer_each_time_up_to_a_quarter_hour() -> None:
    pace = throughput(requeue_delay_seconds=30)
    assert [pace.requeue_delay(n) for n in range(1, 8)] == [30, 60, 120, 240, 480, 900, 900]


@pytest.mark.parametrize("bad", [{"rekognition_tps": 0}, {"photo_check_seconds": 400},
                                 {"max_receives": 1}, {"requeue_delay_seconds": 901}])
def test_out_of_range_values_are_refused_by_name(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad)).replace("max_receives", "queue_max")):
        throughput(**bad)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def quota_table() -> Any:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="quota", BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "api", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "api",
                                                   "AttributeType": "S"}])
        yield client


def test_calls_arriving_together_are_spaced_evenly(quota_table: Any) -> None:
    # given a limiter at 10 calls per second and 25 calls arriving at the same instant
    clock = Clock()
    limiter = QuotaLimiter(quota_table, table="quota", calls_per_second=10,
                           max_wait_seconds=5, clock=clock.time, sleep=clock.sleep)
    waits = [limiter.acquire("DetectText") for _ in range(25)]
    # then the first goes at once and each next one a tenth of a second later
    assert waits == pytest.approx([n / 10 for n in range(25)])
    assert clock.slept == pytest.approx([n / 10 for n in range(1, 25)])
    # so no second holds more than 10 calls
    starts = [clock.now + wait for wait in waits]
    assert max(sum(1 for t in starts if s <= t < s + 1) for s in starts) == 10
    # and other APIs have budgets of their own
    assert limiter.acquire("DetectFaces") == 0.0


def test_after_a_quiet_spell_the_budget_starts_again_from_now(quota_table: Any) -> None:
    clock = Clock()
    limiter = QuotaLimiter(quota_table, table="quota", calls_per_second=10,
                           max_wait_seconds=5, clock=clock.time, sleep=clock.sleep)
    for _ in range(5):
        limiter.acquire("DetectText")
    clock.now += 60
    assert limiter.acquire("DetectText") == 0.0
    assert limiter.acquire("DetectText") == pytest.approx(0.1)


def test_a_slot_too_far_away_is_refused_as_throttling(quota_table: Any) -> None:
    # given a backlog: 60 calls at once against 10 per second, and at most 5 s of waiting
    clock = Clock()
    limiter = QuotaLimiter(quota_table, table="quota", calls_per_second=10,
                           max_wait_seconds=5, clock=clock.time, sleep=clock.sleep)
    for _ in range(51):
        limiter.acquire("DetectText")
    # then the next call is refused under the name the state machine hands back to the queue
    with pytest.raises(ServiceThrottled, match="DetectText"):
        limiter.acquire("DetectText")
