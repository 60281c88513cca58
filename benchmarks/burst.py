"""Race day on AWS, simulated: N photos uploaded over S seconds against a Rekognition quota.

A discrete-event simulation of the deployed pipeline, driven by the real parameters:

- the state machine's retries (IntervalSeconds, MaxAttempts, BackoffRate, MaxDelaySeconds,
  full jitter) are read from ``statemachine/photo_check.asl.json``;
- the queue's pace and patience (consumer concurrency, per-slot pacing, requeue delays,
  receives before the dead-letter queue) come from ``cdk.json`` through the same
  ``Throughput`` the stack deploys (``--tps`` overrides ``rekognition_tps``);
- the SQS event source scales as AWS documents it: five concurrent invocations at first,
  then up to 300 more a minute (Lambda developer guide, "Configuring scaling behavior for
  SQS event source mappings"), never above ``MaximumConcurrency``;
- each handler's SDK client retries a throttled call once after a random wait of up to a
  second (botocore's standard retry mode, ``max_attempts`` 2, as ``lambdas/shared.py``);
- Rekognition admits at most ``--tps`` calls per API in any one-second window and throttles
  the rest; ``--fault-share`` of admitted calls fail with a 5xx.

Service latencies are assumptions (no AWS account here), lognormal around the medians in
``LATENCY``; change them with ``--latency-scale`` to see how the figures move.

The baseline is the design before the queue, in the same run: every upload starts its own
Express run at once, the runs retry as that design's ASL did (5 retries, 1 s doubling to
16 s, full jitter), and a photo whose retries run out is recorded ERROR, for good.

    .venv/bin/python benchmarks/burst.py --photos 20000 --upload-seconds 120 --tps 50 --json
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
from collections import Counter, defaultdict, deque
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from racecheck.core.quota import MAX_WAIT_SECONDS as QUOTA_MAX_WAIT_SECONDS
from racecheck.core.settings import CDK_JSON, REPOSITORY_ROOT
from racecheck.core.throughput import Throughput
from stacks.config import throughput_from_context

DEFINITION_PATH = REPOSITORY_ROOT / "statemachine" / "photo_check.asl.json"

APIS = ("DetectModerationLabels", "DetectText", "DetectFaces")
TASK_OF_API = {"DetectModerationLabels": "Moderate", "DetectText": "ReadBibs",
               "DetectFaces": "AnalyzeFaces"}
# Median seconds (assumed): Lambda invoke overhead, the header check (S3 ranged GET), a
# DynamoDB call, each Rekognition API on a race photo, Decide (BatchGetItem + rules).
LATENCY = {"invoke": 0.03, "check_image": 0.12, "dynamodb": 0.01, "decide": 0.06,
           "DetectModerationLabels": 0.45, "DetectText": 0.9, "DetectFaces": 0.6,
           "throttled": 0.05, "start_sync": 0.05, "event_delivery": 0.3, "transit": 0.015}
LATENCY_SPREAD = 0.35  # sigma of the lognormal
# Lambda: an SQS event source starts with 5 concurrent batches and adds up to 300 a minute.
ESM_INITIAL_CONCURRENCY = 5
ESM_SCALE_UP_PER_SECOND = 300 / 60
SDK_RETRY_ATTEMPTS = 2  # lambdas/shared.py: botocore standard mode, max_attempts 2
BASELINE_RETRIER = {"IntervalSeconds": 1, "MaxAttempts": 5, "BackoffRate": 2.0,
                    "MaxDelaySeconds": 16, "JitterStrategy": "FULL"}
PHOTO_MIX = {"rejected": 0.01, "no_bib": 0.2, "fail": 0.02}


@dataclass(frozen=True)
class Photo:
    index: int
    uploaded_at: float
    rejected: bool
    has_bib: bool
    fails: bool  # earns a FAIL verdict (an alert) once checked


@dataclass
class Results:
    photos: int = 0
    recorded: dict[int, str] = field(default_factory=dict)  # photo -> verdict
    finished_at: float = 0.0
    attempts: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    throttled: int = 0
    dead_lettered: int = 0
    runs: int = 0

    def summary(self, photos: list[Photo], tps: float, upload_seconds: float) -> dict[str, Any]:
        first_upload = min(photo.uploaded_at for photo in photos)
        errors = sum(1 for verdict in self.recorded.values() if verdict == "ERROR")
        failing = {photo.index for photo in photos if photo.fails}
        return {
            "photos": len(photos),
            "lost": len(photos) - len(self.recorded),
            "error_verdicts": errors,
            "alerts_expected": len(failing),
            "alerts_sent": sum(1 for index in failing if self.recorded.get(index) == "FAIL"),
            "makespan_s": round(self.finished_at - first_upload, 1),
            "min_makespan_s": round(max(len(photos) / tps, upload_seconds), 1),
            "max_calls_per_second": max((max(per_second.values())
                                         for per_second in self.attempts.values()), default=0),
            "throttled_calls": self.throttled,
            "runs": self.runs,
            "dead_lettered": self.dead_lettered,
        }


class Simulation:
    """A tiny event loop: processes are generators yielding ('wait', s) or ('call', api)."""

    def __init__(self, *, tps: float, fault_share: float, latency_scale: float,
                 seed: int, quota_model: str, calls_per_second: float) -> None:
        self.now = 0.0
        self.random = random.Random(seed)
        self._queue: list[tuple[float, int, Generator[Any, Any, Any], Any]] = []
        self._sequence = 0
        self.tps = tps
        self.fault_share = fault_share
        self.latency_scale = latency_scale
        self.quota_model = quota_model
        self.calls_per_second = calls_per_second
        self.next_slot: dict[str, float] = {}
        self.admitted: dict[str, deque[float]] = defaultdict(deque)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.results = Results()

    def _admit(self, api: str) -> bool:
        if self.quota_model == "sliding-window":
            window = self.admitted[api]
            while window and window[0] <= self.now - 1.0:
                window.popleft()
            if len(window) >= self.tps:
                return False
            window.append(self.now)
            return True
        tokens, last = self.buckets.get(api, (self.tps, 0.0))
        tokens = min(self.tps, tokens + (self.now - last) * self.tps)
        if tokens < 1:
            self.buckets[api] = (tokens, self.now)
            return False
        self.buckets[api] = (tokens - 1, self.now)
        return True

    def latency(self, name: str) -> float:
        median = LATENCY[name] * self.latency_scale
        return median * math.exp(self.random.gauss(0, LATENCY_SPREAD))

    def at(self, when: float, process: Generator[Any, Any, Any], value: Any = None) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (when, self._sequence, process, value))

    def start(self, process: Generator[Any, Any, Any], when: float | None = None) -> None:
        self.at(self.now if when is None else when, process)

    def run(self) -> None:
        while self._queue:
            self.now, _, process, value = heapq.heappop(self._queue)
            try:
                request = process.send(value)
            except StopIteration:
                continue
            kind, argument = request
            if kind == "wait":
                self.at(self.now + argument, process)
            elif kind == "slot":  # the shared limiter hands out the API's next slot
                self.at(self.now, process, self._reserve(argument))
            else:  # a Rekognition call: admitted or throttled now, answered after its latency
                self.at(self.now, process, self._rekognition(argument))

    def _reserve(self, api: str) -> float:
        """racecheck.core.quota: seconds until this caller's slot (DynamoDB's own latency
        is added by the caller)."""
        interval = 1.0 / self.calls_per_second
        slot = max(self.next_slot.get(api, 0.0), self.now)
        self.next_slot[api] = slot + interval
        return slot - self.now

    def _rekognition(self, api: str) -> tuple[str, float]:
        self.results.attempts[api][int(self.now)] += 1
        if not self._admit(api):
            self.results.throttled += 1
            return "throttled", self.latency("throttled")
        if self.random.random() < self.fault_share:
            return "fault", self.latency(api)
        return "ok", self.latency(api)


def jittered(retrier: dict[str, Any], attempt: int, rng: random.Random) -> float:
    delay = min(retrier["IntervalSeconds"] * retrier["BackoffRate"] ** attempt,
                retrier.get("MaxDelaySeconds", math.inf))
    return rng.uniform(0, delay) if retrier.get("JitterStrategy") == "FULL" else delay


def workflow(sim: Simulation, photo: Photo, retriers: dict[str, dict[str, Any]], *,
             limiter: bool, max_wait: float = 0.0) -> Generator[Any, Any, str]:
    """One Express run of statemachine/photo_check.asl.json; returns how it ended."""
    sim.results.runs += 1
    yield ("wait", sim.latency("invoke") + sim.latency("check_image"))
    yield ("wait", sim.latency("dynamodb"))  # LookupPreviousResult
    if not photo.rejected:
        apis = [api for api in APIS if api != "DetectFaces" or photo.has_bib]
        for api in apis:
            retrier = retriers[TASK_OF_API[api]]
            for attempt in range(retrier["MaxAttempts"] + 1):
                yield ("wait", sim.latency("invoke"))
                if limiter:
                    wait = yield ("slot", api)
                    yield ("wait", sim.latency("dynamodb") * (2 if wait > 0 else 1))
                    if wait > max_wait:
                        outcome = "throttled"  # refused by the limiter: ServiceThrottled
                    else:
                        yield ("wait", max(0.0, wait - sim.latency("dynamodb")))
                        yield ("wait", sim.latency("transit"))
                        outcome, seconds = yield ("call", api)
                        yield ("wait", seconds)
                else:
                    for sdk_attempt in range(SDK_RETRY_ATTEMPTS):
                        yield ("wait", sim.latency("transit"))
                        outcome, seconds = yield ("call", api)
                        yield ("wait", seconds)
                        if outcome != "throttled" or sdk_attempt + 1 == SDK_RETRY_ATTEMPTS:
                            break
                        yield ("wait", sim.random.uniform(0, 1))  # botocore's backoff
                if outcome == "ok":
                    break
                if attempt < retrier["MaxAttempts"]:
                    yield ("wait", jittered(retrier, attempt, sim.random))
            else:
                return "retry_later"
    yield ("wait", sim.latency("invoke") + sim.latency("decide") + sim.latency("dynamodb"))
    return "recorded"


def record(sim: Simulation, photo: Photo, verdict: str) -> None:
    if photo.index not in sim.results.recorded or sim.results.recorded[photo.index] == "ERROR":
        sim.results.recorded[photo.index] = verdict
    sim.results.finished_at = max(sim.results.finished_at, sim.now)


def verdict_of(photo: Photo) -> str:
    return "FAIL" if photo.fails else "PASS"


def baseline(sim: Simulation, photos: list[Photo]) -> None:
    """Before the queue: each upload starts a run at once; exhausted retries are an ERROR."""
    retriers = dict.fromkeys(TASK_OF_API.values(), BASELINE_RETRIER)

    def run(photo: Photo) -> Generator[Any, Any, None]:
        ending = yield from workflow(sim, photo, retriers, limiter=False)
        record(sim, photo, verdict_of(photo) if ending == "recorded" else "ERROR")

    for photo in photos:
        sim.start(run(photo), photo.uploaded_at + sim.latency("event_delivery"))
    sim.run()


@dataclass
class Message:
    photo: Photo
    visible_at: float
    receives: int = 0


def with_queue(sim: Simulation, photos: list[Photo], retriers: dict[str, dict[str, Any]],
               throughput: Throughput) -> None:
    """The queue design: EventBridge -> SQS -> paced consumer -> StartSyncExecution."""
    waiting: list[tuple[float, int, Message]] = []  # by the time each becomes visible
    state = {"busy": 0, "allowed": ESM_INITIAL_CONCURRENCY, "first_message": None,
             "remaining": len(photos)}

    def allowed_now() -> int:
        if state["first_message"] is None:
            return ESM_INITIAL_CONCURRENCY
        grown = ESM_INITIAL_CONCURRENCY + ESM_SCALE_UP_PER_SECOND * (
            sim.now - state["first_message"])
        return int(min(throughput.concurrency, grown))

    def dispatch() -> None:
        """The event source's pollers: a free slot takes the next visible message at once."""
        while waiting and waiting[0][0] <= sim.now and state["busy"] < allowed_now():
            _, _, message = heapq.heappop(waiting)
            state["busy"] += 1
            sim.start(consumer(message))

    def poller() -> Generator[Any, Any, None]:
        """Long polling: messages that become visible later, and the concurrency ramp."""
        while state["remaining"]:
            dispatch()
            yield ("wait", 0.05)

    def consumer(message: Message) -> Generator[Any, Any, None]:
        started = sim.now
        message.receives += 1
        yield ("wait", sim.latency("start_sync"))
        ending = yield from workflow(sim, message.photo, retriers, limiter=True,
                                     max_wait=QUOTA_MAX_WAIT_SECONDS)
        if ending == "recorded":
            record(sim, message.photo, verdict_of(message.photo))
            state["remaining"] -= 1
        elif message.receives >= throughput.max_receives:
            record(sim, message.photo, "ERROR")
            sim.results.dead_lettered += 1
            state["remaining"] -= 1
        else:
            delay = throughput.requeue_delay(message.receives)
            heapq.heappush(waiting, (sim.now + delay, message.photo.index, message))
        # Start-rate pacing: the slot stays taken for at least slot_seconds.
        yield ("wait", max(0.0, started + throughput.slot_seconds - sim.now))
        state["busy"] -= 1
        dispatch()

    def arrive(photo: Photo) -> Generator[Any, Any, None]:
        if state["first_message"] is None:
            state["first_message"] = sim.now
        heapq.heappush(waiting, (sim.now, photo.index, Message(photo, sim.now)))
        dispatch()
        yield ("wait", 0)

    for photo in photos:
        sim.start(arrive(photo), photo.uploaded_at + sim.latency("event_delivery"))
    sim.start(poller(), 0.0)
    sim.run()


