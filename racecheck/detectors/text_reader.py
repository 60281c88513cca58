"""Read the text in a race photo, looking harder where bibs are: on torsos below faces.

One pass reads the whole photo at a moderate resolution (any text, and bibs of runners
whose face was not found). Then each plausible face gets a torso pass: the region below it
is cropped and rescaled so that the face is ``TORSO_FACE_HEIGHT_PX`` tall, which puts bib
digits near the size the recogniser was trained on whatever the runner's distance. A torso
that this scale would read no finer than the whole-photo pass did is not read again.

Reads of the same place from different passes are merged: a read that is a strict part of
a longer one (``1026`` inside ``10264``) supports the longer one; reads that contradict
each other lower the merged confidence, so that the bib rules see a doubtful read as a
near miss instead of a bib. Reads touching the edge of a torso crop are dropped: the crop
may have cut the number.

A number is then checked against the text around it and read again:

* glued to letters in a text read of the same place (``S1527``: the recogniser took the
  first digit of ``61527`` for a letter) it is probably part of a longer number, so its
  confidence is halved; standing as its own word in a text line (``MARATHON 2026``) it is
  left to that line, whose WORD the bib rules mark ``IN_TEXT_LINE``;
* it is re-recognised twice, digits only, from two crops of its box (tight, and with a
  little margin, which put the digits at two scales in the recogniser's input). The
  number stands when at least one re-read agrees with it, and its confidence is then
  backed by the agreeing re-read's weakest digit. When both re-reads agree with each
  other against it (``463`` read again twice as ``1463``) the two fresh reads win. When
  no two of the three reads agree, the read is doubtful: its confidence is halved, which
  makes it a ``LOW_CONFIDENCE`` near miss rather than a bib.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from racecheck.detectors import engines

WHOLE_PHOTO_LONG_SIDE_PX = 1280
WHOLE_PHOTO_MAX_UPSCALE = 1.5
# At 72 px the detector missed thin red digits on distant bibs (RBNR set 1: 88% -> 92%
# recall at 100 px); larger faces are shrunk to this size too, which costs ~5% speed.
TORSO_FACE_HEIGHT_PX = 100.0
TORSO_MAX_UPSCALE = 4.0
# The torso below a face: bib centres on the labelled photos lie 1-5 face heights below
# the face and within about 1.5 face widths of its centre; the margins here are wider.
TORSO_HALF_WIDTH_FACES = 2.2
TORSO_TOP_FACES = 0.2
TORSO_BOTTOM_FACES = 5.5
MAX_TORSO_PASSES = 8
MIN_FACE_HEIGHT_PX = 14.0
MIN_TORSO_FACE_CONFIDENCE = 80.0
EDGE_MARGIN_PX = 2.0
MIN_RECOGNITION_SCORE = 0.5
RECOGNIZER_HEIGHT_PX = 48
# Lines narrower than this are padded to it. PP-OCR pads every line to 320 px (its training
# width); the recogniser's cost grows with the width (ONNX Runtime, one thread: 68 ms at 320,
# 53 at 256), and a bib's number, even six digits with its box's margins, is narrower than
# 256 px. At 256 RBNR set 2's reads were unchanged and set 1 gained a right read and a
# misread of a 2-digit fragment; less padding changed more (at 192 set 1 lost a right read
# and gained a misread and an off-bib read; at 160, -2 points of recall; unpadded, -1 to -2.6).
RECOGNIZER_MIN_WIDTH_PX = 256
# Wider lines are padded to a multiple of this: OpenVINO runs an input shape it has run
# before at about half the cost of a new one (engines.text_networks), and 32 px more padding
# at most changed no read on RBNR sets 1-2. Detection inputs are multiples of 32 already.
RECOGNIZER_WIDTH_STEP_PX = 32
SAME_PLACE_OVERLAP = 0.5
SECOND_LOOK_MARGIN_X = 0.6
SECOND_LOOK_MARGIN_Y = 0.2
SECOND_LOOK_MIN_SCORE = 0.9
# Re-reads: (horizontal, vertical) margins around the box, in text heights.
RE_READ_MARGINS = ((0.0, 0.0), (0.2, 0.05))
# A confidence multiplied by this falls below any sensible bib_min_confidence (80 in cdk.json).
DOUBT_FACTOR = 0.5
# Two re-reads outvote the first read only if each of their digits is at least this likely.
MIN_OUTVOTING_DIGIT_PROBABILITY = 0.2
MIN_NUMBER_DIGITS = 2
DIGITS = "0123456789"
GLUED = "GLUED"
IN_LINE = "IN_LINE"

Polygon = tuple[tuple[float, float], ...]
ImageArray = NDArray[np.uint8]


@dataclass(frozen=True)
class FaceHint:
    """A detected face in pixels, used to find torsos."""

    left: float
    top: float
    width: float
    height: float
    confidence: float


@dataclass(frozen=True)
class TextRead:
    """One line of text in pixels; ``confidence`` is 0..100 like Rekognition's."""

    text: str
    confidence: float
    polygon: Polygon
    source: str

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        xs = [x for x, _ in self.polygon]
        ys = [y for _, y in self.polygon]
        return min(xs), min(ys), max(xs), max(ys)


