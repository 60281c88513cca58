"""Timing data: the course's timing mats (checkpoints) and each chip's crossing times (splits).

Checkpoints CSV (header row required, column names case-insensitive, comma, semicolon or
tab separated, UTF-8 with or without BOM): ``checkpoint,km``, one mat per row, e.g.
``start,0``, ``10k,10``, ``half,21.1``, ``finish,42.195``. Names and distances must be
unique (two mats at one distance cannot be put in order).

Splits CSV, as the timing system exports them: ``bib,checkpoint,time`` (other columns are
ignored). ``time`` is either ISO 8601 with a UTC offset (``2026-04-20T09:31:02.4+02:00``,
``...Z``), or a time of day ``HH:MM:SS[.fff]`` read on ``race_date`` in ``timezone`` (an
IANA name such as ``Europe/Berlin``, or a fixed offset ``+02:00``); an ISO date-time
without an offset is also read in ``timezone``. Times of day are clock times, never
elapsed race times. A missing split (a mat that missed a chip, a runner who dropped out) is
data, not an error.

As with the registration list, every bad row is reported with its line number in one
``TimingError`` and nothing is returned when any row is bad: an unknown checkpoint, an
unreadable time, the same bib twice at one checkpoint, or a chip whose times do not
increase along the course (which means a wrong checkpoint name or a mixed-up time zone,
and would make every interpolation meaningless).

Times are kept as POSIX seconds (UTC) so that comparisons over thousands of runners stay
cheap; ``iso_utc`` turns one back into text.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any

from racecheck.core.registry import BadRowsError

CHECKPOINT_COLUMN = "checkpoint"
KM_COLUMN = "km"
BIB_COLUMN = "bib"
TIME_COLUMN = "time"
# Bibs are keys of the timing table, which keeps the course under this reserved key.
RESERVED_BIB_PREFIX = "#"
MAX_COURSE_KM = 1000.0

_CLOCK_TIME = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?$")
_WHITESPACE = re.compile(r"\s")
_FIXED_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):?(\d{2})$")


class TimingError(BadRowsError):
    """A timing file (checkpoints or splits) has bad rows."""


@dataclass(frozen=True)
class Checkpoint:
    name: str
    km: float


@dataclass(frozen=True)
class RaceTiming:
    """The course (mats in course order) and every bib's crossing times, POSIX seconds."""

    course: tuple[Checkpoint, ...]
    reads: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def split_count(self) -> int:
        return sum(len(times) for times in self.reads.values())


def parse_timezone(text: str) -> tzinfo:
    """``+02:00``, ``-0530``, ``Z``/``UTC``, or an IANA name such as ``Europe/Berlin``."""
    value = text.strip()
    if value.upper() in ("Z", "UTC"):
        return UTC
    match = _FIXED_OFFSET.match(value)
    if match:
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        if offset > timedelta(hours=14):
            raise ValueError(f"time zone {text!r}: offsets stop at +/-14:00")
        return timezone(-offset if sign == "-" else offset)
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError as error:  # pragma: no cover - zoneinfo is standard since 3.9
        raise ValueError(f"time zone {text!r}: no time zone database") from error
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"time zone {text!r} is neither an IANA name (Europe/Berlin) nor an offset (+02:00)"
        ) from error


def iso_utc(seconds: float) -> str:
    """POSIX seconds as ``2026-04-20T07:31:02.400Z`` (milliseconds, UTC)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str, *, race_date: date | None, zone: tzinfo | None) -> float:
    """One split time as POSIX seconds; raises ``ValueError`` saying what is missing."""
    value = text.strip()
    if len(value) > 10 and value[4] == "-":  # a date first: ISO 8601, the common case
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return moment.timestamp()
    clock = _CLOCK_TIME.match(value)
    if clock:
        if race_date is None or zone is None:
            raise ValueError(f"time {value!r} is a time of day: give --race-date and --timezone")
        hours, minutes, seconds, fraction = clock.groups()
        if int(hours) > 23 or int(minutes) > 59 or int(seconds) > 59:
            raise ValueError(f"time {value!r} is not a time of day")
        micro = int((fraction or "0").ljust(6, "0"))
        moment = datetime.combine(
            race_date, time(int(hours), int(minutes), int(seconds), micro), tzinfo=zone)
        return moment.timestamp()
    try:
        moment = datetime.fromisoformat(value.replace(",", "."))
    except ValueError:
        raise ValueError(
            f"time {value!r} is neither ISO 8601 (2026-04-20T09:31:02+02:00) "
            "nor HH:MM:SS[.fff]") from None
    if moment.tzinfo is None:
        if zone is None:
            raise ValueError(f"time {value!r} has no UTC offset: add one or give --timezone")
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


def _reader(text: str) -> tuple[Any, list[str]]:
    text = text.lstrip("\ufeff")
    if not text.strip():
        return None, []
    first_line = text.splitlines()[0]
    try:
        dialect: Any = csv.Sniffer().sniff(first_line, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect=dialect)
    header = [name.strip().lower() for name in next(reader)]
    return reader, header


def _rows(reader: Any, columns: list[str], problems: list[tuple[int, str]]
          ) -> Iterable[tuple[int, dict[str, str]]]:
    """Non-blank rows as dicts with their line numbers; shape problems go to ``problems``."""
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            problems.append((reader.line_num, f"unreadable CSV: {error}"))
            return
        if not "".join(cells).strip():
            continue
        if len(cells) != len(columns):
            problems.append((reader.line_num,
                             f"expected {len(columns)} cells, found {len(cells)}"))
            continue
        yield reader.line_num, dict(zip(columns, [cell.strip() for cell in cells], strict=True))


def _missing_columns(header: list[str], required: tuple[str, ...]) -> list[tuple[int, str]]:
    problems = []
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        problems.append((1, f"duplicate column(s): {', '.join(duplicated)}"))
    problems += [(1, f"missing column {name!r}") for name in required if name not in header]
    return problems


def parse_checkpoints_csv(text: str) -> tuple[Checkpoint, ...]:
    """The course's mats in course order, or ``TimingError`` listing every bad row."""
    what = "checkpoints file"
    reader, header = _reader(text)
    if reader is None:
        raise TimingError(what, [(1, "the file is empty: expected a header row checkpoint,km")])
    problems = _missing_columns(header, (CHECKPOINT_COLUMN, KM_COLUMN))
    if problems:
        raise TimingError(what, problems)
    checkpoints: list[Checkpoint] = []
    line_of_name: dict[str, int] = {}
    line_of_km: dict[float, int] = {}
    for line, row in _rows(reader, header, problems):
        name, km_text = row[CHECKPOINT_COLUMN], row[KM_COLUMN]
        reasons = []
        if not name:
            reasons.append("checkpoint name is empty")
        elif name in line_of_name:
            reasons.append(f"checkpoint {name!r} is already listed on line {line_of_name[name]}")
        try:
            km = float(km_text)
        except ValueError:
            km = math.nan
        if not 0 <= km <= MAX_COURSE_KM:
            reasons.append(f"km {km_text!r} is not a distance from 0 to {MAX_COURSE_KM:g}")
        elif km in line_of_km:
            reasons.append(f"km {km_text} is already the distance of line {line_of_km[km]}")
        if reasons:
            problems.append((line, "; ".join(reasons)))
            continue
        line_of_name[name] = line_of_km[km] = line
        checkpoints.append(Checkpoint(name, km))
    if not checkpoints and not problems:
        problems.append((1, "no checkpoints listed"))
    if problems:
        raise TimingError(what, problems)
    return tuple(sorted(checkpoints, key=lambda checkpoint: checkpoint.km))


