"""Offline stand-in for the three Rekognition calls racecheck makes.

``LocalRekognition`` answers DetectText, DetectFaces and DetectModerationLabels from image
bytes with dicts shaped exactly like Rekognition's responses (normalized boxes, confidences
0..100). Models load lazily, once per process, from the files inside their wheels;
nothing is downloaded.

What it cannot do honestly, it leaves out rather than invents: no Sunglasses or
FaceOccluded (no model for them), no Quality (no sharpness or brightness measure on
Rekognition's scale), only the eye and nose landmarks dlib's 5-point model gives, Pose
with Roll only, face Confidence rescaled as ``face_finder`` explains, and moderation
limited to one label, ``Explicit``, because open_nsfw scores one thing (explicit or not).
Its age ranges are wide on purpose (see ``face_finder``).
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from racecheck.detectors import engines
from racecheck.detectors.face_finder import (
    FaceEstimate,
    estimate_faces,
    find_faces,
    rekognition_confidence,
)
from racecheck.detectors.text_reader import FaceHint, TextRead, read_text

TEXT_MODEL_VERSION = f"local-{engines.OCR_MODEL_VERSION}"
MODERATION_MODEL_VERSION = f"local-{engines.MODERATION_MODEL_VERSION}"
EXPLICIT_LABEL = "Explicit"


# Rekognition accepts these two formats only.
ACCEPTED_FORMATS = ("JPEG", "PNG")
# Decoded photos kept per process: a photo's three calls arrive one after the other, with
# calls for the few other photos in flight in between.
PHOTOS_KEPT = 4


class UnreadableImageError(ValueError):
    """Bytes Rekognition would refuse: not a JPEG or PNG, or not decodable."""


def decode_image(image_bytes: bytes) -> np.ndarray:
    """RGB pixels as stored (Rekognition's boxes ignore EXIF orientation too).

    Raises ``UnreadableImageError`` for what Rekognition refuses with
    InvalidImageFormatException: another format, or data that does not decode to the end.
    """
    try:
        with Image.open(io.BytesIO(image_bytes)) as opened:
            if opened.format not in ACCEPTED_FORMATS:
                raise UnreadableImageError("Request has unsupported image format")
            return np.asarray(opened.convert("RGB"))
    except UnreadableImageError:
        raise
    except Exception as error:
        raise UnreadableImageError(f"Request has invalid image format ({error})") from error


@dataclass
class _Photo:
    image: np.ndarray
    faces: list[FaceHint] | None = None


class LocalRekognition:
    """DetectText, DetectFaces and DetectModerationLabels answered on this machine.

    Each photo is decoded once, and its faces found once, for all three calls: the last
    few photos stay decoded, keyed by a hash of their bytes.
    """

    def __init__(self) -> None:
        self._photos: OrderedDict[bytes, _Photo] = OrderedDict()
        # With one job, several executions call the same detector from their threads.
        self._lock = threading.Lock()

    def _photo(self, image_bytes: bytes) -> _Photo:
        key = hashlib.sha256(image_bytes).digest()
        with self._lock:
            photo = self._photos.get(key)
            if photo is not None:
                self._photos.move_to_end(key)
                return photo
        photo = _Photo(decode_image(image_bytes))
        with self._lock:
            photo = self._photos.setdefault(key, photo)
            while len(self._photos) > PHOTOS_KEPT:
                self._photos.popitem(last=False)
        return photo

    def _image_and_faces(self, image_bytes: bytes) -> tuple[np.ndarray, list[FaceHint]]:
        # detect_text looks for faces to find torsos; detect_faces on the same photo
        # reuses them.
        photo = self._photo(image_bytes)
        if photo.faces is None:
            photo.faces = find_faces(photo.image)
        return photo.image, photo.faces

    def detect_text(self, image_bytes: bytes) -> dict[str, Any]:
        image, faces = self._image_and_faces(image_bytes)
        height, width = image.shape[:2]
        reads = read_text(image, faces)
        return {"TextDetections": text_detections(reads, width, height),
                "TextModelVersion": TEXT_MODEL_VERSION}

    def detect_faces(self, image_bytes: bytes, attributes: Sequence[str]) -> dict[str, Any]:
        image, faces = self._image_and_faces(image_bytes)
        height, width = image.shape[:2]
        wanted = {attribute.upper() for attribute in attributes} or {"DEFAULT"}
        everything = "ALL" in wanted
        default = everything or "DEFAULT" in wanted
        details = []
        for estimate in estimate_faces(image, faces):
            details.append(face_detail(
                estimate, width, height,
                default=default,
                age=everything or "AGE_RANGE" in wanted,
                gender=everything or "GENDER" in wanted,
            ))
        return {"FaceDetails": details}

    def detect_moderation_labels(self, image_bytes: bytes, min_confidence: float
                                 ) -> dict[str, Any]:
        image = Image.fromarray(self._photo(image_bytes).image)
        prediction = engines.nsfw_classifier().classify(image)
        confidence = round(float(prediction.nsfw) * 100, 3)
        labels = []
        if confidence >= min_confidence:
            labels.append({"Confidence": confidence, "Name": EXPLICIT_LABEL,
                           "ParentName": "", "TaxonomyLevel": 1})
        return {"ModerationLabels": labels, "ModerationModelVersion": MODERATION_MODEL_VERSION}


def _box(left: float, top: float, right: float, bottom: float, width: int, height: int
         ) -> dict[str, float]:
    left, right = max(0.0, left), min(float(width), right)
    top, bottom = max(0.0, top), min(float(height), bottom)
    return {"Width": (right - left) / width, "Height": (bottom - top) / height,
            "Left": left / width, "Top": top / height}


def _geometry(polygon: Sequence[tuple[float, float]], width: int, height: int
              ) -> dict[str, Any]:
    xs = [x for x, _ in polygon]
    ys = [y for _, y in polygon]
    return {
        "BoundingBox": _box(min(xs), min(ys), max(xs), max(ys), width, height),
        "Polygon": [{"X": min(max(x / width, 0.0), 1.0), "Y": min(max(y / height, 0.0), 1.0)}
                    for x, y in polygon],
    }


def _word_polygons(read: TextRead, words: Sequence[str]
                   ) -> list[tuple[tuple[float, float], ...]]:
    """Split a line's box along its baseline in proportion to each word's characters."""
    top_left, top_right, bottom_right, bottom_left = read.polygon[:4]
    total = sum(len(word) for word in words) + len(words) - 1
    polygons: list[tuple[tuple[float, float], ...]] = []
    start = 0
    for word in words:
        end = start + len(word)
        a, b = start / total, end / total

        def along(p: tuple[float, float], q: tuple[float, float], t: float
                  ) -> tuple[float, float]:
            return p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t

        polygons.append((along(top_left, top_right, a), along(top_left, top_right, b),
                         along(bottom_left, bottom_right, b), along(bottom_left, bottom_right, a)))
        start = end + 1
    return polygons


def text_detections(reads: Sequence[TextRead], width: int, height: int
                    ) -> list[dict[str, Any]]:
    """Rekognition's list: every LINE first, then its WORDs pointing back with ParentId."""
    lines: list[dict[str, Any]] = []
    words: list[dict[str, Any]] = []
    for line_id, read in enumerate(reads):
        lines.append({"DetectedText": read.text, "Type": "LINE", "Id": line_id,
                      "Confidence": read.confidence,
                      "Geometry": _geometry(read.polygon, width, height)})
        tokens = read.text.split()
        for token, polygon in zip(tokens, _word_polygons(read, tokens), strict=True):
            words.append({"DetectedText": token, "Type": "WORD", "Id": 0, "ParentId": line_id,
                          "Confidence": read.confidence,
                          "Geometry": _geometry(polygon, width, height)})
    for offset, word in enumerate(words):
        word["Id"] = len(lines) + offset
    return lines + words


def face_detail(estimate: FaceEstimate, width: int, height: int, *, default: bool, age: bool,
                gender: bool) -> dict[str, Any]:
    face = estimate.face
    detail: dict[str, Any] = {
        "BoundingBox": _box(face.left, face.top, face.left + face.width,
                            face.top + face.height, width, height),
        "Confidence": rekognition_confidence(face.confidence),
    }
    if age:
        low, high = estimate.age_range
        detail["AgeRange"] = {"Low": low, "High": high}
    if gender:
        detail["Gender"] = {"Value": estimate.gender, "Confidence": estimate.gender_confidence}
    if default:
        detail["Landmarks"] = [
            {"Type": name, "X": min(max(x / width, 0.0), 1.0),
             "Y": min(max(y / height, 0.0), 1.0)}
            for name, x, y in estimate.landmarks
        ]
        if estimate.roll_degrees is not None:
            detail["Pose"] = {"Roll": estimate.roll_degrees}
    return detail
