"""The runners table on DynamoDB: import a registration list, load runners by bib.

Items, one per bib (``bib``, S, the partition key):

- a registered runner: ``gender`` (S: M, F or X), ``age_min`` (N), ``age_max`` (N, absent for
  open-ended categories), ``category`` (S), ``name`` (S, absent when unknown), ``extra``
  (M of S), and ``history``;
- a bib whose runner was removed by ``--prune``: only ``removed_at`` (S) and ``history``.
  It counts as not registered (a photo of it gets ``BIB_UNREGISTERED``), and its history
  stays readable.

``history`` (L of M, absent on items imported before it existed) holds one entry per change
of the bib's registration, oldest first: ``at`` (S, UTC ISO time of the import), ``change``
(S: ``added``, ``updated`` or ``removed``), ``source`` (S, the file's name), ``old`` and
``new`` (M, the registration without the bib; absent for an addition and a removal). The
entry is written in the same PutItem as the change itself, so a change never goes without
its record.

An import reads the table first and writes only the bibs whose registration changed, so
re-importing an unchanged list costs one scan and no writes. Batches of 25 go out in
parallel (the CLI runs far from the table: each request is a network round trip), and
items DynamoDB leaves unprocessed are retried with exponential backoff, as the
BatchWriteItem reference asks ("we strongly recommend that you use an exponential backoff
algorithm"); boto3's ``Table.batch_writer`` re-sends them at once, without backoff, which is
why it is not used here. An import is not atomic: if it stops half-way, running it again
completes it (the bibs already written compare equal and are skipped). Two imports must not
run at the same time: each reads the table, then writes what differs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from racecheck.core.registry import Runner

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
MAX_ATTEMPTS = 8
BACKOFF_SECONDS = 0.05
# Requests in flight during an import. Each one is a round trip from the operator's machine;
# 8 keeps a new on-demand table (4,000 writes/s at first) busy without throttling it.
DEFAULT_WORKERS = 8

ADDED = "added"
UPDATED = "updated"
REMOVED = "removed"
REMOVED_AT = "removed_at"
HISTORY = "history"

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


@dataclass(frozen=True)
class Change:
    """One change of a bib's registration; ``old``/``new`` are None for an add/a removal."""

    bib: str
    change: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass(frozen=True)
class ImportPlan:
    """What importing a list changes; ``items`` are the whole items to put, history included."""

    changes: list[Change]
    unchanged: int
    not_in_file: list[str]  # registered bibs the file lacks, kept because prune was off
    items: list[dict[str, Any]] = field(repr=False)

    def count(self, change: str) -> int:
        return sum(entry.change == change for entry in self.changes)


def registration(runner: Runner) -> dict[str, Any]:
    """The runner's item without the bib: what a history entry records."""
    item = runner.to_item()
    del item["bib"]
    return item


def is_registered(item: Mapping[str, Any]) -> bool:
    return REMOVED_AT not in item


def plan_import(current: Mapping[str, Mapping[str, Any]], runners: Sequence[Runner], *,
                prune: bool, at: str, source: str) -> ImportPlan:
    """Compare a parsed list with the stored items (plain values, by bib); write nothing.

    A bib is ``updated`` when any part of its registration differs (gender, ages, category,
    name, extra columns): a bib officially handed to another runner shows up as an update
    whose old and new names differ.
    """
    _refuse_repeated_bibs(runners)
    changes: list[Change] = []
    items: list[dict[str, Any]] = []
    unchanged = 0

    def record(bib: str, change: Change, item: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"at": at, "change": change.change, "source": source}
        if change.old is not None:
            entry["old"] = change.old
        if change.new is not None:
            entry["new"] = change.new
        history = list(current.get(bib, {}).get(HISTORY) or [])
        changes.append(change)
        items.append({**item, HISTORY: [*history, entry]})

    for runner in runners:
        stored = current.get(runner.bib)
        new = registration(runner)
        if stored is None or not is_registered(stored):
            record(runner.bib, Change(runner.bib, ADDED, None, new), runner.to_item())
            continue
        old = registration(Runner.from_item(stored))
        if old == new:
            unchanged += 1
        else:
            record(runner.bib, Change(runner.bib, UPDATED, old, new), runner.to_item())
    in_file = {runner.bib for runner in runners}
    absent = sorted((bib for bib, item in current.items()
                     if bib not in in_file and is_registered(item)), key=_bib_order)
    if prune:
        for bib in absent:
            old = registration(Runner.from_item(current[bib]))
            record(bib, Change(bib, REMOVED, old, None), {"bib": bib, REMOVED_AT: at})
    return ImportPlan(changes=changes, unchanged=unchanged,
                      not_in_file=[] if prune else absent, items=items)