def read_text(image: ImageArray, faces: Sequence[FaceHint]) -> list[TextRead]:
    """All lines of text in an RGB image, bib-like numbers read with extra care."""
    height, width = image.shape[:2]
    scale = min(WHOLE_PHOTO_MAX_UPSCALE, WHOLE_PHOTO_LONG_SIDE_PX / max(height, width))
    reads = _read_region(image, (0, 0, width, height), scale, source="photo")
    for face in _torso_faces(faces):
        region = _torso_region(face, width, height)
        if region is None:
            continue
        torso_scale = min(TORSO_MAX_UPSCALE, TORSO_FACE_HEIGHT_PX / face.height)
        if torso_scale <= scale:
            # The whole-photo pass read this torso at least as finely already.
            continue
        reads.extend(_read_region(image, region, torso_scale, source="torso"))
    return finish_reads(image, reads)


def finish_reads(image: ImageArray, reads: Sequence[TextRead]) -> list[TextRead]:
    """Merge every pass's reads, then check each number against its context and re-read it."""
    texts = [read for read in reads if digits_of(read.text) is None]
    # Only the whole photo's text lines are reported, so only they can carry a number.
    reported_texts = [read for read in texts if read.source == "photo"]
    finished = []
    for read in merge_reads(reads):
        if digits_of(read.text) is None:
            finished.append(read)
            continue
        if text_context(read, reported_texts) == IN_LINE:
            # The text line that holds it is reported; a second, standalone LINE would
            # contradict the line's own words.
            continue
        context = text_context(read, texts)
        read = verify_number(image, _second_look(image, read))
        if context == GLUED:
            read = TextRead(read.text, round(read.confidence * DOUBT_FACTOR, 3), read.polygon,
                            read.source)
        finished.append(read)
    return finished


def verify_number(image: ImageArray, read: TextRead) -> TextRead:
    """Re-read a number twice, digits only, and keep what at least two of three reads say."""
    number = digits_of(read.text)
    if number is None or len(number) < MIN_NUMBER_DIGITS:
        return read
    crops = [_crop_around(image, read, *margins) for margins in RE_READ_MARGINS]
    if any(crop is None for crop in crops):
        return read
    rereads = recognise_digits([crop for crop in crops if crop is not None])
    agreeing = [weakest for digits, weakest in rereads if digits == number]
    if agreeing:
        backed = max(read.confidence, 100 * max(agreeing))
        return TextRead(read.text, round(backed, 3), read.polygon, read.source)
    (first, first_weakest), (second, second_weakest) = rereads[0], rereads[1]
    if (first == second and len(first) >= MIN_NUMBER_DIGITS
            and min(first_weakest, second_weakest) >= MIN_OUTVOTING_DIGIT_PROBABILITY):
        confidence = min(read.confidence, 100 * min(first_weakest, second_weakest))
        return TextRead(first, round(confidence, 3), read.polygon, read.source)
    return TextRead(read.text, round(read.confidence * DOUBT_FACTOR, 3), read.polygon,
                    read.source)


def _padded_box(image: ImageArray, read: TextRead, margin_x: float, margin_y: float
                ) -> tuple[int, int, int, int] | None:
    """The read's box grown by margins (in text heights), clipped to the image; None if tiny."""
    left, top, right, bottom = read.bounds
    text_height = bottom - top
    if text_height < 4:
        return None
    height, width = image.shape[:2]
    return (int(max(0.0, left - margin_x * text_height)),
            int(max(0.0, top - margin_y * text_height)),
            int(min(float(width), right + margin_x * text_height)),
            int(min(float(height), bottom + margin_y * text_height)))


