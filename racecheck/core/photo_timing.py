"""Photo versus chip: was the bib in the photo where its chip says it was, when it was there?

Where a photo was taken comes from its key: race cameras rarely record GPS, but photos are
uploaded per photographer or per place, so a *photo point* maps a key prefix (a folder is a
prefix ending in ``/``) to a course distance. When a photo was taken comes from the EXIF
``DateTimeOriginal`` (+ ``SubSecTimeOriginal``) that CheckImage reads from the header bytes
it already fetched, at the camera's ``OffsetTimeOriginal`` when it wrote one, else at the
photo point's ``utc_offset``; then the camera's clock error is taken off.

Photo points (``photo_points`` in cdk.json context, ``--photo-points FILE`` locally), JSON::

    {"utc_offset": "+02:00",
     "points": [{"prefix": "km10/", "km": 10},
                {"prefix": "finish/cam-a/", "km": 42.195, "clock_offset_s": -12.5}]}

- ``prefix`` is matched against the object key as stored (the longest matching prefix
  wins; ``""`` matches every key). Give two cameras at one place two folders.
- ``clock_offset_s`` (default 0) is the camera's clock error: camera time minus true time,
  in seconds. Measure it once per camera on race morning by photographing a reference
  clock (the race clock, or a phone showing network time): the offset is that photo's time,
  read as racecheck reads it, minus the time the reference showed.
- ``utc_offset`` (``+HH:MM``, at the top as the default, or per point) is the local time
  zone the cameras were set to, used for photos without ``OffsetTimeOriginal``. A fixed
  offset rather than a zone name: a race day has one offset, and the Lambda runtime then
  needs no time zone database.

Per photo and per bib, the chip's passing time at the photo point is interpolated between
the nearest reads before and after the point (skipping mats that missed the chip), and
compared with the photo's time. The photo is off when the difference exceeds

    tolerance = CLOCK_TOLERANCE_S
              + POINT_UNCERTAINTY_KM x the runner's pace between those reads
              + PACE_CHANGE x x(1 - x) x the time between those reads

where x is how far along the interval the point lies (0 at the mat before, 1 at the mat
after). Each term has a reason in how races are timed and photographed:

- ``CLOCK_TOLERANCE_S = 15``: after the clock offset is taken off, a camera is still a few
  seconds out (EXIF keeps whole seconds unless SubSec is written, quartz clocks drift about
  2 s a day, and the offset itself is read off a reference to a second or two). Timing
  systems run on GPS time and add nothing that matters here.
- ``POINT_UNCERTAINTY_KM = 0.2``: a photo point is a stretch of road, not a line: the
  configured distance comes from a course map, and photographers move 100-200 m to find a
  background. At the runner's own pace that is 40-90 s for most of the field.
- ``PACE_CHANGE = 0.4``: linear interpolation assumes an even pace between two mats. If the
  runner's average pace before the point differs from the one after it by a fraction r, the
  true passing time differs from the interpolated one by x(1 - x) r times the interval.
  Hills, drinks stations, a walk break or a toilet stop easily make r 0.2-0.4 over a 5-10 km
  interval; 0.4 covers them. The term vanishes at the mats, where there is nothing to
  interpolate, and is largest mid-interval (10% of the interval's time).

On a 10 km interval run at 5:00/km the photo may be off by up to 15 + 60 + 300 s mid-way:
generous, because a REVIEW should mean something. The cheats this is for differ by much
more: a chip handed to a runner 1 min/km faster is 20 minutes away from its bib at km 20.

Findings, per bib (REVIEW, and inconsistent evidence for the runner):

- ``TIMING_MISMATCH``: the photo's time is further from the chip's passing time than the
  tolerance; or, with reads on one side of the point only, the photo is earlier than a read
  at a mat the point lies beyond (or later than one ahead of it). The bib was not where its
  chip was: someone else wore it, or the chip went with someone else.
- ``MISSED_CHECKPOINT``: the bib is photographed past mats (at least ``POINT_UNCERTAINTY_KM``
  behind the point) none of which read its chip. A single mat missing a chip is normal; all
  of them missing it means the bib joined the course late, or carries no chip (a copy), or
  its chip is elsewhere. No reads *after* the point is not a finding: a runner who drops
  out after the photo looks exactly like that, and gains nothing from it.

A bib without any reads at all and no mat behind the point, or a photo without a time,
cannot be checked and adds nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from racecheck.core.timing import Checkpoint, iso_utc

CLOCK_TOLERANCE_S = 15.0
POINT_UNCERTAINTY_KM = 0.2
PACE_CHANGE = 0.4
# Only used to size the distance term when a runner has a single read: 7:00/km, slower than
# most of a marathon field, so the tolerance errs wide.
FALLBACK_PACE_S_PER_KM = 420.0

TIMING_MISMATCH = "TIMING_MISMATCH"
MISSED_CHECKPOINT = "MISSED_CHECKPOINT"

PHOTO_POINTS_ENV_VAR = "PHOTO_POINTS"
# Lambda allows 4 KB of environment variables per function in total (Lambda quotas); the
# settings take about 1 KB, so the photo points get at most half.
MAX_PHOTO_POINTS_BYTES = 2048
MAX_CLOCK_OFFSET_S = 86_400.0
_UTC_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_POINT_KEYS = {"prefix", "km", "clock_offset_s", "utc_offset"}


class PhotoPointsError(ValueError):
    """The photo points are malformed; the message names every bad entry."""


@dataclass(frozen=True)
class PhotoPoint:
    prefix: str
    km: float
    clock_offset_s: float
    utc_offset: timedelta


@dataclass(frozen=True)
class PhotoPoints:
    points: tuple[PhotoPoint, ...] = ()

    def locate(self, key: str) -> PhotoPoint | None:
        """The point of the longest prefix the key starts with."""
        matching = [point for point in self.points if key.startswith(point.prefix)]
        return max(matching, key=lambda point: len(point.prefix), default=None)

    def to_json(self) -> str:
        """Compact, every offset spelled out: what the Decide Lambda reads back."""
        return json.dumps({"points": [
            {"prefix": point.prefix, "km": point.km, "clock_offset_s": point.clock_offset_s,
             "utc_offset": _format_offset(point.utc_offset)} for point in self.points]},
            separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json_text(cls, text: str | None) -> PhotoPoints:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise PhotoPointsError(f"photo points are not valid JSON: {error}") from error
        return cls.from_raw(raw)

    @classmethod
    def from_raw(cls, raw: Any) -> PhotoPoints:
        """Validate the photo points as given in cdk.json or a file; raises PhotoPointsError."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise PhotoPointsError('photo points must be an object: {"utc_offset": "+02:00", '
                                   '"points": [{"prefix": "km10/", "km": 10}]}')
        problems = [f"unknown key {key!r}" for key in sorted(set(raw) - {"utc_offset", "points"})]
        default_offset: timedelta | None = None
        if raw.get("utc_offset") is not None:
            try:
                default_offset = parse_utc_offset(raw["utc_offset"])
            except ValueError as error:
                problems.append(f"utc_offset: {error}")
        entries = raw.get("points", [])
        if not isinstance(entries, list):
            raise PhotoPointsError("photo points: 'points' must be a list")
        points: list[PhotoPoint] = []
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            where = f"points[{index}]"
            try:
                point = _point(entry, default_offset)
            except ValueError as error:
                problems.append(f"{where}: {error}")
                continue
            if point.prefix in seen:
                problems.append(f"{where}: prefix {point.prefix!r} is already points"
                                f"[{seen[point.prefix]}]")
                continue
            seen[point.prefix] = index
            points.append(point)
        if problems:
            raise PhotoPointsError("photo points are invalid: " + "; ".join(problems))
        return cls(tuple(points))


