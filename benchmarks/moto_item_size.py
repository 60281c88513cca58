"""What building a verdict item costs moto, with its size check per attribute and once.

Usage: .venv/bin/python benchmarks/moto_item_size.py [--builds 500]

Checks one photo through the local stack (canned detector), takes the largest item the
results table then holds, and builds moto's ``Item`` from it ``--builds`` times inside the
local stack (its size checked once, ``environment._item_size_checked_once``) and outside
it (moto's own check at every attribute), alternating three times. Prints CPU ms per
build and the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from local_run import canned_backend

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))


def cpu_ms_per_build(item: dict[str, Any], builds: int) -> float:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    started = time.process_time()
    for _ in range(builds):
        Item(DynamoType(item["photo"]), DynamoType(item["version"]), item)
    return (time.process_time() - started) * 1000 / builds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=500)
    arguments = parser.parse_args()

    from racecheck.core.settings import Settings
    from racecheck.local.environment import local_stack
    from tests.conftest import make_jpeg

    checked_once, per_attribute = [], []
    for _ in range(3):
        with local_stack(settings=Settings.from_cdk_json(), backend=canned_backend) as stack:
            stack.check("bench/photo.jpg", make_jpeg(1600, 1200))
            items = stack.dynamodb.scan(TableName=stack.names.results_table)["Items"]
            item = max(items, key=lambda candidate: len(json.dumps(candidate)))
            checked_once.append(cpu_ms_per_build(item, arguments.builds))
        per_attribute.append(cpu_ms_per_build(item, arguments.builds))
    print(f"item of {len(item)} attributes ({len(json.dumps(item))} bytes as JSON), "
          f"{arguments.builds} builds x 3")
    print("moto's check at every attribute: "
          + ", ".join(f"{value:.2f}" for value in per_attribute) + " CPU ms per build")
    print("checked once (the local stack): "
          + ", ".join(f"{value:.2f}" for value in checked_once) + " CPU ms per build")
    print(f"ratio (best of each): {min(checked_once) / min(per_attribute):.2f}")


if __name__ == "__main__":
    main()
