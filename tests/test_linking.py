"""Linking bibs to the faces of their wearers, from geometry alone."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from racecheck.core.linking import (
    AMBIGUOUS,
    BAD_BOX,
    LINKED,
    NO_FACE_ABOVE,
    bib_geometry,
    link_bibs_to_faces,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RBNR = SHARED / "datasets" / "rbnr"

WIDTH, HEIGHT = 1200, 800


def box(
    left: float, top: float, width: float, height: float, image: tuple[int, int] = (WIDTH, HEIGHT)
) -> dict[str, float]:
    """A Rekognition box from pixel coordinates."""
    return {
        "Left": left / image[0],
        "Top": top / image[1],
        "Width": width / image[0],
        "Height": height / image[1],
    }


def face_at(centre_x: float, top: float, side: float = 60.0, **image: Any) -> dict[str, Any]:
    return {"box": box(centre_x - side / 2, top, side, side, **image), "confidence": 99.9}


def bib_below(
    face_centre_x: float,
    face_top: float,
    number: str = "3631",
    side: float = 60.0,
    dx: float = 0.0,
    dy: float = 3.4,
    **image: Any,
) -> dict[str, Any]:
    """A bib placed ``dx``/``dy`` face sizes from the face centre, 0.9 x 0.5 face sizes big."""
    centre_x = face_centre_x + dx * side
    centre_y = face_top + side / 2 + dy * side
    width, height = 0.9 * side, 0.5 * side
    return {
        "number": number,
        "confidence": 98.0,
        "box": box(centre_x - width / 2, centre_y - height / 2, width, height, **image),
    }


def links(bibs: list[dict[str, Any]], faces: list[dict[str, Any]]) -> list[tuple[Any, str]]:
    result = link_bibs_to_faces(bibs, faces, image_width=WIDTH, image_height=HEIGHT)
    return [(entry["face_index"], entry["why"]) for entry in result]


def test_single_runner_bib_links_to_the_face_above_it() -> None:
    # given one runner with a bib on the chest
    faces = [face_at(600, 100)]
    bibs = [bib_below(600, 100)]
    # when linked
    result = link_bibs_to_faces(bibs, faces, image_width=WIDTH, image_height=HEIGHT)
    # then the bib is linked to that face and the bib dict is carried through
    assert [(entry["face_index"], entry["why"]) for entry in result] == [(0, LINKED)]
    assert result[0]["bib"]["number"] == "3631"


def test_bib_with_no_face_above_stays_unlinked() -> None:
    # given a bib whose wearer faces away, and another person's face far to the side
    faces = [face_at(200, 100)]
    bibs = [bib_below(700, 100)]
    # when linked / then nobody is accused of wearing it
    assert links(bibs, faces) == [(None, NO_FACE_ABOVE)]


def test_bib_below_a_face_that_is_much_too_small_is_not_linked() -> None:
    # given a distant spectator's small face straight above a large bib close to the camera
    faces = [face_at(600, 100, side=15)]
    bibs = [bib_below(600, 100, side=120, dy=1.0)]
    # when linked / then the size ratio rules the spectator out
    assert links(bibs, faces) == [(None, NO_FACE_ABOVE)]


def test_spectator_and_marshal_faces_do_not_take_the_runners_bib() -> None:
    # given a runner between a spectator (smaller, higher, to the side) and a marshal
    faces = [face_at(300, 40, side=35), face_at(600, 150), face_at(950, 140)]
    bibs = [bib_below(600, 150)]
    # when linked / then the bib goes to the runner, index 1
    assert links(bibs, faces) == [(1, LINKED)]


def test_two_runners_side_by_side_each_get_their_own_bib_whatever_the_order() -> None:
    # given two runners two face widths apart, bibs slightly off-centre towards each other
    faces = [face_at(500, 100), face_at(640, 110)]
    bibs = [bib_below(500, 100, "101", dx=0.5), bib_below(640, 110, "202", dx=-0.5)]
    # when linked in both input orders
    forward = links(bibs, faces)
    backward = links(bibs[::-1], faces[::-1])
    # then each bib sits under its own runner
    assert forward == [(0, LINKED), (1, LINKED)]
    assert backward == [(0, LINKED), (1, LINKED)]


def test_a_face_with_two_bibs_links_both_to_that_face() -> None:
    # given one runner wearing two bibs, one above the other (a bib mule)
    faces = [face_at(600, 100)]
    bibs = [bib_below(600, 100, "101", dy=2.8), bib_below(600, 100, "202", dy=3.8)]
    # when linked / then both bibs point at the same face, for the rules to flag
    assert links(bibs, faces) == [(0, LINKED), (0, LINKED)]


def test_two_equally_plausible_faces_leave_the_bib_unlinked() -> None:
    # given a bib exactly between two same-sized faces at the same height
    faces = [face_at(570, 100), face_at(630, 100)]
    bibs = [bib_below(600, 100)]
    # when linked / then the linker abstains instead of guessing
    assert links(bibs, faces) == [(None, AMBIGUOUS)]


def test_a_clearly_better_face_wins_over_a_plausible_rival() -> None:
    # given one face straight above the bib and another just inside the horizontal gate
    faces = [face_at(600, 100), face_at(670, 100)]
    bibs = [bib_below(600, 100)]
    # when linked / then the centred face wins
    assert links(bibs, faces) == [(0, LINKED)]


def test_neighbour_bib_without_visible_face_is_not_linked_to_the_runner_beside() -> None:
    # given runner A (face and bib) and, beside A, runner B's bib with B's face turned away
    faces = [face_at(500, 100)]
    bibs = [bib_below(500, 100, "101"), bib_below(500, 100, "202", dx=2.2)]
    # when linked / then only A's bib is linked
    assert links(bibs, faces) == [(0, LINKED), (None, NO_FACE_ABOVE)]


def test_image_size_corrects_the_stretch_of_normalized_boxes() -> None:
    # given a wide panorama where a 100 px face has a bib 340 px below its centre
    image = (4000, 1000)
    face = {"box": box(1950, 100, 100, 100, image)}
    bib: dict[str, Any] = {"number": "7", "confidence": 99.0, "box": box(1955, 465, 90, 50, image)}
    # when linked with and without the pixel size
    with_size = link_bibs_to_faces([bib], [face], image_width=4000, image_height=1000)
    without_size = link_bibs_to_faces([bib], [face])
    # then only the pixel geometry sees a normal torso
    assert with_size[0]["why"] == LINKED
    assert without_size[0]["why"] == NO_FACE_ABOVE
    geometry = bib_geometry(bib["box"], face["box"], image_width=4000, image_height=1000)
    assert geometry is not None and geometry.dy == pytest.approx(3.4)


def test_bad_boxes_are_reported_not_raised() -> None:
    # given a bib without a box and a face with a zero-sized box
    faces = [{"box": {"Left": 0.5, "Top": 0.1, "Width": 0.0, "Height": 0.1}}]
    bibs = [{"number": "1", "confidence": 90.0}, bib_below(600, 100)]
    # when linked / then the bad bib is flagged and the bad face is never a candidate
    assert links(bibs, faces) == [(None, BAD_BOX), (None, NO_FACE_ABOVE)]


def test_no_faces_at_all() -> None:
    assert links([bib_below(600, 100)], []) == [(None, NO_FACE_ABOVE)]


def _rbnr_images() -> list[dict[str, Any]]:
    if not RBNR.is_dir():
        pytest.skip(f"RBNR dataset not found at {RBNR} (../shared is absent)")
    images: list[dict[str, Any]] = []
    for subset in ("set1", "set2"):
        images += json.loads((RBNR / subset / "ground_truth.json").read_text(encoding="utf-8"))
    return images


def _normalized(pixel: dict[str, float], image: dict[str, Any]) -> dict[str, float]:
    return box(
        pixel["left"],
        pixel["top"],
        pixel["width"],
        pixel["height"],
        (image["width"], image["height"]),
    )


@pytest.mark.dataset
def test_rbnr_labelled_pairs_are_linked_right_and_never_to_someone_else() -> None:
    # given every labelled photo, with all labelled faces of a photo as candidates
    images = _rbnr_images()
    right = wrong = total = 0
    for image in images:
        bibs = [
            {
                "number": entry["number"],
                "confidence": 99.0,
                "box": _normalized(entry["bib_box"], image),
            }
            for entry in image["bibs"]
        ]
        faces = [{"box": _normalized(entry["face_box"], image)} for entry in image["bibs"]]
        # when linked
        result = link_bibs_to_faces(
            bibs, faces, image_width=image["width"], image_height=image["height"]
        )
        for index, entry in enumerate(result):
            total += 1
            right += entry["face_index"] == index
            wrong += entry["face_index"] not in (None, index)
    # then (benchmark: 100% right, 0 wrong on 177 pairs) regressions stay within a margin
    assert total == 177
    assert right / total >= 0.97
    assert wrong == 0


@pytest.mark.dataset
def test_rbnr_with_the_own_face_removed_the_linker_abstains() -> None:
    # given every labelled bib with its own face removed and jittered rival faces kept
    images = _rbnr_images()
    rng = random.Random(7)
    linked = total = 0
    for image in images:
        for index, entry in enumerate(image["bibs"]):
            bib = {
                "number": entry["number"],
                "confidence": 99.0,
                "box": _normalized(entry["bib_box"], image),
            }
            rivals = []
            for position, other in enumerate(image["bibs"]):
                if position == index:
                    continue
                face_box = _normalized(other["face_box"], image)
                face_box["Left"] += rng.uniform(-0.1, 0.1) * face_box["Width"]
                rivals.append({"box": face_box})
            # when linked
            result = link_bibs_to_faces(
                [bib], rivals, image_width=image["width"], image_height=image["height"]
            )
            total += 1
            linked += result[0]["face_index"] is not None
    # then no bib is pinned on another runner
    assert total == 177
    assert linked == 0
