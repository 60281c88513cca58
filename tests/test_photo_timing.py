"""Photo points, the photo's true time, and the photo-versus-chip check."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from racecheck.core.photo_timing import (
    CLOCK_TOLERANCE_S,
    MISSED_CHECKPOINT,
    POINT_UNCERTAINTY_KM,
    TIMING_MISMATCH,
    PhotoPoint,
    PhotoPoints,
    PhotoPointsError,
    check_passing,
    passing_tolerance,
    photo_time,
)
from racecheck.core.timing import Checkpoint

COURSE = tuple(Checkpoint(name, km) for name, km in
               (("start", 0), ("10k", 10), ("half", 21.1), ("30k", 30), ("finish", 42.195)))
START = datetime.fromisoformat("2026-04-19T09:00:00+02:00").timestamp()
PACE = 300.0  # 5:00 per km, even
EVEN = {checkpoint.name: START + checkpoint.km * PACE for checkpoint in COURSE}
POINTS = {"utc_offset": "+02:00",
          "points": [{"prefix": "km25/", "km": 25},
                     {"prefix": "km25/cam-b/", "km": 25.2, "clock_offset_s": -40,
                      "utc_offset": "+01:00"}]}


# ------------------------------------------------------------------------------ photo points


def test_the_longest_matching_prefix_places_a_photo() -> None:
    points = PhotoPoints.from_raw(POINTS)
    assert points.locate("km25/cam-a/IMG_1.jpg") == PhotoPoint(
        prefix="km25/", km=25.0, clock_offset_s=0.0, utc_offset=timedelta(hours=2))
    assert points.locate("km25/cam-b/IMG_2.jpg") == PhotoPoint(
        prefix="km25/cam-b/", km=25.2, clock_offset_s=-40.0, utc_offset=timedelta(hours=1))
    assert points.locate("finish/IMG_3.jpg") is None


def test_photo_points_round_trip_through_the_environment_variable() -> None:
    points = PhotoPoints.from_raw(POINTS)
    assert PhotoPoints.from_json_text(points.to_json()) == points
    assert PhotoPoints.from_json_text(None) == PhotoPoints()
    assert json.loads(points.to_json())["points"][0] == {
        "prefix": "km25/", "km": 25.0, "clock_offset_s": 0.0, "utc_offset": "+02:00"}


@pytest.mark.parametrize(("raw", "message"), [
    ([], "must be an object"),
    ({"points": [{"prefix": "a/", "km": 1}]}, "points[0]: no utc_offset"),
    ({"utc_offset": "2h", "points": []}, "utc_offset: '2h' is not a UTC offset"),
    ({"utc_offset": "+02:00", "points": [{"prefix": "a/", "km": "ten"}]}, "km must be a number"),
    ({"utc_offset": "+02:00", "points": [{"prefix": "a/", "km": -1}]}, "not a course distance"),
    ({"utc_offset": "+02:00", "points": [{"prefix": "/a", "km": 1}]}, "do not start with '/'"),
    ({"utc_offset": "+02:00", "points": [{"prefix": "a/", "km": 1, "clock_ofset_s": 3}]},
     "unknown key(s) 'clock_ofset_s'"),
    ({"utc_offset": "+02:00", "points": [{"prefix": "a/", "km": 1},
                                         {"prefix": "a/", "km": 2}]},
     "points[1]: prefix 'a/' is already points[0]"),
    ({"utc_offset": "+02:00", "points": [{"prefix": "a/", "km": 1,
                                          "clock_offset_s": 100_000}]}, "more than a day"),
    ({"utc_offset": "+02:00", "extra": 1}, "unknown key 'extra'"),
])
def test_bad_photo_points_are_named(raw: object, message: str) -> None:
    with pytest.raises(PhotoPointsError) as raised:
        PhotoPoints.from_raw(raw)
    assert message in str(raised.value)


def test_the_camera_clock_offset_is_taken_off_and_the_exif_offset_wins() -> None:
    point = PhotoPoints.from_raw(POINTS).locate("km25/cam-b/x.jpg")
    assert point is not None
    # a camera running 40 s slow (offset -40): its 10:00:00 at +01:00 is 09:00:40 UTC
    assert photo_time("2026-04-19T10:00:00", point) == datetime.fromisoformat(
        "2026-04-19T09:00:40+00:00").timestamp()
    # an offset written by the camera (OffsetTimeOriginal) is used instead of the point's
    assert photo_time("2026-04-19T10:00:00.5+02:00", point) == datetime.fromisoformat(
        "2026-04-19T08:00:40.5+00:00").timestamp()
    assert photo_time(None, point) is None
    assert photo_time("not a time", point) is None


# ------------------------------------------------------------------------------ the check


def test_a_photo_at_the_chip_time_passes_and_the_passing_time_is_interpolated() -> None:
    # given an even-paced runner, photographed at km 25 exactly when the chip says
    at_25 = START + 25 * PACE
    check = check_passing(course=COURSE, times=EVEN, point_km=25, photo_seconds=at_25)
    # then nothing is found, between the half and the 30k reads
    assert check.findings == ()
    assert check.chip_time == pytest.approx(at_25)
    assert (check.before, check.after) == (("half", EVEN["half"]), ("30k", EVEN["30k"]))
    assert check.to_dict()["difference_s"] == 0.0


def test_the_tolerance_grows_from_the_mats_to_mid_interval() -> None:
    # at a mat: the clock and where the photographer stands
    assert passing_tolerance(fraction=0, interval_s=3000, pace_s_per_km=300) == (
        CLOCK_TOLERANCE_S + POINT_UNCERTAINTY_KM * 300)
    # mid-way between two mats 3000 s apart: plus 0.4 x 0.25 x 3000 = 300 s
    assert passing_tolerance(fraction=0.5, interval_s=3000, pace_s_per_km=300) == (
        pytest.approx(15 + 60 + 300))


def test_a_photo_far_from_the_chip_time_is_a_timing_mismatch() -> None:
    # given the bib photographed at km 25 twenty minutes before its chip passed (a faster
    # runner wore it, or the chip went with someone slower)
    at_25 = START + 25 * PACE
    check = check_passing(course=COURSE, times=EVEN, point_km=25, photo_seconds=at_25 - 1200)
    assert check.findings == (TIMING_MISMATCH,)
    assert check.difference_s == pytest.approx(-1200)
    assert "taken 1200 s before the chip passed" in check.describe()


def test_a_photo_within_the_tolerance_passes_but_just_beyond_it_does_not() -> None:
    at_25 = START + 25 * PACE
    reference = check_passing(course=COURSE, times=EVEN, point_km=25, photo_seconds=at_25)
    assert reference.tolerance_s is not None
    inside = check_passing(course=COURSE, times=EVEN, point_km=25,
                           photo_seconds=at_25 + reference.tolerance_s - 1)
    outside = check_passing(course=COURSE, times=EVEN, point_km=25,
                            photo_seconds=at_25 + reference.tolerance_s + 1)
    assert (inside.findings, outside.findings) == ((), (TIMING_MISMATCH,))


def test_a_missed_mat_is_skipped_and_the_interval_widens() -> None:
    # given the 30k mat missed the chip: the passing time comes from the half and finish
    times = {name: value for name, value in EVEN.items() if name != "30k"}
    check = check_passing(course=COURSE, times=times, point_km=25,
                          photo_seconds=START + 25 * PACE)
    assert check.findings == ()
    assert check.after == ("finish", EVEN["finish"])


def test_a_photo_at_a_mat_compares_with_that_read() -> None:
    check = check_passing(course=COURSE, times=EVEN, point_km=42.195,
                          photo_seconds=EVEN["finish"] + 20)
    assert check.chip_time == EVEN["finish"]
    assert check.findings == ()
    assert check.tolerance_s == CLOCK_TOLERANCE_S + POINT_UNCERTAINTY_KM * PACE


def test_a_bib_photographed_past_mats_that_never_read_its_chip_missed_them() -> None:
    # given reads only from the 30k on, and a photo at km 25
    times = {name: EVEN[name] for name in ("30k", "finish")}
    check = check_passing(course=COURSE, times=times, point_km=25,
                          photo_seconds=START + 25 * PACE)
    assert check.findings == (MISSED_CHECKPOINT,)
    assert "no chip read at any mat before km 25" in check.describe()


def test_a_registered_bib_without_any_read_missed_every_mat_behind_the_photo() -> None:
    check = check_passing(course=COURSE, times=None, point_km=25, photo_seconds=START)
    assert check.findings == (MISSED_CHECKPOINT,)


def test_no_read_after_the_photo_is_a_drop_out_not_a_finding() -> None:
    # given a runner whose reads stop at the half, photographed at km 25 at a fitting time
    times = {name: EVEN[name] for name in ("start", "10k", "half")}
    fitting = check_passing(course=COURSE, times=times, point_km=25,
                            photo_seconds=START + 25 * PACE)
    assert fitting.findings == ()
    # but a photo at km 25 before the chip even crossed the half is off
    early = check_passing(course=COURSE, times=times, point_km=25,
                          photo_seconds=EVEN["half"] - 600)
    assert early.findings == (TIMING_MISMATCH,)
    assert "photo taken before the chip crossed half" in early.describe()


def test_a_photo_before_any_mat_with_no_reads_says_nothing() -> None:
    # given a photo point 100 m after the start, and a chip the start mat missed
    check = check_passing(course=COURSE, times={"10k": EVEN["10k"]}, point_km=0.1,
                          photo_seconds=START + 30)
    assert check.findings == ()
