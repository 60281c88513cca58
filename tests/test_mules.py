"""Chip-mule groups from splits alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from racecheck.core.mules import (
    MuleGroup,
    find_mule_groups,
    mule_tolerance,
    time_resolution,
)
from racecheck.core.timing import Checkpoint, RaceTiming

COURSE = tuple(Checkpoint(name, km) for name, km in
               (("start", 0), ("10k", 10), ("half", 21.1), ("30k", 30), ("finish", 42.195)))
# A 4:00 marathon runner's passage times (POSIX seconds): a start at 07:00Z, then even pace.
BASE = {checkpoint.name: 1_776_582_000 + checkpoint.km * 341.3 for checkpoint in COURSE}


def runner(offsets: Sequence[float | None], *, shift: float = 0.0) -> dict[str, float]:
    """Reads at BASE + shift + the offset at each mat (None: the mat missed the chip)."""
    return {checkpoint.name: round(BASE[checkpoint.name] + shift + offset, 1)
            for checkpoint, offset in zip(COURSE, offsets, strict=True) if offset is not None}


def race(reads: Mapping[str, dict[str, float]]) -> RaceTiming:
    return RaceTiming(course=COURSE, reads=dict(reads))


def test_two_chips_on_one_body_are_one_group_and_report_their_widest_gap() -> None:
    # given bibs 1203 and 4410 read within tenths of each other at all five mats, and an
    # unrelated runner a minute behind
    timing = race({
        "4410": runner([0.3, 0.1, 0.0, 0.4, 0.2]),
        "1203": runner([0.0, 0.0, 0.2, 0.0, 0.9]),
        "9": runner([0, 0, 0, 0, 0], shift=60),
    })
    # when grouped / then one group, in bib order, with the widest spread at any mat
    assert find_mule_groups(timing) == [MuleGroup(bibs=["1203", "4410"], checkpoints=5,
                                                  max_gap_s=0.7)]


def test_a_mule_group_survives_a_missed_mat_and_three_chips_form_one_group() -> None:
    # given three chips on one body, one of them missed by the half-marathon mat
    timing = race({
        "98": runner([0.0, 0.2, 0.1, 0.0, 0.3]),
        "1203": runner([0.1, 0.0, None, 0.2, 0.0]),
        "77": runner([0.4, 0.3, 0.3, 0.5, 0.4]),
    })
    # then they are one group, numbers in numeric order
    (group,) = find_mule_groups(timing)
    assert group.bibs == ["77", "98", "1203"]
    assert group.checkpoints == 5


def test_runners_side_by_side_whose_gap_wanders_are_not_a_mule() -> None:
    # given two pack runners within the tolerance of each other at every mat, but first
    # one and then the other ahead: two bodies drifting through a pack
    timing = race({
        "1": runner([0.0, 0.0, 1.0, 0.0, 0.0]),
        "2": runner([0.0, 0.9, 0.0, 0.0, 0.9]),
        "3": runner([0.6, 0.0, 0.0, 1.0, 0.0]),
    })
    # then nobody is grouped: each pair's signed difference swings by more than 1.1 s
    assert mule_tolerance(timing) == 1.1
    assert find_mule_groups(timing) == []


def test_one_mat_apart_is_enough_to_clear_a_pair() -> None:
    # given two runners together everywhere except one mat, where 1.5 s separate them
    timing = race({"1": runner([0, 0, 0, 0, 0]), "2": runner([0.2, 0.1, 1.5, 0.3, 0.2])})
    assert find_mule_groups(timing) == []


def test_runners_together_at_only_two_shared_mats_are_not_a_mule() -> None:
    # given two chips read together, but the mats read both at only two places
    timing = race({"1": runner([0, 0, None, None, 0]), "2": runner([0.1, None, 0, 0, 0.1])})
    assert find_mule_groups(timing) == []
    # and with a third shared mat they are
    timing = race({"1": runner([0, 0, None, 0, 0]), "2": runner([0.1, None, 0, 0, 0.1])})
    assert [group.bibs for group in find_mule_groups(timing)] == [["1", "2"]]


def test_whole_second_splits_get_a_wider_tolerance() -> None:
    # given splits rounded to whole seconds, where chips a few tenths apart land on
    # neighbouring seconds
    timing = race({"1": {name: float(round(value)) for name, value in runner(
                       [0, 0, 0, 0, 0]).items()},
                   "2": {name: float(round(value + 0.6)) for name, value in runner(
                       [0, 0, 0, 0, 0]).items()}})
    # then the resolution is found from the data and the pair is still one carrier
    assert time_resolution(timing) == 1.0
    assert mule_tolerance(timing) == 2.0
    assert [group.bibs for group in find_mule_groups(timing)] == [["1", "2"]]


def test_resolution_follows_the_coarsest_times() -> None:
    assert time_resolution(race({"1": {"start": 1_776_582_000.25}})) == 0.01
    assert time_resolution(race({"1": {"start": 1_776_582_000.4},
                                 "2": {"start": 1_776_582_001.0}})) == 0.1
