"""Which texts in a DetectText response are bib numbers (pure stdlib: bundled into Lambdas).

Real responses hold LINEs and their WORDs: "2026", "MARATHON", "#3631", partial reads.
A text is a candidate when, once a leading ``#`` and trailing punctuation are stripped, it
is all digits. A candidate becomes a bib when it passes every rule in ``Settings``; one
that fails a rule is kept as a near miss with the rule's code, so a reviewer can see what
was almost read. The same number read as a LINE and as a WORD (or twice) at one place is
reported once, with its most confident read; at two places it is two reads.

A WORD whose LINE (``ParentId``) also holds words with letters is part of a text, not a
bib: the ``2026`` of "MARATHON 2026", the ``10`` of "10 KM", a date or an address. It is a
near miss ``IN_TEXT_LINE``. Two exceptions keep real bibs: a LINE that is itself a number
is a candidate as before, and a WORD written with a number sign (``#3631`` in "#3631
MARATHON") announces itself as a number, which is how bibs are printed next to the
event's name.

A read that passes those rules is then judged as a read: is it the whole printed number?
Each of these makes it a near miss (kept and shown, never a bib), because a fragment of a
bib is as confident as the whole and, in a race that numbers its bibs 1 to N, is another
runner's number:

* ``AT_FRAME_EDGE``: its box touches the photo's left or right edge, which may cut digits
  off the number;
* ``BOX_WIDER_THAN_DIGITS``: its box is far wider than its digits can be (a digit is
  narrower than it is tall in every type face): the rest of the box is text the reader
  could not read, another script or a logo, and the digits are part of it;
* ``LEADING_ZERO``: it starts with ``0``: a zero is printed first only on bibs padded to a
  fixed width, and far more often the zero is a digit in the middle of a longer number
  (``025`` of ``1025``) whose first digits are hidden. With the registration list, a read
  as wide as the race's widest numbers is a padded bib after all (``rules``).

The registration list judges reads further (``racecheck.core.rules``): a read of a length
the race rarely issues is a fragment (``SHORT_READ``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from racecheck.core.settings import Settings

LOW_CONFIDENCE = "LOW_CONFIDENCE"
TOO_SMALL = "TOO_SMALL"
STOP_WORD = "STOP_WORD"
WRONG_LENGTH = "WRONG_LENGTH"
OUT_OF_RANGE = "OUT_OF_RANGE"
IN_TEXT_LINE = "IN_TEXT_LINE"
AT_FRAME_EDGE = "AT_FRAME_EDGE"
BOX_WIDER_THAN_DIGITS = "BOX_WIDER_THAN_DIGITS"
LEADING_ZERO = "LEADING_ZERO"

# A lone digit is everywhere in a photo (shirts, signs, watches); it is not worth a near miss.
MIN_DIGITS_FOR_NEAR_MISS = 2
BOX_KEYS = ("Left", "Top", "Width", "Height")
# Two reads of one number whose boxes overlap this much (of the smaller box) are one place.
SAME_PLACE_OVERLAP = 0.3
# A box closer to the photo's edge than this share of its height touches the edge.
FRAME_EDGE_HEIGHTS = 0.25
# A digit's advance (its width and the gap after it) is under its height in every type
# face, condensed or wide; a box this much wider per digit holds something else too.
MAX_WIDTH_PER_DIGIT = 1.2


@dataclass(frozen=True)
class BibReading:
    bibs: list[dict[str, Any]] = field(default_factory=list)
    near_misses: list[dict[str, Any]] = field(default_factory=list)


def bib_number(text: str) -> str | None:
    """``#3631`` -> ``3631``; None unless the text is a number."""
    stripped = text.strip().lstrip("#").strip().rstrip(".,:;-")
    if stripped and stripped.isascii() and stripped.isdigit():
        return stripped
    return None


def why_not_a_bib(number: str, confidence: float, box: Mapping[str, float],
                  settings: Settings) -> str | None:
    """The first rule the read breaks, or None when it is a bib."""
    if number in settings.bib_stop_words:
        return STOP_WORD
    if not settings.bib_min_digits <= len(number) <= settings.bib_max_digits:
        return WRONG_LENGTH
    value = int(number)
    if ((settings.bib_min_value is not None and value < settings.bib_min_value)
            or (settings.bib_max_value is not None and value > settings.bib_max_value)):
        return OUT_OF_RANGE
    if box["Height"] < settings.bib_min_text_height:
        return TOO_SMALL
    if confidence < settings.bib_min_confidence:
        return LOW_CONFIDENCE
    return None


def is_text_word(token: str) -> bool:
    """A word of prose or labels (``MARATHON``, ``10K``): it holds a letter."""
    return any(character.isalpha() for character in token)