def _crop_around(image: ImageArray, read: TextRead, margin_x: float, margin_y: float
                 ) -> ImageArray | None:
    """The read's box plus margins (in text heights), scaled to the recogniser's height, BGR."""
    box = _padded_box(image, read, margin_x, margin_y)
    if box is None or box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    x0, y0, x1, y1 = box
    scale = RECOGNIZER_HEIGHT_PX / (y1 - y0)
    resized = cv2.resize(image[y0:y1, x0:x1],
                         (max(8, round((x1 - x0) * scale)), RECOGNIZER_HEIGHT_PX),
                         interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    return to_bgr(resized)


def _second_look(image: ImageArray, read: TextRead) -> TextRead:
    """Re-read a number with room around it: the first box may have cut off a digit."""
    number = digits_of(read.text)
    if number is None:
        return read
    box = _padded_box(image, read, SECOND_LOOK_MARGIN_X, SECOND_LOOK_MARGIN_Y)
    if box is None:
        return read
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    scale = min(TORSO_MAX_UPSCALE, RECOGNIZER_HEIGHT_PX / max(1, y1 - y0))
    resized = cv2.resize(crop, (max(8, round((x1 - x0) * scale)), max(8, round((y1 - y0) * scale))),
                         interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    text, score = recognise_lines([to_bgr(resized)])[0]
    again = _digit_core(text)
    if not again or again == number:
        return read
    if number in again and score >= SECOND_LOOK_MIN_SCORE:
        polygon = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
        return TextRead(again, round(min(read.confidence, score * 100), 3),
                        tuple((float(x), float(y)) for x, y in polygon), read.source)
    # A shorter or different second read is weaker evidence than the first: keep the first.
    return read


def _digit_core(text: str) -> str | None:
    """The digits of a re-read, ignoring stray marks at either end (``|61527.``)."""
    core = text.strip().strip("#|.,:;-_'\"()[] ")
    return core if core.isascii() and core.isdigit() else None


def _torso_faces(faces: Sequence[FaceHint]) -> list[FaceHint]:
    usable = [face for face in faces
              if face.confidence >= MIN_TORSO_FACE_CONFIDENCE
              and face.height >= MIN_FACE_HEIGHT_PX]
    usable.sort(key=lambda face: face.height, reverse=True)
    return usable[:MAX_TORSO_PASSES]


def _torso_region(face: FaceHint, width: int, height: int
                  ) -> tuple[int, int, int, int] | None:
    centre_x = face.left + face.width / 2
    chin = face.top + face.height
    left = int(max(0.0, centre_x - TORSO_HALF_WIDTH_FACES * face.width))
    right = int(min(float(width), centre_x + TORSO_HALF_WIDTH_FACES * face.width))
    top = int(max(0.0, chin + TORSO_TOP_FACES * face.height))
    bottom = int(min(float(height), chin + TORSO_BOTTOM_FACES * face.height))
    if right - left < 8 or bottom - top < 8:
        return None
    return left, top, right, bottom


def _read_region(image: ImageArray, region: tuple[int, int, int, int], scale: float, *,
                 source: str) -> list[TextRead]:
    left, top, right, bottom = region
    crop = image[top:bottom, left:right]
    new_size = (max(8, round((right - left) * scale)), max(8, round((bottom - top) * scale)))
    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    resized = cv2.resize(crop, new_size, interpolation=interpolation)
    # RapidOCR's models were trained on BGR input (it reads files with OpenCV).
    bgr = to_bgr(resized)
    height, width = image.shape[:2]
    cut_left, cut_top = left > 0, top > 0
    cut_right, cut_bottom = right < width, bottom < height

    def touches_cut(box: Sequence[tuple[float, float]]) -> bool:
        xs = [x for x, _ in box]
        ys = [y for _, y in box]
        return ((cut_left and min(xs) <= EDGE_MARGIN_PX)
                or (cut_top and min(ys) <= EDGE_MARGIN_PX)
                or (cut_right and max(xs) >= new_size[0] - 1 - EDGE_MARGIN_PX)
                or (cut_bottom and max(ys) >= new_size[1] - 1 - EDGE_MARGIN_PX))

    # A box the crop's edge cuts is dropped unread: it may hold part of a number.
    boxes = [box for box in _detect_text_boxes(bgr) if not touches_cut(box)]
    if not boxes:
        return []
    engine = engines.ocr_steps()
    line_images = engine.get_crop_img_list(bgr, [np.array(box, dtype=np.float32)
                                                 for box in boxes])
    recognised = recognise_lines(line_images)
    reads = []
    for box, (text, score) in zip(boxes, recognised, strict=True):
        if not text.strip() or score < MIN_RECOGNITION_SCORE:
            continue
        polygon = tuple((left + x / scale, top + y / scale) for x, y in box)
        reads.append(TextRead(text.strip(), round(score * 100, 3), polygon, source))
    return reads


def to_bgr(rgb: NDArray[Any]) -> ImageArray:
    """The image with its channels in OpenCV's order (BGR), as a new contiguous array
    (OpenCV swaps them in about 0.1 ms for a 1088x704 photo, numpy in about 4.5)."""
    bgr: ImageArray = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), dtype=np.uint8)
    return bgr


