"""The local registration state: ``runners.jsonl`` in a local run's output folder.

``racecheck runners import FILE --local DIR`` keeps it, one item per line in the runners
table's layout (history and removed bibs included, see ``racecheck.core.runners_store``),
so ``--prune``, ``--dry-run`` and ``racecheck runners history --local DIR`` behave as they
do on AWS. ``racecheck run PHOTOS --out DIR`` checks against it when no ``--runners`` file
is given.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from racecheck.core.registry import Runner
from racecheck.core.runners_store import ImportPlan, is_registered

RUNNERS_FILE = "runners.jsonl"


class RunnersFileError(ValueError):
    """``runners.jsonl`` cannot be read back."""


def runners_path(folder: Path) -> Path:
    return folder / RUNNERS_FILE


def read_items(folder: Path) -> dict[str, dict[str, Any]]:
    """Every stored item by bib; empty when the folder has no registrations yet."""
    path = runners_path(folder)
    if not path.is_file():
        return {}
    items: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            items[str(item["bib"])] = item
        except (ValueError, KeyError, TypeError) as error:
            raise RunnersFileError(f"{path} line {number}: {error}") from error
    return items


def apply_plan(folder: Path, current: Mapping[str, dict[str, Any]], plan: ImportPlan) -> None:
    """Write the state after the plan; all or nothing (a temporary file, then a rename)."""
    items = {**current, **{str(item["bib"]): item for item in plan.items}}
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".runners-", suffix=".jsonl")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as output:
            for item in items.values():
                output.write(json.dumps(item, ensure_ascii=False) + "\n")
        os.replace(temporary, runners_path(folder))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def registered_runners(folder: Path) -> list[Runner]:
    """The runners currently registered in the folder (removed bibs left out)."""
    try:
        return [Runner.from_item(item) for item in read_items(folder).values()
                if is_registered(item)]
    except (ValueError, KeyError) as error:
        raise RunnersFileError(f"{runners_path(folder)}: {error}") from error
