"""``racecheck run``: every photo of a folder through the real state machine, locally."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from racecheck.core.digest import compose_digest
from racecheck.core.photo_timing import PhotoPoints
from racecheck.core.registry import Runner
from racecheck.core.review_links import ReviewLinks
from racecheck.core.settings import Settings
from racecheck.core.timing import RaceTiming
from racecheck.local import decisions_file
from racecheck.local.environment import Delivery, LocalStack, local_stack
from racecheck.local.rekognition import RekognitionBackend

RESULTS_FILE = decisions_file.RESULTS_FILE
ALERTS_FILE = "alerts.jsonl"
SUSPECTS_FILE = decisions_file.SUSPECTS_FILE
# What the results file keeps of a record: the photo's own findings, not the bookkeeping.
# How often the emulated event sources look for new work while nothing else is happening.
IDLE_POLL_SECONDS = 0.02
STREAM_POLL_SECONDS = 0.25
RECORD_FIELDS = ("verdict", "reasons", "summary", "image", "bibs", "near_misses", "faces",
                 "links", "moderation_labels", "recorded_at", "evidence")


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
    # Wall time in the pipeline's Lambdas (the consumer with the runs it waits for, and the
    # stream handlers), summed over threads; of which inside the Task handlers and detectors.
    execution_seconds: float = 0.0
    handler_seconds: float = 0.0
    handler_cpu_seconds: float = 0.0
    follow_up_failures: int = 0  # stream records set aside after every retry
    suspects: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    out_dir: Path | None = None

    @property
    def photos_per_second(self) -> float:
        return self.photos / self.seconds if self.seconds else 0.0

    @property
    def orchestration_seconds_per_photo(self) -> float:
        """Pipeline time outside the Task handlers and detectors: the emulation's cost."""
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
                 delivery: Delivery | None) -> dict[str, Any]:
    if item is None:
        # Every path records a verdict; only a message that never reached the workflow can
        # end without one (the deployed stack's dead-letter alarm covers that case).
        if delivery is None:
            return {"key": photo.key, "verdict": "ERROR", "reasons": ["ERROR:NoRecord"],
                    "summary": "its message left the queue without a verdict "
                               "(see the dead-letter queue)",
                    "error": "NoRecord"}
        reason = "DeadLettered" if delivery.dead_lettered else "NoRecord"
        return {"key": photo.key, "verdict": "ERROR", "reasons": [f"ERROR:{reason}"],
                "summary": f"no record after {delivery.receive_count} attempt(s)",
                "error": reason}
    line = {"key": photo.key, **{name: item.get(name) for name in RECORD_FIELDS}}
    line["error"] = (f"{item['error']}: {item.get('error_cause', '')}"[:500]
                     if item.get("error") else None)
    return line


class _Feeder:
    """Uploads and queues photos a few at a time, as the pollers take them.

    Photos in flight are counted by key, and each is finished once: whatever the queue
    does (a message delivered again, as SQS standard queues deliver "at least once" (SQS
    Developer Guide, "Amazon SQS standard queues"); a message gone to the dead-letter queue
    without a delivery that said so), the run ends when every photo queued has its line.
    """

    def __init__(self, stack: LocalStack, photos: Sequence[InputPhoto], ahead: int) -> None:
        self._stack = stack
        self._pending = list(reversed(photos))
        self._ahead = ahead
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self.by_key: dict[str, InputPhoto] = {}
        self.version_of: dict[str, str] = {}  # the S3 version each photo was uploaded as
        self.unreadable: list[tuple[InputPhoto, OSError]] = []
        self.stopped = False

    def top_up(self) -> None:
        with self._lock:
            while not self.stopped and self._pending and len(self._in_flight) < self._ahead:
                photo = self._pending.pop()
                try:
                    body = photo.path.read_bytes()
                except OSError as error:
                    self.unreadable.append((photo, error))
                    continue
                self.by_key[photo.key] = photo
                event = self._stack.put_photo(photo.key, body)
                self.version_of[photo.key] = event["detail"]["object"]["version-id"]
                self._stack.enqueue(event)
                self._in_flight.add(photo.key)

    def finish(self, key: str) -> bool:
        """Whether this is the photo's first finish (only the first one is recorded)."""
        with self._lock:
            if key not in self._in_flight:
                return False
            self._in_flight.discard(key)
            return True

    def stranded(self) -> list[str]:
        """Photos still in flight when nothing is left to feed and the queue holds no
        message, visible or not: their messages left without a delivery that finished."""
        with self._lock:
            if self._pending or not self._in_flight:
                return []
        if not self._stack.queue_is_empty():
            return []
        with self._lock:
            return sorted(self._in_flight)

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self.stopped or (not self._pending and not self._in_flight)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def runners_evidence(stack: LocalStack) -> list[dict[str, Any]]:
    """Every runner's evidence item, as the evidence table holds it at the end of the run."""
    from racecheck.core.records import from_attribute_values

    paginator = stack.dynamodb.get_paginator("scan")
    return [from_attribute_values(raw)
            for page in paginator.paginate(TableName=stack.names.evidence_table)
            for raw in page["Items"]]


