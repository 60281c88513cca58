"""Batched DynamoDB writes and reads that finish their work or fail loudly.

BatchWriteItem takes at most 25 puts and BatchGetItem at most 100 keys per call, and either
may hand back part of its work as unprocessed (throttling, size limits); AWS asks callers to
retry that part with exponential backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
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


def put_items(items: Sequence[dict[str, Any]], *, table_name: str, client: Any,
              sleep: Callable[[float], None] = time.sleep, workers: int = 1,
              on_written: Callable[[int], None] | None = None) -> WriteResult:
    """Put every item (already in attribute-value form), retrying unprocessed ones.

    ``workers`` batches go out at once (boto3 clients are thread-safe); ``on_written`` gets
    the number of items of each batch as it completes.
    """
    requests = [{"PutRequest": {"Item": item}} for item in items]
    batches = [requests[start:start + BATCH_WRITE_LIMIT]
               for start in range(0, len(requests), BATCH_WRITE_LIMIT)]

    def write(batch: list[dict[str, Any]]) -> int:
        """Send one batch until DynamoDB has taken all of it; returns the retries needed."""
        pending = batch
        for attempt in range(MAX_ATTEMPTS):
            response = client.batch_write_item(RequestItems={table_name: pending})
            pending = response.get("UnprocessedItems", {}).get(table_name, [])
            if not pending:
                return attempt
            sleep(BACKOFF_SECONDS * 2**attempt)
        raise UnprocessedItemsError(
            f"{len(pending)} item(s) still unprocessed after {MAX_ATTEMPTS} attempts")

    retries = 0
    with ThreadPoolExecutor(max_workers=max(1, workers),
                            thread_name_prefix="batch-write") as pool:
        futures = {pool.submit(write, batch): len(batch) for batch in batches}
        try:
            for future in as_completed(futures):
                retries += future.result()
                if on_written:
                    on_written(futures[future])
        except BaseException:
            # Stop sending batches not yet started; a re-run completes the import.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return WriteResult(table_name=table_name, written=len(requests), batches=len(batches),
                       retries=retries)


def get_items(keys: Sequence[dict[str, Any]], *, table_name: str, client: Any,
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
