"""Batched DynamoDB writes and reads that finish their work or fail loudly.

BatchWriteItem takes at most 25 puts and BatchGetItem at most 100 keys per call, and either
may hand back part of its work as unprocessed (throttling, size limits); AWS asks callers to
retry that part with exponential backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
MAX_ATTEMPTS = 8
BACKOFF_SECONDS = 0.05


class UnprocessedItemsError(RuntimeError):
    """DynamoDB kept items or keys unprocessed after every retry."""


@dataclass(frozen=True)
class WriteResult:
    table_name: str
    written: int
    batches: int
    retries: int


def write_items(items: Sequence[dict[str, Any]], *, table_name: str, client: Any,
                sleep: Callable[[float], None] = time.sleep) -> WriteResult:
    """Put every item (already in attribute-value form), retrying unprocessed ones."""
    requests = [{"PutRequest": {"Item": item}} for item in items]
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
            raise UnprocessedItemsError(
                f"{len(pending)} item(s) still unprocessed after {MAX_ATTEMPTS} attempts")
    return WriteResult(table_name=table_name, written=len(requests), batches=batches,
                       retries=retries)


def read_items(keys: Sequence[dict[str, Any]], *, table_name: str, client: Any,
               sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """The items found for these keys (absent keys are simply missing), in no set order."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        pending = list(keys[start:start + BATCH_GET_LIMIT])
        for attempt in range(MAX_ATTEMPTS):
            response = client.batch_get_item(RequestItems={table_name: {"Keys": pending}})
            found += response.get("Responses", {}).get(table_name, [])
            pending = response.get("UnprocessedKeys", {}).get(table_name, {}).get("Keys", [])
            if not pending:
                break
            sleep(BACKOFF_SECONDS * 2**attempt)
        else:
            raise UnprocessedItemsError(
                f"{len(pending)} key(s) still unprocessed after {MAX_ATTEMPTS} attempts")
    return found
