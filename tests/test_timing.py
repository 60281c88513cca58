"""Checkpoints and splits files: parsing, line-numbered all-or-nothing validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from racecheck.core.timing import (
    Checkpoint,
    TimingError,
    iso_utc,
    parse_checkpoints_csv,
    parse_splits_csv,
    parse_timezone,
)

CHECKPOINTS = "checkpoint,km\nstart,0\n10k,10\nhalf,21.1\nfinish,42.195\n"
COURSE = parse_checkpoints_csv(CHECKPOINTS)


def seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_checkpoints_come_back_in_course_order() -> None:
    # given mats listed out of order, with a BOM, semicolons and odd capitalisation
    text = "\ufeffCheckpoint;KM\nfinish;42.195\nstart;0\nhalf;21.1\n"
    # when parsed / then they are sorted by distance
    assert parse_checkpoints_csv(text) == (
        Checkpoint("start", 0.0), Checkpoint("half", 21.1), Checkpoint("finish", 42.195))


@pytest.mark.parametrize(("text", "expected"), [
    ("", [(1, "the file is empty")]),
    ("name,km\nstart,0\n", [(1, "missing column 'checkpoint'")]),
    ("checkpoint,km\nstart,0\nstart,5\n", [(3, "'start' is already listed on line 2")]),
    ("checkpoint,km\nstart,0\nmat,0\n", [(3, "km 0 is already the distance of line 2")]),
    ("checkpoint,km\nstart,zero\n10k,-1\n,5\n", [(2, "km 'zero'"), (3, "km '-1'"),
                                                  (4, "name is empty")]),
    ("checkpoint,km\n", [(1, "no checkpoints listed")]),
])
def test_bad_checkpoints_are_all_reported_with_their_lines(
        text: str, expected: list[tuple[int, str]]) -> None:
    with pytest.raises(TimingError) as raised:
        parse_checkpoints_csv(text)
    problems = raised.value.problems
    assert [line for line, _ in problems] == [line for line, _ in expected]
    for (_, message), (_, fragment) in zip(problems, expected, strict=True):
        assert fragment in message


def test_splits_with_offsets_and_missing_mats_are_data() -> None:
    # given ISO times with offsets (Z and +02:00), an extra column, and a runner who missed
    # the 10k mat
    text = ("bib,checkpoint,time,chip_id\n"
            "1203,start,2026-04-19T07:02:10.4Z,A1\n"
            "1203,10k,2026-04-19T09:52:10.9+02:00,A1\n"
            "77,start,2026-04-19T07:05:00Z,B7\n"
            "77,half,2026-04-19T11:00:00+02:00,B7\n")
    # when parsed
    timing = parse_splits_csv(text, course=COURSE)
    # then every time is POSIX seconds, and the missed mat is simply absent
    assert timing.reads["1203"] == {"start": seconds("2026-04-19T07:02:10.4+00:00"),
                                    "10k": seconds("2026-04-19T07:52:10.9+00:00")}
    assert set(timing.reads["77"]) == {"start", "half"}
    assert timing.split_count == 4


def test_times_of_day_are_read_on_the_race_date_in_the_time_zone() -> None:
    # given times of day, in Berlin on a day of summer time (+02:00)
    text = "bib,checkpoint,time\n1,start,09:00:00\n1,10k,09:45:30.25\n"
    # when parsed with the race date and an IANA zone
    timing = parse_splits_csv(text, course=COURSE, race_date=date(2026, 4, 19),
                              zone=parse_timezone("Europe/Berlin"))
    # then the zone's offset on that day applies
    assert iso_utc(timing.reads["1"]["start"]) == "2026-04-19T07:00:00.000Z"
    assert iso_utc(timing.reads["1"]["10k"]) == "2026-04-19T07:45:30.250Z"


def test_an_iso_time_without_offset_needs_the_time_zone() -> None:
    text = "bib,checkpoint,time\n1,start,2026-04-19T09:00:00\n"
    with pytest.raises(TimingError, match="no UTC offset"):
        parse_splits_csv(text, course=COURSE)
    timing = parse_splits_csv(text, course=COURSE, zone=parse_timezone("-05:00"))
    assert iso_utc(timing.reads["1"]["start"]) == "2026-04-19T14:00:00.000Z"


def test_every_bad_split_is_reported_and_nothing_is_returned() -> None:
    # given one good row and one problem of each kind
    text = ("bib,checkpoint,time\n"
            "1,start,2026-04-19T07:00:00Z\n"          # 2: good
            "1,20k,2026-04-19T08:00:00Z\n"            # 3: unknown checkpoint
            "2,start,yesterday\n"                     # 4: unreadable time
            "3,start,09:00:00\n"                      # 5: time of day without date and zone
            "1,start,2026-04-19T07:00:01Z\n"          # 6: second start split for bib 1
            "#course,start,2026-04-19T07:00:00Z\n"    # 7: reserved bib
            "4 4,start,2026-04-19T07:00:00Z\n"        # 8: space in bib
            "5,start\n")                              # 9: a cell missing
    # when parsed
    with pytest.raises(TimingError) as raised:
        parse_splits_csv(text, course=COURSE)
    # then each bad line is named once, in order, with what is wrong
    problems = dict(raised.value.problems)
    assert sorted(problems) == [3, 4, 5, 6, 7, 8, 9]
    assert "'20k' is not in the checkpoints file (start, 10k, half, finish)" in problems[3]
    assert "neither ISO 8601" in problems[4]
    assert "--race-date and --timezone" in problems[5]
    assert "already has a start split on line 2" in problems[6]
    assert "reserved" in problems[7]
    assert "contains spaces" in problems[8]
    assert "expected 3 cells, found 2" in problems[9]
    assert str(raised.value).startswith("7 problem(s) in the splits file:\nline 3:")


def test_times_going_backwards_along_the_course_are_an_error_on_the_later_mat() -> None:
    # given a runner whose 10k time is before the start time (a mixed-up zone, say)
    text = ("bib,checkpoint,time\n"
            "1,10k,2026-04-19T06:40:00Z\n"
            "1,start,2026-04-19T07:00:00Z\n")
    with pytest.raises(TimingError) as raised:
        parse_splits_csv(text, course=COURSE)
    ((line, message),) = raised.value.problems
    assert line == 2
    assert "crosses 10k at 2026-04-19T06:40:00.000Z, not after start" in message
    assert "(line 3)" in message


@pytest.mark.parametrize(("text", "offset"), [
    ("+02:00", timedelta(hours=2)), ("-0530", timedelta(hours=-5, minutes=-30)),
    ("Z", timedelta(0)), ("UTC", timedelta(0)),
])
def test_fixed_offsets_are_understood(text: str, offset: timedelta) -> None:
    assert parse_timezone(text).utcoffset(None) == offset


def test_an_unknown_time_zone_is_explained() -> None:
    with pytest.raises(ValueError, match="neither an IANA name"):
        parse_timezone("Mars/Olympus")


def test_iso_utc_keeps_milliseconds() -> None:
    moment = datetime(2026, 4, 19, 9, 31, 2, 450000, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(moment.timestamp()) == "2026-04-19T07:31:02.450Z"
    assert datetime.fromisoformat(iso_utc(moment.timestamp())) == moment.astimezone(UTC)
