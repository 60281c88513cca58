"""A local run's decisions: an append-only ``decisions.jsonl`` beside ``results.jsonl``.

``results.jsonl`` stays the machine's word, never rewritten; each decision is one line
(``key``, ``action``, ``by``, ``at``, ``note``), so the history of every photo is kept and
every decision is reversible. The runners' evidence as the run left it is in
``evidence.json``; the current evidence is that, with the decisions applied by the same
rule the deployed follow-up applies (racecheck.core.decisions), and ``suspects.json`` is
rewritten after each decision so the suspects list follows the reviewers.

Appends hold an exclusive lock on the file, so the review page and `racecheck decide`
can record decisions at the same time without losing one.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from racecheck.core.decisions import (
    apply_to_evidence,
    check_decision,
    current_state,
    decision_entry,
    runner_status,
    transition_plans,
)
from racecheck.core.settings import Settings, SettingsError

RESULTS_FILE = "results.jsonl"
DECISIONS_FILE = "decisions.jsonl"
EVIDENCE_FILE = "evidence.json"
SUSPECTS_FILE = "suspects.json"
# The local run's bucket (racecheck.local.environment.LocalNames): evidence names photos
# by bucket/key, as on AWS.
LOCAL_BUCKET = "racecheck-local-ingest"


class LocalRunError(RuntimeError):
    """The folder is not a local run's output, or one of its files is damaged."""


class UnknownPhoto(LookupError):
    """No photo with this key in the run."""


def photo_id(key: str) -> str:
    return f"{LOCAL_BUCKET}/{key}"


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise LocalRunError(f"{path} line {number} is not JSON: {error}") from error
    return lines


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise LocalRunError(f"{path} not found: run `racecheck run ... --out {run_dir}` first")
    return _json_lines(path)


def read_decisions(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every photo's decisions, oldest first, by key."""
    path = run_dir / DECISIONS_FILE
    by_key: dict[str, list[dict[str, Any]]] = {}
    if path.is_file():
        for line in _json_lines(path):
            entry = {name: value for name, value in line.items() if name != "key"}
            by_key.setdefault(str(line.get("key")), []).append(entry)
    return by_key


def with_decisions(record: Mapping[str, Any], decisions: Sequence[Mapping[str, Any]]
                   ) -> dict[str, Any]:
    """The record as the deployed table would hold it: its decisions and current state."""
    merged = {**record, "photo": photo_id(str(record.get("key", ""))),
              "bucket": LOCAL_BUCKET, "decisions": [dict(entry) for entry in decisions]}
    state = current_state(decisions)
    if state:
        merged["decision"] = state
    else:
        merged.pop("decision", None)
    return merged


def records(run_dir: Path) -> list[dict[str, Any]]:
    decisions = read_decisions(run_dir)
    return [with_decisions(record, decisions.get(str(record.get("key")), []))
            for record in read_results(run_dir)]


# ------------------------------------------------------------------------ evidence


def write_evidence(run_dir: Path, items: Iterable[Mapping[str, Any]], settings: Settings
                   ) -> None:
    """The runners' evidence as the run left it, with the thresholds it was judged by."""
    document = {"settings": settings.to_dict(),
                "runners": sorted((dict(item) for item in items), key=lambda i: str(i["bib"]))}
    _write_json(run_dir / EVIDENCE_FILE, document)


def _write_json(path: Path, value: Any) -> None:
    # A reader never sees half a file: write aside, then rename over.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str),
                         encoding="utf-8")
    os.replace(temporary, path)


def read_evidence(run_dir: Path) -> tuple[list[dict[str, Any]], Settings | None]:
    """(runners' evidence, the run's thresholds); empty for a run made before decisions."""
    path = run_dir / EVIDENCE_FILE
    if not path.is_file():
        return [], None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return list(document["runners"]), Settings.from_mapping(document["settings"])
    except (json.JSONDecodeError, KeyError, TypeError, SettingsError) as error:
        raise LocalRunError(f"{path} is damaged: {error}") from error


def current_evidence(items: Iterable[Mapping[str, Any]],
                     decided: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Evidence items by bib, with every decided record's state applied."""
    by_bib = {str(item["bib"]): dict(item) for item in items}
    for record in decided:
        state = current_state(record.get("decisions"))
        for plan in transition_plans(record, None, state):
            if plan.bib in by_bib:
                apply_to_evidence(by_bib[plan.bib], plan)
    return by_bib


def _with_status(item: dict[str, Any], settings: Settings) -> dict[str, Any]:
    return {**item, "status": runner_status(item, settings),
            "dismissed": len(item.get("dismissed_photos") or ()),
            "confirmed": len(item.get("confirmed_photos") or ())}


def runners_evidence(run_dir: Path, records_: Sequence[Mapping[str, Any]] | None = None,
                     settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Every runner's current evidence with its status (confirmed, suspect, cleared)."""
    items, run_settings = read_evidence(run_dir)
    settings = run_settings or settings
    if settings is None:
        raise LocalRunError(f"{run_dir / EVIDENCE_FILE} not found and no settings given")
    decided = [record for record in (records(run_dir) if records_ is None else records_)
               if record.get("decisions")]
    return {bib: _with_status(item, settings)
            for bib, item in current_evidence(items, decided).items()}


def suspects(run_dir: Path, records_: Sequence[Mapping[str, Any]] | None = None
             ) -> list[dict[str, Any]]:
    """The runners reviewers must know about: alerted (suspect or cleared) or confirmed.

    A run made before decisions existed has no evidence.json: its suspects.json is shown
    as it was written.
    """
    if not (run_dir / EVIDENCE_FILE).is_file():
        path = run_dir / SUSPECTS_FILE
        return list(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else []
    return [item for _, item in sorted(runners_evidence(run_dir, records_).items())
            if item["status"]]


def suspects_of_run(run_dir: Path) -> list[dict[str, Any]]:
    """The suspects of a run folder, with its decisions; fails clearly on a wrong folder."""
    read_results(run_dir)
    return suspects(run_dir)


def refresh_suspects(run_dir: Path) -> list[dict[str, Any]]:
    current = suspects(run_dir)
    if (run_dir / EVIDENCE_FILE).is_file():
        _write_json(run_dir / SUSPECTS_FILE, current)
    return current


# ------------------------------------------------------------------------ deciding


def record_decision(run_dir: Path, key: str, action: str, *, by: str, at: str,
                    note: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """Append one decision on ``key``; returns (the record with it, the entry).

    Raises UnknownPhoto, or DecisionRefused (never flagged, already in that state).
    """
    by_key = {str(record.get("key")): record for record in read_results(run_dir)}
    if key not in by_key:
        raise UnknownPhoto(f"no photo {key!r} in {run_dir / RESULTS_FILE}")
    path = run_dir / DECISIONS_FILE
    with path.open("a+", encoding="utf-8") as log:
        fcntl.flock(log, fcntl.LOCK_EX)  # released when the file closes
        history = read_decisions(run_dir).get(key, [])
        record = with_decisions(by_key[key], history)
        check_decision(record, action)
        entry = decision_entry(action, by=by, at=at, note=note)
        log.write(json.dumps({"key": key, **entry}, ensure_ascii=False) + "\n")
        log.flush()
        os.fsync(log.fileno())
        refresh_suspects(run_dir)
    return with_decisions(by_key[key], [*history, entry]), entry