def _text_line_ids(detections: Sequence[Mapping[str, Any]]) -> set[Any]:
    """Ids of the LINEs that hold at least one word with letters."""
    return {detection.get("Id") for detection in detections
            if detection.get("Type") == "LINE"
            and any(is_text_word(token) for token in str(detection.get("DetectedText", ""))
                    .split())}


def _in_text_line(detection: Mapping[str, Any], text_lines: set[Any]) -> bool:
    if detection.get("Type") != "WORD" or detection.get("ParentId") not in text_lines:
        return False
    return not str(detection.get("DetectedText", "")).strip().startswith("#")


def _box_of(detection: Mapping[str, Any]) -> dict[str, float] | None:
    try:
        raw = detection["Geometry"]["BoundingBox"]
        return {key: float(raw[key]) for key in BOX_KEYS}
    except (KeyError, TypeError, ValueError):
        return None


def box_overlap(first: Any, second: Any) -> float:
    """Intersection over the smaller box (a read of part of a bib counts as the same place)."""
    try:
        left = max(first["Left"], second["Left"])
        top = max(first["Top"], second["Top"])
        right = min(first["Left"] + first["Width"], second["Left"] + second["Width"])
        bottom = min(first["Top"] + first["Height"], second["Top"] + second["Height"])
        smaller = min(first["Width"] * first["Height"], second["Width"] * second["Height"])
    except (KeyError, TypeError):
        return 0.0
    if right <= left or bottom <= top or smaller <= 0:
        return 0.0
    return float((right - left) * (bottom - top) / smaller)


def why_not_trusted(number: str, box: Mapping[str, float], aspect: float) -> str | None:
    """What in the read's own shape says it may not be the whole number, or None.

    ``aspect``: the photo's width over its height (Rekognition's boxes are fractions of
    each), 1.0 when unknown.
    """
    height_in_widths = box["Height"] / aspect  # the box's height as a share of the width
    margin = FRAME_EDGE_HEIGHTS * height_in_widths
    # Only the side edges cut digits off a number (it runs across); the top or bottom edge
    # cuts every digit a little, which the reader then misreads or does not read at all.
    if box["Left"] <= margin or box["Left"] + box["Width"] >= 1 - margin:
        return AT_FRAME_EDGE
    if box["Width"] > MAX_WIDTH_PER_DIGIT * height_in_widths * len(number):
        return BOX_WIDER_THAN_DIGITS
    if len(number) > 1 and number.startswith("0"):
        return LEADING_ZERO
    return None


def extract_bibs(detect_text_response: Mapping[str, Any], settings: Settings,
                 image_size: tuple[int, int] | None = None) -> BibReading:
    """Bibs and near misses among a DetectText response's LINEs and WORDs.

    One read per number and place: the LINE and the WORD of one bib (or two reads of it)
    are reported once, with the best read, but the same number at two places is two
    reads, so that a copied bib on a second runner can be seen (``SAME_BIB_TWICE``).

    ``image_size``: the photo's width and height in pixels, to turn Rekognition's boxes
    (fractions of each side) into shapes; without it the photo is taken as square, which
    errs by the photo's aspect ratio (1.5 on a 2:3 photo) in the edge and width checks.
    """
    detections: list[Mapping[str, Any]] = list(detect_text_response.get("TextDetections", []))
    text_lines = _text_line_ids(detections)
    aspect = image_size[0] / image_size[1] if image_size and image_size[1] > 0 else 1.0
    kept: list[tuple[dict[str, Any], str | None]] = []
    for detection in detections:
        number = bib_number(str(detection.get("DetectedText", "")))
        box = _box_of(detection)
        if number is None or box is None:
            continue
        confidence = float(detection.get("Confidence", 0.0))
        why = why_not_a_bib(number, confidence, box, settings)
        if why == WRONG_LENGTH and len(number) < MIN_DIGITS_FOR_NEAR_MISS:
            continue
        if _in_text_line(detection, text_lines):
            why = IN_TEXT_LINE
        why = why or why_not_trusted(number, box, aspect)
        read = {"number": number, "confidence": round(confidence, 3), "box": box}
        same = next((index for index, (other, _) in enumerate(kept)
                     if other["number"] == number
                     and box_overlap(other["box"], box) >= SAME_PLACE_OVERLAP), None)
        if same is None:
            kept.append((read, why))
            continue
        known, known_why = kept[same]
        # A passing read beats a failing one; otherwise the more confident read wins.
        if (why is None, confidence) > (known_why is None, known["confidence"]):
            kept[same] = (read, why)
    bibs = [read for read, why in kept if why is None]
    near_misses = [{**read, "why": why} for read, why in kept if why is not None]
    bibs.sort(key=lambda read: -read["confidence"])
    near_misses.sort(key=lambda read: -read["confidence"])
    return BibReading(bibs=bibs, near_misses=near_misses)
