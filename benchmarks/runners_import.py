"""Speed of `racecheck runners import` for a big race's list, against moto's DynamoDB.

Usage: .venv/bin/python benchmarks/runners_import.py [--runners 40000] [--latency-ms 20]

Prints, in one run and for the same list (synthetic: bibs 1..N, M/F/X, age categories,
names and a club column):
1. the CLI as an operator runs it (`racecheck runners import FILE --table T --yes`, click's
   runner in-process, moto's DynamoDB in-process): a first import, a re-import of the same
   list, and a re-import with 1% of the bibs changed hands and 1% withdrawn (`--prune`);
2. the write phase alone, three ways: one PutItem per runner (the baseline), batches of 25
   one at a time, and batches of 25 with 8 in flight (what the CLI does); ratios against
   the baseline;
3. the same batch writes with an injected delay per request (--latency-ms), the round trip
   the operator's machine pays to the table's region, which moto does not have;
and, computed rather than measured, how many 1 MB Scan pages the stored list makes on AWS
("A single Scan request can retrieve a maximum of 1 MB of data", DynamoDB Developer Guide,
"Scanning tables in DynamoDB").

moto answers in-process, so its figures are its own CPU cost, not DynamoDB's: its response
serialiser walks every member of every attribute value in Python (most of a Scan's time in
a profile), so reading 40,000 items back costs minutes in moto and a few 1 MB pages on AWS.
What carries over to AWS is the number of requests and how many are in flight. The machine
may be shared: compare the ratios within one run rather than seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

TABLE = "racecheck-bench-runners"
CATEGORIES = ("18-39", "40-44", "45-49", "50-54", "55-59", "60-64", "65-69", "70+")


def registration_csv(count: int, *, changed_every: int = 0, dropped_every: int = 0) -> str:
    """A list of ``count`` runners; every ``changed_every``-th bib handed to someone else and
    every ``dropped_every``-th runner left out (0: none)."""
    lines = ["bib,gender,age_category,name,club"]
    for number in range(1, count + 1):
        if dropped_every and number % dropped_every == 1:
            continue
        holder = "Transfer" if changed_every and number % changed_every == 0 else "Runner"
        gender = "MFX"[number % 3] if number % 50 == 0 else "MF"[number % 2]
        lines.append(f"{number},{gender},{CATEGORIES[number % len(CATEGORIES)]},"
                     f"{holder} {number},Club {number % 200}")
    return "\n".join(lines) + "\n"


def fresh_table() -> Any:
    import boto3

    client = boto3.client("dynamodb")
    client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "bib", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "bib", "AttributeType": "S"}])
    return client


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def cli_import(path: Path, *options: str) -> str:
    from click.testing import CliRunner

    from racecheck.cli import main

    result = CliRunner().invoke(main, ["runners", "import", str(path), "--table", TABLE,
                                       "--yes", *options])
    if result.exit_code != 0:
        raise SystemExit(f"import failed: {result.output}")
    return str(result.output.strip().splitlines()[-1]).split(": ", 1)[-1]


def put_each(client: Any, items: list[dict[str, Any]]) -> int:
    """The baseline: one PutItem request per runner."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    for item in items:
        client.put_item(TableName=TABLE, Item={key: serializer.serialize(value)
                                               for key, value in item.items()})
    return len(items)


class DelayedClient:
    """Sleeps before each request, as a round trip to the region would take."""

    def __init__(self, client: Any, seconds: float) -> None:
        self.client, self.seconds, self.requests = client, seconds, 0

    def batch_write_item(self, **request: Any) -> Any:
        self.requests += 1
        time.sleep(self.seconds)
        return self.client.batch_write_item(**request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=40_000)
    parser.add_argument("--latency-ms", type=float, default=20.0,
                        help="injected round trip per request in part 3")
    arguments = parser.parse_args()
    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                        "AWS_SESSION_TOKEN": "bench", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        os.environ[name] = value

    import moto
    from moto import mock_aws

    from racecheck.core.registry import parse_runners_csv
    from racecheck.core.runners_store import DEFAULT_WORKERS, plan_import, write_items

    count = arguments.runners
    workdir = Path(tempfile.mkdtemp(prefix="racecheck-bench-"))
    first_list = workdir / "runners.csv"
    first_list.write_text(registration_csv(count), encoding="utf-8")
    late_list = workdir / "runners-late.csv"
    late_list.write_text(registration_csv(count, changed_every=100, dropped_every=100),
                         encoding="utf-8")
    parse_seconds, runners = timed(lambda: parse_runners_csv(
        first_list.read_text(encoding="utf-8")))
    items = [runner.to_item() for runner in runners]
    print(f"{count:,} runners, moto {moto.__version__} (in-process DynamoDB), "
          f"{DEFAULT_WORKERS} batches in flight; parsing the CSV: {parse_seconds:.1f} s")
    stored = plan_import({}, runners, prune=False, at="2026-04-01T10:00:00.000Z",
                         source=first_list.name).items
    stored_bytes = sum(len(json.dumps(item, separators=(",", ":"))) for item in stored)
    print(f"Stored items with their first history entry: about {stored_bytes / count:.0f} "
          f"bytes each as JSON, so a Scan on AWS (at most 1 MB a page) reads the table in "
          f"about {math.ceil(stored_bytes / 2**20)} pages (computed, not measured)")

    print("\n1. The CLI, as run by an operator (seconds include parsing, reading the table, "
          "planning and writing):")
    with mock_aws():
        fresh_table()
        for label, path, options in (
                ("first import", first_list, ()),
                ("same list again", first_list, ()),
                ("1% handed over, 1% withdrawn, --prune", late_list, ("--prune",))):
            seconds, summary = timed(partial(cli_import, path, *options))
            print(f"   {label:<40} {seconds:7.1f} s   {summary}")

    print("\n2. The write phase alone (no read, no history), against moto:")
    baseline = None
    for label, write in (
            ("one PutItem per runner (baseline)", "put"),
            ("batches of 25, one at a time", 1),
            (f"batches of 25, {DEFAULT_WORKERS} in flight (the CLI)", DEFAULT_WORKERS)):
        with mock_aws():
            client = fresh_table()
            if write == "put":
                seconds, requests = timed(partial(put_each, client, items))
            else:
                seconds, result = timed(partial(write_items, items, table_name=TABLE,
                                                dynamodb_client=client, workers=int(write)))
                requests = result.batches
            baseline = baseline or seconds
            print(f"   {label:<44} {requests:>7,} requests {seconds:7.1f} s "
                  f"({baseline / seconds:4.1f}x the baseline's speed)")

    latency = arguments.latency_ms / 1000
    print(f"\n3. Batch writes with {arguments.latency_ms:.0f} ms injected per request "
          "(a round trip moto does not have):")
    for label, workers in (("one at a time", 1), (f"{DEFAULT_WORKERS} in flight", DEFAULT_WORKERS)):
        with mock_aws():
            delayed = DelayedClient(fresh_table(), latency)
            seconds, result = timed(partial(write_items, items, table_name=TABLE,
                                            dynamodb_client=delayed, workers=workers))
            print(f"   {label:<44} {result.batches:>7,} requests {seconds:7.1f} s "
                  f"(of which at least {result.batches * latency / workers:.1f} s waiting)")
    print(f"   one PutItem per runner would wait {count * latency:.0f} s for the round trips "
          "alone (computed, not run)")


if __name__ == "__main__":
    main()