def history_of(items: Iterable[Mapping[str, Any]], *, bib: str | None = None,
               include_added: bool = False) -> list[dict[str, Any]]:
    """Changes as flat rows, oldest first: every change of one bib, or every update and
    removal of all bibs (additions only with ``include_added``: a first import adds all)."""
    rows = []
    for item in items:
        if bib is not None and str(item["bib"]) != bib:
            continue
        for entry in item.get(HISTORY) or []:
            if bib is None and not include_added and entry.get("change") == ADDED:
                continue
            rows.append({"bib": str(item["bib"]), "at": entry.get("at"),
                         "change": entry.get("change"), "old": entry.get("old"),
                         "new": entry.get("new"), "source": entry.get("source")})
    return sorted(rows, key=lambda row: (str(row["at"]), _bib_order(row["bib"])))


def from_dynamodb_item(item: dict[str, Any]) -> Runner:
    return Runner.from_item({key: _deserializer.deserialize(value)
                             for key, value in item.items()})


def import_runners(runners: Sequence[Runner], *, table_name: str,
                   dynamodb_client: Any = None,
                   sleep: Callable[[float], None] = time.sleep) -> ImportResult:
    """Put every runner whole, without reading the table first (a fresh table's import)."""
    _refuse_repeated_bibs(runners)
    return write_items([runner.to_item() for runner in runners], table_name=table_name,
                       dynamodb_client=dynamodb_client, sleep=sleep, workers=1)


def read_items(*, table_name: str, dynamodb_client: Any = None) -> dict[str, dict[str, Any]]:
    """Every item of the runners table, as plain values by bib (a strongly consistent scan,
    so the import that just finished is seen)."""
    from racecheck.core.records import from_attribute_values

    client = dynamodb_client or _default_client()
    items: dict[str, dict[str, Any]] = {}
    for page in client.get_paginator("scan").paginate(TableName=table_name,
                                                      ConsistentRead=True):
        for raw in page["Items"]:
            item = from_attribute_values(raw)
            items[str(item["bib"])] = item
    return items


def write_items(items: Sequence[Mapping[str, Any]], *, table_name: str,
                dynamodb_client: Any = None, sleep: Callable[[float], None] = time.sleep,
                workers: int = DEFAULT_WORKERS,
                on_written: Callable[[int], None] | None = None) -> ImportResult:
    """Put the items in batches of 25, ``workers`` batches in flight; ``on_written`` gets
    the number of items of each batch as it completes."""
    client = dynamodb_client or _default_client()
    requests = [{"PutRequest": {"Item": _serialize(item)}} for item in items]
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
        raise RunnersStoreError(
            f"{len(pending)} runner(s) still unprocessed after {MAX_ATTEMPTS} attempts")

    retries = 0
    with ThreadPoolExecutor(max_workers=max(1, workers),
                            thread_name_prefix="runners-import") as pool:
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
    return ImportResult(table_name=table_name, written=len(requests), batches=len(batches),
                        retries=retries)


def load_runners(bibs: Iterable[str], *, table_name: str, dynamodb_client: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, Runner]:
    """Registered runners for the given bibs; bibs not in the table, or removed, are absent."""
    wanted = list(dict.fromkeys(str(bib) for bib in bibs))
    client = dynamodb_client or _default_client()
    runners: dict[str, Runner] = {}
    for start in range(0, len(wanted), BATCH_GET_LIMIT):
        keys: list[dict[str, Any]] = [{"bib": {"S": bib}}
                                      for bib in wanted[start:start + BATCH_GET_LIMIT]]
        for attempt in range(MAX_ATTEMPTS):
            response = client.batch_get_item(RequestItems={table_name: {"Keys": keys}})
            for item in response.get("Responses", {}).get(table_name, []):
                if REMOVED_AT in item:
                    continue
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


def _serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def _refuse_repeated_bibs(runners: Sequence[Runner]) -> None:
    counts = Counter(runner.bib for runner in runners)
    repeated = sorted(bib for bib, count in counts.items() if count > 1)
    if repeated:
        # BatchWriteItem rejects a batch that names one key twice; refuse before writing.
        raise ValueError(f"bibs listed more than once: {', '.join(repeated)}")


def _bib_order(bib: str) -> tuple[int, str]:
    """Numeric bibs in number order, then the others."""
    return (int(bib), bib) if bib.isdigit() else (1 << 62, bib)


def _default_client() -> Any:
    import boto3

    return boto3.client("dynamodb")
