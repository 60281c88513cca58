"""A synthetic marathon to measure the timing checks: chip mules, photo versus chip, speed.

Usage: .venv/bin/python benchmarks/synthetic_race.py [--runners 5000] [--seed 1]
       [--races 1] [--resolution 0.1] [--write DIR]

The race (every number below is an assumption about real races, stated so it can be argued
with; none was tuned to make the checks look good):

- 6 timing mats: start, 10k, half, 30k, 40k, finish. Gun at 09:00 (+02:00); runners cross
  the start over 15 minutes in seeded corrals, fastest first.
- Target finish times log-normal around 4:15 (95% between about 3:05 and 5:50). Pace per km
  varies around the runner's own (AR(1) noise, 3% a km), fatigue slows everyone after
  km 25 (0-15%), and one runner in six "hits the wall" after km 30 (10-35% slower). One km
  in a hundred has a stop of 20 s to 3 min (drinks, toilet). 3% drop out after km 10.
- Mats: each read misses a chip with probability 1% (0.5% at the start); a read is the
  passage time plus 0.15 s of jitter, reported at ``--resolution`` seconds.
- Pacing groups: pacers for 3:00 to 5:30 finish times, 25-50 runners each, running at the
  pacer's side: each member's place in the pack is within +/-6 s of the pacer and drifts
  1 s per km (a random walk), and a third drop off the pace after km 25-35.
- Planted chip mules: 20 carriers (12 carrying two chips, 8 carrying three); in half of them
  the carrier's own bib is one of the chips. Chips on one body sit within 0.2 s of each
  other; stacked chips shadow each other: their reads jitter by 0.2 s (not 0.15) and miss
  5% of the time, and in every fourth group one chip misses one mat on purpose.
- Planted swaps: 25 bibs worn by a faster runner (5-25% faster, starting within 2 min of the
  owner) while the bib's chip crosses the mats with the registered runner.
- Photo points at km 5, 15, 25, 36 and the finish, one camera each: its clock is still off
  by N(0, 2 s) after the configured offset is taken off, and the photographer stands within
  150 m of the configured km. Each runner is photographed at each point with probability
  0.6 (bib readable), up to where they dropped out.

It prints recall and precision for mule groups and for swapped bibs, the false alarms among
pacing-group members, and the time of each check over the whole field, measured as the CLI
and the Decide step run them (CSV parsing included for the mule check). Timings on a shared
2-core machine move with other load: run it twice.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from racecheck.core.mules import find_mule_groups, mule_tolerance  # noqa: E402
from racecheck.core.photo_timing import PhotoPoints, check_passing, photo_time  # noqa: E402
from racecheck.core.settings import Settings  # noqa: E402
from racecheck.core.timing import parse_checkpoints_csv, parse_splits_csv  # noqa: E402

MARATHON_KM = 42.195
CHECKPOINTS = (("start", 0.0), ("10k", 10.0), ("half", 21.0975), ("30k", 30.0),
               ("40k", 40.0), ("finish", MARATHON_KM))
PHOTO_POINTS = (("p05/", 5.0), ("p15/", 15.0), ("p25/", 25.0), ("p36/", 36.0),
                ("finish/", MARATHON_KM))
ZONE = timezone(timedelta(hours=2))
GUN = datetime(2026, 4, 19, 9, 0, tzinfo=ZONE).timestamp()
PACER_TARGETS_MIN = (180, 195, 210, 225, 240, 255, 270, 285, 300, 330)


@dataclass
class Timeline:
    """Passage time at every whole km (and the finish); linear within a km."""

    marks: list[float]  # marks[k] = time at km k; the last one at MARATHON_KM
    stop_km: float = math.inf  # dropped out here

    def at(self, km: float) -> float | None:
        if km > self.stop_km:
            return None
        whole = min(int(km), len(self.marks) - 2)
        span = (MARATHON_KM - whole) if whole == len(self.marks) - 2 else 1.0
        return self.marks[whole] + (km - whole) / span * (self.marks[whole + 1] - self.marks[whole])


@dataclass
class Race:
    splits: list[tuple[str, str, float]] = field(default_factory=list)  # bib, checkpoint, time
    photos: list[tuple[str, str, str]] = field(default_factory=list)  # bib, prefix, taken_at
    mule_groups: list[frozenset[str]] = field(default_factory=list)
    swapped: set[str] = field(default_factory=set)
    pacing_groups: list[set[str]] = field(default_factory=list)
    runners: int = 0


def runner_timeline(rng: random.Random, *, target_s: float, start_s: float,
                    speedup: float = 1.0) -> Timeline:
    base = target_s / MARATHON_KM * speedup
    fatigue = rng.uniform(0.0, 0.15)
    wall_km = rng.uniform(30, 35) if rng.random() < 1 / 6 else math.inf
    wall = rng.uniform(0.10, 0.35)
    marks = [start_s]
    noise = 0.0
    for km in range(1, 43):
        noise = 0.6 * noise + rng.gauss(0, 0.03)
        factor = 1 + fatigue * max(0.0, km - 25) / 17 + (wall if km > wall_km else 0.0)
        seconds = base * factor * (1 + noise)
        if rng.random() < 0.01:
            seconds += rng.uniform(20, 180)
        marks.append(marks[-1] + seconds)
    # The last 195 m at the pace of the last km.
    marks.append(marks[-1] + (marks[-1] - marks[-2]) * (MARATHON_KM - 42))
    return Timeline(marks)


def pacer_timeline(rng: random.Random, *, finish_s: float, start_s: float) -> Timeline:
    pace = finish_s / MARATHON_KM
    marks = [start_s]
    for _ in range(42):
        marks.append(marks[-1] + pace * (1 + rng.gauss(0, 0.01)))
    marks.append(marks[-1] + pace * (MARATHON_KM - 42))
    return Timeline(marks)


def pack_timeline(rng: random.Random, pacer: Timeline) -> Timeline:
    place = rng.uniform(-6, 6)
    drift = 0.0
    marks = []
    for mark in pacer.marks:
        marks.append(mark + place + drift)
        drift += rng.gauss(0, 1.0)
    if rng.random() < 1 / 3:  # falls off the pace
        off_km = int(rng.uniform(25, 35))
        for km in range(off_km + 1, len(marks)):
            marks[km] = marks[km - 1] + (pacer.marks[km] - pacer.marks[km - 1]) * (
                1 + rng.uniform(0.05, 0.25))
    return Timeline(marks)


def read(rng: random.Random, moment: float, *, miss: float, jitter: float,
         resolution: float) -> float | None:
    if rng.random() < miss:
        return None
    return round((moment + rng.gauss(0, jitter)) / resolution) * resolution


@dataclass
class Chip:
    timeline: Timeline
    offset: float = 0.0  # where on the body, seconds
    stacked: bool = False  # one of several chips on one body


def build_race(runners: int, seed: int, resolution: float) -> Race:
    rng = random.Random(seed)
    race = Race(runners=runners)
    targets = sorted(min(max(math.exp(rng.gauss(math.log(15300), 0.17)), 8400), 25200)
                     for _ in range(runners))
    bibs = [str(1001 + index) for index in range(runners)]
    rng.shuffle(bibs)  # bib numbers say nothing about speed
    corral_of = {target: index / runners * 900 for index, target in enumerate(targets)}
    target_of = dict(zip(bibs, targets, strict=True))
    chips: dict[str, Chip] = {}
    worn: dict[str, Timeline] = {}  # where each bib is seen (photographed)
    for bib in bibs:
        start = GUN + corral_of[target_of[bib]] + abs(rng.gauss(0, 15))
        worn[bib] = runner_timeline(rng, target_s=target_of[bib], start_s=start)

    # Pacing groups: runners aiming near a pacer's time run in the pack.
    taken: set[str] = set()
    for minutes in PACER_TARGETS_MIN:
        finish_s = minutes * 60.0
        corral = sum(target < finish_s for target in targets) / runners * 900
        pacer = pacer_timeline(rng, finish_s=finish_s, start_s=GUN + corral)
        near = sorted(bib for bib in bibs
                      if abs(target_of[bib] - finish_s) < 300 and bib not in taken)
        members = rng.sample(near, min(len(near), rng.randint(25, 50)))
        for bib in members:
            worn[bib] = pack_timeline(rng, pacer)
        taken.update(members)
        race.pacing_groups.append(set(members))

    others = sorted(bib for bib in bibs if bib not in taken)
    for bib in rng.sample(others, runners * 3 // 100):
        worn[bib].stop_km = rng.uniform(10, 40)
    free = [bib for bib in others if worn[bib].stop_km == math.inf]
    rng.shuffle(free)
    for bib in bibs:
        chips[bib] = Chip(worn[bib])

    # Planted mules: one body moves every chip of the group. In even plants the carrier runs
    # on his own bib too; in odd ones he is not registered. Owners of carried chips are not
    # on the course (no photos of their bibs).
    forced_miss: set[str] = set()
    for index in range(20):
        carried = [free.pop() for _ in range(2 if index < 12 else 3)]
        if index % 2 == 0:
            carrier = worn[carried[0]]
            away = carried[1:]
        else:
            carrier = runner_timeline(rng, target_s=rng.choice(targets),
                                      start_s=GUN + rng.uniform(0, 900))
            away = carried
        for bib in carried:
            chips[bib] = Chip(carrier, offset=rng.uniform(-0.1, 0.1), stacked=True)
        for bib in away:
            del worn[bib]
        if index % 4 == 0:
            forced_miss.add(carried[-1])
        race.mule_groups.append(frozenset(carried))
    # Planted swaps: a faster runner wears the bib; its chip stays with the registered runner.
    for _ in range(25):
        bib = free.pop()
        chip = chips[bib].timeline
        worn[bib] = runner_timeline(rng, target_s=target_of[bib],
                                    start_s=chip.marks[0] + rng.uniform(-120, 120),
                                    speedup=rng.uniform(0.75, 0.95))
        race.swapped.add(bib)

    for bib in bibs:
        chip_of = chips[bib]
        for position, (name, km) in enumerate(CHECKPOINTS):
            moment = chip_of.timeline.at(km)
            if moment is None or (bib in forced_miss and position == 2):
                continue
            if chip_of.stacked:
                value = read(rng, moment + chip_of.offset, miss=0.05, jitter=0.2,
                             resolution=resolution)
            else:
                value = read(rng, moment, miss=0.005 if km == 0 else 0.01, jitter=0.15,
                             resolution=resolution)
            if value is not None:
                race.splits.append((bib, name, value))

    # Photos: one camera per point, a residual clock error and a true position each.
    cameras = [(prefix, rng.gauss(0, 2.0), min(km + rng.uniform(-0.15, 0.15), MARATHON_KM))
               for prefix, km in PHOTO_POINTS]
    for bib in bibs:
        timeline = worn.get(bib)
        if timeline is None:
            continue
        for prefix, clock_error, true_km in cameras:
            moment = timeline.at(true_km)
            if moment is None or rng.random() >= 0.6:
                continue
            taken_at = datetime.fromtimestamp(moment + clock_error + rng.gauss(0, 1.0), ZONE)
            race.photos.append((bib, prefix, taken_at.replace(tzinfo=None)
                                .isoformat(timespec="milliseconds")))
    return race


def splits_csv(race: Race) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["bib", "checkpoint", "time"])
    for bib, name, seconds in race.splits:
        moment = datetime.fromtimestamp(seconds, UTC).astimezone(ZONE)
        writer.writerow([bib, name, moment.isoformat(timespec="milliseconds")])
    return buffer.getvalue()


def checkpoints_csv() -> str:
    return "checkpoint,km\n" + "".join(f"{name},{km}\n" for name, km in CHECKPOINTS)


def photo_points_json() -> dict[str, object]:
    return {"utc_offset": "+02:00",
            "points": [{"prefix": prefix, "km": km} for prefix, km in PHOTO_POINTS]}


def ratio(numerator: int, denominator: int) -> str:
    return f"{numerator}/{denominator} = {numerator / denominator:.1%}" if denominator else "n/a"


@dataclass
class Score:
    """Counts over one or more races."""

    planted_groups: int = 0
    found_groups: int = 0
    reported_groups: int = 0
    reported_planted: int = 0
    pacing_runners: int = 0
    pacing_alarms: int = 0  # reported groups holding a pacing-group runner
    swaps: int = 0
    flagged: int = 0
    flagged_swaps: int = 0
    flagged_pacers: int = 0
    swap_photos: int = 0
    swap_photos_flagged: int = 0
    honest_photos: int = 0
    honest_photos_flagged: int = 0
    honest_codes: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    widest_planted_gap: float = 0.0
    tolerance_s: float = 0.0

    def add(self, other: Score) -> None:
        for name, value in vars(other).items():
            if name == "honest_codes":
                for code, count in value.items():
                    self.honest_codes[code] += count
            elif name in ("widest_planted_gap", "tolerance_s"):
                setattr(self, name, max(getattr(self, name), value))
            else:
                setattr(self, name, getattr(self, name) + value)


def check_race(race: Race, *, course_text: str, points: PhotoPoints, settings: Settings
               ) -> tuple[Score, float, float, float, float]:
    """Run both checks as the CLI and the Decide step do; (score, wall and CPU seconds of
    the mule check, wall and CPU seconds of the photo checks)."""
    splits_text = splits_csv(race)
    wall, cpu = time.perf_counter(), time.process_time()
    timing = parse_splits_csv(splits_text, course=parse_checkpoints_csv(course_text))
    groups = find_mule_groups(timing)
    mule_wall, mule_cpu = time.perf_counter() - wall, time.process_time() - cpu

    wall, cpu = time.perf_counter(), time.process_time()
    findings: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for bib, prefix, taken_at in race.photos:
        point = points.locate(f"{prefix}{bib}.jpg")
        assert point is not None
        seconds = photo_time(taken_at, point)
        assert seconds is not None
        check = check_passing(course=timing.course, times=timing.reads.get(bib),
                              point_km=point.km, photo_seconds=seconds)
        findings[bib].append(check.findings)
    photo_wall, photo_cpu = time.perf_counter() - wall, time.process_time() - cpu

    score = Score(tolerance_s=mule_tolerance(timing))
    reported = [frozenset(group.bibs) for group in groups]
    planted = set(race.mule_groups)
    pacing_members = set().union(*race.pacing_groups)
    score.planted_groups = len(planted)
    score.found_groups = sum(group in set(reported) for group in planted)
    score.reported_groups = len(reported)
    score.reported_planted = sum(group in planted for group in reported)
    score.pacing_runners = len(pacing_members)
    score.pacing_alarms = sum(1 for group in reported if group & pacing_members)
    score.widest_planted_gap = max(
        (group.max_gap_s for group in groups if frozenset(group.bibs) in planted), default=0.0)

    flagged = {bib for bib, checks in findings.items()
               if sum(1 for codes in checks if codes) >= settings.suspect_min_inconsistent}
    score.swaps = len(race.swapped)
    score.flagged = len(flagged)
    score.flagged_swaps = len(flagged & race.swapped)
    score.flagged_pacers = len(flagged & pacing_members)
    for bib, checks in findings.items():
        for codes in checks:
            if bib in race.swapped:
                score.swap_photos += 1
                score.swap_photos_flagged += bool(codes)
            else:
                score.honest_photos += 1
                score.honest_photos_flagged += bool(codes)
                for code in codes:
                    score.honest_codes[code] += 1
    return score, mule_wall, mule_cpu, photo_wall, photo_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runners", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1, help="first race's seed")
    parser.add_argument("--races", type=int, default=1,
                        help="races to generate (seeds seed, seed+1, ...); figures add up")
    parser.add_argument("--resolution", type=float, default=0.1,
                        help="seconds the timing export rounds to (0.1, or 1 for whole seconds)")
    parser.add_argument("--write", type=Path, help="also write the first race's input files here")
    args = parser.parse_args()

    points = PhotoPoints.from_raw(photo_points_json())
    settings = Settings.from_cdk_json()
    course_text = checkpoints_csv()
    total = Score()
    timings: list[tuple[float, float, float, float]] = []
    splits = photos = 0
    generated = 0.0
    for seed in range(args.seed, args.seed + args.races):
        started = time.perf_counter()
        race = build_race(args.runners, seed, args.resolution)
        generated += time.perf_counter() - started
        if args.write and seed == args.seed:
            args.write.mkdir(parents=True, exist_ok=True)
            (args.write / "splits.csv").write_text(splits_csv(race), encoding="utf-8")
            (args.write / "checkpoints.csv").write_text(course_text, encoding="utf-8")
            (args.write / "photo_points.json").write_text(
                json.dumps(photo_points_json(), indent=2), encoding="utf-8")
        score, *measured = check_race(race, course_text=course_text, points=points,
                                      settings=settings)
        total.add(score)
        timings.append((measured[0], measured[1], measured[2], measured[3]))
        splits += len(race.splits)
        photos += len(race.photos)

    races = args.races
    print(f"Synthetic marathon x{races} (seeds {args.seed}-{args.seed + races - 1}): "
          f"{args.runners} runners each, {splits // races} splits at {len(CHECKPOINTS)} mats "
          f"and {photos // races} photos at {len(PHOTO_POINTS)} photo points a race; "
          f"times at {args.resolution:g} s; generated in {generated:.1f} s")
    print("")
    print(f"Chip mules ({total.planted_groups} planted: 12 of 2 chips and 8 of 3 a race; "
          f"tolerance {total.tolerance_s:g} s from the data's resolution)")
    print(f"  recall    (planted groups found exactly):    "
          f"{ratio(total.found_groups, total.planted_groups)}")
    print(f"  precision (reported groups that were planted): "
          f"{ratio(total.reported_planted, total.reported_groups)}")
    print(f"  pacing groups: {10 * races} packs, {total.pacing_runners} runners; reported "
          f"groups holding a pacing-group runner: {total.pacing_alarms}")
    print(f"  widest gap inside a found planted group: {total.widest_planted_gap:.2f} s")
    print("")
    print(f"Swapped bibs ({total.swaps} planted); a bib is reported with >= "
          f"{settings.suspect_min_inconsistent} photos off its chip (the suspect rule)")
    print(f"  recall:    {ratio(total.flagged_swaps, total.swaps)}")
    print(f"  precision: {ratio(total.flagged_swaps, total.flagged)}")
    print(f"  pacing-group runners reported: {total.flagged_pacers}")
    print(f"  photos of swapped bibs flagged: "
          f"{ratio(total.swap_photos_flagged, total.swap_photos)}")
    codes = ", ".join(f"{code} {count}" for code, count in sorted(total.honest_codes.items()))
    print(f"  photos of honest bibs flagged (REVIEW): "
          f"{ratio(total.honest_photos_flagged, total.honest_photos)} ({codes or 'none'})")
    print("")
    mule_wall, mule_cpu, photo_wall, photo_cpu = (statistics.median(column)
                                                   for column in zip(*timings, strict=True))
    print(f"Time for one race of {args.runners} runners (median over {races} race(s); wall "
          f"clock, and CPU time of this process, which other load disturbs less):")
    print(f"  parse splits + find mule groups ({splits // races} splits): "
          f"{mule_wall:.3f} s wall, {mule_cpu:.3f} s CPU")
    print(f"  photo vs chip ({photos // races} photos): {photo_wall:.3f} s wall, "
          f"{photo_cpu:.3f} s CPU ({photo_cpu / (photos / races) * 1e6:.0f} us CPU a photo)")
    print(f"  total: {mule_wall + photo_wall:.3f} s wall, {mule_cpu + photo_cpu:.3f} s CPU")


if __name__ == "__main__":
    main()
