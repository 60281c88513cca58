"""Chip mules from splits alone: bibs whose chips cross every timing mat together.

A bib mule is one runner carrying several chips (pinned bibs, or chips in a pocket) so that
runners who did not run, or ran slower, get a time. Every chip on one body crosses each mat
within a fraction of a second of the others, at every mat on the course. Runners who really
run together (a pacing group, a couple, friends) cross close, but not identically: over the
kilometres between two mats their places in the pack shift by metres, and a drinks station
or a crowded turn separates them by a few seconds.

Rule: two bibs are one carrier when, at every mat both chips were read at (at least
``MIN_SHARED_CHECKPOINTS`` of them),

1. their crossing times differ by at most the tolerance, and
2. the signed difference (this chip minus that one) stays within a band as wide as the
   tolerance from mat to mat.

A group is a connected set of such pairs. The second condition sets one body apart from two
runners side by side: chips on one body keep their places on it, so their signed difference
is a constant (where each chip sits) plus read noise, while two runners' gap wanders, one
ahead at this mat and the other at the next, as each drifts through the pack.

The tolerance is ``CHIP_SPREAD_S`` plus the resolution the timing export rounds to (found
from the data: whole seconds, tenths, ...). ``CHIP_SPREAD_S = 1.0`` s is the most two chips
on one body can differ at one mat before rounding:

- chips on one body sit at most about half a metre apart (front and back of the torso, a
  pocket): at 2.5-5 m/s, at most 0.2 s between their passages over the antenna;
- a passive UHF chip is read many times while it is in the mat's read field (1-2 m); the
  system reports the strongest (or first) read, which puts a lone chip within a few tenths
  of its passage, and chips stacked on one body shadow each other, which can move one
  chip's reported read by up to about 0.8 s;
- rounding then adds up to one step: two chips a few tenths apart can land on neighbouring
  whole seconds.

So splits in tenths get a tolerance of 1.1 s, splits in whole seconds 2.0 s. A pacing group
covers 10-20 m of road (3-7 s at race pace): two of its runners are within a second of each
other at one mat often, at every one of six mats rarely, and with a steady difference
hardly ever. Whole-second splits blur exactly that difference, so they leave a few pairs of
pack runners in the list (see ``benchmarks/synthetic_race.py --resolution 1``): export
tenths where the timing system allows. Requiring at least three shared mats keeps out
runners who merely finish side by side. A couple running every step together is the honest
limit: timing cannot tell them from a mule of two, which is why a group is listed for a
person to check against the photos (two faces settle it), never acted upon alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from racecheck.core.timing import RaceTiming

CHIP_SPREAD_S = 1.0
MIN_SHARED_CHECKPOINTS = 3
# Steps a timing export rounds to, coarsest first.
RESOLUTIONS_S = (1.0, 0.1, 0.01, 0.001)
# Times are floats: 1.1 s apart can come out as 1.1000000001. No timing system resolves a
# microsecond, so it is safe slack.
_SLACK_S = 1e-6


@dataclass(frozen=True)
class MuleGroup:
    bibs: list[str]
    checkpoints: int  # mats at which at least two of the group's chips were read
    max_gap_s: float  # the widest spread of the group's crossing times at any of those mats

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bib_order(bib: str) -> tuple[int, int, str]:
    """Numbers in numeric order (``98`` before ``1203``), other bibs after them."""
    return (0, int(bib), bib) if bib.isdigit() else (1, 0, bib)


def time_resolution(timing: RaceTiming) -> float:
    """The coarsest step the split times are rounded to (1 s, 0.1 s, ...)."""
    times = [seconds for reads in timing.reads.values() for seconds in reads.values()]
    for step in RESOLUTIONS_S:
        scale = 1 / step
        if all(abs(seconds * scale - round(seconds * scale)) < 1e-3 for seconds in times):
            return step
    return RESOLUTIONS_S[-1]


def mule_tolerance(timing: RaceTiming) -> float:
    return round(CHIP_SPREAD_S + time_resolution(timing), 3)


def find_mule_groups(timing: RaceTiming, *, tolerance_s: float | None = None,
                     min_shared: int = MIN_SHARED_CHECKPOINTS) -> list[MuleGroup]:
    """Groups of bibs whose chips crossed every shared mat together, largest first.

    ``tolerance_s`` defaults to ``mule_tolerance(timing)``.
    """
    if tolerance_s is None:
        tolerance_s = mule_tolerance(timing)
    close_at = _pairs_close_per_checkpoint(timing, tolerance_s)
    carriers = [pair for pair, count in close_at.items()
                if count >= min_shared and _one_carrier(timing, *pair, count=count,
                                                        tolerance_s=tolerance_s)]
    groups = [_describe(timing, bibs) for bibs in _connected(carriers)]
    return sorted(groups, key=lambda group: (-len(group.bibs), bib_order(group.bibs[0])))


def _pairs_close_per_checkpoint(timing: RaceTiming, tolerance_s: float
                                ) -> dict[tuple[str, str], int]:
    """For each pair of bibs, at how many mats they crossed within the tolerance.

    One sorted sweep per mat: each crossing is compared only with the crossings that follow
    it within the tolerance, so the cost grows with the runners, not with their pairs.
    """
    counts: defaultdict[tuple[str, str], int] = defaultdict(int)
    limit = tolerance_s + _SLACK_S
    for checkpoint in timing.course:
        crossings = sorted((times[checkpoint.name], bib) for bib, times in timing.reads.items()
                           if checkpoint.name in times)
        total = len(crossings)
        for index, (seconds, bib) in enumerate(crossings):
            later = index + 1
            while later < total and crossings[later][0] - seconds <= limit:
                other = crossings[later][1]
                counts[(bib, other) if bib < other else (other, bib)] += 1
                later += 1
    return counts


def _one_carrier(timing: RaceTiming, first: str, second: str, *, count: int,
                 tolerance_s: float) -> bool:
    """Close at every shared mat (not only ``count`` of them), with a steady difference."""
    times, others = timing.reads[first], timing.reads[second]
    differences = [times[name] - others[name] for name in times.keys() & others.keys()]
    return (count == len(differences)
            and max(differences) - min(differences) <= tolerance_s + _SLACK_S)


def _connected(pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def root(bib: str) -> str:
        while parent.setdefault(bib, bib) != bib:
            parent[bib] = parent[parent[bib]]
            bib = parent[bib]
        return bib

    for first, second in pairs:
        parent[root(first)] = root(second)
    members: defaultdict[str, list[str]] = defaultdict(list)
    for bib in parent:
        members[root(bib)].append(bib)
    return [sorted(bibs, key=bib_order) for bibs in members.values()]


def _describe(timing: RaceTiming, bibs: list[str]) -> MuleGroup:
    checkpoints = 0
    widest = 0.0
    for checkpoint in timing.course:
        times = [timing.reads[bib][checkpoint.name] for bib in bibs
                 if checkpoint.name in timing.reads[bib]]
        if len(times) >= 2:
            checkpoints += 1
            widest = max(widest, max(times) - min(times))
    return MuleGroup(bibs=bibs, checkpoints=checkpoints, max_gap_s=round(widest, 2))
