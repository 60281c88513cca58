"""The runners table on DynamoDB: import a registration list, load runners by bib.

Items: ``bib`` (S, partition key), ``gender`` (S, M/F), ``age_min`` (N), ``age_max`` (N,
absent for open-ended categories), ``category`` (S), ``name`` (S, absent when unknown),
``extra`` (M of S). Importing puts every item whole, so a re-import of a corrected list
overwrites each bib's item instead of adding a second one; runners missing from the new
list are left in place.

One more item, under the key ``#number-lengths`` (no bib starts with ``#``), holds how many
numbers of the imported list have each count of digits (``lengths``, M of N): what the
race's bibs look like, which the verdict rules need to tell a fragment from a whole bib
(``rules.is_short``) without reading the whole table. It describes the list imported last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from racecheck.core.registry import Runner, number_lengths

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
MAX_ATTEMPTS = 8
BACKOFF_SECONDS = 0.05
NUMBER_LENGTHS_KEY = "#number-lengths"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class RunnersStoreError(RuntimeError):
    """DynamoDB kept items or keys unprocessed after every retry."""


@dataclass(frozen=True)
class ImportResult:
    table_name: str
    written: int
    batches: int
    retries: int


def to_dynamodb_item(runner: Runner) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in runner.to_item().items()}


def from_dynamodb_item(item: dict[str, Any]) -> Runner:
    return Runner.from_item({key: _deserializer.deserialize(value)
                             for key, value in item.items()})


def import_runners(runners: Sequence[Runner], *, table_name: str,
                   dynamodb_client: Any = None,
                   sleep: Callable[[float], None] = time.sleep) -> ImportResult:
    """Put every runner (idempotent per bib); retries unprocessed items with backoff."""
    bibs = [runner.bib for runner in runners]
    repeated = sorted({bib for bib in bibs if bibs.count(bib) > 1})
    if repeated:
        # BatchWriteItem rejects a batch that names one key twice; refuse before writing.
        raise ValueError(f"bibs listed more than once: {', '.join(repeated)}")
    client = dynamodb_client or _default_client()
    requests = [{"PutRequest": {"Item": to_dynamodb_item(runner)}} for runner in runners]
    requests.append({"PutRequest": {"Item": _number_lengths_item(runners)}})
    batches = retries = 0
    for start in range(0, len(requests), BATCH_WRITE_LIMIT):
        pending = requests[start:start + BATCH_WRITE_LIMIT]
        batches += 1
        for attempt in range(MAX_ATTEMPTS):
            response = client.batch_write_item(RequestItems={table_name: pending})
            pending = response.get("UnprocessedItems", {}).get(table_name, [])
            if not pending:
                break
            retries += 1
            sleep(BACKOFF_SECONDS * 2**attempt)
        else:
            raise RunnersStoreError(
                f"{len(pending)} runner(s) still unprocessed after {MAX_ATTEMPTS} attempts"
            )
    return ImportResult(table_name=table_name, written=len(runners), batches=batches,
                        retries=retries)


def _number_lengths_item(runners: Sequence[Runner]) -> dict[str, Any]:
    lengths = number_lengths(runners)
    return {"bib": {"S": NUMBER_LENGTHS_KEY},
            "lengths": {"M": {str(digits): {"N": str(count)}
                              for digits, count in sorted(lengths.items())}}}


def load_number_lengths(*, table_name: str, dynamodb_client: Any = None
                        ) -> dict[int, int] | None:
    """How many registered numbers have each count of digits; None before any import."""
    client = dynamodb_client or _default_client()
    item = client.get_item(TableName=table_name,
                           Key={"bib": {"S": NUMBER_LENGTHS_KEY}}).get("Item")
    if not item:
        return None
    return {int(digits): int(count["N"]) for digits, count in item["lengths"]["M"].items()}


def load_runners(bibs: Iterable[str], *, table_name: str, dynamodb_client: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, Runner]:
    """Registered runners for the given bibs; bibs not in the table are simply absent."""
    wanted = list(dict.fromkeys(str(bib) for bib in bibs if str(bib) != NUMBER_LENGTHS_KEY))
    client = dynamodb_client or _default_client()
    runners: dict[str, Runner] = {}
    for start in range(0, len(wanted), BATCH_GET_LIMIT):
        keys: list[dict[str, Any]] = [{"bib": {"S": bib}}
                                      for bib in wanted[start:start + BATCH_GET_LIMIT]]
        for attempt in range(MAX_ATTEMPTS):
            response = client.batch_get_item(RequestItems={table_name: {"Keys": keys}})
            for item in response.get("Responses", {}).get(table_name, []):
                runner = from_dynamodb_item(item)
                runners[runner.bib] = runner
            keys = response.get("UnprocessedKeys", {}).get(table_name, {}).get("Keys", [])
            if not keys:
                break
            sleep(BACKOFF_SECONDS * 2**attempt)
        else:
            raise RunnersStoreError(
                f"{len(keys)} bib(s) still unprocessed after {MAX_ATTEMPTS} attempts"
            )
    return runners


def _default_client() -> Any:
    import boto3

    return boto3.client("dynamodb")
