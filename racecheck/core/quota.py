"""One Rekognition budget shared by every Lambda: calls spaced evenly under the quota.

Rekognition's TPS quota is per account, Region and API, while the calls come from many
Lambda invocations at once. Each call first reserves the next free slot of its API on a
shared timeline kept in DynamoDB (a generic cell rate algorithm): slots are
``1 / calls_per_second`` apart, so however the photos' runs bunch up, the calls reach
Rekognition evenly spaced and no second holds more than the quota.

- When the API has been idle (its next free slot is in the past) a conditional write takes
  "now" and moves the next slot one interval on: one write.
- Otherwise an atomic ``ADD`` hands out the next slot (concurrent callers get consecutive
  slots, never the same one) and the caller waits for it: two writes.
- A slot further away than ``max_wait_seconds`` is not worth waiting for inside a run that
  must end within Express's 5 minutes: the call is refused as ``ServiceThrottled``, and
  the photo goes back to the queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from racecheck.core.aws_errors import ServiceThrottled

_CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
# A Rekognition task has 15 s (its Lambda's timeout): a few seconds of waiting for a slot,
# then the call itself. Longer means a backlog the queue is better at holding.
MAX_WAIT_SECONDS = 5.0


class QuotaLimiter:
    def __init__(self, dynamodb: Any, *, table: str, calls_per_second: float,
                 max_wait_seconds: float, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if calls_per_second <= 0:
            raise ValueError("calls_per_second must be positive")
        self._dynamodb = dynamodb
        self._table = table
        self.interval = 1.0 / calls_per_second
        self._max_wait = max_wait_seconds
        self._clock = clock
        self._sleep = sleep

    def acquire(self, api: str) -> float:
        """Wait for this API's next slot; returns the seconds waited."""
        now = self._clock()
        key = {"api": {"S": api}}
        try:
            self._dynamodb.update_item(
                TableName=self._table, Key=key,
                UpdateExpression="SET next_slot = :next",
                ConditionExpression="attribute_not_exists(next_slot) OR next_slot < :now",
                ExpressionAttributeValues={":next": {"N": _number(now + self.interval)},
                                           ":now": {"N": _number(now)}},
            )
            return 0.0
        except Exception as error:
            if getattr(error, "response", {}).get("Error", {}).get("Code") != (
                    _CONDITIONAL_CHECK_FAILED):
                raise
        reserved = self._dynamodb.update_item(
            TableName=self._table, Key=key,
            UpdateExpression="ADD next_slot :interval",
            ExpressionAttributeValues={":interval": {"N": _number(self.interval)}},
            ReturnValues="UPDATED_NEW",
        )
        slot = float(reserved["Attributes"]["next_slot"]["N"]) - self.interval
        wait = slot - self._clock()
        if wait > self._max_wait:
            raise ServiceThrottled(
                f"{api}: the next call within the Rekognition quota is {wait:.1f} s away")
        if wait > 0:
            self._sleep(wait)
        return max(0.0, wait)


def _number(value: float) -> str:
    # Microseconds: exact enough for slots a few milliseconds apart.
    return f"{value:.6f}"