def parse_splits_csv(text: str, *, course: tuple[Checkpoint, ...],
                     race_date: date | None = None, zone: tzinfo | None = None) -> RaceTiming:
    """Every bib's crossing times, or ``TimingError`` listing every bad row."""
    what = "splits file"
    reader, header = _reader(text)
    if reader is None:
        raise TimingError(what, [(1, "the file is empty: expected a header row "
                                     "bib,checkpoint,time")])
    problems = _missing_columns(header, (BIB_COLUMN, CHECKPOINT_COLUMN, TIME_COLUMN))
    if problems:
        raise TimingError(what, problems)
    # A dict keeps the course order for messages and answers "in" as fast as a set.
    known = dict.fromkeys(checkpoint.name for checkpoint in course)
    reads: dict[str, dict[str, float]] = {}
    line_of: dict[tuple[str, str], int] = {}
    for line, row in _rows(reader, header, problems):
        bib, name = row[BIB_COLUMN], row[CHECKPOINT_COLUMN]
        try:
            seconds = parse_time(row[TIME_COLUMN], race_date=race_date, zone=zone)
            problem = None
        except ValueError as error:
            problem = str(error)
        key = (bib, name)
        if (problem or key in line_of or name not in known or not bib
                or bib[0] == RESERVED_BIB_PREFIX or _WHITESPACE.search(bib)):
            problems.append((line, _split_problems(bib, name, problem, known, line_of)))
            continue
        line_of[key] = line
        times = reads.get(bib)
        if times is None:
            reads[bib] = {name: seconds}
        else:
            times[name] = seconds
    problems += _out_of_order(reads, course, line_of)
    if problems:
        raise TimingError(what, sorted(problems))
    return RaceTiming(course=course, reads=reads)


def _split_problems(bib: str, name: str, time_problem: str | None, known: Iterable[str],
                    line_of: Mapping[tuple[str, str], int]) -> str:
    reasons = []
    if not bib:
        reasons.append("bib is empty")
    elif _WHITESPACE.search(bib):
        reasons.append(f"bib {bib!r} contains spaces")
    elif bib.startswith(RESERVED_BIB_PREFIX):
        reasons.append(f"bib {bib!r} starts with {RESERVED_BIB_PREFIX!r} (reserved)")
    if name not in known:
        reasons.append(f"checkpoint {name!r} is not in the checkpoints file "
                       f"({', '.join(known)})")
    elif (bib, name) in line_of:
        reasons.append(f"bib {bib} already has a {name} split on line {line_of[(bib, name)]}")
    if time_problem:
        reasons.append(time_problem)
    return "; ".join(reasons)


def _out_of_order(reads: Mapping[str, Mapping[str, float]], course: tuple[Checkpoint, ...],
                  line_of: Mapping[tuple[str, str], int]) -> list[tuple[int, str]]:
    problems = []
    for bib, times in reads.items():
        previous: tuple[str, float] | None = None
        for checkpoint in course:
            if checkpoint.name not in times:
                continue
            seconds = times[checkpoint.name]
            if previous is not None and seconds <= previous[1]:
                problems.append((line_of[(bib, checkpoint.name)],
                                 f"bib {bib} crosses {checkpoint.name} at {iso_utc(seconds)}, "
                                 f"not after {previous[0]} at {iso_utc(previous[1])} "
                                 f"(line {line_of[(bib, previous[0])]})"))
            previous = (checkpoint.name, seconds)
    return problems
