"""Link each bib in a photo to the face of the person wearing it, or to nobody.

A photo may hold several runners, spectators and marshals without bibs, and bibs whose
wearer faces away. The linker only uses geometry, measured in units of the face's own size
so that near and far runners are judged alike:

* ``dx``: horizontal offset of the bib centre from the face centre, in face sizes;
* ``dy``: how far the bib centre lies below the face centre, in face sizes;
* ``size``: the bib's geometric-mean side divided by the face's (a bib is a bit smaller
  than a face on the same person; a distant spectator's face is much smaller than a bib in
  front of the camera).

"Face size" is the geometric mean of the face box's sides in pixels. Rekognition boxes are
fractions of the image width and height, so on a non-square image a normalized box is
stretched along one axis; pass ``image_width``/``image_height`` and the boxes are converted
to pixels first. Without them the image is treated as square, which skews ``dx``/``dy`` by
the image's aspect ratio (on a 2:3 portrait by about 20%), still inside the gates below.

A face is a candidate for a bib when it passes every gate (``MAX_ABS_DX``, ``DY_RANGE``,
``SIZE_RANGE``). Candidates are scored by a squared, normalised distance from the typical
geometry (``EXPECTED_*``). Assignment is greedy by score, one bib per face first; a bib
whose candidate faces are all taken by better-placed bibs is still linked to its best one
(a runner may wear several bibs: the rules flag that). A bib is left unlinked as
``AMBIGUOUS`` when its best and second-best remaining candidates score within
``AMBIGUITY_MARGIN`` of each other: guessing would risk accusing the wrong person.

The gate and the expected values were set from body proportions (a torso is about 2.5 face
widths wide; chest bibs sit 2-5 face heights below the face centre) and checked against the
labelled RBNR photos (``benchmarks/linker_rbnr.py``), where the labelled pairs span
|dx| <= 1.12, 1.58 <= dy <= 4.90, 0.52 <= size <= 1.08 and the nearest other runner's face
lies at |dx| >= 1.62.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LINKED = "LINKED"
NO_FACE_ABOVE = "NO_FACE_ABOVE"
AMBIGUOUS = "AMBIGUOUS"
BAD_BOX = "BAD_BOX"

MAX_ABS_DX = 1.3
DY_RANGE = (1.2, 6.0)
SIZE_RANGE = (0.3, 2.0)

EXPECTED_DY = 3.4
EXPECTED_SIZE = 0.7
SPREAD_DX = 0.45
SPREAD_DY = 0.9
SPREAD_LOG_SIZE = 0.35

AMBIGUITY_MARGIN = 2.0


@dataclass(frozen=True)
class _Box:
    left: float
    top: float
    width: float
    height: float

    @property
    def centre_x(self) -> float:
        return self.left + self.width / 2

    @property
    def centre_y(self) -> float:
        return self.top + self.height / 2

    @property
    def size(self) -> float:
        return math.sqrt(self.width * self.height)


@dataclass(frozen=True)
class Geometry:
    """Where a bib sits relative to one face, in units of that face's size."""

    dx: float
    dy: float
    size: float

    @property
    def plausible(self) -> bool:
        return (
            abs(self.dx) <= MAX_ABS_DX
            and DY_RANGE[0] <= self.dy <= DY_RANGE[1]
            and SIZE_RANGE[0] <= self.size <= SIZE_RANGE[1]
        )

    @property
    def cost(self) -> float:
        return (
            (self.dx / SPREAD_DX) ** 2
            + ((self.dy - EXPECTED_DY) / SPREAD_DY) ** 2
            + (math.log(self.size / EXPECTED_SIZE) / SPREAD_LOG_SIZE) ** 2
        )


def _to_box(raw: Any, scale_x: float, scale_y: float) -> _Box | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        box = _Box(
            float(raw["Left"]) * scale_x,
            float(raw["Top"]) * scale_y,
            float(raw["Width"]) * scale_x,
            float(raw["Height"]) * scale_y,
        )
    except (KeyError, TypeError, ValueError):
        return None
    if not (box.width > 0 and box.height > 0) or not all(
        math.isfinite(value) for value in (box.left, box.top, box.width, box.height)
    ):
        return None
    return box


