"""How fast photos may start and calls may go, so that Rekognition's quota is never exceeded.

Every photo calls each Rekognition API at most once (DetectModerationLabels, DetectText, and
DetectFaces only when a bib was read), so the calls per second to any one API are at most
the photos started per second. The quota is per account, Region and API (Service Quotas,
service code ``rekognition``); ``rekognition_tps`` is the lowest of the three.

Two limits, one on photos and one on calls:

- The queue consumer holds photos to ``QUOTA_SHARE * rekognition_tps`` starts per second:
  at most ``concurrency = ceil(QUOTA_SHARE * rekognition_tps * photo_check_seconds)``
  photos in flight (the SQS event source's ``MaximumConcurrency``: enough to keep the quota
  busy while a typical photo takes ``photo_check_seconds``), and each slot starts at most
  one photo every ``concurrency / (QUOTA_SHARE * rekognition_tps)`` seconds (it waits out
  the rest of that interval after a fast photo: rejected photos and photos without a bib
  would otherwise start the next one early).
- Calls reach Rekognition a variable time after their photo starts, so per-second counts
  wobble around the start rate (by a quarter of it at 50 TPS in ``benchmarks/burst.py``).
  Each call therefore also takes a slot on a timeline shared by all Lambdas
  (``racecheck.core.quota``), ``1 / (CALL_SHARE * rekognition_tps)`` seconds apart.

Starts stay a little under the call pace (0.95 < 0.97), so calls wait for their slot only
briefly; the 3% left of the quota absorbs network jitter between the slot and Rekognition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A tenth of the quota absorbs the per-second wobble of call times around the start rate.
QUOTA_SHARE = 0.95
CALL_SHARE = 0.97
# The SQS event source's MaximumConcurrency range (Lambda API reference, ScalingConfig).
MIN_CONCURRENCY = 2
MAX_CONCURRENCY = 1000
# ChangeMessageVisibility accepts at most 12 hours; a quarter of an hour between attempts is
# enough to ride out a throttling storm or a regional hiccup without waiting for hours.
MAX_REQUEUE_DELAY_SECONDS = 900


@dataclass(frozen=True, kw_only=True)
class Throughput:
    rekognition_tps: float
    photo_check_seconds: float
    max_receives: int
    requeue_delay_seconds: int

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.rekognition_tps <= 10_000:
            problems.append("rekognition_tps must be a positive number of calls per second")
        if not 0.5 <= self.photo_check_seconds <= 300:
            problems.append("photo_check_seconds must be within 0.5..300 (Express runs <= 5 min)")
        if not 2 <= self.max_receives <= 1000:
            problems.append("queue_max_receives must be within 2..1000")
        if not 0 <= self.requeue_delay_seconds <= MAX_REQUEUE_DELAY_SECONDS:
            problems.append(
                f"requeue_delay_seconds must be within 0..{MAX_REQUEUE_DELAY_SECONDS}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def photos_per_second(self) -> float:
        """The start rate the consumer holds to: a share of the quota."""
        return QUOTA_SHARE * self.rekognition_tps

    @property
    def calls_per_second(self) -> float:
        """The pace of the shared call limiter (racecheck.core.quota), per API."""
        return CALL_SHARE * self.rekognition_tps

    @property
    def concurrency(self) -> int:
        wanted = math.ceil(self.photos_per_second * self.photo_check_seconds)
        return max(MIN_CONCURRENCY, min(MAX_CONCURRENCY, wanted))

    @property
    def slot_seconds(self) -> float:
        """The shortest time one consumer slot spends on a photo (start-rate pacing)."""
        return self.concurrency / self.photos_per_second

    def requeue_delay(self, receive_count: int) -> int:
        """Seconds before a photo that failed transiently is tried again; doubles each time."""
        exponent = max(0, receive_count - 1)
        return int(min(MAX_REQUEUE_DELAY_SECONDS, self.requeue_delay_seconds * 2 ** exponent))

    def seconds_for(self, photos: int) -> float:
        """How long a backlog of ``photos`` takes to drain at the paced start rate."""
        return photos / self.photos_per_second