def parse_utc_offset(value: Any) -> timedelta:
    match = _UTC_OFFSET.match(str(value).strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a UTC offset like +02:00 or -05:00")
    sign, hours, minutes = match.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if offset > timedelta(hours=14) or int(minutes) > 59:
        raise ValueError(f"{value!r} is not a UTC offset (they run from -12:00 to +14:00)")
    return -offset if sign == "-" else offset


def _format_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _number(entry: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


def _point(entry: Any, default_offset: timedelta | None) -> PhotoPoint:
    if not isinstance(entry, dict):
        raise ValueError('each point is an object like {"prefix": "km10/", "km": 10}')
    unknown = sorted(set(entry) - _POINT_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}")
    prefix = entry.get("prefix")
    if not isinstance(prefix, str):
        raise ValueError("prefix must be a string (a key prefix or folder such as 'km10/')")
    if prefix.startswith("/"):
        raise ValueError(f"prefix {prefix!r}: S3 keys do not start with '/'")
    km = _number(entry, "km")
    if not 0 <= km <= 1000:
        raise ValueError(f"km {km:g} is not a course distance (0-1000)")
    clock_offset = _number(entry, "clock_offset_s", 0.0)
    if abs(clock_offset) > MAX_CLOCK_OFFSET_S:
        raise ValueError(f"clock_offset_s {clock_offset:g} is more than a day")
    if "utc_offset" in entry:
        offset = parse_utc_offset(entry["utc_offset"])
    elif default_offset is not None:
        offset = default_offset
    else:
        raise ValueError("no utc_offset: give one for all points or for this one")
    return PhotoPoint(prefix=prefix, km=km, clock_offset_s=clock_offset, utc_offset=offset)


def photo_time(taken_at: str | None, point: PhotoPoint) -> float | None:
    """The photo's true time (POSIX seconds), or None when the photo carries no time."""
    if not taken_at:
        return None
    try:
        moment = datetime.fromisoformat(taken_at)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone(point.utc_offset))
    return moment.timestamp() - point.clock_offset_s


@dataclass(frozen=True)
class PassingCheck:
    """What the chip says about one bib at one photo point, and what the photo says."""

    findings: tuple[str, ...]
    photo_time: float
    point_km: float
    chip_time: float | None = None  # interpolated passing time at the point
    tolerance_s: float | None = None
    before: tuple[str, float] | None = None  # (checkpoint, time) of the read behind
    after: tuple[str, float] | None = None  # (checkpoint, time) of the read ahead

    @property
    def difference_s(self) -> float | None:
        return None if self.chip_time is None else self.photo_time - self.chip_time

    def to_dict(self) -> dict[str, Any]:
        def read(value: tuple[str, float] | None) -> dict[str, str] | None:
            return None if value is None else {"checkpoint": value[0], "time": iso_utc(value[1])}

        difference = self.difference_s
        return {
            "point_km": self.point_km,
            "photo_time": iso_utc(self.photo_time),
            "chip_time": None if self.chip_time is None else iso_utc(self.chip_time),
            "difference_s": None if difference is None else round(difference, 1),
            "tolerance_s": None if self.tolerance_s is None else round(self.tolerance_s, 1),
            "before": read(self.before),
            "after": read(self.after),
            "findings": list(self.findings),
            "summary": self.describe(),
        }

    def describe(self) -> str:
        """One line for a reviewer, e.g. for the alert's summary."""
        if self.chip_time is not None and self.difference_s is not None:
            direction = "after" if self.difference_s > 0 else "before"
            return (f"photo at km {self.point_km:g} taken {abs(self.difference_s):.0f} s "
                    f"{direction} the chip passed (tolerance {self.tolerance_s:.0f} s)")
        parts = []
        if MISSED_CHECKPOINT in self.findings:
            parts.append(f"no chip read at any mat before km {self.point_km:g}")
        if self.before is not None and TIMING_MISMATCH in self.findings:
            parts.append(f"photo taken before the chip crossed {self.before[0]}")
        if self.after is not None and TIMING_MISMATCH in self.findings:
            parts.append(f"photo taken after the chip crossed {self.after[0]}")
        return "; ".join(parts) or f"photo at km {self.point_km:g}: no chip read to compare"


def passing_tolerance(*, fraction: float, interval_s: float, pace_s_per_km: float) -> float:
    return (CLOCK_TOLERANCE_S + POINT_UNCERTAINTY_KM * pace_s_per_km
            + PACE_CHANGE * fraction * (1.0 - fraction) * interval_s)


def check_passing(*, course: Sequence[Checkpoint], times: Mapping[str, float] | None,
                  point_km: float, photo_seconds: float) -> PassingCheck:
    """Compare a photo of a bib at ``point_km`` with the bib's chip reads (``times``)."""
    reads = times or {}
    behind_km = point_km - POINT_UNCERTAINTY_KM  # mats the photo proves the bib passed
    before: tuple[Checkpoint, float] | None = None
    after: tuple[Checkpoint, float] | None = None
    first: tuple[Checkpoint, float] | None = None
    last: tuple[Checkpoint, float] | None = None
    mat_behind = read_behind = False
    for checkpoint in course:
        mat_behind = mat_behind or checkpoint.km <= behind_km
        seconds = reads.get(checkpoint.name)
        if seconds is None:
            continue
        last = (checkpoint, seconds)
        first = first or last
        read_behind = read_behind or checkpoint.km <= behind_km
        if checkpoint.km <= point_km:
            before = last
        if checkpoint.km >= point_km and after is None:
            after = last
    findings: list[str] = []
    if mat_behind and not read_behind:
        findings.append(MISSED_CHECKPOINT)

    if before is not None and after is not None:
        (start, start_s), (end, end_s) = before, after
        span_km = end.km - start.km
        fraction = (point_km - start.km) / span_km if span_km > 0 else 0.0
        chip_time = start_s + fraction * (end_s - start_s)
        pace = (end_s - start_s) / span_km if span_km > 0 else _pace(first, last)
        tolerance = passing_tolerance(fraction=fraction, interval_s=end_s - start_s,
                                      pace_s_per_km=pace)
        if abs(photo_seconds - chip_time) > tolerance:
            findings.append(TIMING_MISMATCH)
        return PassingCheck(findings=tuple(findings), photo_time=photo_seconds,
                            point_km=point_km, chip_time=chip_time, tolerance_s=tolerance,
                            before=(start.name, start_s), after=(end.name, end_s))

    # Reads on one side only: no passing time to interpolate, but the photo cannot precede
    # the chip at a mat behind the point, nor follow it at a mat ahead.
    tolerance = passing_tolerance(fraction=0.0, interval_s=0.0, pace_s_per_km=_pace(first, last))
    if before is not None and photo_seconds < before[1] - tolerance:
        findings.append(TIMING_MISMATCH)
    if after is not None and photo_seconds > after[1] + tolerance:
        findings.append(TIMING_MISMATCH)
    return PassingCheck(
        findings=tuple(findings), photo_time=photo_seconds, point_km=point_km,
        tolerance_s=tolerance if first is not None else None,
        before=None if before is None else (before[0].name, before[1]),
        after=None if after is None else (after[0].name, after[1]))


def _pace(first: tuple[Checkpoint, float] | None, last: tuple[Checkpoint, float] | None
          ) -> float:
    """The runner's average pace from their first read to their last, seconds per km."""
    if first is not None and last is not None and last[0].km > first[0].km:
        return (last[1] - first[1]) / (last[0].km - first[0].km)
    return FALLBACK_PACE_S_PER_KM
