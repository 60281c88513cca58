"""``racecheck run``: every photo of a folder through the real state machine, locally."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from racecheck.core.digest import compose_digest
from racecheck.core.registry import Runner
from racecheck.core.settings import Settings
from racecheck.local.environment import LocalStack, local_stack
from racecheck.local.rekognition import RekognitionBackend

RESULTS_FILE = "results.jsonl"
ALERTS_FILE = "alerts.jsonl"
SUSPECTS_FILE = "suspects.json"
# What the results file keeps of a record: the photo's own findings, not the bookkeeping.
RECORD_FIELDS = ("verdict", "reasons", "summary", "image", "bibs", "near_misses", "faces",
                 "links", "moderation_labels", "recorded_at")


@dataclass(frozen=True)
class InputPhoto:
    path: Path
    key: str  # path relative to the folder given, with forward slashes


@dataclass
class RunSummary:
    photos: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    rekognition_calls: Counter[str] = field(default_factory=Counter)
    estimated_cost_usd: float = 0.0
    alerts: int = 0
    execution_seconds: float = 0.0  # wall time of every execution, summed
    handler_seconds: float = 0.0  # of which inside handlers and detectors
    suspects: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    out_dir: Path | None = None

    @property
    def photos_per_second(self) -> float:
        return self.photos / self.seconds if self.seconds else 0.0

    @property
    def orchestration_seconds_per_photo(self) -> float:
        """Time an execution spends outside handlers and detectors: the interpreter's cost."""
        if not self.photos:
            return 0.0
        return max(0.0, self.execution_seconds - self.handler_seconds) / self.photos


def collect_photos(inputs: Sequence[Path]) -> list[InputPhoto]:
    """Every regular file named or found below a named folder, whatever it contains."""
    photos: list[InputPhoto] = []
    for given in inputs:
        if given.is_dir():
            for path in sorted(p for p in given.rglob("*") if p.is_file()):
                relative = path.relative_to(given).as_posix()
                if any(part.startswith(".") for part in Path(relative).parts):
                    continue  # .DS_Store, .git and friends are not photos anyone took
                photos.append(InputPhoto(path=path, key=relative))
        else:
            photos.append(InputPhoto(path=given, key=given.name))
    return photos


def _record_line(photo: InputPhoto, item: dict[str, Any] | None,
                 execution: dict[str, Any]) -> dict[str, Any]:
    if item is None:
        # The workflow records every photo; this only happens if the record itself failed.
        error = execution.get("error") or execution.get("status", "UNKNOWN")
        return {"key": photo.key, "verdict": "ERROR", "reasons": [f"ERROR:{error}"],
                "summary": str(execution.get("cause", ""))[:500], "error": error}
    line = {"key": photo.key, **{name: item.get(name) for name in RECORD_FIELDS}}
    line["error"] = (f"{item['error']}: {item.get('error_cause', '')}"[:500]
                     if item.get("error") else None)
    return line


def _check_one(stack: LocalStack, photo: InputPhoto, clock: list[float]) -> dict[str, Any]:
    try:
        body = photo.path.read_bytes()
    except OSError as error:
        return {"key": photo.key, "verdict": "ERROR", "reasons": ["ERROR:UnreadableFile"],
                "summary": str(error), "error": str(error)}
    event = stack.put_photo(photo.key, body)
    started = time.perf_counter()
    execution = stack.wait(stack.start(event))
    clock.append(time.perf_counter() - started)
    item = stack.result_item(key=photo.key, version=event["detail"]["object"]["version-id"])
    return _record_line(photo, item, execution)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def find_suspects(stack: LocalStack, settings: Settings) -> list[dict[str, Any]]:
    from racecheck.core.records import from_attribute_values

    suspects = []
    paginator = stack.dynamodb.get_paginator("scan")
    for page in paginator.paginate(TableName=stack.names.evidence_table):
        for raw in page["Items"]:
            item = from_attribute_values(raw)
            if item.get("alerted"):
                suspects.append(item)
    return sorted(suspects, key=lambda item: str(item["bib"]))