def asl_retriers() -> dict[str, dict[str, Any]]:
    """Each Rekognition task's retrier for throttling, from the deployed ASL."""
    states = json.loads(DEFINITION_PATH.read_text(encoding="utf-8"))["States"]
    return {task: next(retrier for retrier in states[task]["Retry"]
                       if "ServiceThrottled" in retrier["ErrorEquals"])
            for task in TASK_OF_API.values()}


def race_photos(count: int, upload_seconds: float, seed: int) -> list[Photo]:
    rng = random.Random(seed)
    photos = []
    for index in range(count):
        draw = rng.random()
        photos.append(Photo(
            index=index, uploaded_at=rng.uniform(0, upload_seconds),
            rejected=draw < PHOTO_MIX["rejected"],
            has_bib=rng.random() >= PHOTO_MIX["no_bib"],
            fails=rng.random() < PHOTO_MIX["fail"]))
    return [replace(p, fails=p.fails and p.has_bib and not p.rejected) for p in photos]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=20000)
    parser.add_argument("--upload-seconds", type=float, default=120)
    parser.add_argument("--tps", type=float, help="Rekognition TPS per API "
                        "(default: rekognition_tps from cdk.json)")
    parser.add_argument("--fault-share", type=float, default=0.005,
                        help="share of admitted Rekognition calls that fail with a 5xx")
    parser.add_argument("--latency-scale", type=float, default=1.0)
    parser.add_argument("--quota-model", choices=["token-bucket", "sliding-window"],
                        default="token-bucket",
                        help="how the fake Rekognition counts: a token bucket of one second "
                        "of calls (how AWS APIs usually throttle), or at most TPS calls in "
                        "any sliding second (stricter)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)

    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    if args.tps is not None:
        context["rekognition_tps"] = args.tps
    throughput = throughput_from_context(context.get)
    tps = throughput.rekognition_tps
    photos = race_photos(args.photos, args.upload_seconds, args.seed)
    retriers = asl_retriers()
    print(f"{args.photos} photos over {args.upload_seconds:g} s, Rekognition {tps:g} TPS per "
          f"API, {args.fault_share:.1%} of calls failing with a 5xx")
    print(f"queue consumer: concurrency {throughput.concurrency}, a photo started at most "
          f"every {throughput.slot_seconds:.2f} s per slot ({throughput.photos_per_second:.1f}"
          f" photos/s), requeue after {throughput.requeue_delay(1)} s doubling, DLQ after "
          f"{throughput.max_receives} receives")

    figures = {}
    for name, simulate in (("without queue (baseline)", baseline),
                           ("with queue", lambda sim, p: with_queue(sim, p, retriers,
                                                                     throughput))):
        sim = Simulation(tps=tps, fault_share=args.fault_share,
                         latency_scale=args.latency_scale, seed=args.seed,
                         quota_model=args.quota_model,
                         calls_per_second=throughput.calls_per_second)
        simulate(sim, photos)
        figures[name] = sim.results.summary(photos, tps, args.upload_seconds)
    keys = list(figures["with queue"])
    width = max(len(key) for key in keys)
    print(f"\n{'':{width}}  {'baseline':>12}  {'with queue':>12}")
    for key in keys:
        print(f"{key:{width}}  {figures['without queue (baseline)'][key]!s:>12}  "
              f"{figures['with queue'][key]!s:>12}")
    queue = figures["with queue"]
    print(f"\nwith queue: makespan {queue['makespan_s'] / queue['min_makespan_s'] - 1:+.1%} "
          f"over the minimum; busiest second {queue['max_calls_per_second']} calls to one API "
          f"(quota {tps:g})")
    result = {**queue, "baseline": figures["without queue (baseline)"]}
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
