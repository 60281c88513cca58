"""The runners table on DynamoDB: import a registration list, load runners by bib.

Items: ``bib`` (S, partition key), ``gender`` (S, M/F), ``age_min`` (N), ``age_max`` (N,
absent for open-ended categories), ``category`` (S), ``name`` (S, absent when unknown),
``extra`` (M of S). Importing puts every item whole, so a re-import of a corrected list
overwrites each bib's item instead of adding a second one; runners missing from the new
list are left in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from racecheck.core.dynamodb_batches import WriteResult, read_items, write_items
from racecheck.core.registry import Runner

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_dynamodb_item(runner: Runner) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in runner.to_item().items()}


def from_dynamodb_item(item: dict[str, Any]) -> Runner:
    return Runner.from_item({key: _deserializer.deserialize(value)
                             for key, value in item.items()})


def import_runners(runners: Sequence[Runner], *, table_name: str,
                   dynamodb_client: Any = None,
                   sleep: Callable[[float], None] = time.sleep) -> WriteResult:
    """Put every runner (idempotent per bib); retries unprocessed items with backoff."""
    bibs = [runner.bib for runner in runners]
    repeated = sorted({bib for bib in bibs if bibs.count(bib) > 1})
    if repeated:
        # BatchWriteItem rejects a batch that names one key twice; refuse before writing.
        raise ValueError(f"bibs listed more than once: {', '.join(repeated)}")
    return write_items([to_dynamodb_item(runner) for runner in runners], table_name=table_name,
                       client=dynamodb_client or _default_client(), sleep=sleep)


def load_runners(bibs: Iterable[str], *, table_name: str, dynamodb_client: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, Runner]:
    """Registered runners for the given bibs; bibs not in the table are simply absent."""
    wanted = list(dict.fromkeys(str(bib) for bib in bibs))
    items = read_items([{"bib": {"S": bib}} for bib in wanted], table_name=table_name,
                       client=dynamodb_client or _default_client(), sleep=sleep)
    runners = (from_dynamodb_item(item) for item in items)
    return {runner.bib: runner for runner in runners}


def _default_client() -> Any:
    import boto3

    return boto3.client("dynamodb")
