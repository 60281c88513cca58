"""The timing table on DynamoDB: import a race's splits, load the reads of a photo's bibs.

Items: one per bib, ``bib`` (S, partition key) and ``splits`` (M: checkpoint name -> time
as ISO 8601 UTC text, ``2026-04-20T07:31:02.400Z``), readable in the console; plus one item
under the reserved key ``#course`` holding ``checkpoints`` (L of M ``name`` S, ``km`` N),
``runners`` (N) and ``imported_at`` (S). Its presence is what tells the Decide step that
timing data exists, so a registered bib with no item of its own is a bib whose chip was
never read. Importing puts every item whole: a re-import of corrected splits overwrites
each bib's item; bibs missing from the new file are left in place, as for the runners.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from racecheck.core.dynamodb_batches import WriteResult, get_items, put_items
from racecheck.core.timing import Checkpoint, RaceTiming, iso_utc

COURSE_KEY = "#course"


@dataclass(frozen=True)
class StoredTiming:
    """What the table holds for some bibs: the course, and the reads of those found."""

    course: tuple[Checkpoint, ...]
    reads: dict[str, dict[str, float]]


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def course_item(course: Iterable[Checkpoint], *, runners: int, imported_at: str
                ) -> dict[str, Any]:
    return {
        "bib": {"S": COURSE_KEY},
        "checkpoints": {"L": [{"M": {"name": {"S": checkpoint.name},
                                     "km": {"N": str(Decimal(str(checkpoint.km)))}}}
                              for checkpoint in course]},
        "runners": {"N": str(runners)},
        "imported_at": {"S": imported_at},
    }


def bib_item(bib: str, times: dict[str, float]) -> dict[str, Any]:
    return {"bib": {"S": bib},
            "splits": {"M": {name: {"S": iso_utc(seconds)} for name, seconds in times.items()}}}


def import_timing(timing: RaceTiming, *, table_name: str, dynamodb_client: Any = None,
                  sleep: Callable[[float], None] = time.sleep) -> WriteResult:
    """Put every bib's splits, then the course item.

    The course item goes last: a first import that stops halfway leaves no course item, so
    the Decide step never checks photos against a part of the splits.
    """
    client = dynamodb_client or _default_client()
    result = put_items([bib_item(bib, times) for bib, times in timing.reads.items()],
                         table_name=table_name, client=client, sleep=sleep)
    imported_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    course = course_item(timing.course, runners=len(timing.reads), imported_at=imported_at)
    client.put_item(TableName=table_name, Item=course)
    return WriteResult(table_name=table_name, written=result.written + 1,
                       batches=result.batches + 1, retries=result.retries)


def load_timing(bibs: Iterable[str], *, table_name: str, dynamodb_client: Any = None,
                sleep: Callable[[float], None] = time.sleep) -> StoredTiming | None:
    """The course and these bibs' reads, in one batch read; None when nothing was imported."""
    wanted = list(dict.fromkeys(str(bib) for bib in bibs if str(bib) != COURSE_KEY))
    items = get_items([{"bib": {"S": bib}} for bib in [COURSE_KEY, *wanted]],
                       table_name=table_name, client=dynamodb_client or _default_client(),
                       sleep=sleep)
    by_bib = {item["bib"]["S"]: item for item in items}
    course = by_bib.pop(COURSE_KEY, None)
    if course is None:
        return None
    checkpoints = tuple(sorted(
        (Checkpoint(entry["M"]["name"]["S"], float(entry["M"]["km"]["N"]))
         for entry in course["checkpoints"]["L"]), key=lambda checkpoint: checkpoint.km))
    reads = {bib: {name: _seconds(value["S"]) for name, value in item["splits"]["M"].items()}
             for bib, item in by_bib.items()}
    return StoredTiming(course=checkpoints, reads=reads)


def _default_client() -> Any:
    import boto3

    return boto3.client("dynamodb")