def run_photos(*, inputs: Sequence[Path], out_dir: Path, settings: Settings,
               backend: RekognitionBackend, runners_csv: Path | None = None,
               registered: Sequence[Runner] = (),
               in_flight: int = 2, passthrough_rekognition: bool = False,
               on_result: Callable[[dict[str, Any]], None] | None = None,
               photos: Iterable[InputPhoto] | None = None, timing: RaceTiming | None = None,
               photo_points: PhotoPoints | None = None) -> RunSummary:
    """Check each photo as if it had been dropped into the ingest bucket.

    Each photo takes the deployed path: its event is queued, the queue consumer runs the
    state machine, the follow-up handlers read the tables' streams. ``in_flight`` pollers
    deliver messages at once. Results are appended to ``results.jsonl`` as each photo
    finishes, so an interrupted run keeps complete lines for every photo already done. The
    runners come from ``runners_csv`` when given, else from ``registered``.
    """
    from racecheck.core.registry import parse_runners_csv
    from racecheck.core.runners_store import import_runners
    from racecheck.core.timing_store import import_timing

    to_check = list(photos) if photos is not None else collect_photos(inputs)
    runners = (parse_runners_csv(runners_csv.read_text(encoding="utf-8-sig"))
               if runners_csv else list(registered))
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(out_dir=out_dir)
    started = time.perf_counter()
    started_at = _utc_now()
    lines: list[dict[str, Any]] = []
    pollers = max(1, in_flight)
    # Alerts name the command that opens their photo: `racecheck review --local OUT ...`.
    review_links = ReviewLinks(local_dir=str(out_dir))
    with local_stack(settings=settings, backend=backend,
                     passthrough_rekognition=passthrough_rekognition,
                     photo_points=photo_points, review_dir=out_dir) as stack, \
            (out_dir / RESULTS_FILE).open("w", encoding="utf-8") as results:
        if runners:
            import_runners(runners, table_name=stack.names.runners_table,
                           dynamodb_client=stack.dynamodb)
        if timing is not None:
            import_timing(timing, table_name=stack.names.timing_table,
                          dynamodb_client=stack.dynamodb)
        feeder = _Feeder(stack, to_check, ahead=2 * pollers)
        # Pollers hand finished lines to this thread, which writes them and reports them:
        # Ctrl-C and the progress bar both live here.
        finished: queue.Queue[dict[str, Any]] = queue.Queue()

        def record(line: dict[str, Any]) -> None:
            lines.append(line)
            results.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            results.flush()
            summary.photos += 1
            summary.verdicts[line["verdict"]] += 1
            if on_result:
                on_result(line)

        def finish(key: str, version: str, delivery: Delivery | None) -> None:
            photo = feeder.by_key[key]
            try:
                item = stack.result_item(key=photo.key, version=version)
                line = _record_line(photo, item, delivery)
            except Exception as error:  # one photo's failure never stops the others
                line = {"key": photo.key, "verdict": "ERROR",
                        "reasons": [f"ERROR:{type(error).__name__}"],
                        "summary": str(error)[:500], "error": str(error)[:500]}
            if feeder.finish(photo.key):
                stack.forget_photo(photo.key, version)
                finished.put(line)

        def finish_delivery(delivery: Delivery) -> None:
            detail = delivery.event["detail"]
            finish(detail["object"]["key"], detail["object"]["version-id"], delivery)

        def finish_stranded() -> None:
            for key in feeder.stranded():
                finish(key, feeder.version_of[key], None)

        def poll() -> None:
            while not feeder.stopped:
                feeder.top_up()
                if feeder.exhausted:
                    return
                delivery = stack.deliver()
                if delivery is None:
                    finish_stranded()
                    # Another poller holds the last photos; each receive costs CPU the
                    # detectors need, so wait a little before asking again.
                    time.sleep(IDLE_POLL_SECONDS)
                elif delivery.done:
                    finish_delivery(delivery)

        def record_finished(timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                try:
                    record(finished.get(timeout=left))
                except queue.Empty:
                    return

        pool = ThreadPoolExecutor(max_workers=pollers, thread_name_prefix="photo")
        workers = [pool.submit(poll) for _ in range(pollers)]
        try:
            while not all(worker.done() for worker in workers):
                stack.pump_streams()
                record_finished(STREAM_POLL_SECONDS)
                if any(worker.done() and worker.exception() for worker in workers):
                    # A poller died holding a photo that will never finish: stop the
                    # others, which would wait for it forever, and raise its error below.
                    feeder.stopped = True
            for worker in workers:
                worker.result()
        except KeyboardInterrupt:
            # Ctrl-C: start nothing new, let the photos already in flight finish (a second
            # Ctrl-C gives up on them), so every line written is a complete result.
            summary.interrupted = True
            feeder.stopped = True
            with contextlib.suppress(KeyboardInterrupt):
                wait(workers)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(KeyboardInterrupt):
            while not finished.empty():
                record(finished.get())
        for photo, error in feeder.unreadable:
            record({"key": photo.key, "verdict": "ERROR", "reasons": ["ERROR:UnreadableFile"],
                    "summary": str(error), "error": str(error)})
        while stack.pump_streams():
            pass
        summary.seconds = time.perf_counter() - started
        summary.execution_seconds = stack.pipeline_seconds
        summary.handler_seconds = stack.handler_clock.seconds
        summary.handler_cpu_seconds = stack.handler_clock.cpu_seconds
        summary.follow_up_failures = len(stack.stream_failures)
        alerts = stack.drain_alerts()
        if settings.review_alerts == "digest":
            # On AWS a schedule sends it every review_digest_minutes; a local run is one window.
            digest = compose_digest(lines, window_start=started_at,
                                    window_end=_utc_now(), review_links=review_links)
            if digest:
                alerts.append(digest)
        with (out_dir / ALERTS_FILE).open("w", encoding="utf-8") as alerts_file:
            for alert in alerts:
                alerts_file.write(json.dumps(alert, ensure_ascii=False) + "\n")
        summary.alerts = len(alerts)
        # Decisions already in OUT (a run again into the same folder) still apply.
        decisions_file.write_evidence(out_dir, runners_evidence(stack), settings)
        summary.suspects = decisions_file.refresh_suspects(out_dir)
        summary.rekognition_calls = Counter(stack.rekognition.calls)
        summary.estimated_cost_usd = stack.rekognition.estimated_cost_usd()
    return summary