def detector_input(bgr: ImageArray) -> NDArray[np.float32] | None:
    """The text detector's input tensor for a BGR image, exactly as RapidOCR's
    ``DetPreProcess`` builds it with the image's own long side as its limit: sides rounded
    to multiples of 32, each byte normalised, channels first, a batch of one.

    RapidOCR normalises the whole image in float64 (its mean and std are float64 arrays)
    and then converts it, about 30 ms for a 1088x704 input on one core; the normalisation
    depends only on the byte value and the channel, so here it is looked up in a table of
    RapidOCR's own results for the 256 byte values (``_normalised_bytes``): the same floats,
    bit for bit, in about 3.5 ms.
    """
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    height, width = bgr.shape[:2]
    resized = DetPreProcess(max(height, width), "max").resize(bgr)
    if resized is None:
        return None
    table = _normalised_bytes()
    tensor: NDArray[np.float32] = np.empty((1, 3, *resized.shape[:2]), dtype=np.float32)
    for channel, plane in enumerate(cv2.split(resized)):
        cv2.LUT(plane, table[channel], dst=tensor[0, channel])
    return tensor


@functools.cache
def _normalised_bytes() -> NDArray[np.float32]:
    """What RapidOCR's detector normalisation makes of each byte value, per channel: a
    (3, 1, 256) float32 table, computed by its own ``DetPreProcess.normalize``."""
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    detector = engines.ocr_steps().text_det
    every_byte = np.repeat(np.arange(256, dtype=np.uint8).reshape(1, 256, 1), 3, axis=2)
    normalised = DetPreProcess(mean=detector.mean, std=detector.std).normalize(every_byte)
    table: NDArray[np.float32] = np.ascontiguousarray(
        normalised.astype(np.float32).transpose(2, 0, 1))
    return table


def _detect_text_boxes(bgr: ImageArray) -> list[list[tuple[float, float]]]:
    detector = engines.ocr_steps().text_det
    height, width = bgr.shape[:2]
    # The detector needs sides in multiples of 32; keep the size we already chose.
    tensor = detector_input(bgr)
    if tensor is None:
        return []
    prediction = engines.text_networks().detect(tensor)
    boxes, _scores = detector.postprocess_op(prediction, (height, width))
    if len(boxes) == 0:
        return []
    boxes = detector.filter_tag_det_res(boxes, (height, width))
    return [[(float(x), float(y)) for x, y in box] for box in boxes]


def recognise_lines(line_images: Sequence[ImageArray]) -> list[tuple[str, float]]:
    """CTC-decode each line image: (text, mean probability of the kept characters)."""
    recogniser = engines.ocr_steps().text_rec
    recognise = engines.text_networks().recognise
    characters: list[str] = recogniser.postprocess_op.character
    return [_ctc_decode(recognise(_recogniser_input(recogniser, line))[0], characters)
            for line in line_images]


def recognise_digits(line_images: Sequence[ImageArray]) -> list[tuple[str, float]]:
    """CTC-decode each line with only the digits allowed: (digits, weakest digit's probability).

    Restricting the alphabet stops a digit from being read as a look-alike letter or
    symbol; the weakest digit, not the mean, is what makes a number doubtful.
    """
    recogniser = engines.ocr_steps().text_rec
    recognise = engines.text_networks().recognise
    characters: list[str] = recogniser.postprocess_op.character
    allowed = [0] + [characters.index(digit) for digit in DIGITS]
    results: list[tuple[str, float]] = []
    for line in line_images:
        probabilities = recognise(_recogniser_input(recogniser, line))[0][:, allowed]
        digits, weakest = _ctc_decode(probabilities, ("", *DIGITS), weakest=True)
        results.append((digits, weakest))
    return results


