"""How well does the bib-to-face linker do on the labelled RBNR photos?

Uses only the labelled boxes (no detector): for every image of set1 and set2, all labelled
bibs are linked to all labelled faces of that image (so in multi-runner photos every other
runner's face is a rival candidate) and each labelled pair is scored as

* right: the bib is linked to its own face;
* wrong: the bib is linked to another face (the costly error: it accuses someone else);
* unlinked: the linker abstained (``NO_FACE_ABOVE`` or ``AMBIGUOUS``).

Harder variants, reported separately:

* ``without image size``: normalized boxes without ``image_width``/``image_height``;
* ``own face missing``: each bib's own face is removed (a runner facing away, a face the
  detector missed); the right answer is then to abstain, so any link is wrong;
* ``jittered boxes``: every box edge moved by up to 15% of its side (seeded), as a
  detector's boxes would differ from hand labels;
* ``spectator above``: for every runner a smaller face (0.6x) is added straight above the
  real one (a spectator in the stands behind); a link to it is wrong;
* ``packed neighbour``: for every runner a same-sized face is added beside the real one,
  its centre 1.6 face widths away on a random (seeded) side, as in a tight pack whose
  neighbour's bib is hidden; a link to it is wrong.

Run: ``.venv/bin/python benchmarks/linker_rbnr.py [path/to/rbnr]``.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from racecheck.core.linking import link_bibs_to_faces  # noqa: E402

DEFAULT_DATASET = REPOSITORY_ROOT.parent / "shared" / "datasets" / "rbnr"

Box = dict[str, float]
Image = dict[str, Any]


def load_images(dataset: Path) -> list[Image]:
    images: list[Image] = []
    for subset in ("set1", "set2"):
        ground_truth = dataset / subset / "ground_truth.json"
        images.extend(json.loads(ground_truth.read_text(encoding="utf-8")))
    return images


def normalized(pixel_box: dict[str, float], width: int, height: int) -> Box:
    return {
        "Left": pixel_box["left"] / width,
        "Top": pixel_box["top"] / height,
        "Width": pixel_box["width"] / width,
        "Height": pixel_box["height"] / height,
    }


def jittered(box: Box, rng: random.Random, amount: float = 0.15) -> Box:
    left = box["Left"] + rng.uniform(-amount, amount) * box["Width"]
    top = box["Top"] + rng.uniform(-amount, amount) * box["Height"]
    right = box["Left"] + box["Width"] * (1 + rng.uniform(-amount, amount))
    bottom = box["Top"] + box["Height"] * (1 + rng.uniform(-amount, amount))
    return {"Left": left, "Top": top, "Width": right - left, "Height": bottom - top}


def spectator_above(face: Box) -> Box:
    width, height = face["Width"] * 0.6, face["Height"] * 0.6
    return {
        "Left": face["Left"] + (face["Width"] - width) / 2,
        "Top": face["Top"] - 1.6 * face["Height"],
        "Width": width,
        "Height": height,
    }


def neighbour_beside(face: Box, rng: random.Random) -> Box:
    side = rng.choice((-1, 1))
    return {**face, "Left": face["Left"] + side * 1.6 * face["Width"]}


def score_image(image: Image, *, use_size: bool, drop_own_face: bool,
                transform: Callable[[Box], Box] | None, add_spectators: bool,
                neighbours: random.Random | None) -> Counter[str]:
    width, height = image["width"], image["height"]
    bibs = [{"number": entry["number"], "confidence": 99.0,
             "box": normalized(entry["bib_box"], width, height)} for entry in image["bibs"]]
    faces = [{"box": normalized(entry["face_box"], width, height)} for entry in image["bibs"]]
    if transform is not None:
        bibs = [{**bib, "box": transform(bib["box"])} for bib in bibs]
        faces = [{"box": transform(face["box"])} for face in faces]
    if add_spectators:
        faces = faces + [{"box": spectator_above(face["box"])} for face in faces]
    if neighbours is not None:
        faces = faces + [{"box": neighbour_beside(face["box"], neighbours)} for face in faces]
    size = {"image_width": width, "image_height": height} if use_size else {}
    tally: Counter[str] = Counter()
    if drop_own_face:
        for index, bib in enumerate(bibs):
            others = [face for position, face in enumerate(faces) if position != index]
            link = link_bibs_to_faces([bib], others, **size)[0]
            tally["wrong" if link["face_index"] is not None else "unlinked"] += 1
        return tally
    for index, link in enumerate(link_bibs_to_faces(bibs, faces, **size)):
        if link["face_index"] is None:
            tally["unlinked"] += 1
        elif link["face_index"] == index:
            tally["right"] += 1
        else:
            tally["wrong"] += 1
    return tally


def run_variant(images: list[Image], **options: Any) -> Counter[str]:
    total: Counter[str] = Counter()
    for image in images:
        total += score_image(image, **options)
    return total


def main(argv: list[str]) -> int:
    dataset = Path(argv[1]) if len(argv) > 1 else DEFAULT_DATASET
    if not dataset.is_dir():
        print(f"RBNR dataset not found at {dataset}", file=sys.stderr)
        return 2
    images = load_images(dataset)
    pairs = sum(len(image["bibs"]) for image in images)
    multi = [image for image in images if len(image["bibs"]) > 1]
    print(f"RBNR set1+set2: {len(images)} images, {pairs} labelled bib/face pairs, "
          f"{len(multi)} images with several runners "
          f"({sum(len(image['bibs']) for image in multi)} pairs)")
    rng = random.Random(20240501)
    variants: list[tuple[str, list[Image], dict[str, Any]]] = [
        ("all labelled faces as candidates", images, {}),
        ("  of which multi-runner photos", multi, {}),
        ("without image size (normalized only)", images, {"use_size": False}),
        ("jittered boxes (15%, seeded)", images, {"transform": lambda box: jittered(box, rng)}),
        ("spectator face above each runner", images, {"add_spectators": True}),
        ("packed neighbour beside each runner", images,
         {"neighbours": random.Random(20240502)}),
        ("own face missing (must abstain)", images, {"drop_own_face": True}),
    ]
    print(f"{'variant':40} {'pairs':>5} {'right':>7} {'wrong':>7} {'unlinked':>8}")
    for name, subset, overrides in variants:
        options = {"use_size": True, "drop_own_face": False, "transform": None,
                   "add_spectators": False, "neighbours": None, **overrides}
        tally = run_variant(subset, **options)
        count = sum(tally.values())
        print(f"{name:40} {count:5d} {tally['right'] / count:7.1%} "
              f"{tally['wrong'] / count:7.1%} {tally['unlinked'] / count:8.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