def bib_geometry(bib_box: Mapping[str, Any], face_box: Mapping[str, Any], *,
                 image_width: int | None = None,
                 image_height: int | None = None) -> Geometry | None:
    """The bib's position relative to a face, or None when either box is unusable."""
    scale_x, scale_y = _scales(image_width, image_height)
    bib = _to_box(bib_box, scale_x, scale_y)
    face = _to_box(face_box, scale_x, scale_y)
    if bib is None or face is None:
        return None
    return _geometry(bib, face)


def _geometry(bib: _Box, face: _Box) -> Geometry:
    unit = face.size
    return Geometry(
        dx=(bib.centre_x - face.centre_x) / unit,
        dy=(bib.centre_y - face.centre_y) / unit,
        size=bib.size / unit,
    )


def _scales(image_width: int | None, image_height: int | None) -> tuple[float, float]:
    if image_width and image_height and image_width > 0 and image_height > 0:
        return float(image_width), float(image_height)
    return 1.0, 1.0


def link_bibs_to_faces(bibs: Sequence[Mapping[str, Any]], faces: Sequence[Mapping[str, Any]],
                       *, image_width: int | None = None,
                       image_height: int | None = None) -> list[dict[str, Any]]:
    """One entry per bib, in input order: ``{"bib", "face_index", "why"}``.

    ``why`` is ``LINKED`` (``face_index`` set), ``NO_FACE_ABOVE`` (no face passes the
    gates), ``AMBIGUOUS`` (two faces fit about equally well) or ``BAD_BOX`` (the bib has no
    usable box). ``face_index`` indexes ``faces``.
    """
    scale_x, scale_y = _scales(image_width, image_height)
    face_boxes = [_to_box(face.get("box"), scale_x, scale_y) for face in faces]

    candidates: list[list[tuple[float, int]]] = []
    bad_bib: set[int] = set()
    for bib_index, bib in enumerate(bibs):
        bib_box = _to_box(bib.get("box"), scale_x, scale_y)
        if bib_box is None:
            bad_bib.add(bib_index)
            candidates.append([])
            continue
        scored = []
        for face_index, face_box in enumerate(face_boxes):
            if face_box is None:
                continue
            geometry = _geometry(bib_box, face_box)
            if geometry.plausible:
                scored.append((geometry.cost, face_index))
        candidates.append(sorted(scored))

    owner_of_face = _assign_one_bib_per_face(candidates)

    results: list[dict[str, Any]] = []
    for bib_index, bib in enumerate(bibs):
        linked_face, why = _choose(bib_index, candidates[bib_index], owner_of_face)
        if bib_index in bad_bib:
            why = BAD_BOX
        results.append({"bib": dict(bib), "face_index": linked_face, "why": why})
    return results


def _assign_one_bib_per_face(candidates: list[list[tuple[float, int]]]) -> dict[int, int]:
    """Greedy by cost: the best-placed bib gets each face first. face index -> bib index."""
    pairs = sorted(
        (cost, bib_index, face_index)
        for bib_index, scored in enumerate(candidates)
        for cost, face_index in scored
    )
    owner_of_face: dict[int, int] = {}
    assigned_bibs: set[int] = set()
    for _cost, bib_index, face_index in pairs:
        if bib_index in assigned_bibs or face_index in owner_of_face:
            continue
        owner_of_face[face_index] = bib_index
        assigned_bibs.add(bib_index)
    return owner_of_face


def _choose(bib_index: int, scored: list[tuple[float, int]],
            owner_of_face: Mapping[int, int]) -> tuple[int | None, str]:
    if not scored:
        return None, NO_FACE_ABOVE
    # Faces held by another bib are not rivals: that bib sits better under them. When every
    # candidate is held, the bib shares a face (a runner wearing several bibs) and the
    # rivals are the held faces themselves.
    own_or_free = [
        (cost, face_index) for cost, face_index in scored
        if owner_of_face.get(face_index, bib_index) == bib_index
    ]
    rivals = own_or_free or scored
    if len(rivals) >= 2 and rivals[1][0] - rivals[0][0] < AMBIGUITY_MARGIN:
        return None, AMBIGUOUS
    return rivals[0][1], LINKED