def _recogniser_input(recogniser: Any, line: ImageArray) -> NDArray[np.float32]:
    """The line scaled to the recogniser's height and padded: to ``RECOGNIZER_MIN_WIDTH_PX``
    when narrower, else to the next multiple of ``RECOGNIZER_WIDTH_STEP_PX``; a batch of one."""
    line_height, line_width = line.shape[:2]
    natural = math.ceil(line_width * RECOGNIZER_HEIGHT_PX / max(1, line_height))
    width = max(RECOGNIZER_MIN_WIDTH_PX, -(-natural // RECOGNIZER_WIDTH_STEP_PX)
                * RECOGNIZER_WIDTH_STEP_PX)
    tensor: NDArray[np.float32] = recogniser.resize_norm_img(
        line, width / RECOGNIZER_HEIGHT_PX)[np.newaxis].astype(np.float32)
    return tensor


def _ctc_decode(probabilities: NDArray[Any], characters: Sequence[str], *,
                weakest: bool = False) -> tuple[str, float]:
    """Greedy CTC decoding (index 0 is the blank): the text and its mean, or weakest,
    character probability."""
    best = probabilities.argmax(axis=1)
    best_probability = probabilities.max(axis=1)
    text: list[str] = []
    kept: list[float] = []
    previous = 0
    for index, probability in zip(best.tolist(), best_probability.tolist(), strict=True):
        if index not in (0, previous) and index < len(characters):
            text.append(characters[index])
            kept.append(probability)
        previous = index
    if not kept:
        return "".join(text), 0.0
    return "".join(text), (min(kept) if weakest else sum(kept) / len(kept))


def digits_of(text: str) -> str | None:
    """The number a bib-like read shows (``#3631`` -> ``3631``), or None."""
    stripped = text.strip().lstrip("#").strip(" .,:;-")
    return stripped if stripped.isdigit() and stripped.isascii() else None


def _overlap(a: TextRead, b: TextRead) -> float:
    al, at, ar, ab = a.bounds
    bl, bt, br, bb = b.bounds
    inter = max(0.0, min(ar, br) - max(al, bl)) * max(0.0, min(ab, bb) - max(at, bt))
    smaller = min((ar - al) * (ab - at), (br - bl) * (bb - bt))
    return inter / smaller if smaller > 0 else 0.0


def merge_reads(reads: Sequence[TextRead]) -> list[TextRead]:
    """Whole-photo text as read, plus one merged read per place where a number was read."""
    numbers = [read for read in reads if digits_of(read.text) is not None]
    others = [read for read in reads if read.source == "photo" and digits_of(read.text) is None]
    groups: list[list[TextRead]] = []
    for read in sorted(numbers, key=lambda item: -item.confidence):
        for group in groups:
            if any(_overlap(read, member) >= SAME_PLACE_OVERLAP for member in group):
                group.append(read)
                break
        else:
            groups.append([read])
    merged = [_merge_group(group) for group in groups]
    return sorted(others + merged, key=lambda read: (read.bounds[1], read.bounds[0]))


def text_context(number_read: TextRead, texts: Sequence[TextRead]) -> str | None:
    """How a text read of the same place holds this number: GLUED, IN_LINE, or None."""
    number = digits_of(number_read.text) or ""
    found = None
    for text in texts:
        if _overlap(number_read, text) < SAME_PLACE_OVERLAP:
            continue
        for token in text.text.split():
            core = token.strip(".,:;!?'\"()[]")
            if core == number or core == f"#{number}":
                found = found or IN_LINE
            elif number in core and _glued(core, number):
                return GLUED
    return found


def _glued(token: str, number: str) -> bool:
    """Whether a letter or digit touches the number inside the token (``S1527``)."""
    start = token.index(number)
    before = token[start - 1] if start > 0 else ""
    after = token[start + len(number):start + len(number) + 1]
    return before.isalnum() or after.isalnum()


def _merge_group(group: Sequence[TextRead]) -> TextRead:
    def number(read: TextRead) -> str:
        return digits_of(read.text) or ""

    def support(candidate: str) -> float:
        return sum(read.confidence for read in group if number(read) in candidate)

    candidates = {number(read) for read in group}
    winner = max(candidates, key=lambda candidate: (support(candidate), len(candidate)))
    agreeing = support(winner)
    contradicting = sum(read.confidence for read in group if number(read) not in winner)
    best = max((read for read in group if number(read) == winner),
               key=lambda read: read.confidence)
    confidence = best.confidence * agreeing / (agreeing + contradicting)
    return TextRead(best.text, round(confidence, 3), best.polygon, best.source)