def run_photos(*, inputs: Sequence[Path], out_dir: Path, settings: Settings,
               backend: RekognitionBackend, runners_csv: Path | None = None,
               registered: Sequence[Runner] = (),
               in_flight: int = 2, passthrough_rekognition: bool = False,
               on_result: Callable[[dict[str, Any]], None] | None = None,
               photos: Iterable[InputPhoto] | None = None) -> RunSummary:
    """Check each photo as if it had been dropped into the ingest bucket.

    Results are appended to ``results.jsonl`` as each photo finishes, so an interrupted run
    keeps complete lines for every photo already done. The runners come from
    ``runners_csv`` when given, else from ``registered``.
    """
    from racecheck.core.registry import parse_runners_csv
    from racecheck.core.runners_store import import_runners

    to_check = list(photos) if photos is not None else collect_photos(inputs)
    runners = (parse_runners_csv(runners_csv.read_text(encoding="utf-8-sig"))
               if runners_csv else list(registered))
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(out_dir=out_dir)
    started = time.perf_counter()
    started_at = _utc_now()
    lines: list[dict[str, Any]] = []
    with local_stack(settings=settings, backend=backend,
                     passthrough_rekognition=passthrough_rekognition) as stack, \
            (out_dir / RESULTS_FILE).open("w", encoding="utf-8") as results:
        if runners:
            import_runners(runners, table_name=stack.names.runners_table,
                           dynamodb_client=stack.dynamodb)
        pool = ThreadPoolExecutor(max_workers=max(1, in_flight), thread_name_prefix="photo")
        execution_times: list[float] = []
        futures: dict[Future[dict[str, Any]], InputPhoto] = {
            pool.submit(_check_one, stack, photo, execution_times): photo
            for photo in to_check}
        recorded: set[Future[dict[str, Any]]] = set()

        def record(future: Future[dict[str, Any]]) -> None:
            photo = futures[future]
            try:
                line = future.result()
            except Exception as error:  # one photo's failure never stops the others
                line = {"key": photo.key, "verdict": "ERROR",
                        "reasons": [f"ERROR:{type(error).__name__}"],
                        "summary": str(error)[:500], "error": str(error)[:500]}
            recorded.add(future)
            lines.append(line)
            results.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            results.flush()
            summary.photos += 1
            summary.verdicts[line["verdict"]] += 1
            if on_result:
                on_result(line)

        try:
            for future in as_completed(futures):
                record(future)
        except KeyboardInterrupt:
            # Ctrl-C: start nothing new, let the photos already in flight finish (a second
            # Ctrl-C gives up on them), so every line written is a complete result.
            summary.interrupted = True
            unfinished = [future for future in futures if not future.cancel()]
            try:
                for future in as_completed(unfinished):
                    if future not in recorded and not future.cancelled():
                        record(future)
            except KeyboardInterrupt:
                pass
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        summary.seconds = time.perf_counter() - started
        summary.execution_seconds = sum(execution_times)
        summary.handler_seconds = stack.handler_clock.seconds
        alerts = stack.drain_alerts()
        if settings.review_alerts == "digest":
            # On AWS a schedule sends it every review_digest_minutes; a local run is one window.
            digest = compose_digest(lines, window_start=started_at,
                                    window_end=_utc_now())
            if digest:
                alerts.append(digest)
        with (out_dir / ALERTS_FILE).open("w", encoding="utf-8") as alerts_file:
            for alert in alerts:
                alerts_file.write(json.dumps(alert, ensure_ascii=False) + "\n")
        summary.alerts = len(alerts)
        summary.suspects = find_suspects(stack, settings)
        (out_dir / SUSPECTS_FILE).write_text(
            json.dumps(summary.suspects, indent=2, ensure_ascii=False, default=str),
            encoding="utf-8")
        summary.rekognition_calls = Counter(stack.rekognition.calls)
        summary.estimated_cost_usd = stack.rekognition.estimated_cost_usd()
    return summary
